//! Values between Lua and the host.
//!
//! Out of Lua, straight from stack slots (no intermediate value tree): the JSON text of
//! returned values, and their text as the Lua REPL prints them. Nil is null; booleans,
//! integers and finite floats are themselves; strings are JSON strings (invalid UTF-8 is
//! replaced with U+FFFD); a table whose keys are exactly 1..n is an array, any other table
//! an object with its keys as strings (an empty table is `{}`); what JSON cannot hold
//! (functions, userdata, threads, NaN and the infinities, a table met again on its own
//! path, tables nested deeper than `MAX_DEPTH`) becomes its `tostring` text, without
//! calling metamethods.
//!
//! Only Lua API calls that cannot raise an error are made here, except through
//! `lua_pcall`: these functions run inside Rust frames that a Lua error must not cross.
//!
//! Into Lua: JSON arguments are pushed as Lua values.

use mlua::ffi;
use serde_json::Value as Json;
use std::ffi::c_void;
use std::os::raw::c_int;

/// Deepest nesting converted; deeper tables become their `tostring` text.
pub const MAX_DEPTH: usize = 64;

/// Appends the returned values in slots `first..=last` to `stdout` as the Lua REPL prints
/// them (`tostring` of each, its `__tostring` honoured through the function in registry
/// slot `tostring_ref`; tab-separated; a newline) and to `json` as a JSON array. Each value
/// is looked at once; an integer is formatted once for both.
///
/// # Safety
/// `l` must be a valid state whose slots `first..=last` exist, with 4 free slots.
pub unsafe fn write_returned(
    l: *mut ffi::lua_State,
    first: c_int,
    last: c_int,
    tostring_ref: c_int,
    stdout: &mut Vec<u8>,
    json: &mut Vec<u8>,
) {
    json.push(b'[');
    let mut path = Vec::new();
    for i in first..=last {
        if i > first {
            stdout.push(b'\t');
            json.push(b',');
        }
        if ffi::lua_type(l, i) == ffi::LUA_TNUMBER && ffi::lua_isinteger(l, i) != 0 {
            let start = json.len();
            write_integer(json, ffi::lua_tointegerx(l, i, std::ptr::null_mut()));
            stdout.extend_from_slice(&json[start..]);
            continue;
        }
        write_repl_value(l, i, tostring_ref, stdout);
        write_json(l, i, json, &mut path);
    }
    stdout.push(b'\n');
    json.push(b']');
}

unsafe fn write_json(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut Vec<u8>,
    path: &mut Vec<*const c_void>,
) {
    match ffi::lua_type(l, idx) {
        ffi::LUA_TNIL => out.extend_from_slice(b"null"),
        ffi::LUA_TBOOLEAN => out.extend_from_slice(if ffi::lua_toboolean(l, idx) != 0 {
            b"true"
        } else {
            b"false"
        }),
        ffi::LUA_TNUMBER => {
            if ffi::lua_isinteger(l, idx) != 0 {
                write_integer(out, ffi::lua_tointegerx(l, idx, std::ptr::null_mut()));
            } else {
                let n = ffi::lua_tonumberx(l, idx, std::ptr::null_mut());
                if n.is_finite() {
                    let _ = serde_json::to_writer(&mut *out, &n);
                } else {
                    write_json_str(out, float_text(n).as_bytes());
                }
            }
        }
        ffi::LUA_TSTRING => write_json_str(out, string_at(l, idx)),
        ffi::LUA_TTABLE => write_table(l, idx, out, path),
        _ => write_json_str(out, opaque_text(l, idx).as_bytes()),
    }
}

unsafe fn write_table(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut Vec<u8>,
    path: &mut Vec<*const c_void>,
) {
    let p = ffi::lua_topointer(l, idx);
    if path.len() >= MAX_DEPTH || path.contains(&p) || ffi::lua_checkstack(l, 4) == 0 {
        write_json_str(out, opaque_text(l, idx).as_bytes());
        return;
    }
    let idx = ffi::lua_absindex(l, idx);
    path.push(p);
    let n = ffi::lua_rawlen(l, idx);
    // Is it exactly a sequence 1..n?
    let mut count = 0usize;
    let mut is_array = n > 0;
    ffi::lua_pushnil(l);
    while ffi::lua_next(l, idx) != 0 {
        count += 1;
        if is_array {
            let k = ffi::lua_tointegerx(l, -2, std::ptr::null_mut());
            is_array = ffi::lua_isinteger(l, -2) != 0 && k >= 1 && (k as u64) <= n as u64;
        }
        ffi::lua_pop(l, 1);
    }
    if is_array && count == n {
        out.push(b'[');
        for i in 1..=n {
            if i > 1 {
                out.push(b',');
            }
            ffi::lua_rawgeti(l, idx, i as ffi::lua_Integer);
            write_json(l, -1, out, path);
            ffi::lua_pop(l, 1);
        }
        out.push(b']');
    } else {
        out.push(b'{');
        let mut first = true;
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, idx) != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            write_key(l, -2, out);
            out.push(b':');
            write_json(l, -1, out, path);
            ffi::lua_pop(l, 1);
        }
        out.push(b'}');
    }
    path.pop();
}

unsafe fn write_key(l: *mut ffi::lua_State, idx: c_int, out: &mut Vec<u8>) {
    match ffi::lua_type(l, idx) {
        ffi::LUA_TSTRING => write_json_str(out, string_at(l, idx)),
        _ => {
            let mut text = Vec::new();
            if !write_plain(l, idx, &mut text) {
                text = opaque_text(l, idx).into_bytes();
            }
            write_json_str(out, &text);
        }
    }
}

/// Decimal digits of an integer (serde_json's integer formatting, which is also Lua's).
fn write_integer(out: &mut Vec<u8>, n: i64) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// The bytes of the string at `idx` (which must be a string: no conversion happens).
unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    std::slice::from_raw_parts(p as *const u8, len)
}

fn write_json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    let _ = serde_json::to_writer(&mut *out, s.as_ref());
}

/// `tostring` text of a value without calling metamethods (`table: 0x...`).
unsafe fn opaque_text(l: *mut ffi::lua_State, idx: c_int) -> String {
    let name = std::ffi::CStr::from_ptr(ffi::luaL_typename(l, idx)).to_string_lossy();
    format!("{name}: {:p}", ffi::lua_topointer(l, idx))
}

/// Appends the text of a nil, boolean, number or string as `tostring` gives it; other
/// values as their opaque text. Returns `false` for values that have a richer `tostring`
/// (tables, userdata) so the caller can call it.
unsafe fn write_plain(l: *mut ffi::lua_State, idx: c_int, out: &mut Vec<u8>) -> bool {
    match ffi::lua_type(l, idx) {
        ffi::LUA_TNIL => out.extend_from_slice(b"nil"),
        ffi::LUA_TBOOLEAN => out.extend_from_slice(if ffi::lua_toboolean(l, idx) != 0 {
            b"true"
        } else {
            b"false"
        }),
        ffi::LUA_TNUMBER => {
            if ffi::lua_isinteger(l, idx) != 0 {
                write_integer(out, ffi::lua_tointegerx(l, idx, std::ptr::null_mut()));
            } else {
                out.extend_from_slice(
                    float_text(ffi::lua_tonumberx(l, idx, std::ptr::null_mut())).as_bytes(),
                );
            }
        }
        ffi::LUA_TSTRING => out.extend_from_slice(string_at(l, idx)),
        ffi::LUA_TTABLE | ffi::LUA_TUSERDATA => return false,
        _ => out.extend_from_slice(opaque_text(l, idx).as_bytes()),
    }
    true
}

/// Appends the value in slot `i` as `tostring` gives it (through the function in registry
/// slot `tostring_ref` for tables and userdata, under `lua_pcall`).
unsafe fn write_repl_value(
    l: *mut ffi::lua_State,
    i: c_int,
    tostring_ref: c_int,
    out: &mut Vec<u8>,
) {
    if write_plain(l, i, out) {
        return;
    }
    if ffi::lua_checkstack(l, 2) == 0 {
        out.extend_from_slice(opaque_text(l, i).as_bytes());
        return;
    }
    ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, tostring_ref as ffi::lua_Integer);
    ffi::lua_pushvalue(l, i);
    let status = ffi::lua_pcall(l, 1, 1, 0);
    if status == ffi::LUA_OK && ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
        out.extend_from_slice(string_at(l, -1));
    } else if ffi::lua_type(l, -1) == ffi::LUA_TSTRING {
        out.extend_from_slice(b"<tostring failed: ");
        out.extend_from_slice(string_at(l, -1));
        out.push(b'>');
    } else {
        out.extend_from_slice(opaque_text(l, i).as_bytes());
    }
    ffi::lua_pop(l, 1);
}

/// A float as Lua 5.4 prints it (`%.14g`, with `.0` added to integral values).
pub fn float_text(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format_g14(n);
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        format!("{s}.0")
    } else {
        s
    }
}

/// C's `%.14g`.
fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.13e}", n);
    let (mant, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    if !(-4..14).contains(&e) {
        let mant = trim_zeros(mant);
        let sign = if e < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", e.abs())
    } else {
        let decimals = (13 - e).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, n)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Pushes a JSON value as a Lua value (arrays and objects become tables, null becomes nil).
/// May raise a memory error: call it only inside a protected call. It keeps no value with
/// a destructor alive across the calls that may raise.
///
/// # Safety
/// `l` must have room for 3 more slots per nesting level (checked here).
pub unsafe fn push_json(l: *mut ffi::lua_State, v: &Json) {
    ffi::luaL_checkstack(l, 3, c"arguments nested too deeply".as_ptr());
    match v {
        Json::Null => ffi::lua_pushnil(l),
        Json::Bool(b) => ffi::lua_pushboolean(l, c_int::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => ffi::lua_pushinteger(l, i),
            None => ffi::lua_pushnumber(l, n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => {
            ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
        }
        Json::Array(a) => {
            ffi::lua_createtable(l, a.len().min(c_int::MAX as usize) as c_int, 0);
            for (i, x) in a.iter().enumerate() {
                push_json(l, x);
                ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
            }
        }
        Json::Object(o) => {
            ffi::lua_createtable(l, 0, o.len().min(c_int::MAX as usize) as c_int);
            for (k, x) in o {
                ffi::lua_pushlstring(l, k.as_ptr().cast(), k.len());
                push_json(l, x);
                ffi::lua_rawset(l, -3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::float_text;

    #[test]
    fn floats_print_as_lua_does() {
        for (n, s) in [
            (4.0, "4.0"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345678901234e+14"),
            (1e-5, "1e-05"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_text(n), s, "{n}");
        }
    }
}
