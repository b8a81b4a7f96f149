//! Asynchronous executions: jobs on a bounded pool of worker threads.
//!
//! Each VM has a lane: its jobs run one at a time in submission order, while lanes of
//! different VMs run in parallel on up to `max_workers` threads. Threads are started on
//! demand, so a pool that never gets a job costs nothing.

use crate::error::{Error, Result};
use crate::session::Session;
use crate::vm::{ExecOutput, ExecRequest, Vm};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Waits for the job's outcome; `None` waits without limit.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<ExecOutput> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state.lock();
        loop {
            match &s.state {
                JobState::Done(r) => return r.clone(),
                JobState::Cancelled => return Err(cancelled_error()),
                _ => {}
            }
            match deadline {
                Some(d) => {
                    if self.cond.wait_until(&mut s, d).timed_out()
                        && matches!(&s.state, JobState::Pending | JobState::Running)
                    {
                        return Err(Error::WaitTimeout(format!(
                            "the job did not finish within {:?}",
                            timeout.unwrap_or_default()
                        )));
                    }
                }
                None => self.cond.wait(&mut s),
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
    fn cancel_unless_started(&self) {
        let s = self.state.lock();
        match &s.state {
            JobState::Pending => {
                drop(s);
                self.cancel();
            }
            JobState::Running => self.vm.cancel_unless_started(self.id, &self.stop),
            _ => {}
        }
    }

    /// Cancels the job: a queued job will not run; a running one is interrupted.
    /// Returns `false` when the job had already finished.
    pub fn cancel(&self) -> bool {
        let mut s = self.state.lock();
        match &s.state {
            JobState::Pending => {
                s.state = JobState::Cancelled;
                self.cond.notify_all();
                let hooks = std::mem::take(&mut s.hooks);
                drop(s);
                run_hooks(hooks, &Err(cancelled_error()));
                true
            }
            JobState::Running => {
                self.cancelled_by_user
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                drop(s);
                self.halt();
                true
            }
            JobState::Done(_) | JobState::Cancelled => false,
        }
    }

    fn run(&self) {
        {
            let mut s = self.state.lock();
            if !matches!(&s.state, JobState::Pending) {
                return;
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
        let hooks = std::mem::take(&mut s.hooks);
        drop(s);
        run_hooks(hooks, &outcome);
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
    shutdown: bool,
}

struct PoolInner {
    max_workers: usize,
    name: String,
    state: Mutex<PoolState>,
    work: Condvar,
    exited: Condvar,
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
        if s.idle == 0 && s.workers < inner.max_workers {
            let worker = inner.clone();
            std::thread::Builder::new()
                .name(format!("{}-worker", inner.name))
                .spawn(move || worker_loop(worker))
                .map_err(|e| Error::Internal(format!("could not start a worker thread: {e}")))?;
            s.workers += 1;
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
    /// still waiting for the VM); a job already running Lua is left to finish.
    pub fn cancel_queued(&self, vm_serial: u64) {
        let jobs: Vec<Arc<Job>> = {
            let mut s = self.0.state.lock();
            match s.lanes.get_mut(&vm_serial) {
                Some(l) => l.active.iter().cloned().chain(l.jobs.drain(..)).collect(),
                None => Vec::new(),
            }
        };
        for j in jobs {
            j.cancel_unless_started();
        }
    }

    /// Stops taking work, cancels queued jobs, stops running ones (INTERRUPTED; a job a
    /// worker took that has not started will not run) and waits up to `grace` for the
    /// workers to finish.
    pub fn shutdown(&self, grace: Duration) {
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
        for j in queued {
            j.cancel();
        }
        for j in active {
            j.halt();
        }
        let deadline = Instant::now() + grace;
        let mut s = inner.state.lock();
        inner.work.notify_all();
        while s.workers > 0 {
            if inner.exited.wait_until(&mut s, deadline).timed_out() {
                log::warn!(target: "bioxen_vm::jobs", "{} worker(s) still busy after shutdown; left to finish on their own", s.workers);
                break;
            }
        }
    }
}

fn worker_loop(inner: Arc<PoolInner>) {
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
            job.run();
            drop(job);
            s = inner.state.lock();
            if let Some(lane) = s.lanes.get_mut(&key) {
                lane.active = None;
                if lane.jobs.is_empty() {
                    s.lanes.remove(&key);
                } else {
                    s.ready.push_back(key);
                }
            }
        } else if s.shutdown {
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
