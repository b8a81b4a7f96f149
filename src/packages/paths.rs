//! The module search paths a VM that uses an environment gets: the environment's own
//! directories only (no `;;`, no `./?.lua`, no `~/.luarocks`, no system directories),
//! unless the environment includes the system modules.

use super::env::Environment;
use std::path::PathBuf;

/// Directories where the interpreters of this machine keep system modules (for the
/// embedded VM, which has no compiled-in defaults worth using).
fn system_lua_dirs(v: &str) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/local/share/lua/{v}")),
        PathBuf::from(format!("/usr/share/lua/{v}")),
    ]
}

fn system_lib_dirs(v: &str) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/local/lib/lua/{v}")),
        PathBuf::from(format!(
            "/usr/lib/{}-linux-gnu/lua/{v}",
            std::env::consts::ARCH
        )),
        PathBuf::from(format!("/usr/lib/lua/{v}")),
    ]
}

/// Where a VM looks for modules.
#[derive(Clone, Debug, PartialEq)]
pub struct ModulePaths {
    pub lua_version: String,
    /// Directories of Lua modules (`<dir>/a/b.lua`, `<dir>/a/b/init.lua`).
    pub lua_dirs: Vec<PathBuf>,
    /// Directories of C modules (`<dir>/a/b.so`).
    pub lib_dirs: Vec<PathBuf>,
    pub include_system: bool,
}

impl ModulePaths {
    /// For a tree at `tree` (local or remote) and Lua version `v`.
    pub fn for_tree(tree: &str, v: &str, include_system: bool) -> ModulePaths {
        let tree = PathBuf::from(tree);
        let mut lua_dirs = vec![tree.join("share/lua").join(v)];
        let mut lib_dirs = vec![tree.join("lib/lua").join(v)];
        if include_system {
            lua_dirs.extend(system_lua_dirs(v));
            lib_dirs.extend(system_lib_dirs(v));
        }
        ModulePaths {
            lua_version: v.to_string(),
            lua_dirs,
            lib_dirs,
            include_system,
        }
    }

    pub fn for_env(env: &Environment) -> ModulePaths {
        Self::for_tree(
            &env.tree().display().to_string(),
            &env.meta.lua_version,
            env.meta.include_system_modules,
        )
    }

    /// `package.path` (the environment's directories; with system modules, the
    /// interpreter's own default after them, written `;;`, when `defaults`).
    pub fn lua_path(&self, defaults: bool) -> String {
        let own = if self.include_system && defaults {
            &self.lua_dirs[..1]
        } else {
            &self.lua_dirs[..]
        };
        let s: Vec<String> = own
            .iter()
            .flat_map(|d| {
                let d = d.display();
                [format!("{d}/?.lua"), format!("{d}/?/init.lua")]
            })
            .collect();
        let mut s = s.join(";");
        if self.include_system && defaults {
            s.push_str(";;");
        }
        s
    }

    /// `package.cpath`, likewise.
    pub fn lua_cpath(&self, defaults: bool) -> String {
        let own = if self.include_system && defaults {
            &self.lib_dirs[..1]
        } else {
            &self.lib_dirs[..]
        };
        let mut s = own
            .iter()
            .map(|d| format!("{}/?.so", d.display()))
            .collect::<Vec<_>>()
            .join(";");
        if self.include_system && defaults {
            s.push_str(";;");
        }
        s
    }

    /// The variables a child interpreter gets: `LUA_PATH`/`LUA_CPATH` and their
    /// versioned names (which take precedence in Lua 5.2 and later), so nothing the
    /// caller's environment holds adds to them.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let (p, c) = (self.lua_path(true), self.lua_cpath(true));
        let mut v = vec![
            ("LUA_PATH".to_string(), p.clone()),
            ("LUA_CPATH".to_string(), c.clone()),
        ];
        for minor in ["5_2", "5_3", "5_4", "5_5"] {
            v.push((format!("LUA_PATH_{minor}"), p.clone()));
            v.push((format!("LUA_CPATH_{minor}"), c.clone()));
        }
        v
    }
}
