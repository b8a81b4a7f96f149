//! `Vm`: one VM of any kind, shared between threads.
//!
//! Calls on one VM serialise on its backend lock; calls on different VMs never share a
//! lock while Lua runs. `interrupt` never takes the backend lock, so it reaches code that
//! is running now. A panic while the backend was in use marks the VM poisoned: its state
//! may be half-updated, so only freeing it works afterwards.

use crate::error::{Error, Result};
use crate::vm::embedded::EmbeddedVm;
use crate::vm::{
    Backend, ExecOutput, ExecRequest, ReplStep, StopReason, Stopper, VmKind, VmOptions,
};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Vm {
    serial: u64,
    name: String,
    options: VmOptions,
    backend: Mutex<Box<dyn Backend>>,
    stopper: Arc<dyn Stopper>,
    poisoned: AtomicBool,
    busy: AtomicBool,
    created_at: f64,
    executions: AtomicU64,
    failures: AtomicU64,
    /// Tag of the execution running now (0 for a synchronous call), so that cancelling a
    /// job interrupts that job and never the execution after it.
    running_tag: Mutex<u64>,
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The serial the next VM this thread builds takes (see [`with_serial`]).
    static PRESET_SERIAL: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Reserves `n` consecutive serials; the first.
pub fn reserve_serials(n: usize) -> u64 {
    NEXT_SERIAL.fetch_add(n as u64, Relaxed)
}

/// Runs `f` with the serial of the next VM this thread builds set to `serial` (one from
/// [`reserve_serials`]): VMs built in parallel then keep the order of their ids.
pub fn with_serial<R>(serial: u64, f: impl FnOnce() -> R) -> R {
    PRESET_SERIAL.with(|p| p.set(Some(serial)));
    let r = f();
    PRESET_SERIAL.with(|p| p.set(None));
    r
}

fn next_serial() -> u64 {
    PRESET_SERIAL
        .with(|p| p.take())
        .unwrap_or_else(|| NEXT_SERIAL.fetch_add(1, Relaxed))
}

/// What the counters need to know of an outcome.
trait Outcome: Sized {
    /// `None` when nothing ran, else whether it ran successfully.
    fn ran(r: &Result<Self>) -> Option<bool>;
}

/// An execution that ran to its end, and whether it succeeded.
struct Ran(bool);

impl Outcome for Ran {
    fn ran(r: &Result<Self>) -> Option<bool> {
        Some(matches!(r, Ok(Ran(true))))
    }
}

impl Outcome for ReplStep {
    fn ran(r: &Result<Self>) -> Option<bool> {
        match r {
            Ok(ReplStep::Incomplete) => None,
            Ok(ReplStep::Ran(o)) => Some(o.success),
            Err(_) => Some(false),
        }
    }
}

/// Marks the VM poisoned if dropped during a panic.
struct PoisonGuard<'a>(&'a AtomicBool);

impl Drop for PoisonGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Relaxed);
        }
    }
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `true` when `code` is empty or only whitespace (as Python's `str.strip` sees ASCII).
pub fn is_blank(code: &[u8]) -> bool {
    code.iter().all(|b| b.is_ascii_whitespace() || *b == 0x0b)
}

impl Vm {
    /// Builds a VM of `options.kind`. `name` is what logs and `info` call it (empty: `vm<serial>`).
    pub fn new(name: &str, mut options: VmOptions) -> Result<Arc<Vm>> {
        if options.env.is_none() && matches!(options.kind, VmKind::Basic | VmKind::Process) {
            options.env = std::env::var(crate::vm::options::ENV_VAR)
                .ok()
                .filter(|v| !v.is_empty());
        }
        let serial = next_serial();
        let name = if name.is_empty() {
            format!("vm{serial}")
        } else {
            name.to_string()
        };
        let backend: Box<dyn Backend> = match options.kind {
            // LuaSocket is a C module: a networked VM is served by a child interpreter.
            VmKind::Basic if options.networked => Box::new(crate::vm::process::new(&options)?),
            VmKind::Basic => Box::new(EmbeddedVm::new(&options)?),
            VmKind::Process => Box::new(crate::vm::process::new(&options)?),
            VmKind::Ssh => Box::new(crate::vm::ssh::new(&options)?),
            VmKind::Xcpng => Box::new(crate::vm::xcpng::new(&options, None)?),
        };
        Ok(Self::with_backend(serial, name, options, backend))
    }

    /// An xcpng VM whose deploy reports to `observer` (see [`crate::vm::xcpng::Observer`]).
    pub fn new_xcpng(
        name: &str,
        options: VmOptions,
        observer: Option<crate::vm::xcpng::Observer>,
    ) -> Result<Arc<Vm>> {
        if options.kind != VmKind::Xcpng {
            return Err(Error::invalid(
                "these options are not of an xcpng VM (vm_type)",
            ));
        }
        let serial = next_serial();
        let name = if name.is_empty() {
            format!("vm{serial}")
        } else {
            name.to_string()
        };
        let backend = Box::new(crate::vm::xcpng::new(&options, observer)?);
        Ok(Self::with_backend(serial, name, options, backend))
    }

    fn with_backend(
        serial: u64,
        name: String,
        options: VmOptions,
        backend: Box<dyn Backend>,
    ) -> Arc<Vm> {
        let stopper = backend.stopper();
        log::debug!(target: "bioxen_vm::vm", "created VM '{name}' ({})", options.kind.name());
        Arc::new(Vm {
            serial,
            name,
            options,
            backend: Mutex::new(backend),
            stopper,
            poisoned: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            created_at: now_epoch(),
            executions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            running_tag: Mutex::new(0),
        })
    }

    /// What logs and `info` call the VM.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A number unique to this VM for the life of the process.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn options(&self) -> &VmOptions {
        &self.options
    }

    pub fn created_at(&self) -> f64 {
        self.created_at
    }

    pub fn is_running(&self) -> bool {
        self.busy.load(Relaxed)
    }

    /// Runs code. `timeout`: the call's limit, else the VM's default.
    pub fn execute(&self, req: &ExecRequest<'_>, timeout: Option<Duration>) -> Result<ExecOutput> {
        self.execute_tagged(req, timeout, 0, None)
    }

    /// `execute` into `out`, reusing its buffers (see [`Backend::execute_into`]).
    pub fn execute_into(
        &self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        out: &mut ExecOutput,
    ) -> Result<()> {
        if is_blank(req.code) {
            return Err(Error::invalid("Lua code cannot be empty"));
        }
        self.run_request_into(req, timeout, 0, None, out)
    }

    /// `execute` for a job: records `tag` as the running execution for
    /// [`Vm::interrupt_tagged`], and does not start when `cancel` is set by the time the VM
    /// is free (checked under the same lock [`Vm::cancel_unless_started`] takes).
    pub fn execute_tagged(
        &self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        tag: u64,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExecOutput> {
        if is_blank(req.code) {
            return Err(Error::invalid("Lua code cannot be empty"));
        }
        self.run_request(req, timeout, tag, cancel)
    }

    /// `execute_tagged` without the blank-code check (an empty file is a valid script).
    pub(crate) fn run_request(
        &self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        tag: u64,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExecOutput> {
        let mut out = ExecOutput::default();
        self.run_request_into(req, timeout, tag, cancel, &mut out)?;
        Ok(out)
    }

    /// `run_request` into `out`, reusing its buffers.
    fn run_request_into(
        &self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        tag: u64,
        cancel: Option<&AtomicBool>,
        out: &mut ExecOutput,
    ) -> Result<()> {
        if let Some(a) = req.args {
            if !a.is_array() {
                return Err(Error::invalid("arguments must be a JSON array"));
            }
        }
        let r = self.locked(timeout, tag, cancel, |b, t| {
            b.execute_into(req, t, cancel, out)
                .map(|()| Ran(out.success))
        });
        self.log_outcome(req, r.as_ref().map(|_| &*out));
        r.map(|_| ())
    }

    /// Evaluates interactive input (see [`Backend::repl_eval`]) under the VM's lock, with
    /// the VM's default timeout; `tag` and `cancel` as for [`Vm::execute_tagged`].
    pub fn repl_eval(
        &self,
        chunk: &[u8],
        first_line: bool,
        tag: u64,
        cancel: Option<&AtomicBool>,
    ) -> Result<ReplStep> {
        let r = self.locked(None, tag, cancel, |b, t| {
            b.repl_eval(chunk, first_line, t, cancel)
        });
        if log::log_enabled!(target: "bioxen_vm::vm", log::Level::Trace) {
            log::trace!(target: "bioxen_vm::vm", "VM '{}' session input: {}", self.name, String::from_utf8_lossy(chunk));
        }
        r
    }

    /// Runs `f` on the backend under the VM's lock: the poisoned check, the busy flag, the
    /// job tag and its cancel flag, the effective timeout and the counters.
    fn locked<T: Outcome>(
        &self,
        timeout: Option<Duration>,
        tag: u64,
        cancel: Option<&AtomicBool>,
        f: impl FnOnce(&mut dyn Backend, Option<Duration>) -> Result<T>,
    ) -> Result<T> {
        // A backend adds the timeout to `Instant::now()`: past the deadline horizon it is no
        // limit at all, so that sum cannot overflow whatever number the caller gave.
        let timeout = crate::deadline::bounded(timeout.or(self.options.timeout));
        // Waiting for the VM (busy with another call) counts against the call's limit: a
        // call with a timeout never waits past it.
        let asked = timeout;
        let (mut backend, timeout) = match timeout {
            None => (self.backend.lock(), None),
            Some(t) => {
                let waited = std::time::Instant::now();
                let b = self.backend.try_lock_for(t).ok_or_else(|| {
                    Error::Timeout(format!(
                        "{}; the VM was busy with another call the whole time",
                        crate::vm::timeout_message(Some(t))
                    ))
                })?;
                let left = t.saturating_sub(waited.elapsed());
                (b, Some(left.max(Duration::from_nanos(1))))
            }
        };
        if self.poisoned.load(Relaxed) {
            return Err(self.poisoned_error());
        }
        let guard = PoisonGuard(&self.poisoned);
        self.busy.store(true, Relaxed);
        // Only jobs are interrupted by tag; a synchronous call (tag 0) leaves it alone.
        if tag != 0 {
            let mut running = self.running_tag.lock();
            if cancel.is_some_and(|c| c.load(SeqCst)) {
                self.busy.store(false, Relaxed);
                return Err(Error::Cancelled("the job was cancelled".into()));
            }
            *running = tag;
        }
        let mut r = f(&mut **backend, timeout);
        if timeout != asked {
            // A timeout names the call's limit, not what was left of it after the wait.
            if let Err(Error::Timeout(m)) = &mut r {
                *m = m.replacen(
                    &crate::vm::timeout_message(timeout),
                    &crate::vm::timeout_message(asked),
                    1,
                );
            }
        }
        if tag != 0 {
            *self.running_tag.lock() = 0;
        }
        self.busy.store(false, Relaxed);
        // Only the thread holding the backend writes the counters: plain stores suffice.
        if let Some(ok) = Outcome::ran(&r) {
            self.executions
                .store(self.executions.load(Relaxed) + 1, Relaxed);
            if !ok {
                self.failures
                    .store(self.failures.load(Relaxed) + 1, Relaxed);
            }
        }
        drop(guard);
        drop(backend);
        r
    }

    fn log_outcome(&self, req: &ExecRequest<'_>, r: std::result::Result<&ExecOutput, &Error>) {
        let level = if self.options.debug_mode {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        if log::log_enabled!(target: "bioxen_vm::vm", level) {
            let outcome = match r {
                Ok(o) if o.success => format!("ok in {:?}", o.duration),
                Ok(o) => format!("Lua error in {:?}", o.duration),
                Err(e) => format!("{} ({e})", e.status().name()),
            };
            log::log!(target: "bioxen_vm::vm", level, "VM '{}' executed {} bytes: {outcome}", self.name, req.code.len());
        }
        let trace = if self.options.debug_mode {
            log::Level::Debug
        } else {
            log::Level::Trace
        };
        log::log!(target: "bioxen_vm::vm", trace, "VM '{}' code: {}", self.name, String::from_utf8_lossy(req.code));
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned(format!(
            "VM '{}' was poisoned by an internal panic; free it and create a new one",
            self.name
        ))
    }

    /// Stops the code running on this VM now (from any thread). Returns whether something
    /// was running.
    pub fn interrupt(&self) -> bool {
        self.stopper.stop(StopReason::Interrupt, None)
    }

    /// Sets `cancel` unless the execution tagged `tag` has already started: a job a worker
    /// took but that still waits for the VM will then not run.
    pub fn cancel_unless_started(&self, tag: u64, cancel: &AtomicBool) {
        let running = self.running_tag.lock();
        if *running != tag {
            cancel.store(true, SeqCst);
        }
    }

    /// Interrupts the execution tagged `tag` (non-zero) if it is the one running now.
    pub fn interrupt_tagged(&self, tag: u64) -> bool {
        let running = self.running_tag.lock();
        tag != 0 && *running == tag && self.stopper.stop(StopReason::Interrupt, None)
    }

    /// The VM's facts as a JSON object.
    pub fn info(&self) -> Map<String, Value> {
        let mut m = self.options.to_json();
        m.insert("vm_name".into(), self.name.clone().into());
        m.insert("created_at".into(), self.created_at.into());
        m.insert("running".into(), self.is_running().into());
        m.insert("poisoned".into(), self.poisoned.load(Relaxed).into());
        m.insert("executions".into(), self.executions.load(Relaxed).into());
        m.insert(
            "failed_executions".into(),
            self.failures.load(Relaxed).into(),
        );
        // Backend facts are only read when the VM is idle; a busy VM reports what it can.
        if let Some(b) = self.backend.try_lock() {
            m.extend(b.info());
        }
        m
    }

    /// Whether a child interpreter serves this VM and runs now: the backend's own
    /// `process_running` when the VM is idle; while code runs on it, whether it is of a
    /// child-interpreter kind (its child is busy). Always false for in-process VMs.
    pub fn process_running(&self) -> bool {
        match self.backend.try_lock() {
            Some(b) => b
                .info()
                .get("process_running")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            None => self.options.kind != VmKind::Basic || self.options.networked,
        }
    }

    #[doc(hidden)]
    /// Runs `f` while holding the backend as `execute` does (tests use it to panic there).
    pub fn with_backend_for_test<R>(&self, f: impl FnOnce() -> R) -> R {
        let _b = self.backend.lock();
        let _g = PoisonGuard(&self.poisoned);
        f()
    }
}
