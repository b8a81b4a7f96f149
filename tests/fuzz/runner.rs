//! Running a case: its threads, then freeing everything it made and checking that nothing
//! is left (handles, callbacks, threads, child processes).

use crate::callbacks::{self, LATE};
use crate::capi;
use crate::case::{Case, Kind, Stats, FAST, GRACE, SETTLE};
use crate::exec::Worker;
use crate::leaks;
use crate::ops::Scenario;
use crate::statuses::Documented;
use crate::watch::{Behind, Monitor};
use bioxen_vm::bioxen_vm_status as S;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

static DOCS: LazyLock<Documented> = LazyLock::new(Documented::load);
pub static STATS: LazyLock<Stats> = LazyLock::new(Stats::default);
static NEXT_CASE: AtomicU64 = AtomicU64::new(1);
/// Set once a case hung: its threads may still be running, so later cases cannot tell
/// their own leftovers from its.
pub static TAINTED: AtomicBool = AtomicBool::new(false);
/// A case that runs longer than this fails (a backstop behind the per-call watches).
const CASE_LIMIT: Duration = Duration::from_secs(180);

/// Starts what stays for the whole process before any case measures its threads: the
/// monitor, the watchdog, and all workers of the pool standalone VMs share.
pub fn warm_up() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        Monitor::get();
        LazyLock::force(&DOCS);
        let vms: Vec<u64> = (0..bioxen_vm::manager::DEFAULT_MAX_WORKERS)
            .map(|_| {
                let (st, h) = capi::vm_new("{}");
                assert_eq!(st.0, 0, "{}", st.1);
                h
            })
            .collect();
        let jobs: Vec<u64> = vms
            .iter()
            .map(|vm| {
                let (st, j) = capi::execute_async(None, *vm, b"while true do end", &None, 300);
                assert_eq!(st.0, 0, "{}", st.1);
                j
            })
            .collect();
        for j in jobs {
            let (st, _) = capi::job_wait(j, 0);
            assert_eq!(st.0, S::Timeout as i32, "{}", st.1);
            capi::job_free(j);
        }
        for vm in vms {
            capi::vm_free(vm);
        }
    });
}

/// Runs `scenario` as one case; the failures, if any.
pub fn run_case(scenario: &Scenario, margin: Duration, check_bounds: bool) -> Result<(), String> {
    let id = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
    let mon = Monitor::get();
    let case = Case::new(id, mon, &DOCS, &STATS, scenario, margin, check_bounds);
    let baseline = leaks::threads();
    let done = Arc::new(AtomicBool::new(false));
    let runner = {
        let case = case.clone();
        let scenario = scenario.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-case-{id}"))
            .spawn(move || {
                run_threads(&case, &scenario);
                if !case.sink.hung.load(Ordering::SeqCst) {
                    clean_up(&case, &baseline);
                }
                done.store(true, Ordering::SeqCst);
            })
            .expect("case thread")
    };
    let start = Instant::now();
    while !done.load(Ordering::SeqCst) && !case.sink.hung.load(Ordering::SeqCst) {
        if start.elapsed() > CASE_LIMIT {
            case.fail(format!("the case did not finish within {CASE_LIMIT:?}"));
            case.sink.hung.store(true, Ordering::SeqCst);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if std::env::var_os("BIOXEN_FUZZ_TRACE").is_some() {
        eprintln!(
            "case {id}: {:?}, {} threads, {} ops, RSS {} KiB",
            start.elapsed(),
            scenario.threads.len(),
            scenario.ops().count(),
            leaks::rss_kib()
        );
    }
    let hung = case.sink.hung.load(Ordering::SeqCst);
    if hung {
        TAINTED.store(true, Ordering::SeqCst);
    } else {
        let _ = runner.join();
        mon.forget_case(id);
        callbacks::forget_done(&case);
        callbacks::forget_outputs(&case);
    }
    STATS.cases.fetch_add(1, Ordering::Relaxed);
    let mut failures = case.sink.failures.lock().clone();
    if !TAINTED.load(Ordering::SeqCst) {
        failures.extend(LATE.lock().drain(..));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n  "))
    }
}

fn run_threads(case: &Arc<Case>, scenario: &Scenario) {
    let mut first = Worker::new(case.clone());
    for op in &scenario.setup {
        first.run(op);
    }
    let threads: Vec<_> = scenario
        .threads
        .iter()
        .enumerate()
        .map(|(t, ops)| {
            let case = case.clone();
            let ops = ops.clone();
            std::thread::Builder::new()
                .name(format!("fuzz-{}-{t}", case.id))
                .spawn(move || {
                    let mut w = Worker::new(case.clone());
                    for (i, op) in ops.iter().enumerate() {
                        if case.sink.hung.load(Ordering::SeqCst) {
                            return;
                        }
                        let r =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run(op)));
                        if let Err(p) = r {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            case.fail(format!(
                                "the harness panicked in thread {t} op {i} ({op}): {msg}"
                            ));
                        }
                    }
                })
                .expect("case thread")
        })
        .collect();
    for t in threads {
        // A thread that hung is left behind; the monitor has failed the case.
        while !t.is_finished() {
            if case.sink.hung.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = t.join();
    }
}

/// Frees everything the case made, then checks that nothing is left.
fn clean_up(case: &Arc<Case>, baseline: &std::collections::BTreeMap<u32, String>) {
    let w = Worker::new(case.clone());
    // Objects still live: every handle made and never freed.
    for (h, kind, frees) in case.all_handles() {
        if frees > 0 {
            continue;
        }
        match kind {
            Kind::Vm => w.free_vm(h),
            Kind::Manager => w.free_manager(h),
            Kind::Job => {}
        }
    }
    // Every job ends once its VM is gone: wait for it, then free it.
    for j in case.jobs() {
        if j.freed.load(Ordering::SeqCst) {
            continue;
        }
        let what = || format!("bioxen_vm_job_wait({}, 0) at the end of the case", j.desc);
        let (st, res) = case.call(
            "bioxen_vm_job_wait",
            &what,
            j.budget + GRACE,
            Behind::All,
            || capi::job_wait(j.handle, 0),
        );
        w.check_wait(&j, &st, &what, 0, false);
        if let Some(r) = res {
            case.check_result(&what, &j.token, &r, &j.expect, j.max_output);
        }
        w.free_job(&j);
    }
    // Callbacks: each registration that succeeded is called exactly once.
    let records = callbacks::done_records(case);
    let start = Instant::now();
    while records
        .iter()
        .any(|r| r.finished.load(Ordering::SeqCst) < r.expected.load(Ordering::SeqCst))
        && start.elapsed() < SETTLE
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    for r in &records {
        let (calls, want) = (
            r.calls.load(Ordering::SeqCst),
            r.expected.load(Ordering::SeqCst),
        );
        if calls != want {
            case.fail(format!(
                "CALLBACK: {} was called {calls} times, {want} expected ({SETTLE:?} after everything was freed)",
                r.what
            ));
        }
    }
    // A finished job has one outcome, whoever looks.
    for j in case.jobs() {
        let o = j.outcomes.lock();
        if let Some((first_what, first)) = o.first() {
            for (what, st) in o.iter().skip(1) {
                if st != first {
                    case.fail(format!(
                        "JOB OUTCOME DIFFERS for {}: {first_what} saw {first}, {what} saw {st}",
                        j.desc
                    ));
                }
            }
        }
    }
    // Every handle was freed exactly once and is invalid now.
    for (h, kind, frees) in case.all_handles() {
        if frees != 1 {
            case.fail(format!(
                "the {kind:?} handle {h:#x} was freed {frees} times (exactly once expected)"
            ));
        }
        let watch = case.watch(
            format!("checking that {h:#x} is invalid"),
            FAST,
            Behind::Nothing,
        );
        let st = match kind {
            Kind::Vm => capi::vm_info(h).0,
            Kind::Manager => capi::manager_json(h, 0).0,
            Kind::Job => capi::job_status(h).0,
        };
        drop(watch);
        if st.0 != S::InvalidHandle as i32 {
            case.fail(format!(
                "LEAKED HANDLE: the freed {kind:?} handle {h:#x} still answers {} ({})",
                st.0, st.1
            ));
        }
    }
    if !TAINTED.load(Ordering::SeqCst) {
        let left = leaks::wait_clean(baseline, SETTLE);
        if !left.is_empty() {
            case.fail(format!(
                "LEFT BEHIND {SETTLE:?} after everything was freed: {}",
                left.join(", ")
            ));
        }
    }
}
