//! Lockfiles: what an environment holds, pinned (`bioxen.lock`, JSON):
//!
//! ```json
//! {"format": "bioxen-lock-1", "lua_version": "5.4", "arch": "linux-x86_64",
//!  "rocks": [{"name": "inspect", "version": "3.1.1-1", "hash": "sha256:…",
//!             "dependencies": {"other": "1.0-1"}}]}
//! ```
//!
//! `hash` covers the rock's installed files (see [`super::hash`]). `sync` makes an
//! environment hold exactly the locked rocks: from the cache by hash when it has them,
//! else from the servers (each rock by its exact version, dependencies not resolved
//! again), and checks every hash; it fails when a server cannot provide a pinned rock or
//! provides different files under the same version.

use super::cache::Cache;
use super::env::{write_atomic, Environment};
use super::error::{PResult, PkgError};
use super::flock;
use super::hash;
use super::install;
use super::luarocks;
use super::names;
use super::progress::{self, Progress};
use super::tree::{self, TreeManifest};
use crate::deadline::Deadline;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const FORMAT: &str = "bioxen-lock-1";

/// One pinned rock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRock {
    pub name: String,
    pub version: String,
    pub hash: String,
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
}

/// A lockfile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub format: String,
    pub lua_version: String,
    pub arch: String,
    pub rocks: Vec<LockedRock>,
}

impl Lockfile {
    /// Parses and validates lockfile text.
    pub fn parse(text: &str) -> PResult<Lockfile> {
        let bad = |m: String| PkgError::lockfile(m);
        let l: Lockfile =
            super::env::from_json(text, "the lockfile").map_err(|e| bad(e.message))?;
        if l.format != FORMAT {
            return Err(bad(format!(
                "unknown lockfile format {:?} (expected {FORMAT})",
                l.format
            )));
        }
        names::lua_version(&l.lua_version).map_err(|e| bad(e.message))?;
        for r in &l.rocks {
            names::rock_name(&r.name).map_err(|e| bad(e.message))?;
            names::version(&r.version).map_err(|e| bad(e.message))?;
            if !hash::valid_hash(&r.hash) {
                return Err(bad(format!(
                    "rock {} has an invalid hash {:?}",
                    r.name, r.hash
                )));
            }
        }
        Ok(l)
    }

    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn get(&self, name: &str) -> Option<&LockedRock> {
        self.rocks.iter().find(|r| r.name == name)
    }
}

/// The lockfile describing `env`'s tree as it is.
pub fn snapshot(env: &Environment) -> PResult<Lockfile> {
    let m = TreeManifest::load(env)?;
    let mut rocks = Vec::new();
    for (n, v) in m.installed() {
        let files = tree::rock_files(env, &n, &v)?.ok_or_else(|| {
            PkgError::lockfile(format!(
                "{n} {v} is installed next to another version of it; a lockfile pins one version per rock"
            ))
        })?;
        rocks.push(LockedRock {
            hash: hash::rock_hash(&env.tree(), &files.files)?,
            dependencies: m.resolved_deps(&n, &v),
            name: n,
            version: v,
        });
    }
    Ok(Lockfile {
        format: FORMAT.into(),
        lua_version: env.meta.lua_version.clone(),
        arch: super::cache::arch(),
        rocks,
    })
}

/// Writes `env`'s lockfile (to `path`, else `<env>/bioxen.lock`) and returns it.
pub fn lock(
    env: &Environment,
    path: Option<&std::path::Path>,
    deadline: Deadline,
) -> PResult<Lockfile> {
    let _lock = flock::lock(&env.lock_path(), false, deadline)?;
    let l = snapshot(env)?;
    let target = path
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| env.lockfile_path());
    write_atomic(&target, l.to_text().as_bytes())?;
    Ok(l)
}

/// What differs between a lockfile and a tree: `(missing, extra, changed)`.
pub fn drift(env: &Environment, l: &Lockfile) -> PResult<(Vec<String>, Vec<String>, Vec<String>)> {
    let now = snapshot(env)?;
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for r in &l.rocks {
        match now.get(&r.name) {
            None => missing.push(format!("{} {}", r.name, r.version)),
            Some(n) if n.version != r.version || n.hash != r.hash => changed.push(format!(
                "{} {} (locked {} {})",
                n.name, n.version, r.version, r.hash
            )),
            Some(_) => {}
        }
    }
    let extra = now
        .rocks
        .iter()
        .filter(|r| l.get(&r.name).is_none())
        .map(|r| format!("{} {}", r.name, r.version))
        .collect();
    Ok((missing, extra, changed))
}

fn unavailable(r: &LockedRock, e: &PkgError) -> PkgError {
    let mut out = PkgError::lockfile(format!(
        "the lockfile pins {} {}, which the environment's servers cannot provide: {}",
        r.name, r.version, e.message
    ))
    .with("rock", r.name.as_str())
    .with("version", r.version.as_str())
    .with("cause", e.to_json());
    out.detail.insert("kind".into(), "unavailable".into());
    out
}

/// Makes `env` hold exactly the rocks of `l` (only `only`'s closure when given, leaving
/// the rest of the tree alone).
pub fn sync(
    env: &Environment,
    l: &Lockfile,
    only: Option<&str>,
    use_cache: bool,
    deadline: Deadline,
    progress: Option<&Progress>,
) -> PResult<Value> {
    if l.lua_version != env.meta.lua_version {
        return Err(PkgError::lockfile(format!(
            "the lockfile is for Lua {}, the environment for Lua {}",
            l.lua_version, env.meta.lua_version
        )));
    }
    let wanted: Vec<&LockedRock> = match only {
        None => l.rocks.iter().collect(),
        Some(name) => {
            let root = l.get(name).ok_or_else(|| {
                PkgError::lockfile(format!("the lockfile does not pin {name}")).with("rock", name)
            })?;
            let mut out = vec![root];
            let mut i = 0;
            while i < out.len() {
                for d in out[i].dependencies.keys() {
                    let r = l.get(d).ok_or_else(|| {
                        PkgError::lockfile(format!(
                            "the lockfile names {d} as a dependency but does not pin it"
                        ))
                    })?;
                    if !out.iter().any(|x| x.name == r.name) {
                        out.push(r);
                    }
                }
                i += 1;
            }
            out
        }
    };
    let _lock = flock::lock(&env.lock_path(), true, deadline)?;
    let cache = if use_cache {
        Cache::for_env(env)?
    } else {
        None
    };
    let mut manifest = TreeManifest::load(env)?;
    let current = snapshot(env)?;
    let mut removed = Vec::new();
    if only.is_none() {
        // What the lockfile does not pin, or pins otherwise, goes first.
        for r in &current.rocks {
            let keep = l
                .get(&r.name)
                .is_some_and(|x| x.version == r.version && x.hash == r.hash);
            if !keep {
                let out = luarocks::remove_forced(env, &r.name, &r.version, deadline, progress)?;
                if out.status != Some(0) {
                    return Err(luarocks::failure(
                        &out,
                        &format!("removing {} {}", r.name, r.version),
                    ));
                }
                removed.push(json!({ "name": r.name, "version": r.version }));
            }
        }
        manifest = TreeManifest::load(env)?;
    }
    let mut installed = Vec::new();
    let todo: Vec<&LockedRock> = wanted
        .into_iter()
        .filter(|r| !manifest.versions_of(&r.name).contains(&r.version))
        .collect();
    // From the cache by hash, all at once.
    let mut from_servers = Vec::new();
    if let Some(c) = &cache {
        let mut plan = Vec::new();
        for r in &todo {
            match c.object(&r.hash) {
                Some(o)
                    if o.entry.name == r.name
                        && o.entry.version == r.version
                        && o.entry.lua_version == env.meta.lua_version =>
                {
                    plan.push(o)
                }
                _ => from_servers.push(*r),
            }
        }
        if !plan.is_empty() {
            match install::apply_warm(env, c, &mut manifest, &plan) {
                Ok(()) => {
                    for o in &plan {
                        progress::step(
                            progress,
                            "cache-hit",
                            Some(&o.entry.name),
                            Some(&o.entry.version),
                        )?;
                        installed.push(json!({ "name": o.entry.name, "version": o.entry.version, "from_cache": true }));
                    }
                }
                Err(_) => {
                    from_servers = todo.clone();
                    manifest = TreeManifest::load(env)?;
                }
            }
        }
    } else {
        from_servers = todo.clone();
    }
    for r in from_servers {
        if manifest.versions_of(&r.name).contains(&r.version) {
            continue;
        }
        let (_, _out) = install::luarocks_install(
            env,
            cache.as_ref(),
            &r.name,
            Some(&r.version),
            &["--deps-mode=none"],
            deadline,
            progress,
        )
        .map_err(|e| unavailable(r, &e))?;
        manifest = TreeManifest::load(env)?;
        let files = tree::rock_files(env, &r.name, &r.version)?;
        let got = match &files {
            Some(f) => hash::rock_hash(&env.tree(), &f.files)?,
            None => String::new(),
        };
        if got != r.hash {
            let _ = luarocks::remove_forced(env, &r.name, &r.version, deadline, None);
            let mut e = PkgError::lockfile(format!(
                "{} {} from the servers does not match the lockfile: its files hash to {got}, the lockfile pins {}",
                r.name, r.version, r.hash
            ))
            .with("rock", r.name.as_str())
            .with("expected_hash", r.hash.as_str())
            .with("hash", got);
            e.detail.insert("kind".into(), "hash_mismatch".into());
            return Err(e);
        }
        installed.push(json!({ "name": r.name, "version": r.version, "from_cache": false }));
    }
    // The work is done: a cancel now changes nothing.
    let _ = progress::step(progress, "synced", None, None);
    Ok(json!({
        "env": env.root.display().to_string(),
        "installed": installed,
        "removed": removed,
        "rocks": l.rocks.len(),
    }))
}

/// Reads the lockfile at `path`.
pub fn read(path: &std::path::Path) -> PResult<Lockfile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PkgError::lockfile(format!("cannot read the lockfile {}: {e}", path.display()))
    })?;
    Lockfile::parse(&text)
}
