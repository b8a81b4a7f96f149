//! Version, statuses, errors, freeing library memory, logging.

use super::boundary::{self, call};
use super::types::{bioxen_vm_bytes, bioxen_vm_result};
use crate::error::Error;
use crate::status::bioxen_vm_status;
use std::ffi::{c_char, c_void};

/// Version of the ABI this library implements (set in build.rs); equals
/// `BIOXEN_VM_ABI_VERSION` in the header it was built with.
pub const ABI_VERSION: u32 = parse_version(env!("BIOXEN_VM_ABI_VERSION"));

const fn parse_version(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u32;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "BIOXEN_VM_ABI_VERSION must be a number"
        );
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

const VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version, e.g. "0.1.0". Static: never free it.
#[no_mangle]
pub extern "C" fn bioxen_vm_version() -> *const c_char {
    VERSION_C.as_ptr().cast()
}

/// The ABI version the library implements. Compare it with `BIOXEN_VM_ABI_VERSION` at
/// start-up: a mismatch means the header and the library do not belong together.
#[no_mangle]
pub extern "C" fn bioxen_vm_abi_version() -> u32 {
    ABI_VERSION
}

/// The name of a status code without its prefix (e.g. "INVALID_HANDLE"), or "UNKNOWN" for
/// a number that names no status. Static: never free it.
#[no_mangle]
pub extern "C" fn bioxen_vm_status_name(status: i32) -> *const c_char {
    bioxen_vm_status::from_code(status).map_or(c"UNKNOWN".as_ptr(), |s| s.c_name().as_ptr())
}

/// The message of the calling thread's last failed call, or NULL if its last call that
/// returns a status succeeded (the functions that return no status leave it alone). The
/// string belongs to the library and stays valid until this thread's next call that returns
/// a status; copy it to keep it.
#[no_mangle]
pub extern "C" fn bioxen_vm_last_error_message() -> *const c_char {
    boundary::last_error_ptr()
}

/// Frees bytes returned by the library and sets `*bytes` to empty. NULL, an empty value and
/// a value already freed by this function are no-ops. Any thread.
///
/// # Safety
/// `bytes` must be NULL or point to a `bioxen_vm_bytes` filled by this library (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_bytes_free(bytes: *mut bioxen_vm_bytes) {
    if let Some(b) = bytes.as_mut() {
        b.release();
    }
}

/// Frees the buffers of a result and empties it. NULL and an already freed (or zeroed)
/// result are no-ops. Any thread.
///
/// # Safety
/// `result` must be NULL or point to a `bioxen_vm_result` filled by this library (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_result_free(result: *mut bioxen_vm_result) {
    if let Some(r) = result.as_mut() {
        r.stdout_text.release();
        r.stderr_text.release();
        r.values_json.release();
        r.error_message.release();
    }
}

/// Log callback: `level` 1 = error, 2 = warn, 3 = info, 4 = debug, 5 = trace; `target`
/// (the module, e.g. "bioxen_vm::vm") and `message` are NUL-terminated UTF-8 that live
/// only during the call; `user_data` is what was given to `bioxen_vm_set_log_callback`.
pub type bioxen_vm_log_fn = Option<
    unsafe extern "C" fn(
        level: i32,
        target: *const c_char,
        message: *const c_char,
        user_data: *mut c_void,
    ),
>;

/// Routes the library's log records up to `max_level` (0 = off … 5 = trace) to `callback`
/// instead of stderr; NULL removes the callback (stderr logging through `BIOXEN_VM_LOG` /
/// `PYLUA_DEBUG=true` applies again). Process-wide. The callback may be called on any
/// thread, concurrently, and must not unwind; records logged from inside it are dropped.
/// `user_data` is passed back unchanged; the library never frees it.
///
/// Statuses: OK, INVALID_ARGUMENT (level outside 0..5).
#[no_mangle]
pub extern "C" fn bioxen_vm_set_log_callback(
    callback: bioxen_vm_log_fn,
    user_data: *mut c_void,
    max_level: i32,
) -> i32 {
    call(|| {
        let max = crate::log::level_filter(max_level)
            .ok_or_else(|| Error::invalid(format!("log level {max_level} is not in 0..5")))?;
        crate::log::set_callback(callback, user_data, max);
        Ok(())
    })
}
