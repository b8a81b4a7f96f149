//! Limits and stopping of `basic` VMs, through the C ABI: memory limits, timeouts (per call
//! and per VM) wherever the runaway code hides, interrupts from another thread, the
//! `string.rep` cap, the output cap, and freeing a VM whose finalizers would not end.
//!
//! Every call that could hang if the library misbehaved runs on a helper thread and is
//! awaited with a bound, so a regression fails the test instead of hanging the run.

mod common;

use bioxen_vm::bioxen_vm_status;
use bioxen_vm::ffi::{bioxen_vm_free, bioxen_vm_interrupt};
use common::*;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any stopped execution (or a free) may take to return.
const BOUND: Duration = Duration::from_secs(2);

type Outcome = Result<Res, (i32, String)>;

/// Runs `f` on its own thread; returns its value and how long it took, or `None` if it
/// did not return within `limit` (the thread is then left behind).
fn bounded<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<(T, Duration)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let t0 = Instant::now();
        let v = f();
        let _ = tx.send((v, t0.elapsed()));
    });
    rx.recv_timeout(limit).ok()
}

/// `try_exec` on a helper thread; fails the test if it does not return within `BOUND`.
fn exec_bounded(vm: &Arc<TestVm>, code: &str, timeout_ms: u64) -> Outcome {
    let vm2 = Arc::clone(vm);
    let code2 = code.to_string();
    match bounded(BOUND, move || vm2.try_exec(&code2, None, timeout_ms)) {
        Some((r, took)) => {
            assert!(took < BOUND, "took {took:?}: {code}");
            r
        }
        None => panic!("execution did not return within {BOUND:?}: {code}"),
    }
}

fn values(vm: &TestVm, code: &str) -> Value {
    let r = vm.exec(code);
    assert!(r.success, "{}\ncode: {code}", r.error);
    r.values
}

fn expect_status(r: Outcome, status: bioxen_vm_status) -> String {
    match r {
        Err((s, m)) => {
            assert_eq!(
                s,
                status.code(),
                "expected {}, got {} ({m})",
                status_name(status.code()),
                status_name(s)
            );
            m
        }
        Ok(r) => panic!(
            "expected {}, got a result: {r:?}",
            status_name(status.code())
        ),
    }
}

fn expect_timeout(r: Outcome, seconds: &str) {
    let m = expect_status(r, bioxen_vm_status::Timeout);
    assert_eq!(
        m,
        format!("Lua execution timed out after {seconds} seconds")
    );
}

/// Sets a global, then checks after a stop that the VM kept it and still runs code
/// (including a loop long enough to meet any hook left armed).
const SET_KEEP: &str = "keep = { 'kept', n = 3 } return 1";

fn assert_vm_intact(vm: &TestVm) {
    assert_eq!(
        values(
            vm,
            "local s = 0 for i = 1, 200000 do s = s + i end \
             local co = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end) \
             local c = 0 for v in co do c = c + v end \
             return keep[1], keep.n, s, c"
        ),
        json!(["kept", 3, 20000100000_i64, 6])
    );
}

fn memory_used(vm: &TestVm) -> u64 {
    vm.info()["memory_used"].as_u64().expect("memory_used")
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

const LIMIT: usize = 4 << 20;

fn limited_vm() -> TestVm {
    TestVm::new(&format!(r#"{{"memory_limit": {LIMIT}}}"#))
}

const TABLE_BOMB: &str = "local t = {} for i = 1, 1e9 do t[i] = i end";
const STRING_BOMB: &str = "local s = 'x' while true do s = s .. s end";

fn assert_memory_limit(vm: &TestVm, bomb: &str) {
    values(vm, "collectgarbage() return 1");
    let before = memory_used(vm);
    let m = expect_status(vm.try_exec(bomb, None, 2000), bioxen_vm_status::MemoryLimit);
    assert!(
        m.starts_with(&format!("Lua memory limit of {LIMIT} bytes exceeded")),
        "{m}"
    );
    // The garbage is given back (allow for the newly cached chunks).
    let after = memory_used(vm);
    assert!(
        after <= before + (64 << 10),
        "memory not given back: {before} before, {after} after"
    );
    assert_vm_intact(vm);
}

#[test]
fn table_bomb_hits_the_memory_limit_and_the_vm_recovers() {
    let vm = limited_vm();
    values(&vm, SET_KEEP);
    assert_memory_limit(&vm, TABLE_BOMB);
    // Again: the limit holds each time.
    assert_memory_limit(&vm, TABLE_BOMB);
}

#[test]
fn string_bomb_hits_the_memory_limit_and_the_vm_recovers() {
    let vm = limited_vm();
    values(&vm, SET_KEEP);
    assert_memory_limit(&vm, STRING_BOMB);
    // A single large string.rep under the size cap is stopped by the memory limit.
    assert_memory_limit(&vm, "local s = string.rep('x', 32 << 20) return #s");
}

#[test]
fn bombs_inside_pcall_are_caught_by_lua() {
    let vm = limited_vm();
    values(&vm, SET_KEEP);
    for bomb in [TABLE_BOMB, STRING_BOMB] {
        let code = format!("local ok, e = pcall(function() {bomb} end) return ok, e");
        let r = vm
            .try_exec(&code, None, 2000)
            .expect("a caught error is a result");
        assert!(r.success, "{}", r.error);
        assert_eq!(r.values, json!([false, "not enough memory"]));
        assert_vm_intact(&vm);
        assert_eq!(
            values(
                &vm,
                &format!(
                    "collectgarbage() return collectgarbage('count') * 1024 < {}",
                    LIMIT / 2
                )
            ),
            json!([true])
        );
    }
    // The VM can still allocate a good part of its limit afterwards.
    assert_eq!(
        values(
            &vm,
            "local t = {} for i = 1, 50000 do t[i] = i end return #t"
        ),
        json!([50000])
    );
}

#[test]
fn a_memory_bomb_does_not_affect_other_vms() {
    let other = TestVm::new("");
    let other_limited = limited_vm();
    values(&other, "mine = 'other' return 1");
    values(&other_limited, "mine = 'limited' return 1");
    let vm = limited_vm();
    expect_status(
        vm.try_exec(TABLE_BOMB, None, 2000),
        bioxen_vm_status::MemoryLimit,
    );
    expect_status(
        vm.try_exec(STRING_BOMB, None, 2000),
        bioxen_vm_status::MemoryLimit,
    );
    assert_eq!(values(&other, "return mine"), json!(["other"]));
    // A VM with the same limit still allocates within its own limit.
    assert_eq!(
        values(
            &other_limited,
            "local t = {} for i = 1, 60000 do t[i] = i end return mine, #t"
        ),
        json!(["limited", 60000])
    );
    // The limit is per VM: a VM without one allocates past it.
    assert_eq!(
        values(&other, &format!("return #string.rep('x', {})", LIMIT * 2)),
        json!([LIMIT * 2])
    );
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

/// Runaway code in every hiding place the watchdog must reach.
const RUNAWAYS: &[(&str, &str)] = &[
    ("plain loop", "while true do end"),
    (
        "loop in pcall",
        "while true do pcall(function() while true do end end) end",
    ),
    (
        "xpcall in a loop",
        "while true do xpcall(function() while true do end end, function(m) return m end) end",
    ),
    (
        "coroutine created before the deadline",
        "local co = coroutine.create(function() while true do end end) \
         local t = os.clock() while os.clock() - t < 0.005 do end \
         coroutine.resume(co)",
    ),
    (
        "coroutine resumed again and again, swallowing errors",
        "local co = coroutine.create(function() \
           while true do pcall(function() while true do end end) end end) \
         while true do coroutine.resume(co) end",
    ),
    (
        "wrap inside wrap",
        "coroutine.wrap(function() coroutine.wrap(function() while true do end end)() end)()",
    ),
    (
        "nested wraps swallowing errors",
        "local function nest(d) if d == 0 then while true do end end \
           while true do pcall(coroutine.wrap(nest), d - 1) end end nest(3)",
    ),
    (
        "resume inside resume",
        "local function nest(d) if d == 0 then while true do end end \
           while true do coroutine.resume(coroutine.create(nest), d - 1) end end nest(3)",
    ),
    (
        "wrap generator consumed by a for loop",
        "local gen = coroutine.wrap(function() local i = 0 \
           while true do i = i + 1 coroutine.yield(i) end end) \
         for v in gen do end",
    ),
    (
        "__index metamethod",
        "local t = setmetatable({}, { __index = function() while true do end end }) \
         return t.x",
    ),
    (
        "__index metamethod inside pcall, in a loop",
        "local t = setmetatable({}, { __index = function() while true do end end }) \
         while true do pcall(function() return t.x end) end",
    ),
    (
        "gsub with a looping replacement function",
        "return (string.gsub('abc', '%w', function(c) while true do end end))",
    ),
    (
        "table.sort with a looping comparator",
        "table.sort({ 3, 2, 1 }, function(a, b) while true do end end)",
    ),
];

#[test]
fn runaway_code_is_stopped_by_a_per_call_timeout() {
    let vm = Arc::new(TestVm::new(""));
    values(&vm, SET_KEEP);
    for (name, code) in RUNAWAYS {
        let t0 = Instant::now();
        let r = exec_bounded(&vm, code, 50);
        assert!(t0.elapsed() < BOUND, "{name}: {:?}", t0.elapsed());
        match r {
            Err((s, m)) if s == bioxen_vm_status::Timeout.code() => {
                assert_eq!(m, "Lua execution timed out after 0.05 seconds", "{name}")
            }
            other => panic!("{name}: expected TIMEOUT, got {other:?}"),
        }
        assert_vm_intact(&vm);
    }
}

#[test]
fn runaway_code_is_stopped_by_the_vm_default_timeout() {
    let vm = Arc::new(TestVm::new(r#"{"timeout": 0.05}"#));
    values(&vm, SET_KEEP);
    for (name, code) in RUNAWAYS.iter().take(4) {
        let r = exec_bounded(&vm, code, 0);
        match r {
            Err((s, m)) if s == bioxen_vm_status::Timeout.code() => {
                assert_eq!(m, "Lua execution timed out after 0.05 seconds", "{name}")
            }
            other => panic!("{name}: expected TIMEOUT, got {other:?}"),
        }
        assert_vm_intact(&vm);
    }
    // A per-call timeout takes precedence over the VM's.
    let vm = Arc::new(TestVm::new(r#"{"timeout": 30}"#));
    expect_timeout(exec_bounded(&vm, "while true do end", 20), "0.02");
    // Code that ends in time is not affected by the default.
    let vm = TestVm::new(r#"{"timeout": 0.5}"#);
    assert_eq!(
        values(
            &vm,
            "local t = os.clock() while os.clock() - t < 0.02 do end return 'done'"
        ),
        json!(["done"])
    );
}

#[test]
fn a_coroutine_created_in_an_earlier_execution_is_stopped() {
    let vm = Arc::new(TestVm::new(""));
    values(
        &vm,
        "old = coroutine.create(function() while true do end end) \
         oldgen = coroutine.wrap(function() while true do coroutine.yield() end end) return 1",
    );
    expect_timeout(exec_bounded(&vm, "coroutine.resume(old)", 30), "0.03");
    expect_timeout(exec_bounded(&vm, "while true do oldgen() end", 30), "0.03");
    assert_eq!(values(&vm, "return coroutine.status(old)"), json!(["dead"]));
}

#[test]
fn finished_executions_leave_no_deadline_or_hook_behind() {
    let vm = TestVm::new("");
    // A short execution with a timeout, then a longer one without: the old deadline
    // must not fire into it.
    assert_eq!(values(&vm, "return 1"), json!([1]));
    let r = vm.try_exec("return 2", None, 30).unwrap();
    assert_eq!(r.values, json!([2]));
    assert_eq!(
        values(
            &vm,
            "local t = os.clock() while os.clock() - t < 0.1 do end return 'long enough'"
        ),
        json!(["long enough"])
    );
    // After a timeout, the next execution runs to its end.
    expect_timeout(vm.try_exec("while true do end", None, 20), "0.02");
    assert_eq!(
        values(
            &vm,
            "local t = os.clock() while os.clock() - t < 0.05 do end return 'no stale stop'"
        ),
        json!(["no stale stop"])
    );
}

/// Lua that keeps a coroutine busy yielding until the deadline stops the caller.
const STOP_WHILE_YIELDING: &str = "co = coroutine.create(function() local n = 0 \
     while true do n = n + 1 coroutine.yield(n) end end) \
     while true do coroutine.resume(co) end";

#[test]
fn a_coroutine_armed_in_one_execution_runs_normally_in_the_next() {
    // A trusted VM can see the hook (debug.gethook) and so prove that the coroutine was
    // left suspended with the stop hook armed.
    let vm = TestVm::new(r#"{"sandbox":"trusted"}"#);
    let mut proven = false;
    for _ in 0..60 {
        expect_timeout(vm.try_exec(STOP_WHILE_YIELDING, None, 20), "0.02");
        let state = values(&vm, "return coroutine.status(co), debug.gethook(co) ~= nil");
        if state != json!(["suspended", true]) {
            continue;
        }
        assert_eq!(
            values(
                &vm,
                "local _, a = coroutine.resume(co) local _, b = coroutine.resume(co) \
                 local t = os.clock() while os.clock() - t < 0.02 do end \
                 local ok, c = coroutine.resume(co) \
                 return b - a, ok, c - b, coroutine.status(co), debug.gethook(co)"
            ),
            json!([1, true, 1, "suspended", null])
        );
        proven = true;
        break;
    }
    assert!(
        proven,
        "never caught a coroutine suspended with the hook armed"
    );
}

#[test]
fn a_suspended_coroutine_survives_a_timeout_in_the_default_sandbox() {
    let vm = TestVm::new("");
    let mut seen = 0;
    for _ in 0..20 {
        expect_timeout(vm.try_exec(STOP_WHILE_YIELDING, None, 20), "0.02");
        if values(&vm, "return coroutine.status(co)") != json!(["suspended"]) {
            continue;
        }
        seen += 1;
        assert_eq!(
            values(
                &vm,
                "local r = {} for i = 1, 3 do local ok, n = coroutine.resume(co) \
                 r[i] = ok and n end return r[2] - r[1], r[3] - r[2], coroutine.status(co)"
            ),
            json!([1, 1, "suspended"])
        );
    }
    assert!(seen > 0, "the coroutine never survived a timeout");
}

#[test]
fn a_timeout_does_not_affect_other_vms() {
    let a = Arc::new(TestVm::new(""));
    let b = Arc::new(TestVm::new(""));
    values(&b, "mine = 'b' return 1");
    let b2 = Arc::clone(&b);
    let worker = thread::spawn(move || {
        b2.try_exec(
            "local t = os.clock() local n = 0 while os.clock() - t < 0.2 do n = n + 1 end \
             return mine, n > 0",
            None,
            0,
        )
    });
    expect_timeout(exec_bounded(&a, "while true do end", 30), "0.03");
    let r = worker.join().unwrap().expect("the other VM's execution");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!(["b", true]));
}

// The stop hook raises its error from inside the hook, where Lua has turned hooks off,
// and Lua calls the current message handler right there: a looping `xpcall` handler then
// runs with no hook to stop it. The handler loops below are bounded (5 s, well past
// `BOUND`) so that, while that is not handled, the stuck thread ends by itself.
const LONG_HANDLER: &str = "function() local t = os.time() while os.time() - t < 5 do end end";

#[test]
fn a_looping_xpcall_message_handler_is_stopped_by_a_timeout() {
    let vm = Arc::new(TestVm::new(""));
    values(&vm, SET_KEEP);
    let cases = [
        // The body loops; the stop error calls the handler, which loops.
        format!("while true do xpcall(function() while true do end end, {LONG_HANDLER}) end"),
        // The body fails at once; the handler loops and is stopped inside itself.
        format!("xpcall(function() error('x') end, {LONG_HANDLER}) while true do end"),
    ];
    // Each case on its own VM, all at once, so that every case is reported.
    let runs: Vec<_> = cases
        .iter()
        .map(|code| {
            let vm = Arc::new(TestVm::new(""));
            let code = code.clone();
            let vm2 = Arc::clone(&vm);
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let t0 = Instant::now();
                let r = vm2.try_exec(&code, None, 50);
                let _ = tx.send((r, t0.elapsed()));
            });
            (vm, rx)
        })
        .collect();
    let t0 = Instant::now();
    let mut stuck = Vec::new();
    for ((vm, rx), code) in runs.into_iter().zip(&cases) {
        match rx.recv_timeout(BOUND.saturating_sub(t0.elapsed())) {
            Ok((r, took)) => {
                assert!(took < BOUND, "{took:?}: {code}");
                expect_timeout(r, "0.05");
                values(&vm, SET_KEEP);
                assert_vm_intact(&vm);
            }
            Err(_) => stuck.push(code.clone()),
        }
    }
    assert!(stuck.is_empty(), "not stopped within {BOUND:?}: {stuck:#?}");
    // The plain case (a handler that returns) on the shared VM.
    expect_timeout(
        exec_bounded(
            &vm,
            "while true do xpcall(function() while true do end end, function(m) return m end) end",
            50,
        ),
        "0.05",
    );
    assert_vm_intact(&vm);
}

// Lua 5.4 turns hooks off while it runs a finalizer (`__gc`), so a count hook cannot stop
// a finalizer loop. The loops below are bounded (5 s, well past `BOUND`) rather than
// endless so that, while that is not handled, the stuck thread ends by itself instead of
// spinning for the rest of the test run.
const LONG_GC: &str =
    "{ __gc = function() local t = os.time() while os.time() - t < 5 do end end }";

/// Lua runs finalizers with hooks off, so nothing could stop a looping one: the default
/// sandbox refuses `__gc` when the metatable is set (the only moment Lua marks an object for
/// finalization).
#[test]
fn finalizers_are_refused_in_the_default_sandbox() {
    let vm = TestVm::new("");
    values(&vm, SET_KEEP);
    for mt in [LONG_GC, "{ __gc = false }", "{ __gc = function() end }"] {
        let r = vm.exec(&format!("setmetatable({{}}, {mt})"));
        assert!(!r.success, "{mt}");
        assert!(
            r.error.starts_with(
                "__gc metamethods are not available in the sandbox (a finalizer cannot be stopped)"
            ),
            "{}",
            r.error
        );
    }
    // Adding __gc after setmetatable does not mark the object, as in Lua itself.
    let r = values(
        &vm,
        "local mt = {} local t = setmetatable({}, mt) \
         mt.__gc = function() ran = true end t = nil \
         collectgarbage() collectgarbage() return ran, getmetatable(setmetatable({}, {__index = {}})) ~= nil",
    );
    assert_eq!(r, json!([null, true]));
    assert_vm_intact(&vm);
    let vm = Arc::new(vm);
    let r = bounded(BOUND, {
        let vm = Arc::clone(&vm);
        move || bioxen_vm_free(vm.0)
    });
    let (st, took) = r.unwrap_or_else(|| panic!("bioxen_vm_free did not return within {BOUND:?}"));
    assert_eq!(st, OK);
    assert!(took < BOUND);
}

#[test]
fn finalizers_still_run_in_a_trusted_vm() {
    let vm = TestVm::new(r#"{"sandbox":"trusted"}"#);
    let r = values(
        &vm,
        "setmetatable({}, { __gc = function() ran = true end }) collectgarbage() collectgarbage() return ran",
    );
    assert_eq!(r, json!([true]));
}

#[test]
fn freeing_a_trusted_vm_whose_finalizer_resumes_an_endless_coroutine_returns_promptly() {
    let vm = TestVm::new(r#"{"sandbox":"trusted"}"#);
    values(
        &vm,
        "co = coroutine.create(function() while true do end end) \
         keep = setmetatable({}, { __gc = function() coroutine.resume(co) end }) return 1",
    );
    let h = vm.0;
    std::mem::forget(vm);
    let (st, took) = bounded(BOUND, move || bioxen_vm_free(h))
        .unwrap_or_else(|| panic!("bioxen_vm_free did not return within {BOUND:?}"));
    assert_eq!(st, OK);
    assert!(took < BOUND, "{took:?}");
}

// ---------------------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------------------

fn interrupt(h: u64) -> bool {
    let mut was_running = false;
    assert_eq!(unsafe { bioxen_vm_interrupt(h, &mut was_running) }, OK);
    was_running
}

/// Runs `code` on a helper thread and interrupts it from this one once it runs.
fn interrupt_running(vm: &Arc<TestVm>, code: &str) -> Outcome {
    let vm2 = Arc::clone(vm);
    let code2 = code.to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = vm2.try_exec(&code2, None, 0);
        let _ = tx.send(r);
    });
    let t0 = Instant::now();
    let mut delivered = false;
    while t0.elapsed() < BOUND {
        thread::sleep(Duration::from_millis(5));
        if interrupt(vm.0) {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the execution never showed as running");
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("an interrupted execution did not return: {code}"))
}

#[test]
fn interrupt_stops_a_running_loop() {
    let vm = Arc::new(TestVm::new(""));
    values(&vm, SET_KEEP);
    for code in [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local gen = coroutine.wrap(function() while true do coroutine.yield() end end) \
         while true do pcall(gen) end",
    ] {
        let m = expect_status(interrupt_running(&vm, code), bioxen_vm_status::Interrupted);
        assert_eq!(m, "Lua execution interrupted");
        assert_vm_intact(&vm);
    }
    // An interrupt wins over a later deadline of the same execution.
    let m = expect_status(
        {
            let vm2 = Arc::clone(&vm);
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let _ = tx.send(vm2.try_exec("while true do end", None, 300));
            });
            let t0 = Instant::now();
            while !interrupt(vm.0) && t0.elapsed() < BOUND {
                thread::sleep(Duration::from_millis(2));
            }
            rx.recv_timeout(BOUND).expect("returned")
        },
        bioxen_vm_status::Interrupted,
    );
    assert_eq!(m, "Lua execution interrupted");
}

#[test]
fn interrupt_on_an_idle_vm_changes_nothing() {
    let vm = TestVm::new("");
    values(&vm, SET_KEEP);
    assert!(!interrupt(vm.0));
    assert!(!interrupt(vm.0));
    assert_vm_intact(&vm);
    assert_eq!(
        values(
            &vm,
            "local t = os.clock() while os.clock() - t < 0.05 do end return 'ran'"
        ),
        json!(["ran"])
    );
    // Also after an execution that was interrupted.
    let vm = Arc::new(vm);
    expect_status(
        interrupt_running(&vm, "while true do end"),
        bioxen_vm_status::Interrupted,
    );
    assert!(!interrupt(vm.0));
    assert_vm_intact(&vm);
}

// ---------------------------------------------------------------------------------------
// Single C calls and output
// ---------------------------------------------------------------------------------------

const REP_REFUSED: &str = "string.rep result too large (limit 67108864 bytes in the sandbox)";

fn first_line(e: &str) -> &str {
    e.lines().next().unwrap_or_default()
}

#[test]
fn string_rep_is_capped_in_the_default_sandbox() {
    let vm = TestVm::new("");
    for code in [
        "return string.rep('x', 64 * 1024 * 1024 + 1)",
        "return ('x'):rep(64 * 1024 * 1024 + 1)",
        "return string.rep('ab', 32 * 1024 * 1024, ',')",
        "return string.rep('x', math.maxinteger)",
        "return string.rep('xy', math.maxinteger // 2 + 1)",
        "return string.rep('x', 2, string.rep('y', 64 * 1024 * 1024))",
    ] {
        let r = vm.try_exec(code, None, 0).expect("a Lua error result");
        assert!(!r.success, "{code}");
        assert_eq!(first_line(&r.error), REP_REFUSED, "{code}");
    }
    assert_eq!(
        values(&vm, "return pcall(string.rep, 'x', 1 << 40)"),
        json!([false, REP_REFUSED])
    );
    // Exactly at the cap is allowed.
    assert_eq!(
        values(&vm, "return #string.rep('x', 64 * 1024 * 1024)"),
        json!([64 << 20])
    );
    // A trusted VM is not capped.
    let t = TestVm::new(r#"{"sandbox":"trusted"}"#);
    assert_eq!(
        values(&t, "return #string.rep('x', 65 * 1024 * 1024)"),
        json!([65 << 20])
    );
}

#[test]
fn string_rep_of_an_empty_string_is_bounded_in_time() {
    // The cap counts result bytes; an empty string gives 0 bytes however large the count,
    // and Lua's rep still loops `count` times inside one C call that no hook can stop.
    let vm = Arc::new(TestVm::new(""));
    values(&vm, SET_KEEP);
    let code = "return #string.rep('', 3e9)";
    let vm2 = Arc::clone(&vm);
    let (r, took) = bounded(BOUND, move || vm2.try_exec(code, None, 50))
        .unwrap_or_else(|| panic!("{code} did not return within {BOUND:?}"));
    assert!(took < BOUND, "{code}: {took:?}");
    // Any prompt outcome is acceptable: the empty result, a refusal, or a timeout.
    match r {
        Ok(r) if r.success => assert_eq!(r.values, json!([0])),
        Ok(r) => assert!(!r.error.is_empty()),
        Err((s, _)) => assert_eq!(s, bioxen_vm_status::Timeout.code()),
    }
    assert_vm_intact(&vm);
}

#[test]
fn output_is_capped_per_stream() {
    let vm = TestVm::new(r#"{"max_output": 1000}"#);
    let r = vm.exec("for i = 1, 1000 do io.write('123456789\\n') end");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.stdout.len(), 1000);
    assert_eq!(r.out(), "123456789\n".repeat(100));
    assert_eq!(r.dropped, 9000);
    assert_eq!(r.stderr.len(), 0);
    // print, and stderr capped on its own.
    let r = vm.exec(
        "for i = 1, 1000 do print('12345678') end \
         for i = 1, 300 do io.stderr:write('abcdefghij') end",
    );
    assert!(r.success, "{}", r.error);
    assert_eq!(r.out(), "12345678\n".repeat(111) + "1");
    assert_eq!(r.err(), "abcdefghij".repeat(100));
    assert_eq!(r.dropped, 9000 - 1000 + 3000 - 1000);
    // Each execution starts with empty buffers.
    let r = vm.exec("io.write('small')");
    assert_eq!(r.out(), "small");
    assert_eq!(r.dropped, 0);
    // Output of a failed execution is capped as well.
    let r = vm.exec("io.write(string.rep('z', 5000)) error('after output')");
    assert!(!r.success);
    assert_eq!(r.out(), "z".repeat(1000));
    assert_eq!(r.dropped, 4000);
}

// ---------------------------------------------------------------------------------------
// The host process
// ---------------------------------------------------------------------------------------

#[test]
fn the_host_process_is_unaffected_by_all_bombs() {
    let bomb_vm = limited_vm();
    for bomb in [TABLE_BOMB, STRING_BOMB] {
        expect_status(
            bomb_vm.try_exec(bomb, None, 2000),
            bioxen_vm_status::MemoryLimit,
        );
    }
    let loop_vm = Arc::new(TestVm::new(""));
    expect_timeout(exec_bounded(&loop_vm, "while true do end", 20), "0.02");
    expect_status(
        interrupt_running(
            &loop_vm,
            "while true do pcall(function() while true do end end) end",
        ),
        bioxen_vm_status::Interrupted,
    );
    let rep = TestVm::new("")
        .try_exec("return string.rep('x', 1 << 40)", None, 0)
        .unwrap();
    assert_eq!(first_line(&rep.error), REP_REFUSED);
    drop(bomb_vm);
    drop(loop_vm);
    // A fresh VM runs normally.
    let fresh = TestVm::new("");
    let r = fresh.exec("print('fresh') return 2 ^ 10, #string.rep('ab', 1000)");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!([1024.0, 2000]));
    assert_eq!(r.out(), "fresh\n1024.0\t2000\n");
    assert_eq!(fresh.info()["executions"], json!(1));
}

// ---------------------------------------------------------------------------------------
// Pattern matching: one C call, made stoppable by a check inside the matcher
// ---------------------------------------------------------------------------------------

const PATHOLOGICAL: &[&str] = &[
    "return string.find(string.rep('a', 500), '.-.-.-b')",
    "return ('a'):rep(300):match('(.-)(.-)(.-)(.-)b$')",
    "local n = 0 for w in ('a'):rep(400):gmatch('.-.-.-b') do n = n + 1 end return n",
    "return (('a'):rep(400):gsub('.-.-.-b', 'x'))",
    "return pcall(string.find, ('a'):rep(500), '.-.-.-b')",
    // A stop swallowed by a pcall in tail position, where no instruction is left for the hook.
    "return pcall(function() while true do end end)",
];

#[test]
fn pathological_patterns_are_stopped_by_a_timeout() {
    let vm = Arc::new(TestVm::new(""));
    values(&vm, SET_KEEP);
    for code in PATHOLOGICAL {
        let (r, took) = bounded(BOUND, {
            let vm = Arc::clone(&vm);
            let code = code.to_string();
            move || vm.try_exec(&code, None, 50)
        })
        .unwrap_or_else(|| panic!("{code} was not stopped within {BOUND:?}"));
        assert!(took < Duration::from_millis(1000), "{code}: {took:?}");
        expect_timeout(r, "0.05");
    }
    assert_vm_intact(&vm);
}

#[test]
fn pathological_patterns_are_stopped_by_an_interrupt() {
    let vm = Arc::new(TestVm::new(r#"{"sandbox":"trusted"}"#));
    let r = interrupt_running(&vm, PATHOLOGICAL[0]);
    expect_status(r, bioxen_vm_status::Interrupted);
}

#[test]
fn pattern_functions_keep_lua_semantics() {
    let vm = TestVm::new("");
    let r = values(
        &vm,
        r#"local out = {}
        local function add(...) out[#out + 1] = table.pack(...) end
        add(string.find("hello world", "o w"))
        add(string.find("hello world", "o", 6))
        add(string.find("a.b", ".", 1, true))
        add(string.find("abc", "b", -1))
        add(("key = value"):match("^(%w+)%s*=%s*(%w+)$"))
        add(("  trim me  "):match("^%s*(.-)%s*$"))
        add(("2024-01-15"):match("(%d+)-(%d+)-(%d+)"))
        add(("hello"):match("()ll()"))
        add(string.gsub("hello world", "o", "0"))
        add(string.gsub("hello world", "(%w+)", "<%1>"))
        add(string.gsub("abc", "%w", "%0%0", 2))
        add(string.gsub("$name is $age", "%$(%w+)", {name = "Ann", age = 7}))
        add(string.gsub("x y", "%w", function(c) return c:upper() end))
        add(("THE (quick) fox"):find("%((%a+)%)"))
        add(string.match("[[x]]", "%[(%b[])%]"))
        add(string.find("THE (quick) fox", "%f[%a]%a+", 5))
        local words = {}
        for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do words[#words + 1] = k .. v end
        add(table.concat(words, ","))
        add(pcall(string.find, "x", "(%"))
        add(pcall(string.rep))
        return out"#,
    );
    assert_eq!(
        r,
        json!([[
            {"1": 5, "2": 7, "n": 2},
            {"1": 8, "2": 8, "n": 2},
            {"1": 2, "2": 2, "n": 2},
            {"n": 1},
            {"1": "key", "2": "value", "n": 2},
            {"1": "trim me", "n": 1},
            {"1": "2024", "2": "01", "3": "15", "n": 3},
            {"1": 3, "2": 5, "n": 2},
            {"1": "hell0 w0rld", "2": 2, "n": 2},
            {"1": "<hello> <world>", "2": 2, "n": 2},
            {"1": "aabbc", "2": 2, "n": 2},
            {"1": "Ann is 7", "2": 2, "n": 2},
            {"1": "X Y", "2": 2, "n": 2},
            {"1": 5, "2": 11, "3": "quick", "n": 3},
            {"1": "[x]", "n": 1},
            {"1": 6, "2": 10, "n": 2},
            {"1": "a1,b2", "n": 1},
            {"1": false, "2": "malformed pattern (ends with '%')", "n": 2},
            {"1": false, "2": "bad argument #1 to 'string.rep' (string expected, got no value)", "n": 2}
        ]])
    );
}
