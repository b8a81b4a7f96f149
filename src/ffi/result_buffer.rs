//! Results kept by the caller and reused call after call (`bioxen_vm_execute_into`): the
//! hot loop of a caller that runs many small chunks allocates nothing once the buffers are
//! large enough.

use super::boundary::{call, ms_timeout, out, text, with_request};
use super::types::{bioxen_vm_bytes, bioxen_vm_result};
use crate::error::{Error, Result};
use crate::registry;
use crate::vm::{ExecOutput, ExecRequest, Vm};
use std::cell::UnsafeCell;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering::AcqRel, Ordering::Release};
use std::time::Duration;

/// A reusable result: `bioxen_vm_execute_into` writes each outcome into it, reusing the
/// memory of the one before. Create with `bioxen_vm_result_buffer_new`, free with
/// `bioxen_vm_result_buffer_free`. One call at a time may use a buffer: a second thread
/// that passes a buffer already in use gets INVALID_ARGUMENT and changes nothing. Keep one
/// buffer per thread (or per VM) for concurrent calls.
pub struct bioxen_vm_result_buffer {
    busy: AtomicBool,
    inner: UnsafeCell<Inner>,
}

struct Inner {
    output: ExecOutput,
    error: Vec<u8>,
    view: bioxen_vm_result,
}

/// A borrowed, NUL-terminated view of `v` (which gains the NUL; its length is restored by
/// the next fill, which clears it).
fn terminated(v: &mut Vec<u8>) -> bioxen_vm_bytes {
    if v.is_empty() {
        return bioxen_vm_bytes::empty();
    }
    let len = v.len();
    v.push(0);
    bioxen_vm_bytes {
        data: v.as_mut_ptr().cast::<c_char>(),
        len,
    }
}

impl Inner {
    /// Points the view at the output just written.
    fn publish(&mut self) {
        let o = &mut self.output;
        self.error.clear();
        if let Some(e) = &o.error {
            self.error.extend_from_slice(e.as_bytes());
        }
        self.view = bioxen_vm_result {
            success: o.success,
            return_code: o.return_code,
            stdout_text: terminated(&mut o.stdout),
            stderr_text: terminated(&mut o.stderr),
            values_json: terminated(&mut o.values_json),
            error_message: terminated(&mut self.error),
            duration_ns: u64::try_from(o.duration.as_nanos()).unwrap_or(u64::MAX),
            output_dropped: o.output_dropped,
        };
    }
}

/// Clears the busy flag when the call ends, a panic included.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

/// Runs one execution into `buffer` and hands out its view.
///
/// # Safety
/// `buffer` must be NULL or a live buffer from `bioxen_vm_result_buffer_new`.
unsafe fn run_into(
    buffer: *mut bioxen_vm_result_buffer,
    out_result: *mut *const bioxen_vm_result,
    vm: &Vm,
    req: &ExecRequest<'_>,
    timeout: Option<Duration>,
) -> Result<()> {
    let b = buffer
        .cast_const()
        .as_ref()
        .ok_or(Error::NullPointer("buffer"))?;
    let out_result = out(out_result, "out_result")?;
    if b.busy.swap(true, AcqRel) {
        return Err(Error::invalid(
            "the result buffer is in use by another call",
        ));
    }
    let _busy = Busy(&b.busy);
    // SAFETY: the busy flag gives this call the only access to the contents.
    let inner = &mut *b.inner.get();
    inner.view = bioxen_vm_result::empty();
    vm.execute_into(req, timeout, &mut inner.output)?;
    inner.publish();
    *out_result = &inner.view;
    Ok(())
}

/// Creates an empty result buffer for `bioxen_vm_execute_into` and writes it to
/// `*out_buffer`. The caller owns it and frees it with `bioxen_vm_result_buffer_free`.
/// Any thread.
/// Statuses: OK, NULL_POINTER.
///
/// # Safety
/// `out_buffer` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_result_buffer_new(
    out_buffer: *mut *mut bioxen_vm_result_buffer,
) -> i32 {
    call(|| {
        let out_buffer = out(out_buffer, "out_buffer")?;
        *out_buffer = Box::into_raw(Box::new(bioxen_vm_result_buffer {
            busy: AtomicBool::new(false),
            inner: UnsafeCell::new(Inner {
                output: ExecOutput::default(),
                error: Vec::new(),
                view: bioxen_vm_result::empty(),
            }),
        }));
        Ok(())
    })
}

/// Frees a result buffer and the result it holds; every view it handed out becomes
/// invalid. NULL is accepted (OK). Any thread, but not while a call uses the buffer:
/// that is INVALID_ARGUMENT, and the buffer stays. Must not be called twice with the same
/// buffer (a freed buffer cannot be recognised).
/// Statuses: OK, INVALID_ARGUMENT.
///
/// # Safety
/// `buffer` must be NULL or a live buffer from `bioxen_vm_result_buffer_new`.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_result_buffer_free(buffer: *mut bioxen_vm_result_buffer) -> i32 {
    call(|| {
        let Some(b) = buffer.cast_const().as_ref() else {
            return Ok(());
        };
        if b.busy.swap(true, AcqRel) {
            return Err(Error::invalid(
                "the result buffer is in use by another call",
            ));
        }
        drop(Box::from_raw(buffer));
        Ok(())
    })
}

/// `bioxen_vm_execute`, with the outcome written into `buffer` instead of newly allocated
/// memory. On OK, `*out_result` points at the outcome inside `buffer`: the buffer owns it
/// and every byte it points to. It stays valid until the next call with the same buffer or
/// the buffer's free; never pass it to `bioxen_vm_result_free` or `bioxen_vm_bytes_free`.
/// Copy out what must outlive the next call. Once the buffers have grown to the size of
/// the outputs, a call allocates nothing for its result.
///
/// On a status other than OK, `*out_result` is not written and the buffer's outcome reads
/// as empty. Any thread; one call per buffer at a time (a buffer in use is
/// INVALID_ARGUMENT).
/// Statuses: those of `bioxen_vm_execute`; NULL_POINTER also for `buffer`.
///
/// # Safety
/// As `bioxen_vm_execute`; `buffer` must be a live buffer from
/// `bioxen_vm_result_buffer_new`; `out_result` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_execute_into(
    vm: u64,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    buffer: *mut bioxen_vm_result_buffer,
    out_result: *mut *const bioxen_vm_result,
) -> i32 {
    call(|| {
        with_request(code, code_len, args_json, |req| {
            let vm = registry::vm(vm)?;
            run_into(buffer, out_result, &vm, req, ms_timeout(timeout_ms))
        })
    })
}

/// `bioxen_vm_execute_into` on the manager's VM `vm_id`.
/// Statuses: those of `bioxen_vm_execute_into`, and VM_NOT_FOUND ("VM 'x' not found").
///
/// # Safety
/// As `bioxen_vm_execute_into`; `vm_id` must be NUL-terminated.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bioxen_vm_manager_execute_into(
    manager: u64,
    vm_id: *const c_char,
    code: *const c_char,
    code_len: usize,
    args_json: *const c_char,
    timeout_ms: u64,
    buffer: *mut bioxen_vm_result_buffer,
    out_result: *mut *const bioxen_vm_result,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        with_request(code, code_len, args_json, |req| {
            let vm = registry::manager(manager)?.get(id)?;
            run_into(buffer, out_result, &vm, req, ms_timeout(timeout_ms))
        })
    })
}
