//! Running a compiled chunk on the raw Lua stack and reading what it returned.
//!
//! The chunk runs inside mlua's protected call (its message handler adds the traceback);
//! the returned values are turned into JSON and REPL text
//! straight from their stack slots, into buffers the VM reuses, so a call allocates nothing
//! on the Lua side and no intermediate values on the Rust side.

use super::values;
use mlua::{ffi, Function, Lua, MultiValue};
use std::os::raw::c_int;

/// Calls `f` with `args`. Returned values are appended to `stdout` (REPL style) and to
/// `values_json`. A Lua error (message and traceback, from mlua's message handler) or a
/// memory error comes back as `Err`.
pub fn call_chunk(
    lua: &Lua,
    f: &Function,
    args: MultiValue,
    tostring_ref: c_int,
    stdout: &mut Vec<u8>,
    values_json: &mut Vec<u8>,
) -> mlua::Result<()> {
    // SAFETY: `exec_raw` runs the closure inside a protected call. A Lua error raised by the
    // chunk jumps out of the closure from `lua_call`, where the closure holds only
    // references (no value with a destructor is skipped). After `lua_call` returns, only
    // calls that cannot raise are made, except inside `lua_pcall` (see values.rs).
    unsafe {
        lua.exec_raw::<()>((f, args), |l| {
            let nargs = ffi::lua_gettop(l) - 1;
            ffi::lua_call(l, nargs, ffi::LUA_MULTRET);
            let top = ffi::lua_gettop(l);
            if top == 0 {
                values_json.extend_from_slice(b"[]");
            } else if ffi::lua_checkstack(l, 8) != 0 {
                values::write_repl_line(l, 1, top, tostring_ref, stdout);
                values::write_values_json(l, 1, top, values_json);
            } else {
                values_json.extend_from_slice(b"[]");
            }
            ffi::lua_settop(l, 0);
        })
    }
}
