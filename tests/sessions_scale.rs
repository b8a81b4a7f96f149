//! Interactive sessions at scale, through the C ABI: 10,000 idle sessions on one manager
//! cost no thread and no CPU, and a session flooding output stays bounded.
//!
//! The tests in this file measure the whole process (thread count, CPU time, RSS), so they
//! run one at a time (see `serial`).

mod common;
use bioxen_vm::ffi::*;
use common::*;
use std::ffi::c_long;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SESSIONS: usize = 10_000;
const MAX_WORKERS: usize = 4;

/// Tests here measure process-wide figures: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn threads() -> u64 {
    status_field("Threads:")
}

fn rss_kib() -> u64 {
    status_field("VmRSS:")
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

/// CPU time (user + system) used by the whole process so far.
fn process_cpu() -> Duration {
    let mut u: Rusage = unsafe { std::mem::zeroed() };
    // RUSAGE_SELF = 0: all threads of the process.
    assert_eq!(unsafe { getrusage(0, &mut u) }, 0);
    let us = |t: &Timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(us(&u.ru_utime) + us(&u.ru_stime))
}

struct Mgr(u64);

impl Mgr {
    fn new(options: &str) -> Mgr {
        let mut m = 0;
        let o = c(options);
        assert_eq!(
            unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut m) },
            OK,
            "{}",
            last_error()
        );
        Mgr(m)
    }

    fn interactive(&self, id: &str, options: Option<&str>) {
        let id = c(id);
        let o = options.map(c);
        let st = unsafe {
            bioxen_vm_manager_create_interactive_vm(
                self.0,
                id.as_ptr(),
                o.as_ref().map_or(null(), |o| o.as_ptr()),
                false,
            )
        };
        assert_eq!(st, OK, "{}", last_error());
    }

    fn send(&self, id: &str, input: &str) {
        let id = c(id);
        let st = unsafe {
            bioxen_vm_manager_send_input(self.0, id.as_ptr(), input.as_ptr().cast(), input.len())
        };
        assert_eq!(st, OK, "{}", last_error());
    }

    /// Waits (up to `timeout_ms`) for the session to be idle and takes its output.
    fn read(&self, id: &str, timeout_ms: u64) -> Option<Vec<u8>> {
        let id = c(id);
        let mut b = bioxen_vm_bytes {
            data: null_mut(),
            len: 0,
        };
        let mut has = false;
        let st = unsafe {
            bioxen_vm_manager_read_output(self.0, id.as_ptr(), timeout_ms, 0, &mut b, &mut has)
        };
        assert_eq!(st, OK, "{}", last_error());
        let v = bytes_of(&b);
        unsafe { bioxen_vm_bytes_free(&mut b) };
        has.then_some(v)
    }

    fn sessions(&self) -> serde_json::Value {
        let mut b = bioxen_vm_bytes {
            data: null_mut(),
            len: 0,
        };
        assert_eq!(
            unsafe { bioxen_vm_manager_list_sessions(self.0, &mut b) },
            OK,
            "{}",
            last_error()
        );
        take_json(b)
    }
}

impl Drop for Mgr {
    fn drop(&mut self) {
        bioxen_vm_manager_free(self.0);
    }
}

fn round_trip(m: &Mgr, id: &str) {
    m.send(id, "x = (x or 0) + 41\n");
    assert_eq!(m.read(id, 5000), None, "an assignment prints nothing");
    m.send(id, "print(x + 1)\n");
    assert_eq!(m.read(id, 5000).as_deref(), Some(&b"42\n"[..]), "{id}");
    m.send(id, "x\n");
    assert_eq!(m.read(id, 5000).as_deref(), Some(&b"41\n"[..]), "{id}");
}

#[test]
fn ten_thousand_idle_sessions_cost_no_thread_and_no_cpu() {
    let _serial = serial();
    let m = Mgr::new(&format!(r#"{{"max_workers": {MAX_WORKERS}}}"#));
    let threads_before = threads();
    let t = Instant::now();
    for i in 0..SESSIONS {
        m.interactive(&format!("s{i}"), None);
    }
    let created_in = t.elapsed();
    let threads_created = threads();
    assert_eq!(m.sessions().as_object().unwrap().len(), SESSIONS);

    // Idle for a second, then measure the next second.
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = process_cpu().saturating_sub(cpu0);
    let idle_wall = t0.elapsed();
    let threads_idle = threads();

    // Both ends of the range still answer.
    round_trip(&m, "s0");
    round_trip(&m, &format!("s{}", SESSIONS - 1));
    let threads_used = threads();

    eprintln!(
        "{SESSIONS} sessions created in {created_in:?}; threads {threads_before} before, \
         {threads_created} after creating, {threads_idle} after idling, {threads_used} after \
         round trips; CPU while idle: {idle_cpu:?} over {idle_wall:?}"
    );
    let allowed = threads_before + MAX_WORKERS as u64 + 3;
    for (when, n) in [
        ("after creating the sessions", threads_created),
        ("after idling", threads_idle),
        ("after round trips", threads_used),
    ] {
        assert!(
            n <= allowed,
            "{n} threads {when}, {threads_before} before: the thread count grows with the sessions"
        );
    }
    assert!(
        idle_cpu < Duration::from_millis(50),
        "{SESSIONS} idle sessions used {idle_cpu:?} of CPU over {idle_wall:?}"
    );
    let info = m.sessions();
    for id in ["s0", "s9999"] {
        assert_eq!(info[id]["executions"], 3, "{id}: {}", info[id]);
        assert_eq!(info[id]["idle"], true, "{id}: {}", info[id]);
    }
    assert_eq!(info["s1"]["executions"], 0);
}

const MAX_OUTPUT: usize = 1 << 20;
/// One line of the flood: 1023 bytes and the newline `print` adds.
const FLOOD_LINE: usize = 1024;
/// Lines printed: about 100 MB.
const FLOOD_LINES: usize = 100 * 1024;

/// Samples the process's RSS every millisecond while alive; returns the highest seen.
struct RssWatch {
    stop: std::sync::Arc<AtomicBool>,
    peak: std::sync::Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start() -> RssWatch {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let peak = std::sync::Arc::new(AtomicU64::new(rss_kib()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed).max(rss_kib())
    }
}

fn flood_session(m: &Mgr, id: &str) {
    m.interactive(id, Some(&format!(r#"{{"max_output": {MAX_OUTPUT}}}"#)));
    m.send(id, "line = string.rep('y', 1023)\n");
    assert_eq!(m.read(id, 5000), None);
}

/// Waits for the session to be idle without taking its output (and without evaluating on
/// this thread: the pool does the work).
fn wait_idle(m: &Mgr, id: &str) {
    let t = Instant::now();
    while m.sessions()[id]["idle"] != true {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the flood never ended"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks what `list_sessions` and a read report after a flood of `total` bytes.
fn check_flood(m: &Mgr, id: &str, total: usize, rss_before: u64, rss_peak: u64) {
    let info = m.sessions()[id].clone();
    eprintln!(
        "{id}: {info}; RSS {rss_before} KiB before, peak {rss_peak} KiB (+{} KiB)",
        rss_peak.saturating_sub(rss_before)
    );
    let buffered = info["buffered_bytes"].as_u64().unwrap() as usize;
    let dropped = info["dropped_bytes"].as_u64().unwrap() as usize;
    assert!(buffered <= MAX_OUTPUT, "{buffered} bytes buffered");
    assert!(
        buffered + dropped >= total,
        "{total} bytes printed, {buffered} buffered, only {dropped} reported dropped"
    );
    let out = m.read(id, 5000).unwrap_or_default();
    assert_eq!(out.len(), buffered);
    assert!(out.len() <= MAX_OUTPUT);
    assert!(out.iter().all(|b| *b == b'y' || *b == b'\n'));
    assert!(
        rss_peak.saturating_sub(rss_before) <= 50 * 1024,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB during the flood"
    );
    // The session still works, and its buffer is empty again.
    m.send(id, "print('after')\n");
    assert_eq!(m.read(id, 5000).as_deref(), Some(&b"after\n"[..]));
    assert_eq!(m.sessions()[id]["buffered_bytes"], 0);
}

/// One line of input prints about 100 MB in a loop: the VM's per-execution capture limit
/// and the session's buffer both apply, and everything not kept must be counted.
#[test]
fn a_flood_from_one_line_stays_bounded_and_is_counted() {
    let _serial = serial();
    let m = Mgr::new(r#"{"max_workers": 2}"#);
    flood_session(&m, "flood");
    let rss_before = rss_kib();
    let watch = RssWatch::start();
    m.send(
        "flood",
        &format!("for i = 1, {FLOOD_LINES} do print(line) end\n"),
    );
    let info = m.sessions()["flood"].clone();
    assert!(info["buffered_bytes"].as_u64().unwrap() as usize <= MAX_OUTPUT);
    wait_idle(&m, "flood");
    let peak = watch.finish();
    check_flood(&m, "flood", FLOOD_LINE * FLOOD_LINES, rss_before, peak);
}

/// The same amount of output from 100 lines of input of about 1 MB each: the session's
/// buffer keeps the newest 1 MiB and counts the rest.
#[test]
fn a_flood_from_many_lines_stays_bounded_and_is_counted() {
    let _serial = serial();
    let m = Mgr::new(r#"{"max_workers": 2}"#);
    flood_session(&m, "flood");
    let per_input = (MAX_OUTPUT / FLOOD_LINE - 1) * FLOOD_LINE;
    let inputs = FLOOD_LINES * FLOOD_LINE / per_input;
    let input =
        format!("for i = 1, {} do print(line) end\n", per_input / FLOOD_LINE).repeat(inputs);
    let rss_before = rss_kib();
    let watch = RssWatch::start();
    m.send("flood", &input);
    wait_idle(&m, "flood");
    let peak = watch.finish();
    check_flood(&m, "flood", per_input * inputs, rss_before, peak);
}
