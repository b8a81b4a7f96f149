//! Arguments a hostile or careless caller passes: timeouts of 0, 1 and `UINT64_MAX` on every
//! function that takes one (and huge seconds in JSON), duplicate JSON keys at every entry
//! point, `max_output: 0`, script files too large to read, NULL pointers; and the promises
//! about shutdown and on-done callbacks (the grace is waited once, a callback may free the
//! manager or wait for another job of its VM).

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::{json, Value};
use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The timeouts every function is called with: none, the shortest, the largest, and the
/// values around the "no limit" horizon (a century) and other large ones.
const TIMEOUTS: [u64; 8] = [
    0,
    1,
    u64::MAX,
    u64::MAX - 1,
    1 << 63,
    3_153_600_000_000,
    3_153_599_999_999,
    86_400_000,
];

const PANIC: i32 = S::Panic as i32;
const TIMEOUT: i32 = S::Timeout as i32;
const WAIT_TIMEOUT: i32 = S::WaitTimeout as i32;
const INVALID: i32 = S::InvalidArgument as i32;
const NULL_POINTER: i32 = S::NullPointer as i32;
const CANCELLED: i32 = S::Cancelled as i32;
const NETWORKED: &str = r#"{"networked": true, "lua_executable": "lua5.4"}"#;

fn elapsed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// A manager freed on drop.
struct Mgr(u64);

impl Mgr {
    fn new(options: &str) -> Mgr {
        let o = c(options);
        let mut m = 0;
        let st = unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut m) };
        assert_eq!(st, OK, "{}", last_error());
        Mgr(m)
    }

    fn vm(&self, id: &str, options: &str) {
        let (i, o) = (c(id), c(options));
        let st = unsafe { bioxen_vm_manager_create_vm(self.0, i.as_ptr(), o.as_ptr()) };
        assert_eq!(st, OK, "{}", last_error());
    }

    fn session(&self, id: &str) {
        let i = c(id);
        let st =
            unsafe { bioxen_vm_manager_create_interactive_vm(self.0, i.as_ptr(), null(), true) };
        assert_eq!(st, OK, "{}", last_error());
    }

    fn submit(&self, id: &str, code: &str, timeout_ms: u64) -> u64 {
        let i = c(id);
        let mut j = 0;
        let st = unsafe {
            bioxen_vm_manager_execute_async(
                self.0,
                i.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                null(),
                timeout_ms,
                &mut j,
            )
        };
        assert_eq!(st, OK, "{}", last_error());
        j
    }

    fn list_vms(&self) -> Value {
        let mut b = bioxen_vm_bytes::empty();
        assert_eq!(unsafe { bioxen_vm_manager_list_vms(self.0, &mut b) }, OK);
        take_json(b)
    }
}

impl Drop for Mgr {
    fn drop(&mut self) {
        bioxen_vm_manager_free(self.0);
    }
}

fn job_wait(job: u64, timeout_ms: u64) -> Result<Res, (i32, String)> {
    let mut r = empty_result();
    match unsafe { bioxen_vm_job_wait(job, timeout_ms, &mut r) } {
        OK => Ok(take_result(r)),
        st => Err((st, last_error())),
    }
}

fn status_of<T>(r: &Result<T, (i32, String)>) -> i32 {
    r.as_ref().err().map_or(OK, |(s, _)| *s)
}

/// A result or the status: never PANIC; OK, or TIMEOUT only for the 1 ms limit (code
/// this short may still outlast a millisecond on a loaded machine).
fn check_timeout_status(what: &str, t: u64, st: i32) {
    assert_ne!(
        st,
        PANIC,
        "{what} with timeout {t}: PANIC: {}",
        last_error()
    );
    if t <= 2 {
        assert!(
            st == OK || st == TIMEOUT || st == WAIT_TIMEOUT,
            "{what} with timeout {t}: {} {}",
            status_name(st),
            last_error()
        );
    } else {
        assert_eq!(st, OK, "{what} with timeout {t}: {}", last_error());
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script_file(dir: &std::path::Path, name: &str, text: &str) -> CString {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    c(p.to_str().unwrap())
}

/// A directory under the system temp directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "bioxen-hostile-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Class 5: every function that takes a timeout, with every extreme value.
// ---------------------------------------------------------------------------------------

#[test]
fn standalone_functions_take_every_timeout() {
    let vm = TestVm::new("{}");
    let dir = TempDir::new("standalone");
    let script = script_file(&dir.0, "s.lua", "return 40 + 2");
    let code = "return 1";
    let mut buffer = null_mut();
    assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut buffer) }, OK);
    for t in TIMEOUTS {
        let r = vm.try_exec(code, Some("[]"), t);
        check_timeout_status("bioxen_vm_execute", t, status_of(&r));
        if let Ok(r) = r {
            assert_eq!(r.values, json!([1]));
        }

        let mut j = 0;
        let st = unsafe {
            bioxen_vm_execute_async(vm.0, code.as_ptr().cast(), code.len(), null(), t, &mut j)
        };
        assert_eq!(st, OK, "bioxen_vm_execute_async {t}: {}", last_error());
        let r = job_wait(j, u64::MAX);
        check_timeout_status("bioxen_vm_execute_async", t, status_of(&r));
        // The job has finished: waiting again gives the result at once, whatever the limit.
        let (r, took) = elapsed(|| job_wait(j, t));
        assert_ne!(status_of(&r), PANIC);
        assert!(took < Duration::from_secs(2), "{took:?}");
        bioxen_vm_job_free(j);

        let mut out: *const bioxen_vm_result = null();
        let st = unsafe {
            bioxen_vm_execute_into(
                vm.0,
                code.as_ptr().cast(),
                code.len(),
                null(),
                t,
                buffer,
                &mut out,
            )
        };
        check_timeout_status("bioxen_vm_execute_into", t, st);

        let mut r = empty_result();
        let st = unsafe { bioxen_vm_execute_file(vm.0, script.as_ptr(), t, &mut r) };
        check_timeout_status("bioxen_vm_execute_file", t, st);
        if st == OK {
            assert_eq!(take_result(r).values, json!([42]));
        }

        let mut r = empty_result();
        let st = unsafe {
            bioxen_vm_execute_temp_script(vm.0, code.as_ptr().cast(), code.len(), t, &mut r)
        };
        check_timeout_status("bioxen_vm_execute_temp_script", t, st);
        if st == OK {
            take_result(r);
        }
    }
    unsafe { bioxen_vm_result_buffer_free(buffer) };
}

#[test]
fn manager_functions_take_every_timeout() {
    let m = Mgr::new(r#"{"max_workers": 2}"#);
    m.vm("v1", "{}");
    m.session("s1");
    let dir = TempDir::new("manager");
    let script = script_file(&dir.0, "m.lua", "return 'file'");
    let (v1, s1, pat, spat) = (c("v1"), c("s1"), c("v*"), c("s*"));
    let code = "return 1";
    let mut buffer = null_mut();
    assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut buffer) }, OK);
    for t in TIMEOUTS {
        let r = mexec(m.0, "v1", code, t);
        check_timeout_status("bioxen_vm_manager_execute", t, status_of(&r));

        let j = m.submit("v1", code, t);
        let (r, took) = elapsed(|| {
            let mut r = empty_result();
            let st = unsafe { bioxen_vm_manager_wait_for_vm(m.0, v1.as_ptr(), t, &mut r) };
            if st == OK {
                take_result(r);
            }
            st
        });
        assert_ne!(
            r,
            PANIC,
            "bioxen_vm_manager_wait_for_vm {t}: {}",
            last_error()
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        check_timeout_status(
            "bioxen_vm_manager_execute_async",
            t,
            status_of(&job_wait(j, 0)),
        );
        bioxen_vm_job_free(j);

        let mut out: *const bioxen_vm_result = null();
        let st = unsafe {
            bioxen_vm_manager_execute_into(
                m.0,
                v1.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                null(),
                t,
                buffer,
                &mut out,
            )
        };
        check_timeout_status("bioxen_vm_manager_execute_into", t, st);

        let mut r = empty_result();
        let st =
            unsafe { bioxen_vm_manager_execute_file(m.0, v1.as_ptr(), script.as_ptr(), t, &mut r) };
        check_timeout_status("bioxen_vm_manager_execute_file", t, st);
        if st == OK {
            assert_eq!(take_result(r).values, json!(["file"]));
        }

        let mut r = empty_result();
        let st = unsafe {
            bioxen_vm_manager_execute_temp_script(
                m.0,
                v1.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                t,
                &mut r,
            )
        };
        check_timeout_status("bioxen_vm_manager_execute_temp_script", t, st);
        if st == OK {
            take_result(r);
        }

        let mut jobs = bioxen_vm_bytes::empty();
        let st = unsafe {
            bioxen_vm_manager_broadcast(
                m.0,
                pat.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                null(),
                t,
                &mut jobs,
            )
        };
        assert_eq!(st, OK, "bioxen_vm_manager_broadcast {t}: {}", last_error());
        let jobs_text = String::from_utf8(bytes_of(&jobs)).unwrap();
        unsafe { bioxen_vm_bytes_free(&mut jobs) };
        let jt = c(&jobs_text);
        for wait in TIMEOUTS {
            let mut results = bioxen_vm_bytes::empty();
            let (st, took) =
                elapsed(|| unsafe { bioxen_vm_wait_for_cluster(jt.as_ptr(), wait, &mut results) });
            assert_eq!(
                st,
                OK,
                "bioxen_vm_wait_for_cluster {wait}: {}",
                last_error()
            );
            assert!(took < Duration::from_secs(5), "{took:?}");
            let results = take_json(results);
            assert!(results["v1"].is_object(), "{results}");
        }
        let handles: Value = serde_json::from_str(&jobs_text).unwrap();
        for h in handles.as_object().unwrap().values() {
            bioxen_vm_job_free(h.as_u64().unwrap());
        }

        let input = "x = (x or 0) + 1";
        let st = unsafe {
            bioxen_vm_manager_send_input(m.0, s1.as_ptr(), input.as_ptr().cast(), input.len())
        };
        assert_eq!(st, OK);
        let mut out = bioxen_vm_bytes::empty();
        let mut has = false;
        let st =
            unsafe { bioxen_vm_manager_read_output(m.0, s1.as_ptr(), t, 0, &mut out, &mut has) };
        assert_eq!(
            st,
            OK,
            "bioxen_vm_manager_read_output {t}: {}",
            last_error()
        );
        unsafe { bioxen_vm_bytes_free(&mut out) };

        let cmd = "return 6 * 7";
        let mut out = bioxen_vm_bytes::empty();
        let st = unsafe {
            bioxen_vm_manager_execute_interactive_command(
                m.0,
                s1.as_ptr(),
                cmd.as_ptr().cast(),
                cmd.len(),
                t,
                &mut out,
            )
        };
        assert_ne!(
            st,
            PANIC,
            "execute_interactive_command {t}: {}",
            last_error()
        );
        assert_eq!(st, OK, "execute_interactive_command {t}: {}", last_error());
        let text = String::from_utf8(bytes_of(&out)).unwrap();
        unsafe { bioxen_vm_bytes_free(&mut out) };
        if t != 1 && t != 2 {
            assert!(text.contains("42"), "timeout {t}: {text:?}");
        }

        let mut out = bioxen_vm_bytes::empty();
        let st = unsafe {
            bioxen_vm_manager_broadcast_to_sessions(
                m.0,
                spat.as_ptr(),
                cmd.as_ptr().cast(),
                cmd.len(),
                t,
                &mut out,
            )
        };
        assert_ne!(st, PANIC, "broadcast_to_sessions {t}: {}", last_error());
        assert_eq!(st, OK, "broadcast_to_sessions {t}: {}", last_error());
        let outputs = take_json(out);
        if t != 1 && t != 2 {
            assert!(
                outputs["s1"].as_str().unwrap().contains("42"),
                "timeout {t}: {outputs}"
            );
        }
    }
    unsafe { bioxen_vm_result_buffer_free(buffer) };
}

#[test]
fn network_functions_take_every_timeout() {
    let mut vm = 0;
    let o = c(NETWORKED);
    assert_eq!(
        unsafe { bioxen_vm_new(o.as_ptr(), &mut vm) },
        OK,
        "{}",
        last_error()
    );
    let m = Mgr::new("{}");
    m.vm("net", NETWORKED);
    let (mode, net) = (c("client"), c("net"));
    for t in TIMEOUTS {
        let opts = c(&format!(
            r#"{{"host": "127.0.0.1", "port": {}, "connect_timeout": 1}}"#,
            closed_port()
        ));
        let mut r = empty_result();
        let (st, took) =
            elapsed(|| unsafe { bioxen_vm_net_run(vm, mode.as_ptr(), opts.as_ptr(), t, &mut r) });
        check_timeout_status("bioxen_vm_net_run", t, st);
        assert!(took < Duration::from_secs(10), "{took:?}");
        if st == OK {
            assert!(!take_result(r).success, "nothing listens there");
        }
        let mut j = 0;
        let st = unsafe {
            bioxen_vm_manager_net_start(m.0, net.as_ptr(), mode.as_ptr(), opts.as_ptr(), t, &mut j)
        };
        assert_eq!(st, OK, "bioxen_vm_manager_net_start {t}: {}", last_error());
        let (r, took) = elapsed(|| job_wait(j, 20_000));
        check_timeout_status("bioxen_vm_manager_net_start", t, status_of(&r));
        assert!(took < Duration::from_secs(10), "{took:?}");
        bioxen_vm_job_free(j);
    }
    bioxen_vm_free(vm);
}

/// `0` and the largest values are "no limit", not an instant timeout; 1 ms is a real limit.
#[test]
fn the_extremes_mean_what_the_header_says() {
    let vm = TestVm::new("{}");
    let spin = "local t = os.clock() while os.clock() - t < 0.3 do end return 'done'";
    for t in [0, u64::MAX, u64::MAX - 1, 3_153_600_000_000] {
        let r = vm
            .try_exec(spin, None, t)
            .unwrap_or_else(|e| panic!("{t}: {e:?}"));
        assert_eq!(r.values, json!(["done"]), "timeout {t}");
    }
    let (r, took) = elapsed(|| vm.try_exec("while true do end", None, 1));
    assert_eq!(status_of(&r), TIMEOUT);
    assert!(took < Duration::from_millis(1 + 500), "{took:?}");

    // A per-call limit of UINT64_MAX replaces the VM's default (it is not "unset").
    let short = TestVm::new(r#"{"timeout": 0.1}"#);
    assert_eq!(
        status_of(&short.try_exec("while true do end", None, 0)),
        TIMEOUT
    );
    let r = short.try_exec(spin, None, u64::MAX).unwrap();
    assert_eq!(r.values, json!(["done"]));

    // UINT64_MAX on a loop that never ends: an interrupt still stops it.
    let h = vm.0;
    let t = std::thread::spawn(move || {
        let code = "while true do end";
        let mut r = empty_result();
        let st = unsafe {
            bioxen_vm_execute(
                h,
                code.as_ptr().cast(),
                code.len(),
                null(),
                u64::MAX,
                &mut r,
            )
        };
        (st, last_error())
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut was = false;
    while !t.is_finished() && started.elapsed() < Duration::from_secs(5) {
        unsafe { bioxen_vm_interrupt(h, &mut was) };
        std::thread::sleep(Duration::from_millis(10));
    }
    let (st, msg) = t.join().unwrap();
    assert_eq!(st, S::Interrupted as i32, "{msg}");
}

/// Waits with 1 ms end in about a millisecond; waits with 0 and UINT64_MAX last until the
/// work is done.
#[test]
fn waits_end_by_their_limit_or_at_the_end_of_the_work() {
    let m = Mgr::new("{}");
    m.vm("w", "{}");
    m.session("s");
    let busy = "local t = os.clock() while os.clock() - t < 0.4 do end return 'late'";
    for t in [1, 0, u64::MAX] {
        let j = m.submit("w", busy, 0);
        let (r, took) = elapsed(|| job_wait(j, t));
        if t == 1 {
            assert_eq!(status_of(&r), WAIT_TIMEOUT, "{r:?}");
            assert!(took < Duration::from_millis(300), "{took:?}");
            let r = job_wait(j, u64::MAX).unwrap();
            assert_eq!(r.values, json!(["late"]));
        } else {
            assert_eq!(r.unwrap().values, json!(["late"]));
            assert!(took >= Duration::from_millis(300), "{took:?}");
        }
        bioxen_vm_job_free(j);
    }

    let w = c("w");
    let j = m.submit("w", busy, 0);
    let mut r = empty_result();
    let (st, took) =
        elapsed(|| unsafe { bioxen_vm_manager_wait_for_vm(m.0, w.as_ptr(), 1, &mut r) });
    assert_eq!(st, WAIT_TIMEOUT);
    assert!(took < Duration::from_millis(300), "{took:?}");
    let st = unsafe { bioxen_vm_manager_wait_for_vm(m.0, w.as_ptr(), u64::MAX, &mut r) };
    assert_eq!(st, OK, "{}", last_error());
    assert_eq!(take_result(r).values, json!(["late"]));
    bioxen_vm_job_free(j);

    // A session: read_output with 0 does not wait, with UINT64_MAX it waits for idle.
    let s = c("s");
    let line = "local t = os.clock() while os.clock() - t < 0.3 do end print('slept')";
    for t in [0u64, u64::MAX] {
        assert_eq!(
            unsafe {
                bioxen_vm_manager_send_input(m.0, s.as_ptr(), line.as_ptr().cast(), line.len())
            },
            OK
        );
        let mut out = bioxen_vm_bytes::empty();
        let mut has = false;
        let (st, took) = elapsed(|| unsafe {
            bioxen_vm_manager_read_output(m.0, s.as_ptr(), t, 0, &mut out, &mut has)
        });
        assert_eq!(st, OK);
        let text = String::from_utf8(bytes_of(&out)).unwrap();
        unsafe { bioxen_vm_bytes_free(&mut out) };
        if t == 0 {
            assert!(took < Duration::from_millis(250), "{took:?}");
            // Let the line finish before the next round.
            let mut out = bioxen_vm_bytes::empty();
            unsafe {
                bioxen_vm_manager_read_output(m.0, s.as_ptr(), 10_000, 0, &mut out, &mut has)
            };
            unsafe { bioxen_vm_bytes_free(&mut out) };
        } else {
            assert_eq!(text, "slept\n");
        }
    }
}

/// Seconds in JSON options: huge, tiny, negative and out-of-range numbers are refused or
/// honoured, never a panic.
#[test]
fn seconds_in_json_options_are_bounded() {
    for (options, want) in [
        (r#"{"timeout": 1e300}"#, INVALID),
        (r#"{"timeout": 1e400}"#, INVALID),
        (r#"{"timeout": 1e9}"#, INVALID),
        (r#"{"timeout": -1}"#, INVALID),
        (r#"{"timeout": -1e-300}"#, INVALID),
        (r#"{"timeout": 18446744073709551615}"#, INVALID),
        (r#"{"timeout": "5"}"#, INVALID),
        (r#"{"timeout": 999999999.9}"#, OK),
        (r#"{"timeout": -0.0}"#, OK),
        (r#"{"timeout": 1e-300}"#, OK),
        (r#"{"timeout": 5e-324}"#, OK),
    ] {
        let o = c(options);
        let mut vm = 0;
        let st = unsafe { bioxen_vm_new(o.as_ptr(), &mut vm) };
        assert_eq!(st, want, "{options}: {}", last_error());
        let mut mg = 0;
        let st = unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut mg) };
        assert_eq!(st, want, "manager {options}: {}", last_error());
        if st == OK {
            let vm = TestVm(vm);
            // A limit too small to be a nanosecond stops code at once; the others let short
            // code run.
            if options.contains("e-3") {
                let (r, took) = elapsed(|| vm.try_exec("while true do end", None, 0));
                assert_eq!(status_of(&r), TIMEOUT, "{options}");
                assert!(took < Duration::from_millis(500), "{took:?}");
            } else {
                assert_eq!(vm.exec("return 1").values, json!([1]), "{options}");
            }
            drop(vm);
            bioxen_vm_manager_free(mg);
        }
    }
    // Network options and the P2P cluster's durations follow the same rule.
    let vm = TestVm::new(NETWORKED);
    let mode = c("server");
    for opts in [
        r#"{"port": 40000, "accept_timeout": 1e300}"#,
        r#"{"port": 40000, "receive_timeout": -1}"#,
        r#"{"port": 40000, "accept_timeout": 1e400}"#,
    ] {
        let o = c(opts);
        let mut r = empty_result();
        let st = unsafe { bioxen_vm_net_run(vm.0, mode.as_ptr(), o.as_ptr(), 5000, &mut r) };
        assert_eq!(st, INVALID, "{opts}: {}", last_error());
    }
    let m = Mgr::new("{}");
    let id = c("p2p");
    for (count, run, every) in [
        (2, 1e300, 0.0),
        (2, f64::INFINITY, 0.0),
        (2, f64::NAN, 0.0),
        (2, 1.0, 1e300),
        (2, -1.0, 0.0),
        (usize::MAX, 1.0, 0.0),
        (1 << 63, 1.0, 0.0),
    ] {
        let mut out = bioxen_vm_bytes::empty();
        let st = unsafe {
            bioxen_vm_manager_setup_p2p_cluster(
                m.0,
                id.as_ptr(),
                count,
                40000,
                run,
                every,
                null(),
                &mut out,
            )
        };
        assert_eq!(st, INVALID, "{count} {run} {every}: {}", last_error());
        assert_eq!(m.list_vms(), json!([]), "nothing is left behind");
    }
}

// ---------------------------------------------------------------------------------------
// Class 7: shutdown waits its grace once; callbacks may free the manager or wait for jobs.
// ---------------------------------------------------------------------------------------

/// What a callback reports back: (status of what it did, how long that took).
type Report = mpsc::Sender<(i32, Duration, String)>;

struct CallbackPlan {
    report: std::sync::Mutex<Report>,
    /// What the callback does with its argument.
    action: Box<dyn Fn() -> (i32, String) + Send + Sync>,
}

unsafe extern "C" fn run_plan(_job: u64, _status: i32, user_data: *mut c_void) {
    let plan = &*(user_data as *const CallbackPlan);
    let started = Instant::now();
    let (st, detail) = (plan.action)();
    let _ = plan
        .report
        .lock()
        .unwrap()
        .send((st, started.elapsed(), detail));
}

/// Registers `action` as an on-done callback of `job`; the plan lives for the process
/// (a callback may still run after a failed test).
fn on_done(
    job: u64,
    action: impl Fn() -> (i32, String) + Send + Sync + 'static,
) -> mpsc::Receiver<(i32, Duration, String)> {
    let (tx, rx) = mpsc::channel();
    let plan: &'static CallbackPlan = Box::leak(Box::new(CallbackPlan {
        report: std::sync::Mutex::new(tx),
        action: Box::new(action),
    }));
    let st = bioxen_vm_job_on_done(
        job,
        Some(run_plan),
        plan as *const CallbackPlan as *mut c_void,
    );
    assert_eq!(st, OK, "{}", last_error());
    rx
}

const BUSY_200MS: &str = "local t = os.clock() while os.clock() - t < 0.2 do end return 'a'";

#[test]
fn freeing_a_manager_waits_its_grace_once() {
    // A callback that keeps its worker busy for 8 s (past the 5 s grace).
    let m = Mgr::new(r#"{"max_workers": 2}"#);
    m.vm("g", "{}");
    let j = m.submit("g", BUSY_200MS, 0);
    let rx = on_done(j, || {
        std::thread::sleep(Duration::from_secs(8));
        (OK, String::new())
    });
    // The callback has started once the job is done (it runs after the job finished).
    job_wait(j, 10_000).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let handle = m.0;
    std::mem::forget(m);
    let (st, took) = elapsed(|| bioxen_vm_manager_free(handle));
    assert_eq!(st, OK);
    assert!(took < Duration::from_millis(5000 + 700), "waited {took:?}");
    assert!(
        took >= Duration::from_millis(4500),
        "returned before the grace: {took:?}"
    );
    bioxen_vm_job_free(j);
    drop(rx);
}

#[test]
fn a_callback_may_free_its_manager_without_waiting_for_itself() {
    for max_workers in [1, 4] {
        let m = Mgr::new(&format!(r#"{{"max_workers": {max_workers}}}"#));
        m.vm("f", "{}");
        m.vm("other", "{}");
        let j = m.submit("f", BUSY_200MS, 0);
        // Queued behind it on the same VM: cancelled by the free.
        let queued = m.submit("f", "return 'never'", 0);
        let handle = m.0;
        std::mem::forget(m);
        let rx = on_done(j, move || {
            let st = bioxen_vm_manager_free(handle);
            (st, last_error())
        });
        let (st, took, msg) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("callback ran");
        assert_eq!(st, OK, "{msg}");
        assert!(
            took < Duration::from_millis(1000),
            "manager_free inside a callback took {took:?} (max_workers {max_workers})"
        );
        // With one worker (busy with the callback) the queued job cannot have started: the
        // free cancels it. With more, another worker may have run it meanwhile (or been
        // running it when the free interrupted it).
        let queued_status = status_of(&job_wait(queued, 5000));
        if max_workers == 1 {
            assert_eq!(queued_status, CANCELLED);
        } else {
            assert!(
                [CANCELLED, OK, S::Interrupted as i32].contains(&queued_status),
                "{}",
                status_name(queued_status)
            );
        }
        assert_eq!(
            bioxen_vm_manager_free(handle),
            S::InvalidHandle as i32,
            "freed once"
        );
        bioxen_vm_job_free(j);
        bioxen_vm_job_free(queued);
    }
}

/// A callback waits for another job of its own VM: with one worker, with several, on a
/// manager and on standalone VMs, with a limit and without.
#[test]
fn a_callback_may_wait_for_another_job_of_its_vm() {
    for (max_workers, wait_ms) in [(1, 5000), (1, 0), (3, u64::MAX)] {
        let m = Mgr::new(&format!(r#"{{"max_workers": {max_workers}}}"#));
        m.vm("same", "{}");
        let a = m.submit("same", BUSY_200MS, 0);
        let b = m.submit("same", "return 'b'", 0);
        let rx = on_done(a, move || match job_wait(b, wait_ms) {
            Ok(r) => (OK, r.values.to_string()),
            Err((st, msg)) => (st, msg),
        });
        let (st, took, detail) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("deadlock: max_workers {max_workers}, wait {wait_ms}"));
        assert_eq!(st, OK, "{detail}");
        assert_eq!(detail, r#"["b"]"#);
        assert!(took < Duration::from_secs(2), "{took:?}");
        bioxen_vm_job_free(a);
        bioxen_vm_job_free(b);

        // The same through wait_for_vm (every unfinished job of the VM).
        let a = m.submit("same", BUSY_200MS, 0);
        let b = m.submit("same", "return 'b2'", 0);
        let mh = m.0;
        let rx = on_done(a, move || {
            let id = c("same");
            let mut r = empty_result();
            let st = unsafe { bioxen_vm_manager_wait_for_vm(mh, id.as_ptr(), wait_ms, &mut r) };
            if st == OK {
                (st, take_result(r).values.to_string())
            } else {
                (st, last_error())
            }
        });
        let (st, _, detail) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("deadlock in wait_for_vm");
        assert_eq!((st, detail.as_str()), (OK, r#"["b2"]"#));
        bioxen_vm_job_free(a);
        bioxen_vm_job_free(b);
    }

    // Standalone VMs share one pool.
    let vm = TestVm::new("{}");
    let submit = |code: &str| {
        let mut j = 0;
        let st = unsafe {
            bioxen_vm_execute_async(vm.0, code.as_ptr().cast(), code.len(), null(), 0, &mut j)
        };
        assert_eq!(st, OK);
        j
    };
    let a = submit(BUSY_200MS);
    let b = submit("return 'solo'");
    let rx = on_done(a, move || match job_wait(b, 0) {
        Ok(r) => (OK, r.values.to_string()),
        Err((st, msg)) => (st, msg),
    });
    let (st, _, detail) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("deadlock on a standalone VM");
    assert_eq!((st, detail.as_str()), (OK, r#"["solo"]"#));
    bioxen_vm_job_free(a);
    bioxen_vm_job_free(b);
}

/// Jobs cancelled together (removing their VM, freeing their manager) are all cancelled
/// before the first callback runs: a callback waiting for a sibling sees it cancelled.
#[test]
fn a_callback_of_a_cancelled_job_may_wait_for_its_cancelled_siblings() {
    for free_manager in [false, true] {
        let m = Mgr::new(r#"{"max_workers": 1}"#);
        m.vm("c", "{}");
        let running = m.submit("c", BUSY_200MS, 0);
        let first = m.submit("c", "return 1", 0);
        let second = m.submit("c", "return 2", 0);
        let rx = on_done(first, move || match job_wait(second, 0) {
            Ok(_) => (OK, String::new()),
            Err((st, msg)) => (st, msg),
        });
        // On another thread: the callbacks of the cancelled jobs run on the cancelling
        // thread, and a hang must fail the test, not stop it.
        let h = m.0;
        std::mem::forget(m);
        let canceller = std::thread::spawn(move || {
            if free_manager {
                bioxen_vm_manager_free(h)
            } else {
                let id = c("c");
                let st = unsafe { bioxen_vm_manager_remove_vm(h, id.as_ptr()) };
                bioxen_vm_manager_free(h);
                st
            }
        });
        let (st, _, msg) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a callback waiting for a cancelled sibling hung");
        assert_eq!(st, CANCELLED, "{msg}");
        assert_eq!(canceller.join().unwrap(), OK);
        for j in [running, first, second] {
            bioxen_vm_job_free(j);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Class 8: input is taken exactly or refused.
// ---------------------------------------------------------------------------------------

/// Asserts INVALID_ARGUMENT with a message about a duplicate key.
fn refused_duplicate(what: &str, st: i32) {
    let msg = last_error();
    assert_eq!(st, INVALID, "{what}: {} {msg}", status_name(st));
    assert!(msg.contains("duplicate key"), "{what}: {msg}");
}

#[test]
fn duplicate_keys_are_refused_by_every_entry_point() {
    let sandbox = r#"{"sandbox":"default","sandbox":"trusted"}"#;
    let escaped = r#"{"sandbox":"default","s\u0061ndbox":"trusted"}"#;
    let nested_args = r#"[1, {"a": {"b": 1, "b": 2}}]"#;
    let m = Mgr::new("{}");
    m.vm("v", "{}");
    m.session("s");
    let vm = TestVm::new("{}");
    for options in [
        sandbox,
        escaped,
        r#"{"memory_limit": 1048576, "memory_limit": 0}"#,
    ] {
        let o = c(options);
        let mut h = 0;
        refused_duplicate("bioxen_vm_new", unsafe {
            bioxen_vm_new(o.as_ptr(), &mut h)
        });
        refused_duplicate("bioxen_vm_manager_new", unsafe {
            bioxen_vm_manager_new(o.as_ptr(), &mut h)
        });
        let id = c("dup");
        refused_duplicate("bioxen_vm_manager_create_vm", unsafe {
            bioxen_vm_manager_create_vm(m.0, id.as_ptr(), o.as_ptr())
        });
        refused_duplicate("bioxen_vm_manager_create_interactive_vm", unsafe {
            bioxen_vm_manager_create_interactive_vm(m.0, id.as_ptr(), o.as_ptr(), true)
        });
        let mut ids = bioxen_vm_bytes::empty();
        refused_duplicate("bioxen_vm_manager_create_cluster", unsafe {
            bioxen_vm_manager_create_cluster(m.0, id.as_ptr(), 2, o.as_ptr(), &mut ids)
        });
        refused_duplicate("bioxen_vm_manager_create_interactive_cluster", unsafe {
            bioxen_vm_manager_create_interactive_cluster(m.0, id.as_ptr(), 2, o.as_ptr(), &mut ids)
        });
        refused_duplicate("bioxen_vm_manager_setup_p2p_cluster", unsafe {
            bioxen_vm_manager_setup_p2p_cluster(
                m.0,
                id.as_ptr(),
                2,
                40000,
                1.0,
                0.0,
                o.as_ptr(),
                &mut ids,
            )
        });
        assert_eq!(
            m.list_vms(),
            json!(["v", "s"]),
            "no VM was made of {options}"
        );
    }
    // Arguments, at any depth, on every function that takes them.
    let a = c(nested_args);
    let (v, code) = (c("v"), "return ...");
    let r = vm.try_exec(code, Some(nested_args), 0);
    refused_duplicate("bioxen_vm_execute", status_of(&r));
    let mut j = 0;
    refused_duplicate("bioxen_vm_execute_async", unsafe {
        bioxen_vm_execute_async(
            vm.0,
            code.as_ptr().cast(),
            code.len(),
            a.as_ptr(),
            0,
            &mut j,
        )
    });
    let mut r = empty_result();
    refused_duplicate("bioxen_vm_manager_execute", unsafe {
        bioxen_vm_manager_execute(
            m.0,
            v.as_ptr(),
            code.as_ptr().cast(),
            code.len(),
            a.as_ptr(),
            0,
            &mut r,
        )
    });
    refused_duplicate("bioxen_vm_manager_execute_async", unsafe {
        bioxen_vm_manager_execute_async(
            m.0,
            v.as_ptr(),
            code.as_ptr().cast(),
            code.len(),
            a.as_ptr(),
            0,
            &mut j,
        )
    });
    let mut buffer = null_mut();
    assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut buffer) }, OK);
    let mut out: *const bioxen_vm_result = null();
    refused_duplicate("bioxen_vm_execute_into", unsafe {
        bioxen_vm_execute_into(
            vm.0,
            code.as_ptr().cast(),
            code.len(),
            a.as_ptr(),
            0,
            buffer,
            &mut out,
        )
    });
    refused_duplicate("bioxen_vm_manager_execute_into", unsafe {
        bioxen_vm_manager_execute_into(
            m.0,
            v.as_ptr(),
            code.as_ptr().cast(),
            code.len(),
            a.as_ptr(),
            0,
            buffer,
            &mut out,
        )
    });
    unsafe { bioxen_vm_result_buffer_free(buffer) };
    let mut jobs = bioxen_vm_bytes::empty();
    let pat = c("*");
    refused_duplicate("bioxen_vm_manager_broadcast", unsafe {
        bioxen_vm_manager_broadcast(
            m.0,
            pat.as_ptr(),
            code.as_ptr().cast(),
            code.len(),
            a.as_ptr(),
            0,
            &mut jobs,
        )
    });
    // A job map naming one VM twice.
    let job = m.submit("v", "return 1", 0);
    let map = c(&format!(r#"{{"v": {job}, "v": {job}}}"#));
    let mut results = bioxen_vm_bytes::empty();
    refused_duplicate("bioxen_vm_wait_for_cluster", unsafe {
        bioxen_vm_wait_for_cluster(map.as_ptr(), 1000, &mut results)
    });
    bioxen_vm_job_free(job);
    // Network and template options.
    let net = TestVm::new(NETWORKED);
    let (mode, netopts) = (
        c("client"),
        c(r#"{"host":"127.0.0.1","port":40000,"port":40001}"#),
    );
    let mut r = empty_result();
    refused_duplicate("bioxen_vm_net_run", unsafe {
        bioxen_vm_net_run(net.0, mode.as_ptr(), netopts.as_ptr(), 5000, &mut r)
    });
    m.vm("n", NETWORKED);
    let n = c("n");
    refused_duplicate("bioxen_vm_manager_net_start", unsafe {
        bioxen_vm_manager_net_start(
            m.0,
            n.as_ptr(),
            mode.as_ptr(),
            netopts.as_ptr(),
            5000,
            &mut j,
        )
    });
    let (name, topts) = (c("simple_echo_server"), c(r#"{"port":40000,"port":40001}"#));
    let mut src = bioxen_vm_bytes::empty();
    refused_duplicate("bioxen_vm_script_template", unsafe {
        bioxen_vm_script_template(name.as_ptr(), topts.as_ptr(), &mut src)
    });
    // What is not a duplicate still works: the same key in different objects.
    let r = vm
        .try_exec(
            "local t = ... return t.a.b, t.b.b",
            Some(r#"[{"a":{"b":1},"b":{"b":2}}]"#),
            0,
        )
        .unwrap();
    assert_eq!(r.values, json!([1, 2]));
    // The VM that was refused would have been trusted: no standalone VM gets `io` from it.
    let o = c(sandbox);
    let mut h = 0;
    assert_eq!(unsafe { bioxen_vm_new(o.as_ptr(), &mut h) }, INVALID);
    assert_eq!(h, 0, "no handle is written on failure");
}

#[test]
fn max_output_zero_is_refused_and_one_byte_works() {
    let want = "option 'max_output' must be at least 1 byte; there is no unlimited setting";
    for options in [
        r#"{"max_output": -0}"#,
        r#"{"max_output": 0.0}"#,
        r#"{"max_output": -1}"#,
    ] {
        let o = c(options);
        let mut h = 0;
        assert_eq!(
            unsafe { bioxen_vm_new(o.as_ptr(), &mut h) },
            INVALID,
            "{options}"
        );
    }
    {
        let options = r#"{"max_output": 0}"#;
        let o = c(options);
        let mut h = 0;
        assert_eq!(
            unsafe { bioxen_vm_new(o.as_ptr(), &mut h) },
            INVALID,
            "{options}"
        );
        assert_eq!(last_error(), want);
        assert_eq!(
            unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut h) },
            INVALID
        );
        assert_eq!(last_error(), want);
    }
    let m = Mgr::new("{}");
    let (id, o) = (c("z"), c(r#"{"max_output": 0}"#));
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m.0, id.as_ptr(), o.as_ptr()) },
        INVALID
    );
    assert_eq!(last_error(), want);
    // null keeps the default, 1 is one byte.
    let vm = TestVm::new(r#"{"max_output": null}"#);
    assert_eq!(vm.info()["max_output"], 16 << 20);
    let vm = TestVm::new(r#"{"max_output": 1}"#);
    let r = vm.exec("io.write('abc')");
    assert_eq!(r.out(), "a");
    assert_eq!(r.dropped, 2);
}

/// The process's peak resident memory so far (VmHWM), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn execute_file_refuses_files_past_its_cap_without_reading_them() {
    let dir = TempDir::new("big");
    // A 3 GiB sparse file: no disk space, but reading it would take 3 GiB of memory.
    let big = dir.0.join("big.lua");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(3 << 30).unwrap();
    drop(f);
    let bigc = c(big.to_str().unwrap());
    let before = peak_rss_bytes();
    for options in [
        "{}",
        r#"{"memory_limit": 1048576}"#,
        r#"{"vm_type": "process", "lua_executable": "lua5.4"}"#,
    ] {
        let vm = TestVm::new(options);
        let mut r = empty_result();
        let (st, took) =
            elapsed(|| unsafe { bioxen_vm_execute_file(vm.0, bigc.as_ptr(), 0, &mut r) });
        let msg = last_error();
        assert_eq!(st, INVALID, "{options}: {msg}");
        assert!(msg.contains("is too large: 3221225472 bytes"), "{msg}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    let grew = peak_rss_bytes().saturating_sub(before);
    assert!(grew < 256 << 20, "peak RSS grew by {grew} bytes");

    // The cap is the VM's memory_limit, at most 64 MiB.
    let vm = TestVm::new(r#"{"memory_limit": 1048576}"#);
    let ok = script_file(
        &dir.0,
        "ok.lua",
        &format!("return #'{}'", "x".repeat(100_000)),
    );
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_execute_file(vm.0, ok.as_ptr(), 0, &mut r) },
        OK,
        "{}",
        last_error()
    );
    assert_eq!(take_result(r).values, json!([100_000]));
    let over = script_file(&dir.0, "over.lua", &format!("-- {}", "x".repeat(1_048_577)));
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_execute_file(vm.0, over.as_ptr(), 0, &mut r) },
        INVALID
    );
    assert!(
        last_error().contains("at most 1048576 bytes"),
        "{}",
        last_error()
    );
    let unlimited = TestVm::new("{}");
    let at_cap = dir.0.join("cap.lua");
    std::fs::File::create(&at_cap)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let at_cap = c(at_cap.to_str().unwrap());
    assert_eq!(
        unsafe { bioxen_vm_execute_file(unlimited.0, at_cap.as_ptr(), 0, &mut r) },
        INVALID
    );
    assert!(
        last_error().contains("at most 67108864 bytes"),
        "{}",
        last_error()
    );

    // A file whose size says nothing (procfs reports 0 for its megabytes) is cut at the cap
    // as it is read.
    let vm = TestVm::new(r#"{"memory_limit": 262144}"#);
    let proc_file = "/proc/kallsyms";
    assert_eq!(std::fs::metadata(proc_file).unwrap().len(), 0);
    let pc = c(proc_file);
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_execute_file(vm.0, pc.as_ptr(), 0, &mut r) },
        INVALID
    );
    assert!(
        last_error().contains("too large: more than 262144 bytes"),
        "{}",
        last_error()
    );

    // What is not a regular file is refused at once, a FIFO included (opening one without
    // a writer would block).
    let fifo = dir.0.join("fifo.lua");
    let fifo_c = c(fifo.to_str().unwrap());
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    for p in [fifo_c.as_c_str(), c"/dev/zero", c"/"] {
        let mut r = empty_result();
        let (st, took) = elapsed(|| unsafe { bioxen_vm_execute_file(vm.0, p.as_ptr(), 0, &mut r) });
        assert_eq!(st, INVALID, "{p:?}: {}", last_error());
        assert!(last_error().contains("not a file"), "{}", last_error());
        assert!(took < Duration::from_millis(500));
    }

    // execute_temp_script refuses code past the cap before writing any file.
    let tmp_before: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    let code = format!("-- {}", "x".repeat(1 << 20));
    let small = TestVm::new(r#"{"memory_limit": 1048576}"#);
    let mut r = empty_result();
    assert_eq!(
        unsafe {
            bioxen_vm_execute_temp_script(small.0, code.as_ptr().cast(), code.len(), 0, &mut r)
        },
        INVALID
    );
    assert!(
        last_error().contains("code is too large"),
        "{}",
        last_error()
    );
    let tmp_after: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("bioxen_vm-") && !tmp_before.contains(n))
        .collect();
    assert!(tmp_after.is_empty(), "{tmp_after:?}");
}

#[test]
fn execute_file_deadline_covers_the_whole_call_and_names_the_limit() {
    let dir = TempDir::new("deadline");
    let spin = script_file(&dir.0, "spin.lua", "while true do end");
    let vm = TestVm::new("{}");
    let mut r = empty_result();
    let (st, took) =
        elapsed(|| unsafe { bioxen_vm_execute_file(vm.0, spin.as_ptr(), 300, &mut r) });
    assert_eq!(st, TIMEOUT);
    assert_eq!(last_error(), "Lua execution timed out after 0.3 seconds");
    assert!(took < Duration::from_millis(300 + 200), "{took:?}");
    let deflt = TestVm::new(r#"{"timeout": 0.2}"#);
    let (st, took) =
        elapsed(|| unsafe { bioxen_vm_execute_file(deflt.0, spin.as_ptr(), 0, &mut r) });
    assert_eq!(st, TIMEOUT);
    assert_eq!(last_error(), "Lua execution timed out after 0.2 seconds");
    assert!(took < Duration::from_millis(200 + 200), "{took:?}");
}

// ---------------------------------------------------------------------------------------
// Defects found by reading: vm_info of a process VM, NULL messages.
// ---------------------------------------------------------------------------------------

#[test]
fn manager_vm_info_reports_a_live_process_vm_as_running() {
    let m = Mgr::new("{}");
    m.vm(
        "p",
        r#"{"vm_type": "process", "lua_executable": "lua5.4", "persistent": true}"#,
    );
    m.vm("b", r#"{"persistent": true}"#);
    mexec(m.0, "p", "x = 1", 0).unwrap();
    let info = |id: &str| {
        let i = c(id);
        let mut b = bioxen_vm_bytes::empty();
        assert_eq!(
            unsafe { bioxen_vm_manager_vm_info(m.0, i.as_ptr(), &mut b) },
            OK
        );
        take_json(b)
    };
    let p = info("p");
    assert_eq!(p["process_running"], true, "{p}");
    assert!(p["pid"].as_u64().is_some(), "{p}");
    assert_eq!(info("b")["process_running"], false);
    let mut b = bioxen_vm_bytes::empty();
    assert_eq!(
        unsafe { bioxen_vm_manager_list_persistent_vms(m.0, &mut b) },
        OK
    );
    let list = take_json(b);
    assert_eq!(list["p"]["process_running"], true, "{list}");
    assert_eq!(list["b"]["process_running"], false, "{list}");
    // While code runs on it, the child is busy, still running.
    let j = m.submit(
        "p",
        "local t = os.clock() while os.clock() - t < 0.5 do end",
        0,
    );
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(info("p")["process_running"], true);
    job_wait(j, 10_000).unwrap();
    bioxen_vm_job_free(j);
    // A child that exited is not running.
    let r = mexec(m.0, "p", "os.exit(0)", 0).unwrap();
    assert!(!r.success);
    assert_eq!(info("p")["process_running"], false);
}

/// Every exported function with a required pointer, given NULL there: NULL_POINTER and
/// "<parameter> must not be NULL".
#[test]
fn every_null_pointer_is_named_by_its_parameter() {
    let m = Mgr::new("{}");
    m.vm("v", "{}");
    m.session("s");
    let vm = TestVm::new("{}");
    let job = m.submit("v", "return 1", 0);
    job_wait(job, 0).unwrap();
    let mut buffer = null_mut();
    assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut buffer) }, OK);
    let (id, s, code, pat, mode) = (c("v"), c("s"), "return 1", c("*"), c("client"));
    let (cp, cl) = (code.as_ptr().cast::<std::ffi::c_char>(), code.len());
    let mut r = empty_result();
    let mut b = bioxen_vm_bytes::empty();
    let mut h = 0u64;
    let mut flag = false;
    let mut n = 0usize;
    let mut st_ptr: *const std::ffi::c_char = null();
    let mut out: *const bioxen_vm_result = null();
    let (mr, mb, mh, mf, mn, ms, mo) = (
        &mut r as *mut _,
        &mut b as *mut _,
        &mut h as *mut _,
        &mut flag as *mut _,
        &mut n as *mut _,
        &mut st_ptr as *mut _,
        &mut out as *mut _,
    );
    let (mg, v) = (m.0, vm.0);
    // One call at a time: the message is read right after its own call.
    let check = |function: &str, param: &str, st: i32| {
        assert_eq!(
            st,
            NULL_POINTER,
            "{function}({param} = NULL): {}",
            status_name(st)
        );
        assert_eq!(
            last_error(),
            format!("{param} must not be NULL"),
            "{function}"
        );
    };
    unsafe {
        check("bioxen_vm_new", "out_vm", bioxen_vm_new(null(), null_mut()));
        check(
            "bioxen_vm_execute",
            "code",
            bioxen_vm_execute(v, null(), 3, null(), 0, mr),
        );
        check(
            "bioxen_vm_execute",
            "out_result",
            bioxen_vm_execute(v, cp, cl, null(), 0, null_mut()),
        );
        check(
            "bioxen_vm_execute_async",
            "code",
            bioxen_vm_execute_async(v, null(), 3, null(), 0, mh),
        );
        check(
            "bioxen_vm_execute_async",
            "out_job",
            bioxen_vm_execute_async(v, cp, cl, null(), 0, null_mut()),
        );
        check("bioxen_vm_info", "out_json", bioxen_vm_info(v, null_mut()));
        check(
            "bioxen_vm_execute_file",
            "script_path",
            bioxen_vm_execute_file(v, null(), 0, mr),
        );
        check(
            "bioxen_vm_execute_file",
            "out_result",
            bioxen_vm_execute_file(v, c"/nope".as_ptr(), 0, null_mut()),
        );
        check(
            "bioxen_vm_execute_temp_script",
            "code",
            bioxen_vm_execute_temp_script(v, null(), 3, 0, mr),
        );
        check(
            "bioxen_vm_execute_temp_script",
            "out_result",
            bioxen_vm_execute_temp_script(v, cp, cl, 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_execute_file",
            "vm_id",
            bioxen_vm_manager_execute_file(mg, null(), c"/x".as_ptr(), 0, mr),
        );
        check(
            "bioxen_vm_manager_execute_file",
            "script_path",
            bioxen_vm_manager_execute_file(mg, id.as_ptr(), null(), 0, mr),
        );
        check(
            "bioxen_vm_manager_execute_temp_script",
            "code",
            bioxen_vm_manager_execute_temp_script(mg, id.as_ptr(), null(), 3, 0, mr),
        );
        check(
            "bioxen_vm_execute_into",
            "buffer",
            bioxen_vm_execute_into(v, cp, cl, null(), 0, null_mut(), mo),
        );
        check(
            "bioxen_vm_execute_into",
            "out_result",
            bioxen_vm_execute_into(v, cp, cl, null(), 0, buffer, null_mut()),
        );
        check(
            "bioxen_vm_manager_execute_into",
            "vm_id",
            bioxen_vm_manager_execute_into(mg, null(), cp, cl, null(), 0, buffer, mo),
        );
        check(
            "bioxen_vm_result_buffer_new",
            "out_buffer",
            bioxen_vm_result_buffer_new(null_mut()),
        );
        check(
            "bioxen_vm_job_wait",
            "out_result",
            bioxen_vm_job_wait(job, 0, null_mut()),
        );
        check(
            "bioxen_vm_job_status",
            "out_status",
            bioxen_vm_job_status(job, null_mut()),
        );
        check(
            "bioxen_vm_job_on_done",
            "callback",
            bioxen_vm_job_on_done(job, None, null_mut()),
        );
        check(
            "bioxen_vm_manager_new",
            "out_manager",
            bioxen_vm_manager_new(null(), null_mut()),
        );
        check(
            "bioxen_vm_manager_create_vm",
            "vm_id",
            bioxen_vm_manager_create_vm(mg, null(), null()),
        );
        check(
            "bioxen_vm_manager_remove_vm",
            "vm_id",
            bioxen_vm_manager_remove_vm(mg, null()),
        );
        check(
            "bioxen_vm_manager_execute",
            "vm_id",
            bioxen_vm_manager_execute(mg, null(), cp, cl, null(), 0, mr),
        );
        check(
            "bioxen_vm_manager_execute",
            "code",
            bioxen_vm_manager_execute(mg, id.as_ptr(), null(), 3, null(), 0, mr),
        );
        check(
            "bioxen_vm_manager_execute",
            "out_result",
            bioxen_vm_manager_execute(mg, id.as_ptr(), cp, cl, null(), 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_execute_async",
            "vm_id",
            bioxen_vm_manager_execute_async(mg, null(), cp, cl, null(), 0, mh),
        );
        check(
            "bioxen_vm_manager_execute_async",
            "out_job",
            bioxen_vm_manager_execute_async(mg, id.as_ptr(), cp, cl, null(), 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_interrupt",
            "vm_id",
            bioxen_vm_manager_interrupt(mg, null(), mf),
        );
        check(
            "bioxen_vm_manager_vm_info",
            "vm_id",
            bioxen_vm_manager_vm_info(mg, null(), mb),
        );
        check(
            "bioxen_vm_manager_vm_info",
            "out_json",
            bioxen_vm_manager_vm_info(mg, id.as_ptr(), null_mut()),
        );
        check(
            "bioxen_vm_manager_list_vms",
            "out_json",
            bioxen_vm_manager_list_vms(mg, null_mut()),
        );
        check(
            "bioxen_vm_manager_stats",
            "out_json",
            bioxen_vm_manager_stats(mg, null_mut()),
        );
        check(
            "bioxen_vm_manager_wait_for_vm",
            "vm_id",
            bioxen_vm_manager_wait_for_vm(mg, null(), 0, mr),
        );
        check(
            "bioxen_vm_manager_wait_for_vm",
            "out_result",
            bioxen_vm_manager_wait_for_vm(mg, id.as_ptr(), 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_cancel_vm",
            "vm_id",
            bioxen_vm_manager_cancel_vm(mg, null(), mf),
        );
        check(
            "bioxen_vm_manager_vm_status",
            "vm_id",
            bioxen_vm_manager_vm_status(mg, null(), ms),
        );
        check(
            "bioxen_vm_manager_vm_status",
            "out_status",
            bioxen_vm_manager_vm_status(mg, id.as_ptr(), null_mut()),
        );
        check(
            "bioxen_vm_manager_create_cluster",
            "cluster_id",
            bioxen_vm_manager_create_cluster(mg, null(), 1, null(), mb),
        );
        check(
            "bioxen_vm_manager_create_cluster",
            "out_ids_json",
            bioxen_vm_manager_create_cluster(mg, c"k".as_ptr(), 1, null(), null_mut()),
        );
        check(
            "bioxen_vm_manager_create_interactive_cluster",
            "cluster_id",
            bioxen_vm_manager_create_interactive_cluster(mg, null(), 1, null(), mb),
        );
        check(
            "bioxen_vm_manager_broadcast",
            "pattern",
            bioxen_vm_manager_broadcast(mg, null(), cp, cl, null(), 0, mb),
        );
        check(
            "bioxen_vm_manager_broadcast",
            "code",
            bioxen_vm_manager_broadcast(mg, pat.as_ptr(), null(), 3, null(), 0, mb),
        );
        check(
            "bioxen_vm_manager_broadcast",
            "out_jobs_json",
            bioxen_vm_manager_broadcast(mg, pat.as_ptr(), cp, cl, null(), 0, null_mut()),
        );
        check(
            "bioxen_vm_wait_for_cluster",
            "jobs_json",
            bioxen_vm_wait_for_cluster(null(), 0, mb),
        );
        check(
            "bioxen_vm_wait_for_cluster",
            "out_results_json",
            bioxen_vm_wait_for_cluster(c"{}".as_ptr(), 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_cluster_status",
            "pattern",
            bioxen_vm_manager_cluster_status(mg, null(), mb),
        );
        check(
            "bioxen_vm_manager_cluster_status",
            "out_json",
            bioxen_vm_manager_cluster_status(mg, pat.as_ptr(), null_mut()),
        );
        check(
            "bioxen_vm_manager_cleanup_cluster",
            "pattern",
            bioxen_vm_manager_cleanup_cluster(mg, null(), mn),
        );
        check(
            "bioxen_vm_manager_broadcast_to_sessions",
            "pattern",
            bioxen_vm_manager_broadcast_to_sessions(mg, null(), cp, cl, 0, mb),
        );
        check(
            "bioxen_vm_manager_broadcast_to_sessions",
            "command",
            bioxen_vm_manager_broadcast_to_sessions(mg, pat.as_ptr(), null(), 3, 0, mb),
        );
        check(
            "bioxen_vm_manager_broadcast_to_sessions",
            "out_json",
            bioxen_vm_manager_broadcast_to_sessions(mg, pat.as_ptr(), cp, cl, 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_list_persistent_vms",
            "out_json",
            bioxen_vm_manager_list_persistent_vms(mg, null_mut()),
        );
        check(
            "bioxen_vm_net_run",
            "mode",
            bioxen_vm_net_run(v, null(), null(), 0, mr),
        );
        check(
            "bioxen_vm_net_run",
            "out_result",
            bioxen_vm_net_run(v, mode.as_ptr(), null(), 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_net_start",
            "vm_id",
            bioxen_vm_manager_net_start(mg, null(), mode.as_ptr(), null(), 0, mh),
        );
        check(
            "bioxen_vm_manager_net_start",
            "mode",
            bioxen_vm_manager_net_start(mg, id.as_ptr(), null(), null(), 0, mh),
        );
        check(
            "bioxen_vm_manager_net_start",
            "out_job",
            bioxen_vm_manager_net_start(mg, id.as_ptr(), mode.as_ptr(), null(), 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_setup_p2p_cluster",
            "cluster_id",
            bioxen_vm_manager_setup_p2p_cluster(mg, null(), 2, 40000, 1.0, 0.0, null(), mb),
        );
        check(
            "bioxen_vm_manager_setup_p2p_cluster",
            "out_jobs_json",
            bioxen_vm_manager_setup_p2p_cluster(
                mg,
                c"k".as_ptr(),
                2,
                40000,
                1.0,
                0.0,
                null(),
                null_mut(),
            ),
        );
        check(
            "bioxen_vm_validate_host",
            "host",
            bioxen_vm_validate_host(null()),
        );
        check(
            "bioxen_vm_script_template",
            "name",
            bioxen_vm_script_template(null(), null(), mb),
        );
        check(
            "bioxen_vm_script_template",
            "out_source",
            bioxen_vm_script_template(
                c"simple_echo_server".as_ptr(),
                c"{\"port\":40000}".as_ptr(),
                null_mut(),
            ),
        );
        check(
            "bioxen_vm_manager_create_interactive_vm",
            "vm_id",
            bioxen_vm_manager_create_interactive_vm(mg, null(), null(), false),
        );
        check(
            "bioxen_vm_manager_attach",
            "vm_id",
            bioxen_vm_manager_attach(mg, null(), None, null_mut()),
        );
        check(
            "bioxen_vm_manager_detach",
            "vm_id",
            bioxen_vm_manager_detach(mg, null()),
        );
        check(
            "bioxen_vm_manager_is_attached",
            "vm_id",
            bioxen_vm_manager_is_attached(mg, null(), mf),
        );
        check(
            "bioxen_vm_manager_is_attached",
            "out_attached",
            bioxen_vm_manager_is_attached(mg, s.as_ptr(), null_mut()),
        );
        check(
            "bioxen_vm_manager_send_input",
            "vm_id",
            bioxen_vm_manager_send_input(mg, null(), cp, cl),
        );
        check(
            "bioxen_vm_manager_send_input",
            "input",
            bioxen_vm_manager_send_input(mg, s.as_ptr(), null(), 3),
        );
        check(
            "bioxen_vm_manager_read_output",
            "vm_id",
            bioxen_vm_manager_read_output(mg, null(), 0, 0, mb, mf),
        );
        check(
            "bioxen_vm_manager_read_output",
            "out_output",
            bioxen_vm_manager_read_output(mg, s.as_ptr(), 0, 0, null_mut(), mf),
        );
        check(
            "bioxen_vm_manager_read_output",
            "out_has_output",
            bioxen_vm_manager_read_output(mg, s.as_ptr(), 0, 0, mb, null_mut()),
        );
        check(
            "bioxen_vm_manager_execute_interactive_command",
            "vm_id",
            bioxen_vm_manager_execute_interactive_command(mg, null(), cp, cl, 0, mb),
        );
        check(
            "bioxen_vm_manager_execute_interactive_command",
            "command",
            bioxen_vm_manager_execute_interactive_command(mg, s.as_ptr(), null(), 3, 0, mb),
        );
        check(
            "bioxen_vm_manager_execute_interactive_command",
            "out_output",
            bioxen_vm_manager_execute_interactive_command(mg, s.as_ptr(), cp, cl, 0, null_mut()),
        );
        check(
            "bioxen_vm_manager_interrupt_session",
            "vm_id",
            bioxen_vm_manager_interrupt_session(mg, null(), mf),
        );
        check(
            "bioxen_vm_manager_terminate_session",
            "vm_id",
            bioxen_vm_manager_terminate_session(mg, null()),
        );
        check(
            "bioxen_vm_manager_clone_session",
            "src_vm_id",
            bioxen_vm_manager_clone_session(mg, null(), c"d".as_ptr()),
        );
        check(
            "bioxen_vm_manager_clone_session",
            "dst_vm_id",
            bioxen_vm_manager_clone_session(mg, s.as_ptr(), null()),
        );
        check(
            "bioxen_vm_manager_list_sessions",
            "out_json",
            bioxen_vm_manager_list_sessions(mg, null_mut()),
        );
    }
    bioxen_vm_job_free(job);
    unsafe { bioxen_vm_result_buffer_free(buffer) };
}
