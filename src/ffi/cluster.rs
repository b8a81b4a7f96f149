//! Clusters and broadcasts over a manager's VMs, `shutdown_all`, persistent VMs.

use super::boundary::{bytes, call, json_args, ms_timeout, opt_text, out, text};
use super::types::bioxen_vm_bytes;
use crate::error::Error;
use crate::manager::Manager;
use crate::registry;
use serde_json::Value;
use std::ffi::c_char;

fn ids_json(ids: Vec<String>) -> bioxen_vm_bytes {
    bioxen_vm_bytes::from_string(Value::from(ids).to_string())
}

/// Creates `count` VMs named `<cluster_id>_000`, `<cluster_id>_001`, ... (options as for
/// `bioxen_vm_manager_create_vm`) and writes their ids as a JSON array to `*out_ids_json`
/// (free with `bioxen_vm_bytes_free`). All or none: on failure, none is left behind.
/// Statuses: those of `bioxen_vm_manager_create_vm`; INVALID_ARGUMENT for a count of 0 or
/// over 100000.
///
/// # Safety
/// `cluster_id` must be NUL-terminated; `options_json` NULL or NUL-terminated;
/// `out_ids_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_create_cluster(
    manager: u64,
    cluster_id: *const c_char,
    count: usize,
    options_json: *const c_char,
    out_ids_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let id = text(cluster_id, "cluster_id")?;
        let o = opt_text(options_json, "options_json")?;
        let out_ids_json = out(out_ids_json, "out_ids_json")?;
        *out_ids_json = ids_json(registry::manager(manager)?.create_cluster(id, count, o)?);
        Ok(())
    })
}

/// `bioxen_vm_manager_create_cluster` for interactive VMs: each gets a session, not
/// attached (the original's `bulk_create_interactive_cluster`).
///
/// # Safety
/// As `bioxen_vm_manager_create_cluster`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_create_interactive_cluster(
    manager: u64,
    cluster_id: *const c_char,
    count: usize,
    options_json: *const c_char,
    out_ids_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let id = text(cluster_id, "cluster_id")?;
        let o = opt_text(options_json, "options_json")?;
        let out_ids_json = out(out_ids_json, "out_ids_json")?;
        let ids = registry::manager(manager)?.create_interactive_cluster(id, count, o)?;
        *out_ids_json = ids_json(ids);
        Ok(())
    })
}

/// Queues `code` (arguments and timeout as for `bioxen_vm_manager_execute_async`) on every
/// VM whose id matches `pattern` (fnmatch: `*`, `?`, `[...]`, `[!...]`) and writes
/// `{vm_id: job_handle}` as JSON to `*out_jobs_json` (free with `bioxen_vm_bytes_free`).
/// The caller owns every job handle in it and frees each with `bioxen_vm_job_free`.
/// Statuses: those of `bioxen_vm_manager_execute_async`; VM_NOT_FOUND ("No VMs found
/// matching pattern: …").
///
/// # Safety
/// `pattern` must be NUL-terminated; `code` must point to `code_len` bytes; `args_json`
/// NULL or NUL-terminated; `out_jobs_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_broadcast(
    manager: u64,
    pattern: *const c_char,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    out_jobs_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let pattern = text(pattern, "pattern")?;
        let code = bytes(code, code_len, "code")?;
        let args = json_args(opt_text(args_json, "args_json")?)?;
        let out_jobs_json = out(out_jobs_json, "out_jobs_json")?;
        let jobs =
            registry::manager(manager)?.broadcast(pattern, code, args, ms_timeout(timeout_ms))?;
        let mut m = serde_json::Map::new();
        for (id, job) in jobs {
            m.insert(id, registry::add_job(job).into());
        }
        *out_jobs_json = bioxen_vm_bytes::from_string(Value::Object(m).to_string());
        Ok(())
    })
}

/// Waits, up to `timeout_ms` in all (0: no limit), for the jobs of `jobs_json` (an object
/// `{vm_id: job_handle}` as `bioxen_vm_manager_broadcast` writes it; the handles stay the
/// caller's) and writes `{vm_id: result}` as JSON to `*out_results_json`: each result is
/// `{success, return_code, stdout, stderr, values, error, duration}`, or for a job that
/// failed, was cancelled or is still running `{success: false, return_code: -1, stdout: "",
/// stderr: message, error: message, status: STATUS_NAME}` (the original's shape).
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT (not such an object),
/// INVALID_HANDLE (a handle that is not a live job).
///
/// # Safety
/// `jobs_json` must be NUL-terminated; `out_results_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_wait_for_cluster(
    jobs_json: *const c_char,
    timeout_ms: u64,
    out_results_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let t = text(jobs_json, "jobs_json")?;
        let out_results_json = out(out_results_json, "out_results_json")?;
        let map = match crate::json::parse(t) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(Error::invalid(
                    "jobs_json must be a JSON object {vm_id: job handle}",
                ))
            }
            Err(e) => return Err(Error::invalid(format!("jobs_json is not valid JSON: {e}"))),
        };
        let jobs = map
            .into_iter()
            .map(|(id, h)| {
                let h = h.as_u64().ok_or_else(|| {
                    Error::invalid(format!("job handle of '{id}' is not a number"))
                })?;
                Ok((id, registry::job(h)?))
            })
            .collect::<crate::error::Result<Vec<_>>>()?;
        let results = Manager::wait_for_cluster(&jobs, ms_timeout(timeout_ms));
        *out_results_json = bioxen_vm_bytes::from_string(results.to_string());
        Ok(())
    })
}

/// Writes `{vm_id: status}` for the VMs matching `pattern` as JSON (free with
/// `bioxen_vm_bytes_free`); statuses as `bioxen_vm_manager_vm_status`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE.
///
/// # Safety
/// `pattern` must be NUL-terminated; `out_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_cluster_status(
    manager: u64,
    pattern: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let pattern = text(pattern, "pattern")?;
        let out_json = out(out_json, "out_json")?;
        let status = registry::manager(manager)?.cluster_status(pattern);
        *out_json = bioxen_vm_bytes::from_string(status.to_string());
        Ok(())
    })
}

/// Removes every VM matching `pattern` (as `bioxen_vm_manager_remove_vm`) and writes how
/// many to `*out_removed` (NULL allowed).
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE.
///
/// # Safety
/// `pattern` must be NUL-terminated; `out_removed` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_cleanup_cluster(
    manager: u64,
    pattern: *const c_char,
    out_removed: *mut usize,
) -> i32 {
    call(|| {
        let pattern = text(pattern, "pattern")?;
        let n = registry::manager(manager)?.cleanup_cluster(pattern);
        if let Some(o) = super::boundary::opt_out(out_removed) {
            *o = n;
        }
        Ok(())
    })
}

/// Sends `command` to every attached session whose VM id matches `pattern`, waits up to
/// `timeout_ms` (0: no limit) for each to be idle, and writes `{vm_id: output}` as JSON
/// (free with `bioxen_vm_bytes_free`). A session that ends while the broadcast runs (its
/// VM removed, the session terminated, the manager shutting down) is left out.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, VM_NOT_FOUND ("No attached
/// sessions found matching pattern: …").
///
/// # Safety
/// `pattern` must be NUL-terminated; `command` must point to `len` bytes; `out_json` valid
/// for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_broadcast_to_sessions(
    manager: u64,
    pattern: *const c_char,
    command: *const c_char,
    len: usize,
    timeout_ms: u64,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let pattern = text(pattern, "pattern")?;
        let command = bytes(command, len, "command")?;
        let out_json = out(out_json, "out_json")?;
        let outputs = registry::manager(manager)?.broadcast_to_sessions(
            pattern,
            command,
            ms_timeout(timeout_ms),
        )?;
        *out_json = bioxen_vm_bytes::from_string(outputs.to_string());
        Ok(())
    })
}

/// Interrupts code running on the manager's VMs, cancels their jobs, ends their sessions
/// and removes them all, without waiting for anything: it returns at once whatever runs.
/// The manager stays usable (unlike `bioxen_vm_manager_free`). Writes how many VMs were
/// removed (NULL allowed).
/// Statuses: OK, INVALID_HANDLE.
///
/// # Safety
/// `out_removed` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_shutdown_all(
    manager: u64,
    out_removed: *mut usize,
) -> i32 {
    call(|| {
        let n = registry::manager(manager)?.shutdown_all();
        if let Some(o) = super::boundary::opt_out(out_removed) {
            *o = n;
        }
        Ok(())
    })
}

/// Writes the original's `list_persistent_vms` as JSON (free with `bioxen_vm_bytes_free`):
/// `{vm_id: {created_at, vm_type, networked, interactive_capable, session_active,
/// vm_class, session_attached, process_running, vm_exists}}` for VMs created with
/// `persistent` or as interactive VMs.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_json` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_list_persistent_vms(
    manager: u64,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        let list = registry::manager(manager)?.list_persistent_vms();
        *out_json = bioxen_vm_bytes::from_string(list.to_string());
        Ok(())
    })
}
