//! Callbacks handed to the library: job on-done callbacks and session output callbacks.
//!
//! `user_data` is a number naming a record in a process-wide table, never a pointer, so a
//! callback called twice or after its case ended is counted and reported, not undefined
//! behaviour. A call that arrives after its case ended is kept in `LATE` and reported by
//! the next case.

use crate::capi;
use crate::case::{Case, ExecFacts, JobRec, FAST, GRACE};
use crate::ops::Callback;
use crate::watch::{Behind, Key};
use bioxen_vm::bioxen_vm_status as S;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

/// One registration of an on-done callback.
pub struct DoneRec {
    case: Weak<Case>,
    pub job: Arc<JobRec>,
    /// None: the harness's own callback, which releases the job's ledger entry.
    action: Option<Callback>,
    /// The ledger entries to release when called.
    entries: Vec<u64>,
    pub calls: AtomicU32,
    /// Calls whose action has returned.
    pub finished: AtomicU32,
    /// 1 when the registration returned OK, else 0: it must never be called.
    pub expected: AtomicU32,
    pub what: String,
}

static DONE: LazyLock<Mutex<HashMap<u64, Arc<DoneRec>>>> = LazyLock::new(Default::default);
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Failures noticed by callbacks whose case had ended.
pub static LATE: LazyLock<Mutex<Vec<String>>> = LazyLock::new(Default::default);

/// What an action may take (it runs on a worker, holding up the next job of its lane).
pub fn action_budget(a: &Option<Callback>) -> Duration {
    match a {
        Some(Callback::WaitOther(_, t)) => Duration::from_millis(*t as u64) + QUICK,
        Some(Callback::FreeManager) => GRACE + FAST,
        _ => QUICK,
    }
}

/// What a callback that makes no waiting call may take.
const QUICK: Duration = Duration::from_millis(100);

/// Registers `action` (None: the harness's own, which releases `job_entry`, the job's
/// ledger entry) on `job`, or on `stale_handle` instead. Returns the status.
pub fn on_done(
    case: &Arc<Case>,
    job: &Arc<JobRec>,
    action: Option<Callback>,
    stale_handle: Option<u64>,
    job_entry: Option<u64>,
) -> (i32, String) {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let budget = action_budget(&action);
    let mut entries = vec![case.occupy(Key::Callback, budget)];
    entries.extend(job_entry);
    let what = format!("on_done({action:?}) of {}", job.desc);
    let rec = Arc::new(DoneRec {
        case: Arc::downgrade(case),
        job: job.clone(),
        action,
        entries: entries.clone(),
        calls: AtomicU32::new(0),
        finished: AtomicU32::new(0),
        expected: AtomicU32::new(1),
        what: what.clone(),
    });
    DONE.lock().insert(id, rec.clone());
    let handle = stale_handle.unwrap_or(job.handle);
    let w = case.watch(
        format!("bioxen_vm_job_on_done: {what}"),
        FAST + budget,
        Behind::Callbacks,
    );
    let st = capi::job_on_done(handle, job_done, id);
    drop(w);
    if st.0 != 0 {
        rec.expected.store(0, Ordering::SeqCst);
        for e in entries {
            case.mon.release(e);
        }
    }
    st
}

/// The records registered for `case`.
pub fn done_records(case: &Arc<Case>) -> Vec<Arc<DoneRec>> {
    DONE.lock()
        .values()
        .filter(|r| r.case.as_ptr() == Arc::as_ptr(case))
        .cloned()
        .collect()
}

/// Drops the records of cases that ended (their late calls can no longer be counted, so
/// only finished records are dropped).
pub fn forget_done(case: &Arc<Case>) {
    DONE.lock()
        .retain(|_, r| r.case.as_ptr() != Arc::as_ptr(case));
}

unsafe extern "C" fn job_done(job: u64, status: i32, user: *mut c_void) {
    let id = user as usize as u64;
    let rec = DONE.lock().get(&id).cloned();
    let Some(rec) = rec else {
        LATE.lock().push(format!(
            "an on-done callback was called for job {job:#x} (status {status}) after its case ended \
             or with a user_data it was never given"
        ));
        return;
    };
    let n = rec.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let Some(case) = rec.case.upgrade() else {
        LATE.lock()
            .push(format!("{} was called after its case ended", rec.what));
        return;
    };
    for e in &rec.entries {
        case.mon.release(*e);
    }
    if n > 1 {
        case.fail(format!(
            "CALLBACK CALLED TWICE: {} was called {n} times",
            rec.what
        ));
        return;
    }
    if rec.expected.load(Ordering::SeqCst) == 0 {
        case.fail(format!(
            "{} was called although its registration failed",
            rec.what
        ));
    }
    if job != rec.job.handle {
        case.fail(format!(
            "{} was called with job {job:#x} instead of {:#x}",
            rec.what, rec.job.handle
        ));
    }
    let what = || format!("on-done status of {}", rec.what);
    if status == S::WaitTimeout.code() {
        case.fail(format!(
            "{}: WAIT_TIMEOUT is no outcome of a finished job",
            what()
        ));
    }
    let facts = job_facts(&rec.job);
    case.check_exec_status(
        "bioxen_vm_job_wait",
        &what,
        &(status, String::new()),
        &facts,
    );
    if rec.action.is_none() {
        rec.job
            .outcomes
            .lock()
            .push(("on-done callback".into(), status));
    }
    run_action(&case, &rec, status);
    rec.finished.fetch_add(1, Ordering::SeqCst);
}

pub fn job_facts(j: &JobRec) -> ExecFacts {
    ExecFacts {
        timed: j.timed,
        short: j.short,
        spin: matches!(j.expect, crate::lua::Expect::Stops),
        raw: matches!(j.expect, crate::lua::Expect::Anything),
        oom: j.oom,
        bad_args: false,
        stale: false,
    }
}

fn run_action(case: &Arc<Case>, rec: &DoneRec, status: i32) {
    let j = &rec.job;
    match &rec.action {
        None | Some(Callback::Record) => {}
        Some(Callback::WaitSelf) => {
            let what = || format!("bioxen_vm_job_wait(own job, 0) inside {}", rec.what);
            let (st, res) = case.call("bioxen_vm_job_wait", &what, FAST, Behind::Nothing, || {
                capi::job_wait(j.handle, 0)
            });
            if st.0 == S::InvalidHandle.code() {
                return;
            }
            if st.0 != status {
                case.fail(format!(
                    "{}: the callback got {status}, the wait inside it {} ({})",
                    what(),
                    st.0,
                    st.1
                ));
            }
            if let Some(r) = res {
                case.check_result(&what, &j.token, &r, &j.expect, j.max_output);
            }
        }
        Some(Callback::WaitOther(n, t)) => {
            let Some(other) = case.job(*n) else { return };
            let what = || {
                format!(
                    "bioxen_vm_job_wait({}, {t}) inside {}",
                    other.desc, rec.what
                )
            };
            let (st, res) = case.call(
                "bioxen_vm_job_wait",
                &what,
                Duration::from_millis(*t as u64) + FAST,
                Behind::Nothing,
                || capi::job_wait(other.handle, *t as u64),
            );
            if st.0 != S::WaitTimeout.code() && st.0 != S::InvalidHandle.code() {
                case.check_exec_status("bioxen_vm_job_wait", &what, &st, &job_facts(&other));
            }
            if let Some(r) = res {
                case.check_result(&what, &other.token, &r, &other.expect, other.max_output);
            }
        }
        Some(Callback::FreeSelf) => {
            let what = || format!("bioxen_vm_job_free inside {}", rec.what);
            let st = case.call_st("bioxen_vm_job_free", &what, FAST, Behind::Nothing, || {
                capi::job_free(j.handle)
            });
            if st.0 == 0 {
                j.freed.store(true, Ordering::SeqCst);
                case.freed_ok(j.handle);
            }
        }
        Some(Callback::FreeManager) => {
            let Some((m, _)) = j.managed else { return };
            let what = || format!("bioxen_vm_manager_free inside {}", rec.what);
            let st = case.call_st(
                "bioxen_vm_manager_free",
                &what,
                GRACE + FAST,
                Behind::Nothing,
                || capi::manager_free(m),
            );
            if st.0 == 0 {
                case.freed_ok(m);
                case.clear_slot(m);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Session output callbacks.

pub struct OutRec {
    case: Weak<Case>,
    mgr: u64,
    id: u8,
    busy: AtomicBool,
}

static OUT: LazyLock<Mutex<HashMap<u64, Arc<OutRec>>>> = LazyLock::new(Default::default);

/// A callback for the session of `(mgr, id)`: its `user_data`.
pub fn output_callback(case: &Arc<Case>, mgr: u64, id: u8) -> (capi::OutputCallback, u64) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    OUT.lock().insert(
        n,
        Arc::new(OutRec {
            case: Arc::downgrade(case),
            mgr,
            id,
            busy: AtomicBool::new(false),
        }),
    );
    (session_output, n)
}

pub fn forget_outputs(case: &Arc<Case>) {
    OUT.lock()
        .retain(|_, r| r.case.as_ptr() != Arc::as_ptr(case));
}

unsafe extern "C" fn session_output(
    vm_id: *const c_char,
    stream: i32,
    data: *const c_char,
    len: usize,
    user: *mut c_void,
) {
    let rec = OUT.lock().get(&(user as usize as u64)).cloned();
    let Some(rec) = rec else {
        LATE.lock()
            .push("a session output callback was called after its case ended".into());
        return;
    };
    let Some(case) = rec.case.upgrade() else {
        LATE.lock()
            .push("a session output callback was called after its case ended".into());
        return;
    };
    if rec.busy.swap(true, Ordering::SeqCst) {
        case.fail(format!(
            "the output callback of session v{} was called concurrently with itself",
            rec.id
        ));
    }
    let id = if vm_id.is_null() {
        String::new()
    } else {
        CStr::from_ptr(vm_id).to_string_lossy().into_owned()
    };
    if id != format!("v{}", rec.id) {
        case.fail(format!(
            "the output callback of session v{} was called for {id:?}",
            rec.id
        ));
    }
    if stream != 1 && stream != 2 {
        case.fail(format!("the output callback got stream {stream}"));
    }
    let bytes = if len == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec()
    };
    case.check_session_output(
        &|| "the output callback".into(),
        rec.mgr,
        rec.id,
        &bytes,
        true,
    );
    rec.busy.store(false, Ordering::SeqCst);
}
