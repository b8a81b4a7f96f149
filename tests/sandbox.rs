//! Escape attempts against the default sandbox of a `basic` VM, through the C ABI.
//!
//! Every attempt must fail against a default VM (a Lua error result, or `nil` where a
//! function was removed). Where it makes sense the same script is run against a trusted VM
//! to show that the script itself is sound and that only the sandbox stops it. The second
//! half checks that what the default sandbox does provide works.

mod common;

use bioxen_vm::bioxen_vm_status;
use bioxen_vm::ffi::bioxen_vm_execute;
use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TRUSTED: &str = r#"{"sandbox":"trusted"}"#;

fn default_vm() -> TestVm {
    TestVm::new("")
}

fn trusted_vm() -> TestVm {
    TestVm::new(TRUSTED)
}

/// Runs `code` (with optional JSON `args`), expects success and returns the values.
fn values_with(vm: &TestVm, code: &str, args: Option<&str>) -> Value {
    let r = vm
        .try_exec(code, args, 0)
        .unwrap_or_else(|(s, m)| panic!("status {s} ({}): {m}\ncode: {code}", status_name(s)));
    assert!(
        r.success,
        "expected success, got error {:?}\ncode: {code}",
        r.error
    );
    assert_eq!(r.return_code, 0);
    r.values
}

fn values(vm: &TestVm, code: &str) -> Value {
    values_with(vm, code, None)
}

/// Runs `code`, expects a Lua error result and returns the first line of the message
/// (the traceback follows it).
fn lua_error_with(vm: &TestVm, code: &str, args: Option<&str>) -> String {
    let r = vm
        .try_exec(code, args, 0)
        .unwrap_or_else(|(s, m)| panic!("status {s} ({}): {m}\ncode: {code}", status_name(s)));
    assert!(
        !r.success,
        "expected a Lua error, got success with {:?}\ncode: {code}",
        r.values
    );
    assert_eq!(r.return_code, 1);
    assert_eq!(r.values, json!([]));
    r.error.lines().next().unwrap_or_default().to_string()
}

fn lua_error(vm: &TestVm, code: &str) -> String {
    lua_error_with(vm, code, None)
}

/// The message Lua gives for calling a missing field `name` on line 1 of the chunk.
fn nil_field_call(name: &str) -> String {
    format!("(bioxen_vm):1: attempt to call a nil value (field '{name}')")
}

fn nil_global_call(name: &str) -> String {
    format!("(bioxen_vm):1: attempt to call a nil value (global '{name}')")
}

fn nil_global_index(name: &str) -> String {
    format!("(bioxen_vm):1: attempt to index a nil value (global '{name}')")
}

/// Runs raw bytes (which need not be UTF-8) as the code of an execution.
fn exec_bytes(vm: &TestVm, code: &[u8]) -> Res {
    let mut r = empty_result();
    let st = unsafe {
        bioxen_vm_execute(
            vm.0,
            code.as_ptr().cast(),
            code.len(),
            std::ptr::null(),
            0,
            &mut r,
        )
    };
    assert_eq!(st, OK, "{}", last_error());
    take_result(r)
}

/// A scratch directory for files trusted VMs read; removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bioxen_vm_sandbox_{tag}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn dir(&self) -> String {
        self.0.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JSON array with one string argument.
fn arg(s: &str) -> String {
    json!([s]).to_string()
}

/// Sorted keys of a table expression, space-separated.
fn keys_code(table: &str) -> String {
    format!(
        "local k = {{}} for n in pairs({table}) do k[#k + 1] = tostring(n) end \
         table.sort(k) return table.concat(k, ' ')"
    )
}

// ---------------------------------------------------------------------------------------
// What exists at all
// ---------------------------------------------------------------------------------------

#[test]
fn global_names_are_exactly_the_sandbox_set() {
    let vm = default_vm();
    assert_eq!(
        values(&vm, &keys_code("_G")),
        json!([
            "_G _VERSION assert collectgarbage coroutine error getmetatable io ipairs load \
             math next os pairs pcall print rawequal rawget rawlen rawset select setmetatable \
             string table tonumber tostring type utf8 warn xpcall"
        ])
    );
    assert_eq!(values(&vm, "return _VERSION"), json!(["Lua 5.4"]));
    // The trusted VM has the rest of the standard library.
    let t = trusted_vm();
    assert_eq!(
        values(&t, &keys_code("_G")),
        json!([
            "_G _VERSION assert collectgarbage coroutine debug dofile error getmetatable io \
             ipairs load loadfile math next os package pairs pcall print rawequal rawget rawlen \
             rawset require select setmetatable string table tonumber tostring type utf8 warn \
             xpcall"
        ])
    );
}

#[test]
fn library_tables_hold_exactly_the_sandbox_functions() {
    let vm = default_vm();
    assert_eq!(
        values(&vm, &keys_code("os")),
        json!(["clock date difftime time"])
    );
    assert_eq!(
        values(&vm, &keys_code("io")),
        json!(["stderr stdout write"])
    );
    assert_eq!(values(&vm, &keys_code("io.stdout")), json!(["write"]));
    assert_eq!(values(&vm, &keys_code("io.stderr")), json!(["write"]));
    assert_eq!(
        values(&vm, &keys_code("string")),
        json!([
            "byte char find format gmatch gsub len lower match pack packsize rep reverse sub \
             unpack upper"
        ])
    );
    assert_eq!(
        values(&vm, &keys_code("coroutine")),
        json!(["close create isyieldable resume running status wrap yield"])
    );
    // The string metatable's __index is the same (reduced) string table.
    assert_eq!(
        values(
            &vm,
            "return getmetatable('').__index == string, ('').dump, getmetatable('').__index.dump"
        ),
        json!([true, null, null])
    );
    let t = trusted_vm();
    assert_eq!(
        values(&t, &keys_code("os")),
        json!(["clock date difftime execute exit getenv remove rename setlocale time tmpname"])
    );
    assert_eq!(
        values(&t, &keys_code("io")),
        json!([
            "close flush input lines open output popen read stderr stdin stdout tmpfile type \
             write"
        ])
    );
}

// ---------------------------------------------------------------------------------------
// os
// ---------------------------------------------------------------------------------------

#[test]
fn os_execute_is_absent() {
    let vm = default_vm();
    let code = "return os.execute()";
    assert_eq!(lua_error(&vm, code), nil_field_call("execute"));
    assert_eq!(
        lua_error(&vm, "return os.execute('true')"),
        nil_field_call("execute")
    );
    assert_eq!(values(&vm, "return os.execute"), json!([null]));
    // A trusted VM has a shell.
    let t = trusted_vm();
    assert_eq!(values(&t, code), json!([true]));
    assert_eq!(
        values(&t, "return os.execute('exit 3')"),
        json!([null, "exit", 3])
    );
}

#[test]
fn os_exit_is_absent() {
    let vm = default_vm();
    assert_eq!(lua_error(&vm, "os.exit(0)"), nil_field_call("exit"));
    assert_eq!(
        lua_error(&vm, "os.exit(true, true)"),
        nil_field_call("exit")
    );
    // The process (and the VM) are still here.
    assert_eq!(values(&vm, "return 1 + 1"), json!([2]));
    // Not called in the trusted VM (it would end this test process): only present.
    let t = trusted_vm();
    assert_eq!(values(&t, "return type(os.exit)"), json!(["function"]));
}

#[test]
fn os_getenv_is_absent() {
    let vm = default_vm();
    let code = "return os.getenv('PATH')";
    assert_eq!(lua_error(&vm, code), nil_field_call("getenv"));
    let path = std::env::var("PATH").unwrap_or_default();
    let t = trusted_vm();
    let expected = if path.is_empty() {
        json!([null])
    } else {
        json!([path])
    };
    assert_eq!(values(&t, code), expected);
}

#[test]
fn os_file_functions_are_absent() {
    let vm = default_vm();
    assert_eq!(
        lua_error(&vm, "return os.tmpname()"),
        nil_field_call("tmpname")
    );
    assert_eq!(
        lua_error(&vm, "return os.remove('/tmp/x')"),
        nil_field_call("remove")
    );
    assert_eq!(
        lua_error(&vm, "return os.rename('/tmp/x', '/tmp/y')"),
        nil_field_call("rename")
    );
    assert_eq!(
        lua_error(&vm, "return os.setlocale('C')"),
        nil_field_call("setlocale")
    );
    // The same operations in a trusted VM, on a file of its own.
    let t = trusted_vm();
    let code = "local n = os.tmpname() local m = n .. '.renamed' \
                local r1 = os.rename(n, m) local r2 = os.remove(m) \
                local again = os.remove(m) \
                return type(n), r1, r2, again";
    assert_eq!(values(&t, code), json!(["string", true, true, null]));
}

// ---------------------------------------------------------------------------------------
// io
// ---------------------------------------------------------------------------------------

#[test]
fn io_open_is_absent() {
    let vm = default_vm();
    let code = "local f = io.open('/etc/hostname') return io.type(f)";
    assert_eq!(lua_error(&vm, code), nil_field_call("open"));
    assert_eq!(
        lua_error(&vm, "return io.open('/tmp/bioxen_vm_sandbox_write', 'w')"),
        nil_field_call("open")
    );
    assert_eq!(
        lua_error(&vm, "return io.tmpfile()"),
        nil_field_call("tmpfile")
    );
    assert_eq!(
        lua_error(&vm, "return io.output('/tmp/bioxen_vm_sandbox_out')"),
        nil_field_call("output")
    );
    assert_eq!(
        lua_error(&vm, "return io.input('/etc/passwd')"),
        nil_field_call("input")
    );
    // The captured stdout has no file methods either.
    assert_eq!(
        lua_error(&vm, "return io.stdout:close()"),
        "(bioxen_vm):1: attempt to call a nil value (method 'close')"
    );
    assert_eq!(
        values(
            &vm,
            "return getmetatable(io.stdout), io.stdout.seek, io.stdout.setvbuf"
        ),
        json!([null, null, null])
    );
    let scratch = Scratch::new("open");
    let path = scratch.file("hello.txt", "hello\n");
    let t = trusted_vm();
    let code = "local f = io.open(...) local s = f:read('a') f:close() return io.type(f), s";
    assert_eq!(
        values_with(&t, code, Some(&arg(&path))),
        json!(["closed file", "hello\n"])
    );
    assert_eq!(
        lua_error_with(&vm, code, Some(&arg(&path))),
        nil_field_call("open")
    );
}

#[test]
fn io_popen_is_absent() {
    let vm = default_vm();
    let code = "local p = io.popen('echo hi') local s = p:read('a') p:close() return s";
    assert_eq!(lua_error(&vm, code), nil_field_call("popen"));
    let t = trusted_vm();
    assert_eq!(values(&t, code), json!(["hi\n"]));
}

#[test]
fn io_read_and_lines_are_absent() {
    let vm = default_vm();
    assert_eq!(
        lua_error(&vm, "return io.read('l')"),
        nil_field_call("read")
    );
    assert_eq!(
        lua_error(&vm, "for l in io.lines('/etc/passwd') do end"),
        nil_field_call("lines")
    );
    assert_eq!(
        lua_error(&vm, "return io.stdin:read('a')"),
        "(bioxen_vm):1: attempt to index a nil value (field 'stdin')"
    );
    let scratch = Scratch::new("lines");
    let path = scratch.file("three.txt", "a\nb\nc\n");
    let code = "local n = 0 for l in io.lines(...) do n = n + 1 end return n";
    let t = trusted_vm();
    assert_eq!(values_with(&t, code, Some(&arg(&path))), json!([3]));
    assert_eq!(
        lua_error_with(&vm, code, Some(&arg(&path))),
        nil_field_call("lines")
    );
}

// ---------------------------------------------------------------------------------------
// require, package, dofile, loadfile
// ---------------------------------------------------------------------------------------

#[test]
fn require_of_a_lua_module_fails() {
    let scratch = Scratch::new("require");
    scratch.file("bioxen_probe_mod.lua", "return { answer = 42 }\n");
    let code = "package.path = ... .. '/?.lua' return require('bioxen_probe_mod').answer";
    let a = arg(&scratch.dir());
    let vm = default_vm();
    assert_eq!(
        lua_error_with(&vm, code, Some(&a)),
        nil_global_index("package")
    );
    assert_eq!(
        lua_error(&vm, "return require('bioxen_probe_mod')"),
        nil_global_call("require")
    );
    assert_eq!(
        lua_error(&vm, "return require('os')"),
        nil_global_call("require")
    );
    let t = trusted_vm();
    assert_eq!(values_with(&t, code, Some(&a)), json!([42]));
}

#[test]
fn require_of_a_c_module_and_loadlib_fail() {
    let vm = default_vm();
    assert_eq!(
        lua_error(&vm, "return require('socket.core')"),
        nil_global_call("require")
    );
    assert_eq!(
        lua_error(&vm, "return package.loadlib('libc.so.6', 'system')"),
        nil_global_index("package")
    );
    assert_eq!(
        lua_error(&vm, "return package.cpath"),
        nil_global_index("package")
    );
    assert_eq!(
        lua_error(&vm, "package.cpath = '/tmp/?.so'"),
        nil_global_index("package")
    );
    assert_eq!(
        values(
            &vm,
            "return rawget(_G, 'package'), rawget(_G, 'require'), type(package)"
        ),
        json!([null, null, "nil"])
    );
    // In a trusted VM the C loader is there: a missing library is reported as such, and a
    // missing C module is searched for in cpath.
    let t = trusted_vm();
    assert_eq!(
        values(
            &t,
            "local f, err, where = package.loadlib('/nonexistent/bioxen_probe.so', 'f') \
             return f, type(err), where, type(package.cpath)"
        ),
        json!([null, "string", "open", "string"])
    );
    let msg = lua_error(
        &t,
        "package.cpath = '/nonexistent/?.so' return require('bioxen_probe_c')",
    );
    assert!(
        msg.contains("module 'bioxen_probe_c' not found"),
        "unexpected message: {msg}"
    );
}

#[test]
fn dofile_and_loadfile_are_absent() {
    let scratch = Scratch::new("dofile");
    let path = scratch.file("chunk.lua", "return 6 * 7\n");
    let a = arg(&path);
    let vm = default_vm();
    assert_eq!(
        lua_error_with(&vm, "return dofile(...)", Some(&a)),
        nil_global_call("dofile")
    );
    assert_eq!(
        lua_error_with(&vm, "return loadfile(...)()", Some(&a)),
        nil_global_call("loadfile")
    );
    assert_eq!(lua_error(&vm, "return dofile()"), nil_global_call("dofile"));
    let t = trusted_vm();
    assert_eq!(values_with(&t, "return dofile(...)", Some(&a)), json!([42]));
    assert_eq!(
        values_with(&t, "return loadfile(...)()", Some(&a)),
        json!([42])
    );
}

// ---------------------------------------------------------------------------------------
// Binary chunks and string.dump
// ---------------------------------------------------------------------------------------

/// Bytecode of a small function, made by a trusted VM, as hex text.
fn bytecode_hex() -> String {
    let t = trusted_vm();
    let v = values(
        &t,
        "local f = function() return 'bytecode ran' end \
         return (string.dump(f):gsub('.', function(c) return string.format('%02x', c:byte()) end))",
    );
    let hex = v[0].as_str().unwrap().to_string();
    assert!(hex.starts_with("1b4c7561"), "not a Lua binary chunk: {hex}");
    hex
}

const FROM_HEX: &str =
    "local bin = (...):gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end) ";

#[test]
fn binary_chunks_are_refused_by_load() {
    let hex = bytecode_hex();
    let a = arg(&hex);
    let refused = json!([null, "attempt to load a binary chunk (mode is 't')"]);
    let vm = default_vm();
    for call in [
        "load(bin)",
        "load(bin, 'x')",
        "load(bin, 'x', 'b')",
        "load(bin, 'x', 'bt')",
        "load(bin, nil, 'b', {})",
        "load(bin, '=x', 'b', _G)",
    ] {
        let code = format!("{FROM_HEX} return {call}");
        assert_eq!(values_with(&vm, &code, Some(&a)), refused, "{call}");
    }
    // A reader function that hands the chunk over in pieces.
    let reader = format!(
        "{FROM_HEX} local i = 0 return load(function() i = i + 1 \
         if i <= #bin then return bin:sub(i, i) end end, 'pieces', 'b')"
    );
    assert_eq!(values_with(&vm, &reader, Some(&a)), refused);
    // Built without any argument at all, with string.char.
    assert_eq!(
        values(
            &vm,
            "return load(string.char(27, 76, 117, 97, 84, 0), 'x', 'b')"
        ),
        refused
    );
    // The same bytecode loads and runs in a trusted VM.
    let t = trusted_vm();
    let code = format!("{FROM_HEX} return load(bin, 'x', 'b')()");
    assert_eq!(values_with(&t, &code, Some(&a)), json!(["bytecode ran"]));
    assert_eq!(
        lua_error_with(&vm, &code, Some(&a)),
        "(bioxen_vm):1: attempt to call a nil value"
    );
}

#[test]
fn binary_chunks_are_refused_as_execution_code() {
    let hex = bytecode_hex();
    let bin: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    for vm in [default_vm(), trusted_vm()] {
        let r = exec_bytes(&vm, &bin);
        assert!(!r.success, "bytecode ran as execution code: {:?}", r.values);
        assert_eq!(r.return_code, 1);
        assert!(
            r.error.contains("attempt to load a binary chunk"),
            "unexpected message: {}",
            r.error
        );
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn string_dump_is_absent() {
    let vm = default_vm();
    let code = "return #string.dump(function() end) > 0";
    assert_eq!(lua_error(&vm, code), nil_field_call("dump"));
    assert_eq!(
        lua_error(&vm, "return ('').dump(print)"),
        nil_field_call("dump")
    );
    assert_eq!(
        values(&vm, "return string.dump, rawget(string, 'dump')"),
        json!([null, null])
    );
    let t = trusted_vm();
    assert_eq!(values(&t, code), json!([true]));
}

#[test]
fn load_with_an_explicit_text_mode_works() {
    let vm = default_vm();
    assert_eq!(
        values(
            &vm,
            "return load('return 5', 'x', 't')(), load('return 6', 'x', 'bt')()"
        ),
        json!([5, 6])
    );
}

// ---------------------------------------------------------------------------------------
// debug
// ---------------------------------------------------------------------------------------

const DEBUG_FUNCTIONS: &[&str] = &[
    "debug",
    "gethook",
    "getinfo",
    "getlocal",
    "getmetatable",
    "getregistry",
    "getupvalue",
    "getuservalue",
    "setcstacklimit",
    "sethook",
    "setlocal",
    "setmetatable",
    "setupvalue",
    "setuservalue",
    "traceback",
    "upvalueid",
    "upvaluejoin",
];

#[test]
fn debug_library_is_absent() {
    let t = trusted_vm();
    // The list above is every function of Lua 5.4's debug library.
    assert_eq!(
        values(&t, &keys_code("debug")),
        json!([DEBUG_FUNCTIONS.join(" ")])
    );
    let vm = default_vm();
    assert_eq!(
        values(&vm, "return debug, rawget(_G, 'debug'), type(debug)"),
        json!([null, null, "nil"])
    );
    for f in DEBUG_FUNCTIONS {
        let code = format!("return debug.{f}()");
        assert_eq!(lua_error(&vm, &code), nil_global_index("debug"), "{f}");
        let code = format!("return type(debug.{f})");
        assert_eq!(values(&t, &code), json!(["function"]), "{f}");
    }
    // Typical uses: reaching the registry, or the original functions behind upvalues.
    assert_eq!(
        lua_error(&vm, "return debug.getregistry()[2]"),
        nil_global_index("debug")
    );
    assert_eq!(
        values(&t, "return type(debug.getregistry())"),
        json!(["table"])
    );
    assert_eq!(
        lua_error(&vm, "debug.sethook(function() end, '', 1)"),
        nil_global_index("debug")
    );
    // Tracebacks still come without the debug library.
    let r = vm.exec("local function inner() error('deep') end inner()");
    assert!(!r.success);
    assert!(r.error.contains("stack traceback:"), "{}", r.error);
    assert!(r.error.contains("inner"), "{}", r.error);
}

// ---------------------------------------------------------------------------------------
// Metatables, _G, _ENV
// ---------------------------------------------------------------------------------------

#[test]
fn string_metatable_changes_stay_in_their_vm() {
    let a = default_vm();
    let b = default_vm();
    let a_code = "local mt = getmetatable('') \
                  mt.__index = function(s, k) return 'hijacked ' .. k end \
                  mt.__add = function(x, y) return 'added' end \
                  string.upper = nil \
                  return ('abc').upper, 'x' + 'y'";
    assert_eq!(values(&a, a_code), json!(["hijacked upper", "added"]));
    // The change persists in its own VM...
    assert_eq!(values(&a, "return ('x').len"), json!(["hijacked len"]));
    // ...and nowhere else.
    assert_eq!(
        values(
            &b,
            "return ('abc'):upper(), getmetatable('').__index == string, \
             '10' + 1, string.upper ~= nil"
        ),
        json!(["ABC", true, 11, true])
    );
    assert_eq!(
        lua_error(&b, "return {} + 1"),
        "(bioxen_vm):1: attempt to perform arithmetic on a table value"
    );
    let c = default_vm();
    assert_eq!(values(&c, "return ('abc'):upper()"), json!(["ABC"]));
}

#[test]
fn rawget_does_not_find_removed_functions() {
    let vm = default_vm();
    let code = "local r = {} \
                for _, p in ipairs({ {_G, 'debug'}, {_G, 'package'}, {_G, 'require'}, \
                  {_G, 'dofile'}, {_G, 'loadfile'}, {io, 'open'}, {io, 'popen'}, \
                  {io, 'read'}, {io, 'lines'}, {io, 'close'}, {os, 'execute'}, {os, 'exit'}, \
                  {os, 'getenv'}, {os, 'remove'}, {os, 'rename'}, {os, 'tmpname'}, \
                  {string, 'dump'} }) do \
                  r[#r + 1] = type(rawget(p[1], p[2])) end \
                return table.concat(r, ' '), type(rawget(_G, 'io'))";
    assert_eq!(
        values(&vm, code),
        json!([vec!["nil"; 17].join(" "), "table"])
    );
}

#[test]
fn global_metatable_and_env_tricks_find_nothing() {
    let vm = default_vm();
    let probe = "local r = {} for _, n in ipairs({'debug', 'package', 'require', 'dofile', \
                 'loadfile'}) do r[#r + 1] = n .. '=' .. type(_ENV[n]) end \
                 return table.concat(r, ' ')";
    let none = "debug=nil package=nil require=nil dofile=nil loadfile=nil";
    // A metatable on _G with a rawget-ing __index.
    let code =
        format!("setmetatable(_G, {{ __index = function(t, k) return rawget(t, k) end }}) {probe}");
    assert_eq!(values(&vm, &code), json!([none]));
    assert_eq!(values(&vm, "setmetatable(_G, nil) return 1"), json!([1]));
    // A local _ENV that falls back to _G.
    let code = format!("local _ENV = setmetatable({{}}, {{ __index = _G }}) {probe}");
    assert_eq!(values(&vm, &code), json!([none]));
    // A chunk loaded with its own environment chained to _G.
    let code = "return load('return debug, package, require, io.open, os.execute', 'x', 't', \
                setmetatable({}, { __index = _G }))()";
    assert_eq!(values(&vm, code), json!([null, null, null, null, null]));
    // The metatables of functions and threads are not a way in either.
    assert_eq!(
        values(
            &vm,
            "return getmetatable(print), getmetatable(coroutine.create(print)), \
             getmetatable(io.write), getmetatable(1), getmetatable(true)"
        ),
        json!([null, null, null, null, null])
    );
    // The chunk's _ENV is the globals table and nothing more.
    assert_eq!(
        values(&vm, "return _ENV == _G, _G._G == _G"),
        json!([true, true])
    );
}

// ---------------------------------------------------------------------------------------
// collectgarbage
// ---------------------------------------------------------------------------------------

#[test]
fn collectgarbage_refuses_options_that_change_the_collector() {
    let vm = default_vm();
    for opt in [
        "stop",
        "restart",
        "setpause",
        "setstepmul",
        "incremental",
        "generational",
    ] {
        let code = format!("return collectgarbage('{opt}')");
        assert_eq!(
            lua_error(&vm, &code),
            format!("collectgarbage('{opt}') is not allowed in the sandbox"),
            "{opt}"
        );
    }
    assert_eq!(
        lua_error(&vm, "return collectgarbage('setpause', 1000)"),
        "collectgarbage('setpause') is not allowed in the sandbox"
    );
    assert_eq!(
        values(&vm, "return pcall(collectgarbage, 'stop')"),
        json!([
            false,
            "collectgarbage('stop') is not allowed in the sandbox"
        ])
    );
    // The collector was not stopped by any of the refused calls.
    assert_eq!(
        values(&vm, "return collectgarbage('isrunning')"),
        json!([true])
    );
    // The allowed options work.
    assert_eq!(
        values(
            &vm,
            "local before = collectgarbage('count') \
             local t = {} for i = 1, 1000 do t[i] = {} end t = nil \
             return math.type(before), before > 0, collectgarbage('collect'), \
             collectgarbage(), type(collectgarbage('step')), \
             collectgarbage('isrunning')"
        ),
        json!(["float", true, 0, 0, "boolean", true])
    );
    // A trusted VM may change the collector.
    let t = trusted_vm();
    assert_eq!(
        values(
            &t,
            "return collectgarbage('generational'), collectgarbage('incremental'), \
             collectgarbage('stop'), collectgarbage('isrunning'), collectgarbage('restart'), \
             collectgarbage('isrunning')"
        ),
        json!(["incremental", "generational", 0, false, 0, true])
    );
}

// ---------------------------------------------------------------------------------------
// Hiding work from the watchdog
// ---------------------------------------------------------------------------------------

fn assert_timeout(r: Result<Res, (i32, String)>, ms: u64) {
    match r {
        Err((s, m)) => {
            assert_eq!(s, bioxen_vm_status::Timeout.code(), "{m}");
            assert_eq!(
                m,
                format!(
                    "Lua execution timed out after {} seconds",
                    ms as f64 / 1000.0
                )
            );
        }
        Ok(r) => panic!("expected TIMEOUT, got {r:?}"),
    }
}

#[test]
fn loops_hidden_in_coroutines_are_stopped() {
    let vm = default_vm();
    // Created in an earlier execution, run in this one.
    values(
        &vm,
        "hidden = coroutine.create(function() while true do end end) return 1",
    );
    let t0 = Instant::now();
    assert_timeout(vm.try_exec("coroutine.resume(hidden)", None, 50), 50);
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Created before the deadline in the same execution, resumed again and again, with the
    // errors swallowed.
    let t0 = Instant::now();
    let code = "local co = coroutine.wrap(function() \
                  while true do pcall(function() while true do end end) end end) \
                while true do pcall(co) end";
    assert_timeout(vm.try_exec(code, None, 50), 50);
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(
        values(&vm, "return coroutine.status(hidden)"),
        json!(["dead"])
    );
}

// ---------------------------------------------------------------------------------------
// What the default sandbox provides
// ---------------------------------------------------------------------------------------

#[test]
fn string_table_math_utf8_work() {
    let vm = default_vm();
    assert_eq!(
        values(
            &vm,
            "return ('Hello'):upper(), string.format('%5.2f|%d|%q', 3.14159, 42, 'a\\n'), \
             ('a,b,c'):gsub(',', ';'), string.rep('ab', 3, '-'), ('hello'):find('l+'), \
             string.pack('>I2', 258):byte(1, -1)"
        ),
        json!(["HELLO", " 3.14|42|\"a\\\n\"", "a;b;c", "ab-ab-ab", 3, 1, 2])
    );
    assert_eq!(
        values(
            &vm,
            "local t = {5, 3, 9, 1} table.sort(t) table.insert(t, 7) \
             local u = table.move({1, 2, 3}, 1, 3, 2, {}) \
             return table.concat(t, ','), table.unpack(u, 2, 4)"
        ),
        json!(["1,3,5,9,7", 1, 2, 3])
    );
    assert_eq!(
        values(
            &vm,
            "return math.max(3, 8, 1), math.floor(-2.5), math.type(2^53), math.tointeger(7.0), \
             math.abs(math.mininteger + 1) == math.maxinteger, math.pi > 3.14"
        ),
        json!([8, -3, "float", 7, true, true])
    );
    assert_eq!(
        values(
            &vm,
            "local s = utf8.char(72, 233, 8364) \
             local cps = {} for _, c in utf8.codes(s) do cps[#cps + 1] = c end \
             return utf8.len(s), #s, table.concat(cps, ' '), utf8.codepoint(s, 2)"
        ),
        json!([3, 6, "72 233 8364", 233])
    );
}

#[test]
fn coroutines_work() {
    let vm = default_vm();
    assert_eq!(
        values(
            &vm,
            "local gen = coroutine.wrap(function(a) \
               local b = coroutine.yield(a + 1) \
               local c = coroutine.yield(b * 2) \
               return 'done', c end) \
             local x = gen(1) local y = gen(10) local z1, z2 = gen('c') \
             local co = coroutine.create(function() coroutine.yield(coroutine.isyieldable()) end) \
             local ok, inside = coroutine.resume(co) \
             local s1 = coroutine.status(co) coroutine.resume(co) \
             local _, main = coroutine.running() \
             return x, y, z1, z2, ok, inside, s1, coroutine.status(co), main"
        ),
        json!([2, 20, "done", "c", true, true, "suspended", "dead", true])
    );
    // Errors inside coroutines come back as Lua 5.4 reports them.
    assert_eq!(
        values(
            &vm,
            "local co = coroutine.create(function() error('inside') end) \
             local ok, e = coroutine.resume(co) \
             local ok2, e2 = pcall(coroutine.wrap(function() error('wrapped') end)) \
             return ok, e, ok2, e2"
        ),
        json!([
            false,
            "(bioxen_vm):1: inside",
            false,
            "(bioxen_vm):1: wrapped"
        ])
    );
    // close of a suspended coroutine with a pending to-be-closed variable.
    assert_eq!(
        values(
            &vm,
            "closed = false \
             local co = coroutine.create(function() \
               local x <close> = setmetatable({}, { __close = function() closed = true end }) \
               coroutine.yield() end) \
             coroutine.resume(co) \
             return coroutine.close(co), closed, coroutine.status(co)"
        ),
        json!([true, true, "dead"])
    );
    // A coroutine kept in a global continues in a later execution.
    values(
        &vm,
        "counter = coroutine.wrap(function() local n = 0 while true do n = n + 1 \
         coroutine.yield(n) end end) return counter()",
    );
    assert_eq!(values(&vm, "return counter(), counter()"), json!([2, 3]));
}

#[test]
fn os_subset_works() {
    let vm = default_vm();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let v = values(
        &vm,
        "return os.time(), math.type(os.clock()), \
         os.date('!%Y-%m-%d %H:%M:%S', 86400 * 365), \
         os.time({year = 2020, month = 1, day = 2, hour = 12}) - \
         os.time({year = 2020, month = 1, day = 1, hour = 12}), \
         os.difftime(10, 4), os.date('!*t', 0).year",
    );
    let t = v[0].as_i64().unwrap();
    assert!((t - now).abs() <= 5, "os.time() = {t}, host {now}");
    assert_eq!(
        v.as_array().unwrap()[1..].to_vec(),
        vec![
            json!("float"),
            json!("1971-01-01 00:00:00"),
            json!(86400),
            json!(6.0),
            json!(1970)
        ]
    );
}

#[test]
fn output_is_captured() {
    let vm = default_vm();
    let r = vm.exec(
        "print('a', 1, nil, true) io.write('b', 2, '\\n') io.stdout:write('c\\n') \
         io.stderr:write('e1', '\\n') local f = io.write('d') \
         return f == io.stdout, io.stderr:write('e2') == io.stderr",
    );
    assert!(r.success, "{}", r.error);
    assert_eq!(r.out(), "a\t1\tnil\ttrue\nb2\nc\ndtrue\ttrue\n");
    assert_eq!(r.err(), "e1\ne2");
    assert_eq!(r.values, json!([true, true]));
    // Each execution has its own output.
    let r = vm.exec("print('next')");
    assert_eq!(r.out(), "next\n");
    assert_eq!(r.err(), "");
    // io.write refuses what Lua's refuses.
    assert_eq!(
        lua_error(&vm, "io.write({})"),
        "(bioxen_vm):1: bad argument #1 to 'write' (string expected, got table)"
    );
}

#[test]
fn warn_is_captured_when_on() {
    let vm = default_vm();
    let r = vm.exec("warn('hidden') warn('@on') warn('shown ', 'here') warn('@off') warn('no')");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.err(), "Lua warning: shown here\n");
    assert_eq!(r.out(), "");
    // The switch persists between executions, as the VM's state does.
    let r = vm.exec("warn('@on') return 1");
    assert_eq!(r.err(), "");
    let r = vm.exec("warn('later')");
    assert_eq!(r.err(), "Lua warning: later\n");
}

#[test]
fn load_of_text_chunks_works() {
    let vm = default_vm();
    assert_eq!(
        values(
            &vm,
            "local f = load('return 1 + ...') \
             local env = { x = 5 } \
             local g = load('x = x * 2 return x', 'chunk', 't', env) \
             local parts = { 'return ', '\"pie', 'ces\"' } local i = 0 \
             local h = load(function() i = i + 1 return parts[i] end) \
             local bad, msg = load('return +', '=bad') \
             return f(41), g(), env.x, rawget(_G, 'x'), h(), bad, msg"
        ),
        json!([
            42,
            10,
            10,
            null,
            "pieces",
            null,
            "bad:1: unexpected symbol near '+'"
        ])
    );
}

#[test]
fn base_functions_work() {
    let vm = default_vm();
    assert_eq!(
        values(
            &vm,
            "local ok, e = pcall(error, { code = 7 }) \
             local ok2, e2 = pcall(error, 'msg', 0) \
             local ok3, e3 = xpcall(function() error('x') end, function(m) return 'handled: ' .. m end) \
             local keys = 0 for k, v in pairs({ a = 1, b = 2 }) do keys = keys + v end \
             local idx = 0 for i, v in ipairs({ 10, 20, 30 }) do idx = idx + i * v end \
             return ok, e.code, ok2, e2, ok3, e3, select('#', 1, nil, 3), select(-1, 'a', 'b'), \
               keys, idx, tonumber('0x10'), tonumber('z', 36), tostring(nil), type(next), \
               rawequal('a', 'a'), rawlen({ 1, 2 }), assert(1, 'unused')"
        ),
        json!([
            false,
            7,
            false,
            "msg",
            false,
            "handled: (bioxen_vm):1: x",
            3,
            "b",
            3,
            140,
            16,
            35,
            "nil",
            "function",
            true,
            2,
            1,
            "unused"
        ])
    );
    assert_eq!(
        lua_error(&vm, "assert(false, 'failed here')"),
        "(bioxen_vm):1: failed here"
    );
    let r =
        vm.exec("x = setmetatable({}, { __tostring = function() return 'custom' end }) return x");
    assert_eq!(r.out(), "custom\n");
}

#[test]
fn replaced_functions_check_arguments_like_the_originals() {
    let vm = default_vm();
    assert_eq!(
        values(
            &vm,
            "local r = {} \
             local function try(f, ...) local ok, e = pcall(f, ...) r[#r + 1] = e end \
             try(coroutine.resume, nil) try(coroutine.close, coroutine.running()) \
             try(coroutine.wrap, 1) try(collectgarbage, {}) try(string.rep) \
             try(string.rep, 'x', 1.5) \
             return table.unpack(r)"
        ),
        json!([
            "bad argument #1 to 'coroutine.resume' (thread expected, got nil)",
            "cannot close a running coroutine",
            "bad argument #1 to 'coroutine.wrap' (function expected, got number)",
            "bad argument #1 to 'collectgarbage' (string expected, got table)",
            "bad argument #1 to 'string.rep' (string expected, got no value)",
            "bad argument #2 to 'string.rep' (number has no integer representation)"
        ])
    );
    assert_eq!(
        values(
            &vm,
            "local co = coroutine.wrap(function() end) co() \
             return string.rep('x', -1), string.rep('x', 0, 'sep'), string.rep('ab', 2, ','), \
               collectgarbage(nil), select(2, pcall(co)), \
               coroutine.resume(coroutine.create(function(...) return select('#', ...), ... end), \
                 1, nil, 3)"
        ),
        json!([
            "",
            "",
            "ab,ab",
            0,
            "cannot resume dead coroutine",
            true,
            3,
            1,
            null,
            3
        ])
    );
}

#[test]
fn load_keeps_lua_messages_for_bad_arguments_and_modes() {
    let vm = default_vm();
    let r = vm.exec("return load(nil)");
    assert!(!r.success);
    assert!(
        r.error
            .starts_with("(bioxen_vm):1: bad argument #1 to 'load' (function expected, got nil)"),
        "{}",
        r.error
    );
    let r = vm.exec("return load('return 1', 'x', 'b')");
    assert_eq!(
        r.values,
        json!([null, "attempt to load a text chunk (mode is 'b')"])
    );
    let r = vm.exec("return load('return 1', 'x', 't')()");
    assert_eq!(r.values, json!([1]));
}
