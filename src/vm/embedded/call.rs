//! Compiling chunks and running them on the raw Lua stack.
//!
//! Chunks are compiled through `bxvm_loadbufferx` (lload_stop.c), which feeds the parser
//! in slices and stops between them when a timeout or an interrupt is pending.
//! A compiled chunk is kept as a registry reference. Running it is one `lua_pcall` on the
//! VM's main state with a message handler like the standalone `lua`'s (the message plus a
//! traceback, built in ltraceback.c and cut at `max_output`); the returned values are
//! turned into JSON and REPL text straight from their stack slots into buffers the VM
//! reuses. The VM's lock is held for all of it, and every other use of the state (through
//! mlua) also happens under that lock, so the state is never used by two threads at once.
//!
//! Error text reaches the host cut to `max_output` bytes ([`ErrorText`]): it is never
//! copied whole out of Lua.
//!
//! Outside `lua_pcall`, only API calls that cannot raise a Lua error are made: a Lua error
//! there would have no protected call to land in.

use super::capture::Capture;
use super::values::{self, Converted};
use mlua::{ffi, Lua};
use serde_json::Value as Json;
use std::os::raw::{c_char, c_int, c_void};

// Not part of the C API (the header generator skips them).
#[allow(unused_doc_comments)]
/// cbindgen:ignore
extern "C-unwind" {
    // lload_stop.c and ltraceback.c.
    fn bxvm_loadbufferx(
        l: *mut ffi::lua_State,
        buff: *const c_char,
        size: usize,
        name: *const c_char,
        mode: *const c_char,
    ) -> c_int;
    fn bxvm_message_handler(l: *mut ffi::lua_State) -> c_int;
}

/// Shared with the message handler (`bxvm_ErrorInfo` in ltraceback.c).
#[repr(C)]
pub struct ErrorInfo {
    /// Most bytes of text the handler builds (the VM's `max_output`).
    pub max: usize,
    /// Set by the handler: the length the whole message and traceback would have.
    pub full_len: usize,
}

/// The message handler as a C closure over `info`, kept in the registry; returns its
/// reference. Called once, at VM creation, inside a protected call (it allocates).
///
/// # Safety
/// `info` must outlive the state.
pub unsafe fn register_handler(l: *mut ffi::lua_State, info: *mut ErrorInfo) -> c_int {
    ffi::lua_pushlightuserdata(l, info.cast());
    ffi::lua_pushcclosure(l, bxvm_message_handler, 1);
    ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX)
}

/// An error message as the host keeps it: at most `max_output` bytes of valid UTF-8 (an
/// invalid sequence becomes U+FFFD), cut at a character boundary.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorText {
    pub text: String,
    /// Bytes of the whole message that `text` leaves out.
    pub cut: u64,
}

impl ErrorText {
    /// A message from the host itself.
    pub fn new(message: &str, max: usize) -> Self {
        error_text(message.as_bytes(), message.len(), max)
    }
}

/// The first bytes of `raw` (whose whole text is `full_len` bytes long) as an
/// [`ErrorText`] of at most `max` bytes.
pub fn error_text(raw: &[u8], full_len: usize, max: usize) -> ErrorText {
    let full_len = full_len.max(raw.len());
    let raw = &raw[..raw.len().min(max)];
    let mut text = String::with_capacity(raw.len());
    let mut consumed = 0;
    for chunk in raw.utf8_chunks() {
        let valid = chunk.valid();
        if text.len() + valid.len() > max {
            let mut end = max - text.len();
            while !valid.is_char_boundary(end) {
                end -= 1;
            }
            text.push_str(&valid[..end]);
            consumed += end;
            break;
        }
        text.push_str(valid);
        consumed += valid.len();
        let invalid = chunk.invalid();
        if !invalid.is_empty() {
            if text.len() + '\u{FFFD}'.len_utf8() > max {
                break;
            }
            text.push('\u{FFFD}');
            consumed += invalid.len();
        }
    }
    ErrorText {
        text,
        cut: (full_len - consumed) as u64,
    }
}

pub use crate::vm::CHUNK_NAME;
/// Chunk name of interactive input, as the standalone `lua` names it.
pub const REPL_CHUNK_NAME: &std::ffi::CStr = c"=stdin";

/// What compiling produced.
pub enum Compiled {
    /// Registry reference of the compiled function.
    Chunk(c_int),
    /// The syntax error message (or the stop error, when a stop was pending); `at_eof`:
    /// the whole message ends in "<eof>" (the chunk is incomplete).
    SyntaxError {
        message: ErrorText,
        at_eof: bool,
    },
    OutOfMemory,
}

/// Compiles text `code` (binary chunks are refused) under chunk name `name` and keeps it in
/// the registry; a syntax error message is cut at `max` bytes.
pub fn compile(
    lua: &Lua,
    code: &[u8],
    name: &std::ffi::CStr,
    max: usize,
) -> mlua::Result<Compiled> {
    let mut out = Compiled::OutOfMemory;
    // SAFETY: runs inside mlua's protected call; `luaL_ref` may raise a memory error, which
    // lands there (`bxvm_loadbufferx` is protected itself). The closure holds no value with
    // a destructor while it may raise.
    unsafe {
        lua.exec_raw::<()>((), |l| {
            let status = bxvm_loadbufferx(
                l,
                code.as_ptr().cast(),
                code.len(),
                name.as_ptr(),
                c"t".as_ptr(),
            );
            out = match status {
                ffi::LUA_OK => Compiled::Chunk(ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX)),
                ffi::LUA_ERRMEM => Compiled::OutOfMemory,
                _ => {
                    let raw = bytes_at(l, -1);
                    Compiled::SyntaxError {
                        at_eof: raw.ends_with(b"<eof>"),
                        message: error_text(raw, raw.len(), max),
                    }
                }
            };
            ffi::lua_settop(l, 0);
        })?;
    }
    Ok(out)
}

/// Drops a compiled chunk.
///
/// # Safety
/// `l` must be the VM's main state, not running; `chunk` a reference from [`compile`].
pub unsafe fn release(l: *mut ffi::lua_State, chunk: c_int) {
    if ffi::lua_checkstack(l, 2) != 0 {
        // Writes existing registry slots only: cannot raise.
        ffi::luaL_unref(l, ffi::LUA_REGISTRYINDEX, chunk);
    }
}

/// How a call ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// It returned; its values are in the buffers.
    Returned,
    /// It returned values whose JSON does not fit in `max_output`: at least this many
    /// bytes were past it when the conversion stopped.
    TooLarge(u64),
    /// It raised an error: the message with its traceback.
    Failed(ErrorText),
    OutOfMemory,
}

/// The VM's registry references and buffers that a call uses.
pub struct Slots {
    /// The original `tostring` (REPL text of returned tables).
    pub tostring_ref: c_int,
    /// The message handler ([`register_handler`]).
    pub handler_ref: c_int,
    pub info: *mut ErrorInfo,
    pub capture: *mut Capture,
}

/// Calls the compiled `chunk` with `args` (a JSON array, or none) on the main state `l`.
/// Returned values are appended to the captured stdout (REPL style) and to `values_json`
/// (at most `max_output` bytes).
///
/// # Safety
/// `l` must be the VM's main state, used by no other thread; `chunk` and the references
/// in `slots` registry references of that state; `slots`' pointers valid.
pub unsafe fn call(
    l: *mut ffi::lua_State,
    chunk: c_int,
    args: Option<&Json>,
    slots: &Slots,
    values_json: &mut Vec<u8>,
) -> Ended {
    values_json.clear();
    let base = ffi::lua_gettop(l);
    if ffi::lua_checkstack(l, 8) == 0 {
        return Ended::OutOfMemory;
    }
    let max = (*slots.info).max;
    (*slots.info).full_len = 0;
    ffi::lua_rawgeti(
        l,
        ffi::LUA_REGISTRYINDEX,
        slots.handler_ref as ffi::lua_Integer,
    );
    let handler = base + 1;
    let nargs = match args {
        Some(a) if a.as_array().is_some_and(|a| !a.is_empty()) => {
            // The arguments are built inside the protected call (building them allocates).
            ffi::lua_pushcfunction(l, call_with_args);
            ffi::lua_pushinteger(l, chunk as ffi::lua_Integer);
            ffi::lua_pushlightuserdata(l, a as *const Json as *mut c_void);
            2
        }
        _ => {
            ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, chunk as ffi::lua_Integer);
            0
        }
    };
    let status = ffi::lua_pcall(l, nargs, ffi::LUA_MULTRET, handler);
    let top = ffi::lua_gettop(l);
    let ended = match status {
        ffi::LUA_OK => {
            let converted = if top > handler && ffi::lua_checkstack(l, 8) != 0 {
                values::write_returned(
                    l,
                    handler + 1,
                    top,
                    slots.tostring_ref,
                    slots.capture,
                    values_json,
                    max,
                )
            } else {
                values_json.extend_from_slice(b"[]");
                Converted::Fit
            };
            match converted {
                Converted::TooLarge(over) => Ended::TooLarge(over),
                // A stop decides the outcome (the caller reads the stop flag).
                Converted::Fit | Converted::Stopped => Ended::Returned,
            }
        }
        ffi::LUA_ERRMEM => Ended::OutOfMemory,
        _ => {
            let raw = if ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
                bytes_at(l, -1)
            } else {
                b"(error object is not a string)"
            };
            // The handler's count, unless the handler itself failed (LUA_ERRERR).
            let full = if status == ffi::LUA_ERRERR {
                raw.len()
            } else {
                (*slots.info).full_len
            };
            Ended::Failed(error_text(raw, full, max))
        }
    };
    ffi::lua_settop(l, base);
    ended
}

/// Runs inside the protected call: stack is (chunk ref, args pointer).
unsafe extern "C-unwind" fn call_with_args(l: *mut ffi::lua_State) -> c_int {
    let chunk = ffi::lua_tointegerx(l, 1, std::ptr::null_mut());
    let args = &*(ffi::lua_touserdata(l, 2) as *const Json);
    ffi::lua_settop(l, 0);
    ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, chunk);
    let list = args.as_array().map(Vec::as_slice).unwrap_or(&[]);
    ffi::luaL_checkstack(l, list.len() as c_int + 1, c"too many arguments".as_ptr());
    for a in list {
        values::push_json(l, a);
    }
    ffi::lua_call(l, list.len() as c_int, ffi::LUA_MULTRET);
    ffi::lua_gettop(l)
}

/// The bytes of the string at `idx` (which must be a string: no conversion happens).
unsafe fn bytes_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
        return b"(error object is not a string)";
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    std::slice::from_raw_parts(p as *const u8, len)
}
