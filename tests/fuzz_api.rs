//! Property-based test of the C API: random sequences of calls on several threads, checked
//! against invariants; a failing sequence is shrunk to a minimal one and printed.
//!
//! Each case runs 1 to 4 threads of operations on a few standalone VMs, managers, jobs and
//! sessions: creating and freeing them (also while code runs on them), executing generated
//! Lua (values, errors, endless loops under timeouts, pcall, coroutines, prints, arguments)
//! directly, into result buffers and as jobs with callbacks, interrupting at random moments,
//! driving sessions, and calling with stale and wrong-kind handles and random bytes. It
//! asserts that
//! - no call returns PANIC, and every status is one its doc comment in the header lists;
//! - no call runs past its deadline plus a margin (a watch on every call; a hang fails the
//!   case with the call that hung);
//! - every result belongs to its call: each program prints and returns a token unique to
//!   its call, and its values, output and error are those the program must give;
//! - after everything is freed, every handle is invalid and was freed exactly once, every
//!   callback ran exactly once, and no thread or child process is left.
//!
//! Budget: `BIOXEN_FUZZ_CASES` cases with a fixed seed (default 150), then
//! `BIOXEN_FUZZ_RANDOM_CASES` with a random one (default 40; its seed is printed on
//! failure, and `BIOXEN_FUZZ_SEED` replays it). A longer run: `BIOXEN_FUZZ_SECONDS=600`
//! (random seeds until the time is up; it prints its counts at the end).
//! `BIOXEN_FUZZ_MARGIN_MS` (default 1000) is the margin past each deadline,
//! `BIOXEN_FUZZ_PROCESS_PERCENT` (default 4) how many VMs are `process` VMs,
//! `BIOXEN_FUZZ_SHRINK_SECONDS` (default 120) how long a failure is shrunk,
//! `BIOXEN_FUZZ_RUN_KNOWN` includes operations that hit known bugs (see `fuzz/known.rs`),
//! and `BIOXEN_FUZZ_IGNORE=text,text` drops failures whose message holds one of the texts.
//! Nothing is written to disk; nothing is printed unless a case fails or a long run was
//! asked for.

#[path = "fuzz/callbacks.rs"]
mod callbacks;
#[path = "fuzz/capi.rs"]
mod capi;
#[path = "fuzz/case.rs"]
mod case;
mod common;
#[path = "fuzz/exec.rs"]
mod exec;
#[path = "fuzz/known.rs"]
mod known;
#[path = "fuzz/leaks.rs"]
mod leaks;
#[path = "fuzz/lua.rs"]
mod lua;
#[path = "fuzz/ops.rs"]
mod ops;
#[path = "fuzz/runner.rs"]
mod runner;
#[path = "fuzz/statuses.rs"]
mod statuses;
#[path = "fuzz/watch.rs"]
mod watch;

use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file count the process's threads: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const FIXED_SEED: u64 = 0x6269_6f78_656e_0010;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

struct Settings {
    margin: Duration,
    process_percent: u32,
    shrink: Duration,
    known: known::Known,
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed.rotate_left(i as u32 * 17) ^ i as u64).to_le_bytes());
    }
    b
}

/// Runs `cases` cases from `seed`; on failure, the shrunk sequence and the seed.
fn run_batch(seed: u64, cases: u32, s: &Settings) -> Result<(), String> {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_time: s.shrink.as_millis() as u32,
        max_shrink_iters: 10_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let margin = s.margin;
    let bounds = !s.known.output_bounds;
    let strategy = ops::scenario(s.known, s.process_percent);
    // Failures depend on timing: once one is seen, each smaller candidate gets three tries,
    // so that shrinking keeps what fails only sometimes.
    let failed = std::sync::atomic::AtomicBool::new(false);
    match runner.run(&strategy, |scenario| {
        let tries = if failed.load(Ordering::Relaxed) { 3 } else { 1 };
        let mut r = Ok(());
        for _ in 0..tries {
            r = runner::run_case(&scenario, margin, bounds);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
                break;
            }
        }
        r.map_err(proptest::test_runner::TestCaseError::fail)
    }) {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, scenario)) => Err(format!(
            "a sequence of C API calls broke an invariant (seed {seed:#x}; replay with \
             BIOXEN_FUZZ_SEED={seed:#x} BIOXEN_FUZZ_CASES=0 BIOXEN_FUZZ_RANDOM_CASES={cases}).\n\
             Minimal sequence found (each thread runs its calls in order, the threads at \
             once):\n{scenario}\nWhat broke:\n  {why}"
        )),
        Err(TestError::Abort(why)) => Err(format!("the run stopped (seed {seed:#x}): {why}")),
    }
}

fn settings() -> Settings {
    Settings {
        margin: Duration::from_millis(env_u64("BIOXEN_FUZZ_MARGIN_MS", 1000)),
        process_percent: env_u64("BIOXEN_FUZZ_PROCESS_PERCENT", ops::PROCESS_PERCENT as u64) as u32,
        shrink: Duration::from_secs(env_u64("BIOXEN_FUZZ_SHRINK_SECONDS", 120)),
        known: known::Known::from_env(),
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[test]
fn random_call_sequences_keep_the_api_promises() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = settings();
    runner::warm_up();
    let start = Instant::now();
    let fixed = env_u64("BIOXEN_FUZZ_CASES", 150) as u32;
    let random = env_u64("BIOXEN_FUZZ_RANDOM_CASES", 40) as u32;
    let seconds = env_u64("BIOXEN_FUZZ_SECONDS", 0);
    if fixed > 0 {
        if let Err(e) = run_batch(FIXED_SEED, fixed, &s) {
            panic!("{e}");
        }
    }
    let replay = std::env::var("BIOXEN_FUZZ_SEED")
        .ok()
        .map(|_| env_u64("BIOXEN_FUZZ_SEED", 0));
    if random > 0 {
        let seed = replay.unwrap_or_else(random_seed);
        if let Err(e) = run_batch(seed, random, &s) {
            panic!("{e}");
        }
    }
    if seconds > 0 {
        while start.elapsed() < Duration::from_secs(seconds) {
            let seed = random_seed();
            if let Err(e) = run_batch(seed, 20, &s) {
                report(start);
                panic!("{e}");
            }
        }
        report(start);
    }
}

/// The counts of a long run (asked for with `BIOXEN_FUZZ_SECONDS`), on stderr.
fn report(start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    let st = &*runner::STATS;
    let (cases, calls, execs, checked) = (
        st.cases.load(Ordering::Relaxed),
        st.calls.load(Ordering::Relaxed),
        st.executions.load(Ordering::Relaxed),
        st.results_checked.load(Ordering::Relaxed),
    );
    let (over, worst) = watch::Monitor::get().worst.lock().clone();
    eprintln!(
        "fuzz_api: {cases} cases, {calls} C calls ({:.0}/s), {execs} Lua executions ({:.1}/s), \
         {checked} results compared in full with the model, in \
         {secs:.0} s; RSS {} MiB; {} failures ignored; largest lateness past the own budget of a \
         call that waited behind nothing {over:?}, by {worst}",
        calls as f64 / secs,
        execs as f64 / secs,
        leaks::rss_kib() / 1024,
        watch::IGNORED.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------
// The harness's own checks can fail: each is shown failing on a constructed bad outcome.
// (Their names start with `harness_`: the test runner names its threads after the tests,
// and the leak check ignores those threads.)

fn test_case() -> std::sync::Arc<case::Case> {
    runner::warm_up();
    static DOCS: std::sync::LazyLock<statuses::Documented> =
        std::sync::LazyLock::new(statuses::Documented::load);
    static STATS: std::sync::LazyLock<case::Stats> = std::sync::LazyLock::new(Default::default);
    let sc = ops::Scenario {
        setup: vec![],
        threads: vec![],
    };
    case::Case::new(
        u64::MAX / 2,
        watch::Monitor::get(),
        &DOCS,
        &STATS,
        &sc,
        Duration::from_millis(50),
        true,
    )
}

#[test]
fn harness_fails_a_call_that_overruns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = test_case();
    let w = c.watch(
        "a call that sleeps".into(),
        Duration::from_millis(20),
        watch::Behind::Nothing,
    );
    let t = Instant::now();
    while !c.sink.hung.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(w);
    let f = c.sink.failures.lock().clone();
    assert!(
        f.iter().any(|m| m.starts_with("HANG: a call that sleeps")),
        "{f:?}"
    );
    // Time spent behind other work on the VM is allowed.
    let c = test_case();
    let e = c.occupy(watch::Key::Vm(7), Duration::from_millis(300));
    let w = c.watch(
        "a call behind".into(),
        Duration::from_millis(20),
        watch::Behind::Vm(watch::Key::Vm(7)),
    );
    std::thread::sleep(Duration::from_millis(200));
    drop(w);
    c.mon.release(e);
    assert!(c.sink.failures.lock().is_empty());
    c.mon.forget_case(c.id);
}

#[test]
fn harness_fails_a_result_with_another_token_or_wrong_values() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = test_case();
    let prog = lua::Program::Bounded(
        vec![],
        lua::End::Return(vec![lua::Ret::One(lua::Val::Int(3))]),
    );
    let mine = c.token();
    let other = c.token();
    let r = prog.render(&mine, Some(&[]), false);
    let res = |tok: &str, v: &str| capi::RawRes {
        success: true,
        return_code: 0,
        stdout: format!("{mine}\n{tok}\t3\n").into_bytes(),
        stderr: vec![],
        values: format!("[\"{tok}\",{v}]").into_bytes(),
        error: vec![],
        dropped: 0,
    };
    c.check_result(
        &|| "right".into(),
        &mine,
        &res(&mine, "3"),
        &r.expect,
        1 << 20,
    );
    assert!(
        c.sink.failures.lock().is_empty(),
        "{:?}",
        c.sink.failures.lock()
    );
    c.check_result(
        &|| "wrong value".into(),
        &mine,
        &res(&mine, "4"),
        &r.expect,
        1 << 20,
    );
    assert_eq!(c.sink.failures.lock().len(), 1);
    c.check_result(
        &|| "shifted".into(),
        &mine,
        &res(&other, "3"),
        &r.expect,
        1 << 20,
    );
    let f = c.sink.failures.lock().clone();
    assert!(f[1].starts_with("RESULT OF ANOTHER CALL"), "{f:?}");
    c.check_result(
        &|| "too long".into(),
        &mine,
        &res(&mine, "3"),
        &r.expect,
        20,
    );
    assert!(c.sink.failures.lock()[2].contains("OUTPUT BOUND"));
}

#[test]
fn harness_fails_undocumented_statuses_and_panics() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = test_case();
    let what = || "a call".to_string();
    c.check_documented("bioxen_vm_job_free", &what, &(0, String::new()));
    c.check_documented("bioxen_vm_job_free", &what, &(3, String::new()));
    assert!(c.sink.failures.lock().is_empty());
    c.check_documented("bioxen_vm_job_free", &what, &(6, "timeout".into()));
    c.check_documented("bioxen_vm_job_free", &what, &(9, "boom".into()));
    let f = c.sink.failures.lock().clone();
    assert!(f[0].contains("does not list"), "{f:?}");
    assert!(f[1].starts_with("PANIC"), "{f:?}");
    // References are followed: a manager's execute has the statuses of execute.
    let d = statuses::Documented::load();
    assert!(d.of("bioxen_vm_manager_execute").contains(&6));
    assert!(d.of("bioxen_vm_manager_execute").contains(&14));
    assert!(d.of("bioxen_vm_job_wait").contains(&8));
}

#[test]
fn harness_sees_a_thread_or_child_left_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = leaks::threads();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name("left-behind".into())
        .spawn(move || {
            // Running (and so named) from here on.
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(400))
        })
        .unwrap();
    rx.recv().unwrap();
    let left = leaks::wait_clean(&baseline, Duration::from_millis(50));
    assert!(left.iter().any(|l| l.contains("(left-behind)")), "{left:?}");
    t.join().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let left = leaks::wait_clean(&baseline, Duration::from_millis(50));
    assert!(left.iter().any(|l| l.contains("child process")), "{left:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    // Once gone, neither is reported (other tests' threads may come and go meanwhile).
    let left = leaks::wait_clean(&baseline, Duration::from_millis(50));
    assert!(
        !left
            .iter()
            .any(|l| l.contains("(left-behind)") || l.contains("child process")),
        "{left:?}"
    );
}
