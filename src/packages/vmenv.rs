//! What a VM of each kind needs from the package environment its `env` option names.

use super::env::Environment;
use super::paths::ModulePaths;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::VmOptions;

/// A child interpreter's set-up: the program, its module variables, the Lua version.
pub struct ProcessEnv {
    pub exe: String,
    pub vars: Vec<(String, String)>,
    pub lua_version: String,
    pub env: String,
}

fn open(name: &str) -> Result<Environment> {
    Environment::open_str(name).map_err(Error::from)
}

/// For `process` (and networked basic) VMs: the environment's interpreter unless the
/// caller named one (`lua_executable` other than the default `lua`), and its paths.
pub fn for_process(options: &VmOptions) -> Result<Option<ProcessEnv>> {
    let Some(name) = &options.env else {
        return Ok(None);
    };
    let env = open(name)?;
    let exe = if options.lua_executable == "lua" {
        env.meta.interpreter.clone()
    } else {
        options.lua_executable.clone()
    };
    Ok(Some(ProcessEnv {
        exe,
        vars: ModulePaths::for_env(&env).env_vars(),
        lua_version: env.meta.lua_version.clone(),
        env: env.root.display().to_string(),
    }))
}

/// Checks that the interpreter `vm` started runs the environment's Lua version (the
/// agent reports `_VERSION`, e.g. "Lua 5.4").
pub fn check_version(p: &ProcessEnv, vm: &dyn crate::vm::Backend) -> Result<()> {
    let info = vm.info();
    let running = info
        .get("lua_version")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if running == format!("Lua {}", p.lua_version) {
        return Ok(());
    }
    Err(Error::Original {
        status: St::EnvironmentError,
        message: format!(
            "environment {} is for Lua {}, but '{}' runs {running}",
            p.env, p.lua_version, p.exe
        ),
    })
}

/// For `basic` VMs: the environment's module directories (it must be for Lua 5.4, the
/// version the embedded interpreter runs).
pub fn for_embedded(options: &VmOptions) -> Result<Option<(String, ModulePaths)>> {
    let Some(name) = &options.env else {
        return Ok(None);
    };
    let env = open(name)?;
    if env.meta.lua_version != "5.4" {
        return Err(Error::Original {
            status: St::EnvironmentError,
            message: format!(
                "environment {} is for Lua {}; a basic VM runs Lua 5.4 (use a process VM with lua{})",
                env.root.display(),
                env.meta.lua_version,
                env.meta.lua_version
            ),
        });
    }
    Ok(Some((
        env.root.display().to_string(),
        ModulePaths::for_env(&env),
    )))
}

/// For `ssh` VMs: the interpreter that started on the host runs the remote environment's
/// Lua version.
pub fn check_remote(vm: &crate::vm::ssh::SshVm) -> Result<()> {
    let Some(m) = vm.vm.transport().modules() else {
        return Ok(());
    };
    let p = ProcessEnv {
        exe: m.interpreter.clone(),
        vars: Vec::new(),
        lua_version: m.lua_version.clone(),
        env: m.dir.clone(),
    };
    check_version(&p, vm)
}
