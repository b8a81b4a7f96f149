//! Building a `basic` VM's Lua state: which libraries it gets and what is replaced.
//!
//! Default sandbox (DESIGN decision 3): `base` without `dofile`/`loadfile`, `load` for text
//! chunks only, `collectgarbage` limited to `collect`/`count`/`step`/`isrunning`,
//! `setmetatable` refusing `__gc` (finalizers run with hooks off and could not be stopped);
//! `string` without `dump` and with a size cap on `rep`; `table`, `math`, `utf8`,
//! `coroutine`; `os` reduced to `time`, `clock`, `date`, `difftime`; an `io` table with
//! only `write`, `stdout` and `stderr` (captured); no `debug`, no `package`/`require`.
//! `trusted` loads the full standard library. Both capture `print`, `io.write` and `warn`,
//! and both route `coroutine.resume`/`close`/`wrap` and `xpcall`'s message handler through
//! the stop machinery.

use super::capture::{self, Capture};
use super::stop::{self, LuaStopper};
use crate::vm::Sandbox;
use mlua::{ffi, Lua, LuaOptions, StdLib};
use std::ffi::CStr;
use std::os::raw::c_int;

/// Largest string `string.rep` may build in the default sandbox. One `rep` call is a single
/// C call that no hook can stop, so its size is what bounds its time.
pub const MAX_REP_BYTES: i64 = 64 << 20;

/// Creates the Lua state for `sandbox`.
pub fn new_state(sandbox: Sandbox) -> mlua::Result<Lua> {
    match sandbox {
        Sandbox::Default => Lua::new_with(
            StdLib::COROUTINE
                | StdLib::TABLE
                | StdLib::STRING
                | StdLib::UTF8
                | StdLib::MATH
                | StdLib::OS,
            LuaOptions::new(),
        ),
        // SAFETY: "trusted" is the caller's explicit opt-in to the full library.
        Sandbox::Trusted => Ok(unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::new()) }),
    }
}

fn name(s: &'static [u8]) -> *const std::os::raw::c_char {
    debug_assert!(CStr::from_bytes_with_nul(s).is_ok());
    s.as_ptr().cast()
}

/// Installs capture, the sandbox and the coroutine tracking into the state whose main
/// thread is `l` (called through `exec_raw`, so Lua errors are caught by mlua).
///
/// # Safety
/// `capture` and `stopper` must outlive the state.
pub unsafe fn install(
    l: *mut ffi::lua_State,
    sandbox: Sandbox,
    capture: *mut Capture,
    stopper: &LuaStopper,
) {
    stopper.attach(l);
    ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_GLOBALS);
    let g = ffi::lua_gettop(l);

    push_capture_fn(l, capture, capture::STDOUT, capture::capture_print, 0);
    ffi::lua_setfield(l, g, name(b"print\0"));
    push_capture_fn(l, capture, capture::STDERR, capture::capture_warn, 0);
    ffi::lua_setfield(l, g, name(b"warn\0"));

    if sandbox == Sandbox::Default {
        install_io(l, g, capture);
        restrict_base(l, g);
        restrict_string(l, g);
        restrict_os(l, g);
    } else {
        // Full `io`, but `io.write` still goes to the captured stdout and returns io.stdout.
        ffi::lua_getfield(l, g, name(b"io\0"));
        let io = ffi::lua_gettop(l);
        ffi::lua_getfield(l, io, name(b"stdout\0"));
        let out = ffi::lua_gettop(l);
        push_capture_fn(l, capture, capture::STDOUT, capture::capture_write, out);
        ffi::lua_setfield(l, io, name(b"write\0"));
        ffi::lua_settop(l, g);
    }
    install_coroutine(l, g);
    install_patterns(l, g);
    ffi::lua_getfield(l, g, name(b"xpcall\0"));
    ffi::lua_pushcclosure(l, stop::guarded_xpcall, 1);
    ffi::lua_setfield(l, g, name(b"xpcall\0"));
    ffi::lua_settop(l, g - 1);
}

/// Pushes a C closure with upvalues (capture, stream) and, when `extra != 0`, the value at
/// `extra` as a third upvalue.
unsafe fn push_capture_fn(
    l: *mut ffi::lua_State,
    capture: *mut Capture,
    stream: ffi::lua_Integer,
    f: ffi::lua_CFunction,
    extra: c_int,
) {
    ffi::lua_pushlightuserdata(l, capture.cast());
    ffi::lua_pushinteger(l, stream);
    if extra != 0 {
        ffi::lua_pushvalue(l, extra);
        ffi::lua_pushcclosure(l, f, 3);
    } else {
        ffi::lua_pushcclosure(l, f, 2);
    }
}

unsafe fn install_io(l: *mut ffi::lua_State, g: c_int, capture: *mut Capture) {
    ffi::lua_createtable(l, 0, 3);
    let io = ffi::lua_gettop(l);
    for (stream, field) in [
        (capture::STDOUT, b"stdout\0" as &'static [u8]),
        (capture::STDERR, b"stderr\0"),
    ] {
        ffi::lua_createtable(l, 0, 1);
        push_capture_fn(l, capture, stream, capture::capture_file_write, 0);
        ffi::lua_setfield(l, -2, name(b"write\0"));
        ffi::lua_setfield(l, io, name(field));
    }
    ffi::lua_getfield(l, io, name(b"stdout\0"));
    let out = ffi::lua_gettop(l);
    push_capture_fn(l, capture, capture::STDOUT, capture::capture_write, out);
    ffi::lua_setfield(l, io, name(b"write\0"));
    ffi::lua_settop(l, io);
    ffi::lua_setfield(l, g, name(b"io\0"));
}

unsafe fn restrict_base(l: *mut ffi::lua_State, g: c_int) {
    for f in [b"dofile\0" as &'static [u8], b"loadfile\0"] {
        ffi::lua_pushnil(l);
        ffi::lua_setfield(l, g, name(f));
    }
    ffi::lua_getfield(l, g, name(b"load\0"));
    ffi::lua_pushcclosure(l, text_only_load, 1);
    ffi::lua_setfield(l, g, name(b"load\0"));
    ffi::lua_getfield(l, g, name(b"collectgarbage\0"));
    ffi::lua_pushcclosure(l, limited_collectgarbage, 1);
    ffi::lua_setfield(l, g, name(b"collectgarbage\0"));
    ffi::lua_getfield(l, g, name(b"setmetatable\0"));
    ffi::lua_pushcclosure(l, setmetatable_without_gc, 1);
    ffi::lua_setfield(l, g, name(b"setmetatable\0"));
}

unsafe fn restrict_string(l: *mut ffi::lua_State, g: c_int) {
    ffi::lua_getfield(l, g, name(b"string\0"));
    let s = ffi::lua_gettop(l);
    ffi::lua_pushnil(l);
    ffi::lua_setfield(l, s, name(b"dump\0"));
    ffi::lua_getfield(l, s, name(b"rep\0"));
    ffi::lua_pushinteger(l, MAX_REP_BYTES);
    ffi::lua_pushcclosure(l, capped_rep, 2);
    ffi::lua_setfield(l, s, name(b"rep\0"));
    ffi::lua_settop(l, g);
}

unsafe fn restrict_os(l: *mut ffi::lua_State, g: c_int) {
    ffi::lua_getfield(l, g, name(b"os\0"));
    let old = ffi::lua_gettop(l);
    ffi::lua_createtable(l, 0, 4);
    for f in [
        b"time\0" as &'static [u8],
        b"clock\0",
        b"date\0",
        b"difftime\0",
    ] {
        ffi::lua_getfield(l, old, name(f));
        ffi::lua_setfield(l, -2, name(f));
    }
    ffi::lua_setfield(l, g, name(b"os\0"));
    ffi::lua_settop(l, g);
}

extern "C-unwind" {
    // Lua 5.4.9's pattern functions with a stop check (lpattern.c).
    fn bxvm_str_find(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_match(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_gmatch(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_gsub(l: *mut ffi::lua_State) -> c_int;
}

/// Replaces `string.find`, `match`, `gmatch` and `gsub` with the stoppable copies (methods
/// on strings go through the same table).
unsafe fn install_patterns(l: *mut ffi::lua_State, g: c_int) {
    ffi::lua_getfield(l, g, name(b"string\0"));
    let s = ffi::lua_gettop(l);
    for (f, field) in [
        (
            bxvm_str_find as ffi::lua_CFunction,
            b"find\0" as &'static [u8],
        ),
        (bxvm_str_match, b"match\0"),
        (bxvm_gmatch, b"gmatch\0"),
        (bxvm_str_gsub, b"gsub\0"),
    ] {
        ffi::lua_pushcfunction(l, f);
        ffi::lua_setfield(l, s, name(field));
    }
    ffi::lua_settop(l, g);
}

unsafe fn install_coroutine(l: *mut ffi::lua_State, g: c_int) {
    ffi::lua_getfield(l, g, name(b"coroutine\0"));
    let co = ffi::lua_gettop(l);
    for f in [b"resume\0" as &'static [u8], b"close\0"] {
        ffi::lua_getfield(l, co, name(f));
        ffi::lua_pushcclosure(l, stop::tracked_thread_call, 1);
        ffi::lua_setfield(l, co, name(f));
    }
    ffi::lua_getfield(l, co, name(b"create\0"));
    ffi::lua_getfield(l, co, name(b"resume\0"));
    ffi::lua_pushcclosure(l, stop::tracked_wrap, 2);
    ffi::lua_setfield(l, co, name(b"wrap\0"));
    ffi::lua_settop(l, g);
}

/// Tail of every wrapper here: calls the original function (upvalue 1) with all the
/// arguments on the stack and returns all its results.
unsafe fn call_original(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, ffi::LUA_MULTRET);
    ffi::lua_gettop(l)
}

/// `load` for text chunks only, with Lua's own messages: a binary string chunk is loaded
/// with mode "t" (refused as Lua refuses it); a text string chunk keeps the caller's mode
/// (it cannot be binary); a reader function, which cannot be inspected first, is loaded with
/// mode "t".
unsafe extern "C-unwind" fn text_only_load(l: *mut ffi::lua_State) -> c_int {
    let is_string = ffi::lua_type(l, 1) == ffi::LUA_TSTRING;
    if !is_string {
        ffi::luaL_checktype(l, 1, ffi::LUA_TFUNCTION);
    }
    let n = ffi::lua_gettop(l);
    if n < 3 {
        ffi::lua_settop(l, 3);
    }
    ffi::luaL_optlstring(l, 3, name(b"bt\0"), std::ptr::null_mut());
    let binary = is_string && {
        let mut len = 0usize;
        let p = ffi::lua_tolstring(l, 1, &mut len);
        len > 0 && *p == 0x1b
    };
    if binary || !is_string {
        ffi::lua_pushstring(l, name(b"t\0"));
        ffi::lua_replace(l, 3);
    }
    call_original(l)
}

/// `setmetatable` refusing metatables with `__gc`. Lua runs finalizers with hooks turned
/// off, so a looping finalizer could stop neither a timeout nor the freeing of the VM; an
/// object is marked for finalization only when its metatable has `__gc` at this call, so
/// refusing it here is enough.
unsafe extern "C-unwind" fn setmetatable_without_gc(l: *mut ffi::lua_State) -> c_int {
    if ffi::lua_type(l, 2) == ffi::LUA_TTABLE {
        ffi::lua_pushstring(l, name(b"__gc\0"));
        let t = ffi::lua_rawget(l, 2);
        ffi::lua_pop(l, 1);
        if t != ffi::LUA_TNIL {
            ffi::lua_pushstring(
                l,
                name(b"__gc metamethods are not available in the sandbox (a finalizer cannot be stopped)\0"),
            );
            ffi::lua_error(l);
        }
    }
    call_original(l)
}

/// `collectgarbage` limited to the options that cannot change the collector's behaviour.
unsafe extern "C-unwind" fn limited_collectgarbage(l: *mut ffi::lua_State) -> c_int {
    let opt = ffi::luaL_optlstring(l, 1, name(b"collect\0"), std::ptr::null_mut());
    let opt = CStr::from_ptr(opt).to_bytes();
    if !matches!(opt, b"collect" | b"count" | b"step" | b"isrunning") {
        ffi::lua_pushfstring(
            l,
            name(b"collectgarbage('%s') is not allowed in the sandbox\0"),
            ffi::lua_tolstring(l, 1, std::ptr::null_mut()),
        );
        ffi::lua_error(l);
    }
    call_original(l)
}

/// `string.rep` refusing results larger than upvalue 2 bytes.
unsafe extern "C-unwind" fn capped_rep(l: *mut ffi::lua_State) -> c_int {
    let mut len = 0usize;
    let mut sep_len = 0usize;
    ffi::luaL_checklstring(l, 1, &mut len);
    let count = ffi::luaL_checkinteger(l, 2);
    ffi::luaL_optlstring(l, 3, name(b"\0"), &mut sep_len);
    let cap = ffi::lua_tointeger(l, ffi::lua_upvalueindex(2));
    if (len == 0 && sep_len == 0) || count <= 0 {
        // Lua would still loop `count` times inside one C call to build "".
        ffi::lua_pushstring(l, name(b"\0"));
        return 1;
    }
    {
        let total = (len as i128) * (count as i128) + (sep_len as i128) * (count as i128 - 1);
        if total > cap as i128 {
            ffi::lua_pushfstring(
                l,
                name(b"string.rep result too large (limit %I bytes in the sandbox)\0"),
                cap,
            );
            ffi::lua_error(l);
        }
    }
    call_original(l)
}
