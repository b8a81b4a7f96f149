//! Compiling chunks and running them on the raw Lua stack.
//!
//! A compiled chunk is kept as a registry reference. Running it is one `lua_pcall` on the
//! VM's main state with a message handler like the standalone `lua`'s (the message plus a
//! traceback); the returned values are turned into JSON and REPL text straight from their
//! stack slots into buffers the VM reuses. The VM's lock is held for all of it, and every
//! other use of the state (through mlua) also happens under that lock, so the state is
//! never used by two threads at once.
//!
//! Outside `lua_pcall`, only API calls that cannot raise a Lua error are made: a Lua error
//! there would have no protected call to land in.

use super::values;
use mlua::{ffi, Lua};
use serde_json::Value as Json;
use std::os::raw::{c_int, c_void};

pub use crate::vm::CHUNK_NAME;
/// Chunk name of interactive input, as the standalone `lua` names it.
pub const REPL_CHUNK_NAME: &std::ffi::CStr = c"=stdin";

/// What compiling produced.
pub enum Compiled {
    /// Registry reference of the compiled function.
    Chunk(c_int),
    /// The syntax error message.
    SyntaxError(String),
    OutOfMemory,
}

/// Compiles text `code` (binary chunks are refused) under chunk name `name` and keeps it in
/// the registry.
pub fn compile(lua: &Lua, code: &[u8], name: &std::ffi::CStr) -> mlua::Result<Compiled> {
    let mut out = Compiled::OutOfMemory;
    // SAFETY: runs inside mlua's protected call; `luaL_ref` may raise a memory error, which
    // lands there. The closure holds no value with a destructor while it may raise.
    unsafe {
        lua.exec_raw::<()>((), |l| {
            let status = ffi::luaL_loadbufferx(
                l,
                code.as_ptr().cast(),
                code.len(),
                name.as_ptr(),
                c"t".as_ptr(),
            );
            out = match status {
                ffi::LUA_OK => Compiled::Chunk(ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX)),
                ffi::LUA_ERRMEM => Compiled::OutOfMemory,
                _ => Compiled::SyntaxError(string_at(l, -1)),
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
    /// It raised an error: the message with its traceback.
    Failed(String),
    OutOfMemory,
}

/// Calls the compiled `chunk` with `args` (a JSON array, or none) on the main state `l`.
/// Returned values are appended to `stdout` (REPL style) and to `values_json`.
///
/// # Safety
/// `l` must be the VM's main state, used by no other thread; `tostring_ref` and `chunk`
/// registry references of that state.
pub unsafe fn call(
    l: *mut ffi::lua_State,
    chunk: c_int,
    args: Option<&Json>,
    tostring_ref: c_int,
    stdout: &mut Vec<u8>,
    values_json: &mut Vec<u8>,
) -> Ended {
    let base = ffi::lua_gettop(l);
    if ffi::lua_checkstack(l, 8) == 0 {
        return Ended::OutOfMemory;
    }
    ffi::lua_pushcfunction(l, message_handler);
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
            if top > handler && ffi::lua_checkstack(l, 8) != 0 {
                values::write_returned(l, handler + 1, top, tostring_ref, stdout, values_json);
            } else {
                values_json.extend_from_slice(b"[]");
            }
            Ended::Returned
        }
        ffi::LUA_ERRMEM => Ended::OutOfMemory,
        _ => Ended::Failed(string_at(l, -1)),
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

/// The standalone `lua`'s message handler: a string message (or an object with
/// `__tostring`) gets a traceback; any other error object is described by its type.
unsafe extern "C-unwind" fn message_handler(l: *mut ffi::lua_State) -> c_int {
    if ffi::lua_type(l, 1) != ffi::LUA_TSTRING {
        if ffi::luaL_callmeta(l, 1, c"__tostring".as_ptr()) != 0
            && ffi::lua_type(l, -1) == ffi::LUA_TSTRING
        {
            return 1;
        }
        ffi::lua_pushfstring(
            l,
            c"(error object is a %s value)".as_ptr(),
            ffi::luaL_typename(l, 1),
        );
        ffi::lua_replace(l, 1);
    }
    let msg = ffi::lua_tolstring(l, 1, std::ptr::null_mut());
    ffi::luaL_traceback(l, l, msg, 1);
    1
}

/// The string at `idx` (a string or number; anything else gives a placeholder).
unsafe fn string_at(l: *mut ffi::lua_State, idx: c_int) -> String {
    if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
        return "(error object is not a string)".into();
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned()
}
