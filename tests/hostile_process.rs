//! Hostile code in `process` VMs: timeouts, interrupts and the start-up deadline hold
//! whatever the child starts; nothing the child writes can forge, shift or corrupt the
//! agent protocol; what the host keeps is bounded by `max_output`; nothing is left behind.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Slack over a deadline for a loaded 2-core CI machine (the promise is deadline + 100 ms
/// for the stop itself; starting and reaping a child adds a little).
const MARGIN: Duration = Duration::from_millis(700);

fn opts(extra: &str) -> String {
    format!(r#"{{"vm_type": "process", "lua_executable": "lua5.4"{extra}}}"#)
}

fn try_new(options: &str) -> Result<TestVm, (i32, String)> {
    let mut h = 0;
    let o = c(options);
    match unsafe { bioxen_vm_new(o.as_ptr(), &mut h) } {
        OK => Ok(TestVm(h)),
        st => Err((st, last_error())),
    }
}

/// A number no other test (or run) uses, for `sleep <marker>` processes that can be
/// found by their command line.
fn marker() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}.{}{}",
        3000 + N.fetch_add(1, Ordering::Relaxed),
        std::process::id() % 1000,
        7
    )
}

/// Processes whose command line holds `needle` as one argument.
fn processes_with_arg(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if !zombie && cmd.split(|&b| b == 0).any(|a| a == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Waits (bounded) until no process carries `needle`; fails listing them otherwise.
fn assert_gone(needle: &str) {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_with_arg(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "processes with {needle} still running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until a process carries `needle`.
fn wait_started(needle: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    while processes_with_arg(needle).is_empty() {
        assert!(Instant::now() < end, "no process with {needle} started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lua_tmp_files() -> usize {
    std::fs::read_dir("/tmp")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("lua_"))
                .count()
        })
        .unwrap_or(0)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

// ---------------------------------------------------------------- class 3: stops

#[test]
fn a_timeout_holds_whatever_the_child_starts() {
    let vm = TestVm::new(&opts(""));
    let tmp0 = lua_tmp_files();
    for (what, code) in [
        ("sleep", format!("os.execute('sleep {}')", marker())),
        ("yes", "os.execute('yes')".to_string()),
        ("yes to stderr", "os.execute('yes >&2')".to_string()),
        (
            "setsid daemon",
            format!(
                "os.execute('setsid sleep {} &') while true do end",
                marker()
            ),
        ),
        (
            "double fork with a clean environment",
            format!(
                "os.execute([[env -i /bin/sh -c '(sleep {} &) ; sleep {}']])",
                marker(),
                marker()
            ),
        ),
        (
            "popen reader",
            format!(
                "local p = io.popen('sleep {}') return p:read('*a')",
                marker()
            ),
        ),
        (
            "a fork loop",
            "os.execute('while true; do sleep 5 & done')".into(),
        ),
    ] {
        vm.exec("x = 1");
        let (r, took) = timed(|| vm.try_exec(&code, None, 1000));
        let (st, msg) = r.err().unwrap_or_else(|| panic!("{what}: not stopped"));
        assert_eq!(st, S::Timeout.code(), "{what}: {msg}");
        assert!(msg.contains("state was lost"), "{what}: {msg}");
        assert!(
            took < Duration::from_millis(1000) + MARGIN,
            "{what}: returned after {took:?}"
        );
        for word in code.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
            if word.len() > 6 && word.contains('.') {
                assert_gone(word);
            }
        }
        let r = vm.exec("return x");
        assert_eq!(r.values, json!([null]), "{what}: a fresh interpreter");
    }
    assert!(lua_tmp_files() <= tmp0, "the agent left temporary files");
}

#[test]
fn an_interrupt_from_another_thread_stops_a_child_in_a_subprocess() {
    let vm = TestVm::new(&opts(""));
    let h = vm.0;
    let m = marker();
    let code = format!("os.execute('sleep {m}')");
    let stopper = std::thread::spawn({
        let m = m.clone();
        move || {
            wait_started(&m);
            let t = Instant::now();
            assert_eq!(unsafe { bioxen_vm_interrupt(h, std::ptr::null_mut()) }, OK);
            t
        }
    });
    let (r, _) = timed(|| vm.try_exec(&code, None, 0));
    let fired = stopper.join().unwrap();
    let after = fired.elapsed();
    let (st, msg) = r.expect_err("interrupted");
    assert_eq!(st, S::Interrupted.code(), "{msg}");
    assert!(after < Duration::from_millis(100) + MARGIN, "{after:?}");
    assert_gone(&m);
    assert_eq!(vm.exec("return 1 + 1").values, json!([2]));
}

#[test]
fn freeing_a_vm_stops_its_background_processes() {
    let (a, b) = (marker(), marker());
    let vm = TestVm::new(&opts(""));
    vm.exec(&format!(
        "os.execute('sleep {a} &') os.execute('setsid sleep {b} >/dev/null 2>&1 &')"
    ));
    wait_started(&a);
    wait_started(&b);
    let (_, took) = timed(|| drop(vm));
    assert!(took < Duration::from_secs(2), "free took {took:?}");
    assert_gone(&a);
    assert_gone(&b);
}

#[test]
fn an_interpreter_that_exits_leaves_no_process_behind() {
    let (a, b) = (marker(), marker());
    let vm = TestVm::new(&opts(""));
    let r = vm.exec(&format!(
        "os.execute('sleep {a} &') os.execute('setsid sleep {b} &') os.exit(5)"
    ));
    assert_eq!(r.return_code, 5);
    assert_gone(&a);
    assert_gone(&b);
    assert_eq!(vm.exec("return 3").values, json!([3]));
}

#[test]
fn the_start_up_deadline_holds_for_wrappers_that_never_start_the_agent() {
    let dir = std::env::temp_dir().join(format!("bioxen_vm-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c_) = (marker(), marker(), marker());
    for (name, body, limit) in [
        // Holds every pipe in a grandchild and never answers.
        ("hangs", format!("sleep {a} &\nexec sleep {b}"), 5),
        // Exits at once, leaving a grandchild that holds the pipes.
        ("exits", format!("sleep {c_} &\nexit 0"), 1),
        // Reads its stdin forever.
        ("cat", "exec cat".to_string(), 5),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = format!(
            r#"{{"vm_type": "process", "lua_executable": "{}"}}"#,
            p.display()
        );
        let (r, took) = timed(|| try_new(&o));
        let (st, msg) = r.err().unwrap_or_else(|| panic!("{name} started"));
        assert_eq!(st, S::LuaNotFound.code(), "{name}: {msg}");
        assert!(
            took < Duration::from_secs(limit) + MARGIN,
            "{name}: creation took {took:?}: {msg}"
        );
    }
    for m in [&a, &b, &c_] {
        assert_gone(m);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- class 4: forgery

/// A forged `done` frame of protocol 1, then of protocol 2 with a made-up token.
const FORGED: &str = r"done 2 3 0\nok[4]";
const FORGED2: &str = r"done 16 2 3 0\n0123456789abcdefok[4]";

#[test]
fn what_the_child_writes_to_its_real_stdout_is_output_not_frames() {
    let vm = TestVm::new(&opts(""));
    for (what, code) in [
        (
            "/dev/stdout",
            format!("local f = io.open('/dev/stdout', 'w') f:write('{FORGED}') f:close() return 1"),
        ),
        (
            "the real io.stdout from the registry",
            format!(
                "for k, v in pairs(debug.getregistry()) do if io.type(v) == 'file' then pcall(v.write, v, '{FORGED}') pcall(v.flush, v) end end return 1"
            ),
        ),
        ("a subprocess", format!("os.execute([[printf '{FORGED}']]) return 1")),
        ("a subprocess on stderr", format!("os.execute([[printf '{FORGED}' >&2]]) return 1")),
        (
            "a popen writer",
            format!("local p = io.popen('cat', 'w') p:write('{FORGED}') p:close() return 1"),
        ),
    ] {
        vm.exec("x = (x or 0) + 1");
        let r = vm.exec(&code);
        assert!(r.success, "{what}: {r:?}");
        assert_eq!(r.values, json!([1]), "{what}");
        let all = format!("{}{}", r.out(), r.err());
        assert!(all.contains("done 2 3 0\nok[4]"), "{what}: {all:?}");
        // The VM is not restarted, and the next call gets its own result.
        assert_eq!(vm.exec("return 2").values, json!([2]), "{what}");
        assert_eq!(vm.exec("return x").values, json!([vm_x(&vm)]), "{what}");
    }
    assert_eq!(vm.info()["restarts"], json!(0));
}

fn vm_x(vm: &TestVm) -> i64 {
    vm.exec("return x").values[0].as_i64().unwrap()
}

#[test]
fn frames_written_to_the_channel_from_inside_are_detected_at_once() {
    let vm = TestVm::new(&opts(""));
    for (what, code) in [
        (
            "a protocol-1 done",
            format!("local f = io.open('/dev/fd/3', 'w') f:write('{FORGED}') f:close() return 42"),
        ),
        (
            "a guessed token",
            format!("local f = io.open('/dev/fd/3', 'w') f:write('{FORGED2}') f:close() return 42"),
        ),
        (
            "a subprocess",
            format!("os.execute([[printf '{FORGED2}' >&3]]) return 42"),
        ),
        (
            "garbage",
            "local f = io.open('/dev/fd/3', 'w') f:write('hello\\n') f:close() return 42".into(),
        ),
    ] {
        vm.exec("x = 1");
        let r = vm.exec(&code);
        assert!(!r.success, "{what}: {r:?}");
        assert_ne!(r.values, json!([4]), "{what}");
        assert!(
            r.error.contains("broke the agent protocol"),
            "{what}: {}",
            r.error
        );
        assert!(r.error.contains("state was lost"), "{what}: {}", r.error);
        // The next call runs on a fresh interpreter and gets its own result.
        assert_eq!(vm.exec("return x").values, json!([null]), "{what}");
        assert_eq!(vm.exec("return 7").values, json!([7]), "{what}");
    }
}

#[test]
fn a_frame_left_behind_for_a_later_call_is_never_taken_for_its_result() {
    let vm = TestVm::new(&opts(""));
    // A background writer sends a forged frame while later calls run.
    vm.exec(&format!(
        "os.execute([[(sleep 0.3; printf 'out 16 3\\n0123456789abcdefxyz{FORGED2}' >&3) &]])"
    ));
    let end = Instant::now() + Duration::from_secs(5);
    let mut broken = 0;
    let mut i = 0;
    while Instant::now() < end && broken == 0 {
        i += 1;
        let r = vm.exec(&format!("return {i}"));
        if r.success {
            assert_eq!(r.values, json!([i]));
            assert!(!r.out().contains("xyz"), "{r:?}");
        } else {
            assert!(r.error.contains("broke the agent protocol"), "{r:?}");
            broken += 1;
        }
    }
    assert_eq!(broken, 1, "the forged frame was never seen");
    assert_eq!(vm.exec("return 'fresh'").values, json!(["fresh"]));
}

#[test]
fn a_c_module_writing_to_every_descriptor_cannot_shift_results() {
    let dir = std::env::temp_dir().join(format!("bioxen_vm-cmod-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("forge.c");
    std::fs::write(
        &src,
        r#"#include <lua.h>
#include <unistd.h>
#include <stdio.h>
static int out(lua_State *L) { printf("done 2 3 0\nok[4]"); fflush(stdout); return 0; }
static int err(lua_State *L) { fprintf(stderr, "err 5\nabcde"); return 0; }
static int chan(lua_State *L) { (void)!write(3, "done 2 3 0\nok[4]", 16); return 0; }
int luaopen_forge(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, out); lua_setfield(L, -2, "out");
    lua_pushcfunction(L, err); lua_setfield(L, -2, "err");
    lua_pushcfunction(L, chan); lua_setfield(L, -2, "chan");
    return 1;
}
"#,
    )
    .unwrap();
    let so = dir.join("forge.so");
    let st = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-I/usr/include/lua5.4", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(
        st.success(),
        "compiling the test C module (needs liblua5.4-dev)"
    );
    let vm = TestVm::new(&opts(""));
    let load = format!(
        "package.cpath = '{}/?.so;' .. package.cpath forge = require('forge')",
        dir.display()
    );
    vm.exec(&load);
    let r = vm.exec("forge.out() forge.err() print('p') return 1");
    assert_eq!(r.values, json!([1]));
    assert!(r.out().contains("done 2 3 0\nok[4]"), "{r:?}");
    assert!(r.err().contains("err 5\nabcde"), "{r:?}");
    assert_eq!(vm.exec("return 2").values, json!([2]));
    let r = vm.exec("forge.chan() return 1");
    assert!(
        !r.success && r.error.contains("broke the agent protocol"),
        "{r:?}"
    );
    assert_eq!(vm.exec("return 3").values, json!([3]));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- bounds

#[test]
fn raw_output_floods_are_capped_by_max_output_and_counted() {
    let vm = TestVm::new(&opts(r#", "max_output": 1024"#));
    let r = vm.exec("os.execute('head -c 300000 /dev/zero | tr \"\\\\0\" e >&2') return 1");
    assert_eq!(r.values, json!([1]));
    assert!(r.stderr.len() <= 1024, "{}", r.stderr.len());
    assert!(r.dropped >= 300_000 - 1024, "{}", r.dropped);
    let r = vm.exec("os.execute('head -c 300000 /dev/zero') return 2");
    assert_eq!(r.values, json!([2]));
    assert!(r.stdout.len() <= 1024);
    assert!(r.dropped >= 300_000 - 1024, "{}", r.dropped);
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn values_and_errors_are_bounded_by_max_output() {
    let vm = TestVm::new(&opts(r#", "max_output": 1024, "timeout": 20"#));
    let rss0 = rss_kib();
    let r = vm.exec("local s = string.rep('x', 16 * 2^20) local t = {} for i = 1, 200 do t[i] = s end return table.unpack(t)");
    assert!(!r.success);
    assert_eq!(r.values, json!([]));
    assert_eq!(
        r.error,
        "bioxen_vm: the returned values do not fit in max_output (1024 bytes) as JSON"
    );
    assert!(r.dropped >= 1, "{r:?}");
    assert!(r.stdout.len() <= 1024);
    let r = vm.exec("error(string.rep('e', 64 * 2^20))");
    assert!(!r.success);
    assert!(r.error.len() <= 1024, "{}", r.error.len());
    assert!(r.stderr.len() <= 1024, "{}", r.stderr.len());
    assert!(r.dropped >= 64 * (1 << 20) - 1024, "{}", r.dropped);
    let (r, took) = timed(|| vm.exec("local t = {} for i = 1, 40 do t = {t, t} end return t"));
    assert!(!r.success && r.error.contains("do not fit"), "{r:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let grew = rss_kib().saturating_sub(rss0);
    assert!(grew < 64 * 1024, "host RSS grew by {grew} KiB");
    assert_eq!(vm.exec("return 'ok'").values, json!(["ok"]));
}

#[test]
fn colliding_keys_come_back_as_pairs() {
    let vm = TestVm::new(&opts(""));
    let r = vm.exec("return {[1] = 'a', ['1'] = 'b', [true] = 'c', ['true'] = 'd'}");
    assert_eq!(
        r.values,
        json!([{"$lua_pairs": [["1", "b"], ["true", "d"], [1, "a"], [true, "c"]]}])
    );
    let r = vm.exec("return {[1.5] = 'f', ['1.5'] = 's'}, {a = 1, [2] = 2}");
    assert_eq!(
        r.values,
        json!([{"$lua_pairs": [["1.5", "s"], [1.5, "f"]]}, {"a": 1, "2": 2}])
    );
}
