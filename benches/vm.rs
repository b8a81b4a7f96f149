//! Benchmarks of bioxen_vm through its exported C ABI, each measured side by side with the
//! same operation on raw mlua (the same vendored Lua 5.4 build, linked into this binary).
//!
//! Run with `cargo bench --bench vm`. Options after `--`:
//! - `--markdown <path>`: also write the table as Markdown to `<path>`;
//! - `--quick`: fewer samples (a smoke run; the numbers are not meant to be quoted);
//! - `--only <section>`: run one section (`create`, `exec-new`, `exec-cached`, `fib`,
//!   `memory`, `watchdog`, `interrupt`, `threads`), e.g. under a profiler;
//! - `--no-wait`: skip the wait for a quiet machine (for profiling runs only).
//!
//! Method:
//! - Before each section the machine must be quiet: other processes may use at most 20% of
//!   its CPU over a 1 s window. The harness waits up to 30 s for that, then runs anyway and
//!   says so. The CPU share other processes used while the section ran is reported with it.
//! - Both sides are warmed up, then timed samples alternate between bioxen_vm and the anchor
//!   (the order flips on every sample), so load from elsewhere hits both alike.
//! - A sample times a batch of operations and divides by the batch size; median and p99
//!   (nearest rank) are taken over the samples.
//! - Memory is measured in fresh child processes (this binary re-executed with
//!   `--mem-child`): RSS delta from `/proc/self/status` over 10,000 live VMs, divided by
//!   10,000.

use bioxen_vm::ffi::{
    bioxen_vm_execute, bioxen_vm_execute_into, bioxen_vm_free, bioxen_vm_new, bioxen_vm_result,
    bioxen_vm_result_buffer, bioxen_vm_result_buffer_free, bioxen_vm_result_buffer_new,
    bioxen_vm_result_free,
};
use mlua::{ffi, Function, Lua};
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::Command;
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

mod harness;
use harness::*;

/// VMs kept alive for the memory measurement.
const MEM_VMS: usize = 10_000;
/// Status code of a timed-out execution (`BIOXEN_VM_STATUS_TIMEOUT`).
const STATUS_TIMEOUT: i32 = 6;

/// fib is defined once per VM as a global whose recursion goes through a local (an upvalue).
/// With `function fib(n) ... fib(n - 1) ...` every recursive call looks up the global
/// `fib`, and that lookup's cost depends on the state (most likely because Lua 5.4 seeds
/// string hashing per state, so whether `fib` sits first in its hash chain varies). On raw mlua
/// states alone, that moved fib(27) between 13.1 and 15.2 ms from one state to the next,
/// a lottery that has nothing to do with the library; the local recursion is within ±1%.
const FIB_DEF: &str =
    "local function f(n) if n < 2 then return n end return f(n - 1) + f(n - 2) end fib = f";
const FIB_CALL: &str = "return fib(27)";
const FIB_RESULT: i64 = 196_418;
const RUNAWAY: &str = "while true do end";

// ---------------------------------------------------------------------------------------
// The library, through its C ABI

/// A standalone VM created with `bioxen_vm_new(NULL, ..)` and freed with `bioxen_vm_free`.
struct LibVm(u64);

impl LibVm {
    fn new() -> Self {
        let mut h = 0u64;
        // SAFETY: NULL options are allowed; `h` is valid for writes.
        let st = unsafe { bioxen_vm_new(std::ptr::null(), &mut h) };
        assert_eq!(st, 0, "bioxen_vm_new failed: {}", last_error());
        LibVm(h)
    }

    /// `bioxen_vm_execute` + `bioxen_vm_result_free`, as a C caller does it. Returns the
    /// status, or -1 when the call succeeded but the Lua code raised an error.
    #[inline]
    fn exec(&self, code: &[u8], timeout_ms: u64) -> i32 {
        let mut r = bioxen_vm_result::empty();
        // SAFETY: `code` is `code.len()` readable bytes; NULL args; `r` is valid for writes.
        let st = unsafe {
            bioxen_vm_execute(
                self.0,
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                timeout_ms,
                &mut r,
            )
        };
        if st != 0 {
            return st;
        }
        let ok = r.success;
        // SAFETY: `r` was filled by the library.
        unsafe { bioxen_vm_result_free(&mut r) };
        if ok {
            0
        } else {
            -1
        }
    }

    /// `bioxen_vm_execute_into` with a reused buffer; whether the code succeeded.
    #[inline]
    fn exec_into(&self, code: &[u8], buffer: *mut bioxen_vm_result_buffer) -> bool {
        let mut r: *const bioxen_vm_result = std::ptr::null();
        // SAFETY: `code` is `code.len()` readable bytes; `buffer` is live and used by this
        // thread only; `r` is valid for writes.
        let st = unsafe {
            bioxen_vm_execute_into(
                self.0,
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                0,
                buffer,
                &mut r,
            )
        };
        // SAFETY: on OK, `r` points into the live buffer.
        st == 0 && unsafe { (*r).success }
    }

    fn exec_ok(&self, code: &str, timeout_ms: u64) {
        let st = self.exec(code.as_bytes(), timeout_ms);
        assert_eq!(st, 0, "executing {code:?} failed: {}", last_error());
    }
}

impl Drop for LibVm {
    fn drop(&mut self) {
        let st = bioxen_vm_free(self.0);
        assert_eq!(st, 0, "bioxen_vm_free failed: {}", last_error());
    }
}

// ---------------------------------------------------------------------------------------
// Statistics and the paired harness

// ---------------------------------------------------------------------------------------
// Machine load

// ---------------------------------------------------------------------------------------
// Table

// ---------------------------------------------------------------------------------------
// Sections

fn raw_lua_with_fib() -> (Lua, Function) {
    let lua = Lua::new();
    lua.load(FIB_DEF).exec().unwrap();
    let f = lua.load(FIB_CALL).into_function().unwrap();
    (lua, f)
}

fn lib_vm_with_fib() -> LibVm {
    let vm = LibVm::new();
    vm.exec_ok(FIB_DEF, 0);
    vm
}

fn section_create(cx: &Ctx) -> (Vec<Row>, String) {
    let plan = Plan {
        warmup: cx.n(300, 50),
        samples: cx.n(4000, 400),
        batch: 1,
    };
    let (lib, raw) = paired(
        &plan,
        || {
            let mut h = 0u64;
            // SAFETY: NULL options are allowed; `h` is valid for writes.
            let st = unsafe { bioxen_vm_new(std::ptr::null(), &mut h) };
            assert_eq!(st, 0);
            assert_eq!(bioxen_vm_free(black_box(h)), 0);
        },
        || drop(black_box(Lua::new())),
    );
    let row = Row {
        op: "VM create + free".into(),
        lib: fmt_stats(lib),
        anchor: fmt_stats(raw),
        ratio: format!("{:.2}×", lib.median / raw.median),
        target: "≤ 30 µs".into(),
        met: if lib.median <= 30_000.0 {
            Met::Yes
        } else {
            Met::No
        },
        other: String::new(),
    };
    let note = format!(
        "create+free: bioxen_vm_new(NULL)+bioxen_vm_free vs Lua::new()+drop; {} samples each, batch {}",
        plan.samples, plan.batch
    );
    (vec![row], note)
}

fn section_exec_new(cx: &Ctx) -> (Vec<Row>, String) {
    let plan = Plan {
        warmup: cx.n(2000, 200),
        samples: cx.n(6000, 600),
        batch: 4,
    };
    let per_side = plan.warmup + plan.samples * plan.batch;
    // Distinct code for every call on each side, generated before timing starts.
    let gen = |tag: &str| -> Vec<Vec<u8>> {
        (0..per_side)
            .map(|i| format!("return 2+2 --{tag}{i}").into_bytes())
            .collect()
    };
    let (lib_codes, eval_codes, call_codes) = (gen("b"), gen("e"), gen("c"));
    let vm = LibVm::new();
    let (eval_lua, call_lua) = (Lua::new(), Lua::new());
    let (mut i, mut j, mut k) = (0usize, 0usize, 0usize);
    let (lib, eval, call) = paired3(
        &plan,
        || {
            let st = vm.exec(&lib_codes[i], 0);
            i += 1;
            assert_eq!(st, 0);
        },
        || {
            let v: i64 = eval_lua.load(&eval_codes[j][..]).eval().unwrap();
            j += 1;
            assert_eq!(v, 4);
        },
        || {
            let v: i64 = call_lua.load(&call_codes[k][..]).call(()).unwrap();
            k += 1;
            assert_eq!(v, 4);
        },
    );
    let ratio = lib.median / eval.median;
    let main = Row {
        op: "execute `return 2+2 --<n>` (new code each call)".into(),
        lib: fmt_stats(lib),
        anchor: format!("`eval`: {}", fmt_stats(eval)),
        ratio: format!("{ratio:.2}×"),
        target: "ratio ≤ 1.2×".into(),
        met: if ratio <= 1.2 { Met::Yes } else { Met::No },
        other: String::new(),
    };
    let strict = Row {
        op: "  same, against a single-compile anchor".into(),
        lib: fmt_stats(lib),
        anchor: format!("`call`: {}", fmt_stats(call)),
        ratio: format!("{:.2}×", lib.median / call.median),
        target: "– (reported)".into(),
        met: Met::Info,
        other: String::new(),
    };
    let note = format!(
        "new code: bioxen_vm_execute+bioxen_vm_result_free vs lua.load(code).eval::<i64>() (which first tries to compile \"return \" + code, \
         so it compiles twice here and builds a syntax error) and vs lua.load(code).call::<i64>(()) (one compile, one call: the library's own work); \
         each on its own state; {} samples each, batch {}",
        plan.samples, plan.batch
    );
    (vec![main, strict], note)
}

fn section_exec_cached(cx: &Ctx) -> (Vec<Row>, String) {
    let plan = Plan {
        warmup: cx.n(20_000, 2000),
        samples: cx.n(6000, 600),
        batch: 32,
    };
    let code = b"return 2+2";
    let vm = LibVm::new();
    let lua = Lua::new();
    let f = lua.load(&code[..]).into_function().unwrap();
    let (lib, raw) = paired(
        &plan,
        || assert_eq!(vm.exec(black_box(code), 0), 0),
        || assert_eq!(f.call::<i64>(()).unwrap(), 4),
    );
    let mut buffer: *mut bioxen_vm_result_buffer = std::ptr::null_mut();
    // SAFETY: `buffer` is valid for writes.
    assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut buffer) }, 0);
    let (into, raw_into) = paired(
        &plan,
        || assert!(vm.exec_into(black_box(code), buffer)),
        || assert_eq!(f.call::<i64>(()).unwrap(), 4),
    );
    // SAFETY: made above, not in use.
    assert_eq!(unsafe { bioxen_vm_result_buffer_free(buffer) }, 0);
    let row = |op: &str, lib: Stats, raw: Stats| Row {
        op: op.into(),
        lib: fmt_stats(lib),
        anchor: fmt_stats(raw),
        ratio: format!("{:.2}×", lib.median / raw.median),
        target: "≤ 150 ns".into(),
        met: if lib.median <= 150.0 {
            Met::Yes
        } else {
            Met::No
        },
        other: String::new(),
    };
    let note = format!(
        "cached chunk: the same code each call (chunk cache hit) through bioxen_vm_execute + bioxen_vm_result_free (a new result each call), and through \
         bioxen_vm_execute_into (one result buffer reused for every call), each paired with a pre-compiled Function::call; {} samples each, batch {}",
        plan.samples, plan.batch
    );
    (
        vec![
            row("execute cached chunk `return 2+2`", lib, raw),
            row("execute_into cached chunk `return 2+2`", into, raw_into),
        ],
        note,
    )
}

fn section_fib(cx: &Ctx) -> (Vec<Row>, String) {
    // Each side rotates over several states, created in alternation. Where a state lands in
    // memory still moves this loop by up to about 10%: creating all raw states after all
    // library VMs made the raw side 10% slower, interleaving gives both sides alike layouts.
    let states = cx.n(8, 2);
    let plan = Plan {
        warmup: states,
        samples: cx.n(48, 6),
        batch: 1,
    };
    let mut vms: Vec<LibVm> = Vec::with_capacity(states);
    let mut raws: Vec<(Lua, Function)> = Vec::with_capacity(states);
    for _ in 0..states {
        vms.push(lib_vm_with_fib());
        raws.push(raw_lua_with_fib());
    }
    let (mut i, mut j) = (0usize, 0usize);
    let (lib, raw) = paired(
        &plan,
        || {
            assert_eq!(vms[i % states].exec(FIB_CALL.as_bytes(), 0), 0);
            i += 1;
        },
        || {
            assert_eq!(raws[j % states].1.call::<i64>(()).unwrap(), FIB_RESULT);
            j += 1;
        },
    );
    let row = Row {
        op: "fib(27), recursive".into(),
        lib: fmt_stats(lib),
        anchor: fmt_stats(raw),
        ratio: format!("{:.2}×", lib.median / raw.median),
        target: "– (reported)".into(),
        met: Met::Info,
        other: String::new(),
    };
    let note = format!(
        "fib: `return fib(27)` after defining fib once (a global; recursion through a local, see the source); bioxen_vm_execute vs pre-compiled Function::call; \
         {states} VMs / states per side, created in alternation and used in turn; {} samples each",
        plan.samples
    );
    (vec![row], note)
}

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child side of the memory measurement: creates `n` VMs of `kind`, prints the RSS
/// delta, and exits without freeing them.
fn mem_child(kind: &str, n: usize) -> ! {
    let mut handles: Vec<u64> = Vec::with_capacity(n);
    let mut states: Vec<Lua> = Vec::with_capacity(n);
    // One create and free first, so that one-time set-up is not counted per VM.
    match kind {
        "lib" => drop(LibVm::new()),
        "raw" => drop(Lua::new()),
        other => panic!("unknown --mem-child kind {other:?}"),
    }
    let before = vm_rss_kib();
    let t = Instant::now();
    for _ in 0..n {
        if kind == "lib" {
            let mut h = 0u64;
            // SAFETY: NULL options are allowed; `h` is valid for writes.
            let st = unsafe { bioxen_vm_new(std::ptr::null(), &mut h) };
            assert_eq!(st, 0, "bioxen_vm_new failed: {}", last_error());
            handles.push(h);
        } else {
            states.push(Lua::new());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let after = vm_rss_kib();
    println!("MEM {} {n} {secs:.6}", after.saturating_sub(before));
    std::process::exit(0);
}

/// Runs one memory child and returns (KiB per VM, µs per creation).
fn mem_run(kind: &str, n: usize) -> (f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--mem-child", kind, &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "memory child failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("MEM ")).unwrap();
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    (f[0] / f[1], f[2] / f[1] * 1e6)
}

fn section_memory(cx: &Ctx) -> (Vec<Row>, String) {
    let rounds = cx.n(3, 1);
    let (mut lib, mut raw, mut lib_t, mut raw_t) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            ["lib", "raw"]
        } else {
            ["raw", "lib"]
        };
        for kind in order {
            let (kib, us) = mem_run(kind, MEM_VMS);
            if kind == "lib" {
                lib.push(kib);
                lib_t.push(us);
            } else {
                raw.push(kib);
                raw_t.push(us);
            }
        }
    }
    let (l, r) = (median(&lib), median(&raw));
    let row = Row {
        op: format!("memory per idle VM ({MEM_VMS} alive, RSS)"),
        lib: format!("{l:.1} KiB"),
        anchor: format!("{r:.1} KiB"),
        ratio: format!("{:.2}×", l / r),
        target: "≤ 30 KiB".into(),
        met: if l <= 30.0 { Met::Yes } else { Met::No },
        other: String::new(),
    };
    let note = format!(
        "memory: fresh child process per measurement, VmRSS delta / {MEM_VMS}, median of {rounds} children per side; creating {MEM_VMS} took {:.1} µs per VM (bioxen_vm) and {:.1} µs per state (raw)",
        median(&lib_t),
        median(&raw_t)
    );
    (vec![row], note)
}

fn section_watchdog(cx: &Ctx) -> (Vec<Row>, String) {
    let plan = Plan {
        warmup: 3,
        samples: cx.n(60, 6),
        batch: 1,
    };
    let vm = lib_vm_with_fib();
    let (with, without) = paired(
        &plan,
        || assert_eq!(vm.exec(FIB_CALL.as_bytes(), 60_000), 0),
        || assert_eq!(vm.exec(FIB_CALL.as_bytes(), 0), 0),
    );
    let overhead = with.median / without.median - 1.0;
    let row = Row {
        op: "watchdog overhead: fib(27) with timeout_ms=60000 (never fires)".into(),
        lib: fmt_stats(with),
        anchor: format!("no timeout, same VM: {}", fmt_stats(without)),
        ratio: format!("{:+.2}%", overhead * 100.0),
        target: "≤ 2%".into(),
        met: if overhead <= 0.02 { Met::Yes } else { Met::No },
        other: String::new(),
    };
    let note = format!(
        "watchdog: both columns are bioxen_vm on one VM, alternating; {} samples each",
        plan.samples
    );
    (vec![row], note)
}

/// A `lua_State` pointer handed to the raw watchdog thread.
struct StatePtr(*mut ffi::lua_State);
// SAFETY: the pointer is only used with `lua_sethook` while the owning thread runs the state.
unsafe impl Send for StatePtr {}

unsafe extern "C-unwind" fn raw_stop_hook(l: *mut ffi::lua_State, _ar: *mut ffi::lua_Debug) {
    ffi::lua_sethook(l, None, 0, 0);
    ffi::lua_pushstring(l, c"timeout".as_ptr());
    ffi::lua_error(l);
}

fn section_interrupt(cx: &Ctx) -> (Vec<Row>, String) {
    let runs = cx.n(200, 20);
    let timeout = Duration::from_millis(10);
    let vm = LibVm::new();
    // Anchor: raw mlua with the minimal watchdog (one thread that sleeps until the deadline,
    // then arms a count hook with lua_sethook that raises an error).
    let lua = Lua::new();
    let f = lua.load(RUNAWAY).into_function().unwrap();
    let mut main = std::ptr::null_mut();
    // SAFETY: only records the state pointer that mlua runs functions on.
    unsafe { lua.exec_raw::<()>((), |l| main = l) }.unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, StatePtr)>();
    let dog = std::thread::spawn(move || {
        while let Ok((deadline, p)) = rx.recv() {
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            }
            // SAFETY: the owning thread is inside the runaway call, which only returns after
            // this hook fires.
            unsafe { ffi::lua_sethook(p.0, Some(raw_stop_hook), ffi::LUA_MASKCOUNT, 1) };
        }
    });
    let lib_run = || {
        let t = Instant::now();
        let st = vm.exec(RUNAWAY.as_bytes(), 10);
        let el = t.elapsed();
        assert_eq!(st, STATUS_TIMEOUT, "expected TIMEOUT: {}", last_error());
        el.saturating_sub(timeout).as_nanos() as f64
    };
    let raw_run = || {
        let t = Instant::now();
        tx.send((t + timeout, StatePtr(main))).unwrap();
        let r = f.call::<()>(());
        let el = t.elapsed();
        assert!(r.is_err());
        el.saturating_sub(timeout).as_nanos() as f64
    };
    lib_run();
    raw_run();
    let (mut ls, mut rs) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        if i % 2 == 0 {
            ls.push(lib_run());
            rs.push(raw_run());
        } else {
            rs.push(raw_run());
            ls.push(lib_run());
        }
    }
    drop(tx);
    dog.join().unwrap();
    let (lib, raw) = (stats(ls), stats(rs));
    let row = Row {
        op: "interrupt latency: `while true do end`, timeout_ms=10 (return time − 10 ms)".into(),
        lib: fmt_stats(lib),
        anchor: fmt_stats(raw),
        ratio: format!("{:.2}× (p99)", lib.p99 / raw.p99),
        target: "p99 ≤ 1 ms".into(),
        met: if lib.p99 <= 1e6 { Met::Yes } else { Met::No },
        other: String::new(),
    };
    let note = format!(
        "interrupt: {runs} runs each, alternating; anchor = raw mlua + one watchdog thread that sleeps until the deadline and arms a count hook with lua_sethook"
    );
    (vec![row], note)
}

/// Seconds for `calls` fib(27) calls alternating between two VMs on one thread, and for
/// `calls / 2` calls on each of two threads with one VM each.
fn one_vs_two<F: Fn(usize) + Sync>(calls: usize, run: F) -> (f64, f64) {
    let t = Instant::now();
    for i in 0..calls {
        run(i % 2);
    }
    let one = t.elapsed().as_secs_f64();
    let barrier = Barrier::new(3);
    let two = std::thread::scope(|s| {
        for k in 0..2 {
            let (barrier, run) = (&barrier, &run);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..calls / 2 {
                    run(k);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
    .as_secs_f64();
    (one, two)
}

fn section_threads(cx: &Ctx) -> (Vec<Row>, String) {
    let rounds = cx.n(9, 1);
    let calls = cx.n(40, 4);
    let vms = [lib_vm_with_fib(), lib_vm_with_fib()];
    let raws = [raw_lua_with_fib(), raw_lua_with_fib()];
    let lib_run = |k: usize| assert_eq!(vms[k].exec(FIB_CALL.as_bytes(), 0), 0);
    let raw_run = |k: usize| assert_eq!(raws[k].1.call::<i64>(()).unwrap(), FIB_RESULT);
    // Warm-up.
    for k in 0..2 {
        lib_run(k);
        raw_run(k);
    }
    let (mut lib, mut raw) = (vec![], vec![]);
    let mut ops = [vec![], vec![], vec![], vec![]];
    let mut measure = |side: usize| {
        let (one, two) = if side == 0 {
            one_vs_two(calls, lib_run)
        } else {
            one_vs_two(calls, raw_run)
        };
        if side == 0 { &mut lib } else { &mut raw }.push(one / two);
        ops[2 * side].push(calls as f64 / one);
        ops[2 * side + 1].push(calls as f64 / two);
    };
    for r in 0..rounds {
        let first = r % 2;
        measure(first);
        measure(1 - first);
    }
    let (l, r) = (median(&lib), median(&raw));
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("[{lo:.2}..{hi:.2}]")
    };
    let row = Row {
        op: "2 threads × 1 VM vs 1 thread alternating 2 VMs, fib(27) throughput".into(),
        lib: format!(
            "{l:.2}× {} ({:.0} vs {:.0} calls/s)",
            range(&lib),
            median(&ops[1]),
            median(&ops[0])
        ),
        anchor: format!(
            "{r:.2}× {} ({:.0} vs {:.0} calls/s)",
            range(&raw),
            median(&ops[3]),
            median(&ops[2])
        ),
        ratio: format!("{:.2}×", l / r),
        target: "≥ 1.9×".into(),
        met: if l >= 1.9 { Met::Yes } else { Met::No },
        other: String::new(),
    };
    let note = format!(
        "threads: {calls} calls on 1 thread vs {} calls on each of 2 threads; median speed-up of {rounds} rounds, [min..max] of the rounds",
        calls / 2
    );
    (vec![row], note)
}

// ---------------------------------------------------------------------------------------
// Main

const SECTIONS: [(&str, Section); 8] = [
    ("create", section_create),
    ("exec-new", section_exec_new),
    ("exec-cached", section_exec_cached),
    ("fib", section_fib),
    ("memory", section_memory),
    ("watchdog", section_watchdog),
    ("interrupt", section_interrupt),
    ("threads", section_threads),
];

fn main() {
    let Opts {
        markdown,
        only,
        quick,
        no_wait,
    } = parse_opts(&SECTIONS, |a| {
        if let [flag, kind, n, ..] = a {
            if flag == "--mem-child" {
                mem_child(kind, n.parse().unwrap_or(MEM_VMS));
            }
        }
    });

    let cx = Ctx { quick };
    let started = utc_now();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_start = loadavg();
    let run = run_sections(&cx, &SECTIONS, only.as_deref(), no_wait);

    let mut head = String::new();
    let _ = writeln!(
        head,
        "bioxen_vm benchmarks ({}) — {started}, {nproc} CPUs, {}",
        if quick { "QUICK run" } else { "full run" },
        cpu_model()
    );
    let _ = writeln!(
        head,
        "load average at start: {load_start}; highest other-process CPU share in a section: {:.1}% of the machine; sections started on a busy machine: {}",
        run.max_other * 100.0,
        run.busy_text(no_wait)
    );
    let foot = String::from(
        "Per-operation figures are the median with the p99 in brackets. Targets are judged on the median unless they say p99. \
         \"other CPU\" is the share of all cores other processes used while the section ran.\n",
    );
    report(&head, foot, &run, &HEADERS, markdown.as_deref());
}
