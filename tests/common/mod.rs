//! Helpers for calling the C ABI from Rust tests.
#![allow(dead_code)]

pub mod rocks;
pub mod sshd;
pub mod xapi_fake;

use bioxen_vm::ffi::*;
use std::ffi::{CStr, CString};
use std::ptr;

pub const OK: i32 = 0;

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub fn last_error() -> String {
    let p = bioxen_vm_last_error_message();
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

pub fn status_name(code: i32) -> String {
    unsafe { CStr::from_ptr(bioxen_vm_status_name(code)) }
        .to_string_lossy()
        .into_owned()
}

/// An owned copy of a C result.
#[derive(Debug, Clone, PartialEq)]
pub struct Res {
    pub success: bool,
    pub return_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub values: serde_json::Value,
    pub error: String,
    pub dropped: u64,
}

impl Res {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub fn bytes_of(b: &bioxen_vm_bytes) -> Vec<u8> {
    if b.len == 0 {
        return Vec::new();
    }
    unsafe { std::slice::from_raw_parts(b.data as *const u8, b.len) }.to_vec()
}

pub fn empty_result() -> bioxen_vm_result {
    unsafe { std::mem::zeroed() }
}

/// An owned copy of a result the library filled.
pub fn copy_result(r: &bioxen_vm_result) -> Res {
    Res {
        success: r.success,
        return_code: r.return_code,
        stdout: bytes_of(&r.stdout_text),
        stderr: bytes_of(&r.stderr_text),
        values: serde_json::from_slice(&bytes_of(&r.values_json)).unwrap(),
        error: String::from_utf8(bytes_of(&r.error_message)).unwrap(),
        dropped: r.output_dropped,
    }
}

pub fn take_result(mut r: bioxen_vm_result) -> Res {
    let out = copy_result(&r);
    unsafe { bioxen_vm_result_free(&mut r) };
    out
}

pub fn take_json(mut b: bioxen_vm_bytes) -> serde_json::Value {
    let v = serde_json::from_slice(&bytes_of(&b)).unwrap();
    unsafe { bioxen_vm_bytes_free(&mut b) };
    v
}

/// Runs `src` on the manager's VM `id` (no arguments): the result, or the status and message.
pub fn mexec(m: u64, id: &str, src: &str, timeout_ms: u64) -> Result<Res, (i32, String)> {
    let i = c(id);
    let mut r = empty_result();
    let st = unsafe {
        bioxen_vm_manager_execute(
            m,
            i.as_ptr(),
            src.as_ptr().cast(),
            src.len(),
            ptr::null(),
            timeout_ms,
            &mut r,
        )
    };
    if st == OK {
        Ok(take_result(r))
    } else {
        Err((st, last_error()))
    }
}

/// [`mexec`]'s status only.
pub fn mexec_status(m: u64, id: &str, src: &str, timeout_ms: u64) -> i32 {
    mexec(m, id, src, timeout_ms).err().map_or(OK, |(st, _)| st)
}

/// A standalone VM freed on drop.
pub struct TestVm(pub u64);

impl TestVm {
    pub fn new(options: &str) -> TestVm {
        let mut h = 0;
        let o = c(options);
        let st = unsafe { bioxen_vm_new(o.as_ptr(), &mut h) };
        assert_eq!(st, OK, "{}", last_error());
        TestVm(h)
    }

    pub fn try_exec(
        &self,
        code: &str,
        args: Option<&str>,
        timeout_ms: u64,
    ) -> Result<Res, (i32, String)> {
        let a = args.map(c);
        let mut r = empty_result();
        let st = unsafe {
            bioxen_vm_execute(
                self.0,
                code.as_ptr().cast(),
                code.len(),
                a.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
                timeout_ms,
                &mut r,
            )
        };
        if st == OK {
            Ok(take_result(r))
        } else {
            Err((st, last_error()))
        }
    }

    pub fn exec(&self, code: &str) -> Res {
        self.try_exec(code, None, 0)
            .unwrap_or_else(|(s, m)| panic!("status {} ({}): {m}", s, status_name(s)))
    }

    pub fn info(&self) -> serde_json::Value {
        let mut b = bioxen_vm_bytes {
            data: ptr::null_mut(),
            len: 0,
        };
        assert_eq!(unsafe { bioxen_vm_info(self.0, &mut b) }, OK);
        take_json(b)
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        bioxen_vm_free(self.0);
    }
}

/// The VM kind the shared behaviour suites (sessions, clusters, kinds) run on, as JSON
/// object members: `BIOXEN_TEST_VM_TYPE` (default `basic`) and, for child interpreters,
/// `BIOXEN_TEST_LUA` (default `lua5.4`). The test command runs those suites once per kind.
pub fn kind_members() -> String {
    let kind = test_kind();
    if kind == "basic" {
        return r#""vm_type": "basic""#.to_string();
    }
    let lua = std::env::var("BIOXEN_TEST_LUA").unwrap_or_else(|_| "lua5.4".into());
    if kind == "ssh" {
        return sshd::shared().members(&lua);
    }
    if kind == "xcpng" {
        return xapi_fake::shared().members(&lua);
    }
    format!(r#""vm_type": {kind:?}, "lua_executable": {lua:?}"#)
}

/// `kind_members()` as a JSON object, plus `extra` members (without braces, may be empty).
pub fn kind_options(extra: &str) -> String {
    if extra.is_empty() {
        format!("{{{}}}", kind_members())
    } else {
        format!("{{{}, {extra}}}", kind_members())
    }
}

/// `BIOXEN_TEST_VM_TYPE`, or `basic`.
pub fn test_kind() -> String {
    std::env::var("BIOXEN_TEST_VM_TYPE").unwrap_or_else(|_| "basic".into())
}

/// What a stopped execution adds to its message on the test kind: a child interpreter is
/// killed and restarted, losing its state.
pub fn lost_state_note() -> &'static str {
    match test_kind().as_str() {
        "basic" => "",
        // An xcpng VM is an ssh VM on its guest.
        "ssh" | "xcpng" => "; the ssh VM was restarted and its state was lost",
        _ => "; the process VM was restarted and its state was lost",
    }
}

/// `kept` for a kind whose state survives a timeout or an interrupt, else what an unset
/// global prints.
pub fn kept_state(kept: &str) -> String {
    if test_kind() == "basic" {
        kept.to_string()
    } else {
        "nil\n".to_string()
    }
}
