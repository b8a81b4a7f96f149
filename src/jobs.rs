//! Asynchronous executions: jobs on a bounded pool of worker threads.
//!
//! Each VM has a lane: its jobs run one at a time in submission order, while lanes of
//! different VMs run in parallel on up to `max_workers` threads. Threads are started on
//! demand, so a pool that never gets a job costs nothing.
//!
//! A job's done hooks (the C API's on-done callbacks) run on the worker after it has
//! released the job's lane, so the VM's next job can start meanwhile. A hook may wait for
//! other jobs: while a worker waits for a job that has not finished, the pool counts it
//! as blocked and may start one more thread in its place, so a wait from a hook never
//! deadlocks the pool (not even with `max_workers` 1, not even for a job queued behind
//! the hook's own job on the same VM).

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::session::Session;
use crate::vm::{ExecOutput, ExecRequest, Vm};
use parking_lot::{Condvar, Mutex};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

enum JobState {
    Pending,
    Running,
    Done(Result<ExecOutput>),
    Cancelled,
}

/// Called once with the job's final outcome (see [`Job::on_done`]).
pub type DoneHook = Box<dyn FnOnce(&Result<ExecOutput>) + Send>;

/// The job's state and the hooks waiting for it to finish, under one lock.
struct Slot {
    state: JobState,
    hooks: Vec<DoneHook>,
}

/// What a job does.
enum Work {
    /// Run code.
    Execute {
        code: Vec<u8>,
        args: Option<serde_json::Value>,
        timeout: Option<Duration>,
    },
    /// Evaluate the session's queued input.
    SessionInput(Arc<Session>),
}

/// One asynchronous execution.
pub struct Job {
    id: u64,
    vm: Arc<Vm>,
    work: Work,
    state: Mutex<Slot>,
    cond: Condvar,
    /// Set to stop the job: before it starts (it will not run) or while it runs.
    stop: std::sync::atomic::AtomicBool,
    /// The user cancelled it: an interrupted run then ends as CANCELLED, not INTERRUPTED.
    cancelled_by_user: std::sync::atomic::AtomicBool,
}

/// What `Job::status` reports, with the original library's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued or executing (the original reported both as "running").
    Running,
    Done,
    Cancelled,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

static NEXT_JOB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Job {
    pub fn new(
        vm: Arc<Vm>,
        code: Vec<u8>,
        args: Option<serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Arc<Job> {
        Self::with_work(
            vm,
            Work::Execute {
                code,
                args,
                timeout,
            },
        )
    }

    /// A job that evaluates `session`'s queued input on its VM's lane.
    pub fn session_input(session: Arc<Session>) -> Arc<Job> {
        Self::with_work(session.vm().clone(), Work::SessionInput(session))
    }

    fn with_work(vm: Arc<Vm>, work: Work) -> Arc<Job> {
        Arc::new(Job {
            id: NEXT_JOB.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            vm,
            work,
            state: Mutex::new(Slot {
                state: JobState::Pending,
                hooks: Vec::new(),
            }),
            cond: Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
            cancelled_by_user: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn status(&self) -> JobStatus {
        match &self.state.lock().state {
            JobState::Pending | JobState::Running => JobStatus::Running,
            JobState::Done(_) => JobStatus::Done,
            JobState::Cancelled => JobStatus::Cancelled,
        }
    }

    /// Waits for the job's outcome; `None` (or a timeout past the deadline horizon) waits
    /// without limit.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<ExecOutput> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Waits for the job's outcome until `deadline`. On a pool worker (inside a done hook)
    /// the pool is told that this worker is blocked, so the job can still get a thread.
    pub fn wait_until(&self, deadline: Deadline) -> Result<ExecOutput> {
        // Declared first so that it is dropped after the job's lock is released.
        let mut blocked = None;
        let mut s = self.state.lock();
        loop {
            match &s.state {
                JobState::Done(r) => return r.clone(),
                JobState::Cancelled => return Err(cancelled_error()),
                _ => {}
            }
            if blocked.is_none() {
                // Outside the job's lock: the pool may start a thread.
                blocked = Some(parking_lot::MutexGuard::unlocked(&mut s, Blocked::begin));
                continue;
            }
            if deadline.wait(&self.cond, &mut s)
                && matches!(&s.state, JobState::Pending | JobState::Running)
            {
                return Err(Error::WaitTimeout(
                    "the job did not finish within the time waited for it".into(),
                ));
            }
        }
    }

    /// Stops the job: it will not start, or its running code is interrupted (ending it as
    /// INTERRUPTED unless the user cancelled it). The flag is set first: an execution that
    /// has not armed its stopper yet reads it once it has; one that has is interrupted here.
    fn halt(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.vm.interrupt_tagged(self.id);
    }

    /// Cancels the job unless it has started running Lua (used when its VM is removed).
    /// The hooks of a job cancelled here are returned, for the caller to run once every
    /// job of the batch is cancelled.
    fn cancel_unless_started(&self) -> Vec<DoneHook> {
        let s = self.state.lock();
        match &s.state {
            JobState::Pending => {
                drop(s);
                self.cancel_pending().unwrap_or_default()
            }
            JobState::Running => {
                self.vm.cancel_unless_started(self.id, &self.stop);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Marks a queued job cancelled and returns its hooks (not run yet); `None` when it is
    /// not queued.
    fn cancel_pending(&self) -> Option<Vec<DoneHook>> {
        let mut s = self.state.lock();
        if !matches!(&s.state, JobState::Pending) {
            return None;
        }
        s.state = JobState::Cancelled;
        self.cond.notify_all();
        Some(std::mem::take(&mut s.hooks))
    }

    /// Cancels the job: a queued job will not run; a running one is interrupted.
    /// Returns `false` when the job had already finished.
    pub fn cancel(&self) -> bool {
        if let Some(hooks) = self.cancel_pending() {
            run_hooks(hooks, &Err(cancelled_error()));
            return true;
        }
        // Not queued (and never again): running, or finished.
        let s = self.state.lock();
        if !matches!(&s.state, JobState::Running) {
            return false;
        }
        self.cancelled_by_user
            .store(true, std::sync::atomic::Ordering::SeqCst);
        drop(s);
        self.halt();
        true
    }

    /// Runs the job (if it is still queued) and records its outcome; the hooks are
    /// returned with the outcome, for the worker to run once it has released the lane.
    fn run(&self) -> Option<(Vec<DoneHook>, Result<ExecOutput>)> {
        {
            let mut s = self.state.lock();
            if !matches!(&s.state, JobState::Pending) {
                return None;
            }
            s.state = JobState::Running;
        }
        let r = match &self.work {
            Work::Execute {
                code,
                args,
                timeout,
            } => {
                let req = ExecRequest {
                    code,
                    args: args.as_ref(),
                    chunk_name: None,
                };
                self.vm
                    .execute_tagged(&req, *timeout, self.id, Some(&self.stop))
            }
            Work::SessionInput(session) => {
                session.drain(true);
                Ok(ExecOutput::default())
            }
        };
        let mut s = self.state.lock();
        let cancelled = self
            .cancelled_by_user
            .load(std::sync::atomic::Ordering::SeqCst);
        let (state, outcome) = match r {
            Err(Error::Cancelled(_)) => (JobState::Cancelled, Err(cancelled_error())),
            Err(Error::Interrupted(_)) if cancelled => {
                (JobState::Cancelled, Err(cancelled_error()))
            }
            r => (JobState::Done(r.clone()), r),
        };
        s.state = state;
        self.cond.notify_all();
        Some((std::mem::take(&mut s.hooks), outcome))
    }

    /// Calls `hook` once with the job's outcome when it finishes (`Err(Cancelled)` for a
    /// cancelled job): on the thread that finishes it (a worker, or the thread that
    /// cancels a queued job), or at once on this thread if it has already finished. No
    /// lock is held while the hook runs, so it may call back into the job.
    pub fn on_done(&self, hook: DoneHook) {
        let mut s = self.state.lock();
        let outcome = match &s.state {
            JobState::Pending | JobState::Running => {
                s.hooks.push(hook);
                return;
            }
            JobState::Done(r) => r.clone(),
            JobState::Cancelled => Err(cancelled_error()),
        };
        drop(s);
        hook(&outcome);
    }
}

fn cancelled_error() -> Error {
    Error::Cancelled("the job was cancelled".into())
}

fn run_hooks(hooks: Vec<DoneHook>, outcome: &Result<ExecOutput>) {
    for hook in hooks {
        hook(outcome);
    }
}

struct Lane {
    jobs: VecDeque<Arc<Job>>,
    /// The job a worker is running (or about to run) for this lane.
    active: Option<Arc<Job>>,
}

struct PoolState {
    lanes: HashMap<u64, Lane>,
    ready: VecDeque<u64>,
    workers: usize,
    idle: usize,
    /// Workers waiting for a job (from a done hook); the pool may start as many threads
    /// again, so the jobs they wait for still get a thread.
    blocked: usize,
    shutdown: bool,
}

struct PoolInner {
    max_workers: usize,
    name: String,
    state: Mutex<PoolState>,
    work: Condvar,
    exited: Condvar,
}

impl PoolInner {
    /// Threads the pool may have now: `max_workers`, plus one for each blocked worker.
    fn capacity(&self, s: &PoolState) -> usize {
        self.max_workers + s.blocked
    }
}

thread_local! {
    /// The pool this thread is a worker of (none on other threads).
    static WORKER_OF: RefCell<Option<Weak<PoolInner>>> = const { RefCell::new(None) };
}

/// The pool the calling thread works for, if it is a worker.
fn current_pool() -> Option<Arc<PoolInner>> {
    WORKER_OF.with(|w| w.borrow().as_ref().and_then(Weak::upgrade))
}

fn is_worker_of(inner: &Arc<PoolInner>) -> bool {
    current_pool().is_some_and(|p| Arc::ptr_eq(&p, inner))
}

fn spawn_worker(inner: &Arc<PoolInner>, s: &mut PoolState) -> Result<()> {
    let worker = inner.clone();
    std::thread::Builder::new()
        .name(format!("{}-worker", inner.name))
        .spawn(move || worker_loop(worker))
        .map_err(|e| Error::Internal(format!("could not start a worker thread: {e}")))?;
    s.workers += 1;
    Ok(())
}

/// A worker counted as blocked while it waits for a job (a no-op on other threads).
struct Blocked(Option<Arc<PoolInner>>);

impl Blocked {
    fn begin() -> Blocked {
        let Some(inner) = current_pool() else {
            return Blocked(None);
        };
        let mut s = inner.state.lock();
        s.blocked += 1;
        if !s.shutdown && !s.ready.is_empty() && s.idle == 0 && s.workers < inner.capacity(&s) {
            if let Err(e) = spawn_worker(&inner, &mut s) {
                log::warn!(target: "bioxen_vm::jobs", "{e}");
            }
        } else {
            inner.work.notify_one();
        }
        drop(s);
        Blocked(Some(inner))
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        if let Some(inner) = &self.0 {
            let mut s = inner.state.lock();
            s.blocked -= 1;
            if s.workers > inner.capacity(&s) {
                // An idle thread started in this one's place may go now.
                inner.work.notify_all();
            }
        }
    }
}

/// A bounded pool of worker threads (a handle: clones share the pool).
#[derive(Clone)]
pub struct Pool(Arc<PoolInner>);

impl Pool {
    pub fn new(max_workers: usize, name: &str) -> Pool {
        Pool(Arc::new(PoolInner {
            max_workers: max_workers.max(1),
            name: name.to_string(),
            state: Mutex::new(PoolState {
                lanes: HashMap::new(),
                ready: VecDeque::new(),
                workers: 0,
                idle: 0,
                blocked: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            exited: Condvar::new(),
        }))
    }

    pub fn max_workers(&self) -> usize {
        self.0.max_workers
    }

    /// Queues `job` behind the other jobs of its VM.
    pub fn submit(&self, job: Arc<Job>) -> Result<()> {
        let inner = &self.0;
        let mut s = inner.state.lock();
        if s.shutdown {
            return Err(Error::Original {
                status: crate::status::bioxen_vm_status::VmManagerError,
                message: "cannot schedule new work after shutdown".into(),
            });
        }
        let key = job.vm.serial();
        let lane = s.lanes.entry(key).or_insert_with(|| Lane {
            jobs: VecDeque::new(),
            active: None,
        });
        lane.jobs.push_back(job);
        if lane.active.is_none() && lane.jobs.len() == 1 {
            s.ready.push_back(key);
        }
        if s.idle == 0 && s.workers < inner.capacity(&s) {
            spawn_worker(inner, &mut s)?;
        } else {
            inner.work.notify_one();
        }
        Ok(())
    }

    /// Number of jobs queued or running.
    pub fn pending(&self) -> usize {
        let s = self.0.state.lock();
        s.lanes
            .values()
            .map(|l| l.jobs.len() + usize::from(l.active.is_some()))
            .sum()
    }

    /// Cancels every job of `vm` that has not started (queued, or taken by a worker but
    /// still waiting for the VM); a job already running Lua is left to finish. Every job
    /// is cancelled before the first hook runs.
    pub fn cancel_queued(&self, vm_serial: u64) {
        let jobs: Vec<Arc<Job>> = {
            let mut s = self.0.state.lock();
            match s.lanes.get_mut(&vm_serial) {
                Some(l) => l.active.iter().cloned().chain(l.jobs.drain(..)).collect(),
                None => Vec::new(),
            }
        };
        let hooks: Vec<Vec<DoneHook>> = jobs.iter().map(|j| j.cancel_unless_started()).collect();
        for h in hooks {
            run_hooks(h, &Err(cancelled_error()));
        }
    }

    /// Stops taking work, cancels queued jobs, stops running ones (INTERRUPTED; a job a
    /// worker took that has not started will not run) and waits for the workers to finish
    /// until `grace` after the call began (the hooks of cancelled jobs run in that time).
    /// Called on one of the pool's workers (from a done hook), it does not wait for that
    /// worker, which ends once the hook returns.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Deadline::after(Some(grace));
        let inner = &self.0;
        let (active, queued): (Vec<Arc<Job>>, Vec<Arc<Job>>) = {
            let mut s = inner.state.lock();
            s.shutdown = true;
            s.ready.clear();
            let active = s.lanes.values().filter_map(|l| l.active.clone()).collect();
            let queued = s
                .lanes
                .values_mut()
                .flat_map(|l| l.jobs.drain(..))
                .collect();
            (active, queued)
        };
        // Every queued job is cancelled before any hook runs: a hook that waits for
        // another job of the batch finds it cancelled instead of waiting for ever.
        let hooks: Vec<Vec<DoneHook>> = queued.iter().filter_map(|j| j.cancel_pending()).collect();
        for j in active {
            j.halt();
        }
        for h in hooks {
            run_hooks(h, &Err(cancelled_error()));
        }
        let me = usize::from(is_worker_of(inner));
        let mut s = inner.state.lock();
        inner.work.notify_all();
        while s.workers > me {
            if deadline.wait(&inner.exited, &mut s) {
                log::warn!(target: "bioxen_vm::jobs", "{} worker(s) still busy after shutdown; left to finish on their own", s.workers - me);
                break;
            }
        }
    }
}

fn worker_loop(inner: Arc<PoolInner>) {
    WORKER_OF.with(|w| *w.borrow_mut() = Some(Arc::downgrade(&inner)));
    let mut s = inner.state.lock();
    loop {
        if let Some(key) = s.ready.pop_front() {
            let job = match s.lanes.get_mut(&key) {
                Some(lane) => match lane.jobs.pop_front() {
                    Some(j) => {
                        lane.active = Some(j.clone());
                        j
                    }
                    None => {
                        s.lanes.remove(&key);
                        continue;
                    }
                },
                None => continue,
            };
            drop(s);
            let finished = job.run();
            drop(job);
            s = inner.state.lock();
            if let Some(lane) = s.lanes.get_mut(&key) {
                lane.active = None;
                if lane.jobs.is_empty() {
                    s.lanes.remove(&key);
                } else {
                    s.ready.push_back(key);
                    inner.work.notify_one();
                }
            }
            // The hooks run with the lane released: the VM's next job may start meanwhile
            // (on another thread), so a hook that waits for it does not wait for itself.
            if let Some((hooks, outcome)) = finished {
                drop(s);
                run_hooks(hooks, &outcome);
                drop(outcome);
                s = inner.state.lock();
            }
        } else if s.shutdown || s.workers > inner.capacity(&s) {
            break;
        } else {
            s.idle += 1;
            inner.work.wait(&mut s);
            s.idle -= 1;
        }
    }
    s.workers -= 1;
    inner.exited.notify_all();
}
