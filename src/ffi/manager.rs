//! VM managers: namespaces of VMs by string id, with a worker pool each.

use super::boundary::{
    bytes, call, json_args, ms_timeout, opt_out, opt_text, out, text, with_request,
};
use super::types::{bioxen_vm_bytes, bioxen_vm_result};
use crate::manager::Manager;
use crate::registry;
use std::ffi::c_char;
use std::sync::Arc;

/// Creates a VM manager and writes its handle to `*out_manager`.
///
/// `options_json` (NULL or "" for defaults): `max_workers` (threads for async jobs, 1..1024,
/// default 10; started on demand), `debug_mode`, `lua_executable`, and defaults for the VMs
/// it creates: `vm_type`, `sandbox`, `memory_limit`, `timeout`, `max_output`, `chunk_cache`
/// (as for `bioxen_vm_new`: `max_output` 0 is refused), and with `vm_type` "ssh" the ssh
/// options too (`host`, `username`, ...), which each VM may override. Unknown keys, and a
/// key given twice, are an error.
/// The caller owns the handle and frees it with `bioxen_vm_manager_free`. Any thread.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT.
///
/// # Safety
/// `options_json` must be NULL or NUL-terminated; `out_manager` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_new(
    options_json: *const c_char,
    out_manager: *mut u64,
) -> i32 {
    call(|| {
        let t = opt_text(options_json, "options_json")?;
        let out_manager = out(out_manager, "out_manager")?;
        let m = Manager::new(t)?;
        *out_manager = registry::add_manager(Arc::new(m));
        Ok(())
    })
}

/// Frees a manager: interrupts code running on its VMs, cancels queued jobs (their on-done
/// callbacks run on this thread), waits for its workers, and frees its VMs (a call running
/// on one of them on another thread finishes first). The whole call waits at most 5
/// seconds for workers, once; a worker still busy then (in code that does not stop, or in
/// a callback) is left to end on its own. It may be called from an on-done callback
/// running on one of the manager's workers: it then does not wait for that worker, which
/// ends when the callback returns. Job handles stay valid until freed. `manager == 0` is a
/// no-op.
/// Statuses: OK, INVALID_HANDLE.
#[no_mangle]
pub extern "C" fn bioxen_vm_manager_free(manager: u64) -> i32 {
    call(|| {
        if manager == 0 {
            return Ok(());
        }
        registry::take_manager(manager)?.shutdown();
        Ok(())
    })
}

/// Creates a VM named `vm_id` in the manager. `options_json` as for `bioxen_vm_new`, on top
/// of the manager's defaults.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT (bad options,
/// empty id, "Unknown VM type: …"), VM_ALREADY_EXISTS ("VM with ID 'x' already exists"),
/// UNSUPPORTED, MEMORY_LIMIT, LUA_NOT_FOUND, LUA_SOCKET_NOT_FOUND, VM_CONNECTION_ERROR.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `options_json` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_create_vm(
    manager: u64,
    vm_id: *const c_char,
    options_json: *const c_char,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let o = opt_text(options_json, "options_json")?;
        registry::manager(manager)?.create_vm(id, o)?;
        Ok(())
    })
}

/// Removes the VM `vm_id`: its queued jobs are cancelled, a running call finishes, the id
/// is free at once.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, VM_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_remove_vm(manager: u64, vm_id: *const c_char) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        registry::manager(manager)?.remove_vm(id)
    })
}

/// `bioxen_vm_execute` on the manager's VM `vm_id`.
/// Statuses: those of `bioxen_vm_execute`, and VM_NOT_FOUND ("VM 'x' not found").
///
/// # Safety
/// As `bioxen_vm_execute`; `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_execute(
    manager: u64,
    vm_id: *const c_char,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        with_request(code, code_len, args_json, |req| {
            let out_result = out(out_result, "out_result")?;
            let o = registry::manager(manager)?.execute(id, req, ms_timeout(timeout_ms))?;
            *out_result = o.into();
            Ok(())
        })
    })
}

/// `bioxen_vm_execute_async` on the manager's VM `vm_id`, on the manager's worker pool.
/// Statuses: those of `bioxen_vm_execute_async`, VM_NOT_FOUND, VM_MANAGER_ERROR (after
/// shutdown).
///
/// # Safety
/// As `bioxen_vm_execute_async`; `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_execute_async(
    manager: u64,
    vm_id: *const c_char,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    out_job: *mut u64,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let code = bytes(code, code_len, "code")?;
        let args = json_args(opt_text(args_json, "args_json")?)?;
        let out_job = out(out_job, "out_job")?;
        let job =
            registry::manager(manager)?.execute_async(id, code, args, ms_timeout(timeout_ms))?;
        *out_job = registry::add_job(job);
        Ok(())
    })
}

/// `bioxen_vm_interrupt` on the manager's VM `vm_id`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, VM_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_was_running` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_interrupt(
    manager: u64,
    vm_id: *const c_char,
    out_was_running: *mut bool,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let was = registry::manager(manager)?.interrupt(id)?;
        if let Some(o) = opt_out(out_was_running) {
            *o = was;
        }
        Ok(())
    })
}

/// Writes the VM's facts as JSON (free with `bioxen_vm_bytes_free`): the keys of
/// `bioxen_vm_info` plus the original's `vm_id`, `session_exists`, `session_attached`,
/// `process_running`, `interactive_capable`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, VM_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_vm_info(
    manager: u64,
    vm_id: *const c_char,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let out_json = out(out_json, "out_json")?;
        let info = registry::manager(manager)?.vm_info(id)?;
        *out_json = bioxen_vm_bytes::from_string(info.to_string());
        Ok(())
    })
}

/// Writes the manager's VM ids as a JSON array, in creation order (free with
/// `bioxen_vm_bytes_free`).
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_json` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_list_vms(
    manager: u64,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        let ids = registry::manager(manager)?.list_vms();
        *out_json = bioxen_vm_bytes::from_string(serde_json::Value::from(ids).to_string());
        Ok(())
    })
}

/// Writes the manager's statistics as a JSON object with the original's `get_stats` keys:
/// `total_vms`, `networked_vms`, `basic_vms`, `persistent_vms`, `interactive_sessions`,
/// `attached_sessions`, `running_operations`, `completed_operations`, `max_workers`,
/// `lua_executable` (free with `bioxen_vm_bytes_free`).
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_json` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_stats(
    manager: u64,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        let stats = registry::manager(manager)?.stats();
        *out_json = bioxen_vm_bytes::from_string(stats.to_string());
        Ok(())
    })
}

/// Waits, up to `timeout_ms` in all (0: no limit), for every unfinished async job of the VM
/// `vm_id` and writes the outcome of the most recent one to `*out_result` (free with
/// `bioxen_vm_result_free`); the original's `wait_for_vm`, without losing earlier jobs.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT ("No running
/// operation found for VM 'x'"), WAIT_TIMEOUT, CANCELLED, and the job's own failure.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_result` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_wait_for_vm(
    manager: u64,
    vm_id: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let out_result = out(out_result, "out_result")?;
        let o = registry::manager(manager)?.wait_for_vm(id, ms_timeout(timeout_ms))?;
        *out_result = o.into();
        Ok(())
    })
}

/// Cancels every unfinished async job of the VM `vm_id` (queued ones will not run, a
/// running one is interrupted) and writes whether one was (NULL allowed).
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_cancelled` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_cancel_vm(
    manager: u64,
    vm_id: *const c_char,
    out_cancelled: *mut bool,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let c = registry::manager(manager)?.cancel_vm(id);
        if let Some(o) = opt_out(out_cancelled) {
            *o = c;
        }
        Ok(())
    })
}

/// Writes the status of the VM's async work as a static string (never freed): "idle" (no
/// job yet), "running" (a job queued or running), else the most recent job's "done" or
/// "cancelled".
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_status` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_vm_status(
    manager: u64,
    vm_id: *const c_char,
    out_status: *mut *const c_char,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let out_status = out(out_status, "out_status")?;
        *out_status = match registry::manager(manager)?.vm_status(id) {
            "running" => c"running".as_ptr(),
            "done" => c"done".as_ptr(),
            "cancelled" => c"cancelled".as_ptr(),
            _ => c"idle".as_ptr(),
        };
        Ok(())
    })
}
