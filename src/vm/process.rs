//! The `process` VM kind: a real `lua` interpreter as a persistent child, driven through
//! the agent's framed protocol over its stdin and stdout.
//!
//! The child is started with `<lua_executable> -e <agent>` when the VM is created (so a
//! missing interpreter is reported at once) and lives until the VM is freed. A timeout or
//! an interrupt kills it (its state is lost; the error says so) and the next call starts a
//! fresh one; so does a child that died on its own (`os.exit(3)` is a result with
//! `return_code` 3). The child's own stderr (what bypasses the agent, such as the
//! interpreter's messages) goes to an unlinked temporary file in append mode, which is read
//! after each request: it can never fill a pipe and block the child.

use crate::agent::{self, Conn, Status, Stream};
use crate::clock;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::embedded::capture::{exact_copy, Capture, STDERR, STDOUT};
use crate::vm::{Backend, ExecOutput, ExecRequest, ReplStep, StopReason, Stopper, VmOptions};
use crate::watchdog;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a starting interpreter has to send the agent's ready frame.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a child asked to quit has before it is killed.
const QUIT_GRACE: Duration = Duration::from_millis(200);
/// Most bytes of the child's own stderr kept per request.
const MAX_RAW_STDERR: u64 = 64 << 10;

/// Kills the running child to stop it; only while a request runs, and only the request
/// whose epoch a deadline names.
#[derive(Default)]
struct ChildStopper {
    state: Mutex<StopState>,
}

#[derive(Default)]
struct StopState {
    /// Pid of the child serving the current request (0: none).
    pid: i32,
    epoch: u64,
    reason: Option<StopReason>,
}

impl ChildStopper {
    fn begin(&self, pid: i32) -> u64 {
        let mut s = self.state.lock();
        s.epoch += 1;
        s.pid = pid;
        s.reason = None;
        s.epoch
    }

    /// The request is over (the child is not reaped yet, so its pid is still its own).
    fn end(&self) -> Option<StopReason> {
        let mut s = self.state.lock();
        s.pid = 0;
        s.reason.take()
    }
}

impl Stopper for ChildStopper {
    fn stop(&self, reason: StopReason, epoch: Option<u64>) -> bool {
        let mut s = self.state.lock();
        if s.pid == 0 || epoch.is_some_and(|e| e != s.epoch) {
            return false;
        }
        if s.reason.is_none() {
            s.reason = Some(reason);
        }
        // SAFETY: plain syscall; the pid is our unreaped child (reaping happens only after
        // `end`, which clears it under this lock).
        unsafe { libc::kill(s.pid, libc::SIGKILL) };
        true
    }
}

/// A started interpreter running the agent.
struct Running {
    child: Child,
    conn: Conn<ChildStdout, ChildStdin>,
}

impl Running {
    /// Kills (if needed) and reaps the child; its exit status.
    fn reap(mut self, kill: bool) -> Option<ExitStatus> {
        if kill {
            let _ = self.child.kill();
        }
        drop(self.conn);
        self.child.wait().ok()
    }
}

pub struct ProcessVm {
    lua_executable: String,
    memory_limit: Option<usize>,
    child: Option<Running>,
    stopper: Arc<ChildStopper>,
    raw_stderr: File,
    lua_version: String,
    restarts: u64,
    capture: Capture,
}

fn not_found(exe: &str) -> Error {
    Error::Original {
        status: St::LuaNotFound,
        message: format!("Lua executable '{exe}' not found in PATH"),
    }
}

/// Whether `exe` names an existing file: a path as given, else a file in a `PATH` directory.
fn on_path(exe: &str) -> bool {
    if exe.contains('/') {
        return std::path::Path::new(exe).is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| !exe.is_empty() && dir.join(exe).is_file())
    })
}

fn not_lua(exe: &str, detail: &str) -> Error {
    Error::Original {
        status: St::LuaNotFound,
        message: format!(
            "Lua interpreter check failed: '{exe}' did not start the agent ({detail})"
        ),
    }
}

static NEXT_FILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Caps the child's address space at what it uses now plus `limit` bytes, so that Lua's
/// allocations fail with "not enough memory" (a recoverable Lua error) past it.
fn limit_address_space(pid: u32, limit: usize) -> Result<()> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .map_err(|e| Error::Internal(format!("could not read the child's memory use: {e}")))?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error::Internal(format!("unexpected /proc/{pid}/statm: {statm}")))?;
    // SAFETY: plain sysconf and prlimit calls on our own child.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let cap = pages.saturating_mul(page).saturating_add(limit as u64);
    let rl = libc::rlimit {
        rlim_cur: cap,
        rlim_max: cap,
    };
    if unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_AS,
            &rl,
            std::ptr::null_mut(),
        )
    } != 0
    {
        return Err(Error::Internal(format!(
            "could not limit the child's memory: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// An unlinked temporary file in append mode for the child's stderr.
fn raw_stderr_file() -> Result<File> {
    let dir = std::env::temp_dir();
    for attempt in 0..16u32 {
        let path = dir.join(format!(
            "bioxen_vm-stderr-{}-{}-{attempt}",
            std::process::id(),
            NEXT_FILE.fetch_add(1, SeqCst)
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::Internal(format!(
                    "could not create a file for the child's stderr in {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Err(Error::Internal(
        "could not create a file for the child's stderr".into(),
    ))
}

impl ProcessVm {
    pub fn new(options: &VmOptions) -> Result<Self> {
        let mut vm = ProcessVm {
            lua_executable: options.lua_executable.clone(),
            memory_limit: options.memory_limit,
            child: None,
            stopper: Arc::new(ChildStopper::default()),
            raw_stderr: raw_stderr_file()?,
            lua_version: String::new(),
            restarts: 0,
            capture: Capture::new(options.max_output),
        };
        vm.start()?;
        if options.networked {
            vm.check_luasocket()?;
        }
        Ok(vm)
    }

    /// Starts the interpreter and waits (bounded) for the agent's ready frame.
    fn start(&mut self) -> Result<()> {
        let exe = &self.lua_executable.clone();
        // Looked up first: some spawn paths (e.g. under valgrind) report a missing program
        // only as a child exiting with 127.
        if !on_path(exe) {
            return Err(not_found(exe));
        }
        let stderr = self
            .raw_stderr
            .try_clone()
            .map_err(|e| Error::Internal(format!("could not share the stderr file: {e}")))?;
        let mut child = Command::new(exe)
            .arg("-e")
            .arg(agent::SOURCE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => not_found(exe),
                _ => Error::Original {
                    status: St::LuaNotFound,
                    message: format!("Lua interpreter check failed: could not start '{exe}': {e}"),
                },
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Internal("the child's pipes were not set up".into()));
        };
        let mut running = Running {
            child,
            conn: Conn::new(stdout, stdin),
        };
        let epoch = self.stopper.begin(running.child.id() as i32);
        let target: Arc<dyn Stopper> = self.stopper.clone();
        let ticket = watchdog::schedule(Instant::now() + HANDSHAKE_TIMEOUT, target, epoch).ok();
        let hello = running.conn.handshake();
        if let Some(t) = ticket {
            watchdog::cancel(t);
        }
        let stopped = self.stopper.end();
        match hello {
            Ok(h) if stopped.is_none() => {
                if let Some(limit) = self.memory_limit {
                    if let Err(e) = limit_address_space(running.child.id(), limit) {
                        running.reap(true);
                        return Err(e);
                    }
                }
                log::debug!(target: "bioxen_vm::process", "started '{exe}' ({}), pid {}", h.lua_version, running.child.id());
                self.lua_version = h.lua_version;
                self.child = Some(running);
                Ok(())
            }
            Ok(_) => {
                running.reap(true);
                Err(not_lua(exe, "it was stopped while starting"))
            }
            Err(e) => {
                let status = running.reap(true);
                let mut detail = if stopped.is_some() {
                    format!("no answer within {} seconds", HANDSHAKE_TIMEOUT.as_secs())
                } else {
                    match status.and_then(|s| s.code()) {
                        Some(c) => format!("it exited with status {c}: {e}"),
                        None => e.to_string(),
                    }
                };
                let text = self.take_raw_stderr();
                if !text.is_empty() {
                    detail.push_str("; its stderr: ");
                    detail.push_str(String::from_utf8_lossy(&text).trim());
                }
                Err(not_lua(exe, &detail))
            }
        }
    }

    fn check_luasocket(&mut self) -> Result<()> {
        let req = ExecRequest {
            code: b"local ok, s = pcall(require, 'socket') if not ok then error(s, 0) end return s._VERSION",
            args: None,
            chunk_name: None,
        };
        let out = self.execute(&req, Some(Duration::from_secs(10)), None)?;
        if out.success {
            return Ok(());
        }
        Err(Error::Original {
            status: St::LuaSocketNotFound,
            message: format!(
                "LuaSocket not found. Install with: luarocks install luasocket (Debian: apt-get install lua-socket); '{}' said: {}",
                self.lua_executable,
                out.error.as_deref().unwrap_or("").lines().next().unwrap_or("")
            ),
        })
    }

    /// What the child wrote to its own stderr since the last call (the newest bytes, at
    /// most `MAX_RAW_STDERR`), emptying the file.
    fn take_raw_stderr(&mut self) -> Vec<u8> {
        let len = match self.raw_stderr.metadata() {
            Ok(m) if m.len() > 0 => m.len(),
            _ => return Vec::new(),
        };
        let mut text = Vec::new();
        let start = len.saturating_sub(MAX_RAW_STDERR);
        if self.raw_stderr.seek(SeekFrom::Start(start)).is_ok() {
            let _ = (&self.raw_stderr)
                .take(MAX_RAW_STDERR)
                .read_to_end(&mut text);
        }
        let _ = self.raw_stderr.set_len(0);
        text
    }

    /// Runs one request on the child (started first if needed) under the stop machinery.
    fn request(
        &mut self,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        send: impl FnOnce(
            &mut Conn<ChildStdout, ChildStdin>,
            &mut dyn FnMut(Stream, &[u8]),
        ) -> std::io::Result<agent::Done>,
    ) -> Result<std::result::Result<agent::Done, ExecOutput>> {
        if self.child.is_none() {
            self.start()?;
            self.restarts += 1;
        }
        let Some(running) = self.child.as_mut() else {
            return Err(Error::Internal("the child is not running".into()));
        };
        self.capture.clear();
        let epoch = self.stopper.begin(running.child.id() as i32);
        if cancel.is_some_and(|c| c.load(SeqCst)) {
            self.stopper.end();
            return Err(Error::Interrupted(crate::vm::INTERRUPTED_MESSAGE.into()));
        }
        let ticket = timeout.and_then(|t| {
            let target: Arc<dyn Stopper> = self.stopper.clone();
            watchdog::schedule(Instant::now() + t, target, epoch).ok()
        });
        let capture = &mut self.capture;
        let r = send(&mut running.conn, &mut |stream, bytes| {
            capture.push(
                if stream == Stream::Stderr {
                    STDERR
                } else {
                    STDOUT
                },
                bytes,
            )
        });
        if let Some(t) = ticket {
            watchdog::cancel(t);
        }
        let reason = self.stopper.end();
        if let Some(reason) = reason {
            // The child was killed: reap it; the next call starts a fresh one.
            if let Some(r) = self.child.take() {
                r.reap(true);
            }
            self.take_raw_stderr();
            self.capture.clear();
            return Err(match reason {
                StopReason::Timeout => Error::Timeout(format!(
                    "{}; the process VM was restarted and its state was lost",
                    crate::vm::timeout_message(timeout)
                )),
                StopReason::Interrupt => Error::Interrupted(format!(
                    "{}; the process VM was restarted and its state was lost",
                    crate::vm::INTERRUPTED_MESSAGE
                )),
            });
        }
        let raw = self.take_raw_stderr();
        match r {
            Ok(done) => {
                if !raw.is_empty() {
                    self.capture.push(STDERR, &raw);
                }
                Ok(Ok(done))
            }
            Err(e) => Ok(Err(self.child_lost(e, raw))),
        }
    }

    /// The child died or broke the protocol: a failed result carrying its exit code.
    fn child_lost(&mut self, e: std::io::Error, raw: Vec<u8>) -> ExecOutput {
        let kill = e.kind() != std::io::ErrorKind::UnexpectedEof
            && e.kind() != std::io::ErrorKind::BrokenPipe;
        let status = self.child.take().and_then(|r| r.reap(kill));
        let raw = [raw, self.take_raw_stderr()].concat();
        let (code, what) = match status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => (c, format!("the Lua process exited with code {c}")),
                (None, Some(sig)) => (-sig, format!("the Lua process was killed by signal {sig}")),
                _ => (-1, "the Lua process ended".to_string()),
            },
            None => (-1, "the Lua process ended".to_string()),
        };
        let message = if kill {
            format!("{what} after breaking the agent protocol ({e}); the VM's state was lost and the next call starts a fresh process")
        } else {
            format!("{what}; the VM's state was lost and the next call starts a fresh process")
        };
        log::debug!(target: "bioxen_vm::process", "{message}");
        let mut stderr = exact_copy(&self.capture.stderr);
        stderr.extend_from_slice(&raw);
        if !stderr.is_empty() && stderr.last() != Some(&b'\n') {
            stderr.push(b'\n');
        }
        stderr.extend_from_slice(message.as_bytes());
        stderr.push(b'\n');
        ExecOutput {
            success: false,
            return_code: if code == 0 { 1 } else { code },
            stdout: exact_copy(&self.capture.stdout),
            stderr,
            values_json: b"[]".to_vec(),
            error: Some(message),
            duration: Duration::ZERO,
            output_dropped: self.capture.dropped,
        }
    }

    /// A Lua error that is the memory limit being hit, as the embedded kind reports it.
    fn memory_error(&self, done: &agent::Done) -> Option<Error> {
        let limit = self.memory_limit?;
        let hit = done.status == Status::Error && done.error.starts_with(b"not enough memory");
        hit.then(|| {
            Error::MemoryLimit(format!(
                "Lua memory limit of {limit} bytes exceeded (not enough memory)"
            ))
        })
    }

    /// The result of a `done` frame.
    fn output(&mut self, done: agent::Done, started: clock::Stamp) -> ExecOutput {
        let ok = done.status == Status::Ok;
        let mut stderr = exact_copy(&self.capture.stderr);
        let error = if ok {
            None
        } else {
            let message = String::from_utf8_lossy(&done.error).into_owned();
            stderr.extend_from_slice(message.as_bytes());
            stderr.push(b'\n');
            Some(message)
        };
        ExecOutput {
            success: ok,
            return_code: if ok { 0 } else { 1 },
            stdout: exact_copy(&self.capture.stdout),
            stderr,
            values_json: if ok && !done.values_json.is_empty() {
                done.values_json
            } else {
                b"[]".to_vec()
            },
            error,
            duration: clock::since(started),
            output_dropped: self.capture.dropped,
        }
    }
}

impl Backend for ProcessVm {
    fn execute(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExecOutput> {
        let started = clock::now();
        let args = match req.args {
            Some(a) => serde_json::to_vec(a)
                .map_err(|e| Error::invalid(format!("arguments could not be encoded: {e}")))?,
            None => Vec::new(),
        };
        let name = req.chunk_name.unwrap_or(crate::vm::CHUNK_NAME.to_bytes());
        match self.request(timeout, cancel, |conn, sink| {
            conn.exec(req.code, &args, name, sink)
        })? {
            Ok(done) => match self.memory_error(&done) {
                Some(e) => Err(e),
                None => Ok(self.output(done, started)),
            },
            Err(mut lost) => {
                lost.duration = clock::since(started);
                Ok(lost)
            }
        }
    }

    fn repl_eval(
        &mut self,
        chunk: &[u8],
        first_line: bool,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ReplStep> {
        let started = clock::now();
        match self.request(timeout, cancel, |conn, sink| {
            conn.repl(chunk, first_line, sink)
        })? {
            Ok(done) if done.status == Status::Incomplete => Ok(ReplStep::Incomplete),
            Ok(done) => match self.memory_error(&done) {
                Some(e) => Err(e),
                None => Ok(ReplStep::Ran(self.output(done, started))),
            },
            Err(mut lost) => {
                lost.duration = clock::since(started);
                Ok(ReplStep::Ran(lost))
            }
        }
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        self.stopper.clone()
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("lua_version".into(), self.lua_version.clone().into());
        m.insert("process_running".into(), self.child.is_some().into());
        m.insert(
            "pid".into(),
            self.child
                .as_ref()
                .map_or(serde_json::Value::Null, |r| r.child.id().into()),
        );
        m.insert("restarts".into(), self.restarts.into());
        m
    }
}

impl Drop for ProcessVm {
    fn drop(&mut self) {
        let Some(mut running) = self.child.take() else {
            return;
        };
        // Ask politely, wait (bounded) for the child's end of stdout to close, then make
        // sure: no child and no zombie outlives the VM.
        let _ = running.conn.quit();
        let exited = running.conn.wait_for_eof(QUIT_GRACE);
        let still_running = !exited || matches!(running.child.try_wait(), Ok(None));
        running.reap(still_running);
    }
}
