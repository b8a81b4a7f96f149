//! The C-visible data types and their constructors and destructors.

use crate::vm::ExecOutput;
use std::ffi::c_char;

/// Bytes owned by the library: `data` points to `len` bytes followed by a NUL (so text can
/// be used as a C string when it holds no NUL itself). Free with `bioxen_vm_bytes_free`.
/// An empty value has `len == 0` and `data` pointing to a static empty string.
#[repr(C)]
#[derive(Debug)]
pub struct bioxen_vm_bytes {
    pub data: *mut c_char,
    pub len: usize,
}

static EMPTY: [u8; 1] = [0];

impl bioxen_vm_bytes {
    pub fn empty() -> Self {
        bioxen_vm_bytes {
            data: EMPTY.as_ptr() as *mut c_char,
            len: 0,
        }
    }

    pub fn from_vec(mut v: Vec<u8>) -> Self {
        if v.is_empty() {
            return Self::empty();
        }
        let len = v.len();
        v.push(0);
        // No reallocation when `v` was made with room for the NUL (the library's outputs are).
        let b = v.into_boxed_slice();
        bioxen_vm_bytes {
            data: Box::into_raw(b) as *mut c_char,
            len,
        }
    }

    pub fn from_string(s: String) -> Self {
        Self::from_vec(s.into_bytes())
    }

    /// Frees the bytes and leaves the value empty (so freeing twice is harmless).
    ///
    /// # Safety
    /// `self` must have been produced by this library (or be empty or zeroed).
    pub unsafe fn release(&mut self) {
        if self.len > 0 && !self.data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(self.data.cast::<u8>(), self.len + 1);
            drop(Box::from_raw(slice));
        }
        *self = Self::empty();
    }
}

/// The outcome of one execution that ran (the call returned `BIOXEN_VM_STATUS_OK`).
/// Free with `bioxen_vm_result_free`.
#[repr(C)]
#[derive(Debug)]
pub struct bioxen_vm_result {
    /// True when the chunk ran to its end without a Lua error.
    pub success: bool,
    /// 0 on success, 1 for a Lua error (syntax or runtime).
    pub return_code: i32,
    /// What the code printed (`print`, `io.write`), then the returned values as the Lua REPL
    /// prints them (`tostring`, tab-separated, newline). At most `max_output` bytes.
    pub stdout_text: bioxen_vm_bytes,
    /// What the code wrote to `io.stderr` and `warn`, then on error the message and
    /// traceback. At most `max_output` bytes.
    pub stderr_text: bioxen_vm_bytes,
    /// The returned values as a JSON array (`[]` when none or on error). Never more than
    /// `max_output` bytes: values that do not fit make the execution a failed result
    /// (`success` false, `return_code` 1, `[]`, error "bioxen_vm: the returned values do
    /// not fit in max_output (N bytes) as JSON"). A table whose keys would collide as JSON
    /// object keys (1 and "1") is `{"$lua_pairs": [[key, value], ...]}`, sorted by the key's
    /// JSON text.
    pub values_json: bioxen_vm_bytes,
    /// On error: the message with its traceback; empty on success. Cut to `max_output`
    /// bytes.
    pub error_message: bioxen_vm_bytes,
    /// Wall-clock time of the execution, compilation included.
    pub duration_ns: u64,
    /// Bytes the result does not hold because of `max_output`: output past the cap of
    /// stdout or stderr, error text cut (in `error_message` and in `stderr_text`), and the
    /// amount by which values passed it (at least 1).
    pub output_dropped: u64,
}

impl bioxen_vm_result {
    /// A result with every field empty (what the library writes nowhere; a safe starting
    /// value for an out-parameter).
    pub fn empty() -> Self {
        bioxen_vm_result {
            success: false,
            return_code: 0,
            stdout_text: bioxen_vm_bytes::empty(),
            stderr_text: bioxen_vm_bytes::empty(),
            values_json: bioxen_vm_bytes::empty(),
            error_message: bioxen_vm_bytes::empty(),
            duration_ns: 0,
            output_dropped: 0,
        }
    }
}

impl From<ExecOutput> for bioxen_vm_result {
    fn from(o: ExecOutput) -> Self {
        bioxen_vm_result {
            success: o.success,
            return_code: o.return_code,
            stdout_text: bioxen_vm_bytes::from_vec(o.stdout),
            stderr_text: bioxen_vm_bytes::from_vec(o.stderr),
            values_json: bioxen_vm_bytes::from_vec(o.values_json),
            error_message: bioxen_vm_bytes::from_string(o.error.unwrap_or_default()),
            duration_ns: u64::try_from(o.duration.as_nanos()).unwrap_or(u64::MAX),
            output_dropped: o.output_dropped,
        }
    }
}
