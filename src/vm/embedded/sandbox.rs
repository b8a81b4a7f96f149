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
//!
//! In both, the library functions that Lua implements as one long C loop are replaced by
//! copies of Lua's own code that read the stop flag as they work (the `*_stop.c` files and
//! lpattern.c next to this one, see stop.h): `load`, the pattern functions, `string.upper`,
//! `lower`, `reverse`, `rep`, `format`, `pack`, `packsize`, `unpack`, `table.concat`,
//! `insert`, `remove`, `move`, `sort`, `utf8.len`, `offset`, `codes` and `os.date`; in the
//! default sandbox also `collectgarbage`. In a trusted VM, `debug.sethook` re-arms a
//! pending stop that it would otherwise remove.

use super::capture::{self, Capture};
use super::stop::{self, LuaStopper};
use crate::vm::Sandbox;
use mlua::{ffi, Lua, LuaOptions, StdLib};
use std::ffi::CStr;
use std::os::raw::c_int;

/// Largest string `string.rep` may build in the default sandbox (a memory bound for VMs
/// without `memory_limit`; `rep` itself is stoppable in both sandboxes).
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
        install_debug(l, g);
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
    install_stoppable(l, g, sandbox);
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
    ffi::lua_pushcfunction(l, bxvm_collectgarbage);
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

// Not part of the C API (the header generator skips them).
#[allow(unused_doc_comments)]
/// cbindgen:ignore
extern "C-unwind" {
    // Lua 5.4.9's library functions with stop checks (lpattern.c and the *_stop.c files).
    fn bxvm_str_find(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_match(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_gmatch(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_gsub(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_reverse(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_lower(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_upper(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_rep(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_format(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_pack(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_packsize(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_str_unpack(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_tab_concat(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_tab_insert(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_tab_remove(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_tab_move(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_tab_sort(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_utf8_len(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_utf8_offset(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_utf8_codes(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_os_date(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_load(l: *mut ffi::lua_State) -> c_int;
    fn bxvm_collectgarbage(l: *mut ffi::lua_State) -> c_int;
}

type Entry = (ffi::lua_CFunction, &'static [u8]);

/// Sets the functions of `entries` as fields of the global table `lib` (if it exists).
unsafe fn set_functions(l: *mut ffi::lua_State, g: c_int, lib: &'static [u8], entries: &[Entry]) {
    if ffi::lua_getfield(l, g, name(lib)) == ffi::LUA_TTABLE {
        let t = ffi::lua_gettop(l);
        for &(f, field) in entries {
            ffi::lua_pushcfunction(l, f);
            ffi::lua_setfield(l, t, name(field));
        }
    }
    ffi::lua_settop(l, g);
}

/// Replaces the library functions that loop in C with the stoppable copies (methods on
/// strings go through the same `string` table). `string.rep` gets the size cap of the
/// default sandbox as its upvalue (0: none); `load` whether it loads text only.
unsafe fn install_stoppable(l: *mut ffi::lua_State, g: c_int, sandbox: Sandbox) {
    let default = sandbox == Sandbox::Default;
    set_functions(
        l,
        g,
        b"string\0",
        &[
            (bxvm_str_find, b"find\0"),
            (bxvm_str_match, b"match\0"),
            (bxvm_gmatch, b"gmatch\0"),
            (bxvm_str_gsub, b"gsub\0"),
            (bxvm_str_reverse, b"reverse\0"),
            (bxvm_str_lower, b"lower\0"),
            (bxvm_str_upper, b"upper\0"),
            (bxvm_str_format, b"format\0"),
            (bxvm_str_pack, b"pack\0"),
            (bxvm_str_packsize, b"packsize\0"),
            (bxvm_str_unpack, b"unpack\0"),
        ],
    );
    ffi::lua_getfield(l, g, name(b"string\0"));
    ffi::lua_pushinteger(l, if default { MAX_REP_BYTES } else { 0 });
    ffi::lua_pushcclosure(l, bxvm_str_rep, 1);
    ffi::lua_setfield(l, -2, name(b"rep\0"));
    ffi::lua_settop(l, g);
    set_functions(
        l,
        g,
        b"table\0",
        &[
            (bxvm_tab_concat, b"concat\0"),
            (bxvm_tab_insert, b"insert\0"),
            (bxvm_tab_remove, b"remove\0"),
            (bxvm_tab_move, b"move\0"),
            (bxvm_tab_sort, b"sort\0"),
        ],
    );
    set_functions(
        l,
        g,
        b"utf8\0",
        &[
            (bxvm_utf8_len, b"len\0"),
            (bxvm_utf8_offset, b"offset\0"),
            (bxvm_utf8_codes, b"codes\0"),
        ],
    );
    set_functions(l, g, b"os\0", &[(bxvm_os_date, b"date\0")]);
    ffi::lua_pushboolean(l, c_int::from(default));
    ffi::lua_pushcclosure(l, bxvm_load, 1);
    ffi::lua_setfield(l, g, name(b"load\0"));
}

/// A trusted VM's `debug.sethook` goes through [`stop::guarded_sethook`].
unsafe fn install_debug(l: *mut ffi::lua_State, g: c_int) {
    if ffi::lua_getfield(l, g, name(b"debug\0")) == ffi::LUA_TTABLE {
        let d = ffi::lua_gettop(l);
        ffi::lua_getfield(l, d, name(b"sethook\0"));
        ffi::lua_pushcclosure(l, stop::guarded_sethook, 1);
        ffi::lua_setfield(l, d, name(b"sethook\0"));
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
