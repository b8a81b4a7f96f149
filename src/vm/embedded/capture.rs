//! Output capture: `print`, `io.write`, `io.stdout:write`, `io.stderr:write` and `warn`
//! append to per-VM buffers instead of the process's streams.
//!
//! The functions are plain C functions whose first upvalue is a light userdata pointing at
//! the VM's [`Capture`]. Lua only runs while the VM's lock is held, and the host reads the
//! buffers under the same lock, so the pointer is never used concurrently.

use super::stop::stop_pending;
use mlua::ffi;
use std::os::raw::c_int;

/// Output of the current execution, bounded per stream.
pub struct Capture {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Most bytes kept per stream; what is past it is counted in `dropped`.
    pub max: usize,
    pub dropped: u64,
    /// Whether `warn` messages are shown (Lua's `@on` / `@off`).
    warnings_on: bool,
}

/// Buffer capacity kept between executions; larger buffers are released.
pub const KEEP_CAPACITY: usize = 64 << 10;

/// A copy of `bytes` whose capacity leaves room for one more byte (the C side's NUL), so
/// handing it to C needs no reallocation.
pub fn exact_copy(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    copy_into(&mut v, bytes);
    v
}

/// Replaces the contents of `dst` with `bytes`, keeping room for one more byte (the C
/// side's NUL). A buffer reused from an earlier result allocates only when it must grow, and
/// an empty `bytes` never allocates.
pub fn copy_into(dst: &mut Vec<u8>, bytes: &[u8]) {
    dst.clear();
    if bytes.is_empty() {
        return;
    }
    dst.reserve_exact(bytes.len() + 1);
    dst.extend_from_slice(bytes);
}

/// Which buffer a function writes to (the second upvalue).
pub const STDOUT: ffi::lua_Integer = 1;
pub const STDERR: ffi::lua_Integer = 2;

impl Capture {
    pub fn new(max: usize) -> Self {
        Capture {
            stdout: Vec::new(),
            stderr: Vec::new(),
            max,
            dropped: 0,
            warnings_on: false,
        }
    }

    #[inline]
    pub fn push(&mut self, stream: ffi::lua_Integer, bytes: &[u8]) {
        let buf = if stream == STDERR {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        let room = self.max.saturating_sub(buf.len());
        let take = room.min(bytes.len());
        buf.extend_from_slice(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
    }

    /// Empties the buffers for the next execution, keeping modest capacity for reuse.
    pub fn clear(&mut self) {
        for b in [&mut self.stdout, &mut self.stderr] {
            if b.capacity() > KEEP_CAPACITY {
                *b = Vec::new();
            } else {
                b.clear();
            }
        }
        self.dropped = 0;
    }
}

/// Bytes copied into a buffer between two looks at the stop flag.
const PIECE: usize = 1 << 20;

/// [`Capture::push`] of `bytes` in pieces, looking at the VM's stop flag between them: a
/// long text (up to `max_output` of it is copied) does not hold back a timeout or an
/// interrupt. Returns `false` when it stopped copying for a pending stop (the output is
/// thrown away then).
///
/// # Safety
/// `l` must be a thread of the VM whose capture `cap` is, and `cap` not otherwise borrowed.
pub unsafe fn push_stoppable(
    l: *mut ffi::lua_State,
    cap: *mut Capture,
    stream: ffi::lua_Integer,
    bytes: &[u8],
) -> bool {
    let mut rest = bytes;
    while rest.len() > PIECE {
        let full = {
            let c = &*cap;
            let buf = if stream == STDERR {
                &c.stderr
            } else {
                &c.stdout
            };
            buf.len() >= c.max
        };
        if full {
            break;
        }
        (*cap).push(stream, &rest[..PIECE]);
        rest = &rest[PIECE..];
        if stop_pending(l) {
            return false;
        }
    }
    (*cap).push(stream, rest);
    true
}

unsafe fn capture_of(l: *mut ffi::lua_State) -> &'static mut Capture {
    // SAFETY: the upvalue was set to the VM's boxed Capture, which outlives the state,
    // and Lua runs only under the VM lock (see the module docs).
    &mut *(ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *mut Capture)
}

unsafe fn stream_of(l: *mut ffi::lua_State) -> ffi::lua_Integer {
    ffi::lua_tointeger(l, ffi::lua_upvalueindex(2))
}

unsafe fn bytes_at<'a>(l: *mut ffi::lua_State, idx: c_int, tostring: bool) -> &'a [u8] {
    let mut len = 0usize;
    let p = if tostring {
        ffi::luaL_tolstring(l, idx, &mut len)
    } else {
        ffi::luaL_checklstring(l, idx, &mut len)
    };
    std::slice::from_raw_parts(p as *const u8, len)
}

/// `print(...)`: `tostring` of each argument, tab-separated, then a newline.
pub unsafe extern "C-unwind" fn capture_print(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    let stream = stream_of(l);
    for i in 1..=n {
        let s = bytes_at(l, i, true);
        if i > 1 {
            capture_of(l).push(stream, b"\t");
        }
        if !push_stoppable(l, capture_of(l), stream, s) {
            return 0;
        }
        ffi::lua_pop(l, 1);
    }
    capture_of(l).push(stream, b"\n");
    0
}

/// `io.write(...)`: strings and numbers, as Lua's; returns upvalue 3 (the `io.stdout` object).
pub unsafe extern "C-unwind" fn capture_write(l: *mut ffi::lua_State) -> c_int {
    write_args(l, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
    1
}

/// `file:write(...)` for the captured `io.stdout` / `io.stderr` objects; returns the file.
pub unsafe extern "C-unwind" fn capture_file_write(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TTABLE);
    write_args(l, 2);
    ffi::lua_pushvalue(l, 1);
    1
}

unsafe fn write_args(l: *mut ffi::lua_State, first: c_int) {
    let n = ffi::lua_gettop(l);
    let stream = stream_of(l);
    for i in first..=n {
        let s = bytes_at(l, i, false);
        if !push_stoppable(l, capture_of(l), stream, s) {
            return;
        }
    }
}

/// `warn(msg, ...)`: Lua 5.4's semantics (`@on`, `@off`), printed to the captured stderr.
pub unsafe extern "C-unwind" fn capture_warn(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::luaL_checklstring(l, 1, std::ptr::null_mut());
    for i in 2..=n {
        ffi::luaL_checklstring(l, i, std::ptr::null_mut());
    }
    let first = bytes_at(l, 1, false);
    if n == 1 && first.first() == Some(&b'@') {
        match first {
            b"@on" => capture_of(l).warnings_on = true,
            b"@off" => capture_of(l).warnings_on = false,
            _ => {}
        }
        return 0;
    }
    if !capture_of(l).warnings_on {
        return 0;
    }
    capture_of(l).push(STDERR, b"Lua warning: ");
    for i in 1..=n {
        let s = bytes_at(l, i, false);
        if !push_stoppable(l, capture_of(l), STDERR, s) {
            return 0;
        }
    }
    capture_of(l).push(STDERR, b"\n");
    0
}
