//! What only the `process` kind has: a child interpreter that can be missing, die, be
//! killed and restarted, and must never be left behind.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn opts(lua: &str, extra: &str) -> String {
    format!(r#"{{"vm_type": "process", "lua_executable": "{lua}"{extra}}}"#)
}

fn try_new(options: &str) -> Result<TestVm, (i32, String)> {
    let mut h = 0;
    let o = c(options);
    match unsafe { bioxen_vm_new(o.as_ptr(), &mut h) } {
        OK => Ok(TestVm(h)),
        st => Err((st, last_error())),
    }
}

/// A directory for scripts this test writes, removed at the end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("bioxen_vm-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    /// Writes an executable shell script and returns its path.
    fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_missing_interpreter_is_lua_not_found() {
    let (st, msg) = try_new(&opts("no-such-lua-5.9", "")).err().unwrap();
    assert_eq!(st, S::LuaNotFound.code());
    assert_eq!(msg, "Lua executable 'no-such-lua-5.9' not found in PATH");
}

#[test]
fn something_that_is_not_lua_is_a_clear_error() {
    let dir = TempDir::new("notlua");
    for (name, body) in [
        ("exits", "echo 'not a lua' >&2; exit 4"),
        ("chatty", "echo 'Hello there'; sleep 5"),
        ("silent", "exec sleep 30"),
    ] {
        let exe = dir.script(name, body);
        let t = Instant::now();
        let (st, msg) = try_new(&opts(&exe, "")).err().unwrap();
        assert_eq!(st, S::LuaNotFound.code(), "{name}: {msg}");
        assert!(
            msg.starts_with("Lua interpreter check failed"),
            "{name}: {msg}"
        );
        if name == "exits" {
            assert!(
                msg.contains("exited with status 4") && msg.contains("not a lua"),
                "{msg}"
            );
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{name}");
    }
}

#[test]
fn os_exit_and_crashes_are_results_and_the_next_call_gets_a_fresh_child() {
    let vm = TestVm::new(&opts("lua5.4", ""));
    vm.exec("x = 1");
    let pid = vm.info()["pid"].clone();
    let r = vm.exec("print('before') os.exit(3)");
    assert!(!r.success);
    assert_eq!(r.return_code, 3);
    assert_eq!(r.out(), "before\n");
    assert!(r.error.contains("exited with code 3"), "{}", r.error);
    assert!(r.error.contains("state was lost"), "{}", r.error);
    assert_eq!(vm.info()["process_running"], false);
    let r = vm.exec("return x");
    assert_eq!(r.values, json!([null]), "fresh state");
    assert_ne!(vm.info()["pid"], pid);
    assert_eq!(vm.info()["restarts"], 1);
    // Killed by a signal (as a crashing C module would be): -signal, like Python's subprocess.
    let r = vm.exec(
        "local f = io.open('/proc/self/stat') local pid = f:read('*n') f:close() os.execute('kill -SEGV ' .. pid)",
    );
    assert!(!r.success);
    assert_eq!(r.return_code, -11, "{r:?}");
    assert!(r.error.contains("signal 11"), "{}", r.error);
    assert_eq!(vm.exec("return 1").values, json!([1]));
    // os.exit(0) is still a failed execution: the VM lost its state.
    let r = vm.exec("os.exit(0)");
    assert!(!r.success);
    assert_ne!(r.return_code, 0);
}

#[test]
fn timeout_and_interrupt_kill_the_child_and_say_the_state_was_lost() {
    let vm = TestVm::new(&opts("lua5.4", r#", "timeout": 0.2"#));
    vm.exec("kept = 'yes'");
    let t = Instant::now();
    let (st, msg) = vm.try_exec("while true do end", None, 0).unwrap_err();
    assert_eq!(st, S::Timeout.code());
    assert_eq!(
        msg,
        "Lua execution timed out after 0.2 seconds; the process VM was restarted and its state was lost"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(vm.exec("return kept").values, json!([null]));
    // A pcall cannot swallow the stop: the child is killed.
    let (st, _) = vm
        .try_exec(
            "while true do pcall(function() while true do end end) end",
            None,
            100,
        )
        .unwrap_err();
    assert_eq!(st, S::Timeout.code());
    // Interrupt from another thread.
    let h = vm.0;
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut was = false;
        assert_eq!(unsafe { bioxen_vm_interrupt(h, &mut was) }, OK);
        was
    });
    let (st, msg) = vm.try_exec("while true do end", None, 5000).unwrap_err();
    assert!(stopper.join().unwrap());
    assert_eq!(st, S::Interrupted.code());
    assert!(msg.contains("state was lost"), "{msg}");
    assert_eq!(vm.exec("return 'alive'").out(), "alive\n");
    // Nothing running: interrupt reports false and kills nothing.
    let pid = vm.info()["pid"].clone();
    let mut was = true;
    assert_eq!(unsafe { bioxen_vm_interrupt(vm.0, &mut was) }, OK);
    assert!(!was);
    assert_eq!(vm.info()["pid"], pid);
}

#[test]
fn the_memory_limit_is_a_status_and_the_child_keeps_its_state() {
    let vm = TestVm::new(&opts("lua5.4", r#", "memory_limit": 8000000"#));
    vm.exec("kept = 'yes'");
    let (st, msg) = vm
        .try_exec("local t = {} for i = 1, 1e9 do t[i] = i end", None, 0)
        .unwrap_err();
    assert_eq!(st, S::MemoryLimit.code());
    assert!(
        msg.starts_with("Lua memory limit of 8000000 bytes exceeded"),
        "{msg}"
    );
    assert_eq!(vm.exec("return kept").values, json!(["yes"]));
}

#[test]
fn output_from_the_interpreter_itself_reaches_stderr() {
    // Bytes written to the child's real stderr (bypassing the agent) are kept too.
    let vm = TestVm::new(&opts("lua5.4", ""));
    let r = vm.exec("os.execute('echo from-a-subprocess >&2') return 1");
    assert!(r.success);
    assert_eq!(r.err(), "from-a-subprocess\n");
    // Reading stdin would eat the protocol: it is refused.
    let r = vm.exec("return io.read('*l')");
    assert!(!r.success);
    assert!(r.error.contains("stdin is not available"), "{}", r.error);
    assert_eq!(vm.exec("return 2").values, json!([2]));
}

#[test]
fn networked_vms_need_luasocket() {
    // With a working LuaSocket, `networked` gives a process VM.
    let vm = TestVm::new(r#"{"networked": true, "lua_executable": "lua5.4"}"#);
    assert_eq!(vm.info()["vm_type"], "basic");
    assert!(vm.info()["pid"].is_number());
    assert_eq!(
        vm.exec("return require('socket') ~= nil").values,
        json!([true])
    );
    // Without one, the original's LuaSocketNotFoundError.
    let dir = TempDir::new("nosocket");
    let exe = dir.script(
        "lua-without-socket",
        "LUA_PATH='/nonexistent/?.lua' LUA_CPATH='/nonexistent/?.so' exec lua5.4 \"$@\"",
    );
    let (st, msg) = try_new(&format!(
        r#"{{"networked": true, "lua_executable": "{exe}"}}"#
    ))
    .err()
    .unwrap();
    assert_eq!(st, S::LuaSocketNotFound.code());
    assert!(
        msg.starts_with("LuaSocket not found. Install with: luarocks install luasocket"),
        "{msg}"
    );
}
