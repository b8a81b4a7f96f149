//! Package environments through the C ABI: every function takes a JSON request and writes a
//! JSON reply (see `crate::packages::api` for the requests).

use super::boundary::{call, opt_text, out};
use super::types::bioxen_vm_bytes;
use super::xcpng::bioxen_vm_progress_fn;
use crate::packages::api::{self, Op};
use crate::packages::progress::Progress;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

fn progress(f: bioxen_vm_progress_fn, user_data: *mut c_void) -> Option<Progress> {
    let f = f?;
    let ud = user_data as usize;
    Some(Arc::new(move |v: &serde_json::Value| {
        let Ok(c) = CString::new(v.to_string()) else {
            return true;
        };
        // SAFETY: the caller promised a callable function; `c` lives for the call.
        unsafe { f(c.as_ptr(), ud as *mut c_void) == 0 }
    }))
}

/// The body of every package function: parse, run, write the reply (or the error object).
///
/// # Safety
/// `request_json` NULL or NUL-terminated; `out_json` valid for writes.
unsafe fn run(
    op: Op,
    request_json: *const c_char,
    p: Option<Progress>,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        *out_json = bioxen_vm_bytes::empty();
        let text = opt_text(request_json, "request_json")?;
        match api::call(op, text, p.as_ref()) {
            Ok(v) => {
                *out_json = bioxen_vm_bytes::from_string(v.to_string());
                Ok(())
            }
            Err(e) => {
                *out_json = bioxen_vm_bytes::from_string(e.to_json().to_string());
                Err(e.into())
            }
        }
    })
}

/// Creates a package environment and writes its description to `*out_json`
/// (`{"name","path","lua_version","interpreter","servers","tree",...}`).
///
/// `request_json`: `{"name": N}` (under the data directory: `$BIOXEN_VM_DATA_DIR`, else
/// `$XDG_DATA_HOME/bioxen_vm`, else `~/.local/share/bioxen_vm`, created now) or `{"path":
/// P}` (a new or empty directory), and optionally `lua_version` ("5.1"…"5.4", default
/// "5.4"), `interpreter` (default "lua5.x"), `servers` (directories, `file://` or
/// `http(s)://` URLs: the only servers it ever installs from), `include_system_modules`
/// (false: VMs see the environment's modules only), `luarocks` (the program, default
/// `luarocks` in PATH), `lua_incdir`, `cache` (true: the shared cache of built rocks, false:
/// none, or a directory), `exist_ok`. With `ssh` (an object of ssh VM options) the
/// environment is created on that host (a name, or an absolute `path` there).
///
/// Every package function: `*out_json` (freed by the caller with `bioxen_vm_bytes_free`)
/// receives the reply on success and, on failure, an error object `{"status",
/// "status_name","message","kind",...}` whose details carry luarocks' `exit_status`,
/// `stdout` and `stderr`, the `rock`, the unmet `constraint`, the `available` versions,
/// ... as they apply. Requests also take `timeout` (seconds for the whole call, waiting for
/// the environment's lock included). Any thread; calls on one environment serialise on its
/// lock (also across processes). Statuses: OK, NULL_POINTER, INVALID_UTF8,
/// INVALID_ARGUMENT, ENVIRONMENT_ERROR, TIMEOUT, INTERNAL, VM_CONNECTION_ERROR (ssh),
/// and for the operations that run luarocks PACKAGE_NOT_FOUND, DEPENDENCY_CONFLICT,
/// LUAROCKS_NOT_FOUND, BUILD_FAILED, PACKAGE_ERROR, LOCKFILE_ERROR.
///
/// # Safety
/// `request_json` must be NULL or a NUL-terminated string; `out_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_create(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Create, request_json, None, out_json)
}

/// Describes an existing environment (`{"env": name or path}`, optionally `ssh`).
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_open(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Open, request_json, None, out_json)
}

/// Lists the environments under the data directory (a JSON array of descriptions).
/// `request_json`: NULL or `{}`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_environments(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Environments, request_json, None, out_json)
}

/// Removes an environment (`{"env": ...}`): only a directory holding an environment's
/// metadata, under its lock.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_remove_env(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::RemoveEnv, request_json, None, out_json)
}

/// Installs a rock: `{"env", "rock": name, "version": a version or a constraint
/// (">= 1.0, < 2.0"), "force": reinstall, "locked": install what the environment's
/// lockfile pins for it, "cache": use the cache of built rocks (default true)}`, optionally
/// `ssh` (luarocks then runs on that host, every argument quoted). The reply:
/// `{"rock","version","already_installed","installed":[{"name","version","from_cache"}],
/// "luarocks":{"exit_status","stdout","stderr","command"} or null}`. A rock already built
/// for this Lua version and architecture (by any environment using the same cache) is
/// copied in without running luarocks.
///
/// `progress` (may be NULL) is called with `user_data` on the calling thread, before this
/// function returns, once per event: `event_json` (NUL-terminated, valid only during the
/// call) is `{"event":"step","step":"resolve"|"cache-hit"|"luarocks"|"installed"|...,
/// "rock":...,"version":...}`, or `{"event":"output","stream":"stdout"|"stderr","line":...}`
/// for each line luarocks prints. Return 0 to go on, anything else to cancel: luarocks
/// (with its process group) is killed and the call fails with CANCELLED; what luarocks had
/// already written to the tree stays (`bioxen_vm_packages_health` reports the drift, and
/// installing again repairs it). The final step ("installed", "removed", "synced") cannot
/// cancel. It must not unwind and must not start a package operation on the same
/// environment (that would wait for the lock this call holds).
///
/// # Safety
/// As `bioxen_vm_packages_create`; `progress` NULL or callable.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_install(
    request_json: *const c_char,
    progress_fn: bioxen_vm_progress_fn,
    user_data: *mut c_void,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(
        Op::Install,
        request_json,
        progress(progress_fn, user_data),
        out_json,
    )
}

/// Removes a rock: `{"env", "rock", "version", "force": even if others depend on it}`
/// (DEPENDENCY_CONFLICT names the dependents otherwise), optionally `ssh`.
/// `progress` as for `bioxen_vm_packages_install`.
///
/// # Safety
/// As `bioxen_vm_packages_install`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_remove(
    request_json: *const c_char,
    progress_fn: bioxen_vm_progress_fn,
    user_data: *mut c_void,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(
        Op::Remove,
        request_json,
        progress(progress_fn, user_data),
        out_json,
    )
}

/// Lists the installed rocks: `{"env"}` (optionally `ssh`) gives `[{"name","version",
/// "modules","commands","dependencies"}]`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_list(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::List, request_json, None, out_json)
}

/// One installed rock in detail: `{"env","rock"}` gives `{"name","version","summary",
/// "license","homepage","modules","dependencies","resolved_dependencies","commands",
/// "files","hash"}`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_show(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Show, request_json, None, out_json)
}

/// Ranked search over catalogs and servers' manifests: `{"query", "catalogs": [paths]
/// (default: the JSON files in <data dir>/catalogs), "servers": [...], "env": its servers
/// too, "limit"}` gives `{"results": [{"name","score","matched","version","versions",
/// "summary","category","labels","modules","priority","sources"}], ...}`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_search(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Search, request_json, None, out_json)
}

/// Writes the environment's lockfile (`{"env", "path": where, default <env>/bioxen.lock}`,
/// optionally `ssh`) and returns it: `{"format","lua_version","arch","rocks":[{"name",
/// "version","hash","dependencies"}]}`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_lock(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Lock, request_json, None, out_json)
}

/// Makes an environment hold exactly what a lockfile pins: `{"env", "lockfile": path or
/// "lock": the lockfile object (default: the environment's own), "cache"}`, optionally
/// `ssh`. LOCKFILE_ERROR when a server cannot provide a pinned rock or a rock's files do
/// not match its hash. `progress` as for `bioxen_vm_packages_install`.
///
/// # Safety
/// As `bioxen_vm_packages_install`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_sync(
    request_json: *const c_char,
    progress_fn: bioxen_vm_progress_fn,
    user_data: *mut c_void,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(
        Op::Sync,
        request_json,
        progress(progress_fn, user_data),
        out_json,
    )
}

/// Installs a profile's packages and locks the environment: `{"env", "profile",
/// "catalogs", "lock": true}` (profiles: the original's six, extended or replaced by the
/// catalogs). `progress` as for `bioxen_vm_packages_install`.
///
/// # Safety
/// As `bioxen_vm_packages_install`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_bootstrap(
    request_json: *const c_char,
    progress_fn: bioxen_vm_progress_fn,
    user_data: *mut c_void,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(
        Op::Bootstrap,
        request_json,
        progress(progress_fn, user_data),
        out_json,
    )
}

/// The health check of an environment (`{"env"}`): `{"ok", "checks": {"luarocks",
/// "interpreter","headers","servers","modules","drift"}}`, each `{"ok","message",...}`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_health(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Health, request_json, None, out_json)
}

/// The profiles in effect (`{"catalogs": [...]}`): `{name: {"description","packages",
/// "luarocks_required","development_tools","networking"}}`.
///
/// # Safety
/// As `bioxen_vm_packages_create`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_packages_profiles(
    request_json: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    run(Op::Profiles, request_json, None, out_json)
}
