//! A standalone VM through the C ABI, for the benches of child and remote kinds.

use super::last_error;
use super::manager::cstring;
use bioxen_vm::ffi::{
    bioxen_vm_bytes, bioxen_vm_bytes_free, bioxen_vm_execute, bioxen_vm_free, bioxen_vm_info,
    bioxen_vm_new, bioxen_vm_result, bioxen_vm_result_free,
};

/// The bytes of a `bioxen_vm_bytes` the library filled.
pub fn bytes_of(b: &bioxen_vm_bytes) -> Vec<u8> {
    if b.len == 0 || b.data.is_null() {
        return Vec::new();
    }
    // SAFETY: the library wrote `len` readable bytes at `data`.
    unsafe { std::slice::from_raw_parts(b.data.cast::<u8>(), b.len) }.to_vec()
}

/// A standalone process VM created with `bioxen_vm_new` and freed with `bioxen_vm_free`.
pub struct LibVm(pub u64);

impl LibVm {
    pub fn new(options: &str) -> Self {
        let o = cstring(options);
        let mut h = 0u64;
        // SAFETY: `o` is NUL-terminated; `h` is valid for writes.
        let st = unsafe { bioxen_vm_new(o.as_ptr(), &mut h) };
        assert_eq!(st, 0, "bioxen_vm_new({options}) failed: {}", last_error());
        LibVm(h)
    }

    /// `bioxen_vm_execute` + `bioxen_vm_result_free`: whether the code ran without error,
    /// its values (JSON) and its error message; or the status.
    #[inline]
    pub fn run(&self, code: &[u8], timeout_ms: u64) -> Result<(bool, String, String), i32> {
        let mut r = bioxen_vm_result::empty();
        // SAFETY: `code` is `code.len()` readable bytes; NULL args; `r` is valid for writes.
        let st = unsafe {
            bioxen_vm_execute(
                self.0,
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                timeout_ms,
                &mut r,
            )
        };
        if st != 0 {
            return Err(st);
        }
        let ok = r.success;
        let v = String::from_utf8_lossy(&bytes_of(&r.values_json)).into_owned();
        let e = String::from_utf8_lossy(&bytes_of(&r.error_message)).into_owned();
        // SAFETY: `r` was filled by the library.
        unsafe { bioxen_vm_result_free(&mut r) };
        Ok((ok, v, e))
    }

    /// As a C caller runs code in a loop: `bioxen_vm_execute` + `bioxen_vm_result_free`,
    /// nothing copied; panics unless the call succeeded and the code ran without error.
    #[inline]
    pub fn exec(&self, code: &[u8], timeout_ms: u64) {
        let mut r = bioxen_vm_result::empty();
        // SAFETY: `code` is `code.len()` readable bytes; NULL args; `r` is valid for writes.
        let st = unsafe {
            bioxen_vm_execute(
                self.0,
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                timeout_ms,
                &mut r,
            )
        };
        assert_eq!(st, 0, "bioxen_vm_execute failed: {}", last_error());
        let ok = r.success;
        // SAFETY: `r` was filled by the library.
        unsafe { bioxen_vm_result_free(&mut r) };
        assert!(ok, "the code raised an error");
    }

    /// The pid of the VM's child interpreter.
    pub fn pid(&self) -> u32 {
        let mut out = bioxen_vm_bytes::empty();
        // SAFETY: `out` is valid for writes.
        let st = unsafe { bioxen_vm_info(self.0, &mut out) };
        assert_eq!(st, 0, "bioxen_vm_info failed: {}", last_error());
        let info = bytes_of(&out);
        // SAFETY: `out` was filled by the library.
        unsafe { bioxen_vm_bytes_free(&mut out) };
        pid_in(&info)
    }

    /// The values (as JSON) `code` returns, checked once before timing.
    pub fn values(&self, code: &str) -> String {
        let (ok, v, e) = self
            .run(code.as_bytes(), 0)
            .unwrap_or_else(|st| panic!("bioxen_vm_execute failed ({st}): {}", last_error()));
        assert!(ok, "{code:?} failed: {e}");
        v
    }
}

impl Drop for LibVm {
    fn drop(&mut self) {
        let st = bioxen_vm_free(self.0);
        assert_eq!(st, 0, "bioxen_vm_free failed: {}", last_error());
    }
}

pub fn pid_in(info: &[u8]) -> u32 {
    let v: serde_json::Value = serde_json::from_slice(info).expect("info is JSON");
    v.get("pid")
        .and_then(|p| p.as_u64())
        .unwrap_or_else(|| panic!("no pid in {}", String::from_utf8_lossy(info))) as u32
}
