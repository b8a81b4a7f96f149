//! The operations a case is made of, and how they are generated.
//!
//! Objects are named by small slot numbers, not handles: a case has a few standalone VM
//! slots, a few manager slots (each with VM ids `v0`..`v2`), and the jobs it submitted, in
//! order. What a slot holds is decided when the case runs.

use crate::known::Known;
use crate::lua::{self, Args, Line, Program};
use proptest::prelude::*;
use std::fmt;

pub const VM_SLOTS: u8 = 3;
pub const MGR_SLOTS: u8 = 2;
pub const IDS: u8 = 3;

/// Options of a VM.
#[derive(Clone, Debug, PartialEq)]
pub struct VmOpts {
    /// A child `lua5.4` (`vm_type: "process"`).
    pub process: bool,
    pub trusted: bool,
    /// Bytes, 0 = none.
    pub memory_limit: u32,
    /// Default timeout of each execution in ms, 0 = none.
    pub timeout_ms: u32,
    /// Bytes, 0 = the default.
    pub max_output: u32,
    /// `chunk_cache`, None = the default.
    pub chunk_cache: Option<u8>,
}

impl VmOpts {
    /// The options as JSON object members (without braces).
    pub fn members(&self) -> Vec<String> {
        let mut m = Vec::new();
        if self.process {
            m.push(r#""vm_type": "process", "lua_executable": "lua5.4""#.to_string());
        }
        if self.trusted {
            m.push(r#""sandbox": "trusted""#.to_string());
        }
        if self.memory_limit > 0 {
            m.push(format!(r#""memory_limit": {}"#, self.memory_limit));
        }
        if self.timeout_ms > 0 {
            m.push(format!(r#""timeout": {}"#, self.timeout_ms as f64 / 1000.0));
        }
        if self.max_output > 0 {
            m.push(format!(r#""max_output": {}"#, self.max_output));
        }
        if let Some(c) = self.chunk_cache {
            m.push(format!(r#""chunk_cache": {c}"#));
        }
        m
    }

    pub fn json(&self) -> String {
        format!("{{{}}}", self.members().join(", "))
    }

    /// The bytes kept per stream.
    pub fn max_output_bytes(&self) -> usize {
        if self.max_output == 0 {
            16 << 20
        } else {
            self.max_output as usize
        }
    }
}

/// Options of a manager: its pool and the options of every VM it creates (given as the
/// manager's defaults or with each VM). Every VM of one manager has the same options, so
/// that what a case knows of a VM id never goes stale when the id is removed and created
/// again (or cloned).
#[derive(Clone, Debug, PartialEq)]
pub struct MgrOpts {
    /// 0 = the default (10).
    pub max_workers: u8,
    pub vm: VmOpts,
    /// The VM options go in the manager's options (true) or with each VM.
    pub as_defaults: bool,
}

impl MgrOpts {
    pub fn json(&self) -> String {
        let mut m = Vec::new();
        if self.max_workers > 0 {
            m.push(format!(r#""max_workers": {}"#, self.max_workers));
        }
        if self.as_defaults {
            m.extend(self.vm.members());
        }
        format!("{{{}}}", m.join(", "))
    }

    /// The options JSON passed when creating a VM in this manager.
    pub fn vm_json(&self) -> String {
        if self.as_defaults {
            "{}".into()
        } else {
            self.vm.json()
        }
    }
}

#[derive(Clone, Debug)]
pub enum Target {
    Vm(u8),
    Managed(u8, u8),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Vm(s) => write!(f, "vm[{s}]"),
            Target::Managed(m, id) => write!(f, "mgr[{m}].v{id}"),
        }
    }
}

/// What an on-done callback does.
#[derive(Clone, Debug)]
pub enum Callback {
    /// Records the call.
    Record,
    /// `bioxen_vm_job_wait(job, 0)` on its own job (allowed: it has finished).
    WaitSelf,
    /// Waits for another job of the case, with a timeout (1..200 ms).
    WaitOther(u8, u32),
    /// Frees its own job handle.
    FreeSelf,
    /// Frees the job's manager from the manager's own worker (known bug: see `known.rs`).
    FreeManager,
}

/// A handle that is not (or no longer) a live object of the kind asked for.
#[derive(Clone, Debug)]
pub enum Bad {
    /// One freed earlier in the case (the n-th, modulo their number).
    Freed(u8),
    Zero,
    Max,
    Unknown(u64),
    /// A live object of another kind: a VM where a job or a manager is expected, etc.
    WrongKind(u8),
}

/// A call made with a bad handle.
#[derive(Clone, Debug)]
pub enum StaleCall {
    Execute,
    ExecuteAsync,
    Interrupt,
    Info,
    FreeVm,
    JobWait,
    JobStatus,
    JobCancel,
    JobFree,
    JobOnDone,
    ManagerFree,
    ManagerExecute,
    ManagerCreateVm,
    ManagerStats,
    SendInput,
}

#[derive(Clone, Debug)]
pub enum Op {
    NewVm {
        slot: u8,
        opts: VmOpts,
    },
    FreeVm {
        slot: u8,
    },
    NewManager {
        slot: u8,
        opts: MgrOpts,
    },
    FreeManager {
        slot: u8,
    },
    CreateVm {
        mgr: u8,
        id: u8,
    },
    RemoveVm {
        mgr: u8,
        id: u8,
    },
    Execute {
        target: Target,
        prog: Program,
        timeout: u64,
        args: Args,
        into: bool,
    },
    Submit {
        target: Target,
        prog: Program,
        timeout: u64,
        args: Args,
        on_done: Option<Callback>,
    },
    Wait {
        job: u8,
        timeout: u64,
    },
    Cancel {
        job: u8,
    },
    OnDone {
        job: u8,
        cb: Callback,
    },
    JobStatus {
        job: u8,
    },
    FreeJob {
        job: u8,
    },
    WaitForVm {
        mgr: u8,
        id: u8,
        timeout: u64,
    },
    CancelVm {
        mgr: u8,
        id: u8,
    },
    VmStatus {
        mgr: u8,
        id: u8,
    },
    Interrupt {
        target: Target,
        delay_ms: u16,
    },
    Info {
        target: Target,
    },
    CreateSession {
        mgr: u8,
        id: u8,
        attach: bool,
        callback: bool,
    },
    Attach {
        mgr: u8,
        id: u8,
        callback: bool,
    },
    Detach {
        mgr: u8,
        id: u8,
    },
    IsAttached {
        mgr: u8,
        id: u8,
    },
    SendInput {
        mgr: u8,
        id: u8,
        lines: Vec<Line>,
    },
    ReadOutput {
        mgr: u8,
        id: u8,
        timeout: u64,
        flags: i32,
    },
    Command {
        mgr: u8,
        id: u8,
        line: Line,
        timeout: u64,
    },
    Broadcast {
        mgr: u8,
        line: Line,
        timeout: u64,
    },
    InterruptSession {
        mgr: u8,
        id: u8,
        delay_ms: u16,
    },
    TerminateSession {
        mgr: u8,
        id: u8,
    },
    CloneSession {
        mgr: u8,
        src: u8,
        dst: u8,
    },
    ListSessions {
        mgr: u8,
    },
    ShutdownAll {
        mgr: u8,
    },
    Stats {
        mgr: u8,
    },
    Stale {
        call: StaleCall,
        handle: Bad,
    },
    /// A fresh result buffer for this thread's `execute_into` calls.
    RenewBuffer,
    Pause {
        ms: u16,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::NewVm { slot, opts } => write!(f, "vm[{slot}] = bioxen_vm_new({})", opts.json()),
            Op::FreeVm { slot } => write!(f, "bioxen_vm_free(vm[{slot}])"),
            Op::NewManager { slot, opts } => write!(
                f,
                "mgr[{slot}] = bioxen_vm_manager_new({}) (VMs created with {})",
                opts.json(),
                opts.vm_json()
            ),
            Op::FreeManager { slot } => write!(f, "bioxen_vm_manager_free(mgr[{slot}])"),
            Op::CreateVm { mgr, id } => write!(f, "bioxen_vm_manager_create_vm(mgr[{mgr}], v{id})"),
            Op::RemoveVm { mgr, id } => write!(f, "bioxen_vm_manager_remove_vm(mgr[{mgr}], v{id})"),
            Op::Execute { target, prog, timeout, args, into } => write!(
                f,
                "execute{}({target}, {prog:?}, args {args:?}, timeout_ms {timeout})",
                if *into { "_into" } else { "" }
            ),
            Op::Submit { target, prog, timeout, args, on_done } => write!(
                f,
                "job = execute_async({target}, {prog:?}, args {args:?}, timeout_ms {timeout}){}",
                on_done.as_ref().map(|c| format!("; on_done({c:?})")).unwrap_or_default()
            ),
            Op::Wait { job, timeout } => write!(f, "bioxen_vm_job_wait(job[{job}], {timeout})"),
            Op::Cancel { job } => write!(f, "bioxen_vm_job_cancel(job[{job}])"),
            Op::OnDone { job, cb } => write!(f, "bioxen_vm_job_on_done(job[{job}], {cb:?})"),
            Op::JobStatus { job } => write!(f, "bioxen_vm_job_status(job[{job}])"),
            Op::FreeJob { job } => write!(f, "bioxen_vm_job_free(job[{job}])"),
            Op::WaitForVm { mgr, id, timeout } => {
                write!(f, "bioxen_vm_manager_wait_for_vm(mgr[{mgr}], v{id}, {timeout})")
            }
            Op::CancelVm { mgr, id } => write!(f, "bioxen_vm_manager_cancel_vm(mgr[{mgr}], v{id})"),
            Op::VmStatus { mgr, id } => write!(f, "bioxen_vm_manager_vm_status(mgr[{mgr}], v{id})"),
            Op::Interrupt { target, delay_ms } => {
                write!(f, "sleep {delay_ms} ms; interrupt({target})")
            }
            Op::Info { target } => write!(f, "info({target})"),
            Op::CreateSession { mgr, id, attach, callback } => write!(
                f,
                "bioxen_vm_manager_create_interactive_vm(mgr[{mgr}], v{id}, auto_attach {attach}){}",
                if *callback { "; attach with an output callback" } else { "" }
            ),
            Op::Attach { mgr, id, callback } => write!(
                f,
                "bioxen_vm_manager_attach(mgr[{mgr}], v{id}, {})",
                if *callback { "callback" } else { "NULL" }
            ),
            Op::Detach { mgr, id } => write!(f, "bioxen_vm_manager_detach(mgr[{mgr}], v{id})"),
            Op::IsAttached { mgr, id } => {
                write!(f, "bioxen_vm_manager_is_attached(mgr[{mgr}], v{id})")
            }
            Op::SendInput { mgr, id, lines } => {
                write!(f, "bioxen_vm_manager_send_input(mgr[{mgr}], v{id}, {lines:?})")
            }
            Op::ReadOutput { mgr, id, timeout, flags } => write!(
                f,
                "bioxen_vm_manager_read_output(mgr[{mgr}], v{id}, {timeout}, flags {flags})"
            ),
            Op::Command { mgr, id, line, timeout } => write!(
                f,
                "bioxen_vm_manager_execute_interactive_command(mgr[{mgr}], v{id}, {line:?}, {timeout})"
            ),
            Op::Broadcast { mgr, line, timeout } => write!(
                f,
                "bioxen_vm_manager_broadcast_to_sessions(mgr[{mgr}], \"v*\", {line:?}, {timeout})"
            ),
            Op::InterruptSession { mgr, id, delay_ms } => write!(
                f,
                "sleep {delay_ms} ms; bioxen_vm_manager_interrupt_session(mgr[{mgr}], v{id})"
            ),
            Op::TerminateSession { mgr, id } => {
                write!(f, "bioxen_vm_manager_terminate_session(mgr[{mgr}], v{id})")
            }
            Op::CloneSession { mgr, src, dst } => {
                write!(f, "bioxen_vm_manager_clone_session(mgr[{mgr}], v{src}, v{dst})")
            }
            Op::ListSessions { mgr } => write!(f, "bioxen_vm_manager_list_sessions(mgr[{mgr}])"),
            Op::ShutdownAll { mgr } => write!(f, "bioxen_vm_manager_shutdown_all(mgr[{mgr}])"),
            Op::Stats { mgr } => write!(f, "stats, list_vms, list_persistent_vms(mgr[{mgr}])"),
            Op::Stale { call, handle } => write!(f, "{call:?} with the bad handle {handle:?}"),
            Op::RenewBuffer => write!(f, "free this thread's result buffer and make a new one"),
            Op::Pause { ms } => write!(f, "sleep {ms} ms"),
        }
    }
}

/// A case: objects made first (in order, on one thread), then the operations of each
/// thread, run concurrently.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub setup: Vec<Op>,
    pub threads: Vec<Vec<Op>>,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  first:")?;
        for (i, op) in self.setup.iter().enumerate() {
            writeln!(f, "    {i:2}. {op}")?;
        }
        for (t, ops) in self.threads.iter().enumerate() {
            writeln!(f, "  thread {t}:")?;
            for (i, op) in ops.iter().enumerate() {
                writeln!(f, "    {i:2}. {op}")?;
            }
        }
        Ok(())
    }
}

impl Scenario {
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.setup.iter().chain(self.threads.iter().flatten())
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.

/// How often process VMs are made (out of 100 VM options).
pub const PROCESS_PERCENT: u32 = 4;

fn vm_opts(process_percent: u32) -> impl Strategy<Value = VmOpts> {
    (
        0u32..100,
        prop::bool::weighted(0.15),
        prop::sample::select(vec![0u32, 0, 262_144, 4 << 20]),
        prop::sample::select(vec![0u32, 0, 50, 200, 400]),
        prop::sample::select(vec![0u32, 0, 64, 1024, 65_536]),
        prop::option::weighted(0.2, 0u8..3),
    )
        .prop_map(
            move |(p, trusted, memory_limit, timeout_ms, max_output, chunk_cache)| VmOpts {
                // High values are process VMs, so that shrinking (towards 0) makes basic ones.
                process: p >= 100 - process_percent.min(100),
                trusted,
                memory_limit,
                timeout_ms,
                max_output,
                chunk_cache,
            },
        )
}

fn mgr_opts(process_percent: u32) -> impl Strategy<Value = MgrOpts> {
    (
        prop::sample::select(vec![0u8, 1, 2, 4]),
        vm_opts(process_percent),
        any::<bool>(),
    )
        .prop_map(|(max_workers, vm, as_defaults)| MgrOpts {
            max_workers,
            vm,
            as_defaults,
        })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0..VM_SLOTS).prop_map(Target::Vm),
        (0..MGR_SLOTS, 0..IDS).prop_map(|(m, i)| Target::Managed(m, i)),
    ]
}

/// A call's own timeout in ms (0: none).
fn call_timeout() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0u64, 0, 1, 30, 150, 400, 5000, u64::MAX])
}

/// A wait's timeout in ms (0: without limit).
fn wait_timeout() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0u64, 1, 20, 100, 300, u64::MAX])
}

/// Timeouts of the session functions: 0 and UINT64_MAX unless known to panic.
fn session_timeout(known: Known) -> BoxedStrategy<u64> {
    let finite = prop::sample::select(vec![1u64, 10, 100, 400, 3_600_000]);
    if known.session_timeout_extremes {
        finite.boxed()
    } else {
        prop_oneof![4 => finite, 1 => Just(0u64), 1 => Just(u64::MAX)].boxed()
    }
}

/// `read_output` timeouts (0: no wait).
fn read_timeout() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0u64, 1, 10, 100, 400, u64::MAX])
}

fn callback(known: Known) -> BoxedStrategy<Callback> {
    let c = prop_oneof![
        3 => Just(Callback::Record),
        2 => Just(Callback::WaitSelf),
        2 => (0u8..8, 1u32..200).prop_map(|(j, t)| Callback::WaitOther(j, t)),
        1 => Just(Callback::FreeSelf),
    ];
    if known.manager_free_in_callback {
        c.boxed()
    } else {
        prop_oneof![20 => c, 1 => Just(Callback::FreeManager)].boxed()
    }
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        3 => any::<u8>().prop_map(Bad::Freed),
        1 => Just(Bad::Zero),
        1 => Just(Bad::Max),
        1 => any::<u64>().prop_map(Bad::Unknown),
        2 => any::<u8>().prop_map(Bad::WrongKind),
    ]
}

fn stale_call() -> impl Strategy<Value = StaleCall> {
    prop::sample::select(vec![
        StaleCall::Execute,
        StaleCall::ExecuteAsync,
        StaleCall::Interrupt,
        StaleCall::Info,
        StaleCall::FreeVm,
        StaleCall::JobWait,
        StaleCall::JobStatus,
        StaleCall::JobCancel,
        StaleCall::JobFree,
        StaleCall::JobOnDone,
        StaleCall::ManagerFree,
        StaleCall::ManagerExecute,
        StaleCall::ManagerCreateVm,
        StaleCall::ManagerStats,
        StaleCall::SendInput,
    ])
}

fn read_flags() -> impl Strategy<Value = i32> {
    prop_oneof![10 => 0i32..8, 1 => Just(8), 1 => Just(-1)]
}

pub fn op(known: Known, process_percent: u32) -> BoxedStrategy<Op> {
    let prog = || lua::program(!known.c_library_loops, !known.process_forgery);
    let objects = prop_oneof![
        (0..VM_SLOTS, vm_opts(process_percent)).prop_map(|(slot, opts)| Op::NewVm { slot, opts }),
        (0..VM_SLOTS).prop_map(|slot| Op::FreeVm { slot }),
        (0..MGR_SLOTS, mgr_opts(process_percent))
            .prop_map(|(slot, opts)| Op::NewManager { slot, opts }),
        (0..MGR_SLOTS).prop_map(|slot| Op::FreeManager { slot }),
        (0..MGR_SLOTS, 0..IDS).prop_map(|(mgr, id)| Op::CreateVm { mgr, id }),
        (0..MGR_SLOTS, 0..IDS).prop_map(|(mgr, id)| Op::RemoveVm { mgr, id }),
    ];
    let exec = prop_oneof![
        8 => (target(), prog(), call_timeout(), lua::args(), any::<bool>()).prop_map(
            |(target, prog, timeout, args, into)| Op::Execute {
                target,
                prog,
                timeout,
                args,
                into
            }
        ),
        2 => (target(), 0u16..120).prop_map(|(target, delay_ms)| Op::Interrupt { target, delay_ms }),
        1 => target().prop_map(|target| Op::Info { target }),
    ];
    let jobs = prop_oneof![
        6 => (
            target(),
            prog(),
            call_timeout(),
            lua::args(),
            prop::option::weighted(0.4, callback(known))
        )
            .prop_map(|(target, prog, timeout, args, on_done)| Op::Submit {
                target,
                prog,
                timeout,
                args,
                on_done
            }),
        2 => (0u8..8, wait_timeout()).prop_map(|(job, timeout)| Op::Wait { job, timeout }),
        1 => (0u8..8).prop_map(|job| Op::Cancel { job }),
        1 => (0u8..8, callback(known)).prop_map(|(job, cb)| Op::OnDone { job, cb }),
        1 => (0u8..8).prop_map(|job| Op::JobStatus { job }),
        1 => (0u8..8).prop_map(|job| Op::FreeJob { job }),
        1 => (0..MGR_SLOTS, 0..IDS, wait_timeout())
            .prop_map(|(mgr, id, timeout)| Op::WaitForVm { mgr, id, timeout }),
        1 => (0..MGR_SLOTS, 0..IDS).prop_map(|(mgr, id)| Op::CancelVm { mgr, id }),
        1 => (0..MGR_SLOTS, 0..IDS).prop_map(|(mgr, id)| Op::VmStatus { mgr, id }),
    ];
    let m = || 0..MGR_SLOTS;
    let i = || 0..IDS;
    let sessions = prop_oneof![
        3 => (m(), i(), any::<bool>(), any::<bool>())
            .prop_map(|(mgr, id, attach, callback)| Op::CreateSession { mgr, id, attach, callback }),
        1 => (m(), i(), any::<bool>()).prop_map(|(mgr, id, callback)| Op::Attach { mgr, id, callback }),
        1 => (m(), i()).prop_map(|(mgr, id)| Op::Detach { mgr, id }),
        1 => (m(), i()).prop_map(|(mgr, id)| Op::IsAttached { mgr, id }),
        4 => (m(), i(), prop::collection::vec(lua::line(), 1..4))
            .prop_map(|(mgr, id, lines)| Op::SendInput { mgr, id, lines }),
        3 => (m(), i(), read_timeout(), read_flags())
            .prop_map(|(mgr, id, timeout, flags)| Op::ReadOutput { mgr, id, timeout, flags }),
        2 => (m(), i(), lua::line(), session_timeout(known))
            .prop_map(|(mgr, id, line, timeout)| Op::Command { mgr, id, line, timeout }),
        1 => (m(), lua::line(), session_timeout(known))
            .prop_map(|(mgr, line, timeout)| Op::Broadcast { mgr, line, timeout }),
        1 => (m(), i(), 0u16..120)
            .prop_map(|(mgr, id, delay_ms)| Op::InterruptSession { mgr, id, delay_ms }),
        1 => (m(), i()).prop_map(|(mgr, id)| Op::TerminateSession { mgr, id }),
        1 => (m(), i(), i()).prop_map(|(mgr, src, dst)| Op::CloneSession { mgr, src, dst }),
        1 => m().prop_map(|mgr| Op::ListSessions { mgr }),
    ];
    let misc = prop_oneof![
        3 => (stale_call(), bad()).prop_map(|(call, handle)| Op::Stale { call, handle }),
        1 => (0..MGR_SLOTS).prop_map(|mgr| Op::ShutdownAll { mgr }),
        1 => (0..MGR_SLOTS).prop_map(|mgr| Op::Stats { mgr }),
        1 => Just(Op::RenewBuffer),
        1 => (0u16..60).prop_map(|ms| Op::Pause { ms }),
    ];
    prop_oneof![
        3 => objects,
        12 => exec,
        7 => jobs,
        6 => sessions,
        2 => misc,
    ]
    .boxed()
}

/// What a manager's VM id starts as.
fn id_setup(mgr: u8, id: u8) -> impl Strategy<Value = Option<Op>> {
    prop_oneof![
        2 => Just(Some(Op::CreateVm { mgr, id })),
        2 => (any::<bool>(), any::<bool>())
            .prop_map(move |(attach, callback)| Some(Op::CreateSession { mgr, id, attach, callback })),
        1 => Just(None),
    ]
}

/// A case: every VM slot and manager slot filled and most ids made, then 1 to 4 threads.
pub fn scenario(known: Known, process_percent: u32) -> impl Strategy<Value = Scenario> {
    let vms = prop::collection::vec(vm_opts(process_percent), VM_SLOTS as usize);
    let mgrs = prop::collection::vec(mgr_opts(process_percent), MGR_SLOTS as usize);
    let ids: Vec<_> = (0..MGR_SLOTS)
        .flat_map(|m| (0..IDS).map(move |i| id_setup(m, i)))
        .collect();
    let setup = (vms, mgrs, ids).prop_map(|(vms, mgrs, ids)| {
        let mut ops: Vec<Op> = vms
            .into_iter()
            .enumerate()
            .map(|(slot, opts)| Op::NewVm {
                slot: slot as u8,
                opts,
            })
            .collect();
        ops.extend(
            mgrs.into_iter()
                .enumerate()
                .map(|(slot, opts)| Op::NewManager {
                    slot: slot as u8,
                    opts,
                }),
        );
        ops.extend(ids.into_iter().flatten());
        ops
    });
    let thread = prop::collection::vec(op(known, process_percent), 1..12);
    (setup, prop::collection::vec(thread, 1..5))
        .prop_map(|(setup, threads)| Scenario { setup, threads })
}
