//! The one place where C calls enter: argument checks, panic catching and the per-thread
//! last error message.

use crate::error::{Error, Result};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

/// Per-thread boundary state, in one thread-local (one TLS access per call).
struct ThreadState {
    last_error: RefCell<Option<CString>>,
    /// How many boundary calls are active on this thread (callbacks may nest them).
    depth: Cell<u32>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            last_error: RefCell::new(None),
            depth: Cell::new(0),
        }
    };
}

static PANIC_HOOK: Once = Once::new();

/// Panics inside the boundary are reported through `log` instead of the default hook's
/// stderr backtrace; panics elsewhere keep the previous hook.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if STATE.with(|s| s.depth.get()) > 0 {
                log::error!(target: "bioxen_vm::panic", "caught panic: {info}");
            } else {
                previous(info);
            }
        }));
    });
}

/// The calling thread's last error message, or NULL.
pub fn last_error_ptr() -> *const c_char {
    STATE.with(|s| {
        s.last_error
            .borrow()
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs `f` as the body of an exported function: returns its status, sets the last error
/// on failure and clears it on success. No panic escapes.
pub fn call(f: impl FnOnce() -> Result<()>) -> i32 {
    install_panic_hook();
    crate::log::init();
    STATE.with(|s| {
        s.depth.set(s.depth.get() + 1);
        let r = catch_unwind(AssertUnwindSafe(f));
        s.depth.set(s.depth.get() - 1);
        let r = r.unwrap_or_else(|p| {
            Err(Error::Panic(format!(
                "internal error (panic caught at the C boundary): {}",
                panic_text(&*p)
            )))
        });
        let (code, message) = match r {
            Ok(()) => (0, None),
            Err(e) => (
                e.status().code(),
                Some(CString::new(e.to_string().replace('\0', "\\0")).unwrap_or_default()),
            ),
        };
        if code != 0 || s.last_error.borrow().is_some() {
            *s.last_error.borrow_mut() = message;
        }
        code
    })
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that lives for `'a`.
pub unsafe fn text<'a>(p: *const c_char, what: &'static str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullPointer(what));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::InvalidUtf8(what))
}

/// An optional NUL-terminated UTF-8 string (NULL gives `""`).
///
/// # Safety
/// As [`text`].
pub unsafe fn opt_text<'a>(p: *const c_char, what: &'static str) -> Result<&'a str> {
    if p.is_null() {
        Ok("")
    } else {
        text(p, what)
    }
}

/// `len` bytes at `p`; NULL is allowed when `len` is 0.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes that live for `'a`.
pub unsafe fn bytes<'a>(p: *const c_char, len: usize, what: &'static str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::NullPointer(what));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("{what} length is too large")));
    }
    Ok(std::slice::from_raw_parts(p.cast::<u8>(), len))
}

/// The execution request made of `code_len` bytes of code at `code` and the JSON arguments
/// `args_json` (NULL or ""; none), handed to `f`.
///
/// # Safety
/// As [`bytes`] for `code`, as [`opt_text`] for `args_json`.
pub unsafe fn with_request<R>(
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    f: impl FnOnce(&crate::vm::ExecRequest<'_>) -> Result<R>,
) -> Result<R> {
    let code = bytes(code, code_len, "code")?;
    let args = json_args(opt_text(args_json, "args_json")?)?;
    f(&crate::vm::ExecRequest {
        code,
        args: args.as_ref(),
        chunk_name: None,
    })
}

/// A required out-parameter.
///
/// # Safety
/// `p` must be NULL or valid for writes of `T`.
pub unsafe fn out<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T> {
    p.as_mut().ok_or(Error::NullPointer(what))
}

/// An optional out-parameter (NULL means the caller does not want it).
///
/// # Safety
/// As [`out`].
pub unsafe fn opt_out<'a, T>(p: *mut T) -> Option<&'a mut T> {
    p.as_mut()
}

/// Arguments as JSON text (NULL or empty: none), parsed strictly (see [`crate::json`]).
pub fn json_args(s: &str) -> Result<Option<serde_json::Value>> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    match crate::json::parse(s) {
        Ok(v @ serde_json::Value::Array(_)) => Ok(Some(v)),
        Ok(_) => Err(Error::invalid("arguments must be a JSON array")),
        Err(e) => Err(Error::invalid(format!("arguments are not valid JSON: {e}"))),
    }
}

/// A timeout in milliseconds; 0 means none. Any number is safe: the deadline is made by
/// [`crate::deadline`], for which `UINT64_MAX` milliseconds is no limit.
pub fn ms_timeout(ms: u64) -> Option<std::time::Duration> {
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}
