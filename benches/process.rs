//! Benchmarks of bioxen_vm's `process` VM kind (a child `lua` interpreter running the
//! agent) through its exported C ABI, each measured side by side with the raw process
//! operation the original library pays for: a fresh `lua5.4 -e` per call, and a `lua5.4 -i`
//! driven over a pseudo-terminal for interactive use.
//!
//! Run with `cargo bench --bench process`. Options after `--`:
//! - `--markdown <path>`: also write the table as Markdown to `<path>`;
//! - `--quick`: fewer samples (a smoke run; the numbers are not meant to be quoted);
//! - `--only <section>`: run one section (`execute`, `session`, `create`), e.g. under
//!   `strace -c` or a profiler;
//! - `--no-wait`: skip the wait for a quiet machine (for profiling runs only).
//!
//! Needs `lua5.4` and `lua5.1` on `PATH`.
//!
//! Method:
//! - Before each section the machine must be quiet: other processes may use at most 20% of
//!   its CPU over a 1 s window. The harness waits up to 30 s for that, then runs anyway and
//!   says so. The CPU share other processes used while the section ran is reported with it
//!   (the children this bench starts count as its own).
//! - Every side is warmed up, then timed samples rotate over the sides (the order changes
//!   on every sample), so load from elsewhere hits all alike. A sample times a batch of
//!   operations and divides by the batch size; median and p99 (nearest rank) are taken
//!   over the samples.
//! - The ratio column is anchor / bioxen_vm: how many times faster the library is than
//!   the raw process operation (below 1: slower).
//! - Where the time of a round trip goes: thousands of round trips back to back, their
//!   mean wall time split into the CPU time of this process (all its threads), the CPU
//!   time of the child (both from `/proc/<tid>/schedstat`) and the rest ("neither":
//!   wake-ups, scheduling, kernel work done elsewhere). Measured twice: with the scheduler
//!   free to place both ends, and with this process and the child pinned to one CPU,
//!   which shows what cross-CPU wake-ups cost on this machine.

use bioxen_vm::ffi::{
    bioxen_vm_bytes, bioxen_vm_bytes_free, bioxen_vm_free, bioxen_vm_manager_read_output,
    bioxen_vm_manager_send_input, bioxen_vm_manager_vm_info, bioxen_vm_new,
};
use std::cell::Cell;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

// This bench draws its tables itself (other column names) and rotates over more than
// three sides, so some of the shared harness stays unused here.
#[allow(dead_code)]
mod harness;
use harness::libvm::{bytes_of, pid_in, LibVm};
use harness::manager::{cstring, LibManager};
use harness::*;

const LUA54: &str = "lua5.4";
const LUA51: &str = "lua5.1";
/// The chunk every execute row runs (cached compiled in the agent after its first run).
const CODE: &str = "return 1";
/// `read_output` and `execute_interactive_command`'s wait for the session to be idle.
const READ_TIMEOUT_MS: u64 = 5000;
/// Rounds of each back-to-back measurement (the median round is shown).
const SPLIT_ROUNDS: usize = 5;
/// The per-call limit of the "watchdog armed" execute row.
const ARMED_TIMEOUT_MS: u64 = 1000;

const INCREMENT: &str = "x = x + 1\n";
const PRINT: &str = "print(x)\n";

/// Where each row's figures come from, for the table's header line.
const TABLE_HEADERS: [&str; 7] = [
    "operation",
    "bioxen_vm",
    "raw process anchor",
    "anchor / bioxen_vm",
    "target",
    "met?",
    "other CPU",
];

fn process_options(lua: &str) -> String {
    format!(r#"{{"vm_type": "process", "lua_executable": "{lua}"}}"#)
}

// ---------------------------------------------------------------------------------------
// The library, through its C ABI

impl LibManager {
    /// The pid of the child interpreter of VM `id`.
    fn pid(&self, id: &CStr) -> u32 {
        let mut out = bioxen_vm_bytes::empty();
        // SAFETY: `id` is NUL-terminated; `out` is valid for writes.
        let st = unsafe { bioxen_vm_manager_vm_info(self.0, id.as_ptr(), &mut out) };
        assert_eq!(st, 0, "bioxen_vm_manager_vm_info failed: {}", last_error());
        let info = bytes_of(&out);
        // SAFETY: `out` was filled by the library.
        unsafe { bioxen_vm_bytes_free(&mut out) };
        pid_in(&info)
    }

    /// `execute_interactive_command` + `bytes_free`; the output read back.
    #[inline]
    fn command(&self, id: &CStr, line: &[u8]) -> Vec<u8> {
        self.command_with(id, line, READ_TIMEOUT_MS, bytes_of)
            .unwrap_or_else(|st| {
                panic!(
                    "execute_interactive_command failed ({st}): {}",
                    last_error()
                )
            })
    }

    /// `send_input`, then `read_output` (waiting for the session to be idle), then
    /// `bytes_free`; the number of output bytes read.
    #[inline]
    fn round_trip(&self, id: &CStr, line: &[u8]) -> usize {
        // SAFETY: `id` is NUL-terminated; `line` is `line.len()` readable bytes.
        let st = unsafe {
            bioxen_vm_manager_send_input(self.0, id.as_ptr(), line.as_ptr().cast(), line.len())
        };
        assert_eq!(st, 0, "send_input failed: {}", last_error());
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
        assert_eq!(st, 0, "read_output failed: {}", last_error());
        let n = if has { out.len } else { 0 };
        // SAFETY: `out` was filled by the library.
        unsafe { bioxen_vm_bytes_free(&mut out) };
        n
    }
}

// ---------------------------------------------------------------------------------------
// The anchors: raw processes

/// What the original pays per call: a fresh interpreter, `lua -e <code>`, waited for
/// (std's `Command` uses `posix_spawn` here: no `pre_exec`, no uid or group changes).
#[inline]
fn spawn_wait(lua: &str, code: &str) {
    let st = Command::new(lua)
        .arg("-e")
        .arg(code)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("starting the interpreter");
    assert!(st.success(), "{lua} -e exited with {st}");
}

/// The floor of any persistent-child design over pipes: a `lua` that echoes each line it
/// reads (no agent, no framing, no JSON), one line written and one read back per round
/// trip.
struct PipeEcho {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl PipeEcho {
    fn new(lua: &str) -> Self {
        let mut child = Command::new(lua)
            .arg("-e")
            .arg("for l in io.lines() do io.write(l, '\\n') io.stdout:flush() end")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the echo loop");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        PipeEcho {
            child,
            stdin,
            stdout,
            line: String::new(),
        }
    }

    #[inline]
    fn round_trip(&mut self, line: &[u8]) {
        self.stdin
            .write_all(line)
            .expect("writing to the echo loop");
        self.line.clear();
        let n = self
            .stdout
            .read_line(&mut self.line)
            .expect("reading from the echo loop");
        assert_eq!(n, line.len(), "echoed line");
    }
}

impl Drop for PipeEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw `lua -i` on a pseudo-terminal, as a terminal (or the original's interactive
/// session) drives it: write a line, read until the next `> ` prompt. The terminal is
/// left in its default mode (echo on; `lua5.4` is linked with readline).
struct PtyLua {
    master: OwnedFd,
    child: Child,
    buf: Vec<u8>,
}

fn check(rc: libc::c_int, what: &str) {
    assert!(
        rc >= 0,
        "{what} failed: {}",
        std::io::Error::last_os_error()
    );
}

fn set_cloexec(fd: libc::c_int) {
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        check(flags, "fcntl(F_GETFD)");
        check(
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC),
            "fcntl(F_SETFD)",
        );
    }
}

impl PtyLua {
    fn new(lua: &str) -> Self {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the out-parameters are valid for writes; NULL name and termios; `size`
        // is a valid winsize.
        check(
            unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    &size,
                )
            },
            "openpty",
        );
        set_cloexec(master);
        set_cloexec(slave);
        // SAFETY: openpty returned two fresh descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup of the terminal"));
        let mut cmd = Command::new(lua);
        cmd.arg("-i")
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting lua -i on a terminal");
        drop(slave);
        let mut p = PtyLua {
            master,
            child,
            buf: Vec::with_capacity(4096),
        };
        p.read_prompt();
        p
    }

    /// Reads until the output ends with the prompt `> `; the bytes read.
    #[inline]
    fn read_prompt(&mut self) -> usize {
        self.buf.clear();
        let fd = self.master.as_raw_fd();
        loop {
            let have = self.buf.len();
            if self.buf.capacity() - have < 1024 {
                self.buf.reserve(4096);
            }
            // SAFETY: reading into the spare capacity of `buf`.
            let n = unsafe {
                libc::read(
                    fd,
                    self.buf.as_mut_ptr().add(have).cast(),
                    self.buf.capacity() - have,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            assert!(
                n > 0,
                "lua -i on the terminal ended: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: `n` bytes were written past `have`.
            unsafe { self.buf.set_len(have + n as usize) };
            if self.buf.ends_with(b"> ") {
                return self.buf.len();
            }
        }
    }

    /// Writes `line`, reads up to the next prompt; the bytes read (echo included).
    #[inline]
    fn round_trip(&mut self, line: &[u8]) -> usize {
        let mut rest = line;
        while !rest.is_empty() {
            // SAFETY: `rest` is `rest.len()` readable bytes.
            let n =
                unsafe { libc::write(self.master.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            check(n as libc::c_int, "write to the terminal");
            rest = &rest[n as usize..];
        }
        self.read_prompt()
    }
}

impl Drop for PtyLua {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent started by hand as the library starts it (`lua -e <bootstrap>`, stdin piped,
/// the agent's source written to it, frames read from descriptor 3), for the floor of
/// creating and freeing a process VM.
struct RawAgent {
    child: Child,
    stdin: ChildStdin,
}

impl RawAgent {
    /// Spawns the interpreter, sends it the agent and reads the agent's ready frame.
    fn start(lua: &str) -> Self {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let wfd = w.as_raw_fd();
        let mut cmd = Command::new(lua);
        cmd.arg("-e")
            .arg(bioxen_vm::agent::BOOTSTRAP)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(wfd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("starting the agent");
        drop(w);
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(&bioxen_vm::agent::preamble(None))
            .expect("sending the agent");
        let mut frames = BufReader::new(std::fs::File::from(r));
        let mut header = String::new();
        frames.read_line(&mut header).expect("the ready frame");
        let mut words = header.split_whitespace();
        assert_eq!(words.next(), Some("ready"), "first frame: {header:?}");
        let len: usize = words.map(|w| w.parse::<usize>().expect("a length")).sum();
        let mut fields = vec![0u8; len];
        frames
            .read_exact(&mut fields)
            .expect("the ready frame's fields");
        RawAgent { child, stdin }
    }

    /// Writes `quit` and waits for the child to exit.
    fn stop(mut self) {
        self.stdin.write_all(b"quit\n").expect("writing quit");
        let st = self.child.wait().expect("waiting for the agent");
        assert!(st.success(), "the agent exited with {st}");
    }
}

// ---------------------------------------------------------------------------------------
// Where the time goes: CPU per round trip on each side

/// Nanoseconds a task has run, from its `schedstat` file (first field).
fn schedstat_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no run time in {path}"))
}

/// CPU time all threads of this process have used, in nanoseconds.
fn self_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path().join("schedstat");
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
                .unwrap_or(0u64)
        })
        .sum()
}

/// Per-operation wall time, CPU of this process (all threads) and CPU of the child; after
/// `cpu_splits`, also the lowest and highest wall time over its rounds.
#[derive(Clone, Copy)]
struct Split {
    wall: f64,
    host: f64,
    child: f64,
    range: (f64, f64),
}

fn cpu_split(n: usize, child_pid: u32, mut f: impl FnMut()) -> Split {
    let child_path = format!("/proc/{child_pid}/schedstat");
    let (h0, c0, t) = (self_cpu_ns(), schedstat_ns(&child_path), Instant::now());
    for _ in 0..n {
        f();
    }
    let wall = t.elapsed().as_nanos() as f64;
    let (h1, c1) = (self_cpu_ns(), schedstat_ns(&child_path));
    let per = |x: f64| x / n as f64;
    Split {
        wall: per(wall),
        host: per(h1.saturating_sub(h0) as f64),
        child: per(c1.saturating_sub(c0) as f64),
        range: (per(wall), per(wall)),
    }
}

/// Runs `f` with every thread of this process and the task `child` pinned to the CPU the
/// calling thread is on, then restores their affinities. Shows what the round trip costs
/// when both ends share one CPU (no cross-CPU wake-ups).
fn pinned<T>(child: u32, f: impl FnOnce() -> T) -> T {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: plain calls on a zeroed cpu_set_t of the right size.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpu = unsafe { libc::sched_getcpu() };
    check(cpu, "sched_getcpu");
    unsafe { libc::CPU_SET(cpu as usize, &mut one) };
    let mut tids: Vec<libc::pid_t> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.push(child as libc::pid_t);
    let mut saved = Vec::with_capacity(tids.len());
    for tid in tids {
        // SAFETY: `old` and `one` are valid cpu_set_t of `size` bytes.
        let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if unsafe { libc::sched_getaffinity(tid, size, &mut old) } == 0
            && unsafe { libc::sched_setaffinity(tid, size, &one) } == 0
        {
            saved.push((tid, old));
        }
    }
    let r = f();
    for (tid, old) in saved {
        // SAFETY: as above; a task that ended meanwhile just fails.
        unsafe { libc::sched_setaffinity(tid, size, &old) };
    }
    r
}

/// Runs measurements 0..k (by `run(i)`) `rounds` times, alternating, and keeps for each
/// the round with the median wall time.
fn cpu_splits(rounds: usize, k: usize, mut run: impl FnMut(usize) -> Split) -> Vec<Split> {
    let mut all: Vec<Vec<Split>> = (0..k).map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, v) in all.iter_mut().enumerate() {
            v.push(run(i));
        }
    }
    all.into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.wall.total_cmp(&b.wall));
            Split {
                range: (v[0].wall, v[v.len() - 1].wall),
                ..v[v.len() / 2]
            }
        })
        .collect()
}

fn split_text(child: &str, s: Split) -> String {
    let gap = s.wall - s.host - s.child;
    let rest = if gap >= 0.0 {
        format!("+ {} neither", fmt_ns(gap))
    } else {
        format!("({} of it overlapping)", fmt_ns(-gap))
    };
    format!(
        "{} = host {} + {child} {} CPU {rest} [rounds {}–{}]",
        fmt_ns(s.wall),
        fmt_ns(s.host),
        fmt_ns(s.child),
        fmt_ns(s.range.0),
        fmt_ns(s.range.1),
    )
}

/// A back-to-back row; with a target, judged on the median round's mean wall time.
fn split_row(
    op: &str,
    lib: Split,
    anchor_label: &str,
    anchor: Split,
    target_ns: Option<f64>,
) -> Row {
    Row {
        op: op.into(),
        lib: split_text("agent", lib),
        anchor: format!("{anchor_label}{}", split_text("child", anchor)),
        ratio: format!("{:.2}×", anchor.wall / lib.wall),
        target: match target_ns {
            Some(t) => format!("≤ {}", fmt_ns(t)),
            None => "– (reported)".into(),
        },
        met: match target_ns {
            Some(t) if lib.wall <= t => Met::Yes,
            Some(_) => Met::No,
            None => Met::Info,
        },
        other: String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Rotation over several sides

/// One side of a rotation: its batch size and the operation.
struct Side<'a> {
    batch: usize,
    op: Box<dyn FnMut() + 'a>,
}

fn side<'a>(batch: usize, op: impl FnMut() + 'a) -> Side<'a> {
    Side {
        batch,
        op: Box::new(op),
    }
}

/// Warms every side up `warmup` times, then takes `samples` batches of each, rotating
/// which side goes first on every sample. Per-operation statistics, one per side.
fn rotate(warmup: usize, samples: usize, sides: &mut [Side<'_>]) -> Vec<Stats> {
    for _ in 0..warmup {
        for s in sides.iter_mut() {
            (s.op)();
        }
    }
    let k = sides.len();
    let mut times: Vec<Vec<f64>> = (0..k).map(|_| Vec::with_capacity(samples)).collect();
    for i in 0..samples {
        for j in 0..k {
            let n = (i + j) % k;
            let s = &mut sides[n];
            let mut f = &mut s.op;
            times[n].push(time_batch(&mut f, s.batch));
        }
    }
    times.into_iter().map(stats).collect()
}

// ---------------------------------------------------------------------------------------
// Rows

// ---------------------------------------------------------------------------------------
// Sections

fn section_execute(cx: &Ctx) -> (Vec<Row>, String) {
    let (warmup, samples) = (cx.n(200, 30), cx.n(1000, 60));
    let (fast, slow) = (8, 2);
    let vm54 = LibVm::new(&process_options(LUA54));
    let vm51 = LibVm::new(&process_options(LUA51));
    assert_eq!(vm54.values(CODE), "[1]");
    assert_eq!(vm51.values(CODE), "[1]");
    assert_eq!(vm54.values("return _VERSION"), r#"["Lua 5.4"]"#);
    assert_eq!(vm51.values("return _VERSION"), r#"["Lua 5.1"]"#);
    let mut echo = PipeEcho::new(LUA54);
    let code = CODE.as_bytes();
    let r = rotate(
        warmup,
        samples,
        &mut [
            side(fast, || vm54.exec(code, 0)),
            side(fast, || vm51.exec(code, 0)),
            side(fast, || vm54.exec(code, ARMED_TIMEOUT_MS)),
            side(fast, || echo.round_trip(b"return 1\n")),
            side(slow, || spawn_wait(LUA54, CODE)),
            side(slow, || spawn_wait(LUA51, CODE)),
        ],
    );
    let (lib54, lib51, armed, echo_rt, spawn54, spawn51) = (r[0], r[1], r[2], r[3], r[4], r[5]);
    let split_n = cx.n(10_000, 2_000);
    let (vm_pid, echo_pid) = (vm54.pid(), echo.child.id());
    let lib_run = || cpu_split(split_n, vm_pid, || vm54.exec(code, 0));
    let sp = cpu_splits(SPLIT_ROUNDS, 4, |i| match i {
        0 => lib_run(),
        1 => cpu_split(split_n, echo_pid, || echo.round_trip(b"return 1\n")),
        2 => pinned(vm_pid, lib_run),
        _ => pinned(echo_pid, || {
            cpu_split(split_n, echo_pid, || echo.round_trip(b"return 1\n"))
        }),
    });
    let target = Some(50_000.0);
    let rows = vec![
        row(
            "execute `return 1` on a process VM, lua5.4 (execute + result_free)",
            lib54,
            "`lua5.4 -e` spawn+wait: ",
            spawn54,
            target,
        ),
        row(
            "  same, lua5.1",
            lib51,
            "`lua5.1 -e` spawn+wait: ",
            spawn51,
            target,
        ),
        row(
            &format!("  same, lua5.4 with timeout_ms={ARMED_TIMEOUT_MS} (watchdog armed per call)"),
            armed,
            "`lua5.4 -e` spawn+wait: ",
            spawn54,
            None,
        ),
        row(
            "  lua5.4 row against the pipe floor (same child kind, bare line echo)",
            lib54,
            "pipe echo: ",
            echo_rt,
            None,
        ),
        split_row(
            &format!("  lua5.4, {split_n} back to back (mean): wall = CPU here + CPU in the child + neither running"),
            sp[0],
            "pipe echo: ",
            sp[1],
            target,
        ),
        split_row(
            "  same, this process and the child pinned to one CPU",
            sp[2],
            "pipe echo: ",
            sp[3],
            None,
        ),
    ];
    let note = format!(
        "execute: bioxen_vm_execute(`{CODE}`, no args, timeout_ms=0 unless stated) + bioxen_vm_result_free on a standalone \
         VM created with {{\"vm_type\":\"process\",\"lua_executable\":\"lua5.x\"}} (the chunk is compiled once and cached in the agent; \
         values_json \"[1]\" checked once), vs what the original pays per call: `lua5.x -e \"{CODE}\"` started with std::process::Command \
         (posix_spawn) with stdin/stdout/stderr on /dev/null and waited for; pipe floor: a persistent `lua5.4` running \
         `for l in io.lines() do io.write(l, '\\n') io.stdout:flush() end`, one line written and read back through pipes per round trip \
         (the least any persistent child over pipes can cost); {samples} samples per side rotating over the 6 sides, batch {fast} \
         ({slow} for the spawns), after {warmup} warm-up calls each; back to back: {split_n} round trips in a row, their mean, \
         CPU time from /proc/<tid>/schedstat (all threads of this process; the child's main thread), the median of {SPLIT_ROUNDS} \
         alternating rounds (the range of their wall times in brackets); \"neither\" is the wall time not covered by either side's CPU (wake-ups and scheduling, and \
         kernel work done elsewhere); pinned: sched_setaffinity of every thread of this process and of the child to the \
         CPU the bench thread was on, restored after"
    );
    (rows, note)
}

fn section_session(cx: &Ctx) -> (Vec<Row>, String) {
    let (warmup, samples, batch) = (cx.n(300, 30), cx.n(2000, 100), 4);
    let m = LibManager::new(&process_options(LUA54));
    let ids = [
        cstring("inc"),
        cstring("print"),
        cstring("send"),
        cstring("fresh"),
    ];
    for id in &ids {
        m.create_session(id);
        assert!(m.command(id, b"x = 0\n").is_empty(), "setting x");
    }
    assert_eq!(m.command(&ids[1], PRINT.as_bytes()), b"0\n");
    assert_eq!(
        m.command(&ids[1], b"return _VERSION\n"),
        b"Lua 5.4\n",
        "the session runs in lua5.4"
    );
    let ptys: Vec<PtyLua> = (0..4).map(|_| PtyLua::new(LUA54)).collect();
    let mut ptys: [PtyLua; 4] = ptys.try_into().ok().expect("four terminals");
    for p in ptys.iter_mut() {
        p.round_trip(b"x = 0\n");
    }
    let n = ptys[1].round_trip(PRINT.as_bytes());
    let printed = String::from_utf8_lossy(&ptys[1].buf[..n]).into_owned();
    assert!(
        printed.contains("print(x)") && printed.contains("\r0\r\n"),
        "`print(x)` on the terminal: {printed:?}"
    );

    let [pty_inc, pty_print, pty_send, pty_fresh] = &mut ptys;
    let (lib_n, pty_n) = (Cell::new(0u64), Cell::new(0u64));
    let r = rotate(
        warmup,
        samples,
        &mut [
            side(batch, || {
                assert!(m.command(&ids[0], INCREMENT.as_bytes()).is_empty());
            }),
            side(batch, || {
                pty_inc.round_trip(INCREMENT.as_bytes());
            }),
            side(batch, || {
                assert!(!m.command(&ids[1], PRINT.as_bytes()).is_empty());
            }),
            side(batch, || {
                pty_print.round_trip(PRINT.as_bytes());
            }),
            side(batch, || {
                assert_eq!(m.round_trip(&ids[2], INCREMENT.as_bytes()), 0);
            }),
            side(batch, || {
                pty_send.round_trip(INCREMENT.as_bytes());
            }),
            side(batch, || {
                lib_n.set(lib_n.get() + 1);
                let line = format!("x = x + 1 -- {}\n", lib_n.get());
                assert!(m.command(&ids[3], line.as_bytes()).is_empty());
            }),
            side(batch, || {
                pty_n.set(pty_n.get() + 1);
                let line = format!("x = x + 1 -- {}\n", pty_n.get());
                pty_fresh.round_trip(line.as_bytes());
            }),
        ],
    );
    let split_n = cx.n(5_000, 1_000);
    let (inc_pid, send_pid, pty_pid) = (m.pid(&ids[0]), m.pid(&ids[2]), pty_inc.child.id());
    let cmd_run = || {
        cpu_split(split_n, inc_pid, || {
            assert!(m.command(&ids[0], INCREMENT.as_bytes()).is_empty());
        })
    };
    let send_run = || {
        cpu_split(split_n, send_pid, || {
            assert_eq!(m.round_trip(&ids[2], INCREMENT.as_bytes()), 0);
        })
    };
    let sp = cpu_splits(SPLIT_ROUNDS, 6, |i| match i {
        0 => cmd_run(),
        1 => send_run(),
        2 => cpu_split(split_n, pty_pid, || {
            pty_inc.round_trip(INCREMENT.as_bytes());
        }),
        3 => pinned(inc_pid, cmd_run),
        4 => pinned(send_pid, send_run),
        _ => pinned(pty_pid, || {
            cpu_split(split_n, pty_pid, || {
                pty_inc.round_trip(INCREMENT.as_bytes());
            })
        }),
    });
    let target = Some(100_000.0);
    let pty = "`lua5.4 -i` on a PTY: ";
    let rows = vec![
        row(
            "session `x = x + 1`, process VM lua5.4 (execute_interactive_command + bytes_free)",
            r[0],
            pty,
            r[1],
            target,
        ),
        row(
            "session `print(x)`, output read back",
            r[2],
            pty,
            r[3],
            target,
        ),
        row(
            "  `x = x + 1` through send_input + read_output + bytes_free",
            r[4],
            pty,
            r[5],
            None,
        ),
        row(
            "  `x = x + 1 -- <n>` (a new line every time: nothing compiled reused)",
            r[6],
            pty,
            r[7],
            None,
        ),
        split_row(
            &format!("  `x = x + 1`, {split_n} back to back (mean), execute_interactive_command: wall = CPU here + CPU in the child + neither"),
            sp[0],
            pty,
            sp[2],
            target,
        ),
        split_row(
            "  same, pinned to one CPU",
            sp[3],
            pty,
            sp[5],
            None,
        ),
        split_row(
            "  same through send_input + read_output",
            sp[1],
            pty,
            sp[2],
            None,
        ),
        split_row(
            "  same, pinned to one CPU",
            sp[4],
            pty,
            sp[5],
            None,
        ),
    ];
    let note = format!(
        "session: one manager created with {{\"vm_type\":\"process\",\"lua_executable\":\"lua5.4\"}}, one interactive VM per row \
         (NULL options, not attached); execute_interactive_command(timeout_ms={READ_TIMEOUT_MS}) \
         + bioxen_vm_bytes_free, or send_input + read_output(timeout_ms={READ_TIMEOUT_MS}, flags=0) + bytes_free; output checked on \
         every round trip (`print(x)` reads \"0\\n\" before timing); anchor: one `lua5.4 -i` per row started on a pseudo-terminal \
         (openpty, setsid, TIOCSCTTY; 80×24; default terminal mode: echo on, readline in use), the line written to the master \
         and the master read until the output ends with the next `> ` prompt (echo, output and readline's escapes included); \
         {samples} samples per side rotating over the 8 sides, batch {batch}, after {warmup} warm-up round trips each; \
         back to back and pinned: as for execute, {split_n} round trips in a row (the PTY's own work in the kernel's \
         workqueue counts as \"neither\" and is not pinned)"
    );
    (rows, note)
}

fn section_create(cx: &Ctx) -> (Vec<Row>, String) {
    let (warmup, samples) = (cx.n(10, 3), cx.n(300, 20));
    let o54 = cstring(&process_options(LUA54));
    let o51 = cstring(&process_options(LUA51));
    let new_vm = |o: &CStr| {
        let mut h = 0u64;
        // SAFETY: `o` is NUL-terminated; `h` is valid for writes.
        let st = unsafe { bioxen_vm_new(o.as_ptr(), &mut h) };
        assert_eq!(st, 0, "bioxen_vm_new failed: {}", last_error());
        h
    };
    let free_vm = |h: u64| {
        let st = bioxen_vm_free(h);
        assert_eq!(st, 0, "bioxen_vm_free failed: {}", last_error());
    };
    let ns = |s: Instant| s.elapsed().as_nanos() as f64;
    // Series: 0 lua5.4 create+free, 1 its create, 2 its free, 3 lua5.1 create+free,
    // 4 bare lua5.4 spawn, 5 raw agent start+stop, 6 its start, 7 its stop, 8 bare lua5.1
    // spawn. Sides (rotating): lua5.4 VM, lua5.1 VM, bare lua5.4, raw agent, bare lua5.1.
    let mut t: [Vec<f64>; 9] = Default::default();
    for i in 0..warmup + samples {
        for j in 0..5 {
            let mut got: [(usize, f64); 3] = [(usize::MAX, 0.0); 3];
            match (i + j) % 5 {
                0 => {
                    let s = Instant::now();
                    let h = new_vm(&o54);
                    let created = ns(s);
                    free_vm(h);
                    let total = ns(s);
                    got = [(0, total), (1, created), (2, total - created)];
                }
                1 => {
                    let s = Instant::now();
                    free_vm(new_vm(&o51));
                    got[0] = (3, ns(s));
                }
                2 => {
                    let s = Instant::now();
                    spawn_wait(LUA54, CODE);
                    got[0] = (4, ns(s));
                }
                3 => {
                    let s = Instant::now();
                    let agent = RawAgent::start(LUA54);
                    let started = ns(s);
                    agent.stop();
                    let total = ns(s);
                    got = [(5, total), (6, started), (7, total - started)];
                }
                _ => {
                    let s = Instant::now();
                    spawn_wait(LUA51, CODE);
                    got[0] = (8, ns(s));
                }
            }
            if i >= warmup {
                for (k, v) in got {
                    if k != usize::MAX {
                        t[k].push(v);
                    }
                }
            }
        }
    }
    let s: Vec<Stats> = t.into_iter().map(stats).collect();
    let raw = "raw agent: ";
    let rows = vec![
        row(
            "create + free a process VM, lua5.4 (bioxen_vm_new + bioxen_vm_free)",
            s[0],
            "`lua5.4 -e` spawn+wait: ",
            s[4],
            None,
        ),
        row(
            "  same, against the agent started and stopped by hand",
            s[0],
            raw,
            s[5],
            None,
        ),
        row(
            "  of which bioxen_vm_new (spawn, agent compiled, ready frame read)",
            s[1],
            raw,
            s[6],
            None,
        ),
        row(
            "  of which bioxen_vm_free (quit frame, child exit, reap)",
            s[2],
            raw,
            s[7],
            None,
        ),
        row(
            "  create + free, lua5.1",
            s[3],
            "`lua5.1 -e` spawn+wait: ",
            s[8],
            None,
        ),
    ];
    let note = format!(
        "create: bioxen_vm_new({{\"vm_type\":\"process\",\"lua_executable\":\"lua5.x\"}}) then bioxen_vm_free, create and free timed \
         apart and together, vs a bare `lua5.x -e \"{CODE}\"` spawn + wait (stdio on /dev/null), and vs the agent started by hand: \
         `lua5.4 -e <bootstrap>` spawned with piped stdin and descriptor 3, the agent's {} bytes sent, its ready frame read (start), then `quit` written \
         and the child waited for with a blocking waitpid (stop); {samples} samples per side, one operation each, the 5 sides \
         rotating, after {warmup} warm-up rounds",
        bioxen_vm::agent::SOURCE.len()
    );
    (rows, note)
}

/// The first line `lua -v` prints, or why there is none.
fn lua_version(lua: &str) -> String {
    match Command::new(lua).arg("-v").output() {
        Ok(o) => String::from_utf8_lossy(if o.stdout.is_empty() {
            &o.stderr
        } else {
            &o.stdout
        })
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .next()
        .unwrap_or("")
        .to_string(),
        Err(e) => format!("{lua}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Main

const SECTIONS: [(&str, Section); 3] = [
    ("execute", section_execute),
    ("session", section_session),
    ("create", section_create),
];

fn main() {
    let Opts {
        markdown,
        only,
        quick,
        no_wait,
    } = parse_opts(&SECTIONS, |_| {});
    for lua in [LUA54, LUA51] {
        if Command::new(lua)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("`{lua}` is not on PATH; this bench needs lua5.4 and lua5.1");
            std::process::exit(2);
        }
    }

    let cx = Ctx { quick };
    let started = utc_now();
    let wall = Instant::now();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_start = loadavg();
    let run = run_sections(&cx, &SECTIONS, only.as_deref(), no_wait);

    let mut head = String::new();
    let _ = writeln!(
        head,
        "bioxen_vm process-kind benchmarks ({}) — {started}, {nproc} CPUs, {}; {} and {}",
        if quick { "QUICK run" } else { "full run" },
        cpu_model(),
        lua_version(LUA54),
        lua_version(LUA51),
    );
    let _ = writeln!(
        head,
        "load average at start: {load_start}, at end: {}; highest other-process CPU share in a section: {:.1}% of the machine; \
         sections started on a busy machine: {}; run took {:.0} s",
        loadavg(),
        run.max_other * 100.0,
        run.busy_text(no_wait),
        wall.elapsed().as_secs_f64()
    );
    let foot = String::from(
        "Per-operation figures are the median with the p99 in brackets. Targets are judged on the median. \
         \"anchor / bioxen_vm\" is the anchor's median over the library's (above 1: the library is faster). \
         \"other CPU\" is the share of all cores other processes used while the section ran \
         (the bench's own child processes are not counted as other).\n",
    );
    report(&head, foot, &run, &TABLE_HEADERS, markdown.as_deref());
}
