//! Environments: a directory holding one luarocks tree and everything luarocks needs to
//! work on that tree alone.
//!
//! ```text
//! <env>/bioxen-env.json   what the environment is (Lua version, interpreter, servers, ...)
//! <env>/luarocks-config.lua  luarocks' configuration: this tree only, these servers only
//! <env>/tree/             the luarocks tree (share/lua/5.x, lib/lua/5.x, lib/luarocks, bin)
//! <env>/home/             HOME while luarocks runs (nothing reaches the caller's home)
//! <env>/work/             luarocks' working directory (a luarocks.lock elsewhere is ignored)
//! <env>/download-cache/   luarocks' own download cache
//! <env>/bioxen.lock       the lockfile, once `lock` wrote it
//! <env>/.lock             the lock taken while the tree changes
//! ```
//!
//! An environment is named by a path (anything with a `/`), or by a name: then it is
//! `<data dir>/envs/<name>` (see [`super::datadir`]).

use super::datadir;
use super::error::{PResult, PkgError};
use super::luaval;
use super::names;
use super::servers::{self, Server};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The metadata file's name.
pub const META_FILE: &str = "bioxen-env.json";
/// The lockfile's name inside an environment.
pub const LOCK_FILE: &str = "bioxen.lock";

/// What `bioxen-env.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvMeta {
    pub format: u32,
    /// The name it was created under (the directory's name for path environments).
    pub name: String,
    /// "5.1" … "5.4".
    pub lua_version: String,
    /// The interpreter VMs run for it (a name looked up in PATH, or a path).
    pub interpreter: String,
    /// Servers as given (validated).
    pub servers: Vec<String>,
    /// Whether VMs also see the interpreter's system module directories.
    pub include_system_modules: bool,
    /// The luarocks program (None: `luarocks` in PATH).
    pub luarocks: Option<String>,
    /// Where the Lua headers are for C rocks (None: luarocks finds them).
    pub lua_incdir: Option<String>,
    /// The cache of built rocks: None for the shared default, Some("") for none, else a path.
    pub cache: Option<String>,
    /// Seconds since the epoch.
    pub created: f64,
}

/// An open environment.
#[derive(Clone, Debug)]
pub struct Environment {
    pub root: PathBuf,
    pub meta: EnvMeta,
}

/// How a caller names an environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvRef {
    Name(String),
    Path(PathBuf),
}

impl EnvRef {
    /// A path when `s` holds a `/` (or is `.`/`..`), else a name.
    pub fn parse(s: &str) -> PResult<EnvRef> {
        if s.is_empty() {
            return Err(
                PkgError::invalid("an environment needs a name or a path").with("field", "env")
            );
        }
        if s.contains('\0') {
            return Err(PkgError::invalid(
                "an environment path may not hold a NUL byte",
            ));
        }
        if s.contains('/') || s == "." || s == ".." {
            return Ok(EnvRef::Path(PathBuf::from(s)));
        }
        Ok(EnvRef::Name(names::env_name(s)?.to_string()))
    }

    /// The directory it means.
    pub fn dir(&self) -> PResult<PathBuf> {
        match self {
            EnvRef::Name(n) => Ok(datadir::envs_dir()?.join(n)),
            EnvRef::Path(p) if p.is_absolute() => Ok(p.clone()),
            EnvRef::Path(p) => std::env::current_dir()
                .map(|d| d.join(p))
                .map_err(|e| PkgError::internal(format!("cannot read the current directory: {e}"))),
        }
    }
}

/// What `create` takes (JSON: every key optional but one of `name`/`path`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSpec {
    pub name: Option<String>,
    pub path: Option<String>,
    pub lua_version: Option<String>,
    pub interpreter: Option<String>,
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub include_system_modules: bool,
    pub luarocks: Option<String>,
    pub lua_incdir: Option<String>,
    /// `false`: no cache; a string: that directory; absent/`true`: the shared cache.
    pub cache: Option<Value>,
    /// Opening an environment that exists (with the same Lua version) is not an error.
    #[serde(default)]
    pub exist_ok: bool,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes `data` to `path` through a temporary file and a rename (never half-written).
pub fn write_atomic(path: &Path, data: &[u8]) -> PResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:?}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&tmp, data).map_err(|e| PkgError::io("cannot write", &tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PkgError::io("cannot write", path, &e)
    })
}

/// Parses a JSON object strictly (duplicate keys refused) into `T`.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> PResult<T> {
    let v = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        crate::json::parse(text)
            .map_err(|e| PkgError::invalid(format!("{what} is not valid JSON: {e}")))?
    };
    if !v.is_object() {
        return Err(PkgError::invalid(format!("{what} must be a JSON object")));
    }
    serde_json::from_value(v).map_err(|e| PkgError::invalid(format!("{what}: {e}")))
}

/// The empty tree manifest luarocks starts from.
pub const EMPTY_MANIFEST: &str =
    "commands = {}\ndependencies = {}\nmodules = {}\nrepository = {}\n";

impl Environment {
    pub fn tree(&self) -> PathBuf {
        self.root.join("tree")
    }
    pub fn lua_dir(&self) -> PathBuf {
        self.tree().join("share/lua").join(&self.meta.lua_version)
    }
    pub fn lib_dir(&self) -> PathBuf {
        self.tree().join("lib/lua").join(&self.meta.lua_version)
    }
    pub fn rocks_dir(&self) -> PathBuf {
        self.tree()
            .join("lib/luarocks")
            .join(format!("rocks-{}", self.meta.lua_version))
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.rocks_dir().join("manifest")
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("luarocks-config.lua")
    }
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn download_cache(&self) -> PathBuf {
        self.root.join("download-cache")
    }
    pub fn lockfile_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub fn servers(&self) -> PResult<Vec<Server>> {
        servers::parse_list(&self.meta.servers)
    }

    /// The cache of built rocks this environment uses, if any.
    pub fn cache_dir(&self) -> PResult<Option<PathBuf>> {
        match self.meta.cache.as_deref() {
            None => datadir::cache_dir().map(Some),
            Some("") => Ok(None),
            Some(p) => Ok(Some(PathBuf::from(p))),
        }
    }

    /// Creates an environment (see [`CreateSpec`]).
    pub fn create(spec: &CreateSpec) -> PResult<Environment> {
        let r = match (&spec.name, &spec.path) {
            (Some(n), None) => EnvRef::Name(names::env_name(n)?.to_string()),
            (None, Some(p)) => match EnvRef::parse(p)? {
                EnvRef::Name(n) => EnvRef::Path(PathBuf::from(n)),
                r => r,
            },
            _ => {
                return Err(PkgError::invalid(
                    "give an environment exactly one of 'name' and 'path'",
                ))
            }
        };
        let root = r.dir()?;
        let mut env = Environment::plan(spec, root.clone())?;
        if let EnvRef::Name(n) = &r {
            env.meta.name = n.clone();
        }
        if root.join(META_FILE).exists() {
            let existing = Environment::open_dir(&root)?;
            if spec.exist_ok && existing.meta.lua_version == env.meta.lua_version {
                return Ok(existing);
            }
            return Err(PkgError::environment(format!(
                "environment {} already exists (Lua {})",
                root.display(),
                existing.meta.lua_version
            ))
            .with("path", root.display().to_string()));
        }
        if let Ok(mut entries) = std::fs::read_dir(&root) {
            if entries.next().is_some() {
                return Err(PkgError::environment(format!(
                    "{} exists and is not empty: an environment is only created in a new or empty directory",
                    root.display()
                ))
                .with("path", root.display().to_string()));
            }
        }
        let mk =
            |p: &Path| std::fs::create_dir_all(p).map_err(|e| PkgError::io("cannot create", p, &e));
        mk(&env.rocks_dir())?;
        for d in [env.home(), env.work(), env.download_cache()] {
            mk(&d)?;
        }
        write_atomic(&env.manifest_path(), EMPTY_MANIFEST.as_bytes())?;
        write_atomic(&env.config_path(), env.luarocks_config().as_bytes())?;
        // The metadata last: an environment is complete once it is there.
        env.save_meta()?;
        Ok(env)
    }

    /// The environment `spec` describes at `root`, checked, with nothing written.
    pub fn plan(spec: &CreateSpec, root: PathBuf) -> PResult<Environment> {
        let lua_version =
            names::lua_version(spec.lua_version.as_deref().unwrap_or("5.4"))?.to_string();
        let interpreter = match &spec.interpreter {
            Some(i) => names::plain_text("interpreter", i)?.to_string(),
            None => format!("lua{lua_version}"),
        };
        servers::parse_list(&spec.servers)?;
        for (what, v) in [
            ("luarocks", &spec.luarocks),
            ("lua_incdir", &spec.lua_incdir),
        ] {
            if let Some(v) = v {
                names::plain_text(what, v)?;
            }
        }
        let cache = match &spec.cache {
            None | Some(Value::Null) | Some(Value::Bool(true)) => None,
            Some(Value::Bool(false)) => Some(String::new()),
            Some(Value::String(p)) if p.starts_with('/') => {
                Some(names::plain_text("cache", p)?.to_string())
            }
            Some(_) => {
                return Err(PkgError::invalid(
                    "'cache' is true (the shared cache), false (none) or an absolute directory",
                ))
            }
        };
        let name = spec.name.clone().unwrap_or_else(|| {
            root.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("env")
                .to_string()
        });
        Ok(Environment {
            root,
            meta: EnvMeta {
                format: 1,
                name,
                lua_version,
                interpreter,
                servers: spec.servers.clone(),
                include_system_modules: spec.include_system_modules,
                luarocks: spec.luarocks.clone(),
                lua_incdir: spec.lua_incdir.clone(),
                cache,
                created: now(),
            },
        })
    }

    fn save_meta(&self) -> PResult<()> {
        let text = serde_json::to_string_pretty(&self.meta)
            .map_err(|e| PkgError::internal(format!("cannot write the metadata: {e}")))?;
        write_atomic(&self.root.join(META_FILE), text.as_bytes())
    }

    /// Opens the environment at `root`.
    pub fn open_dir(root: &Path) -> PResult<Environment> {
        let meta_path = root.join(META_FILE);
        let text = match std::fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PkgError::environment(format!(
                    "no environment at {} (create it first)",
                    root.display()
                ))
                .with("path", root.display().to_string()))
            }
            Err(e) => return Err(PkgError::io("cannot read", &meta_path, &e)),
        };
        let meta: EnvMeta = from_json(&text, &meta_path.display().to_string())
            .map_err(|e| PkgError::environment(e.message))?;
        names::lua_version(&meta.lua_version).map_err(|e| PkgError::environment(e.message))?;
        Ok(Environment {
            root: root.to_path_buf(),
            meta,
        })
    }

    /// Opens the environment `r` names.
    pub fn open(r: &EnvRef) -> PResult<Environment> {
        Environment::open_dir(&r.dir()?)
    }

    /// Opens an environment from a caller's string (a name or a path).
    pub fn open_str(s: &str) -> PResult<Environment> {
        Environment::open(&EnvRef::parse(s)?)
    }

    /// Changes the servers (the configuration is written again).
    pub fn set_servers(&mut self, list: &[String]) -> PResult<()> {
        servers::parse_list(list)?;
        self.meta.servers = list.to_vec();
        write_atomic(&self.config_path(), self.luarocks_config().as_bytes())?;
        self.save_meta()
    }

    /// luarocks' configuration for this environment: its tree alone, its servers alone,
    /// its own download cache.
    pub fn luarocks_config(&self) -> String {
        let q = luaval::lua_string;
        let mut c = String::from(
            "-- Written by bioxen_vm for this environment; rewritten when it changes.\n",
        );
        c.push_str(&format!(
            "rocks_trees = {{ {{ name = \"bioxen\", root = {} }} }}\n",
            q(&self.tree().display().to_string())
        ));
        let servers: Vec<String> = self
            .servers()
            .unwrap_or_default()
            .iter()
            .map(|s| q(&s.luarocks_form()))
            .collect();
        c.push_str(&format!("rocks_servers = {{ {} }}\n", servers.join(", ")));
        c.push_str(&format!(
            "local_cache = {}\n",
            q(&self.download_cache().display().to_string())
        ));
        c.push_str("deps_mode = \"one\"\n");
        if let Some(inc) = &self.meta.lua_incdir {
            c.push_str(&format!("variables = {{ LUA_INCDIR = {} }}\n", q(inc)));
        }
        c
    }

    /// The facts `list` and `info` report.
    pub fn describe(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), self.meta.name.clone().into());
        m.insert("path".into(), self.root.display().to_string().into());
        m.insert("lua_version".into(), self.meta.lua_version.clone().into());
        m.insert("interpreter".into(), self.meta.interpreter.clone().into());
        m.insert("servers".into(), self.meta.servers.clone().into());
        m.insert(
            "include_system_modules".into(),
            self.meta.include_system_modules.into(),
        );
        m.insert("tree".into(), self.tree().display().to_string().into());
        m.insert(
            "lockfile".into(),
            if self.lockfile_path().exists() {
                self.lockfile_path().display().to_string().into()
            } else {
                Value::Null
            },
        );
        m.insert(
            "cache".into(),
            match self.cache_dir() {
                Ok(Some(p)) => p.display().to_string().into(),
                _ => Value::Null,
            },
        );
        m.insert("created".into(), self.meta.created.into());
        m
    }
}

/// The environments under the data directory, by name.
pub fn list() -> PResult<Vec<Environment>> {
    let dir = datadir::envs_dir()?;
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(PkgError::io("cannot list", &dir, &e)),
    };
    for entry in entries.flatten() {
        if let Ok(env) = Environment::open_dir(&entry.path()) {
            out.push(env);
        }
    }
    out.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    Ok(out)
}

/// Removes an environment (only a directory that holds an environment's metadata).
pub fn remove(r: &EnvRef, deadline: crate::deadline::Deadline) -> PResult<()> {
    let env = Environment::open(r)?;
    let _lock = super::flock::lock(&env.lock_path(), true, deadline)?;
    // The metadata first: from now on nothing opens it as an environment.
    let meta = env.root.join(META_FILE);
    std::fs::remove_file(&meta).map_err(|e| PkgError::io("cannot remove", &meta, &e))?;
    std::fs::remove_dir_all(&env.root).map_err(|e| PkgError::io("cannot remove", &env.root, &e))
}
