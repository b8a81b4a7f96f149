//! `Manager`: a namespace of VMs by string id with a worker pool, as the original's
//! `VMManager`. The ffi layer calls this; it holds no C types.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::jobs::{Job, JobStatus, Pool};
use crate::session::{OutputCallback, Scheduler, Session};
use crate::status::bioxen_vm_status as Status;
use crate::vm::options::{get_bool, get_str, parse_object, reject_unknown};
use crate::vm::{ExecOutput, ExecRequest, Vm, VmOptions};
use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Manager options besides the VM defaults.
const MANAGER_KEYS: &[&str] = &["max_workers", "debug_mode", "lua_executable"];
/// VM options a manager accepts as defaults for the VMs it creates.
const DEFAULT_VM_KEYS: &[&str] = &[
    "vm_type",
    "sandbox",
    "memory_limit",
    "timeout",
    "max_output",
    "chunk_cache",
];
/// Default size of a manager's worker pool, as the original's.
pub const DEFAULT_MAX_WORKERS: usize = 10;
/// How long freeing a manager waits for interrupted work to end (once: see
/// [`Manager::shutdown`]).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct Manager {
    defaults: VmOptions,
    pub(crate) vms: RwLock<HashMap<String, Arc<Vm>>>,
    pub(crate) sessions: RwLock<HashMap<String, Arc<Session>>>,
    /// Each VM's jobs: every unfinished one, and the most recent one (for its status and
    /// result). Nothing is overwritten when several jobs run on one VM.
    jobs: parking_lot::Mutex<HashMap<String, Vec<Arc<Job>>>>,
    pool: Pool,
    submitted: AtomicU64,
    /// Set by the first [`Manager::shutdown`]; later calls (the drop) return at once.
    closed: AtomicBool,
}

impl Manager {
    pub fn new(options_json: &str) -> Result<Manager> {
        let map = parse_object(options_json, "manager options")?;
        // A manager of ssh (or xcpng) VMs may hold their own options as defaults too.
        let ssh_keys: &[&str] = match get_str(&map, "vm_type")? {
            Some("ssh") => crate::vm::ssh::options::SSH_OPTION_KEYS,
            Some("xcpng") => crate::vm::xcpng::options::XCPNG_OPTION_KEYS,
            _ => &[],
        };
        let known: Vec<&str> = MANAGER_KEYS
            .iter()
            .chain(DEFAULT_VM_KEYS)
            .chain(ssh_keys)
            .copied()
            .collect();
        reject_unknown(&map, &known, "manager")?;
        let max_workers = match map.get("max_workers") {
            None | Some(Value::Null) => DEFAULT_MAX_WORKERS,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=1024).contains(&n) => n as usize,
                _ => {
                    return Err(Error::invalid(
                        "option 'max_workers' must be an integer from 1 to 1024",
                    ))
                }
            },
        };
        let mut vm_defaults = Map::new();
        for k in DEFAULT_VM_KEYS.iter().chain(ssh_keys) {
            if let Some(v) = map.get(*k) {
                vm_defaults.insert((*k).to_string(), v.clone());
            }
        }
        if let Some(b) = get_bool(&map, "debug_mode")? {
            vm_defaults.insert("debug_mode".into(), b.into());
        }
        if let Some(s) = get_str(&map, "lua_executable")? {
            vm_defaults.insert("lua_executable".into(), s.into());
        }
        let defaults = VmOptions::from_json(&vm_defaults, &VmOptions::default())?;
        Ok(Manager {
            defaults,
            vms: RwLock::new(HashMap::new()),
            sessions: RwLock::new(HashMap::new()),
            jobs: parking_lot::Mutex::new(HashMap::new()),
            pool: Pool::new(max_workers, "bioxen-vm"),
            submitted: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn check_id(vm_id: &str) -> Result<()> {
        if vm_id.is_empty() {
            return Err(Error::invalid("VM id must not be empty"));
        }
        Ok(())
    }

    /// How many VMs of these options a cluster call builds at once: xcpng VMs deploy in
    /// parallel (each waits on its pool for seconds), the others one after the other.
    pub(crate) fn parallel_builds(&self, options_json: &str) -> Result<usize> {
        let o = VmOptions::from_json(&parse_object(options_json, "VM options")?, &self.defaults)?;
        Ok(if o.kind == crate::vm::VmKind::Xcpng {
            crate::vm::xcpng::PARALLEL_DEPLOYS
        } else {
            1
        })
    }

    pub fn create_vm(&self, vm_id: &str, options_json: &str) -> Result<Arc<Vm>> {
        let map = parse_object(options_json, "VM options")?;
        self.add_vm(vm_id, VmOptions::from_json(&map, &self.defaults)?)
    }

    /// Builds a VM named `vm_id` and adds it, unless the id is taken.
    fn add_vm(&self, vm_id: &str, options: VmOptions) -> Result<Arc<Vm>> {
        self.add_vm_with(vm_id, options, None)
    }

    /// `add_vm`; an xcpng VM's deploy reports to `observer` when given.
    fn add_vm_with(
        &self,
        vm_id: &str,
        options: VmOptions,
        observer: Option<crate::vm::xcpng::Observer>,
    ) -> Result<Arc<Vm>> {
        Self::check_id(vm_id)?;
        if self.vms.read().contains_key(vm_id) {
            return Err(already_exists(vm_id));
        }
        // Built outside the lock (creating a state takes microseconds; other VMs go on).
        let vm = match observer {
            Some(o) => Vm::new_xcpng(vm_id, options, Some(o))?,
            None => Vm::new(vm_id, options)?,
        };
        let mut vms = self.vms.write();
        if vms.contains_key(vm_id) {
            return Err(already_exists(vm_id));
        }
        vms.insert(vm_id.to_string(), vm.clone());
        Ok(vm)
    }

    pub fn get(&self, vm_id: &str) -> Result<Arc<Vm>> {
        self.vms
            .read()
            .get(vm_id)
            .cloned()
            .ok_or_else(|| Error::VmNotFound(format!("VM '{vm_id}' not found")))
    }

    /// Removes a VM: its queued jobs are cancelled; an execution running on it finishes
    /// (the caller holds the VM until then) but the id is free at once.
    pub fn remove_vm(&self, vm_id: &str) -> Result<()> {
        let vm = self
            .vms
            .write()
            .remove(vm_id)
            .ok_or_else(|| Error::VmNotFound(format!("VM '{vm_id}' not found")))?;
        self.pool.cancel_queued(vm.serial());
        if let Some(s) = self.sessions.write().remove(vm_id) {
            s.terminate();
        }
        self.jobs.lock().remove(vm_id);
        Ok(())
    }

    pub fn execute(
        &self,
        vm_id: &str,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        self.get(vm_id)?.execute(req, timeout)
    }

    pub fn execute_async(
        &self,
        vm_id: &str,
        code: &[u8],
        args: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Arc<Job>> {
        let vm = self.get(vm_id)?;
        let job = submit(&self.pool, vm, code, args, timeout)?;
        self.submitted.fetch_add(1, Relaxed);
        let mut jobs = self.jobs.lock();
        let list = jobs.entry(vm_id.to_string()).or_default();
        list.retain(|j| j.status() == JobStatus::Running);
        list.push(job.clone());
        Ok(job)
    }

    /// The VM's tracked jobs, oldest first (unfinished ones and the most recent one).
    fn jobs_of(&self, vm_id: &str) -> Vec<Arc<Job>> {
        self.jobs.lock().get(vm_id).cloned().unwrap_or_default()
    }

    /// Waits (up to `timeout` in all) for every unfinished job of the VM and returns the
    /// outcome of the most recent one (the original's `wait_for_vm`).
    pub fn wait_for_vm(&self, vm_id: &str, timeout: Option<Duration>) -> Result<ExecOutput> {
        let jobs = self.jobs_of(vm_id);
        let Some(last) = jobs.last() else {
            return Err(Error::invalid(format!(
                "No running operation found for VM '{vm_id}'"
            )));
        };
        let deadline = Deadline::after(timeout);
        for j in &jobs[..jobs.len() - 1] {
            match j.wait_until(deadline) {
                Err(e @ Error::WaitTimeout(_)) => return Err(e),
                _ => continue,
            }
        }
        last.wait_until(deadline)
    }

    /// Cancels every unfinished job of the VM; whether one was.
    pub fn cancel_vm(&self, vm_id: &str) -> bool {
        let mut any = false;
        for j in self.jobs_of(vm_id) {
            any |= j.cancel();
        }
        any
    }

    /// `idle` (no job yet), `running` (one unfinished), else the most recent job's status
    /// (`done` or `cancelled`).
    pub fn vm_status(&self, vm_id: &str) -> &'static str {
        let jobs = self.jobs_of(vm_id);
        if jobs.iter().any(|j| j.status() == JobStatus::Running) {
            return "running";
        }
        jobs.last().map_or("idle", |j| j.status().name())
    }

    pub fn interrupt(&self, vm_id: &str) -> Result<bool> {
        Ok(self.get(vm_id)?.interrupt())
    }

    /// The original's `get_vm_info` keys, plus the VM's own facts.
    pub fn vm_info(&self, vm_id: &str) -> Result<Value> {
        let vm = self.get(vm_id)?;
        let mut m = vm.info();
        m.insert("vm_id".into(), vm_id.into());
        let session = self.sessions.read().get(vm_id).cloned();
        m.insert("session_exists".into(), session.is_some().into());
        m.insert(
            "session_attached".into(),
            session.is_some_and(|s| s.is_attached()).into(),
        );
        // The original's keys for facts the backend may know better: its own value wins.
        let running = m
            .get("process_running")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| vm.process_running());
        m.insert("process_running".into(), running.into());
        m.entry("interactive_capable").or_insert(true.into());
        Ok(Value::Object(m))
    }

    /// VM ids in creation order.
    pub fn list_vms(&self) -> Vec<String> {
        let vms = self.vms.read();
        let mut v: Vec<(&String, u64)> = vms.iter().map(|(k, vm)| (k, vm.serial())).collect();
        v.sort_by_key(|(_, s)| *s);
        v.into_iter().map(|(k, _)| k.clone()).collect()
    }

    /// The original's `get_stats` keys.
    pub fn stats(&self) -> Value {
        let vms = self.vms.read();
        let networked = vms.values().filter(|v| v.options().networked).count();
        let persistent = vms.values().filter(|v| v.options().persistent).count();
        let running = self.pool.pending() as u64;
        let sessions = self.sessions.read();
        let attached = sessions.values().filter(|s| s.is_attached()).count();
        let submitted = self.submitted.load(Relaxed);
        json!({
            "total_vms": vms.len(),
            "networked_vms": networked,
            "basic_vms": vms.len() - networked,
            "persistent_vms": persistent,
            "interactive_sessions": sessions.len(),
            "attached_sessions": attached,
            "running_operations": running,
            "completed_operations": submitted.saturating_sub(running),
            "max_workers": self.pool.max_workers(),
            "lua_executable": self.defaults.lua_executable,
        })
    }

    /// Interrupts everything, cancels queued jobs, waits up to [`SHUTDOWN_GRACE`] for
    /// workers and drops every VM. Only the first call does anything: freeing a manager
    /// shuts it down and then drops it, which must not wait a second grace.
    pub fn shutdown(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        for (_, s) in self.sessions.write().drain() {
            s.terminate();
        }
        let vms: Vec<Arc<Vm>> = self.vms.write().drain().map(|(_, v)| v).collect();
        for vm in &vms {
            vm.interrupt();
        }
        self.pool.shutdown(SHUTDOWN_GRACE);
    }
}

/// Interactive sessions (the original's `create_interactive_vm`, `attach_to_vm`, ...).
impl Manager {
    /// Creates an xcpng VM whose deploy reports to `observer`; with `interactive`, with
    /// its session (not attached).
    pub fn create_xcpng_vm(
        &self,
        vm_id: &str,
        options_json: &str,
        interactive: bool,
        observer: Option<crate::vm::xcpng::Observer>,
    ) -> Result<Arc<Vm>> {
        let mut map = parse_object(options_json, "VM options")?;
        match get_str(&map, "vm_type")? {
            None => {
                map.insert("vm_type".into(), "xcpng".into());
            }
            Some("xcpng") => {}
            Some(_) => return Err(Error::invalid("vm_type must be \"xcpng\" here")),
        }
        let options = VmOptions::from_json(&map, &self.defaults)?;
        let vm = self.add_vm_with(vm_id, options, observer)?;
        if interactive {
            let session = Session::new(vm_id, vm.clone(), false, self.scheduler());
            self.sessions.write().insert(vm_id.to_string(), session);
        }
        Ok(vm)
    }

    /// Creates a VM and its session; `auto_attach` attaches it at once.
    pub fn create_interactive_vm(
        &self,
        vm_id: &str,
        options_json: &str,
        auto_attach: bool,
    ) -> Result<Arc<Session>> {
        // Interactive VMs are persistent, as in the original (but an xcpng VM is only kept
        // on its pool when asked: for it, persistent means "leave the VM there").
        let mut map = parse_object(options_json, "VM options")?;
        if get_str(&map, "vm_type")? != Some("xcpng") {
            map.entry("persistent").or_insert(Value::Bool(true));
        }
        let vm = self.add_vm(vm_id, VmOptions::from_json(&map, &self.defaults)?)?;
        let session = Session::new(vm_id, vm, auto_attach, self.scheduler());
        self.sessions
            .write()
            .insert(vm_id.to_string(), session.clone());
        Ok(session)
    }

    /// The session of `vm_id`: "VM 'x' not found" / "No interactive session for VM 'x'".
    pub fn session(&self, vm_id: &str) -> Result<Arc<Session>> {
        if let Some(s) = self.sessions.read().get(vm_id) {
            return Ok(s.clone());
        }
        Err(self.no_session(vm_id))
    }

    fn no_session(&self, vm_id: &str) -> Error {
        let message = if self.vms.read().contains_key(vm_id) {
            format!("No interactive session for VM '{vm_id}'")
        } else {
            format!("VM '{vm_id}' not found")
        };
        Error::Original {
            status: Status::SessionNotFound,
            message,
        }
    }

    /// Creates a session for an existing VM: "Session 'x' already exists" if it has one.
    pub fn create_session(&self, vm_id: &str, attach: bool) -> Result<Arc<Session>> {
        let vm = self.get(vm_id).map_err(|_| self.no_session(vm_id))?;
        let mut sessions = self.sessions.write();
        if sessions.contains_key(vm_id) {
            return Err(Error::Original {
                status: Status::SessionAlreadyExists,
                message: format!("Session '{vm_id}' already exists"),
            });
        }
        let s = Session::new(vm_id, vm, attach, self.scheduler());
        sessions.insert(vm_id.to_string(), s.clone());
        Ok(s)
    }

    /// Attaches the session of `vm_id`, creating it when the VM has none (as the original's
    /// `attach_to_vm`); `callback` receives output from now on.
    pub fn attach(&self, vm_id: &str, callback: Option<OutputCallback>) -> Result<Arc<Session>> {
        let session = match self.session(vm_id) {
            Ok(s) => s,
            Err(_) => match self.create_session(vm_id, false) {
                Ok(s) => s,
                // Created by another thread in between.
                Err(e) if e.status() == Status::SessionAlreadyExists => self.session(vm_id)?,
                Err(e) => return Err(e),
            },
        };
        session.attach(callback)?;
        Ok(session)
    }

    pub fn detach(&self, vm_id: &str) -> Result<()> {
        self.session(vm_id)?.detach()
    }

    /// Queues input for the session and returns at once.
    pub fn send_input(&self, vm_id: &str, input: &[u8]) -> Result<()> {
        self.session(vm_id)?.send_input(input)
    }

    /// How this manager's sessions get evaluated in the background: a job on its pool.
    fn scheduler(&self) -> Scheduler {
        let pool = self.pool.clone();
        Arc::new(move |s: Arc<Session>| pool.submit(Job::session_input(s)))
    }

    /// The original's `execute_interactive_command`: send, wait for the session to be idle
    /// (up to `timeout`; `None`: no limit), read everything.
    pub fn execute_interactive_command(
        &self,
        vm_id: &str,
        command: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>> {
        self.session(vm_id)?.command(command, timeout)
    }

    /// Ends the session of `vm_id` (also while it evaluates); the VM stays.
    pub fn terminate_session(&self, vm_id: &str) -> Result<()> {
        let session = self
            .sessions
            .write()
            .remove(vm_id)
            .ok_or_else(|| self.no_session(vm_id))?;
        session.terminate();
        Ok(())
    }

    /// A new interactive VM `dst` with the options of `src` (not its state).
    pub fn clone_session(&self, src: &str, dst: &str) -> Result<Arc<Session>> {
        let vm = self.get(src).map_err(|_| Error::Original {
            status: Status::SessionNotFound,
            message: format!("Source VM '{src}' not found"),
        })?;
        let new_vm = self.add_vm(dst, vm.options().clone())?;
        let session = Session::new(dst, new_vm, true, self.scheduler());
        self.sessions
            .write()
            .insert(dst.to_string(), session.clone());
        Ok(session)
    }

    /// `{vm_id: {attached, running, last_activity, executions, ...}}`.
    pub fn list_sessions(&self) -> Value {
        let sessions = self.sessions.read();
        let mut m = Map::new();
        for (id, s) in sessions.iter() {
            m.insert(id.clone(), s.info());
        }
        Value::Object(m)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn already_exists(vm_id: &str) -> Error {
    Error::VmAlreadyExists(format!("VM with ID '{vm_id}' already exists"))
}

/// Queues an execution of `code` on `vm` in `pool`.
pub fn submit(
    pool: &Pool,
    vm: Arc<Vm>,
    code: &[u8],
    args: Option<Value>,
    timeout: Option<Duration>,
) -> Result<Arc<Job>> {
    if crate::vm::is_blank(code) {
        return Err(Error::invalid("Lua code cannot be empty"));
    }
    if args.as_ref().is_some_and(|a| !a.is_array()) {
        return Err(Error::invalid("arguments must be a JSON array"));
    }
    let job = Job::new(vm, code.to_vec(), args, timeout);
    pool.submit(job.clone())?;
    Ok(job)
}
