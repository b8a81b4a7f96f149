//! Benchmarks of bioxen_vm's interactive sessions through its exported C ABI, each measured
//! side by side with the same work on raw mlua (the same vendored Lua 5.4 build, linked
//! into this binary).
//!
//! Run with `cargo bench --bench sessions`. Options after `--`:
//! - `--markdown <path>`: also write the table as Markdown to `<path>`;
//! - `--quick`: fewer samples (a smoke run; the numbers are not meant to be quoted);
//! - `--only <section>`: run one section (`round-trip`, `memory`, `idle`);
//! - `--no-wait`: skip the wait for a quiet machine (for profiling runs only).
//!
//! Method:
//! - Before each section the machine must be quiet: other processes may use at most 20% of
//!   its CPU over a 1 s window. The harness waits up to 30 s for that, then runs anyway and
//!   says so. The CPU share other processes used while the section ran is reported with it.
//! - Round trips: both sides are warmed up, then timed samples alternate between bioxen_vm
//!   and the anchor (the order flips on every sample). A sample times a batch of round
//!   trips and divides by the batch size; median and p99 (nearest rank) are taken over the
//!   samples.
//! - Memory and idle CPU are measured in fresh child processes (this binary re-executed
//!   with `--mem-child` or `--idle-child`), 10,000 sessions (or raw states) each: RSS delta
//!   from `/proc/self/status` divided by 10,000; CPU time of the whole process from
//!   `getrusage(RUSAGE_SELF)` over 2 s of sleeping; `Threads` from `/proc/self/status`.

use bioxen_vm::ffi::{
    bioxen_vm_bytes, bioxen_vm_bytes_free, bioxen_vm_manager_read_output,
    bioxen_vm_manager_send_input,
};
use mlua::{Lua, MultiValue};
use std::ffi::{c_long, CStr, CString};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod harness;
use harness::manager::{cstring, LibManager};
use harness::*;

/// Sessions (or raw states) kept alive for the memory and idle measurements.
const SESSIONS: usize = 10_000;
/// How long the idle measurement sleeps.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// The manager's pool size in the idle measurement (the default).
const MAX_WORKERS: usize = 10;
/// `read_output`'s wait for the session to be idle.
const READ_TIMEOUT_MS: u64 = 1000;

const INCREMENT: &str = "x = x + 1\n";
const PRINT: &str = "print(x)\n";

// ---------------------------------------------------------------------------------------
// The library, through its C ABI

impl LibManager {
    /// One round trip as a C caller does it: `send_input`, then `read_output` (waiting for
    /// the session to be idle), then `bytes_free`. Returns the status of the first failing
    /// call, or the number of output bytes read (`-1` when there was no output).
    #[inline]
    fn round_trip(&self, id: &CStr, line: &[u8]) -> Result<isize, i32> {
        // SAFETY: `id` is NUL-terminated; `line` is `line.len()` readable bytes.
        let st = unsafe {
            bioxen_vm_manager_send_input(self.0, id.as_ptr(), line.as_ptr().cast(), line.len())
        };
        if st != 0 {
            return Err(st);
        }
        let mut out = bioxen_vm_bytes::empty();
        let mut has = false;
        // SAFETY: `id` is NUL-terminated; the out-parameters are valid for writes.
        let st = unsafe {
            bioxen_vm_manager_read_output(
                self.0,
                id.as_ptr(),
                READ_TIMEOUT_MS,
                0,
                &mut out,
                &mut has,
            )
        };
        if st != 0 {
            return Err(st);
        }
        let n = if has { out.len as isize } else { -1 };
        // SAFETY: `out` was filled by the library.
        unsafe { bioxen_vm_bytes_free(&mut out) };
        Ok(n)
    }

    /// `execute_interactive_command` + `bytes_free`; returns the output length.
    #[inline]
    fn command(&self, id: &CStr, line: &[u8]) -> Result<usize, i32> {
        self.command_with(id, line, READ_TIMEOUT_MS, |out| out.len)
    }
}

/// Panics with the library's message when a round trip failed or read the wrong amount.
fn expect_output(r: Result<isize, i32>, want_output: bool, what: &str) {
    match r {
        Ok(n) if (n > 0) == want_output => {}
        Ok(n) => panic!("{what}: read {n} bytes (-1: no output), expected output: {want_output}"),
        Err(st) => panic!("{what}: status {st}: {}", last_error()),
    }
}

// ---------------------------------------------------------------------------------------
// The anchor: raw mlua with `print` appending to a buffer

struct RawRepl {
    lua: Lua,
    out: Arc<Mutex<Vec<u8>>>,
}

impl RawRepl {
    fn new() -> Self {
        let lua = Lua::new();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let print = lua
            .create_function(move |_, args: MultiValue| {
                let mut buf = sink.lock().unwrap_or_else(|e| e.into_inner());
                for (i, v) in args.iter().enumerate() {
                    if i > 0 {
                        buf.push(b'\t');
                    }
                    buf.extend_from_slice(v.to_string()?.as_bytes());
                }
                buf.push(b'\n');
                Ok(())
            })
            .unwrap();
        lua.globals().set("print", print).unwrap();
        RawRepl { lua, out }
    }

    /// Executes `line`, then takes the print buffer; returns its length.
    #[inline]
    fn exec_drain(&self, line: &str) -> usize {
        self.lua.load(line).exec().expect("anchor line runs");
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner())).len()
    }

    /// As the standalone `lua` evaluates a typed line: compiles `return <line>;` first and,
    /// when that compiles, prints what it returns; otherwise runs the line as it is. Then
    /// takes the print buffer; returns its length.
    #[inline]
    fn repl_drain(&self, line: &str) -> usize {
        let line = line.trim_end_matches('\n');
        match self.lua.load(format!("return {line};")).into_function() {
            Ok(f) => {
                let values: MultiValue = f.call(()).expect("anchor line runs");
                if !values.is_empty() {
                    let print: mlua::Function = self.lua.globals().get("print").expect("print");
                    print.call::<()>(values).expect("print runs");
                }
            }
            Err(_) => self.lua.load(line).exec().expect("anchor line runs"),
        }
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner())).len()
    }
}

// ---------------------------------------------------------------------------------------
// Statistics and the paired harness

// ---------------------------------------------------------------------------------------
// Process and machine measurements

fn proc_status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
}

fn rss_kib() -> u64 {
    proc_status_field("VmRSS:")
}

fn thread_count() -> u64 {
    proc_status_field("Threads:")
}

#[repr(C)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

#[repr(C)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    rest: [c_long; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// CPU time (user + system) the whole process used so far, in nanoseconds.
fn process_cpu_ns() -> u64 {
    let mut u = Rusage {
        ru_utime: Timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        ru_stime: Timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        rest: [0; 14],
    };
    // SAFETY: RUSAGE_SELF (0) with a valid `struct rusage` to write (the Linux layout).
    let st = unsafe { getrusage(0, &mut u) };
    assert_eq!(st, 0, "getrusage failed");
    let us = |t: &Timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(&u.ru_utime) + us(&u.ru_stime)) * 1000
}

// ---------------------------------------------------------------------------------------
// Table

// ---------------------------------------------------------------------------------------
// Sections

fn round_trip_row(op: &str, lib: Stats, raw: Stats) -> Row {
    Row {
        op: op.into(),
        lib: fmt_stats(lib),
        anchor: fmt_stats(raw),
        ratio: format!("{:.2}×", lib.median / raw.median),
        target: "≤ 3 µs".into(),
        met: if lib.median <= 3_000.0 {
            Met::Yes
        } else {
            Met::No
        },
        other: String::new(),
    }
}

fn section_round_trip(cx: &Ctx) -> (Vec<Row>, String) {
    let plan = Plan {
        warmup: cx.n(3000, 300),
        samples: cx.n(4000, 400),
        batch: 8,
    };
    // The default manager (10 workers, started on demand), one session per row.
    let m = LibManager::new("{}");
    let ids = [cstring("inc"), cstring("print"), cstring("command")];
    let raws = [RawRepl::new(), RawRepl::new(), RawRepl::new()];
    for (id, raw) in ids.iter().zip(&raws) {
        m.create_session(id);
        expect_output(m.round_trip(id, b"x = 0\n"), false, "setting x");
        raw.exec_drain("x = 0");
    }
    // What a round trip reads back, checked once before timing.
    assert_eq!(
        m.command(&ids[2], PRINT.as_bytes()),
        Ok(2),
        "`print(x)` reads \"0\\n\""
    );
    assert_eq!(raws[2].exec_drain(PRINT), 2);

    let repl = RawRepl::new();
    repl.exec_drain("x = 0");
    let (lib_inc, raw_inc, repl_inc) = paired3(
        &plan,
        || {
            expect_output(
                m.round_trip(&ids[0], INCREMENT.as_bytes()),
                false,
                INCREMENT,
            )
        },
        || assert_eq!(raws[0].exec_drain(INCREMENT), 0),
        || assert_eq!(repl.repl_drain(INCREMENT), 0),
    );
    let (lib_print, raw_print) = paired(
        &plan,
        || expect_output(m.round_trip(&ids[1], PRINT.as_bytes()), true, PRINT),
        || assert!(raws[1].exec_drain(PRINT) > 0),
    );
    // Every line new (a different comment each time): nothing compiled can be reused, so
    // both sides compile `return <line>;`, fail, and compile the line.
    let fresh_repl = RawRepl::new();
    fresh_repl.exec_drain("x = 0");
    let (lib_n, raw_n) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    let (lib_fresh, raw_fresh) = paired(
        &plan,
        || {
            lib_n.set(lib_n.get() + 1);
            let line = format!("x = x + 1 -- {}\n", lib_n.get());
            expect_output(m.round_trip(&ids[0], line.as_bytes()), false, &line)
        },
        || {
            raw_n.set(raw_n.get() + 1);
            let line = format!("x = x + 1 -- {}\n", raw_n.get());
            assert_eq!(fresh_repl.repl_drain(&line), 0)
        },
    );
    let cmd_n = std::cell::Cell::new(0u64);
    let raw_cmd_n = std::cell::Cell::new(0u64);
    let cmd_repl = RawRepl::new();
    cmd_repl.exec_drain("x = 0");
    let (lib_cmd_fresh, raw_cmd_fresh) = paired(
        &plan,
        || {
            cmd_n.set(cmd_n.get() + 1);
            let line = format!("x = x + 1 -- {}", cmd_n.get());
            match m.command(&ids[2], line.as_bytes()) {
                Ok(n) => assert_eq!(n, 0, "output from {line:?}"),
                Err(st) => panic!("execute_interactive_command: status {st}: {}", last_error()),
            }
        },
        || {
            raw_cmd_n.set(raw_cmd_n.get() + 1);
            let line = format!("x = x + 1 -- {}\n", raw_cmd_n.get());
            assert_eq!(cmd_repl.repl_drain(&line), 0)
        },
    );
    let (lib_cmd, raw_cmd) = paired(
        &plan,
        || match m.command(&ids[2], PRINT.as_bytes()) {
            Ok(n) => assert!(n > 0, "no output from {PRINT:?}"),
            Err(st) => panic!("execute_interactive_command: status {st}: {}", last_error()),
        },
        || assert!(raws[2].exec_drain(PRINT) > 0),
    );
    let rows = vec![
        round_trip_row(
            "round trip `x = x + 1` (send_input + read_output + bytes_free)",
            lib_inc,
            raw_inc,
        ),
        Row {
            anchor: format!("`return <line>;` first: {}", fmt_stats(repl_inc)),
            ratio: format!("{:.2}×", lib_inc.median / repl_inc.median),
            target: "– (reported)".into(),
            met: Met::Info,
            ..round_trip_row(
                "  same, against an anchor that evaluates lines as `lua` does",
                lib_inc,
                repl_inc,
            )
        },
        round_trip_row(
            "round trip `x = x + 1 -- <n>` (a new line every time: no compiled line reused)",
            lib_fresh,
            raw_fresh,
        ),
        round_trip_row(
            "round trip `print(x)`, output read back",
            lib_print,
            raw_print,
        ),
        Row {
            target: "– (reported)".into(),
            met: Met::Info,
            ..round_trip_row(
                "  same through execute_interactive_command + bytes_free",
                lib_cmd,
                raw_cmd,
            )
        },
        round_trip_row(
            "round trip `x = x + 1 -- <n>` through execute_interactive_command (send, wait, read in one call)",
            lib_cmd_fresh,
            raw_cmd_fresh,
        ),
    ];
    let note = format!(
        "round trip: bioxen_vm_manager_send_input then bioxen_vm_manager_read_output(timeout_ms={READ_TIMEOUT_MS}, flags=0: \
         waits for the session to be idle) then bioxen_vm_bytes_free, on one session of a default manager, \
         vs raw mlua `lua.load(line).exec()` + taking the Vec that a Rust `print` appends to; \
         the session's output is read back (its length checked) on every round trip; \
         the second anchor does what the standalone `lua` (and the session) does with a typed line: it compiles `return <line>;` \
         first (a syntax error for an assignment) and only then the line itself; \
         a session keeps the compiled form of lines it has seen (as `execute` keeps compiled chunks), \
         so repeated lines skip compilation; the `-- <n>` row makes every line new, against the \
         lua-style anchor on the same new lines; execute_interactive_command evaluates the input \
         on the calling thread without waking a worker (it knows a reader waits); \
         {} samples each, batch {}",
        plan.samples, plan.batch
    );
    (rows, note)
}

/// The child side of the memory measurement: creates `n` sessions (or raw states) of
/// `kind`, prints the RSS delta, and exits without freeing them.
fn mem_child(kind: &str, n: usize) -> ! {
    let m = LibManager::new("{}");
    let ids: Vec<CString> = (0..n).map(|i| cstring(&format!("s{i}"))).collect();
    let mut states: Vec<Lua> = Vec::with_capacity(n);
    // One session (or state) first, so that one-time set-up is not counted per session.
    match kind {
        "lib" => m.create_session(&cstring("warm-up")),
        "raw" => states.push(Lua::new()),
        other => panic!("unknown --mem-child kind {other:?}"),
    }
    let before = rss_kib();
    let t = Instant::now();
    for id in &ids {
        if kind == "lib" {
            m.create_session(id);
        } else {
            states.push(Lua::new());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let after = rss_kib();
    println!("MEM {} {n} {secs:.6}", after.saturating_sub(before));
    std::process::exit(0);
}

/// Runs the current executable with `args` and returns its standard output.
fn run_child(args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("current executable");
    let out = Command::new(exe)
        .args(args)
        .output()
        .expect("starting a child");
    assert!(out.status.success(), "child {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers of the line of `text` that starts with `tag`.
fn fields(text: &str, tag: &str) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("no {tag:?} line in a child's output: {text}"));
    line.split_whitespace()
        .skip(1)
        .map(|x| x.parse().expect("a number"))
        .collect()
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
            let f = fields(
                &run_child(&["--mem-child", kind, &SESSIONS.to_string()]),
                "MEM ",
            );
            let (kib, us) = (f[0] / f[1], f[2] / f[1] * 1e6);
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
        op: format!("memory per idle session ({SESSIONS} alive, RSS)"),
        lib: format!("{l:.1} KiB"),
        anchor: format!("`Lua::new()`: {r:.1} KiB"),
        ratio: format!("{:.2}×", l / r),
        target: "≤ 40 KiB".into(),
        met: if l <= 40.0 { Met::Yes } else { Met::No },
        other: String::new(),
    };
    let note = format!(
        "memory: fresh child process per measurement, VmRSS delta / {SESSIONS}, median of {rounds} children per side; \
         bioxen_vm_manager_create_interactive_vm(NULL options, not attached) on one default manager vs Lua::new(); \
         creating {SESSIONS} took {:.1} µs per session (bioxen_vm) and {:.1} µs per state (raw)",
        median(&lib_t),
        median(&raw_t)
    );
    (vec![row], note)
}

/// The child side of the idle measurement: thread counts before and after creating `n`
/// sessions (or raw states), CPU used over `IDLE_WINDOW` of sleeping; for `lib`, then the
/// same after round trips on ten sessions (the pool's workers started and idle).
fn idle_child(kind: &str, n: usize) -> ! {
    let threads_before = thread_count();
    let m = LibManager::new(&format!(r#"{{"max_workers": {MAX_WORKERS}}}"#));
    let ids: Vec<CString> = (0..n).map(|i| cstring(&format!("s{i}"))).collect();
    let mut states: Vec<Lua> = Vec::with_capacity(n);
    for id in &ids {
        match kind {
            "lib" => m.create_session(id),
            "raw" => states.push(Lua::new()),
            other => panic!("unknown --idle-child kind {other:?}"),
        }
    }
    let threads_after = thread_count();
    let idle = |label: &str| {
        let c0 = process_cpu_ns();
        std::thread::sleep(IDLE_WINDOW);
        let used = process_cpu_ns().saturating_sub(c0);
        println!(
            "{label} {threads_before} {threads_after} {} {used}",
            thread_count()
        );
    };
    idle("IDLE");
    if kind == "lib" {
        for id in ids.iter().step_by((n / 10).max(1)) {
            expect_output(m.round_trip(id, b"x = 1\n"), false, "x = 1");
            expect_output(m.round_trip(id, PRINT.as_bytes()), true, PRINT);
        }
        idle("USED");
    }
    std::process::exit(0);
}

fn section_idle(_cx: &Ctx) -> (Vec<Row>, String) {
    let n = SESSIONS.to_string();
    let lib_out = run_child(&["--idle-child", "lib", &n]);
    let (lib, used) = (fields(&lib_out, "IDLE "), fields(&lib_out, "USED "));
    let raw = fields(&run_child(&["--idle-child", "raw", &n]), "IDLE ");
    let ms = |f: &[f64]| f[3] / 1e6;
    let threads = |f: &[f64]| format!("threads {} → {}", f[0], f[1]);
    let cpu_met = |f: &[f64]| ms(f) < 5.0;
    let rows = vec![
        Row {
            op: format!("idle CPU, {SESSIONS} sessions, {} s", IDLE_WINDOW.as_secs()),
            lib: format!("{:.3} ms CPU", ms(&lib)),
            anchor: format!("{:.3} ms CPU", ms(&raw)),
            ratio: "–".into(),
            target: "< 5 ms".into(),
            met: if cpu_met(&lib) { Met::Yes } else { Met::No },
            other: String::new(),
        },
        Row {
            op: format!("threads before → after creating {SESSIONS} sessions"),
            lib: threads(&lib),
            anchor: threads(&raw),
            ratio: "–".into(),
            target: "no thread per session".into(),
            met: if lib[1] <= lib[0] + 2.0 {
                Met::Yes
            } else {
                Met::No
            },
            other: String::new(),
        },
        Row {
            op: "  same, after round trips on 10 of them (pool started)".into(),
            lib: format!("{:.3} ms CPU, {} threads", ms(&used), used[2]),
            anchor: "–".into(),
            ratio: "–".into(),
            target: format!("< 5 ms, ≤ {} workers", MAX_WORKERS),
            met: if cpu_met(&used) && used[2] <= used[0] + MAX_WORKERS as f64 + 2.0 {
                Met::Yes
            } else {
                Met::No
            },
            other: String::new(),
        },
    ];
    let note = format!(
        "idle: fresh child process per side; Threads from /proc/self/status before creating the manager and after creating \
         {SESSIONS} sessions (max_workers={MAX_WORKERS}) or {SESSIONS} Lua::new() states; CPU = getrusage(RUSAGE_SELF) \
         user+system over {} s of sleeping right after creation; for the last row the same child then \
         ran 2 round trips on every {}th session and slept {} s again",
        IDLE_WINDOW.as_secs(),
        SESSIONS / 10,
        IDLE_WINDOW.as_secs()
    );
    (rows, note)
}

// ---------------------------------------------------------------------------------------
// Main

const SECTIONS: [(&str, Section); 3] = [
    ("round-trip", section_round_trip),
    ("memory", section_memory),
    ("idle", section_idle),
];

fn main() {
    let Opts {
        markdown,
        only,
        quick,
        no_wait,
    } = parse_opts(&SECTIONS, |a| {
        if let [flag, kind, n, ..] = a {
            let n = || {
                n.parse()
                    .unwrap_or_else(|_| usage_exit("the session count must be a number"))
            };
            match flag.as_str() {
                "--mem-child" => mem_child(kind, n()),
                "--idle-child" => idle_child(kind, n()),
                _ => {}
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
        "bioxen_vm session benchmarks ({}) — {started}, {nproc} CPUs, {}",
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
        "Per-operation figures are the median with the p99 in brackets. Targets are judged on the median. \
         \"other CPU\" is the share of all cores other processes used while the section ran \
         (the bench's own child processes are not counted as other).\n",
    );
    report(&head, foot, &run, &HEADERS, markdown.as_deref());
}
