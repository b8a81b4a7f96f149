//! A manager of the library through its C ABI, as the session and process benchmarks use
//! it: created with `bioxen_vm_manager_new`, freed with `bioxen_vm_manager_free` on drop.
//! Each benchmark adds the calls it times in its own `impl LibManager`.

use super::last_error;
use bioxen_vm::ffi::{
    bioxen_vm_bytes, bioxen_vm_bytes_free, bioxen_vm_manager_create_interactive_vm,
    bioxen_vm_manager_execute_interactive_command, bioxen_vm_manager_free, bioxen_vm_manager_new,
};
use std::ffi::{CStr, CString};

pub fn cstring(s: &str) -> CString {
    CString::new(s).expect("no NUL inside")
}

pub struct LibManager(pub u64);

impl LibManager {
    pub fn new(options: &str) -> Self {
        let o = cstring(options);
        let mut h = 0u64;
        // SAFETY: `o` is NUL-terminated; `h` is valid for writes.
        let st = unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut h) };
        assert_eq!(st, 0, "bioxen_vm_manager_new failed: {}", last_error());
        LibManager(h)
    }

    /// An interactive VM `id` with the manager's default options, not attached.
    pub fn create_session(&self, id: &CStr) {
        // SAFETY: `id` is NUL-terminated; NULL options (the manager's defaults) are allowed.
        let st = unsafe {
            bioxen_vm_manager_create_interactive_vm(self.0, id.as_ptr(), std::ptr::null(), false)
        };
        assert_eq!(
            st,
            0,
            "bioxen_vm_manager_create_interactive_vm failed: {}",
            last_error()
        );
    }
}

impl LibManager {
    /// `execute_interactive_command` + `bytes_free`: what `read` makes of the output, or
    /// the status.
    #[inline]
    pub fn command_with<T>(
        &self,
        id: &CStr,
        line: &[u8],
        timeout_ms: u64,
        read: impl FnOnce(&bioxen_vm_bytes) -> T,
    ) -> Result<T, i32> {
        let mut out = bioxen_vm_bytes::empty();
        // SAFETY: `id` is NUL-terminated; `line` is `line.len()` readable bytes; `out` is
        // valid for writes.
        let st = unsafe {
            bioxen_vm_manager_execute_interactive_command(
                self.0,
                id.as_ptr(),
                line.as_ptr().cast(),
                line.len(),
                timeout_ms,
                &mut out,
            )
        };
        if st != 0 {
            return Err(st);
        }
        let v = read(&out);
        // SAFETY: `out` was filled by the library.
        unsafe { bioxen_vm_bytes_free(&mut out) };
        Ok(v)
    }
}

impl Drop for LibManager {
    fn drop(&mut self) {
        let st = bioxen_vm_manager_free(self.0);
        assert_eq!(st, 0, "bioxen_vm_manager_free failed: {}", last_error());
    }
}
