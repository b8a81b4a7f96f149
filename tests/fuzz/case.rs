//! The state of one running case and the checks every outcome goes through.

use crate::capi::RawRes;
use crate::lua::{self, Expect, Lv, Program};
use crate::ops::{MgrOpts, Op, Scenario, VmOpts, MGR_SLOTS, VM_SLOTS};
use crate::statuses::Documented;
use crate::watch::{Behind, Key, Monitor, Sink, Watch};
use bioxen_vm::bioxen_vm_status as S;
use parking_lot::Mutex;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a call that does not run Lua may take.
pub const FAST: Duration = Duration::from_millis(500);
/// What a bounded generated program may take (they take milliseconds).
pub const BOUNDED: Duration = Duration::from_millis(2000);
/// A process VM's documented start-up deadline (also paid again after a kill).
pub const PROCESS_START: Duration = Duration::from_millis(5000);
/// What `bioxen_vm_manager_free` may wait for its workers.
pub const GRACE: Duration = Duration::from_millis(5000);
/// A per-call timeout given to endless code on a VM without one.
pub const SPIN_FALLBACK_MS: u64 = 150;
/// Endless code never gets longer than this (it may allocate while it runs).
pub const SPIN_MAX_MS: u64 = 400;
/// How long a case waits for its callbacks, threads and children at its end.
pub const SETTLE: Duration = Duration::from_secs(15);

/// Process-wide counters (for the report of a long run).
#[derive(Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub executions: AtomicU64,
    pub cases: AtomicU64,
    /// Results compared in full with what the model computed (values, stdout, error).
    pub results_checked: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Vm,
    Manager,
    Job,
}

/// Who a token was given to.
#[derive(Clone, Debug)]
#[allow(dead_code)] // Read through Debug in failure messages.
pub enum Owner {
    /// One execution (a call or a job).
    Call(String),
    /// Input of the sessions of this manager's ids (a broadcast reaches several).
    Session { mgr: u64, ids: Vec<u8> },
}

/// A job the case submitted.
pub struct JobRec {
    pub handle: u64,
    pub token: String,
    pub expect: Expect,
    pub max_output: usize,
    /// The (manager, id) of a manager's job.
    pub managed: Option<(u64, u8)>,
    /// A timeout was in force (TIMEOUT is possible).
    pub timed: bool,
    /// Its timeout is short enough for bounded code to pass it.
    pub short: bool,
    pub oom: bool,
    pub desc: String,
    pub budget: Duration,
    /// Statuses seen for it: from callbacks and from waits that saw it finished.
    pub outcomes: Mutex<Vec<(String, i32)>>,
    pub freed: AtomicBool,
}

#[derive(Default)]
struct State {
    vms: [Option<u64>; VM_SLOTS as usize],
    vm_opts: HashMap<u64, VmOpts>,
    mgrs: [Option<u64>; MGR_SLOTS as usize],
    mgr_opts: HashMap<u64, MgrOpts>,
    jobs: Vec<Arc<JobRec>>,
    freed: Vec<u64>,
    /// Successful frees of each handle made.
    frees: HashMap<u64, u32>,
    all: Vec<(u64, Kind)>,
    tokens: HashMap<String, Owner>,
    /// Times each session token was seen in output read back (and given to callbacks).
    seen: HashMap<(String, u64, u8, bool), u32>,
}

pub struct Case {
    pub id: u64,
    pub mon: &'static Monitor,
    pub sink: Arc<Sink>,
    pub docs: &'static Documented,
    pub stats: &'static Stats,
    /// Some operation of the case can interrupt or cancel others.
    pub disruptive: bool,
    /// What a call may take past its allowance before it counts as hung.
    pub margin: Duration,
    /// Results are checked against the output bounds (see `known.rs`).
    pub check_bounds: bool,
    state: Mutex<State>,
    next_token: AtomicU64,
}

/// What a planned execution is.
pub struct Planned {
    pub code: Vec<u8>,
    pub expect: Expect,
    pub token: String,
    /// The per-call timeout passed.
    pub timeout: u64,
    pub timed: bool,
    pub short: bool,
    pub budget: Duration,
    pub oom: bool,
    pub bad_args: bool,
    pub args: Option<std::ffi::CString>,
}

fn disruptive(op: &Op) -> bool {
    matches!(
        op,
        Op::Interrupt { .. }
            | Op::InterruptSession { .. }
            | Op::TerminateSession { .. }
            | Op::RemoveVm { .. }
            | Op::FreeManager { .. }
            | Op::FreeVm { .. }
            | Op::ShutdownAll { .. }
            | Op::Cancel { .. }
            | Op::CancelVm { .. }
            | Op::NewManager { .. }
            | Op::NewVm { .. }
            | Op::Submit {
                on_done: Some(crate::ops::Callback::FreeManager),
                ..
            }
            | Op::OnDone {
                cb: crate::ops::Callback::FreeManager,
                ..
            }
            | Op::Stale { .. }
    )
}

/// Numbers compare by value (1 and 1.0 are equal); everything else structurally.
pub fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Every token in `b`.
pub fn tokens_in(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&b[i..], b"@@T") {
        let start = i + p;
        match find(&b[start + 3..], b"@@") {
            Some(q) if q <= 24 => {
                let end = start + 3 + q + 2;
                out.push(String::from_utf8_lossy(&b[start..end]).into_owned());
                i = end;
            }
            _ => i = start + 3,
        }
    }
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 300 {
        format!(
            "{:?}… ({} bytes)",
            &s[..s.char_indices().nth(300).map_or(s.len(), |c| c.0)],
            b.len()
        )
    } else {
        format!("{s:?}")
    }
}

impl Case {
    pub fn new(
        id: u64,
        mon: &'static Monitor,
        docs: &'static Documented,
        stats: &'static Stats,
        scenario: &Scenario,
        margin: Duration,
        check_bounds: bool,
    ) -> Arc<Case> {
        Arc::new(Case {
            id,
            mon,
            sink: Arc::new(Sink::default()),
            docs,
            stats,
            disruptive: scenario.ops().any(disruptive),
            margin,
            check_bounds,
            state: Mutex::new(State::default()),
            next_token: AtomicU64::new(0),
        })
    }

    pub fn fail(&self, msg: String) {
        self.sink.fail(msg);
    }

    pub fn token(&self) -> String {
        format!(
            "@@T{}x{}@@",
            self.id,
            self.next_token.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn watch(&self, what: String, budget: Duration, behind: Behind) -> Watch {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.mon
            .watch(self.id, &self.sink, what, budget, behind, self.margin)
    }

    /// Runs `f`, a call of `func`, under a watch, and checks that its status is documented.
    pub fn call<T>(
        &self,
        func: &str,
        what: &dyn Fn() -> String,
        budget: Duration,
        behind: Behind,
        f: impl FnOnce() -> ((i32, String), T),
    ) -> ((i32, String), T) {
        let w = self.watch(what(), budget, behind);
        let r = f();
        drop(w);
        self.check_documented(func, what, &r.0);
        r
    }

    /// [`Case::call`] for a function that only returns a status.
    pub fn call_st(
        &self,
        func: &str,
        what: &dyn Fn() -> String,
        budget: Duration,
        behind: Behind,
        f: impl FnOnce() -> (i32, String),
    ) -> (i32, String) {
        self.call(func, what, budget, behind, || (f(), ())).0
    }

    pub fn occupy(&self, key: Key, budget: Duration) -> u64 {
        self.mon.occupy(self.id, key, budget, None)
    }

    /// An entry for the work of the call `own` (which does not wait behind itself).
    pub fn occupy_own(&self, key: Key, budget: Duration, own: &Watch) -> u64 {
        self.mon.occupy(self.id, key, budget, Some(own))
    }

    // --- objects ------------------------------------------------------------------------

    pub fn vm(&self, slot: u8) -> Option<(u64, VmOpts)> {
        let s = self.state.lock();
        let h = s.vms[slot as usize]?;
        Some((h, s.vm_opts[&h].clone()))
    }

    pub fn manager(&self, slot: u8) -> Option<(u64, MgrOpts)> {
        let s = self.state.lock();
        let h = s.mgrs[slot as usize]?;
        Some((h, s.mgr_opts[&h].clone()))
    }

    /// Records a new VM in `slot`; returns the handle it replaces (still live).
    pub fn put_vm(&self, slot: u8, h: u64, opts: VmOpts) -> Option<u64> {
        let mut s = self.state.lock();
        s.vm_opts.insert(h, opts);
        s.all.push((h, Kind::Vm));
        s.vms[slot as usize].replace(h)
    }

    pub fn put_manager(&self, slot: u8, h: u64, opts: MgrOpts) -> Option<u64> {
        let mut s = self.state.lock();
        s.mgr_opts.insert(h, opts);
        s.all.push((h, Kind::Manager));
        s.mgrs[slot as usize].replace(h)
    }

    /// Forgets `h` in its slot (if it is still there).
    pub fn clear_slot(&self, h: u64) {
        let mut s = self.state.lock();
        let s = &mut *s;
        for v in s.vms.iter_mut().chain(s.mgrs.iter_mut()) {
            if *v == Some(h) {
                *v = None;
            }
        }
    }

    /// Whether `h` was freed (successfully) before now.
    pub fn is_freed(&self, h: u64) -> bool {
        self.state.lock().frees.get(&h).copied().unwrap_or(0) > 0
    }

    /// Counts a free of `h` that returned OK.
    pub fn freed_ok(&self, h: u64) {
        let mut s = self.state.lock();
        *s.frees.entry(h).or_insert(0) += 1;
        s.freed.push(h);
    }

    pub fn add_job(&self, j: Arc<JobRec>) {
        let mut s = self.state.lock();
        s.all.push((j.handle, Kind::Job));
        s.jobs.push(j);
    }

    pub fn job(&self, n: u8) -> Option<Arc<JobRec>> {
        let s = self.state.lock();
        if s.jobs.is_empty() {
            None
        } else {
            Some(s.jobs[n as usize % s.jobs.len()].clone())
        }
    }

    pub fn jobs(&self) -> Vec<Arc<JobRec>> {
        self.state.lock().jobs.clone()
    }

    pub fn freed_handle(&self, n: u8) -> Option<u64> {
        let s = self.state.lock();
        (!s.freed.is_empty()).then(|| s.freed[n as usize % s.freed.len()])
    }

    /// A live handle whose kind is not `not`.
    pub fn other_kind(&self, n: u8, not: Kind) -> Option<u64> {
        let s = self.state.lock();
        let live: Vec<u64> = s
            .all
            .iter()
            .filter(|(h, k)| *k != not && s.frees.get(h).copied().unwrap_or(0) == 0)
            .map(|(h, _)| *h)
            .collect();
        (!live.is_empty()).then(|| live[n as usize % live.len()])
    }

    pub fn all_handles(&self) -> Vec<(u64, Kind, u32)> {
        let s = self.state.lock();
        s.all
            .iter()
            .map(|(h, k)| (*h, *k, s.frees.get(h).copied().unwrap_or(0)))
            .collect()
    }

    pub fn own_token(&self, token: &str, owner: Owner) {
        self.state.lock().tokens.insert(token.to_string(), owner);
    }

    /// The tokens of the jobs submitted to a manager's VM id.
    pub fn job_tokens_of(&self, mgr: u64, id: u8) -> Vec<String> {
        self.state
            .lock()
            .jobs
            .iter()
            .filter(|j| j.managed == Some((mgr, id)))
            .map(|j| j.token.clone())
            .collect()
    }

    // --- planning -----------------------------------------------------------------------

    /// Renders `prog` for a VM with `opts` and fixes its timeout: endless code always runs
    /// under a timeout of at most `SPIN_MAX_MS`; code that allocates without end runs only
    /// where a memory limit stops it; a forged frame is written only inside a process VM.
    pub fn plan(&self, prog: &Program, timeout: u64, args: &lua::Args, opts: &VmOpts) -> Planned {
        let token = self.token();
        let prog = match prog {
            Program::Spin(lua::Spin::Double) if opts.memory_limit == 0 => {
                Program::Spin(lua::Spin::Garbage)
            }
            Program::Forge if !opts.process => Program::Bounded(vec![], lua::End::Return(vec![])),
            p => p.clone(),
        };
        let mut timeout = timeout;
        if prog.is_spin() {
            if timeout == 0 && opts.timeout_ms == 0 {
                timeout = SPIN_FALLBACK_MS;
            }
            timeout = timeout.min(SPIN_MAX_MS);
        }
        let eff = if timeout > 0 {
            timeout
        } else {
            opts.timeout_ms as u64
        };
        let lua_args = args.lua();
        let r = prog.render(&token, lua_args.as_deref(), opts.trusted);
        let mut budget = if prog.is_spin() {
            Duration::from_millis(eff)
        } else if eff > 0 {
            Duration::from_millis(eff).min(BOUNDED)
        } else {
            BOUNDED
        };
        if opts.process {
            budget += PROCESS_START;
        }
        let (cargs, bad_args) = match args {
            lua::Args::None => (None, false),
            lua::Args::Json(v) => (Some(crate::capi::cstr(&v.to_string())), !v.is_array()),
            lua::Args::Raw(b) => (Some(crate::capi::c_bytes(b)), true),
        };
        let oom = opts.memory_limit > 0
            && matches!(&prog, Program::Spin(s) if s.allocates())
                | matches!(&prog, Program::Raw(_));
        Planned {
            code: r.code,
            expect: r.expect,
            token,
            timeout,
            timed: eff > 0,
            short: eff > 0 && eff < 1000,
            budget,
            oom,
            bad_args,
            args: cargs,
        }
    }

    // --- checks -------------------------------------------------------------------------

    /// The status is documented for `func`, and never PANIC.
    pub fn check_documented(&self, func: &str, what: &dyn Fn() -> String, st: &(i32, String)) {
        if st.0 == S::Panic.code() {
            self.fail(format!("PANIC from {func}: {} ({})", st.1, what()));
        } else if !self.docs.of(func).contains(&st.0) {
            self.fail(format!(
                "{func} returned {} ({}), which its documentation does not list; call: {}",
                crate::common::status_name(st.0),
                st.1,
                what()
            ));
        }
    }

    /// The status of an execution (call or job) is documented and possible for it.
    pub fn check_exec_status(
        &self,
        func: &str,
        what: &dyn Fn() -> String,
        st: &(i32, String),
        p: &ExecFacts,
    ) {
        self.check_documented(func, what, st);
        let code = st.0;
        let bad = |why: &str| {
            self.fail(format!(
                "{func} returned {} ({}) {why}; call: {}",
                crate::common::status_name(code),
                st.1,
                what()
            ))
        };
        if code == S::Timeout.code() {
            if !p.timed {
                bad("with no timeout in force");
            } else if !p.spin && !p.short && !p.raw {
                bad("for quick code under a timeout of a second or more");
            }
        } else if code == S::Interrupted.code() {
            if !self.disruptive {
                bad("although nothing in the case interrupts");
            }
        } else if code == S::MemoryLimit.code() {
            if !p.oom {
                bad("for code that stays far below its memory limit");
            }
        } else if code == S::InvalidArgument.code() {
            if !(p.bad_args || p.raw) {
                bad("for valid code and arguments");
            }
        } else if code == S::InvalidUtf8.code() {
            if !p.bad_args {
                bad("for valid UTF-8 arguments");
            }
        } else if code == S::Cancelled.code() && !self.disruptive {
            bad("although nothing in the case cancels");
        } else if code == S::VmPoisoned.code() || code == S::NullPointer.code() {
            bad("");
        } else if code == S::Ok.code() && p.spin {
            bad("(a completed result) for code that never ends by itself");
        } else if code == S::InvalidHandle.code() && p.stale {
            // Expected.
        }
        if p.stale && code != S::InvalidHandle.code() {
            bad("for a handle freed before the call");
        }
    }

    /// A result given to the call with `token`: nothing else's token, and what the program
    /// must give. `max` is the VM's `max_output`.
    pub fn check_result(
        &self,
        what: &dyn Fn() -> String,
        token: &str,
        r: &RawRes,
        expect: &Expect,
        max: usize,
    ) {
        let fail = |m: String| {
            self.fail(format!(
                "{m}\n      call: {}\n      result: success {} rc {} dropped {}\n      stdout {}\n      \
                 stderr {}\n      values {}\n      error {}",
                what(),
                r.success,
                r.return_code,
                r.dropped,
                show(&r.stdout),
                show(&r.stderr),
                show(&r.values),
                show(&r.error)
            ))
        };
        for part in [&r.stdout, &r.stderr, &r.values, &r.error] {
            for t in tokens_in(part) {
                if t != token {
                    fail(format!(
                        "RESULT OF ANOTHER CALL: the result of the call with token {token} carries \
                         {t} (given to {:?})",
                        self.state.lock().tokens.get(&t)
                    ));
                    return;
                }
            }
        }
        if r.return_code != if r.success { 0 } else { 1 } {
            fail("return_code does not match success".into());
        }
        let values: Option<Json> = serde_json::from_slice(&r.values).ok();
        let Some(values) = values else {
            fail("values_json is not JSON".into());
            return;
        };
        // The output policy: each of the four items is bounded by max_output.
        for (name, len) in [
            ("stdout_text", r.stdout.len()),
            ("stderr_text", r.stderr.len()),
            ("values_json", r.values.len()),
            ("error_message", r.error.len()),
        ] {
            if len > max && self.check_bounds {
                fail(format!(
                    "OUTPUT BOUND: {name} holds {len} bytes with max_output {max}"
                ));
            }
        }
        match expect {
            Expect::Anything => {}
            Expect::Stops => fail("code that never ends by itself completed".into()),
            Expect::Values {
                stdout,
                values: want,
            } => {
                let want_json = Json::Array(want.iter().map(Lv::json).collect());
                let est = want_json.to_string().len();
                if est + 16 < max {
                    self.stats.results_checked.fetch_add(1, Ordering::Relaxed);
                    if !r.success {
                        fail(format!("expected success with values {want_json}"));
                        return;
                    }
                    if !json_eq(&values, &want_json) {
                        fail(format!("values: expected {want_json}"));
                    }
                } else if est > max + 16
                    && self.check_bounds
                    && (r.success || values != Json::Array(vec![]))
                {
                    fail(format!(
                        "OUTPUT BOUND: values of {est} bytes as JSON pass max_output {max}: the \
                         result must fail with values []"
                    ));
                }
                self.check_stdout(&fail, stdout, r, max);
            }
            Expect::LuaError { stdout, token: has } => {
                self.stats.results_checked.fetch_add(1, Ordering::Relaxed);
                if r.success {
                    fail("expected a Lua error".into());
                    return;
                }
                if values != Json::Array(vec![]) {
                    fail("a failed result has values".into());
                }
                if *has
                    && r.error.len() + 8 < max
                    && !tokens_in(&r.error).iter().any(|t| t == token)
                {
                    fail(format!("the error message lacks the call's token {token}"));
                }
                self.check_stdout(&fail, stdout, r, max);
            }
        }
    }

    fn check_stdout(&self, fail: &dyn Fn(String), want: &[lua::Seg], r: &RawRes, max: usize) {
        let len = lua::seg_len(want);
        // Without the output bounds, what is printed past max_output is not checked.
        let got = if self.check_bounds {
            &r.stdout[..]
        } else {
            &r.stdout[..r.stdout.len().min(max)]
        };
        if len + 8 < max {
            if !lua::matches(want, &r.stdout, true) {
                fail(format!("stdout: expected {want:?}"));
            }
        } else if !lua::matches(want, got, false) {
            fail(format!(
                "stdout is not a prefix of what was printed: expected {want:?}"
            ));
        } else if len > max + 24 && r.dropped == 0 && self.check_bounds {
            fail(format!(
                "stdout was cut at max_output {max} but output_dropped is 0"
            ));
        }
    }

    /// Output read back from a session of `(mgr, id)` (`callback`: given to the output
    /// callback): every token in it was sent to that session, and none comes back more
    /// often than its line prints it.
    pub fn check_session_output(
        &self,
        what: &dyn Fn() -> String,
        mgr: u64,
        id: u8,
        out: &[u8],
        callback: bool,
    ) {
        let mut s = self.state.lock();
        for t in tokens_in(out) {
            match s.tokens.get(&t).cloned() {
                Some(Owner::Session { mgr: m, ids }) if m == mgr && ids.contains(&id) => {
                    let n = {
                        let n = s.seen.entry((t.clone(), mgr, id, callback)).or_insert(0);
                        *n += 1;
                        *n
                    };
                    // A line prints its token at most twice (the two-line loop), and an
                    // incomplete chunk may take in lines sent meanwhile: allow four.
                    if n > 4 {
                        drop(s);
                        self.fail(format!(
                            "SESSION OUTPUT REPEATED: {t} came back {n} times from v{id}; call: {}",
                            what()
                        ));
                        return;
                    }
                }
                other => {
                    drop(s);
                    self.fail(format!(
                        "SESSION OUTPUT OF ANOTHER SOURCE: output of session v{id} of manager {mgr:#x} \
                         carries {t} (given to {other:?}); call: {}; output {}",
                        what(),
                        show(out)
                    ));
                    return;
                }
            }
        }
    }
}

/// What a status check needs to know of an execution.
#[derive(Clone, Debug, Default)]
pub struct ExecFacts {
    pub timed: bool,
    pub short: bool,
    pub spin: bool,
    pub raw: bool,
    pub oom: bool,
    pub bad_args: bool,
    /// The handle was freed before the call.
    pub stale: bool,
}

impl ExecFacts {
    pub fn of(p: &Planned, prog: &Program, stale: bool) -> ExecFacts {
        ExecFacts {
            timed: p.timed,
            short: p.short,
            spin: prog.is_spin(),
            raw: matches!(prog, Program::Raw(_)),
            oom: p.oom,
            bad_args: p.bad_args,
            stale,
        }
    }
}
