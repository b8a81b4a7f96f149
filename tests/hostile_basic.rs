//! Hostile code against `basic` VMs, through the C ABI.
//!
//! 1. Library functions that loop in C without coming back to Lua (where no hook can fire)
//!    are stopped by a timeout and by an interrupt from another thread within the deadline
//!    plus a margin, and the VM keeps its state. Freeing a manager while such code runs
//!    returns well within its grace, and no thread keeps spinning afterwards.
//! 2. What the host builds from Lua values (the values' JSON, the REPL text, error
//!    messages and tracebacks) is bounded by `max_output`, and the conversion stops by the
//!    deadline; host memory (RSS) stays within a bound of the VM's limits.
//! 3. A returned table whose keys collide as JSON object keys comes back losslessly as
//!    `{"$lua_pairs": [[key, value], ...]}`.
//!
//! Every call that could hang if the library misbehaved runs on a helper thread and is
//! awaited with a bound. Tests that measure the process (CPU time, peak RSS) take the
//! `EXCLUSIVE` lock for writing; all others take it for reading.

mod common;

use bioxen_vm::bioxen_vm_status;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// The deadline of the timeout cases.
const DEADLINE_MS: u64 = 100;
/// How far past its deadline (or past an interrupt) a stopped call may return. The
/// promise is 100 ms; this leaves room for a loaded test machine. Every escape below runs
/// for seconds without its stop check.
const MARGIN: Duration = Duration::from_millis(400);
/// How long any call is awaited before the test fails (the call is then left behind).
const HANG: Duration = Duration::from_secs(20);

static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner())
}

type Outcome = Result<Res, (i32, String)>;

/// Runs `f` on its own thread; its value and how long it took, or a failed test if it
/// does not return within `HANG`.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let t0 = Instant::now();
        let v = f();
        let _ = tx.send((v, t0.elapsed()));
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("did not return within {HANG:?}: {what}"))
}

fn ok_values(vm: &TestVm, code: &str) -> Value {
    let r = vm.exec(code);
    assert!(r.success, "{}\ncode: {code}", r.error);
    r.values
}

fn status_of(r: &Outcome) -> String {
    match r {
        Ok(r) => format!("a result (success {}): {}", r.success, r.error),
        Err((s, m)) => format!("{} ({m})", status_name(*s)),
    }
}

/// A global set before each escape; the VM must keep it and still run code afterwards.
const KEEP: &str = "keep = { 'kept', n = 3 } return 1";

fn assert_intact(vm: &TestVm, what: &str) {
    let r = vm.exec(
        "local s = 0 for i = 1, 100000 do s = s + i end \
         return keep[1], keep.n, s, #string.rep('ab', 10), table.concat({1, 2}, ',')",
    );
    assert!(r.success, "after {what}: {}", r.error);
    assert_eq!(
        r.values,
        json!(["kept", 3, 5000050000_i64, 20, "1,2"]),
        "after {what}"
    );
}

/// A library call that, without its stop check, runs for seconds in one C call.
struct Escape {
    name: &'static str,
    /// Run first, without a deadline (builds large inputs as globals).
    setup: &'static str,
    /// The single long call.
    code: &'static str,
    /// VM options.
    options: &'static str,
}

const fn esc(name: &'static str, setup: &'static str, code: &'static str) -> Escape {
    Escape {
        name,
        setup,
        code,
        options: "",
    }
}

/// A table whose length is huge and whose reads and writes stay in C.
const HUGE_LEN: &str =
    "HUGE = setmetatable({}, { __len = function() return math.maxinteger - 1 end })";

const TABLE_ESCAPES: &[Escape] = &[
    esc(
        "table.move",
        "",
        "table.move({}, 1, math.maxinteger - 1, 2)",
    ),
    esc(
        "table.move backwards",
        "",
        "table.move({}, 1, math.maxinteger // 2, 2)",
    ),
    esc(
        "table.move to another table",
        "",
        "table.move({}, 1, 1 << 40, 1, {})",
    ),
    esc(
        "table.insert with a huge __len",
        HUGE_LEN,
        "table.insert(HUGE, 1, 'x')",
    ),
    esc(
        "table.remove with a huge __len",
        HUGE_LEN,
        "table.remove(HUGE, 1)",
    ),
    esc(
        "table.concat through a C __index",
        "T = setmetatable({}, { __index = type })",
        "return #table.concat(T, '', 1, 1 << 40)",
    ),
    esc(
        "table.sort of two million numbers",
        "T = {} for i = 1, 2000000 do T[i] = (i * 7919) % 1000003 end",
        "table.sort(T)",
    ),
    esc(
        "table.sort with a reversed order",
        "T = {} for i = 1, 2000000 do T[i] = i end",
        "table.sort(T, math.ult) table.sort(T)",
    ),
];

const STRING_ESCAPES: &[Escape] = &[
    esc(
        "plain find of a long needle",
        "H = string.rep('a', 1 << 26) N = string.rep('a', 1 << 16) .. 'b'",
        "return H:find(N, 1, true)",
    ),
    esc(
        "find of a long needle without specials",
        "H = string.rep('a', 1 << 25) N = string.rep('a', 1 << 17) .. 'b'",
        "return H:find(N)",
    ),
    esc(
        "plain find of a medium needle",
        "H = string.rep('a', 1 << 26) .. 'b' N = string.rep('a', 3000) .. 'c'",
        "for i = 1, 2 do H:find(N, 1, true) end return H:find(N, 1, true)",
    ),
    esc(
        "find %b over unbalanced text",
        "H = string.rep('(', 1 << 20)",
        "return H:find('%b()')",
    ),
    esc(
        "a long character class",
        "H = string.rep('b', 200000) P = '[' .. string.rep('a', 200000) .. 'b]*c'",
        "return H:find(P)",
    ),
    esc(
        "gsub with a long replacement",
        "H = string.rep('x', 4000) R = string.rep('%0', 1 << 17)",
        "return #H:gsub('x', R)",
    ),
    esc(
        "upper of 256 MiB",
        "S = string.rep('a', 1 << 26) S = S .. S .. S .. S",
        "return #S:upper()",
    ),
    esc(
        "lower of 256 MiB",
        "S = string.rep('A', 1 << 26) S = S .. S .. S .. S",
        "return #S:lower()",
    ),
    esc(
        "reverse of 256 MiB",
        "S = string.rep('a', 1 << 26) S = S .. S .. S .. S",
        "return #S:reverse()",
    ),
    esc(
        "format of a 64 MiB format",
        "F = string.rep('x', 1 << 26)",
        "return #F:format() + #F:format() + #F:format()",
    ),
    esc(
        "format %q of 128 MiB",
        "S = string.rep('\\n', 1 << 26) S = S .. S",
        "return #string.format('%q', S)",
    ),
    esc(
        "pack of 64 Mi padding options",
        "F = string.rep('x', 1 << 26)",
        "return #string.pack(F) + #string.pack(F)",
    ),
    esc(
        "packsize of 64 Mi options",
        "F = string.rep('b', 1 << 26)",
        "return string.packsize(F) + string.packsize(F) + string.packsize(F)",
    ),
    esc(
        "unpack of 64 Mi options",
        "F = string.rep(' ', 1 << 26)",
        "return string.unpack(F, '') + string.unpack(F, '') + string.unpack(F, '')",
    ),
    esc(
        "utf8.len of 256 MiB",
        "S = string.rep('\\u{7FF}', 1 << 25) S = S .. S .. S .. S",
        "return utf8.len(S)",
    ),
    esc(
        "utf8.offset across 256 MiB",
        "S = string.rep('a', 1 << 26) S = S .. S .. S .. S",
        "return utf8.offset(S, #S)",
    ),
    esc(
        "utf8.codes over 384 MiB of continuation bytes",
        "R = string.rep('\\x80', 1 << 26) S = 'a' .. R .. R .. R .. R .. R .. R R = nil",
        "local f = utf8.codes('a', true) return f(S, 1)",
    ),
    esc(
        "os.date with 16 Mi conversions",
        "F = string.rep('%c', 1 << 24)",
        "return #os.date(F)",
    ),
];

const LOAD_ESCAPES: &[Escape] = &[
    // (A chunk name is given: by default the name is the whole chunk, which Lua copies.)
    esc(
        "load of 200 MB of source",
        "S = string.rep('a = 1 ', 1 << 23) S = S .. S .. S .. S",
        "return load(S, '=s') ~= nil",
    ),
    esc(
        "load of 90000 labels (quadratic parsing)",
        "local t = {} for i = 1, 30000 do t[i] = 'goto l' .. i .. ' ::l' .. i .. '::' end \
         local f = 'local function f() ' .. table.concat(t, ' ') .. ' end ' \
         S = f .. f .. f",
        "return load(S) ~= nil",
    ),
    esc(
        "load from a reader giving one huge piece",
        "S = string.rep('a = 1 ', 1 << 23) S = S .. S .. S .. S",
        "local done return load(function() if done then return nil end done = true return S end) ~= nil",
    ),
    // Ten full collections of three million tables inside one C call (gsub).
    esc(
        "collectgarbage of three million tables",
        "T = {} for i = 1, 3000000 do T[i] = {} end",
        "return (string.gsub(string.rep('collect ', 10), '%a+', collectgarbage))",
    ),
    esc(
        "a traceback over two million globals",
        "for i = 1, 2000000 do _G['g' .. i] = i end",
        "local function f(n) if n == 0 then error('deep') end return f(n - 1) + 1 end return f(40)",
    ),
];

/// Runs `code` on a helper thread with a deadline of `ms`; asserts TIMEOUT within the
/// deadline plus `MARGIN`. Returns the elapsed time.
fn expect_timeout(vm: &Arc<TestVm>, what: &str, code: &str, ms: u64) -> Duration {
    let vm2 = Arc::clone(vm);
    let code = code.to_string();
    let (r, took) = bounded(what, move || vm2.try_exec(&code, None, ms));
    assert!(
        matches!(&r, Err((s, _)) if *s == bioxen_vm_status::Timeout.code()),
        "{what}: expected TIMEOUT, got {}",
        status_of(&r)
    );
    let limit = Duration::from_millis(ms) + MARGIN;
    assert!(took < limit, "{what}: took {took:?} (limit {limit:?})");
    took
}

/// Runs `code` on a helper thread without a deadline, interrupts it once it has run for
/// a while (well into its single long call), and asserts INTERRUPTED within `MARGIN` of
/// the interrupt. Returns the time from the interrupt to the return.
fn expect_interrupted(vm: &Arc<TestVm>, what: &str, code: &str) -> Duration {
    let vm2 = Arc::clone(vm);
    let code = code.to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(vm2.try_exec(&code, None, 0));
    });
    let t0 = Instant::now();
    while vm.info()["running"] != json!(true) {
        assert!(t0.elapsed() < HANG, "{what}: never ran");
        thread::sleep(Duration::from_millis(1));
    }
    // Any setup ran in an earlier execution: after this, the code is inside its call.
    thread::sleep(Duration::from_millis(100));
    let mut was_running = false;
    assert_eq!(unsafe { bioxen_vm_interrupt(vm.0, &mut was_running) }, OK);
    let t1 = Instant::now();
    let r = rx
        .recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what}: not stopped within {HANG:?}"));
    let took = t1.elapsed();
    assert!(was_running, "{what}: ended before the interrupt");
    assert!(
        matches!(&r, Err((s, _)) if *s == bioxen_vm_status::Interrupted.code()),
        "{what}: expected INTERRUPTED, got {}",
        status_of(&r)
    );
    assert!(
        took < MARGIN,
        "{what}: returned {took:?} after the interrupt"
    );
    took
}

/// Runs `e.setup`, then `e.code` stopped by `stop`; checks that the VM kept its state.
fn escape_case(
    vm: &Arc<TestVm>,
    e: &Escape,
    stop: fn(&Arc<TestVm>, &str, &str) -> Duration,
) -> Duration {
    ok_values(vm, KEEP);
    if !e.setup.is_empty() {
        let r = vm.exec(e.setup);
        assert!(r.success, "{}: setup failed: {}", e.name, r.error);
    }
    let took = stop(vm, e.name, e.code);
    assert_intact(vm, e.name);
    ok_values(
        vm,
        "S, T, H, N, F, P, R, HUGE = nil collectgarbage() return 1",
    );
    took
}

fn timeout_case(vm: &Arc<TestVm>, e: &Escape) -> Duration {
    escape_case(vm, e, |vm, what, code| {
        expect_timeout(vm, what, code, DEADLINE_MS)
    })
}

fn interrupt_case(vm: &Arc<TestVm>, e: &Escape) -> Duration {
    escape_case(vm, e, expect_interrupted)
}

fn vm_for(e: &Escape) -> Arc<TestVm> {
    Arc::new(TestVm::new(e.options))
}

fn run_escapes(cases: &[Escape]) {
    let _g = shared();
    for e in cases {
        let vm = vm_for(e);
        let t = timeout_case(&vm, e);
        let i = interrupt_case(&vm, e);
        eprintln!(
            "{:<48} timeout: {t:>8.1?}  after interrupt: {i:>8.1?}",
            e.name
        );
    }
}

#[test]
fn table_functions_are_stopped_by_a_timeout_and_an_interrupt() {
    run_escapes(TABLE_ESCAPES);
}

#[test]
fn string_functions_are_stopped_by_a_timeout_and_an_interrupt() {
    run_escapes(STRING_ESCAPES);
}

#[test]
fn load_gc_and_tracebacks_are_stopped_by_a_timeout_and_an_interrupt() {
    run_escapes(LOAD_ESCAPES);
}

#[test]
fn the_trusted_sandbox_stops_the_same_calls() {
    let _g = shared();
    for e in [
        &TABLE_ESCAPES[0],
        &STRING_ESCAPES[0],
        &STRING_ESCAPES[6],
        &LOAD_ESCAPES[1],
    ] {
        let vm = Arc::new(TestVm::new(r#"{"sandbox":"trusted"}"#));
        timeout_case(&vm, e);
        interrupt_case(&vm, e);
    }
}

#[test]
fn compiling_the_executed_code_itself_is_stopped() {
    let _g = shared();
    let vm = Arc::new(TestVm::new(""));
    ok_values(&vm, KEEP);
    // 90000 labels, 30000 to a function: quadratic work for Lua's parser.
    let pairs: String = (1..=30000)
        .map(|i| format!("goto l{i} ::l{i}:: "))
        .collect();
    let labels = format!("local function f() {pairs} end ").repeat(3);
    // 200 MB of statements.
    let statements = "a = 1 ".repeat(1 << 25);
    for (name, code) in [("labels", labels), ("statements", statements)] {
        let took = expect_timeout(&vm, name, &code, DEADLINE_MS);
        eprintln!("compiling {name}: timeout after {took:?}");
        assert_intact(&vm, name);
        let took = expect_interrupted(&vm, name, &code);
        eprintln!("compiling {name}: {took:?} after the interrupt");
        assert_intact(&vm, name);
    }
}

#[test]
fn looping_close_handlers_and_error_handlers_do_not_hold_a_stop_back() {
    let _g = shared();
    let vm = Arc::new(TestVm::new(""));
    ok_values(&vm, KEEP);
    for code in [
        "local x <close> = setmetatable({}, {__close = function() while true do end end}) \
         while true do end",
        "pcall(function() \
           local x <close> = setmetatable({}, {__close = function() while true do end end}) \
           error('x') end) while true do end",
        "coroutine.wrap(function() \
           local x <close> = setmetatable({}, {__close = function() while true do end end}) \
           while true do end end)()",
        "xpcall(function() while true do end end, function() while true do end end)",
        "while true do pcall(error, setmetatable({}, \
           {__tostring = function() while true do end end})) end",
    ] {
        expect_timeout(&vm, code, code, DEADLINE_MS);
        assert_intact(&vm, code);
        expect_interrupted(&vm, code, code);
        assert_intact(&vm, code);
    }
}

#[test]
fn rep_of_an_empty_string_returns_at_once_in_both_sandboxes() {
    let _g = shared();
    for options in ["", r#"{"sandbox":"trusted"}"#] {
        let vm = TestVm::new(options);
        let t0 = Instant::now();
        assert_eq!(
            ok_values(
                &vm,
                "return #string.rep('', math.maxinteger), #('x'):rep(0, 'sep')"
            ),
            json!([0, 0])
        );
        assert!(t0.elapsed() < MARGIN, "{:?}", t0.elapsed());
    }
}

#[test]
fn debug_sethook_cannot_remove_a_pending_stop_in_a_trusted_vm() {
    let _g = shared();
    let vm = Arc::new(TestVm::new(r#"{"sandbox":"trusted"}"#));
    ok_values(&vm, KEEP);
    for code in [
        "while true do debug.sethook() end",
        "local co = coroutine.running() while true do debug.sethook(co) end",
        "while true do debug.sethook(function() end, '', 1000000) end",
    ] {
        for _ in 0..10 {
            expect_timeout(&vm, code, code, 20);
        }
        for _ in 0..3 {
            expect_interrupted(&vm, code, code);
        }
        assert_intact(&vm, code);
    }
}

#[test]
fn library_functions_keep_their_lua_results() {
    let _g = shared();
    for options in ["", r#"{"sandbox":"trusted"}"#] {
        let vm = TestVm::new(options);
        let r = ok_values(
            &vm,
            r#"local out = {}
            local function add(...) out[#out + 1] = table.pack(...) end
            add(("Hello"):upper(), ("Hello"):lower(), ("abc"):reverse(), (""):reverse())
            add(("ab"):rep(3, ","), ("x"):rep(0), ("x"):rep(1, "-"), (""):rep(5, ""))
            add(#("abc"):rep(100000, "--"), ("abc"):rep(100000, "--"):sub(-8))
            add(string.format("%5.2f|%d|%s|%q|%x", 3.14159, 42, "s", "a\n\0b", 255))
            add(string.format("%q", 1 / 0), string.format("%-5s|", "ab"), string.format("%%"))
            add(string.pack("i4c5xz", 7, "ab", "zz"):byte(1, -1))
            add(string.packsize("i4c5x"), string.unpack("i4c5", string.pack("i4c5", 9, "hello")))
            add(("hello world"):find("o w", 1, true), ("hello"):find("", 10, true))
            add(("a.b.c"):find(".", 2, true), ("aaab"):find("ab", 1, true), ("x"):find("xy", 1, true))
            add(string.rep("ab", 40000):find(string.rep("ab", 39000) .. "c", 1, true))
            local long = string.rep("a", 70000)
            add((long .. "b" .. long .. "c"):find(long .. "c", 1, true))
            add((long .. "b"):find(long .. "c", 1, true), (long):find(long, 1, true))
            local t = {5, 2, 8, 1}
            table.sort(t) add(table.concat(t, ","))
            table.sort(t, function(a, b) return a > b end) add(table.concat(t, ","))
            table.insert(t, 1, 0) table.insert(t, 9) add(table.concat(t, ","), table.remove(t, 1), table.remove(t))
            add(table.concat(table.move({1, 2, 3}, 1, 3, 2), ","), table.concat(table.move({1, 2, 3}, 2, 3, 1), ","))
            add(utf8.len("häll€"), utf8.len("\xff"), utf8.offset("häll€", 3), utf8.offset("häll€", -1))
            local cps = {} for p, c in utf8.codes("hé€") do cps[#cps + 1] = p .. ":" .. c end
            add(table.concat(cps, " "))
            add(os.date("!%Y-%m-%d %H:%M:%S", 86400 * 365), os.date("!*t", 0).year)
            add(load("return 1 + 1")(), load("syntax error here"))
            local parts = {"return ", "40 ", "+ 2"}
            local i = 0
            add(load(function() i = i + 1 return parts[i] end)())
            add(load("return x", "=name", "t", {x = 7})())
            add(pcall(load, 123), (load(string.rep(" ", 10000) .. "return 5"))())
            return out"#,
        );
        assert_eq!(
            r,
            json!([[
                {"1": "HELLO", "2": "hello", "3": "cba", "4": "", "n": 4},
                {"1": "ab,ab,ab", "2": "", "3": "x", "4": "", "n": 4},
                {"1": 499998, "2": "abc--abc", "n": 2},
                {"1": " 3.14|42|s|\"a\\\n\\0b\"|ff", "n": 1},
                {"1": "1e9999", "2": "ab   |", "3": "%", "n": 3},
                {"1": 7, "2": 0, "3": 0, "4": 0, "5": 97, "6": 98, "7": 0, "8": 0, "9": 0, "10": 0, "11": 122, "12": 122, "13": 0, "n": 13},
                {"1": 10, "2": 9, "3": "hello", "4": 10, "n": 4},
                {"1": 5, "n": 2},
                {"1": 2, "2": 3, "n": 3},
                {"n": 1},
                {"1": 70002, "2": 140002, "n": 2},
                {"2": 1, "3": 70000, "n": 3},
                {"1": "1,2,5,8", "n": 1},
                {"1": "8,5,2,1", "n": 1},
                {"1": "0,8,5,2,1,9", "2": 0, "3": 9, "n": 3},
                {"1": "1,1,2,3", "2": "2,3,3", "n": 2},
                {"1": 5, "3": 4, "4": 6, "n": 4},
                {"1": "1:104 2:233 4:8364", "n": 1},
                {"1": "1971-01-01 00:00:00", "2": 1970, "n": 2},
                {"1": 2, "3": "[string \"syntax error here\"]:1: syntax error near 'error'", "n": 3},
                {"1": 42, "n": 1},
                {"1": 7, "n": 1},
                {"1": true, "2": 5, "n": 2}
            ]]),
            "sandbox {options:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Freeing a manager while an escape runs
// ---------------------------------------------------------------------------------------

/// CPU time (user + system) of this process, from /proc/self/stat (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
fn freeing_a_manager_stops_escapes_and_leaves_no_thread_spinning() {
    let _g = exclusive();
    let mut m = 0;
    assert_eq!(unsafe { bioxen_vm_manager_new(c("").as_ptr(), &mut m) }, OK);
    let codes = [
        "table.move({}, 1, math.maxinteger - 1, 2)",
        "local t = setmetatable({}, { __len = function() return math.maxinteger - 1 end }) \
         table.insert(t, 1, 'x')",
        "local h = string.rep('a', 1 << 26) return h:find(string.rep('a', 1 << 16) .. 'b', 1, true)",
    ];
    let mut jobs = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let id = c(&format!("vm{i}"));
        assert_eq!(
            unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), std::ptr::null()) },
            OK,
            "{}",
            last_error()
        );
        let mut job = 0;
        let st = unsafe {
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                0,
                &mut job,
            )
        };
        assert_eq!(st, OK, "{}", last_error());
        jobs.push(job);
    }
    // Every job is inside its long call (all are running, and stay so for seconds).
    let running = |job: u64| {
        let mut s = std::ptr::null();
        assert_eq!(unsafe { bioxen_vm_job_status(job, &mut s) }, OK);
        unsafe { std::ffi::CStr::from_ptr(s) }.to_str().unwrap() == "running"
    };
    let t0 = Instant::now();
    while !jobs.iter().all(|&j| running(j)) {
        assert!(t0.elapsed() < HANG, "the jobs never all ran");
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(300));
    let (st, took) = bounded("bioxen_vm_manager_free", move || bioxen_vm_manager_free(m));
    assert_eq!(st, OK);
    // The grace is 5 s: a free that needed it would mean the code was not stopped.
    assert!(took < Duration::from_secs(2), "manager free took {took:?}");
    for j in jobs {
        assert!(!running(j), "a job still runs after the free");
        assert_eq!(bioxen_vm_job_free(j), OK);
    }
    // No thread keeps spinning: the process uses (almost) no CPU over the next second.
    let cpu0 = process_cpu();
    let w0 = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let used = process_cpu() - cpu0;
    eprintln!(
        "manager free: {took:?}; CPU over the next {:?}: {used:?}",
        w0.elapsed()
    );
    assert!(
        used < Duration::from_millis(150),
        "{used:?} of CPU after the free"
    );
}

// ---------------------------------------------------------------------------------------
// Bounded conversion of values and errors
// ---------------------------------------------------------------------------------------

/// Resident and peak resident memory of this process, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak (VmHWM) to the current RSS; false where the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs `code` and returns its outcome with how far the peak RSS rose above the RSS
/// before the call (or the RSS growth where the peak cannot be reset).
fn with_peak(vm: &Arc<TestVm>, code: String, timeout_ms: u64) -> (Outcome, u64, Duration) {
    let before = rss().0;
    let peak_ok = reset_peak();
    let vm2 = Arc::clone(vm);
    let (r, took) = bounded("a conversion", move || {
        vm2.try_exec(&code, None, timeout_ms)
    });
    let (now, peak) = rss();
    let top = if peak_ok { peak.max(now) } else { now };
    (r, top.saturating_sub(before), took)
}

const MIB: u64 = 1 << 20;

fn too_large_line(max: usize) -> String {
    format!("bioxen_vm: the returned values do not fit in max_output ({max} bytes) as JSON")
}

#[test]
fn two_hundred_returns_of_a_16_mib_string_stay_within_the_limits() {
    let _g = exclusive();
    let vm = Arc::new(TestVm::new(
        r#"{"memory_limit": 67108864, "max_output": 1024}"#,
    ));
    ok_values(&vm, "S = string.rep('x', 16 << 20) return 1");
    let code = format!("return {}", vec!["S"; 200].join(", "));
    let (r, grew, took) = with_peak(&vm, code, 0);
    let r = r.expect("a result");
    eprintln!(
        "200 x 16 MiB returned: peak RSS +{} MiB, {took:?}",
        grew / MIB
    );
    assert!(!r.success);
    assert_eq!(r.return_code, 1);
    assert_eq!(r.values, json!([]));
    assert_eq!(r.error, too_large_line(1024));
    assert_eq!(r.stdout.len(), 1024);
    assert!(r.stdout.iter().all(|&b| b == b'x'));
    assert_eq!(r.err(), too_large_line(1024) + "\n");
    // The REPL text of all 200 strings is counted; the JSON adds at least 1.
    assert!(r.dropped > 200 * (16 << 20) - 1024, "dropped {}", r.dropped);
    assert!(grew < 128 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    ok_values(&vm, "S = nil collectgarbage() return 1");
}

#[test]
fn a_64_mib_error_is_cut_to_max_output() {
    let _g = exclusive();
    let vm = Arc::new(TestVm::new(r#"{"max_output": 1024}"#));
    ok_values(&vm, "S = string.rep('e', 64 << 20) return 1");
    for (code, prefix) in [
        ("error(S)", "(bioxen_vm):1: eee"),
        ("error(S, 0)", "eeee"),
        (
            "error(setmetatable({}, { __tostring = function() return S end }))",
            "eeee",
        ),
        (
            "local t = {} t[S] = 1 for k in pairs(t) do error(k .. k, 0) end",
            "eeee",
        ),
    ] {
        let (r, grew, took) = with_peak(&vm, code.to_string(), 0);
        let r = r.expect("a result");
        eprintln!("{code}: peak RSS +{} MiB, {took:?}", grew / MIB);
        assert!(!r.success, "{code}");
        assert_eq!(r.error.len(), 1024, "{code}");
        assert!(r.error.starts_with(prefix), "{code}: {}", &r.error[..40]);
        assert_eq!(r.stderr.len(), 1024, "{code}");
        assert_eq!(r.err(), r.error, "{code}");
        assert!(
            r.dropped >= 2 * ((64 << 20) - 1024),
            "{code}: dropped {}",
            r.dropped
        );
        // Lua itself makes a copy or two of the message (the position prefix, `..`).
        assert!(
            grew < 200 * MIB,
            "{code}: peak RSS grew by {} MiB",
            grew / MIB
        );
    }
    ok_values(&vm, "S = nil collectgarbage() return 1");
}

#[test]
fn tracebacks_with_huge_names_are_cut() {
    let _g = shared();
    let vm = TestVm::new(r#"{"max_output": 4096}"#);
    let r = vm.exec(
        "local name = string.rep('f', 1 << 24) \
         _G[name] = function(n) if n == 0 then error('boom') end return _G[name](n - 1) end \
         _G[name](50)",
    );
    assert!(!r.success);
    assert!(r.error.len() <= 4096, "{}", r.error.len());
    assert!(
        r.error.starts_with("(bioxen_vm):1: boom"),
        "{}",
        &r.error[..60]
    );
    assert!(
        r.error.contains("boom\nstack traceback:\n"),
        "{}",
        &r.error[..200]
    );
    assert!(r.dropped > 16 << 20, "dropped {}", r.dropped);
    // Normal tracebacks are Lua's own.
    let r =
        vm.exec("local function inner() error('x') end local function outer() inner() end outer()");
    assert_eq!(
        r.error,
        "(bioxen_vm):1: x\n\
         stack traceback:\n\
         \t[C]: in function 'error'\n\
         \t(bioxen_vm):1: in upvalue 'inner'\n\
         \t(bioxen_vm):1: in local 'outer'\n\
         \t(bioxen_vm):1: in main chunk"
    );
    assert_eq!(r.dropped, 0);
    let r = vm.exec("string.rep()");
    assert!(
        r.error.contains("in function 'string.rep'"),
        "a global name is still found: {}",
        r.error
    );
}

#[test]
fn a_syntax_error_near_a_huge_token_is_cut() {
    let _g = shared();
    let vm = TestVm::new(r#"{"max_output": 1000}"#);
    let long = "a".repeat(32 << 20);
    for (code, prefix) in [
        (
            format!("x = 1{long}"),
            "(bioxen_vm):1: malformed number near '1aaa",
        ),
        (
            format!("x = '{long}\n"),
            "(bioxen_vm):1: unfinished string near ''aaa",
        ),
    ] {
        let r = vm.try_exec(&code, None, 0).expect("a result");
        assert!(!r.success);
        assert_eq!(r.error.len(), 1000);
        assert!(r.error.starts_with(prefix), "{}", &r.error[..60]);
        assert!(r.dropped >= 2 * ((32 << 20) - 1000), "{}", r.dropped);
        assert_eq!(r.stderr.len(), 1000);
    }
    // The same from `load`, inside Lua: the message is Lua's own, whole.
    assert_eq!(
        ok_values(
            &vm,
            "local f, e = load('x = 1' .. string.rep('a', 1 << 20)) return #e"
        ),
        json!([1048664])
    );
    // A short syntax error is whole.
    let r = vm.exec("x = = 1");
    assert_eq!(r.error, "(bioxen_vm):1: unexpected symbol near '='");
    assert_eq!(r.err(), "(bioxen_vm):1: unexpected symbol near '='\n");
    assert_eq!(r.dropped, 0);
}

#[test]
fn a_cut_error_message_ends_on_a_character_boundary() {
    let _g = shared();
    let vm = TestVm::new(r#"{"max_output": 10}"#);
    // "€" is 3 bytes: 10 bytes of "€€€€" would end inside the fourth.
    let r = vm.exec("error('€€€€€€', 0)");
    assert_eq!(r.error, "€€€");
    assert_eq!(r.err(), "€€€\n");
    // Invalid UTF-8 is replaced, and the cut still holds.
    let r = vm.exec("error('\\xff\\xfe\\xfd\\xfc\\xfb', 0)");
    assert_eq!(r.error, "\u{FFFD}\u{FFFD}\u{FFFD}");
    assert!(r.dropped > 0);
}

#[test]
fn the_returned_values_json_is_cut_exactly_at_max_output() {
    let _g = shared();
    let vm = TestVm::new(r#"{"max_output": 100}"#);
    // ["…"] is the string plus 4 bytes.
    let r = vm.exec("return string.rep('v', 96)");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!(["v".repeat(96)]));
    let r = vm.exec("return string.rep('v', 97)");
    assert!(!r.success);
    assert_eq!(r.values, json!([]));
    assert_eq!(r.error, too_large_line(100));
    assert_eq!(r.out(), "v".repeat(97)[..97].to_string() + "\n");
    assert!(r.dropped >= 1);
    // Escapes count: a newline is two bytes of JSON.
    let r = vm.exec("return string.rep('\\n', 48)");
    assert!(r.success, "{}", r.error);
    let r = vm.exec("return string.rep('\\n', 49)");
    assert!(!r.success);
    // Many small values.
    let r = vm.exec("local t = {} for i = 1, 1000 do t[i] = i end return table.unpack(t)");
    assert!(!r.success);
    assert_eq!(r.values, json!([]));
    // The VM is fine afterwards.
    assert_eq!(ok_values(&vm, "return 1, 'two'"), json!([1, "two"]));
}

#[test]
fn a_dag_of_shared_subtables_ends_at_the_cap_or_the_deadline() {
    let _g = exclusive();
    let dag = "local t = {} for i = 1, 40 do t = {t, t} end return t";
    // The cap ends it.
    let vm = Arc::new(TestVm::new(r#"{"max_output": 1048576}"#));
    let (r, grew, took) = with_peak(&vm, dag.to_string(), 0);
    let r = r.expect("a result");
    eprintln!("DAG at a 1 MiB cap: {took:?}, peak RSS +{} MiB", grew / MIB);
    assert!(!r.success);
    assert_eq!(r.error, too_large_line(1 << 20));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(grew < 128 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    // A cap too large to reach: the deadline ends it, or an interrupt.
    let vm = Arc::new(TestVm::new(r#"{"max_output": 4294967296}"#));
    ok_values(&vm, KEEP);
    let took = expect_timeout(&vm, "the DAG", dag, DEADLINE_MS);
    eprintln!("DAG at the deadline: {took:?}");
    assert_intact(&vm, "the DAG");
    let took = expect_interrupted(&vm, "the DAG", dag);
    eprintln!("DAG: {took:?} after the interrupt");
    // Tables that produce almost nothing but take long to walk: the same sparse table
    // (a million empty slots) a hundred thousand times.
    let sparse = "local e = {} for i = 1, 1000000 do e[i] = true end \
                  for i = 1, 1000000 do e[i] = nil end \
                  local t = {} for i = 1, 100000 do t[i] = e end return t";
    expect_timeout(&vm, "the sparse tables", sparse, 1000);
    assert_intact(&vm, "the interrupted DAG");
}

#[test]
fn converting_one_long_string_is_stopped() {
    let _g = exclusive();
    let vm = Arc::new(TestVm::new(r#"{"max_output": 4294967296}"#));
    ok_values(&vm, KEEP);
    ok_values(
        &vm,
        "S = string.rep('\\0', 1 << 26) S = S .. S .. S .. S return 1",
    );
    // Each NUL is six bytes of JSON: 1.5 GiB to escape. And printing copies it.
    for code in ["return S", "print(S, S, S)", "io.write(S, S, S)"] {
        let took = expect_timeout(&vm, code, code, DEADLINE_MS);
        eprintln!("{code} (256 MiB): timeout after {took:?}");
        let took = expect_interrupted(&vm, code, code);
        eprintln!("{code} (256 MiB): {took:?} after the interrupt");
    }
    ok_values(&vm, "S = nil collectgarbage() return 1");
    assert_intact(&vm, "a long string");
}

#[test]
fn repl_text_of_returned_values_is_capped() {
    let _g = shared();
    let vm = TestVm::new(r#"{"max_output": 64}"#);
    let r = vm.exec(
        "return setmetatable({}, { __tostring = function() return string.rep('z', 1 << 24) end })",
    );
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!([{}]));
    assert_eq!(r.out(), "z".repeat(64));
    assert_eq!(r.dropped, (1 << 24) + 1 - 64);
}

// ---------------------------------------------------------------------------------------
// Colliding keys
// ---------------------------------------------------------------------------------------

#[test]
fn colliding_keys_give_the_lossless_pairs_form() {
    let _g = shared();
    let vm = TestVm::new("");
    let v = |code: &str| ok_values(&vm, code);
    assert_eq!(
        v("return {[1] = 'a', ['1'] = 'b'}"),
        json!([{"$lua_pairs": [["1", "b"], [1, "a"]]}])
    );
    assert_eq!(
        v("return {[-7] = 'a', ['-7'] = 'b', x = 1}"),
        json!([{"$lua_pairs": [["-7", "b"], ["x", 1], [-7, "a"]]}])
    );
    assert_eq!(
        v("return {[true] = 1, ['true'] = 2, [false] = 3}"),
        json!([{"$lua_pairs": [["true", 2], [false, 3], [true, 1]]}])
    );
    assert_eq!(
        v("return {[1.5] = 1, ['1.5'] = 2}"),
        json!([{"$lua_pairs": [["1.5", 2], [1.5, 1]]}])
    );
    assert_eq!(
        v("return {[1e100] = 1, ['1e+100'] = 2, [0.5] = 3}"),
        json!([{"$lua_pairs": [["1e+100", 2], [0.5, 3], [1e100, 1]]}])
    );
    // Two floats equal to 14 digits.
    assert_eq!(
        v("return {[2^63] = 'a', [2^63 + 2048] = 'b'}"),
        json!([{"$lua_pairs": [[9.223372036854776e18, "a"], [9.223372036854778e18, "b"]]}])
    );
    // (JSON has no infinity: as a value, as everywhere, it is the string "inf".)
    let r = v("return {[math.huge] = 1, inf = 2}");
    let mut pairs = r[0]["$lua_pairs"].as_array().expect("pairs").clone();
    pairs.sort_by_key(|p| p[1].as_i64());
    assert_eq!(pairs, vec![json!(["inf", 1]), json!(["inf", 2])]);
    // Invalid UTF-8 replaced alike, and a valid string equal to the replacement.
    let r = v("return {['\\xff'] = 1, ['\\xfe'] = 2}");
    let pairs = r[0]["$lua_pairs"].as_array().expect("pairs").clone();
    assert_eq!(pairs.len(), 2);
    assert!(pairs.iter().all(|p| p[0] == json!("\u{FFFD}")));
    let mut values: Vec<i64> = pairs.iter().map(|p| p[1].as_i64().unwrap()).collect();
    values.sort();
    assert_eq!(values, vec![1, 2]);
    assert_eq!(
        v("return {['\\xff'] = 1, ['\u{FFFD}'] = 2, z = 3}")[0]["$lua_pairs"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // A table key and the string of its tostring.
    let r = v("local k = {1} return {[k] = 'table', [tostring(k)] = 'string'}, tostring(k)");
    assert_eq!(
        r[0],
        json!({"$lua_pairs": [[r[1].clone(), "string"], [[1], "table"]]})
    );
    // Nested, and keys that are tables themselves.
    assert_eq!(
        v("return {inner = {[2] = 'i', ['2'] = 's'}}"),
        json!([{"inner": {"$lua_pairs": [["2", "s"], [2, "i"]]}}])
    );
}

#[test]
fn keys_that_do_not_collide_keep_the_object_form() {
    let _g = shared();
    let vm = TestVm::new("");
    let v = |code: &str| ok_values(&vm, code);
    assert_eq!(v("return {1, 2, n = 2}"), json!([{"1": 1, "2": 2, "n": 2}]));
    assert_eq!(
        v("return {[1] = 'a', ['01'] = 'b'}"),
        json!([{"1": "a", "01": "b"}])
    );
    assert_eq!(
        v("return {[0] = 'a', ['-0'] = 'b'}"),
        json!([{"0": "a", "-0": "b"}])
    );
    assert_eq!(v("return {[1.5] = 1, x = 2}"), json!([{"1.5": 1, "x": 2}]));
    assert_eq!(
        v("return {[true] = 1, x = 2}"),
        json!([{"true": 1, "x": 2}])
    );
    assert_eq!(
        v("return {['true'] = 1, [1] = 2}"),
        json!([{"true": 1, "1": 2}])
    );
    assert_eq!(
        v("return {[2.5] = 1, [3.5] = 2}"),
        json!([{"2.5": 1, "3.5": 2}])
    );
    assert_eq!(v("return {['\\xff'] = 1}"), json!([{"\u{FFFD}": 1}]));
    let r = v("local k = {} return {[k] = 1, x = 'table: 0x1'}, tostring(k)");
    assert_eq!(r[0].as_object().map(|o| o.len()), Some(2));
    assert_eq!(v("return {}"), json!([{}]));
    assert_eq!(v("return {[1] = 1, [3] = 3}"), json!([{"1": 1, "3": 3}]));
}

#[test]
fn the_pairs_form_is_bounded_by_max_output_too() {
    let _g = shared();
    let vm = TestVm::new(r#"{"max_output": 200}"#);
    let r = vm.exec("local t = {} for i = 1, 100 do t[i] = i t[tostring(i)] = i end return t");
    assert!(!r.success);
    assert_eq!(
        r.error,
        too_large_line(200)[..too_large_line(200).len().min(200)]
    );
    let r = vm.exec("return {[1] = 1, ['1'] = 2}");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!([{"$lua_pairs": [["1", 2], [1, 1]]}]));
}
