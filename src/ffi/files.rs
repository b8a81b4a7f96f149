//! Scripts from files: `execute_file` and `execute_temp_script`, on standalone and
//! manager VMs of every kind.

use super::boundary::{bytes, call, ms_timeout, out, text};
use super::types::bioxen_vm_result;
use crate::error::{Error, Result};
use crate::registry;
use crate::vm::Vm;
use std::ffi::{c_char, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// A NUL-terminated path (any bytes but NUL: paths need not be UTF-8).
unsafe fn path<'a>(p: *const c_char, what: &'static str) -> Result<&'a Path> {
    if p.is_null() {
        return Err(Error::NullPointer(what));
    }
    Ok(Path::new(OsStr::from_bytes(CStr::from_ptr(p).to_bytes())))
}

unsafe fn file_on(
    vm: Arc<Vm>,
    script_path: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> Result<()> {
    let p = path(script_path, "script_path")?;
    let out_result = out(out_result, "out_result")?;
    *out_result = vm.execute_file(p, ms_timeout(timeout_ms), 0, None)?.into();
    Ok(())
}

unsafe fn temp_on(
    vm: Arc<Vm>,
    code: *const c_char,
    code_len: usize,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> Result<()> {
    let code = bytes(code, code_len, "code")?;
    let out_result = out(out_result, "out_result")?;
    *out_result = vm.execute_temp_script(code, ms_timeout(timeout_ms))?.into();
    Ok(())
}

/// Runs the Lua script at `script_path` (NUL-terminated; any bytes) in the VM's persistent
/// state, as the original's `execute_file`: the host reads the file and runs its text
/// under the chunk name `@<path>` (a `#!` first line and a UTF-8 BOM are skipped, as `lua`
/// does). Writes the outcome to `*out_result` (free with `bioxen_vm_result_free`).
/// `timeout_ms` as for `bioxen_vm_execute`; the limit covers reading the file as well as
/// running it (TIMEOUT when the reading outlasts it). The host reads at most the VM's
/// `memory_limit`, and never more than 64 MiB (67108864 bytes): a larger file is refused
/// with INVALID_ARGUMENT ("… is too large: N bytes …") before anything is read, and a file
/// that grows past the cap while being read is refused the same way. Blocks; any thread.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE, FILE_NOT_FOUND ("Lua script not found:
/// <path>"), INVALID_ARGUMENT (not a regular file, unreadable, too large), TIMEOUT, and
/// those of `bioxen_vm_execute` (an empty file is a valid script, not INVALID_ARGUMENT).
///
/// # Safety
/// `script_path` must be NUL-terminated; `out_result` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_execute_file(
    vm: u64,
    script_path: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| file_on(registry::vm(vm)?, script_path, timeout_ms, out_result))
}

/// The original's `execute_temp_script`: writes the code to a new `bioxen_vm-<pid>-<n>.lua`
/// (mode 0600) in the system temp directory (`TMPDIR`), runs it as
/// `bioxen_vm_execute_file` does, and removes the file whatever happened (also on a
/// timeout or an error). Empty code is allowed; code larger than the cap of
/// `bioxen_vm_execute_file` is refused with INVALID_ARGUMENT before any file is written.
/// Blocks; any thread.
/// Statuses: those of `bioxen_vm_execute_file`, and SCRIPT_GENERATION_ERROR ("Failed to
/// create/execute temporary script: …") when the file cannot be written.
///
/// # Safety
/// `code` must point to `code_len` readable bytes (NULL allowed when 0); `out_result` must
/// be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_execute_temp_script(
    vm: u64,
    code: *const c_char,
    code_len: usize,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| temp_on(registry::vm(vm)?, code, code_len, timeout_ms, out_result))
}

/// `bioxen_vm_execute_file` on the manager's VM `vm_id`.
/// Statuses: those of `bioxen_vm_execute_file`, INVALID_UTF8, VM_NOT_FOUND.
///
/// # Safety
/// As `bioxen_vm_execute_file`; `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_execute_file(
    manager: u64,
    vm_id: *const c_char,
    script_path: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let vm = registry::manager(manager)?.get(id)?;
        file_on(vm, script_path, timeout_ms, out_result)
    })
}

/// `bioxen_vm_execute_temp_script` on the manager's VM `vm_id`.
/// Statuses: those of `bioxen_vm_execute_temp_script`, INVALID_UTF8, VM_NOT_FOUND.
///
/// # Safety
/// As `bioxen_vm_execute_temp_script`; `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_execute_temp_script(
    manager: u64,
    vm_id: *const c_char,
    code: *const c_char,
    code_len: usize,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let vm = registry::manager(manager)?.get(id)?;
        temp_on(vm, code, code_len, timeout_ms, out_result)
    })
}
