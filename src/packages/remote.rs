//! Environments on a remote host, reached over SSH (the `ssh` VM kind's connections):
//! the same directory layout and luarocks configuration as local environments, created,
//! installed into, synced from a lockfile and hashed by commands run on the host through
//! `Connection::run`. Every value on a remote command line is a `shell::quote`d
//! argument of a fixed `sh -c` script; nothing a caller gives is pasted into script text.
//! An `xcpng` VM (a guest reached over SSH) uses the same calls with its guest's options.

use super::env::{CreateSpec, EnvMeta, Environment, EMPTY_MANIFEST, LOCK_FILE, META_FILE};
use super::error::{PResult, PkgError};
use super::hash;
use super::lockfile::{LockedRock, Lockfile, FORMAT};
use super::luarocks::{self, RunOutput, INSTALL_HINT};
use super::names;
use super::paths::ModulePaths;
use super::progress::{self, Progress};
use super::tree::TreeManifest;
use super::version::{self, Constraints};
use crate::deadline::Deadline;
use crate::status::bioxen_vm_status as St;
use crate::vm::shell::quote;
use crate::vm::ssh::conn::Connection;
use crate::vm::ssh::{pool, SshOptions};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Longest a remote luarocks run may take when the caller sets no timeout.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);
/// Longest a short remote command (read a file, make directories) may take.
const SHORT: Duration = Duration::from_secs(30);

/// A host reached over SSH.
pub struct Remote {
    conn: Arc<Connection>,
    target: String,
}

/// The remote data directory, as local environments find theirs.
const DATA_DIR: &str =
    r#"printf '%s\n' "${BIOXEN_VM_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/bioxen_vm}""#;

/// Runs luarocks in an environment: $1 env dir, $2 Lua version, $3 luarocks program, then
/// luarocks' arguments. The tree is locked with flock(1) when the host has it.
const LUAROCKS: &str = r#"d=$1; v=$2; p=$3; shift 3
command -v "$p" >/dev/null 2>&1 || { printf 'bioxen-vm-no-luarocks\n' >&2; exit 127; }
cd "$d/work" || exit 1
c="$d/luarocks-config.lua"
vv=$(printf '%s' "$v" | tr . _)
set -- "$p" "--lua-version=$v" "$@"
if command -v flock >/dev/null 2>&1; then set -- flock "$d/.lock" "$@"; fi
exec env -u LUA_PATH -u LUA_CPATH -u LUA_INIT -u LUA_PATH_5_2 -u LUA_PATH_5_3 -u LUA_PATH_5_4 -u LUA_CPATH_5_2 -u LUA_CPATH_5_3 -u LUA_CPATH_5_4 -u LUA_INIT_5_2 -u LUA_INIT_5_3 -u LUA_INIT_5_4 HOME="$d/home" LUAROCKS_CONFIG="$c" "LUAROCKS_CONFIG_$vv=$c" LC_ALL=C "$@""#;

/// Lists a rock's files with their SHA-256: $1 tree, $2 Lua version, $3 name, $4 version,
/// $5 interpreter. The deployed files come from its rock_manifest, read by the interpreter.
const ROCK_FILES: &str = r#"cd "$1" || exit 1
r="lib/luarocks/rocks-$2/$3/$4"
[ -f "$r/rock_manifest" ] || exit 3
{ find "$r" -type f; BX_RM="$r/rock_manifest" BX_V="$2" "$5" -e '
local env = {}
local chunk
if setfenv then chunk = assert(loadfile(os.getenv("BX_RM"))); setfenv(chunk, env)
else chunk = assert(loadfile(os.getenv("BX_RM"), "t", env)) end
chunk()
local function walk(t, prefix)
  for k, x in pairs(t) do
    if type(x) == "table" then walk(x, prefix .. k .. "/") else print(prefix .. k) end
  end
end
local m = env.rock_manifest or {}
local v = os.getenv("BX_V")
if m.lua then walk(m.lua, "share/lua/" .. v .. "/") end
if m.lib then walk(m.lib, "lib/lua/" .. v .. "/") end'; } | while IFS= read -r f; do
  if [ -f "$f" ]; then sha256sum -- "$f"; else printf 'missing  %s\n' "$f"; fi
done"#;

/// Creates an environment's directories and files: $1 dir, $2 Lua version, $3 config,
/// $4 empty manifest, $5 metadata.
const CREATE: &str = r#"set -e
d=$1
mkdir -p "$d/tree/lib/luarocks/rocks-$2" "$d/home" "$d/work" "$d/download-cache"
printf '%s' "$3" > "$d/luarocks-config.lua"
printf '%s' "$4" > "$d/tree/lib/luarocks/rocks-$2/manifest"
printf '%s' "$5" > "$d/bioxen-env.json""#;

fn quoted_args(script: &str, args: &[&str]) -> PResult<String> {
    let q = |s: &str| quote(s).ok_or_else(|| PkgError::invalid("a value holds a NUL byte"));
    let mut cmd = format!("exec sh -c {} sh", q(script)?);
    for a in args {
        cmd.push(' ');
        cmd.push_str(&q(a)?);
    }
    Ok(cmd)
}

impl Remote {
    /// Connects (or shares a connection of the `ssh` VMs) with `opts`.
    pub fn connect(opts: &SshOptions) -> PResult<Remote> {
        let conn = pool::connection(opts).map_err(PkgError::from)?;
        Ok(Remote {
            conn,
            target: opts.target(),
        })
    }

    /// On an existing connection.
    pub fn on(conn: Arc<Connection>, target: String) -> Remote {
        Remote { conn, target }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `script` with `args` (each quoted) through `sh -c`.
    fn sh(
        &self,
        script: &str,
        args: &[&str],
        limit: Duration,
    ) -> PResult<(Option<i32>, String, String)> {
        let cmd = quoted_args(script, args)?;
        let (code, out, err) = self.conn.run(cmd, limit).map_err(PkgError::from)?;
        Ok((
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }

    /// The remote data directory.
    pub fn data_dir(&self) -> PResult<String> {
        let (code, out, err) = self.sh(DATA_DIR, &[], SHORT)?;
        let d = out.trim().to_string();
        if code != Some(0) || !d.starts_with('/') {
            return Err(PkgError::environment(format!(
                "cannot find the data directory on {}: {}",
                self.target,
                err.trim()
            )));
        }
        Ok(d)
    }

    /// The directory `env` names on the host (a name goes under its data directory).
    pub fn resolve(&self, env: &str) -> PResult<String> {
        if env.contains('\0') || env.chars().any(char::is_control) {
            return Err(PkgError::invalid(
                "an environment path may not hold control characters",
            ));
        }
        if env.starts_with('/') {
            return Ok(env.trim_end_matches('/').to_string());
        }
        if env.contains('/') {
            return Err(PkgError::invalid(format!(
                "a remote environment is a name or an absolute path, not {env:?}"
            )));
        }
        let name = names::env_name(env)?;
        Ok(format!("{}/envs/{name}", self.data_dir()?))
    }

    fn read(&self, path: &str) -> PResult<Option<String>> {
        let (code, out, err) = self.sh(r#"[ -f "$1" ] || exit 3; cat -- "$1""#, &[path], SHORT)?;
        match code {
            Some(0) => Ok(Some(out)),
            Some(3) => Ok(None),
            _ => Err(PkgError::internal(format!(
                "cannot read {path} on {}: {}",
                self.target,
                err.trim()
            ))),
        }
    }

    /// Opens the environment at `dir` on the host.
    pub fn open(&self, dir: &str) -> PResult<Environment> {
        let text = self.read(&format!("{dir}/{META_FILE}"))?.ok_or_else(|| {
            PkgError::environment(format!(
                "no environment at {dir} on {} (create it first)",
                self.target
            ))
            .with("path", dir)
            .with("host", self.target.as_str())
        })?;
        let meta: EnvMeta = super::env::from_json(&text, META_FILE)
            .map_err(|e| PkgError::environment(e.message))?;
        names::lua_version(&meta.lua_version).map_err(|e| PkgError::environment(e.message))?;
        Ok(Environment {
            root: PathBuf::from(dir),
            meta,
        })
    }

    /// Creates an environment on the host (`spec.path` absolute, or `spec.name`).
    pub fn create(&self, spec: &CreateSpec) -> PResult<Environment> {
        let dir = match (&spec.name, &spec.path) {
            (Some(n), None) => self.resolve(names::env_name(n)?)?,
            (None, Some(p)) if p.starts_with('/') => self.resolve(p)?,
            _ => {
                return Err(PkgError::invalid(
                    "give a remote environment a 'name' or an absolute 'path'",
                ))
            }
        };
        if let Ok(existing) = self.open(&dir) {
            if spec.exist_ok
                && Some(existing.meta.lua_version.as_str())
                    == spec.lua_version.as_deref().or(Some("5.4"))
            {
                return Ok(existing);
            }
            return Err(PkgError::environment(format!(
                "environment {dir} already exists on {}",
                self.target
            )));
        }
        // The same metadata and configuration a local environment gets, for the remote paths.
        let local = Environment::plan(spec, PathBuf::from(&dir))?;
        let meta = serde_json::to_string_pretty(&local.meta)
            .map_err(|e| PkgError::internal(e.to_string()))?;
        let v = local.meta.lua_version.clone();
        let (code, _, err) = self.sh(
            CREATE,
            &[&dir, &v, &local.luarocks_config(), EMPTY_MANIFEST, &meta],
            SHORT,
        )?;
        if code != Some(0) {
            return Err(PkgError::environment(format!(
                "cannot create {dir} on {}: {}",
                self.target,
                err.trim()
            )));
        }
        Ok(local)
    }

    /// Runs luarocks in `env` on the host.
    fn luarocks(
        &self,
        env: &Environment,
        args: &[String],
        deadline: Deadline,
    ) -> PResult<RunOutput> {
        let dir = env.root.display().to_string();
        let program = env
            .meta
            .luarocks
            .clone()
            .unwrap_or_else(|| "luarocks".into());
        let mut all: Vec<&str> = vec![&dir, &env.meta.lua_version, &program];
        all.extend(args.iter().map(String::as_str));
        let limit = deadline.remaining().unwrap_or(DEFAULT_LIMIT);
        let (status, stdout, stderr) = self.sh(LUAROCKS, &all, limit)?;
        let mut argv = vec![
            program.clone(),
            format!("--lua-version={}", env.meta.lua_version),
        ];
        argv.extend(args.iter().cloned());
        let o = RunOutput {
            argv,
            status,
            stdout,
            stderr,
        };
        if o.status == Some(127) && o.stderr.contains("bioxen-vm-no-luarocks") {
            return Err(luarocks::with_output(
                PkgError::new(
                    St::LuarocksNotFound,
                    "luarocks_missing",
                    format!(
                        "luarocks ('{program}') is not installed on {}: {INSTALL_HINT}",
                        self.target
                    ),
                )
                .with("host", self.target.as_str()),
                &o,
            ));
        }
        Ok(o)
    }

    fn manifest(&self, env: &Environment) -> PResult<TreeManifest> {
        let p = format!(
            "{}/lib/luarocks/rocks-{}/manifest",
            env.tree().display(),
            env.meta.lua_version
        );
        match self.read(&p)? {
            Some(t) => Ok(TreeManifest {
                root: super::luaval::load(t.as_bytes(), &p)?,
            }),
            None => Ok(TreeManifest::empty()),
        }
    }

    /// The versions of `name` the environment's servers have, as luarocks on the host
    /// sees them.
    fn available(&self, env: &Environment, name: &str, deadline: Deadline) -> PResult<Vec<String>> {
        let mut args = vec!["search".to_string(), "--porcelain".to_string()];
        args.extend(luarocks::server_args(env)?);
        args.push(name.to_string());
        let o = self.luarocks(env, &args, deadline)?;
        if o.status != Some(0) {
            return Err(luarocks::failure(
                &o,
                &format!("searching {name} on {}", self.target),
            ));
        }
        Ok(luarocks::porcelain_versions(&o.stdout, name))
    }

    /// Installs `name` (meeting `constraint`) into `env` on the host.
    pub fn install(
        &self,
        env: &Environment,
        name: &str,
        constraint: Option<&str>,
        force: bool,
        deadline: Deadline,
        progress: Option<&Progress>,
    ) -> PResult<Value> {
        let name = names::rock_name(name)?.to_ascii_lowercase();
        let cons = Constraints::parse(constraint.unwrap_or(""))?;
        let server_args = luarocks::server_args(env)?;
        let version = match cons.exact() {
            Some(v) => Some(v.text.clone()),
            None if cons.is_any() => None,
            None => {
                let avail = self.available(env, &name, deadline)?;
                let best =
                    version::best(avail.iter().map(String::as_str), &cons).map(str::to_string);
                if best.is_none() {
                    return Err(PkgError::new(
                        St::PackageNotFound,
                        "no_matching_version",
                        format!(
                            "no version of '{name}' meets {} on {}'s servers; they have {}",
                            cons.text,
                            self.target,
                            if avail.is_empty() {
                                "none".to_string()
                            } else {
                                avail.join(", ")
                            }
                        ),
                    )
                    .with("rock", name.as_str())
                    .with("available", avail));
                }
                best
            }
        };
        let before = self.manifest(env)?.installed();
        let mut args = vec!["install".to_string()];
        args.extend(server_args);
        if force {
            args.push("--force".into());
        }
        args.push(name.clone());
        if let Some(v) = &version {
            args.push(v.clone());
        }
        progress::step(progress, "luarocks", Some(&name), version.as_deref())?;
        let o = self.luarocks(env, &args, deadline)?;
        for l in o.stdout.lines() {
            progress::line(progress, "stdout", l)?;
        }
        if o.status != Some(0) {
            return Err(
                luarocks::failure(&o, &format!("installing {name} on {}", self.target))
                    .with("host", self.target.as_str())
                    .with("rock", name.as_str()),
            );
        }
        let after = self.manifest(env)?;
        let added: Vec<Value> = after
            .installed()
            .into_iter()
            .filter(|r| !before.contains(r))
            .map(|(n, v)| json!({ "name": n, "version": v, "from_cache": false }))
            .collect();
        let v = after.installed_match(&name, &cons).unwrap_or_default();
        Ok(json!({
            "env": env.root.display().to_string(), "host": self.target, "rock": name, "version": v,
            "already_installed": false, "installed": added,
            "luarocks": { "exit_status": o.status, "stdout": o.stdout, "stderr": o.stderr, "command": o.argv },
        }))
    }

    /// Removes `name` from `env` on the host.
    pub fn remove(
        &self,
        env: &Environment,
        name: &str,
        force: bool,
        deadline: Deadline,
    ) -> PResult<Value> {
        let name = names::rock_name(name)?.to_ascii_lowercase();
        let mut args = vec!["remove".to_string()];
        if force {
            args.push("--force".into());
        }
        args.push(name.clone());
        let o = self.luarocks(env, &args, deadline)?;
        if o.status != Some(0) {
            return Err(
                luarocks::failure(&o, &format!("removing {name} on {}", self.target))
                    .with("host", self.target.as_str()),
            );
        }
        Ok(
            json!({ "env": env.root.display().to_string(), "host": self.target, "rock": name,
                   "luarocks": { "exit_status": o.status, "stdout": o.stdout, "stderr": o.stderr } }),
        )
    }

    /// What `env` holds on the host (as the local `list` reports it).
    pub fn list(&self, env: &Environment) -> PResult<Value> {
        Ok(super::install::list_manifest(&self.manifest(env)?))
    }

    fn rock_hash(&self, env: &Environment, name: &str, version: &str) -> PResult<Option<String>> {
        let tree = env.tree().display().to_string();
        let (code, out, err) = self.sh(
            ROCK_FILES,
            &[
                &tree,
                &env.meta.lua_version,
                name,
                version,
                &env.meta.interpreter,
            ],
            SHORT,
        )?;
        if code == Some(3) {
            return Ok(None);
        }
        if code != Some(0) {
            return Err(PkgError::internal(format!(
                "cannot hash {name} {version} on {}: {}",
                self.target,
                err.trim()
            )));
        }
        let mut lines: Vec<(String, String)> = Vec::new();
        for l in out.lines() {
            let Some((h, p)) = l.split_once("  ") else {
                continue;
            };
            if h == "missing" {
                return Ok(None);
            }
            lines.push((p.to_string(), h.to_string()));
        }
        lines.sort();
        lines.dedup();
        let mut acc = Vec::new();
        for (p, h) in lines {
            acc.extend_from_slice(p.as_bytes());
            acc.push(0);
            acc.extend_from_slice(h.as_bytes());
            acc.push(b'\n');
        }
        Ok(Some(format!("sha256:{}", hash::hex(&hash::sha256(&acc)))))
    }

    /// The lockfile of `env` on the host (also written there as `bioxen.lock`).
    pub fn lock(&self, env: &Environment) -> PResult<Lockfile> {
        let m = self.manifest(env)?;
        let mut rocks = Vec::new();
        for (n, v) in m.installed() {
            let h = self.rock_hash(env, &n, &v)?.ok_or_else(|| {
                PkgError::lockfile(format!(
                    "{n} {v} on {} has files luarocks renamed (two versions?)",
                    self.target
                ))
            })?;
            rocks.push(LockedRock {
                hash: h,
                dependencies: m.resolved_deps(&n, &v),
                name: n,
                version: v,
            });
        }
        let l = Lockfile {
            format: FORMAT.into(),
            lua_version: env.meta.lua_version.clone(),
            arch: super::cache::arch(),
            rocks,
        };
        let path = format!("{}/{LOCK_FILE}", env.root.display());
        let (code, _, err) =
            self.sh(r#"printf '%s' "$2" > "$1""#, &[&path, &l.to_text()], SHORT)?;
        if code != Some(0) {
            return Err(PkgError::internal(format!(
                "cannot write {path} on {}: {}",
                self.target,
                err.trim()
            )));
        }
        Ok(l)
    }

    /// Installs the locked rocks into `env` on the host (each by its exact version, its
    /// dependencies not resolved again) and checks each one's hash.
    pub fn sync(
        &self,
        env: &Environment,
        l: &Lockfile,
        deadline: Deadline,
        progress: Option<&Progress>,
    ) -> PResult<Value> {
        if l.lua_version != env.meta.lua_version {
            return Err(PkgError::lockfile(format!(
                "the lockfile is for Lua {}, the environment on {} for Lua {}",
                l.lua_version, self.target, env.meta.lua_version
            )));
        }
        let m = self.manifest(env)?;
        let server_args = luarocks::server_args(env)?;
        let mut installed = Vec::new();
        for r in &l.rocks {
            let present = m.versions_of(&r.name).contains(&r.version);
            if !present {
                let mut args = vec!["install".to_string()];
                args.extend(server_args.iter().cloned());
                args.extend([
                    "--deps-mode=none".to_string(),
                    r.name.clone(),
                    r.version.clone(),
                ]);
                progress::step(progress, "luarocks", Some(&r.name), Some(&r.version))?;
                let o = self.luarocks(env, &args, deadline)?;
                if o.status != Some(0) {
                    let cause =
                        luarocks::failure(&o, &format!("installing {} {}", r.name, r.version));
                    let mut e = PkgError::lockfile(format!(
                        "the lockfile pins {} {}, which the servers of the environment on {} cannot provide: {}",
                        r.name, r.version, self.target, cause.message
                    ))
                    .with("rock", r.name.as_str())
                    .with("cause", cause.to_json());
                    e.detail.insert("kind".into(), "unavailable".into());
                    return Err(luarocks::with_output(e, &o));
                }
                installed
                    .push(json!({ "name": r.name, "version": r.version, "from_cache": false }));
            }
            let got = self
                .rock_hash(env, &r.name, &r.version)?
                .unwrap_or_default();
            if got != r.hash {
                let mut e = PkgError::lockfile(format!(
                    "{} {} on {} does not match the lockfile: its files hash to {got}, the lockfile pins {}",
                    r.name, r.version, self.target, r.hash
                ))
                .with("rock", r.name.as_str());
                e.detail.insert("kind".into(), "hash_mismatch".into());
                return Err(e);
            }
        }
        Ok(
            json!({ "env": env.root.display().to_string(), "host": self.target, "installed": installed, "rocks": l.rocks.len() }),
        )
    }

    /// What the agent of an `ssh` VM needs for `env` (a name or absolute path on the
    /// host): the environment's module variables, interpreter and Lua version.
    pub fn module_env(&self, env: &str) -> PResult<RemoteModules> {
        let dir = self.resolve(env)?;
        let e = self.open(&dir)?;
        Ok(RemoteModules {
            vars: ModulePaths::for_tree(
                &e.tree().display().to_string(),
                &e.meta.lua_version,
                e.meta.include_system_modules,
            )
            .env_vars(),
            interpreter: e.meta.interpreter.clone(),
            lua_version: e.meta.lua_version.clone(),
            dir,
        })
    }
}

/// A remote environment as an `ssh` VM's agent uses it.
#[derive(Clone, Debug)]
pub struct RemoteModules {
    pub vars: Vec<(String, String)>,
    pub interpreter: String,
    pub lua_version: String,
    pub dir: String,
}
