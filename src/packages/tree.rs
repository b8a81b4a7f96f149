//! A tree's manifest (`lib/luarocks/rocks-5.x/manifest`) and the files each installed
//! rock owns, read and updated with luarocks' own rules (`manif/writer.lua` of 3.8:
//! `store_results`, `update_dependencies`, the sorted `modules`/`commands` index), so a
//! rock linked in from the cache leaves the same manifest luarocks would have written.

use super::env::{write_atomic, Environment, EMPTY_MANIFEST};
use super::error::{PResult, PkgError};
use super::luaval::{self, Key, LuaVal};
use super::version::{Constraints, Version};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest of one tree.
#[derive(Clone, Debug)]
pub struct TreeManifest {
    pub root: LuaVal,
}

/// The rocks a Lua version provides itself (luarocks' `util.get_rocks_provided`).
pub fn provided(lua_version: &str) -> Vec<(&'static str, String)> {
    let mut p = vec![("lua", format!("{lua_version}-1"))];
    match lua_version {
        "5.2" => p.push(("bit32", format!("{lua_version}-1"))),
        "5.3" | "5.4" => p.push(("utf8", format!("{lua_version}-1"))),
        _ => {}
    }
    p
}

/// One dependency as the manifest stores it: the name and its constraints.
fn dep_of(v: &LuaVal) -> Option<(String, Constraints)> {
    let name = v.get("name")?.as_str()?.to_string();
    let mut items = Vec::new();
    for c in v.get("constraints").map(LuaVal::array).unwrap_or_default() {
        let op = c.get("op").and_then(LuaVal::as_str)?;
        let ver = c.get("version")?.get("string").and_then(LuaVal::as_str)?;
        items.push(format!("{op} {ver}"));
    }
    let c = Constraints::parse(&items.join(", ")).ok()?;
    Some((name, c))
}

impl TreeManifest {
    pub fn empty() -> TreeManifest {
        TreeManifest {
            root: luaval::load(EMPTY_MANIFEST.as_bytes(), "manifest")
                .unwrap_or_else(|_| LuaVal::table()),
        }
    }

    /// Reads the environment's manifest (an absent one is empty).
    pub fn load(env: &Environment) -> PResult<TreeManifest> {
        let p = env.manifest_path();
        match std::fs::read(&p) {
            Ok(text) => Ok(TreeManifest {
                root: luaval::load(&text, &p.display().to_string())?,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TreeManifest::empty()),
            Err(e) => Err(PkgError::io("cannot read", &p, &e)),
        }
    }

    /// Writes it (atomically), as luarocks writes it.
    pub fn save(&self, env: &Environment) -> PResult<()> {
        write_atomic(
            &env.manifest_path(),
            luaval::save_assignments(&self.root).as_bytes(),
        )
    }

    /// Every installed (name, version), sorted by name then version.
    pub fn installed(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(repo) = self.root.get("repository") {
            for (name, versions) in repo.pairs() {
                for (ver, _) in versions.pairs() {
                    out.push((name.to_string(), ver.to_string()));
                }
            }
        }
        out
    }

    pub fn versions_of(&self, name: &str) -> Vec<String> {
        self.root
            .get("repository")
            .and_then(|r| r.get(name))
            .map(|v| v.pairs().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// `repository[name][version][1]`.
    pub fn entry(&self, name: &str, version: &str) -> Option<&LuaVal> {
        self.root
            .get("repository")?
            .get(name)?
            .get(version)?
            .array()
            .first()
            .copied()
    }

    /// `dependencies[name][version]` (the rockspec's dependencies, parsed).
    pub fn deps_of(&self, name: &str, version: &str) -> Option<&LuaVal> {
        self.root.get("dependencies")?.get(name)?.get(version)
    }

    /// The modules (name → file) a rock provides.
    pub fn modules_of(&self, name: &str, version: &str) -> Vec<(String, String)> {
        self.entry(name, version)
            .and_then(|e| e.get("modules"))
            .map(|m| {
                m.pairs()
                    .filter_map(|(k, v)| Some((k.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The commands a rock provides.
    pub fn commands_of(&self, name: &str, version: &str) -> Vec<String> {
        self.entry(name, version)
            .and_then(|e| e.get("commands"))
            .map(|m| m.pairs().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// The resolved dependencies `{name = version}` luarocks recorded for a rock.
    pub fn resolved_deps(&self, name: &str, version: &str) -> BTreeMap<String, String> {
        self.entry(name, version)
            .and_then(|e| e.get("dependencies"))
            .map(|d| {
                d.pairs()
                    .filter_map(|(k, v)| Some((k.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The declared dependencies of a rock, without what the Lua version provides.
    pub fn declared_deps(&self, name: &str, version: &str) -> Vec<(String, Constraints)> {
        self.deps_of(name, version)
            .map(|d| d.array().into_iter().filter_map(dep_of).collect())
            .unwrap_or_default()
    }

    /// The highest installed version of `name` meeting `c`.
    pub fn installed_match(&self, name: &str, c: &Constraints) -> Option<String> {
        let vs = self.versions_of(name);
        super::version::best(vs.iter().map(String::as_str), c).map(str::to_string)
    }

    /// Adds an installed rock: its repository entry and its parsed dependencies (as
    /// luarocks stored them), then the indexes and every rock's resolved dependencies.
    pub fn add(
        &mut self,
        name: &str,
        version: &str,
        entry: LuaVal,
        deps: LuaVal,
        lua_version: &str,
    ) {
        self.root
            .entry("repository")
            .entry(name)
            .set(version, LuaVal::from_array(vec![entry]));
        self.root
            .entry("dependencies")
            .entry(name)
            .set(version, deps);
        self.reindex(lua_version);
    }

    /// Removes an installed rock's entries (its files are the caller's business).
    pub fn remove(&mut self, name: &str, version: &str, lua_version: &str) {
        for key in ["repository", "dependencies"] {
            let t = self.root.entry(key);
            let now_empty = {
                let per = t.entry(name);
                per.remove(version);
                per.pairs().next().is_none()
            };
            if now_empty {
                t.remove(name);
            }
        }
        self.reindex(lua_version);
    }

    /// `modules`/`commands` from the repository entries (sorted as luarocks sorts: by
    /// name, higher versions first), then `update_dependencies`.
    fn reindex(&mut self, lua_version: &str) {
        let mut modules: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut commands: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (name, ver) in self.installed() {
            for (m, _) in self.modules_of(&name, &ver) {
                modules
                    .entry(m)
                    .or_default()
                    .push((name.clone(), ver.clone()));
            }
            for c in self.commands_of(&name, &ver) {
                commands
                    .entry(c)
                    .or_default()
                    .push((name.clone(), ver.clone()));
            }
        }
        let index = |m: BTreeMap<String, Vec<(String, String)>>| {
            let mut t = LuaVal::table();
            for (item, mut pkgs) in m {
                pkgs.sort_by(|a, b| {
                    if a.0 == b.0 {
                        let (x, y) = (Version::parse(&a.1), Version::parse(&b.1));
                        match (x, y) {
                            (Some(x), Some(y)) => {
                                y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
                            }
                            _ => std::cmp::Ordering::Equal,
                        }
                    } else {
                        a.0.cmp(&b.0)
                    }
                });
                pkgs.dedup();
                t.set(
                    &item,
                    LuaVal::from_array(
                        pkgs.into_iter()
                            .map(|(n, v)| LuaVal::str(format!("{n}/{v}")))
                            .collect(),
                    ),
                );
            }
            t
        };
        self.root.set("modules", index(modules));
        self.root.set("commands", index(commands));
        self.update_dependencies(lua_version);
    }

    /// Every installed entry's `dependencies`: the transitive closure of its declared
    /// dependencies over the installed rocks (highest matching version), without itself
    /// and without what the Lua version provides (`deps.scan_deps`).
    fn update_dependencies(&mut self, lua_version: &str) {
        let provided = provided(lua_version);
        let installed = self.installed();
        let mut closures = Vec::new();
        for (name, ver) in &installed {
            let mut results: BTreeMap<String, String> = BTreeMap::new();
            let mut stack = vec![(name.clone(), ver.clone())];
            while let Some((n, v)) = stack.pop() {
                if results.contains_key(&n) {
                    continue;
                }
                results.insert(n.clone(), v.clone());
                for (dn, dc) in self.declared_deps(&n, &v) {
                    if provided.iter().any(|(p, _)| *p == dn) {
                        continue;
                    }
                    if let Some(found) = self.installed_match(&dn, &dc) {
                        stack.push((dn, found));
                    }
                }
            }
            results.remove(name);
            closures.push((name.clone(), ver.clone(), results));
        }
        for (name, ver, deps) in closures {
            let mut t = LuaVal::table();
            for (k, v) in deps {
                t.set(&k, LuaVal::str(v));
            }
            if let Some(entry) = self.entry_mut(&name, &ver) {
                if entry.get("arch").and_then(LuaVal::as_str) == Some("installed") {
                    entry.set("dependencies", t);
                }
            }
        }
    }

    fn entry_mut(&mut self, name: &str, version: &str) -> Option<&mut LuaVal> {
        let key = |s: &str| Key::Str(s.to_string());
        self.root
            .as_table_mut()?
            .get_mut(&key("repository"))?
            .as_table_mut()?
            .get_mut(&key(name))?
            .as_table_mut()?
            .get_mut(&key(version))?
            .as_table_mut()?
            .get_mut(&Key::Int(1))
    }
}

/// The files one installed rock owns, relative to the tree.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RockFiles {
    /// Deployed modules and libraries and the rock's own directory (rockspec,
    /// rock_manifest, docs, the original scripts), sorted.
    pub files: Vec<PathBuf>,
    /// Command wrappers in `bin/` (they name the tree's absolute path).
    pub wrappers: Vec<PathBuf>,
}

fn flatten(v: &LuaVal, prefix: &Path, out: &mut Vec<PathBuf>) {
    for (k, sub) in v.pairs() {
        let p = prefix.join(k);
        match sub {
            LuaVal::Table(_) => flatten(sub, &p, out),
            _ => out.push(p),
        }
    }
}

fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        let r = rel.join(e.file_name());
        if t.is_dir() {
            walk(&e.path(), &r, out)?;
        } else if t.is_file() {
            out.push(r);
        }
    }
    Ok(())
}

/// The files of `name version` in `env`'s tree, from its `rock_manifest`. `None` when a
/// deployed file is not where a sole version would put it (luarocks renames the files of
/// a second version of a rock): such a rock is not cached or linked.
pub fn rock_files(env: &Environment, name: &str, version: &str) -> PResult<Option<RockFiles>> {
    let tree = env.tree();
    let v = &env.meta.lua_version;
    let rock_dir_rel = PathBuf::from("lib/luarocks")
        .join(format!("rocks-{v}"))
        .join(name)
        .join(version);
    let rm_path = tree.join(&rock_dir_rel).join("rock_manifest");
    let rm = luaval::load_file(&rm_path)?;
    let rm = rm
        .get("rock_manifest")
        .cloned()
        .unwrap_or_else(LuaVal::table);
    let mut files = Vec::new();
    let mut lua = Vec::new();
    if let Some(t) = rm.get("lua") {
        flatten(t, &PathBuf::from("share/lua").join(v), &mut lua);
    }
    if let Some(t) = rm.get("lib") {
        flatten(t, &PathBuf::from("lib/lua").join(v), &mut lua);
    }
    for f in &lua {
        if !tree.join(f).is_file() {
            return Ok(None);
        }
    }
    files.extend(lua);
    let mut wrappers = Vec::new();
    if let Some(t) = rm.get("bin") {
        for (k, _) in t.pairs() {
            let w = PathBuf::from("bin").join(k);
            if !tree.join(&w).is_file() {
                return Ok(None);
            }
            wrappers.push(w);
        }
    }
    walk(&tree.join(&rock_dir_rel), &rock_dir_rel, &mut files)
        .map_err(|e| PkgError::io("cannot list", &tree.join(&rock_dir_rel), &e))?;
    files.sort();
    files.dedup();
    wrappers.sort();
    Ok(Some(RockFiles { files, wrappers }))
}
