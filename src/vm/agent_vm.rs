//! The agent VM: a persistent interpreter running the agent script, driven through the
//! framed protocol over any [`Transport`]. The `process` and `ssh` kinds are this type
//! with their own transport; everything about requests, streaming output, results, stops
//! and restarts is here, once.
//!
//! - Each request carries a fresh random token, and every frame the agent sends for it
//!   repeats the token: a frame that is not for the current request (left over from an
//!   earlier one, or written by code inside the VM that does not know the token) is
//!   detected at once; the interpreter is then restarted and the call reports it. A result
//!   is never attributed to the wrong call.
//! - The interpreter's real stdout and stderr (C modules, subprocesses, `/dev/stdout`)
//!   arrive apart from the frames and are added to the call's output at the agent's sync
//!   points (around `os.execute`, and at the end of the call).
//! - Everything kept is bounded by `max_output`: each output stream, the values' JSON and
//!   the error text (see the README's limits section).
//! - A timeout or an interrupt wakes the waiting thread, which stops the interpreter and
//!   everything it started; the next call starts a fresh one (its state is lost, and the
//!   error says so).

use super::transport::{Channel, Ended, Pumped, Transport, Waker};
use crate::agent::frame::{Corrupt, Decoder, Event, Frame, Kind};
use crate::agent::{self, code_cache, Done, Request, Status, Stream};
use crate::clock;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::embedded::capture::{exact_copy, Capture, STDERR, STDOUT};
use crate::vm::{Backend, ExecOutput, ExecRequest, ReplStep, StopReason, Stopper, VmOptions};
use crate::watchdog;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a started agent has to send its bytecode.
const CODE_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest agent bytecode kept (the dump of agent.lua is about 40 KB).
const MAX_CODE: usize = 1 << 20;

/// How long a starting interpreter has to send the agent's ready frame.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an interpreter asked to quit has before it is killed.
const QUIT_GRACE: Duration = Duration::from_millis(200);

/// Stops the running request: marks the reason and wakes the thread that waits on the
/// transport, which then stops the interpreter itself (nothing blocks in `stop`).
struct AgentStopper {
    state: Mutex<StopState>,
    waker: Waker,
    /// Random bytes for request tokens, drawn from the system 4 KiB at a time.
    tokens: agent::TokenSource,
}

#[derive(Default)]
struct StopState {
    active: bool,
    epoch: u64,
    reason: Option<StopReason>,
    /// The waker was fired for this request (and must be cleared at its end).
    woken: bool,
}

impl AgentStopper {
    fn begin(&self) -> u64 {
        let mut s = self.state.lock();
        s.epoch += 1;
        s.active = true;
        s.reason = None;
        s.epoch
    }

    fn end(&self) -> Option<StopReason> {
        let mut s = self.state.lock();
        s.active = false;
        if std::mem::take(&mut s.woken) {
            self.waker.clear();
        }
        s.reason.take()
    }

    fn reason(&self) -> Option<StopReason> {
        self.state.lock().reason
    }
}

impl Stopper for AgentStopper {
    fn stop(&self, reason: StopReason, epoch: Option<u64>) -> bool {
        let mut s = self.state.lock();
        if !s.active || epoch.is_some_and(|e| e != s.epoch) {
            return false;
        }
        s.reason.get_or_insert(reason);
        s.woken = true;
        self.waker.wake();
        true
    }
}

/// Raw bytes waiting for the next sync point, bounded.
#[derive(Default)]
struct Pending {
    out: Vec<u8>,
    err: Vec<u8>,
    dropped: u64,
}

impl Pending {
    fn push(&mut self, channel: Channel, bytes: &[u8], max: usize) {
        let buf = if channel == Channel::RawErr {
            &mut self.err
        } else {
            &mut self.out
        };
        let keep = max.saturating_sub(buf.len()).min(bytes.len());
        buf.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    /// Moves everything into the call's output.
    fn flush_into(&mut self, capture: &mut Capture) {
        if !self.out.is_empty() {
            capture.push(STDOUT, &self.out);
            self.out.clear();
        }
        if !self.err.is_empty() {
            capture.push(STDERR, &self.err);
            self.err.clear();
        }
        capture.dropped += std::mem::take(&mut self.dropped);
    }

    fn clear(&mut self) {
        self.out.clear();
        self.err.clear();
        self.dropped = 0;
    }
}

/// What one request came to, short of a stop.
enum Outcome {
    Done(Done),
    /// The interpreter died or broke the protocol: a failed result (it is not running).
    Lost(ExecOutput),
}

/// What the request loop must do about the frames it decoded.
enum Step {
    More,
    Done(Done),
    Broken(String),
}

/// An agent VM over transport `T`.
pub struct AgentVm<T: Transport> {
    transport: T,
    /// "process", "ssh": the kind's word in messages ("the process VM was restarted").
    kind: &'static str,
    memory_limit: Option<usize>,
    max_output: usize,
    stopper: Arc<AgentStopper>,
    decoder: Decoder,
    inbox: Vec<u8>,
    pending: Pending,
    capture: Capture,
    request: Vec<u8>,
    lua_version: String,
    restarts: u64,
}

fn not_lua(exe: &str, detail: &str) -> Error {
    Error::Original {
        status: St::LuaNotFound,
        message: format!(
            "Lua interpreter check failed: '{exe}' did not start the agent ({detail})"
        ),
    }
}

impl<T: Transport> AgentVm<T> {
    /// Starts the interpreter through `transport` and waits (bounded) for the agent.
    /// `exe` names the interpreter in messages.
    pub fn new(transport: T, kind: &'static str, options: &VmOptions) -> Result<Self> {
        let waker = Waker::new()
            .map_err(|e| Error::Internal(format!("could not create a wake-up descriptor: {e}")))?;
        let mut vm = AgentVm {
            transport,
            kind,
            memory_limit: options.memory_limit,
            max_output: options.max_output.max(1),
            stopper: Arc::new(AgentStopper {
                state: Mutex::new(StopState::default()),
                waker,
                tokens: agent::TokenSource::default(),
            }),
            decoder: Decoder::new(),
            inbox: Vec::with_capacity(64 << 10),
            pending: Pending::default(),
            capture: Capture::new(options.max_output),
            request: Vec::with_capacity(256),
            lua_version: String::new(),
            restarts: 0,
        };
        vm.start(&options.lua_executable)?;
        Ok(vm)
    }

    /// The transport (for kind-specific checks).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Starts the interpreter and waits for the agent's ready frame, at most
    /// `HANDSHAKE_TIMEOUT`, or until the current request is stopped. The agent goes as
    /// the bytecode this interpreter dumped before when the cache has it (see
    /// [`agent::code_cache`]); an interpreter that refuses it gets the source.
    fn start(&mut self, exe: &str) -> Result<()> {
        let key = self.transport.code_key();
        let cached = match key.as_deref().and_then(code_cache::get) {
            Some(code_cache::Entry::Code(c)) => Some(c),
            _ => None,
        };
        let learn = match self.start_with(exe, cached.as_deref().map(Vec::as_slice)) {
            Err(e) if cached.is_some() && e.to_string().contains(agent::REFUSED) => {
                log::debug!(target: "bioxen_vm::agent", "'{exe}' refused the agent's bytecode; sending the source");
                if let Some(k) = &key {
                    code_cache::forget(k);
                }
                self.start_with(exe, None)?;
                true
            }
            Err(e) => return Err(e),
            Ok(()) => true,
        };
        // The key again: starting may have told the transport more (an ssh VM's package
        // environment names its interpreter).
        if learn && !self.learn_code(self.transport.code_key()) {
            // The agent did not answer as it should: start a fresh one from source.
            self.start_with(exe, None)?;
        }
        Ok(())
    }

    /// Asks a freshly started agent for its bytecode and keeps it under `key`. Bounded by
    /// `CODE_TIMEOUT`. False when the agent did not answer as it should (it is then
    /// stopped, and the caller starts another from source): the cache then says to send
    /// the source on this interpreter from now on.
    fn learn_code(&mut self, key: Option<String>) -> bool {
        let Some(key) = key else { return true };
        if code_cache::get(&key).is_some() {
            return true;
        }
        let token = self.stopper.tokens.next();
        let mut request = Vec::with_capacity(32);
        agent::code_request(&mut request, &token);
        let mut out = &request[..];
        let deadline = Instant::now() + CODE_TIMEOUT;
        loop {
            let pumped = self.pump(&mut out, Some(deadline));
            let mut code = None;
            let fed = self.decoder.feed(
                &self.inbox,
                &token,
                MAX_CODE,
                &mut |e| {
                    if let Event::Frame(f) = e {
                        code = Some(f)
                    }
                },
                &|_| true,
            );
            let used = fed.as_ref().map_or(0, |n| *n);
            self.inbox.drain(..used);
            let wrong = match (&fed, &code) {
                (Err(_), _) => true,
                (_, Some(f)) if f.kind != Kind::Code || f.cut > 0 => true,
                (_, Some(f)) => {
                    let c = f.field(0);
                    let entry = if c.is_empty() {
                        code_cache::Entry::None
                    } else {
                        code_cache::Entry::Code(Arc::new(c.to_vec()))
                    };
                    code_cache::put(key, entry);
                    // Raw output the dump caused belongs to no call.
                    self.pending.clear();
                    return true;
                }
                (Ok(_), None) => match pumped {
                    Ok(Pumped::Progress) => continue,
                    Ok(Pumped::Woken) if self.stopper.reason().is_none() => {
                        self.stopper.waker.clear();
                        continue;
                    }
                    // A stop, the deadline, an end: the caller's fresh start deals with it
                    // (a stop stays pending on the waker).
                    _ => false,
                },
            };
            if wrong {
                log::debug!(target: "bioxen_vm::agent", "the agent gave no bytecode on '{key}'; sending the source there");
                code_cache::put(key, code_cache::Entry::None);
            }
            self.transport.kill();
            self.decoder.reset();
            self.inbox.clear();
            self.pending.clear();
            return false;
        }
    }

    /// [`Self::start`] with the agent as `code` (bytecode) or, without it, its source.
    fn start_with(&mut self, exe: &str, code: Option<&[u8]>) -> Result<()> {
        self.transport.spawn(agent::BOOTSTRAP)?;
        self.decoder.reset();
        self.inbox.clear();
        self.pending.clear();
        let preamble = agent::preamble(code);
        let mut out = &preamble[..];
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let failure = loop {
            let pumped = self.pump(&mut out, Some(deadline));
            let mut ready = None;
            let fed = self.decoder.feed(
                &self.inbox,
                b"",
                256,
                &mut |e| {
                    if let Event::Frame(f) = e {
                        ready = Some(f)
                    }
                },
                &|_| true,
            );
            let used = fed.as_ref().map_or(0, |n| *n);
            self.inbox.drain(..used);
            if let Err(Corrupt(m)) = fed {
                break format!("it wrote something else than the agent's frames: {m}");
            }
            if let Some(f) = ready {
                if f.kind != Kind::Ready {
                    break format!("unexpected '{:?}' frame", f.kind);
                }
                if f.field(0) != agent::PROTOCOL_VERSION {
                    break format!(
                        "the agent speaks protocol {}, this library {}",
                        String::from_utf8_lossy(f.field(0)),
                        String::from_utf8_lossy(agent::PROTOCOL_VERSION)
                    );
                }
                self.lua_version = String::from_utf8_lossy(f.field(1)).into_owned();
                if let Err(e) = self.transport.started() {
                    self.transport.kill();
                    return Err(e);
                }
                // Bytes behind the ready frame, or raw output, are the interpreter's own
                // start-up noise: they belong to no call.
                self.inbox.clear();
                self.pending.clear();
                log::debug!(target: "bioxen_vm::agent", "started '{exe}' ({})", self.lua_version);
                return Ok(());
            }
            match pumped {
                Ok(Pumped::Progress) => continue,
                Ok(Pumped::Woken) => {
                    self.stopper.waker.clear();
                    if let Some(reason) = self.stopper.reason() {
                        self.transport.kill();
                        return Err(self.stopped(reason, None));
                    }
                }
                Ok(Pumped::Deadline) => {
                    break format!("no answer within {} seconds", HANDSHAKE_TIMEOUT.as_secs())
                }
                Ok(Pumped::Ended) => {
                    let ended = self.transport.ended();
                    if let Some(e) = self.transport.broken() {
                        return Err(e);
                    }
                    break match ended.code {
                        Some(c) => format!("it exited with status {c}"),
                        None => format!("it {}", ended.describe()),
                    };
                }
                Err(e) => break e.to_string(),
            }
        };
        if self.transport.running() {
            self.transport.kill();
        }
        let mut detail = failure;
        self.transport.drain_raw(&mut |ch, b| {
            if ch == Channel::RawErr {
                self.pending.push(ch, b, 4096)
            }
        });
        let text = String::from_utf8_lossy(&self.pending.err)
            .trim()
            .to_string();
        self.pending.clear();
        if !text.is_empty() {
            detail.push_str("; its stderr: ");
            detail.push_str(&text);
        }
        Err(not_lua(exe, &detail))
    }

    /// One [`Transport::pump`]: frames go to the inbox, raw output to the pending buffers.
    fn pump(&mut self, out: &mut &[u8], deadline: Option<Instant>) -> std::io::Result<Pumped> {
        let (inbox, pending, max) = (&mut self.inbox, &mut self.pending, self.max_output);
        self.transport.pump(
            out,
            &mut |ch, b| match ch {
                Channel::Frames => inbox.extend_from_slice(b),
                _ => pending.push(ch, b, max),
            },
            &self.stopper.waker,
            deadline,
        )
    }

    /// Moves what the raw channels hold now into the call's output (a sync point).
    fn sync_raw(&mut self) {
        let (pending, max) = (&mut self.pending, self.max_output);
        self.transport
            .drain_raw(&mut |ch, b| pending.push(ch, b, max));
        self.pending.flush_into(&mut self.capture);
    }

    /// The error for a stopped call; `timeout` is the call's limit.
    fn stopped(&self, reason: StopReason, timeout: Option<Duration>) -> Error {
        let lost = format!(
            "; the {} VM was restarted and its state was lost",
            self.kind
        );
        match reason {
            StopReason::Timeout => {
                Error::Timeout(format!("{}{lost}", crate::vm::timeout_message(timeout)))
            }
            StopReason::Interrupt => {
                Error::Interrupted(format!("{}{lost}", crate::vm::INTERRUPTED_MESSAGE))
            }
        }
    }

    /// Runs one request under the stop machinery.
    fn request(
        &mut self,
        req: Request<'_>,
        exe: &str,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<Outcome> {
        let epoch = self.stopper.begin();
        if cancel.is_some_and(|c| c.load(SeqCst)) {
            self.stopper.end();
            return Err(Error::Interrupted(crate::vm::INTERRUPTED_MESSAGE.into()));
        }
        // A fresh interpreter (after a stop or a crash) starts before the call's own
        // deadline is armed: its start-up has its own bound, and a short timeout must not
        // keep a VM from ever starting again. An interrupt still stops it.
        if !self.transport.running() {
            if let Err(e) = self.start(exe) {
                self.stopper.end();
                return Err(e);
            }
            self.restarts += 1;
        }
        let ticket = timeout.and_then(|t| {
            let target: Arc<dyn Stopper> = self.stopper.clone();
            Instant::now()
                .checked_add(t)
                .and_then(|at| watchdog::schedule(at, target, epoch).ok())
        });
        let r = self.run(req, timeout);
        if let Some(t) = ticket {
            watchdog::cancel(t);
        }
        self.stopper.end();
        r
    }

    fn run(&mut self, req: Request<'_>, timeout: Option<Duration>) -> Result<Outcome> {
        self.capture.clear();
        // Raw output that arrived since the last call joins this call's output at its
        // first sync point.
        let token = self.stopper.tokens.next();
        self.request.clear();
        req.encode(&mut self.request, &token, self.max_output);
        let request = std::mem::take(&mut self.request);
        let mut out = &request[..];
        let outcome = loop {
            let pumped = self.pump(&mut out, None);
            match self.decode(&token) {
                Step::Done(done) => break Ok(Outcome::Done(done)),
                Step::Broken(why) => {
                    self.transport.kill();
                    break Ok(Outcome::Lost(
                        self.lost(None, &format!("broke the agent protocol ({why})")),
                    ));
                }
                Step::More => {}
            }
            match pumped {
                Ok(Pumped::Progress) | Ok(Pumped::Deadline) => {}
                Ok(Pumped::Woken) => {
                    self.stopper.waker.clear();
                    if let Some(reason) = self.stopper.reason() {
                        self.transport.kill();
                        self.pending.clear();
                        self.capture.clear();
                        break Err(self.stopped(reason, timeout));
                    }
                }
                Ok(Pumped::Ended) => {
                    let ended = self.transport.ended();
                    if let Some(e) = self.transport.broken() {
                        self.pending.clear();
                        self.capture.clear();
                        self.decoder.reset();
                        self.inbox.clear();
                        break Err(e);
                    }
                    break Ok(Outcome::Lost(self.lost(Some(ended), "")));
                }
                Err(e) => {
                    let ended = self.transport.kill();
                    break Ok(Outcome::Lost(
                        self.lost(Some(ended), &format!("lost its channel ({e})")),
                    ));
                }
            }
        };
        self.request = request;
        outcome
    }

    /// Decodes what has arrived for the request with `token`.
    fn decode(&mut self, token: &[u8]) -> Step {
        let mut at = 0;
        let step = loop {
            if at == self.inbox.len() {
                break Step::More;
            }
            let mut frame: Option<Frame> = None;
            let capture = &mut self.capture;
            let fed = self.decoder.feed(
                &self.inbox[at..],
                token,
                self.max_output,
                &mut |e| match e {
                    Event::Data(Stream::Stdout, b) => capture.push(STDOUT, b),
                    Event::Data(Stream::Stderr, b) => capture.push(STDERR, b),
                    Event::Frame(f) => frame = Some(f),
                },
                &|k| k != Kind::Out && k != Kind::Err,
            );
            match fed {
                Err(Corrupt(m)) => break Step::Broken(m),
                Ok(n) => at += n,
            }
            let Some(f) = frame else { continue };
            match f.kind {
                Kind::Sync | Kind::Done => {
                    // A sync point: what the interpreter wrote past the agent up to here
                    // is in the raw channels now.
                    self.sync_raw();
                    if f.kind == Kind::Done {
                        if at < self.inbox.len() {
                            break Step::Broken(
                                "frames arrived after the end of the request".into(),
                            );
                        }
                        let Some(status) = Status::parse(f.field(0)) else {
                            break Step::Broken(format!(
                                "unknown done status {:?}",
                                String::from_utf8_lossy(f.field(0))
                            ));
                        };
                        let dropped = std::str::from_utf8(f.field(3))
                            .ok()
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(0);
                        let mut fields = f.fields.into_iter().skip(1);
                        break Step::Done(Done {
                            status: Some(status),
                            values_json: fields.next().unwrap_or_default(),
                            error: fields.next().unwrap_or_default(),
                            cut: f.cut,
                            dropped,
                        });
                    }
                }
                Kind::Fatal => {
                    break Step::Broken(format!(
                        "the agent failed: {}",
                        String::from_utf8_lossy(f.field(0))
                    ))
                }
                other => break Step::Broken(format!("an unexpected '{other:?}' frame")),
            }
        };
        self.inbox.drain(..at.min(self.inbox.len()));
        if matches!(step, Step::Broken(_)) {
            self.inbox.clear();
        }
        step
    }

    /// The failed result of a call whose interpreter is gone (`ended`, when known) or
    /// broke the protocol (`why`).
    fn lost(&mut self, ended: Option<Ended>, why: &str) -> ExecOutput {
        let ended = ended.unwrap_or_default();
        let (pending, max) = (&mut self.pending, self.max_output);
        self.transport
            .drain_raw(&mut |ch, b| pending.push(ch, b, max));
        self.pending.flush_into(&mut self.capture);
        self.decoder.reset();
        self.inbox.clear();
        let what = if why.is_empty() {
            format!("the Lua {} {}", self.noun(), ended.describe())
        } else {
            format!("the Lua {} {why}", self.noun())
        };
        let message = format!(
            "{what}; the VM's state was lost and the next call starts a fresh {}",
            self.noun()
        );
        log::debug!(target: "bioxen_vm::agent", "{message}");
        let mut stderr = exact_copy(&self.capture.stderr);
        if !stderr.is_empty() && stderr.last() != Some(&b'\n') {
            stderr.push(b'\n');
        }
        stderr.extend_from_slice(message.as_bytes());
        stderr.push(b'\n');
        ExecOutput {
            success: false,
            return_code: ended.return_code(),
            stdout: exact_copy(&self.capture.stdout),
            stderr,
            values_json: b"[]".to_vec(),
            error: Some(message),
            duration: Duration::ZERO,
            output_dropped: self.capture.dropped,
        }
    }

    fn noun(&self) -> &'static str {
        if self.kind == "process" {
            "process"
        } else {
            "interpreter"
        }
    }

    /// A Lua error that is the memory limit being hit, as the embedded kind reports it.
    fn memory_error(&self, done: &Done) -> Option<Error> {
        let limit = self.memory_limit?;
        let hit =
            done.status == Some(Status::Error) && done.error.starts_with(b"not enough memory");
        hit.then(|| {
            Error::MemoryLimit(format!(
                "Lua memory limit of {limit} bytes exceeded (not enough memory)"
            ))
        })
    }

    /// The result of a `done` frame.
    fn output(&mut self, done: Done, started: clock::Stamp) -> ExecOutput {
        let dropped = done.cut + done.dropped;
        let (ok, error, values) = match done.status {
            Some(Status::Ok) if done.cut == 0 => (true, None, done.values_json),
            Some(Status::Ok) | Some(Status::TooBig) => (
                false,
                Some(crate::vm::values_too_large_message(self.max_output)),
                Vec::new(),
            ),
            _ => (
                false,
                Some(String::from_utf8_lossy(&done.error).into_owned()),
                Vec::new(),
            ),
        };
        if let Some(message) = &error {
            self.capture.push(STDERR, message.as_bytes());
            self.capture.push(STDERR, b"\n");
        }
        ExecOutput {
            success: ok,
            return_code: if ok { 0 } else { 1 },
            stdout: exact_copy(&self.capture.stdout),
            stderr: exact_copy(&self.capture.stderr),
            values_json: if ok && !values.is_empty() {
                values
            } else {
                b"[]".to_vec()
            },
            error,
            duration: clock::since(started),
            output_dropped: self.capture.dropped + dropped,
        }
    }

    /// Runs `req` (an exec or repl request) and turns what came back into an outcome.
    fn call(
        &mut self,
        req: Request<'_>,
        exe: &str,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<std::result::Result<Done, ExecOutput>> {
        let started = clock::now();
        match self.request(req, exe, timeout, cancel)? {
            Outcome::Done(done) => Ok(Ok(done)),
            Outcome::Lost(mut lost) => {
                lost.duration = clock::since(started);
                Ok(Err(lost))
            }
        }
    }
}

/// An agent VM with the options it needs at every call.
pub struct AgentBackend<T: Transport> {
    pub vm: AgentVm<T>,
    pub lua_executable: String,
}

impl<T: Transport> Backend for AgentBackend<T> {
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
        let request = Request::Exec {
            code: req.code,
            args_json: &args,
            chunk_name: name,
        };
        match self
            .vm
            .call(request, &self.lua_executable, timeout, cancel)?
        {
            Ok(done) => match self.vm.memory_error(&done) {
                Some(e) => Err(e),
                None => Ok(self.vm.output(done, started)),
            },
            Err(lost) => Ok(lost),
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
        let request = Request::Repl { chunk, first_line };
        match self
            .vm
            .call(request, &self.lua_executable, timeout, cancel)?
        {
            Ok(done) if done.status == Some(Status::Incomplete) => Ok(ReplStep::Incomplete),
            Ok(done) => match self.vm.memory_error(&done) {
                Some(e) => Err(e),
                None => Ok(ReplStep::Ran(self.vm.output(done, started))),
            },
            Err(lost) => Ok(ReplStep::Ran(lost)),
        }
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        self.vm.stopper.clone()
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("lua_version".into(), self.vm.lua_version.clone().into());
        m.insert("process_running".into(), self.vm.transport.running().into());
        m.insert("restarts".into(), self.vm.restarts.into());
        m.extend(self.vm.transport.info());
        m
    }
}

impl<T: Transport> Drop for AgentVm<T> {
    fn drop(&mut self) {
        if self.transport.running() {
            self.transport.shutdown(QUIT_GRACE);
        }
    }
}
