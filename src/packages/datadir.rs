//! Where named environments and the shared rock cache live when the caller does not say:
//! `$BIOXEN_VM_DATA_DIR`, else `$XDG_DATA_HOME/bioxen_vm`, else
//! `$HOME/.local/share/bioxen_vm`. Nothing is created here: the directory appears when
//! an environment is created in it (or a built rock is cached in it).

use super::error::{PResult, PkgError};
use std::path::PathBuf;

/// The data directory (not created).
pub fn data_dir() -> PResult<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("BIOXEN_VM_DATA_DIR") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_DATA_HOME").filter(|d| d.is_absolute()) {
        return Ok(d.join("bioxen_vm"));
    }
    if let Some(h) = var("HOME") {
        return Ok(h.join(".local/share/bioxen_vm"));
    }
    Err(PkgError::environment(
        "no data directory: set BIOXEN_VM_DATA_DIR (or HOME), or give the environment a path",
    ))
}

/// Where named environments live.
pub fn envs_dir() -> PResult<PathBuf> {
    Ok(data_dir()?.join("envs"))
}

/// The machine's shared cache of built rocks (the default for every environment).
pub fn cache_dir() -> PResult<PathBuf> {
    Ok(data_dir()?.join("cache"))
}
