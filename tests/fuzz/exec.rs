//! Running one operation of a case on a case thread: the C calls, under their watches, and
//! the checks of what they return.

use crate::callbacks::{self, job_facts};
use crate::capi::{self, cstr, Buffer};
use crate::case::{
    tokens_in, Case, ExecFacts, JobRec, Kind, Owner, BOUNDED, FAST, GRACE, PROCESS_START,
};
use crate::lua::{Line, Program};
use crate::ops::{Bad, Op, StaleCall, Target, VmOpts, IDS};
use crate::watch::{Behind, Key};
use bioxen_vm::bioxen_vm_status as S;
use std::ffi::CString;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INVALID_HANDLE: i32 = S::InvalidHandle as i32;

/// A case thread.
pub struct Worker {
    pub case: Arc<Case>,
    buffer: Option<Buffer>,
}

/// Where an execution goes.
struct Resolved {
    /// Manager handle and id, or None for a standalone VM.
    managed: Option<(u64, u8, CString)>,
    vm: u64,
    opts: VmOpts,
    key: Key,
    stale: bool,
    name: String,
}

fn ms(t: u64) -> Duration {
    Duration::from_millis(t.min(24 * 3_600_000))
}

/// A timeout the harness can wait out: from 1 ms to a minute. 0 ("no limit") and longer
/// ones are treated as waits until the work is done.
fn finite(t: u64) -> Option<Duration> {
    (1..=60_000).contains(&t).then(|| Duration::from_millis(t))
}

fn id_c(id: u8) -> CString {
    cstr(&format!("v{id}"))
}

impl Worker {
    pub fn new(case: Arc<Case>) -> Worker {
        Worker { case, buffer: None }
    }

    fn resolve(&self, t: &Target) -> Option<Resolved> {
        match t {
            Target::Vm(slot) => {
                let (h, opts) = self.case.vm(*slot)?;
                Some(Resolved {
                    managed: None,
                    vm: h,
                    key: Key::Vm(h),
                    stale: self.case.is_freed(h),
                    name: format!("vm[{slot}] ({h:#x})"),
                    opts,
                })
            }
            Target::Managed(m, id) => {
                let (h, mopts) = self.case.manager(*m)?;
                Some(Resolved {
                    managed: Some((h, *id, id_c(*id))),
                    vm: 0,
                    key: Key::Managed(h, *id),
                    stale: self.case.is_freed(h),
                    name: format!("mgr[{m}] ({h:#x}) v{id}"),
                    opts: mopts.vm,
                })
            }
        }
    }

    pub fn run(&mut self, op: &Op) {
        let case = self.case.clone();
        match op {
            Op::NewVm { slot, opts } => {
                let what = || format!("bioxen_vm_new({})", opts.json());
                let budget = if opts.process {
                    FAST + PROCESS_START
                } else {
                    FAST
                };
                let (st, h) = case.call("bioxen_vm_new", &what, budget, Behind::Nothing, || {
                    capi::vm_new(&opts.json())
                });
                if st.0 != 0 {
                    case.fail(format!("{} failed for valid options: {}", what(), st.1));
                    return;
                }
                if let Some(old) = case.put_vm(*slot, h, opts.clone()) {
                    self.free_vm(old);
                }
            }
            Op::FreeVm { slot } => {
                if let Some((h, _)) = case.vm(*slot) {
                    self.free_vm(h);
                }
            }
            Op::NewManager { slot, opts } => {
                let what = || format!("bioxen_vm_manager_new({})", opts.json());
                let (st, h) = case.call(
                    "bioxen_vm_manager_new",
                    &what,
                    FAST,
                    Behind::Nothing,
                    || capi::manager_new(&opts.json()),
                );
                if st.0 != 0 {
                    case.fail(format!("{} failed for valid options: {}", what(), st.1));
                    return;
                }
                if let Some(old) = case.put_manager(*slot, h, opts.clone()) {
                    self.free_manager(old);
                }
            }
            Op::FreeManager { slot } => {
                if let Some((h, _)) = case.manager(*slot) {
                    self.free_manager(h);
                }
            }
            Op::CreateVm { mgr, id } => {
                self.create_managed(*mgr, *id, None);
            }
            Op::RemoveVm { mgr, id } => self.managed_call(
                *mgr,
                *id,
                "bioxen_vm_manager_remove_vm",
                Behind::Callbacks,
                capi::remove_vm,
            ),
            Op::Execute {
                target,
                prog,
                timeout,
                args,
                into,
            } => self.execute(target, prog, *timeout, args, *into),
            Op::Submit {
                target,
                prog,
                timeout,
                args,
                on_done,
            } => self.submit(target, prog, *timeout, args, on_done),
            Op::Wait { job, timeout } => self.wait(*job, *timeout),
            Op::Cancel { job } => {
                let Some(j) = case.job(*job) else { return };
                let stale = j.freed.load(Ordering::SeqCst);
                let what = || format!("bioxen_vm_job_cancel({})", j.desc);
                let st = case.call_st(
                    "bioxen_vm_job_cancel",
                    &what,
                    FAST,
                    Behind::Callbacks,
                    || capi::job_cancel(j.handle),
                );
                self.stale_rule(stale, &st, &what);
            }
            Op::OnDone { job, cb } => {
                let Some(j) = case.job(*job) else { return };
                let stale = j.freed.load(Ordering::SeqCst);
                let st = callbacks::on_done(&case, &j, Some(cb.clone()), None, None);
                let what = || format!("bioxen_vm_job_on_done({}, {cb:?})", j.desc);
                case.check_documented("bioxen_vm_job_on_done", &what, &st);
                self.stale_rule(stale, &st, &what);
            }
            Op::JobStatus { job } => {
                let Some(j) = case.job(*job) else { return };
                let stale = j.freed.load(Ordering::SeqCst);
                let what = || format!("bioxen_vm_job_status({})", j.desc);
                let (st, s) =
                    case.call("bioxen_vm_job_status", &what, FAST, Behind::Nothing, || {
                        capi::job_status(j.handle)
                    });
                self.stale_rule(stale, &st, &what);
                if st.0 == 0 && !["running", "done", "cancelled"].contains(&s.as_str()) {
                    case.fail(format!("{} wrote {s:?}", what()));
                }
            }
            Op::FreeJob { job } => {
                let Some(j) = case.job(*job) else { return };
                self.free_job(&j);
            }
            Op::WaitForVm { mgr, id, timeout } => self.wait_for_vm(*mgr, *id, *timeout),
            Op::CancelVm { mgr, id } => self.managed_call(
                *mgr,
                *id,
                "bioxen_vm_manager_cancel_vm",
                Behind::Callbacks,
                capi::cancel_vm,
            ),
            Op::VmStatus { mgr, id } => {
                let Some((h, _)) = case.manager(*mgr) else {
                    return;
                };
                let what = || format!("bioxen_vm_manager_vm_status({h:#x}, v{id})");
                let (st, s) = case.call(
                    "bioxen_vm_manager_vm_status",
                    &what,
                    FAST,
                    Behind::Nothing,
                    || capi::vm_status(h, &id_c(*id)),
                );
                if st.0 == 0 && !["idle", "running", "done", "cancelled"].contains(&s.as_str()) {
                    case.fail(format!("{} wrote {s:?}", what()));
                }
            }
            Op::Interrupt { target, delay_ms } => {
                std::thread::sleep(Duration::from_millis(*delay_ms as u64));
                let Some(r) = self.resolve(target) else {
                    return;
                };
                let what = || format!("interrupt({})", r.name);
                match &r.managed {
                    None => {
                        case.call_st("bioxen_vm_interrupt", &what, FAST, Behind::Nothing, || {
                            capi::interrupt(r.vm)
                        })
                    }
                    Some((m, _, id)) => case.call_st(
                        "bioxen_vm_manager_interrupt",
                        &what,
                        FAST,
                        Behind::Nothing,
                        || capi::manager_interrupt(*m, id),
                    ),
                };
            }
            Op::Info { target } => {
                let Some(r) = self.resolve(target) else {
                    return;
                };
                let what = || format!("info({})", r.name);
                let (st, json) = match &r.managed {
                    None => case.call("bioxen_vm_info", &what, FAST, Behind::Nothing, || {
                        capi::vm_info(r.vm)
                    }),
                    Some((m, _, id)) => case.call(
                        "bioxen_vm_manager_vm_info",
                        &what,
                        FAST,
                        Behind::Nothing,
                        || capi::manager_vm_info(*m, id),
                    ),
                };
                self.stale_rule(r.stale, &st, &what);
                if st.0 == 0
                    && !serde_json::from_slice::<serde_json::Value>(&json)
                        .is_ok_and(|v| v.is_object())
                {
                    case.fail(format!(
                        "{} wrote no JSON object: {}",
                        what(),
                        crate::case::show(&json)
                    ));
                }
            }
            Op::CreateSession {
                mgr,
                id,
                attach,
                callback,
            } => {
                if let Some(h) = self.create_managed(*mgr, *id, Some(*attach)) {
                    if *callback {
                        if *attach {
                            self.detach(h, *id);
                        }
                        self.attach(h, *id, true);
                    }
                }
            }
            Op::Attach { mgr, id, callback } => {
                let Some((h, _)) = case.manager(*mgr) else {
                    return;
                };
                self.attach(h, *id, *callback);
            }
            Op::Detach { mgr, id } => {
                let Some((h, _)) = case.manager(*mgr) else {
                    return;
                };
                self.detach(h, *id);
            }
            Op::IsAttached { mgr, id } => self.managed_call(
                *mgr,
                *id,
                "bioxen_vm_manager_is_attached",
                Behind::Nothing,
                capi::is_attached,
            ),
            Op::SendInput { mgr, id, lines } => self.send_input(*mgr, *id, lines),
            Op::ReadOutput {
                mgr,
                id,
                timeout,
                flags,
            } => self.read_output(*mgr, *id, *timeout, *flags),
            Op::Command {
                mgr,
                id,
                line,
                timeout,
            } => self.command(*mgr, *id, line, *timeout),
            Op::Broadcast { mgr, line, timeout } => self.broadcast(*mgr, line, *timeout),
            Op::InterruptSession { mgr, id, delay_ms } => {
                std::thread::sleep(Duration::from_millis(*delay_ms as u64));
                self.managed_call(
                    *mgr,
                    *id,
                    "bioxen_vm_manager_interrupt_session",
                    Behind::Nothing,
                    capi::interrupt_session,
                )
            }
            Op::TerminateSession { mgr, id } => self.managed_call(
                *mgr,
                *id,
                "bioxen_vm_manager_terminate_session",
                Behind::Nothing,
                capi::terminate_session,
            ),
            Op::CloneSession { mgr, src, dst } => {
                let Some((h, mo)) = case.manager(*mgr) else {
                    return;
                };
                let what = || format!("bioxen_vm_manager_clone_session({h:#x}, v{src}, v{dst})");
                let budget = if mo.vm.process {
                    FAST + PROCESS_START
                } else {
                    FAST
                };
                case.call_st(
                    "bioxen_vm_manager_clone_session",
                    &what,
                    budget,
                    Behind::Nothing,
                    || capi::clone_session(h, &id_c(*src), &id_c(*dst)),
                );
            }
            Op::ListSessions { mgr } => {
                let Some((h, _)) = case.manager(*mgr) else {
                    return;
                };
                self.prune_sessions(h);
            }
            Op::ShutdownAll { mgr } => {
                let Some((h, _)) = case.manager(*mgr) else {
                    return;
                };
                let what = || format!("bioxen_vm_manager_shutdown_all({h:#x})");
                case.call_st(
                    "bioxen_vm_manager_shutdown_all",
                    &what,
                    FAST,
                    Behind::Callbacks,
                    || capi::shutdown_all(h),
                );
            }
            Op::Stats { mgr } => {
                let Some((h, _)) = case.manager(*mgr) else {
                    return;
                };
                for (which, func) in [
                    (0, "bioxen_vm_manager_stats"),
                    (1, "bioxen_vm_manager_list_vms"),
                    (2, "bioxen_vm_manager_list_persistent_vms"),
                ] {
                    let what = || format!("{func}({h:#x})");
                    let (st, json) = case.call(func, &what, FAST, Behind::Nothing, || {
                        capi::manager_json(h, which)
                    });
                    if st.0 == 0 && serde_json::from_slice::<serde_json::Value>(&json).is_err() {
                        case.fail(format!(
                            "{} wrote no JSON: {}",
                            what(),
                            crate::case::show(&json)
                        ));
                    }
                }
            }
            Op::Stale { call, handle } => self.stale(call, handle),
            Op::RenewBuffer => {
                self.buffer = Some(Buffer::new());
            }
            Op::Pause { ms } => std::thread::sleep(Duration::from_millis(*ms as u64)),
        }
    }

    /// Creates the VM `id` in the manager in slot `mgr`, with a session (attached or not)
    /// when `session` is given. The manager's handle, when the VM was created.
    fn create_managed(&self, mgr: u8, id: u8, session: Option<bool>) -> Option<u64> {
        let case = &self.case;
        let (h, mo) = case.manager(mgr)?;
        let opts = mo.vm_json();
        let func = if session.is_some() {
            "bioxen_vm_manager_create_interactive_vm"
        } else {
            "bioxen_vm_manager_create_vm"
        };
        let what = || format!("{func}({h:#x}, v{id}, {opts}, auto_attach {session:?})");
        let budget = if mo.vm.process {
            FAST + PROCESS_START
        } else {
            FAST
        };
        let st = case.call_st(func, &what, budget, Behind::Nothing, || match session {
            None => capi::create_vm(h, &id_c(id), &opts),
            Some(attach) => capi::create_interactive_vm(h, &id_c(id), &opts, attach),
        });
        let fine = [0, S::VmAlreadyExists as i32, INVALID_HANDLE];
        if !fine.contains(&st.0) {
            case.fail(format!(
                "{} failed for valid options: {} ({})",
                what(),
                st.0,
                st.1
            ));
        }
        (st.0 == 0).then_some(h)
    }

    /// A call of `func` on the manager in slot `mgr` and its VM id `id` that only returns a
    /// status and waits for nothing but `behind`.
    fn managed_call(
        &self,
        mgr: u8,
        id: u8,
        func: &'static str,
        behind: Behind,
        f: impl FnOnce(u64, &std::ffi::CStr) -> (i32, String),
    ) {
        let Some((h, _)) = self.case.manager(mgr) else {
            return;
        };
        let what = || format!("{func}({h:#x}, v{id})");
        self.case
            .call_st(func, &what, FAST, behind, || f(h, &id_c(id)));
    }

    /// A handle freed before a call must give INVALID_HANDLE (handles are never reused).
    fn stale_rule(&self, stale: bool, st: &(i32, String), what: &dyn Fn() -> String) {
        if stale && st.0 != INVALID_HANDLE {
            self.case.fail(format!(
                "STALE HANDLE ACCEPTED: {} returned {} ({}) for a handle freed before the call",
                what(),
                crate::common::status_name(st.0),
                st.1
            ));
        }
    }

    pub fn free_vm(&self, h: u64) {
        let case = &self.case;
        let stale = case.is_freed(h);
        let what = || format!("bioxen_vm_free({h:#x})");
        let st = case.call_st("bioxen_vm_free", &what, FAST, Behind::Callbacks, || {
            capi::vm_free(h)
        });
        self.stale_rule(stale, &st, &what);
        if st.0 == 0 {
            case.freed_ok(h);
            case.clear_slot(h);
        }
    }

    pub fn free_manager(&self, h: u64) {
        let case = &self.case;
        let stale = case.is_freed(h);
        let what = || format!("bioxen_vm_manager_free({h:#x})");
        let st = case.call_st(
            "bioxen_vm_manager_free",
            &what,
            GRACE + FAST,
            Behind::Callbacks,
            || capi::manager_free(h),
        );
        self.stale_rule(stale, &st, &what);
        if st.0 == 0 {
            case.freed_ok(h);
            case.clear_slot(h);
        }
    }

    pub fn free_job(&self, j: &JobRec) {
        let case = &self.case;
        let stale = j.freed.load(Ordering::SeqCst);
        let what = || format!("bioxen_vm_job_free({})", j.desc);
        let st = case.call_st("bioxen_vm_job_free", &what, FAST, Behind::Nothing, || {
            capi::job_free(j.handle)
        });
        self.stale_rule(stale, &st, &what);
        if st.0 == 0 {
            j.freed.store(true, Ordering::SeqCst);
            case.freed_ok(j.handle);
        }
    }

    fn execute(
        &mut self,
        target: &Target,
        prog: &Program,
        timeout: u64,
        args: &crate::lua::Args,
        into: bool,
    ) {
        let case = self.case.clone();
        let Some(r) = self.resolve(target) else {
            return;
        };
        let p = case.plan(prog, timeout, args, &r.opts);
        let func = match (&r.managed, into) {
            (None, false) => "bioxen_vm_execute",
            (None, true) => "bioxen_vm_execute_into",
            (Some(_), false) => "bioxen_vm_manager_execute",
            (Some(_), true) => "bioxen_vm_manager_execute_into",
        };
        let what = || {
            format!(
                "{func}({}, timeout_ms {}) of {:?} [token {}]",
                r.name,
                p.timeout,
                crate::case::show(&p.code),
                p.token
            )
        };
        case.own_token(&p.token, Owner::Call(what()));
        let w = case.watch(what(), p.budget, Behind::Vm(r.key.clone()));
        let entry = case.occupy_own(r.key.clone(), p.budget, &w);
        case.stats.executions.fetch_add(1, Ordering::Relaxed);
        let (st, res) = if into {
            let buf = self.buffer.get_or_insert_with(Buffer::new);
            let m = r.managed.as_ref().map(|(m, _, id)| (*m, id.as_c_str()));
            capi::execute_into(m, r.vm, &p.code, &p.args, p.timeout, buf)
        } else {
            match &r.managed {
                None => capi::execute(r.vm, &p.code, &p.args, p.timeout),
                Some((m, _, id)) => capi::manager_execute(*m, id, &p.code, &p.args, p.timeout),
            }
        };
        drop(w);
        case.mon.release(entry);
        let facts = ExecFacts::of(&p, prog, r.stale);
        case.check_exec_status(func, &what, &st, &facts);
        if let Some(res) = res {
            case.check_result(&what, &p.token, &res, &p.expect, r.opts.max_output_bytes());
        }
    }

    fn submit(
        &mut self,
        target: &Target,
        prog: &Program,
        timeout: u64,
        args: &crate::lua::Args,
        on_done: &Option<crate::ops::Callback>,
    ) {
        let case = self.case.clone();
        let Some(r) = self.resolve(target) else {
            return;
        };
        let p = case.plan(prog, timeout, args, &r.opts);
        let func = if r.managed.is_some() {
            "bioxen_vm_manager_execute_async"
        } else {
            "bioxen_vm_execute_async"
        };
        let desc = format!(
            "job of {func}({}, timeout_ms {}) of {:?} [token {}]",
            r.name,
            p.timeout,
            crate::case::show(&p.code),
            p.token
        );
        case.own_token(&p.token, Owner::Call(desc.clone()));
        let what = || desc.clone();
        let w = case.watch(format!("submitting the {desc}"), FAST, Behind::Nothing);
        let m = r.managed.as_ref().map(|(m, _, id)| (*m, id.as_c_str()));
        let (st, h) = capi::execute_async(m, r.vm, &p.code, &p.args, p.timeout);
        drop(w);
        case.check_documented(func, &what, &st);
        let fine = st.0 == 0
            || st.0 == INVALID_HANDLE
            || st.0 == S::VmNotFound as i32
            || st.0 == S::VmManagerError as i32
            || (st.0 == S::InvalidArgument as i32
                && (p.bad_args || matches!(prog, Program::Raw(_))))
            || (st.0 == S::InvalidUtf8 as i32 && p.bad_args);
        if !fine {
            case.fail(format!("submitting the {desc} gave {} ({})", st.0, st.1));
        }
        self.stale_rule(r.stale, &st, &what);
        if st.0 != 0 {
            return;
        }
        case.stats.executions.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(JobRec {
            handle: h,
            token: p.token.clone(),
            expect: p.expect.clone(),
            max_output: r.opts.max_output_bytes(),
            managed: r.managed.as_ref().map(|(m, id, _)| (*m, *id)),
            timed: p.timed,
            short: p.short,
            oom: p.oom,
            desc: format!("{desc} = {h:#x}"),
            budget: p.budget,
            outcomes: Default::default(),
            freed: Default::default(),
        });
        // The harness's own callback releases the job's ledger entry when it finishes. Both
        // callbacks are registered before other threads can see the job (and free it).
        let entry = case.occupy(r.key.clone(), p.budget);
        let st = callbacks::on_done(&case, &job, None, None, Some(entry));
        if st.0 != 0 {
            case.fail(format!(
                "bioxen_vm_job_on_done on the new {} failed: {}",
                job.desc, st.1
            ));
        }
        if let Some(cb) = on_done {
            let st = callbacks::on_done(&case, &job, Some(cb.clone()), None, None);
            let what = || format!("bioxen_vm_job_on_done({}, {cb:?})", job.desc);
            case.check_documented("bioxen_vm_job_on_done", &what, &st);
        }
        case.add_job(job);
    }

    fn wait(&self, n: u8, t: u64) {
        let case = &self.case;
        let Some(j) = case.job(n) else { return };
        let stale = j.freed.load(Ordering::SeqCst);
        let what = || format!("bioxen_vm_job_wait({}, {t})", j.desc);
        let (budget, behind) = if let Some(d) = finite(t) {
            (d + FAST, Behind::Nothing)
        } else {
            (j.budget + FAST, Behind::All)
        };
        let (st, res) = case.call("bioxen_vm_job_wait", &what, budget, behind, || {
            capi::job_wait(j.handle, t)
        });
        self.check_wait(&j, &st, &what, t, stale);
        if let Some(r) = res {
            case.check_result(&what, &j.token, &r, &j.expect, j.max_output);
        }
    }

    /// Checks a wait's status (its documentation is checked by the caller); a finished
    /// job's status must be the same for every waiter and its callbacks, and `job_status`
    /// must agree.
    pub fn check_wait(
        &self,
        j: &JobRec,
        st: &(i32, String),
        what: &dyn Fn() -> String,
        t: u64,
        stale: bool,
    ) {
        let case = &self.case;
        self.stale_rule(stale, st, what);
        if st.0 == S::WaitTimeout as i32 {
            if finite(t).is_none() {
                case.fail(format!("{} gave WAIT_TIMEOUT without a timeout", what()));
            }
            return;
        }
        if st.0 == INVALID_HANDLE {
            return;
        }
        case.check_exec_status("bioxen_vm_job_wait", what, st, &job_facts(j));
        j.outcomes.lock().push((what(), st.0));
        let (s2, text) = capi::job_status(j.handle);
        if s2.0 == 0 {
            let want = if st.0 == S::Cancelled as i32 {
                "cancelled"
            } else {
                "done"
            };
            if text != want {
                case.fail(format!(
                    "after {} gave {}, job_status says {text:?}",
                    what(),
                    st.0
                ));
            }
        }
    }

    fn wait_for_vm(&self, mgr: u8, id: u8, t: u64) {
        let case = &self.case;
        let Some((h, _)) = case.manager(mgr) else {
            return;
        };
        let what = || format!("bioxen_vm_manager_wait_for_vm({h:#x}, v{id}, {t})");
        let (budget, behind) = if let Some(d) = finite(t) {
            (d + FAST, Behind::Nothing)
        } else {
            (BOUNDED + PROCESS_START, Behind::All)
        };
        let (st, res) = case.call(
            "bioxen_vm_manager_wait_for_vm",
            &what,
            budget,
            behind,
            || capi::wait_for_vm(h, &id_c(id), t),
        );
        if st.0 == S::WaitTimeout as i32 && finite(t).is_none() {
            case.fail(format!("{} gave WAIT_TIMEOUT without a timeout", what()));
        }
        if let Some(r) = res {
            let mine = case.job_tokens_of(h, id);
            for part in [&r.stdout, &r.stderr, &r.values, &r.error] {
                for tok in tokens_in(part) {
                    if !mine.contains(&tok) {
                        case.fail(format!(
                            "RESULT OF ANOTHER CALL: {} returned a result carrying {tok}, which no job \
                             of that VM was given",
                            what()
                        ));
                    }
                }
            }
        }
    }

    fn attach(&self, h: u64, id: u8, callback: bool) {
        let case = &self.case;
        let what = || format!("bioxen_vm_manager_attach({h:#x}, v{id}, callback {callback})");
        let cb = callback.then(|| callbacks::output_callback(case, h, id));
        case.call_st(
            "bioxen_vm_manager_attach",
            &what,
            FAST,
            Behind::Nothing,
            || capi::attach(h, &id_c(id), cb),
        );
    }

    fn detach(&self, h: u64, id: u8) {
        let case = &self.case;
        let what = || format!("bioxen_vm_manager_detach({h:#x}, v{id})");
        case.call_st(
            "bioxen_vm_manager_detach",
            &what,
            FAST,
            Behind::Nothing,
            || capi::detach(h, &id_c(id)),
        );
    }

    /// The bytes of `line` for a session of a VM with `opts`, its token registered for
    /// `ids`, and what evaluating it may take. Endless or arbitrary lines go only to a VM
    /// with a default timeout (a session line runs under the VM's timeout only).
    fn session_line(
        &self,
        line: &Line,
        opts: &VmOpts,
        mgr: u64,
        ids: Vec<u8>,
    ) -> (Vec<u8>, Duration) {
        let line = match line {
            Line::Spin if opts.timeout_ms == 0 => Line::Print,
            Line::Raw(_) if opts.timeout_ms == 0 => Line::Assign,
            l => l.clone(),
        };
        let token = self.case.token();
        let (bytes, _) = line.render(&token);
        self.case.own_token(&token, Owner::Session { mgr, ids });
        let mut budget = match line {
            Line::Spin | Line::Raw(_) => ms(opts.timeout_ms as u64 + 100).min(BOUNDED),
            _ => BOUNDED,
        };
        if opts.process {
            budget += PROCESS_START;
        }
        (bytes, budget)
    }

    fn send_input(&self, mgr: u8, id: u8, lines: &[Line]) {
        let case = &self.case;
        let Some((h, mo)) = case.manager(mgr) else {
            return;
        };
        let key = Key::Managed(h, id);
        let mut input = Vec::new();
        let mut entries = Vec::new();
        for l in lines {
            let (b, budget) = self.session_line(l, &mo.vm, h, vec![id]);
            input.extend(b);
            entries.push(case.occupy(key.clone(), budget));
        }
        case.stats
            .executions
            .fetch_add(lines.len() as u64, Ordering::Relaxed);
        let what = || {
            format!(
                "bioxen_vm_manager_send_input({h:#x}, v{id}, {})",
                crate::case::show(&input)
            )
        };
        let st = case.call_st(
            "bioxen_vm_manager_send_input",
            &what,
            FAST,
            Behind::Nothing,
            || capi::send_input(h, &id_c(id), &input),
        );
        if st.0 != 0 {
            for e in entries {
                case.mon.release(e);
            }
        }
    }

    fn read_output(&self, mgr: u8, id: u8, t: u64, flags: i32) {
        let case = &self.case;
        let Some((h, _)) = case.manager(mgr) else {
            return;
        };
        let key = Key::Managed(h, id);
        let what = || format!("bioxen_vm_manager_read_output({h:#x}, v{id}, {t}, flags {flags})");
        let w = if finite(t).is_none() && t != 0 {
            case.watch(what(), FAST, Behind::Vm(key))
        } else {
            case.watch(what(), ms(t) + FAST, Behind::Longest(key))
        };
        let (st, out) = capi::read_output(h, &id_c(id), t, flags);
        drop(w);
        case.check_documented("bioxen_vm_manager_read_output", &what, &st);
        if flags & !7 != 0 && st.0 != S::InvalidArgument as i32 && st.0 != INVALID_HANDLE {
            case.fail(format!("{} accepted unknown flags: {}", what(), st.0));
        }
        if let Some(out) = out {
            case.check_session_output(&what, h, id, &out, false);
        }
        self.prune_sessions(h);
    }

    fn command(&self, mgr: u8, id: u8, line: &Line, t: u64) {
        let case = &self.case;
        let Some((h, mo)) = case.manager(mgr) else {
            return;
        };
        let key = Key::Managed(h, id);
        let (input, budget) = self.session_line(line, &mo.vm, h, vec![id]);
        case.stats.executions.fetch_add(1, Ordering::Relaxed);
        let what = || {
            format!(
                "bioxen_vm_manager_execute_interactive_command({h:#x}, v{id}, {}, {t})",
                crate::case::show(&input)
            )
        };
        let w = if finite(t).is_none() {
            case.watch(what(), budget + FAST, Behind::Vm(key.clone()))
        } else {
            case.watch(what(), ms(t) + budget + FAST, Behind::Longest(key.clone()))
        };
        let entry = case.occupy_own(key, budget, &w);
        let (st, out) = capi::command(h, &id_c(id), &input, t);
        drop(w);
        case.check_documented("bioxen_vm_manager_execute_interactive_command", &what, &st);
        if st.0 != 0 {
            case.mon.release(entry);
        } else {
            case.check_session_output(&what, h, id, &out, false);
        }
        self.prune_sessions(h);
    }

    fn broadcast(&self, mgr: u8, line: &Line, t: u64) {
        let case = &self.case;
        let Some((h, mo)) = case.manager(mgr) else {
            return;
        };
        let (input, budget) = self.session_line(line, &mo.vm, h, (0..IDS).collect());
        let entries: Vec<u64> = (0..IDS)
            .map(|id| case.occupy(Key::Managed(h, id), budget))
            .collect();
        let what = || {
            format!(
                "bioxen_vm_manager_broadcast_to_sessions({h:#x}, \"v*\", {}, {t})",
                crate::case::show(&input)
            )
        };
        let each = if finite(t).is_none() {
            budget
        } else {
            ms(t) + budget
        };
        let (st, out) = case.call(
            "bioxen_vm_manager_broadcast_to_sessions",
            &what,
            each * IDS as u32 + FAST,
            Behind::All,
            || capi::broadcast_to_sessions(h, &cstr("v*"), &input, t),
        );
        if st.0 != 0 {
            for e in entries {
                case.mon.release(e);
            }
        } else {
            match serde_json::from_slice::<serde_json::Value>(&out) {
                Ok(serde_json::Value::Object(m)) => {
                    for (k, v) in m {
                        let id = k.strip_prefix('v').and_then(|n| n.parse::<u8>().ok());
                        match (id, v.as_str()) {
                            (Some(id), Some(text)) if id < IDS => {
                                case.check_session_output(&what, h, id, text.as_bytes(), false)
                            }
                            _ => case.fail(format!("{} wrote {k:?}: {v}", what())),
                        }
                    }
                }
                _ => case.fail(format!(
                    "{} wrote no JSON object: {}",
                    what(),
                    crate::case::show(&out)
                )),
            }
        }
        self.prune_sessions(h);
    }

    /// `list_sessions`; the input of every idle session listed is done: its ledger entries
    /// from before the call are released.
    fn prune_sessions(&self, h: u64) {
        let case = &self.case;
        let before = Instant::now();
        let what = || format!("bioxen_vm_manager_list_sessions({h:#x})");
        let (st, json) = case.call(
            "bioxen_vm_manager_list_sessions",
            &what,
            FAST,
            Behind::Nothing,
            || capi::manager_json(h, 3),
        );
        if st.0 != 0 {
            return;
        }
        let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&json)
        else {
            case.fail(format!(
                "{} wrote no JSON object: {}",
                what(),
                crate::case::show(&json)
            ));
            return;
        };
        for (k, v) in m {
            let id = k.strip_prefix('v').and_then(|n| n.parse::<u8>().ok());
            if let Some(id) = id {
                if v.get("idle") == Some(&serde_json::Value::Bool(true)) {
                    case.mon
                        .release_before(case.id, &Key::Managed(h, id), before);
                }
            }
        }
    }

    fn stale(&mut self, call: &StaleCall, bad: &Bad) {
        let case = self.case.clone();
        let expected_kind = match call {
            StaleCall::Execute
            | StaleCall::ExecuteAsync
            | StaleCall::Interrupt
            | StaleCall::Info
            | StaleCall::FreeVm => Kind::Vm,
            StaleCall::JobWait
            | StaleCall::JobStatus
            | StaleCall::JobCancel
            | StaleCall::JobFree
            | StaleCall::JobOnDone => Kind::Job,
            _ => Kind::Manager,
        };
        let h = match bad {
            Bad::Freed(n) => match case.freed_handle(*n) {
                Some(h) => h,
                None => return,
            },
            Bad::Zero => 0,
            Bad::Max => u64::MAX,
            // No object kind has the tag 0xEE: never a live handle.
            Bad::Unknown(x) => (x & 0x00ff_ffff_ffff_ffff) | (0xee << 56),
            Bad::WrongKind(n) => match case.other_kind(*n, expected_kind) {
                Some(h) => h,
                None => return,
            },
        };
        let what = || format!("{call:?} with the handle {h:#x} ({bad:?})");
        let w = case.watch(what(), FAST, Behind::Nothing);
        let code = b"return 1";
        let id = cstr("v0");
        let (func, st) = match call {
            StaleCall::Execute => ("bioxen_vm_execute", capi::execute(h, code, &None, 100).0),
            StaleCall::ExecuteAsync => {
                let (st, j) = capi::execute_async(None, h, code, &None, 100);
                if st.0 == 0 {
                    capi::job_free(j);
                }
                ("bioxen_vm_execute_async", st)
            }
            StaleCall::Interrupt => ("bioxen_vm_interrupt", capi::interrupt(h)),
            StaleCall::Info => ("bioxen_vm_info", capi::vm_info(h).0),
            StaleCall::FreeVm => ("bioxen_vm_free", capi::vm_free(h)),
            StaleCall::JobWait => ("bioxen_vm_job_wait", capi::job_wait(h, 100).0),
            StaleCall::JobStatus => ("bioxen_vm_job_status", capi::job_status(h).0),
            StaleCall::JobCancel => ("bioxen_vm_job_cancel", capi::job_cancel(h)),
            StaleCall::JobFree => ("bioxen_vm_job_free", capi::job_free(h)),
            StaleCall::JobOnDone => {
                drop(w);
                // A registration on a bad handle must fail, and its callback never run.
                let dummy = Arc::new(JobRec {
                    handle: h,
                    token: String::new(),
                    expect: crate::lua::Expect::Anything,
                    max_output: 0,
                    managed: None,
                    timed: false,
                    short: false,
                    oom: false,
                    desc: format!("the bad handle {h:#x}"),
                    budget: FAST,
                    outcomes: Default::default(),
                    freed: Default::default(),
                });
                let st = callbacks::on_done(
                    &case,
                    &dummy,
                    Some(crate::ops::Callback::Record),
                    Some(h),
                    None,
                );
                self.check_stale_status("bioxen_vm_job_on_done", &what, &st, h, call);
                return;
            }
            StaleCall::ManagerFree => ("bioxen_vm_manager_free", capi::manager_free(h)),
            StaleCall::ManagerExecute => (
                "bioxen_vm_manager_execute",
                capi::manager_execute(h, &id, code, &None, 100).0,
            ),
            StaleCall::ManagerCreateVm => {
                ("bioxen_vm_manager_create_vm", capi::create_vm(h, &id, "{}"))
            }
            StaleCall::ManagerStats => ("bioxen_vm_manager_stats", capi::manager_json(h, 0).0),
            StaleCall::SendInput => (
                "bioxen_vm_manager_send_input",
                capi::send_input(h, &id, b"1\n"),
            ),
        };
        drop(w);
        self.check_stale_status(func, &what, &st, h, call);
    }

    fn check_stale_status(
        &self,
        func: &str,
        what: &dyn Fn() -> String,
        st: &(i32, String),
        h: u64,
        call: &StaleCall,
    ) {
        let case = &self.case;
        case.check_documented(func, what, st);
        let zero_ok = h == 0
            && matches!(
                call,
                StaleCall::FreeVm | StaleCall::JobFree | StaleCall::ManagerFree
            );
        let want = if zero_ok { 0 } else { INVALID_HANDLE };
        if st.0 != want {
            case.fail(format!(
                "BAD HANDLE: {} returned {} ({}) instead of {}",
                what(),
                crate::common::status_name(st.0),
                st.1,
                crate::common::status_name(want)
            ));
        }
    }
}
