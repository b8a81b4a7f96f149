//! The content-addressed cache of built rocks, shared by every environment on the machine
//! (by default `<data dir>/cache`):
//!
//! ```text
//! objects/<sha256>/files/...      the rock's files, relative to a tree
//! objects/<sha256>/wrappers/...   its command wrappers, with the tree path as @BIOXEN_TREE@
//! objects/<sha256>/entry.lua      its manifest entries (repository and dependencies)
//! objects/<sha256>/entry.json     name, version, Lua version, architecture, file lists
//! keys/<lua>/<arch>/<name>/<version>   the sha256 of the object built for that key
//! ```
//!
//! An object is written under `tmp/` and renamed into place, so readers never see half an
//! object; writers racing on one object both succeed. Installing from the cache copies
//! the files (a hard link would let an edit in one environment change every other one)
//! and checks the copy against the object's hash before the manifest names it.

use super::env::{write_atomic, Environment};
use super::error::{PResult, PkgError};
use super::hash;
use super::luaval::{self, LuaVal};
use super::tree::{RockFiles, TreeManifest};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The tree path inside cached wrappers.
const TREE_MARK: &str = "@BIOXEN_TREE@";

/// The platform as luarocks names it (`linux-x86_64`).
pub fn arch() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// What `entry.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub lua_version: String,
    pub arch: String,
    pub hash: String,
    pub files: Vec<PathBuf>,
    pub wrappers: Vec<PathBuf>,
}

/// One cached rock.
#[derive(Clone, Debug)]
pub struct Object {
    pub dir: PathBuf,
    pub entry: Entry,
}

impl Object {
    /// Its repository entry and parsed dependencies, as the tree manifest takes them.
    pub fn manifest_parts(&self) -> PResult<(LuaVal, LuaVal)> {
        let v = luaval::load_file(&self.dir.join("entry.lua"))?;
        let entry = v.get("entry").cloned().unwrap_or_else(LuaVal::table);
        let deps = v.get("dependencies").cloned().unwrap_or_else(LuaVal::table);
        Ok((entry, deps))
    }
}

/// An installed rock to store: its files (listed and hashed already).
#[derive(Clone, Copy, Debug)]
pub struct Built<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub files: &'a RockFiles,
    pub hash: &'a str,
}

/// A cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    pub root: PathBuf,
}

fn key_ok(s: &str) -> bool {
    super::names::rock_name(s).is_ok() || super::names::version(s).is_ok()
}

impl Cache {
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The cache `env` uses (None when it has none).
    pub fn for_env(env: &Environment) -> PResult<Option<Cache>> {
        Ok(env.cache_dir()?.map(Cache::new))
    }

    fn key_path(&self, lua: &str, name: &str, version: &str) -> PathBuf {
        self.root
            .join("keys")
            .join(lua)
            .join(arch())
            .join(name)
            .join(version)
    }

    fn object_dir(&self, h: &str) -> Option<PathBuf> {
        hash::valid_hash(h).then(|| {
            self.root
                .join("objects")
                .join(h.trim_start_matches("sha256:"))
        })
    }

    /// The object stored under `h`, if any.
    pub fn object(&self, h: &str) -> Option<Object> {
        let dir = self.object_dir(h)?;
        let text = std::fs::read_to_string(dir.join("entry.json")).ok()?;
        let entry: Entry = serde_json::from_str(&text).ok()?;
        (entry.hash == h).then_some(Object { dir, entry })
    }

    /// The object built for (name, version) on this Lua version and architecture.
    pub fn lookup(&self, lua: &str, name: &str, version: &str) -> Option<Object> {
        if !key_ok(name) || !key_ok(version) {
            return None;
        }
        let h = std::fs::read_to_string(self.key_path(lua, name, version)).ok()?;
        let o = self.object(h.trim())?;
        (o.entry.name == name && o.entry.version == version && o.entry.lua_version == lua)
            .then_some(o)
    }

    /// Stores an installed rock of `env` (files already listed and hashed).
    pub fn store(
        &self,
        env: &Environment,
        manifest: &TreeManifest,
        rock: &Built<'_>,
    ) -> PResult<()> {
        let Built {
            name,
            version,
            hash: h,
            ..
        } = *rock;
        let lua = &env.meta.lua_version;
        let key = self.key_path(lua, name, version);
        let Some(final_dir) = self.object_dir(h) else {
            return Ok(());
        };
        if !final_dir.join("entry.json").exists() {
            let tmp = self.root.join("tmp").join(format!(
                "{}-{}-{}",
                std::process::id(),
                hash::hex(&crate::agent::new_token()),
                name
            ));
            let r = self.write_object(env, manifest, rock, &tmp);
            if r.is_ok() {
                let _ = std::fs::create_dir_all(self.root.join("objects"));
                // Someone else may have stored the same object meanwhile: theirs is as good.
                if std::fs::rename(&tmp, &final_dir).is_err()
                    && !final_dir.join("entry.json").exists()
                {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(PkgError::internal(format!(
                        "cannot store {} in the cache",
                        final_dir.display()
                    )));
                }
            }
            let _ = std::fs::remove_dir_all(&tmp);
            r?;
        }
        let parent = key.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(|e| PkgError::io("cannot create", parent, &e))?;
        write_atomic(&key, format!("{h}\n").as_bytes())
    }

    fn write_object(
        &self,
        env: &Environment,
        manifest: &TreeManifest,
        rock: &Built<'_>,
        tmp: &Path,
    ) -> PResult<()> {
        let Built {
            name,
            version,
            files,
            hash: h,
        } = *rock;
        let tree = env.tree();
        let tree_text = tree.display().to_string();
        for (list, sub) in [(&files.files, "files"), (&files.wrappers, "wrappers")] {
            for f in list {
                let dst = tmp.join(sub).join(f);
                if let Some(p) = dst.parent() {
                    std::fs::create_dir_all(p).map_err(|e| PkgError::io("cannot create", p, &e))?;
                }
                let src = tree.join(f);
                if sub == "wrappers" {
                    let text = std::fs::read_to_string(&src)
                        .map_err(|e| PkgError::io("cannot read", &src, &e))?;
                    std::fs::write(&dst, text.replace(&tree_text, TREE_MARK))
                        .map_err(|e| PkgError::io("cannot write", &dst, &e))?;
                } else {
                    std::fs::copy(&src, &dst).map_err(|e| PkgError::io("cannot copy", &src, &e))?;
                }
            }
        }
        let entry = manifest.entry(name, version).cloned().ok_or_else(|| {
            PkgError::internal(format!("{name} {version} is not in the manifest"))
        })?;
        let deps = manifest
            .deps_of(name, version)
            .cloned()
            .unwrap_or_else(LuaVal::table);
        let mut parts = LuaVal::table();
        parts.set("entry", entry);
        parts.set("dependencies", deps);
        let w = |p: &Path, data: &[u8]| {
            std::fs::write(p, data).map_err(|e| PkgError::io("cannot write", p, &e))
        };
        w(
            &tmp.join("entry.lua"),
            luaval::save_assignments(&parts).as_bytes(),
        )?;
        let e = Entry {
            name: name.into(),
            version: version.into(),
            lua_version: env.meta.lua_version.clone(),
            arch: arch(),
            hash: h.into(),
            files: files.files.clone(),
            wrappers: files.wrappers.clone(),
        };
        let json = serde_json::to_vec_pretty(&e).map_err(|e| PkgError::internal(e.to_string()))?;
        w(&tmp.join("entry.json"), &json)
    }

    /// Copies an object's files into `env`'s tree; checks them against the object's hash.
    /// On any failure the files copied so far are removed again.
    pub fn link_into(&self, o: &Object, env: &Environment) -> PResult<()> {
        let tree = env.tree();
        let tree_text = tree.display().to_string();
        let mut done: Vec<PathBuf> = Vec::new();
        let r = (|| -> PResult<()> {
            for f in o.entry.files.iter().chain(o.entry.wrappers.iter()) {
                if f.is_absolute()
                    || f.components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(PkgError::internal(format!(
                        "cache object {} names {}",
                        o.dir.display(),
                        f.display()
                    )));
                }
                if tree.join(f).exists() {
                    return Err(PkgError::internal(format!(
                        "{} is already in the tree",
                        f.display()
                    )));
                }
            }
            for (list, sub) in [(&o.entry.files, "files"), (&o.entry.wrappers, "wrappers")] {
                for f in list {
                    let src = o.dir.join(sub).join(f);
                    let dst = tree.join(f);
                    if let Some(p) = dst.parent() {
                        std::fs::create_dir_all(p)
                            .map_err(|e| PkgError::io("cannot create", p, &e))?;
                    }
                    done.push(f.clone());
                    if sub == "wrappers" {
                        let text = std::fs::read_to_string(&src)
                            .map_err(|e| PkgError::io("cannot read", &src, &e))?;
                        std::fs::write(&dst, text.replace(TREE_MARK, &tree_text))
                            .map_err(|e| PkgError::io("cannot write", &dst, &e))?;
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755));
                    } else {
                        std::fs::copy(&src, &dst)
                            .map_err(|e| PkgError::io("cannot copy", &src, &e))?;
                    }
                }
            }
            let got = hash::rock_hash(&tree, &o.entry.files)?;
            if got != o.entry.hash {
                return Err(PkgError::internal(format!(
                    "cache object {} is damaged (its files hash to {got})",
                    o.dir.display()
                )));
            }
            Ok(())
        })();
        if r.is_err() {
            for f in done {
                let _ = std::fs::remove_file(tree.join(f));
            }
        }
        r
    }

    /// Drops a damaged object (and so every key pointing at it).
    pub fn evict(&self, o: &Object) {
        let _ = std::fs::remove_dir_all(&o.dir);
    }
}
