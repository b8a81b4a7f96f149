//! Thin wrappers over the exported functions: each returns the status, the calling
//! thread's message when it failed, and owned copies of what the library wrote.

use crate::common::{bytes_of, empty_result, last_error};
use bioxen_vm::ffi::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};

/// An owned copy of a `bioxen_vm_result`, byte for byte (nothing is assumed to be UTF-8).
#[derive(Clone, Debug)]
pub struct RawRes {
    pub success: bool,
    pub return_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub values: Vec<u8>,
    pub error: Vec<u8>,
    pub dropped: u64,
}

pub fn copy(r: &bioxen_vm_result) -> RawRes {
    RawRes {
        success: r.success,
        return_code: r.return_code,
        stdout: bytes_of(&r.stdout_text),
        stderr: bytes_of(&r.stderr_text),
        values: bytes_of(&r.values_json),
        error: bytes_of(&r.error_message),
        dropped: r.output_dropped,
    }
}

/// A status and, when it is not OK, the message of this thread's last error.
pub fn status(st: i32) -> (i32, String) {
    (st, if st == 0 { String::new() } else { last_error() })
}

fn take(mut r: bioxen_vm_result) -> RawRes {
    let out = copy(&r);
    unsafe { bioxen_vm_result_free(&mut r) };
    // A freed result is a no-op when freed again (documented).
    unsafe { bioxen_vm_result_free(&mut r) };
    out
}

fn take_bytes(mut b: bioxen_vm_bytes) -> Vec<u8> {
    let v = bytes_of(&b);
    unsafe { bioxen_vm_bytes_free(&mut b) };
    unsafe { bioxen_vm_bytes_free(&mut b) };
    v
}

fn empty_bytes() -> bioxen_vm_bytes {
    bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    }
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// NUL-terminated bytes as C sees them: everything up to the first NUL.
pub fn c_bytes(b: &[u8]) -> CString {
    let end = b.iter().position(|x| *x == 0).unwrap_or(b.len());
    CString::new(&b[..end]).expect("cut at the first NUL")
}

pub type Outcome = ((i32, String), Option<RawRes>);

fn opt(a: &Option<CString>) -> *const c_char {
    a.as_ref().map_or(null(), |a| a.as_ptr())
}

pub fn vm_new(opts: &str) -> ((i32, String), u64) {
    let o = cstr(opts);
    let mut h = 0;
    let st = status(unsafe { bioxen_vm_new(o.as_ptr(), &mut h) });
    (st, h)
}

pub fn vm_free(h: u64) -> (i32, String) {
    status(bioxen_vm_free(h))
}

pub fn execute(vm: u64, code: &[u8], args: &Option<CString>, t: u64) -> Outcome {
    let mut r = empty_result();
    let st = status(unsafe {
        bioxen_vm_execute(vm, code.as_ptr().cast(), code.len(), opt(args), t, &mut r)
    });
    let res = (st.0 == 0).then(|| take(r));
    (st, res)
}

pub fn manager_execute(m: u64, id: &CStr, code: &[u8], args: &Option<CString>, t: u64) -> Outcome {
    let mut r = empty_result();
    let st = status(unsafe {
        bioxen_vm_manager_execute(
            m,
            id.as_ptr(),
            code.as_ptr().cast(),
            code.len(),
            opt(args),
            t,
            &mut r,
        )
    });
    let res = (st.0 == 0).then(|| take(r));
    (st, res)
}

/// A result buffer owned by one thread.
pub struct Buffer(pub *mut bioxen_vm_result_buffer);

impl Buffer {
    pub fn new() -> Buffer {
        let mut b = null_mut();
        assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut b) }, 0);
        Buffer(b)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        assert_eq!(unsafe { bioxen_vm_result_buffer_free(self.0) }, 0);
    }
}

/// `execute_into` through `buf`; `m` = None for a standalone VM.
pub fn execute_into(
    m: Option<(u64, &CStr)>,
    vm: u64,
    code: &[u8],
    args: &Option<CString>,
    t: u64,
    buf: &Buffer,
) -> Outcome {
    let mut out: *const bioxen_vm_result = null();
    let st = status(unsafe {
        match m {
            None => bioxen_vm_execute_into(
                vm,
                code.as_ptr().cast(),
                code.len(),
                opt(args),
                t,
                buf.0,
                &mut out,
            ),
            Some((m, id)) => bioxen_vm_manager_execute_into(
                m,
                id.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                opt(args),
                t,
                buf.0,
                &mut out,
            ),
        }
    });
    // The view belongs to the buffer: copy it before the next call with this buffer.
    let res = (st.0 == 0 && !out.is_null()).then(|| copy(unsafe { &*out }));
    (st, res)
}

pub fn execute_async(
    m: Option<(u64, &CStr)>,
    vm: u64,
    code: &[u8],
    args: &Option<CString>,
    t: u64,
) -> ((i32, String), u64) {
    let mut j = 0;
    let st = status(unsafe {
        match m {
            None => {
                bioxen_vm_execute_async(vm, code.as_ptr().cast(), code.len(), opt(args), t, &mut j)
            }
            Some((m, id)) => bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                opt(args),
                t,
                &mut j,
            ),
        }
    });
    (st, j)
}

pub fn interrupt(vm: u64) -> (i32, String) {
    let mut was = false;
    status(unsafe { bioxen_vm_interrupt(vm, &mut was) })
}

pub fn manager_interrupt(m: u64, id: &CStr) -> (i32, String) {
    status(unsafe { bioxen_vm_manager_interrupt(m, id.as_ptr(), null_mut()) })
}

pub fn vm_info(vm: u64) -> ((i32, String), Vec<u8>) {
    let mut b = empty_bytes();
    let st = status(unsafe { bioxen_vm_info(vm, &mut b) });
    let v = if st.0 == 0 { take_bytes(b) } else { Vec::new() };
    (st, v)
}

pub fn manager_vm_info(m: u64, id: &CStr) -> ((i32, String), Vec<u8>) {
    let mut b = empty_bytes();
    let st = status(unsafe { bioxen_vm_manager_vm_info(m, id.as_ptr(), &mut b) });
    let v = if st.0 == 0 { take_bytes(b) } else { Vec::new() };
    (st, v)
}

pub fn job_wait(j: u64, t: u64) -> Outcome {
    let mut r = empty_result();
    let st = status(unsafe { bioxen_vm_job_wait(j, t, &mut r) });
    let res = (st.0 == 0).then(|| take(r));
    (st, res)
}

pub fn job_status(j: u64) -> ((i32, String), String) {
    let mut s: *const c_char = null();
    let st = status(unsafe { bioxen_vm_job_status(j, &mut s) });
    let text = if st.0 == 0 && !s.is_null() {
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    } else {
        String::new()
    };
    (st, text)
}

pub fn job_cancel(j: u64) -> (i32, String) {
    let mut c = false;
    status(unsafe { bioxen_vm_job_cancel(j, &mut c) })
}

pub fn job_free(j: u64) -> (i32, String) {
    status(bioxen_vm_job_free(j))
}

pub type JobCallback = unsafe extern "C" fn(u64, i32, *mut c_void);

pub fn job_on_done(j: u64, f: JobCallback, user: u64) -> (i32, String) {
    status(bioxen_vm_job_on_done(
        j,
        Some(f),
        user as usize as *mut c_void,
    ))
}

pub fn manager_new(opts: &str) -> ((i32, String), u64) {
    let o = cstr(opts);
    let mut h = 0;
    let st = status(unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut h) });
    (st, h)
}

pub fn manager_free(m: u64) -> (i32, String) {
    status(bioxen_vm_manager_free(m))
}

pub fn create_vm(m: u64, id: &CStr, opts: &str) -> (i32, String) {
    let o = cstr(opts);
    status(unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), o.as_ptr()) })
}

pub fn remove_vm(m: u64, id: &CStr) -> (i32, String) {
    status(unsafe { bioxen_vm_manager_remove_vm(m, id.as_ptr()) })
}

pub fn wait_for_vm(m: u64, id: &CStr, t: u64) -> Outcome {
    let mut r = empty_result();
    let st = status(unsafe { bioxen_vm_manager_wait_for_vm(m, id.as_ptr(), t, &mut r) });
    let res = (st.0 == 0).then(|| take(r));
    (st, res)
}

pub fn cancel_vm(m: u64, id: &CStr) -> (i32, String) {
    let mut c = false;
    status(unsafe { bioxen_vm_manager_cancel_vm(m, id.as_ptr(), &mut c) })
}

pub fn vm_status(m: u64, id: &CStr) -> ((i32, String), String) {
    let mut s: *const c_char = null();
    let st = status(unsafe { bioxen_vm_manager_vm_status(m, id.as_ptr(), &mut s) });
    let text = if st.0 == 0 && !s.is_null() {
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    } else {
        String::new()
    };
    (st, text)
}

/// One of the manager's JSON listings: 0 stats, 1 list_vms, 2 list_persistent_vms,
/// 3 list_sessions.
pub fn manager_json(m: u64, which: u8) -> ((i32, String), Vec<u8>) {
    let mut b = empty_bytes();
    let st = status(unsafe {
        match which {
            0 => bioxen_vm_manager_stats(m, &mut b),
            1 => bioxen_vm_manager_list_vms(m, &mut b),
            2 => bioxen_vm_manager_list_persistent_vms(m, &mut b),
            _ => bioxen_vm_manager_list_sessions(m, &mut b),
        }
    });
    let v = if st.0 == 0 { take_bytes(b) } else { Vec::new() };
    (st, v)
}

pub fn shutdown_all(m: u64) -> (i32, String) {
    let mut n = 0usize;
    status(unsafe { bioxen_vm_manager_shutdown_all(m, &mut n) })
}

pub fn create_interactive_vm(m: u64, id: &CStr, opts: &str, attach: bool) -> (i32, String) {
    let o = cstr(opts);
    status(unsafe { bioxen_vm_manager_create_interactive_vm(m, id.as_ptr(), o.as_ptr(), attach) })
}

pub type OutputCallback =
    unsafe extern "C" fn(*const c_char, i32, *const c_char, usize, *mut c_void);

pub fn attach(m: u64, id: &CStr, cb: Option<(OutputCallback, u64)>) -> (i32, String) {
    status(unsafe {
        match cb {
            Some((f, user)) => {
                bioxen_vm_manager_attach(m, id.as_ptr(), Some(f), user as usize as *mut c_void)
            }
            None => bioxen_vm_manager_attach(m, id.as_ptr(), None, null_mut()),
        }
    })
}

pub fn detach(m: u64, id: &CStr) -> (i32, String) {
    status(unsafe { bioxen_vm_manager_detach(m, id.as_ptr()) })
}

pub fn is_attached(m: u64, id: &CStr) -> (i32, String) {
    let mut a = false;
    status(unsafe { bioxen_vm_manager_is_attached(m, id.as_ptr(), &mut a) })
}

pub fn send_input(m: u64, id: &CStr, input: &[u8]) -> (i32, String) {
    status(unsafe {
        bioxen_vm_manager_send_input(m, id.as_ptr(), input.as_ptr().cast(), input.len())
    })
}

pub fn read_output(m: u64, id: &CStr, t: u64, flags: i32) -> ((i32, String), Option<Vec<u8>>) {
    let mut b = empty_bytes();
    let mut has = false;
    let st = status(unsafe {
        bioxen_vm_manager_read_output(m, id.as_ptr(), t, flags, &mut b, &mut has)
    });
    let v = if st.0 == 0 {
        let v = take_bytes(b);
        has.then_some(v)
    } else {
        None
    };
    (st, v)
}

pub fn command(m: u64, id: &CStr, input: &[u8], t: u64) -> ((i32, String), Vec<u8>) {
    let mut b = empty_bytes();
    let st = status(unsafe {
        bioxen_vm_manager_execute_interactive_command(
            m,
            id.as_ptr(),
            input.as_ptr().cast(),
            input.len(),
            t,
            &mut b,
        )
    });
    let v = if st.0 == 0 { take_bytes(b) } else { Vec::new() };
    (st, v)
}

pub fn broadcast_to_sessions(
    m: u64,
    pattern: &CStr,
    input: &[u8],
    t: u64,
) -> ((i32, String), Vec<u8>) {
    let mut b = empty_bytes();
    let st = status(unsafe {
        bioxen_vm_manager_broadcast_to_sessions(
            m,
            pattern.as_ptr(),
            input.as_ptr().cast(),
            input.len(),
            t,
            &mut b,
        )
    });
    let v = if st.0 == 0 { take_bytes(b) } else { Vec::new() };
    (st, v)
}

pub fn interrupt_session(m: u64, id: &CStr) -> (i32, String) {
    let mut was = false;
    status(unsafe { bioxen_vm_manager_interrupt_session(m, id.as_ptr(), &mut was) })
}

pub fn terminate_session(m: u64, id: &CStr) -> (i32, String) {
    status(unsafe { bioxen_vm_manager_terminate_session(m, id.as_ptr()) })
}

pub fn clone_session(m: u64, src: &CStr, dst: &CStr) -> (i32, String) {
    status(unsafe { bioxen_vm_manager_clone_session(m, src.as_ptr(), dst.as_ptr()) })
}
