//! Installing and removing rocks in an environment, under its lock.
//!
//! An install first chooses the version from what the servers have (the highest that
//! meets the constraint, as luarocks chooses). When the cache holds that rock built for
//! this Lua version and architecture, and each dependency is either installed already or
//! cached too, the rocks are copied in and the manifest updated without running luarocks
//! at all. Otherwise luarocks installs it, and every rock the install added is stored in
//! the cache for the next environment.

use super::cache::{Cache, Object};
use super::env::Environment;
use super::error::{PResult, PkgError};
use super::flock;
use super::hash;
use super::index::{self, ServerIndex};
use super::luarocks;
use super::names;
use super::progress::{self, Progress};
use super::tree::{self, TreeManifest};
use super::version::{self, Constraints, Dependency};
use crate::deadline::Deadline;
use crate::status::bioxen_vm_status as St;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long reading one server's manifest may take.
pub const INDEX_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of one install.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Install again even when that version is installed.
    pub force: bool,
    /// Use (and fill) the cache of built rocks.
    pub use_cache: bool,
    pub deadline: Deadline,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            force: false,
            use_cache: true,
            deadline: Deadline::NEVER,
        }
    }
}

/// A rock the operation put in the tree.
fn rock_json(name: &str, version: &str, from_cache: bool) -> Value {
    json!({ "name": name, "version": version, "from_cache": from_cache })
}

fn no_match(name: &str, c: &Constraints, avail: &[String], indexes: &[ServerIndex]) -> PkgError {
    let servers: Vec<&str> = indexes.iter().map(|i| i.server.as_str()).collect();
    if avail.is_empty() {
        let similar = index::similar(indexes, name);
        let hint = if similar.is_empty() {
            String::new()
        } else {
            format!(" (similar names there: {})", similar.join(", "))
        };
        PkgError::new(
            St::PackageNotFound,
            "no_such_rock",
            format!(
                "no such rock '{name}' on the environment's servers ({}){hint}",
                servers.join(", ")
            ),
        )
        .with("rock", name)
        .with("servers", servers)
        .with("similar", similar)
    } else {
        PkgError::new(
            St::PackageNotFound,
            "no_matching_version",
            format!(
                "no version of '{name}' meets {}; the servers have {}",
                c.text,
                avail.join(", ")
            ),
        )
        .with("rock", name)
        .with("constraint", format!("{name} {}", c.text))
        .with("available", avail.to_vec())
        .with("servers", servers)
    }
}

/// Adds to a luarocks failure what the servers have of the rock it names.
fn explain(mut e: PkgError, indexes: &[ServerIndex], rock: &str) -> PkgError {
    e = e.with("rock", rock);
    if e.status == St::DependencyConflict {
        if let Some(c) = e
            .detail
            .get("constraint")
            .and_then(Value::as_str)
            .map(String::from)
        {
            if let Ok(d) = Dependency::parse(&c) {
                let (avail, _) = index::versions_of(indexes, &d.name);
                let have = if avail.is_empty() {
                    "none of the servers has it".to_string()
                } else {
                    format!("the servers have {} {}", d.name, avail.join(", "))
                };
                e.message = format!("{}; {have}", e.message);
                e = e.with("dependency", d.name).with("available", avail);
            }
        }
    }
    e
}

/// The rocks `plan` adds from the cache for `name version`, or None when some rock is not
/// cached, some dependency cannot be chosen, or the tree holds another version.
fn plan_warm(
    env: &Environment,
    cache: &Cache,
    manifest: &TreeManifest,
    indexes: &[ServerIndex],
    name: &str,
    version: &str,
) -> Option<Vec<Object>> {
    let lua = &env.meta.lua_version;
    let provided = tree::provided(lua);
    let mut planned: Vec<Object> = Vec::new();
    let mut stack = vec![(name.to_string(), version.to_string())];
    while let Some((n, v)) = stack.pop() {
        if let Some(p) = planned.iter().find(|o| o.entry.name == n) {
            if p.entry.version == v {
                continue;
            }
            return None;
        }
        if !manifest.versions_of(&n).is_empty() {
            return None;
        }
        let o = cache.lookup(lua, &n, &v)?;
        let (_, deps) = o.manifest_parts().ok()?;
        let mut scratch = TreeManifest::empty();
        scratch.root.entry("dependencies").entry(&n).set(&v, deps);
        for (dn, dc) in scratch.declared_deps(&n, &v) {
            if let Some((_, pv)) = provided.iter().find(|(p, _)| *p == dn) {
                if !dc.matches(&version::Version::parse(pv)?) {
                    return None;
                }
                continue;
            }
            if manifest.installed_match(&dn, &dc).is_some() {
                continue;
            }
            if let Some(p) = planned.iter().find(|o| o.entry.name == dn) {
                if dc.matches(&version::Version::parse(&p.entry.version)?) {
                    continue;
                }
                return None;
            }
            let (avail, _) = index::versions_of(indexes, &dn);
            let best = version::best(avail.iter().map(String::as_str), &dc)?;
            stack.push((dn, best.to_string()));
        }
        planned.push(o);
    }
    Some(planned)
}

/// Copies planned rocks into the tree and records them; undoes the copies on failure.
pub fn apply_warm(
    env: &Environment,
    cache: &Cache,
    manifest: &mut TreeManifest,
    plan: &[Object],
) -> PResult<()> {
    let mut linked: Vec<&Object> = Vec::new();
    let mut parts = Vec::new();
    let r = (|| -> PResult<()> {
        for o in plan {
            let p = o.manifest_parts()?;
            cache.link_into(o, env).inspect_err(|_| cache.evict(o))?;
            linked.push(o);
            parts.push(p);
        }
        Ok(())
    })();
    if let Err(e) = r {
        for o in linked {
            for f in o.entry.files.iter().chain(o.entry.wrappers.iter()) {
                let _ = std::fs::remove_file(env.tree().join(f));
            }
        }
        return Err(e);
    }
    for (o, (entry, deps)) in plan.iter().zip(parts) {
        manifest.add(
            &o.entry.name,
            &o.entry.version,
            entry,
            deps,
            &env.meta.lua_version,
        );
    }
    manifest.save(env)
}

/// Stores in the cache every rock `after` has that `before` had not.
fn capture(
    env: &Environment,
    cache: Option<&Cache>,
    before: &BTreeSet<(String, String)>,
    after: &TreeManifest,
) -> Vec<(String, String)> {
    let added: Vec<(String, String)> = after
        .installed()
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    if let Some(cache) = cache {
        for (n, v) in &added {
            let r = (|| -> PResult<()> {
                let Some(files) = tree::rock_files(env, n, v)? else {
                    return Ok(());
                };
                let h = hash::rock_hash(&env.tree(), &files.files)?;
                cache.store(
                    env,
                    after,
                    &super::cache::Built {
                        name: n,
                        version: v,
                        files: &files,
                        hash: &h,
                    },
                )
            })();
            if let Err(e) = r {
                log::debug!(target: "bioxen_vm::packages", "not caching {n} {v}: {}", e.message);
            }
        }
    }
    added
}

/// Runs luarocks `install` for `name version` (with `extra` arguments) and returns what
/// it added; `what` names it in errors.
pub fn luarocks_install(
    env: &Environment,
    cache: Option<&Cache>,
    name: &str,
    version: Option<&str>,
    extra: &[&str],
    deadline: Deadline,
    progress: Option<&Progress>,
) -> PResult<(Vec<(String, String)>, luarocks::RunOutput)> {
    let before: BTreeSet<(String, String)> =
        TreeManifest::load(env)?.installed().into_iter().collect();
    let mut args = vec!["install".to_string()];
    args.extend(luarocks::server_args(env)?);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(name.to_string());
    if let Some(v) = version {
        args.push(v.to_string());
    }
    progress::step(progress, "luarocks", Some(name), version)?;
    let out = luarocks::run(env, &args, deadline, progress)?;
    if out.status != Some(0) {
        let what = match version {
            Some(v) => format!("installing {name} {v}"),
            None => format!("installing {name}"),
        };
        return Err(luarocks::failure(&out, &what));
    }
    let after = TreeManifest::load(env)?;
    let added = capture(env, cache, &before, &after);
    Ok((added, out))
}

fn run_json(o: &luarocks::RunOutput) -> Value {
    json!({ "exit_status": o.status, "stdout": o.stdout, "stderr": o.stderr, "command": o.argv })
}

/// Installs `name` (optionally meeting `constraint`) into `env`.
pub fn install(
    env: &Environment,
    name: &str,
    constraint: Option<&str>,
    o: &InstallOptions,
    progress: Option<&Progress>,
) -> PResult<Value> {
    let name = names::rock_name(name)?.to_ascii_lowercase();
    let cons = Constraints::parse(constraint.unwrap_or(""))?;
    let servers = env.servers()?;
    luarocks::server_args(env)?;
    let _lock = flock::lock(&env.lock_path(), true, o.deadline)?;
    progress::step(progress, "resolve", Some(&name), None)?;
    let indexes = index::read_all(&servers, &env.meta.lua_version, INDEX_TIMEOUT);
    let (mut avail, complete) = index::versions_of(&indexes, &name);
    if !complete && !cons.is_any() && cons.exact().is_none() {
        // luarocks' command line takes a version, not a constraint: ask luarocks what the
        // servers this layer cannot read have, and choose from all of it.
        avail.extend(luarocks::search_versions(env, &name, o.deadline)?);
        avail = version::sorted_desc(avail);
    }
    let target = version::best(avail.iter().map(String::as_str), &cons).map(str::to_string);
    if target.is_none() && (complete || (!cons.is_any() && cons.exact().is_none())) {
        return Err(no_match(&name, &cons, &avail, &indexes));
    }
    let mut manifest = TreeManifest::load(env)?;
    let installed = manifest.installed_match(&name, &cons);
    let same = match (&target, &installed) {
        (Some(t), Some(i)) => t == i,
        (None, Some(_)) => true,
        _ => false,
    };
    if same && !o.force {
        let v = installed.unwrap_or_default();
        // The work is done: a cancel now changes nothing.
        let _ = progress::step(progress, "already-installed", Some(&name), Some(&v));
        return Ok(json!({
            "env": env.root.display().to_string(), "rock": name, "version": v,
            "already_installed": true, "installed": [], "luarocks": null,
        }));
    }
    let cache = if o.use_cache {
        Cache::for_env(env)?
    } else {
        None
    };
    if let (Some(c), Some(t), false) = (&cache, &target, o.force) {
        if let Some(plan) = plan_warm(env, c, &manifest, &indexes, &name, t) {
            match apply_warm(env, c, &mut manifest, &plan) {
                Ok(()) => {
                    let rocks: Vec<Value> = plan
                        .iter()
                        .map(|p| {
                            // The copy is done: a cancel now changes nothing.
                            let _ = progress::step(
                                progress,
                                "cache-hit",
                                Some(&p.entry.name),
                                Some(&p.entry.version),
                            );
                            rock_json(&p.entry.name, &p.entry.version, true)
                        })
                        .collect();
                    return Ok(json!({
                        "env": env.root.display().to_string(), "rock": name, "version": t,
                        "already_installed": false, "installed": rocks, "luarocks": null,
                    }));
                }
                Err(e) => {
                    log::debug!(target: "bioxen_vm::packages", "cache copy of {name} failed, building: {}", e.message);
                    manifest = TreeManifest::load(env)?;
                }
            }
        }
    }
    let _ = manifest;
    let version = target
        .clone()
        .or_else(|| cons.exact().map(|v| v.text.clone()));
    let extra: &[&str] = if o.force { &["--force"] } else { &[] };
    let (added, out) = luarocks_install(
        env,
        cache.as_ref(),
        &name,
        version.as_deref(),
        extra,
        o.deadline,
        progress,
    )
    .map_err(|e| explain(e, &indexes, &name))?;
    let now = TreeManifest::load(env)?;
    let v = now
        .installed_match(&name, &cons)
        .or(version)
        .unwrap_or_default();
    let rocks: Vec<Value> = added.iter().map(|(n, v)| rock_json(n, v, false)).collect();
    // The work is done: a cancel now changes nothing.
    let _ = progress::step(progress, "installed", Some(&name), Some(&v));
    Ok(json!({
        "env": env.root.display().to_string(), "rock": name, "version": v,
        "already_installed": false, "installed": rocks, "luarocks": run_json(&out),
    }))
}

/// Removes `name` (one version, or the installed one) from `env`. `force` removes it even
/// when other rocks depend on it.
pub fn remove(
    env: &Environment,
    name: &str,
    version: Option<&str>,
    force: bool,
    deadline: Deadline,
    progress: Option<&Progress>,
) -> PResult<Value> {
    let name = names::rock_name(name)?.to_ascii_lowercase();
    if let Some(v) = version {
        names::version(v)?;
    }
    let _lock = flock::lock(&env.lock_path(), true, deadline)?;
    let manifest = TreeManifest::load(env)?;
    let have = manifest.versions_of(&name);
    let present = match version {
        Some(v) => have.iter().any(|h| h == v),
        None => !have.is_empty(),
    };
    if !present {
        return Err(PkgError::new(
            St::PackageNotFound,
            "not_installed",
            format!(
                "{name}{} is not installed in {}",
                version.map(|v| format!(" {v}")).unwrap_or_default(),
                env.root.display()
            ),
        )
        .with("rock", name.as_str())
        .with("installed_versions", have));
    }
    let mut args = vec!["remove".to_string()];
    if force {
        args.push("--force".into());
    }
    args.push(name.clone());
    if let Some(v) = version {
        args.push(v.to_string());
    }
    progress::step(progress, "luarocks", Some(&name), version)?;
    let out = luarocks::run(env, &args, deadline, progress)?;
    if out.status != Some(0) {
        return Err(
            luarocks::failure(&out, &format!("removing {name}")).with("rock", name.as_str())
        );
    }
    let after = TreeManifest::load(env)?;
    let removed: Vec<Value> = manifest
        .installed()
        .into_iter()
        .filter(|r| !after.installed().contains(r))
        .map(|(n, v)| json!({ "name": n, "version": v }))
        .collect();
    // The work is done: a cancel now changes nothing.
    let _ = progress::step(progress, "removed", Some(&name), version);
    Ok(
        json!({ "env": env.root.display().to_string(), "rock": name, "removed": removed, "luarocks": run_json(&out) }),
    )
}

/// What is installed: `[{name, version, modules, commands, dependencies}]`, by name.
pub fn list(env: &Environment, deadline: Deadline) -> PResult<Value> {
    let _lock = flock::lock(&env.lock_path(), false, deadline)?;
    Ok(list_manifest(&TreeManifest::load(env)?))
}

/// `list`'s report of a manifest.
pub fn list_manifest(m: &TreeManifest) -> Value {
    Value::Array(
        m.installed()
            .into_iter()
            .map(|(n, v)| {
                let modules: Vec<String> =
                    m.modules_of(&n, &v).into_iter().map(|(k, _)| k).collect();
                json!({
                    "name": n, "version": v, "modules": modules,
                    "commands": m.commands_of(&n, &v),
                    "dependencies": m.resolved_deps(&n, &v),
                })
            })
            .collect(),
    )
}

/// One installed rock in detail: version, summary, license, homepage, modules (with
/// files), dependencies (declared and resolved), commands, files and hash.
pub fn show(env: &Environment, name: &str, deadline: Deadline) -> PResult<Value> {
    let name = names::rock_name(name)?.to_ascii_lowercase();
    let _lock = flock::lock(&env.lock_path(), false, deadline)?;
    let m = TreeManifest::load(env)?;
    let versions = m.versions_of(&name);
    let Some(v) = version::sorted_desc(versions).into_iter().next() else {
        return Err(PkgError::new(
            St::PackageNotFound,
            "not_installed",
            format!("{name} is not installed in {}", env.root.display()),
        )
        .with("rock", name.as_str()));
    };
    let rockspec_path = env
        .rocks_dir()
        .join(&name)
        .join(&v)
        .join(format!("{name}-{v}.rockspec"));
    let spec = super::luaval::load_file(&rockspec_path).ok();
    let desc = |k: &str| {
        spec.as_ref()
            .and_then(|s| s.get("description"))
            .and_then(|d| d.get(k))
            .and_then(|x| x.as_str())
            .map(String::from)
    };
    let files = tree::rock_files(env, &name, &v)?;
    let hash = match &files {
        Some(f) => Some(hash::rock_hash(&env.tree(), &f.files)?),
        None => None,
    };
    let modules: serde_json::Map<String, Value> = m
        .modules_of(&name, &v)
        .into_iter()
        .map(|(k, f)| (k, Value::from(f)))
        .collect();
    let declared: Vec<String> = m
        .declared_deps(&name, &v)
        .into_iter()
        .map(|(n, c)| {
            if c.is_any() {
                n
            } else {
                format!("{n} {}", c.text)
            }
        })
        .collect();
    Ok(json!({
        "name": name, "version": v,
        "summary": desc("summary"), "license": desc("license"), "homepage": desc("homepage"),
        "modules": modules, "commands": m.commands_of(&name, &v),
        "dependencies": declared, "resolved_dependencies": m.resolved_deps(&name, &v),
        "files": files.as_ref().map(|f| f.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()),
        "hash": hash, "location": env.tree().display().to_string(),
    }))
}
