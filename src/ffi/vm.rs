//! Standalone VMs (the original's `create_vm`): a VM with a handle of its own.

use super::boundary::{bytes, call, json_args, ms_timeout, opt_out, opt_text, out, with_request};
use super::types::{bioxen_vm_bytes, bioxen_vm_result};
use crate::registry;
use crate::vm::options::parse_object;
use crate::vm::{Vm, VmOptions};
use once_cell::sync::Lazy;
use std::ffi::c_char;

/// Pool that runs the asynchronous jobs of standalone VMs.
static DEFAULT_POOL: Lazy<crate::jobs::Pool> =
    Lazy::new(|| crate::jobs::Pool::new(crate::manager::DEFAULT_MAX_WORKERS, "bioxen-vm"));

/// Creates a standalone VM and writes its handle to `*out_vm`.
///
/// `options_json` (NULL or "" for defaults) is a JSON object: `vm_type` ("basic", the
/// default; "process": a persistent child `lua_executable`, default "lua"; "ssh": a
/// persistent `lua_executable` on another host, over SSH; "xcpng": a VM deployed on an XCP-ng
/// pool from a template, then used over SSH: see `bioxen_vm_xcpng_new` for its keys and
/// statuses), `sandbox` ("default" | "trusted"),
/// `memory_limit` (bytes, 0 = none, at least 262144), `timeout` (seconds, default for each
/// execution, 0 = none, below 1e9), `debug_mode`, `max_output` (bytes kept per output
/// stream per execution, default 16 MiB, at least 1: 0 is refused, there is no unlimited
/// setting), `chunk_cache` (compiled chunks kept, default 64; code is kept from its second
/// run on, 0 turns the cache off), `lua_executable`, and for compatibility `persistent`,
/// `networked`, and `env`: a package environment (a name or a path, see
/// `bioxen_vm_packages_create`; default `$BIOXEN_VM_ENV` for basic and process VMs) whose
/// modules are all that `require` finds: a basic VM loads its pure-Lua modules through
/// the sandbox (its C modules only when `trusted`), a process VM runs the environment's
/// interpreter with its paths, an ssh VM uses an environment on its host (a name or an
/// absolute path there). ENVIRONMENT_ERROR when it does not exist or is for another Lua
/// version. Unknown keys, and a key given twice, are an error.
///
/// An "ssh" VM also takes: `host` and `username` (required), `port` (22), `key_file` and
/// `key_passphrase`, `password`, `use_agent` (true: the identities of the ssh-agent at
/// `SSH_AUTH_SOCK`), tried in that order (key file, password, agent); host-key checking
/// with `known_hosts` (a path, default `~/.ssh/known_hosts`, read only), or
/// `host_key_fingerprint` ("SHA256:<base64>", as `ssh-keygen -lf` prints it), or
/// `host_key_policy` "insecure-accept-any" (default "strict"; an unknown or changed key
/// refuses to connect); `connect_timeout` (seconds, 10) and `keepalive_interval` (seconds,
/// 4; two silent intervals make the peer dead). The connection is shared with the other VMs
/// on the same host, port, user and credentials. Passwords and passphrases are never shown
/// in messages, logs or `info`. Failing to connect, authenticate or check the host key is
/// VM_CONNECTION_ERROR; a missing remote interpreter is LUA_NOT_FOUND. This call blocks
/// while it connects (bounded by `connect_timeout`) and starts the agent (at most 5 s).
///
/// The caller owns the handle and frees it with `bioxen_vm_free`. Any thread.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT, UNSUPPORTED, MEMORY_LIMIT,
/// LUA_NOT_FOUND, LUA_SOCKET_NOT_FOUND, VM_CONNECTION_ERROR, ENVIRONMENT_ERROR.
///
/// # Safety
/// `options_json` must be NULL or a NUL-terminated string; `out_vm` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_new(options_json: *const c_char, out_vm: *mut u64) -> i32 {
    call(|| {
        let text = opt_text(options_json, "options_json")?;
        let out_vm = out(out_vm, "out_vm")?;
        let options =
            VmOptions::from_json(&parse_object(text, "VM options")?, &VmOptions::default())?;
        let vm = Vm::new("", options)?;
        *out_vm = registry::add_vm(vm);
        Ok(())
    })
}

/// Frees a standalone VM. Its queued jobs are cancelled; an execution running on it (on
/// another thread) finishes first and the VM is destroyed after it. The handle is invalid
/// from now on. `vm == 0` is a no-op. Any thread.
/// Statuses: OK, INVALID_HANDLE (unknown, already freed, or not a VM).
#[no_mangle]
pub extern "C" fn bioxen_vm_free(vm: u64) -> i32 {
    call(|| {
        if vm == 0 {
            return Ok(());
        }
        let vm = registry::take_vm(vm)?;
        DEFAULT_POOL.cancel_queued(vm.serial());
        Ok(())
    })
}

/// Runs `code_len` bytes of Lua source on the VM and writes the outcome to `*out_result`
/// (which the caller frees with `bioxen_vm_result_free`). Globals persist across calls.
///
/// `args_json`: NULL, "" or a JSON array whose elements arrive as the chunk's `...`.
/// `timeout_ms`: the limit for this call; 0 = no per-call limit (the VM's default
/// `timeout` applies, if it has one).
///
/// A Lua error (syntax or runtime) is OK with `success == false`. Blocks until the code
/// ends. Calls on one VM run one at a time; calls on different VMs run in parallel.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT (empty or
/// blank code, bad arguments), TIMEOUT, INTERRUPTED, MEMORY_LIMIT, VM_POISONED.
/// TIMEOUT, INTERRUPTED and MEMORY_LIMIT leave the VM usable with its state.
///
/// # Safety
/// `code` must point to `code_len` readable bytes (NULL allowed when `code_len` is 0);
/// `args_json` must be NULL or NUL-terminated; `out_result` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_execute(
    vm: u64,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        with_request(code, code_len, args_json, |req| {
            let out_result = out(out_result, "out_result")?;
            let o = registry::vm(vm)?.execute(req, ms_timeout(timeout_ms))?;
            *out_result = o.into();
            Ok(())
        })
    })
}

/// Queues `code` to run on the VM on a worker thread and writes a job handle to `*out_job`
/// (the caller frees it with `bioxen_vm_job_free`). Jobs on one VM run in submission order.
/// Arguments as for `bioxen_vm_execute`; the code is copied. Any thread.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT, INTERNAL.
///
/// # Safety
/// As `bioxen_vm_execute`; `out_job` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_execute_async(
    vm: u64,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    out_job: *mut u64,
) -> i32 {
    call(|| {
        let code = bytes(code, code_len, "code")?;
        let args = json_args(opt_text(args_json, "args_json")?)?;
        let out_job = out(out_job, "out_job")?;
        let vm = registry::vm(vm)?;
        let job = crate::manager::submit(&DEFAULT_POOL, vm, code, args, ms_timeout(timeout_ms))?;
        *out_job = registry::add_job(job);
        Ok(())
    })
}

/// Interrupts the code running on the VM now, from any thread: it stops with INTERRUPTED
/// and the VM keeps its state. Writes to `*out_was_running` (if not NULL) whether anything
/// was running; nothing queued is affected.
/// Statuses: OK, INVALID_HANDLE.
///
/// # Safety
/// `out_was_running` must be NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_interrupt(vm: u64, out_was_running: *mut bool) -> i32 {
    call(|| {
        let was = registry::vm(vm)?.interrupt();
        if let Some(o) = opt_out(out_was_running) {
            *o = was;
        }
        Ok(())
    })
}

/// Writes the VM's facts as a JSON object to `*out_json` (free with `bioxen_vm_bytes_free`):
/// its options, `vm_name`, `created_at` (Unix seconds), `running`, `executions`,
/// `failed_executions`, `poisoned`, and, when the VM is idle (not while code runs on it),
/// `memory_used` (bytes), `cached_chunks` and `lua_version`.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_json` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_info(vm: u64, out_json: *mut bioxen_vm_bytes) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        let info = registry::vm(vm)?.info();
        *out_json = bioxen_vm_bytes::from_string(serde_json::Value::Object(info).to_string());
        Ok(())
    })
}
