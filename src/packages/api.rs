//! Every package operation as a JSON request and a JSON reply (the C API's shape).
//!
//! Common request keys: `env` (a name or a path; on an SSH host a name or an absolute
//! path), `ssh` (an object of `ssh` VM options: the environment is on that host), and
//! `timeout` (seconds for the whole operation, waiting for the environment's lock
//! included; none by default). Unknown keys and keys given twice are refused.

use super::catalog;
use super::env::{self, CreateSpec, EnvRef, Environment};
use super::error::{PResult, PkgError};
use super::health;
use super::index;
use super::install::{self, InstallOptions};
use super::lockfile::{self, Lockfile};
use super::progress::{self, Progress};
use super::remote::Remote;
use super::search;
use super::servers;
use super::version::Dependency;
use crate::deadline::Deadline;
use crate::vm::ssh::SshOptions;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Duration;

/// The operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Open,
    Environments,
    RemoveEnv,
    Install,
    Remove,
    List,
    Show,
    Search,
    Lock,
    Sync,
    Bootstrap,
    Health,
    Profiles,
}

/// The keys every request may hold, taken out before the operation's own are parsed.
struct Common {
    env: Option<String>,
    ssh: Option<SshOptions>,
    deadline: Deadline,
    rest: Map<String, Value>,
}

fn common(text: &str) -> PResult<Common> {
    let mut map = match text.trim() {
        "" => Map::new(),
        t => match crate::json::parse(t) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(PkgError::invalid("the request must be a JSON object")),
            Err(e) => {
                return Err(PkgError::invalid(format!(
                    "the request is not valid JSON: {e}"
                )))
            }
        },
    };
    let env = match map.remove("env") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(PkgError::invalid(
                "'env' must be a string (a name or a path)",
            ))
        }
    };
    let ssh = match map.remove("ssh") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(SshOptions::from_json(m, None).map_err(PkgError::from)?),
        Some(_) => {
            return Err(PkgError::invalid(
                "'ssh' must be an object of ssh VM options",
            ))
        }
    };
    let deadline = match map.remove("timeout") {
        None | Some(Value::Null) => Deadline::NEVER,
        Some(v) => match crate::vm::options::seconds_value(&v) {
            Some(s) if s > 0.0 => Deadline::after(Some(Duration::from_secs_f64(s))),
            Some(_) => Deadline::NEVER,
            None => {
                return Err(PkgError::invalid(
                    "'timeout' must be a non-negative number of seconds",
                ))
            }
        },
    };
    Ok(Common {
        env,
        ssh,
        deadline,
        rest: map,
    })
}

fn parse<T: DeserializeOwned>(rest: Map<String, Value>, what: &str) -> PResult<T> {
    serde_json::from_value(Value::Object(rest))
        .map_err(|e| PkgError::invalid(format!("{what} request: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallReq {
    rock: String,
    /// A version or a constraint (`1.2-1`, `>= 1.0, < 2.0`).
    version: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    locked: bool,
    cache: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveReq {
    rock: String,
    version: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowReq {
    rock: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchReq {
    query: String,
    #[serde(default)]
    catalogs: Vec<String>,
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    limit: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockReq {
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncReq {
    /// A lockfile path (default: the environment's own).
    lockfile: Option<String>,
    /// A lockfile given inline.
    lock: Option<Value>,
    cache: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapReq {
    profile: String,
    #[serde(default)]
    catalogs: Vec<String>,
    lock: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesReq {
    #[serde(default)]
    catalogs: Vec<String>,
}

fn need_env(c: &Common) -> PResult<&str> {
    c.env.as_deref().ok_or_else(|| {
        PkgError::invalid("the request needs 'env' (a name or a path)").with("field", "env")
    })
}

fn local_env(c: &Common) -> PResult<Environment> {
    Environment::open_str(need_env(c)?)
}

fn remote(c: &Common) -> PResult<Option<(Remote, Option<Environment>)>> {
    let Some(o) = &c.ssh else { return Ok(None) };
    let r = Remote::connect(o)?;
    let env = match &c.env {
        Some(e) => {
            let dir = r.resolve(e)?;
            Some(r.open(&dir)?)
        }
        None => None,
    };
    Ok(Some((r, env)))
}

fn need_remote_env(env: Option<Environment>) -> PResult<Environment> {
    env.ok_or_else(|| PkgError::invalid("the request needs 'env'").with("field", "env"))
}

/// Runs `op` on the request `text`.
pub fn call(op: Op, text: &str, progress: Option<&Progress>) -> PResult<Value> {
    let c = common(text)?;
    match op {
        Op::Create => {
            let mut rest = c.rest.clone();
            if let Some(e) = &c.env {
                if rest.contains_key("name") || rest.contains_key("path") {
                    return Err(PkgError::invalid("give one of 'env', 'name' and 'path'"));
                }
                let key = match EnvRef::parse(e)? {
                    EnvRef::Name(_) => "name",
                    EnvRef::Path(_) => "path",
                };
                rest.insert(key.into(), e.clone().into());
            }
            let spec: CreateSpec = parse(rest, "create")?;
            if let Some(o) = &c.ssh {
                let r = Remote::connect(o)?;
                let e = r.create(&spec)?;
                let mut d = e.describe();
                d.insert("host".into(), r.target().into());
                return Ok(Value::Object(d));
            }
            Ok(Value::Object(Environment::create(&spec)?.describe()))
        }
        Op::Open => {
            let _: Empty = parse(c.rest.clone(), "open")?;
            if let Some((r, e)) = remote(&c)? {
                let mut d = need_remote_env(e)?.describe();
                d.insert("host".into(), r.target().into());
                return Ok(Value::Object(d));
            }
            Ok(Value::Object(local_env(&c)?.describe()))
        }
        Op::Environments => {
            let _: Empty = parse(c.rest, "environments")?;
            Ok(Value::Array(
                env::list()?
                    .iter()
                    .map(|e| Value::Object(e.describe()))
                    .collect(),
            ))
        }
        Op::RemoveEnv => {
            let _: Empty = parse(c.rest.clone(), "remove_env")?;
            if c.ssh.is_some() {
                return Err(PkgError::invalid("removing an environment on an SSH host is not offered; remove its directory there"));
            }
            let r = EnvRef::parse(need_env(&c)?)?;
            let dir = r.dir()?;
            env::remove(&r, c.deadline)?;
            Ok(json!({ "removed": dir.display().to_string() }))
        }
        Op::Install => {
            let q: InstallReq = parse(c.rest.clone(), "install")?;
            if let Some((r, e)) = remote(&c)? {
                let e = need_remote_env(e)?;
                if q.locked {
                    return Err(PkgError::invalid(
                        "'locked' is for local environments; use sync with a lockfile on SSH hosts",
                    ));
                }
                return r.install(
                    &e,
                    &q.rock,
                    q.version.as_deref(),
                    q.force,
                    c.deadline,
                    progress,
                );
            }
            let e = local_env(&c)?;
            if q.locked {
                let l = lockfile::read(&e.lockfile_path())?;
                let name = super::names::rock_name(&q.rock)?.to_ascii_lowercase();
                if let Some(v) = &q.version {
                    let pinned = l.get(&name).map(|r| r.version.clone()).unwrap_or_default();
                    let cons = super::version::Constraints::parse(v)?;
                    if !super::version::Version::parse(&pinned).is_some_and(|p| cons.matches(&p)) {
                        return Err(PkgError::lockfile(format!(
                            "the lockfile pins {name} {pinned}, which does not meet {v}"
                        )));
                    }
                }
                return lockfile::sync(
                    &e,
                    &l,
                    Some(&name),
                    q.cache.unwrap_or(true),
                    c.deadline,
                    progress,
                );
            }
            let o = InstallOptions {
                force: q.force,
                use_cache: q.cache.unwrap_or(true),
                deadline: c.deadline,
            };
            install::install(&e, &q.rock, q.version.as_deref(), &o, progress)
        }
        Op::Remove => {
            let q: RemoveReq = parse(c.rest.clone(), "remove")?;
            if let Some((r, e)) = remote(&c)? {
                return r.remove(&need_remote_env(e)?, &q.rock, q.force, c.deadline);
            }
            install::remove(
                &local_env(&c)?,
                &q.rock,
                q.version.as_deref(),
                q.force,
                c.deadline,
                progress,
            )
        }
        Op::List => {
            let _: Empty = parse(c.rest.clone(), "list")?;
            if let Some((r, e)) = remote(&c)? {
                return r.list(&need_remote_env(e)?);
            }
            install::list(&local_env(&c)?, c.deadline)
        }
        Op::Show => {
            let q: ShowReq = parse(c.rest.clone(), "show")?;
            if c.ssh.is_some() {
                return Err(PkgError::invalid(
                    "show is for local environments; list works on SSH hosts",
                ));
            }
            install::show(&local_env(&c)?, &q.rock, c.deadline)
        }
        Op::Search => {
            let q: SearchReq = parse(c.rest.clone(), "search")?;
            let mut list = servers::parse_list(&q.servers)?;
            let mut lua = "5.4".to_string();
            if let Some(e) = &c.env {
                let e = Environment::open_str(e)?;
                list.extend(e.servers()?);
                lua = e.meta.lua_version.clone();
            }
            let catalogs = catalog::load_all(&q.catalogs)?;
            let indexes = index::read_all(&list, &lua, install::INDEX_TIMEOUT);
            let hits = search::search(&q.query, &catalogs, &indexes, q.limit);
            let unread: Vec<Value> = indexes
                .iter()
                .filter_map(|i| {
                    i.error
                        .as_ref()
                        .map(|e| json!({ "server": i.server, "message": e }))
                })
                .collect();
            Ok(json!({ "query": q.query, "results": hits, "unreadable_servers": unread }))
        }
        Op::Lock => {
            let q: LockReq = parse(c.rest.clone(), "lock")?;
            if let Some((r, e)) = remote(&c)? {
                if q.path.is_some() {
                    return Err(PkgError::invalid(
                        "on an SSH host the lockfile is written into the environment",
                    ));
                }
                return lock_json(&r.lock(&need_remote_env(e)?)?);
            }
            let e = local_env(&c)?;
            lock_json(&lockfile::lock(
                &e,
                q.path.as_deref().map(Path::new),
                c.deadline,
            )?)
        }
        Op::Sync => {
            let q: SyncReq = parse(c.rest.clone(), "sync")?;
            let l = match (&q.lock, &q.lockfile) {
                (Some(v), None) => Lockfile::parse(&v.to_string())?,
                (None, Some(p)) => lockfile::read(Path::new(p))?,
                (None, None) => {
                    if c.ssh.is_some() {
                        return Err(PkgError::invalid(
                            "sync on an SSH host needs 'lockfile' or 'lock'",
                        ));
                    }
                    lockfile::read(&local_env(&c)?.lockfile_path())?
                }
                (Some(_), Some(_)) => {
                    return Err(PkgError::invalid("give one of 'lock' and 'lockfile'"))
                }
            };
            if let Some((r, e)) = remote(&c)? {
                return r.sync(&need_remote_env(e)?, &l, c.deadline, progress);
            }
            lockfile::sync(
                &local_env(&c)?,
                &l,
                None,
                q.cache.unwrap_or(true),
                c.deadline,
                progress,
            )
        }
        Op::Bootstrap => {
            let q: BootstrapReq = parse(c.rest.clone(), "bootstrap")?;
            let catalogs = catalog::load_all(&q.catalogs)?;
            let profiles = catalog::profiles(&catalogs);
            let Some(p) = profiles.get(&q.profile) else {
                return Err(PkgError::invalid(format!(
                    "unknown profile '{}'; profiles: {}",
                    q.profile,
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
                .with("field", "profile"));
            };
            let deps: Vec<Dependency> = p
                .packages
                .iter()
                .map(|s| Dependency::parse(s))
                .collect::<PResult<_>>()?;
            let mut results = Vec::new();
            let rem = remote(&c)?;
            let local = if rem.is_none() {
                Some(local_env(&c)?)
            } else {
                None
            };
            for d in &deps {
                progress::step(progress, "profile-package", Some(&d.name), None)?;
                let cons = (!d.constraints.is_any()).then(|| d.constraints.text.clone());
                let r = match (&rem, &local) {
                    (Some((r, e)), _) => r.install(
                        &need_remote_env(e.clone())?,
                        &d.name,
                        cons.as_deref(),
                        false,
                        c.deadline,
                        progress,
                    )?,
                    (None, Some(e)) => install::install(
                        e,
                        &d.name,
                        cons.as_deref(),
                        &InstallOptions {
                            deadline: c.deadline,
                            ..Default::default()
                        },
                        progress,
                    )?,
                    (None, None) => unreachable!("one of them is set"),
                };
                results.push(r);
            }
            let lock = if q.lock.unwrap_or(true) {
                let l = match (&rem, &local) {
                    (Some((r, e)), _) => r.lock(&need_remote_env(e.clone())?)?,
                    (None, Some(e)) => lockfile::lock(e, None, c.deadline)?,
                    (None, None) => unreachable!("one of them is set"),
                };
                lock_json(&l)?
            } else {
                Value::Null
            };
            Ok(
                json!({ "profile": q.profile, "packages": p.packages, "results": results, "lock": lock }),
            )
        }
        Op::Health => {
            let _: Empty = parse(c.rest.clone(), "health")?;
            if c.ssh.is_some() {
                return Err(PkgError::invalid(
                    "the health check is for local environments",
                ));
            }
            health::health(&local_env(&c)?)
        }
        Op::Profiles => {
            let q: ProfilesReq = parse(c.rest, "profiles")?;
            let catalogs = catalog::load_all(&q.catalogs)?;
            let profiles = catalog::profiles(&catalogs);
            serde_json::to_value(profiles).map_err(|e| PkgError::internal(e.to_string()))
        }
    }
}

fn lock_json(l: &Lockfile) -> PResult<Value> {
    serde_json::to_value(l).map_err(|e| PkgError::internal(e.to_string()))
}
