//! Interactive sessions: a Lua REPL without a terminal, on top of a VM of any kind.
//!
//! A session belongs to one VM and shares its state: what `execute` defines, the session
//! sees. Input is queued by `send_input` (which never evaluates), and evaluated one line at
//! a time the way the standalone `lua` evaluates typed lines ([`Vm::repl_eval`]): an
//! incomplete chunk waits for more lines. Evaluation runs on the manager's worker pool, or
//! on a thread that waits for the session to go idle (it does the work itself instead of
//! waiting for a worker: no hand-off, no thread per session, nothing running while idle).
//!
//! Output is kept in order, stdout and stderr tagged, in a buffer bounded to `max_output`
//! bytes: when it is full the oldest output is dropped and counted, so the buffer holds the
//! newest output. (One evaluation's own output is capped by the VM at `max_output` too, and
//! there the start is kept, as for `execute`; what it drops is counted the same way.) A
//! callback, when set, also receives each piece of output as it is produced.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as Status;
use crate::vm::{ReplStep, Vm};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

/// Which output `read` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// Both, merged in the order they were produced.
    All,
    Only(Stream),
}

/// What `read` waits for before taking the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Until all queued input is evaluated (or the time is up).
    Idle,
    /// Until there is any output (or the session is idle, or the time is up).
    AnyOutput,
}

/// Receives output as it is produced: (vm id, stream, bytes). Called on the evaluating
/// thread, without the session's lock held.
pub type OutputCallback = Arc<dyn Fn(&str, Stream, &[u8]) + Send + Sync>;

/// How a session gets its queued input evaluated in the background (the manager submits a
/// job to its pool).
pub type Scheduler = Arc<dyn Fn(Arc<Session>) -> Result<()> + Send + Sync>;

struct Buffer {
    chunks: VecDeque<(Stream, Vec<u8>)>,
    bytes: usize,
    max: usize,
    dropped: u64,
}

/// Largest chunk the buffer merges output into: dropping the oldest output then trims at
/// most this much at a time, so a full buffer keeps close to `max` bytes.
const MAX_CHUNK: usize = 64 << 10;

impl Buffer {
    /// Appends output; when the buffer would pass `max`, the oldest bytes go (counted).
    fn push(&mut self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let data = if data.len() > self.max {
            self.dropped += (data.len() - self.max) as u64;
            &data[data.len() - self.max..]
        } else {
            data
        };
        let mut excess = (self.bytes + data.len()).saturating_sub(self.max);
        while excess > 0 {
            let Some((_, front)) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= excess {
                excess -= front.len();
                self.bytes -= front.len();
                self.dropped += front.len() as u64;
                self.chunks.pop_front();
            } else {
                front.drain(..excess);
                self.bytes -= excess;
                self.dropped += excess as u64;
                excess = 0;
            }
        }
        self.bytes += data.len();
        for piece in data.chunks(MAX_CHUNK) {
            match self.chunks.back_mut() {
                Some((s, c)) if *s == stream && c.len() + piece.len() <= MAX_CHUNK => {
                    c.extend_from_slice(piece)
                }
                _ => self.chunks.push_back((stream, piece.to_vec())),
            }
        }
    }

    fn has(&self, which: Streams) -> bool {
        match which {
            Streams::All => !self.chunks.is_empty(),
            Streams::Only(s) => self.chunks.iter().any(|(x, _)| *x == s),
        }
    }

    fn take(&mut self, which: Streams) -> Vec<u8> {
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for (s, c) in self.chunks.drain(..) {
            if which == Streams::All || which == Streams::Only(s) {
                out.extend_from_slice(&c);
            } else {
                keep.push_back((s, c));
            }
        }
        self.bytes = keep.iter().map(|(_, c)| c.len()).sum();
        self.chunks = keep;
        out
    }
}

struct State {
    attached: bool,
    terminated: bool,
    /// Complete lines waiting to be evaluated.
    queue: VecDeque<Vec<u8>>,
    /// Lines of an incomplete chunk so far.
    pending: Vec<u8>,
    /// A thread is evaluating input now.
    evaluating: bool,
    /// A pool job that will evaluate the queue is scheduled.
    scheduled: bool,
    out: Buffer,
    executions: u64,
    last_activity: f64,
}

/// One interactive session.
pub struct Session {
    vm_id: String,
    vm: Arc<Vm>,
    state: Mutex<State>,
    changed: Condvar,
    callback: Mutex<Option<OutputCallback>>,
    scheduler: Scheduler,
    this: std::sync::Weak<Session>,
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The chunk to evaluate for the next `line`: the incomplete chunk so far plus the line;
/// and whether it is a first line (so `return <line>` is tried).
fn next_chunk(st: &mut State, line: &[u8]) -> (Vec<u8>, bool) {
    let first = st.pending.is_empty();
    let mut chunk = std::mem::take(&mut st.pending);
    if !first {
        chunk.push(b'\n');
    }
    chunk.extend_from_slice(line);
    (chunk, first)
}

fn session_error(status: Status, message: String) -> Error {
    Error::Original { status, message }
}

impl Session {
    pub fn new(vm_id: &str, vm: Arc<Vm>, attached: bool, scheduler: Scheduler) -> Arc<Session> {
        let max = vm.options().max_output.max(1);
        Arc::new_cyclic(|this| Session {
            vm_id: vm_id.to_string(),
            vm,
            state: Mutex::new(State {
                attached,
                terminated: false,
                queue: VecDeque::new(),
                pending: Vec::new(),
                evaluating: false,
                scheduled: false,
                out: Buffer {
                    chunks: VecDeque::new(),
                    bytes: 0,
                    max,
                    dropped: 0,
                },
                executions: 0,
                last_activity: now_epoch(),
            }),
            changed: Condvar::new(),
            callback: Mutex::new(None),
            scheduler,
            this: this.clone(),
        })
    }

    /// Schedules a background evaluation when input waits and nobody evaluates or is
    /// scheduled to (call with the state locked; the scheduler runs after unlocking).
    fn needs_schedule(st: &mut State) -> bool {
        if !st.queue.is_empty() && !st.evaluating && !st.scheduled && !st.terminated {
            st.scheduled = true;
            return true;
        }
        false
    }

    fn schedule(&self) -> Result<()> {
        match self.this.upgrade() {
            Some(me) => (self.scheduler)(me).inspect_err(|_| {
                self.state.lock().scheduled = false;
            }),
            None => Ok(()),
        }
    }

    pub fn vm(&self) -> &Arc<Vm> {
        &self.vm
    }

    /// Attaches the session; `callback` (if any) receives output from now on.
    pub fn attach(&self, callback: Option<OutputCallback>) -> Result<()> {
        let mut st = self.state.lock();
        self.check_live(&st)?;
        if st.attached {
            return Err(session_error(
                Status::AttachError,
                format!("Session '{}' is already attached", self.vm_id),
            ));
        }
        st.attached = true;
        *self.callback.lock() = callback;
        Ok(())
    }

    pub fn detach(&self) -> Result<()> {
        let mut st = self.state.lock();
        if !st.attached {
            return Err(session_error(
                Status::DetachError,
                format!("Session '{}' is not attached", self.vm_id),
            ));
        }
        st.attached = false;
        *self.callback.lock() = None;
        Ok(())
    }

    pub fn is_attached(&self) -> bool {
        self.state.lock().attached
    }

    /// Replaces the output callback (`None` removes it).
    pub fn set_callback(&self, callback: Option<OutputCallback>) {
        *self.callback.lock() = callback;
    }

    /// A terminated session answers as a missing one does: a caller that raced with the
    /// terminate sees the same error as one that came after it.
    fn check_live(&self, st: &State) -> Result<()> {
        if st.terminated {
            return Err(session_error(
                Status::SessionNotFound,
                format!("No interactive session for VM '{}'", self.vm_id),
            ));
        }
        Ok(())
    }

    /// Queues input (one or more lines; a last line without a newline counts as a line)
    /// and makes sure it gets evaluated; returns at once.
    pub fn send_input(&self, input: &[u8]) -> Result<()> {
        self.queue_input(input, true)
    }

    /// `send_input`, then [`Session::read`] until idle (`None`: no limit): the calling
    /// thread evaluates the input itself, so no worker is woken for it.
    pub fn command(&self, input: &[u8], timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.queue_input(input, false)?;
        Ok(self
            .read(timeout, Wait::Idle, Streams::All)
            .unwrap_or_default())
    }

    fn queue_input(&self, input: &[u8], schedule_now: bool) -> Result<()> {
        let mut st = self.state.lock();
        self.check_live(&st)?;
        let mut rest = input;
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            st.queue.push_back(line.to_vec());
            rest = next;
        }
        if input.is_empty() {
            // An empty line, as pressing enter in the REPL.
            st.queue.push_back(Vec::new());
        }
        st.last_activity = now_epoch();
        let schedule = schedule_now && Self::needs_schedule(&mut st);
        drop(st);
        if schedule {
            self.schedule()?;
        }
        Ok(())
    }

    /// Evaluates queued input until the queue is empty (called by a pool job). Returns at
    /// once if another thread is evaluating.
    pub fn drain(&self, from_pool: bool) {
        self.evaluate(from_pool, usize::MAX);
    }

    /// Evaluates up to `limit` queued lines on this thread, unless another thread is
    /// evaluating; input left over (or arriving meanwhile, which nobody scheduled while this
    /// thread evaluated) is scheduled.
    fn evaluate(&self, from_pool: bool, limit: usize) {
        {
            let mut st = self.state.lock();
            if from_pool {
                st.scheduled = false;
            }
            if st.evaluating {
                return;
            }
            st.evaluating = true;
        }
        for _ in 0..limit {
            let (chunk, first) = {
                let mut st = self.state.lock();
                if st.terminated {
                    st.queue.clear();
                    break;
                }
                let Some(line) = st.queue.pop_front() else {
                    break;
                };
                next_chunk(&mut st, &line)
            };
            let r = self.vm.repl_eval(&chunk, first, 0, None);
            self.record(chunk, r);
        }
        let mut st = self.state.lock();
        st.evaluating = false;
        self.changed.notify_all();
        let schedule = Self::needs_schedule(&mut st);
        drop(st);
        if schedule {
            let _ = self.schedule();
        }
    }

    fn record(&self, chunk: Vec<u8>, r: Result<ReplStep>) {
        let (stdout, stderr, dropped) = match r {
            Ok(ReplStep::Incomplete) => {
                let mut st = self.state.lock();
                if !st.terminated {
                    st.pending = chunk;
                }
                return;
            }
            Ok(ReplStep::Ran(o)) => (o.stdout, o.stderr, o.output_dropped),
            Err(e) => (Vec::new(), format!("{e}\n").into_bytes(), 0),
        };
        let callback = self.callback.lock().clone();
        if let Some(cb) = &callback {
            cb(&self.vm_id, Stream::Stdout, &stdout);
            cb(&self.vm_id, Stream::Stderr, &stderr);
        }
        let mut st = self.state.lock();
        // What one evaluation printed past the VM's max_output never got here: count it.
        st.out.dropped += dropped;
        st.out.push(Stream::Stdout, &stdout);
        st.out.push(Stream::Stderr, &stderr);
        st.executions += 1;
        st.last_activity = now_epoch();
        self.changed.notify_all();
    }

    /// Waits up to `timeout` (evaluating queued input on this thread when nobody else is)
    /// for `wait`, then takes the buffered output of `which`. `None` when there is none.
    /// `timeout`: `None` waits without limit, zero does not wait.
    pub fn read(&self, timeout: Option<Duration>, wait: Wait, which: Streams) -> Option<Vec<u8>> {
        let deadline = Deadline::after(timeout);
        if timeout != Some(Duration::ZERO) {
            loop {
                {
                    let mut st = self.state.lock();
                    let idle = st.queue.is_empty() && !st.evaluating;
                    if idle || (wait == Wait::AnyOutput && st.out.has(which)) {
                        break;
                    }
                    if st.evaluating || st.terminated {
                        if deadline.wait(&self.changed, &mut st) {
                            break;
                        }
                        continue;
                    }
                }
                // Nobody is evaluating: do it here rather than wait for a worker (the pool
                // job that was scheduled will find the queue empty), one line at a time, so
                // the deadline is looked at between lines.
                self.evaluate(false, 1);
                if deadline.passed() {
                    break;
                }
            }
        }
        let mut st = self.state.lock();
        // Input this read did not get to (time up) must not wait for the next call.
        let schedule = Self::needs_schedule(&mut st);
        let out = st.out.has(which).then(|| st.out.take(which));
        drop(st);
        if schedule {
            let _ = self.schedule();
        }
        out
    }

    /// Stops the evaluation running now (the session and its state stay); input queued
    /// behind it and an incomplete chunk are discarded, as Ctrl-C does in the REPL.
    pub fn interrupt(&self) -> bool {
        {
            let mut st = self.state.lock();
            st.queue.clear();
            st.pending.clear();
        }
        self.vm.interrupt()
    }

    /// Ends the session: queued input is discarded and running evaluation interrupted.
    pub fn terminate(&self) {
        {
            let mut st = self.state.lock();
            st.terminated = true;
            st.attached = false;
            st.queue.clear();
            st.pending.clear();
            self.changed.notify_all();
        }
        *self.callback.lock() = None;
        self.vm.interrupt();
    }

    /// Facts for `list_sessions`.
    pub fn info(&self) -> serde_json::Value {
        let st = self.state.lock();
        serde_json::json!({
            "attached": st.attached,
            // As the original's "running" (its `lua -i` child alive): the session takes input.
            "running": !st.terminated,
            "evaluating": st.evaluating || !st.queue.is_empty(),
            "idle": st.queue.is_empty() && !st.evaluating,
            "last_activity": st.last_activity,
            "executions": st.executions,
            "queued_lines": st.queue.len(),
            "incomplete_input": !st.pending.is_empty(),
            "buffered_bytes": st.out.bytes,
            "dropped_bytes": st.out.dropped,
            "terminated": st.terminated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Buffer, Stream, Streams};
    use std::collections::VecDeque;

    fn buffer(max: usize) -> Buffer {
        Buffer {
            chunks: VecDeque::new(),
            bytes: 0,
            max,
            dropped: 0,
        }
    }

    #[test]
    fn a_full_buffer_keeps_the_newest_max_bytes() {
        let mut b = buffer(1 << 20);
        let line = vec![b'a'; 1001];
        for _ in 0..1100 {
            b.push(Stream::Stdout, &line);
        }
        assert_eq!(b.bytes, 1 << 20);
        assert_eq!(b.dropped, 1100 * 1001 - (1 << 20) as u64);
        assert_eq!(b.take(Streams::All).len(), 1 << 20);
    }

    #[test]
    fn streams_stay_in_order_and_can_be_taken_apart() {
        let mut b = buffer(100);
        b.push(Stream::Stdout, b"o1");
        b.push(Stream::Stderr, b"e1");
        b.push(Stream::Stdout, b"o2");
        assert_eq!(b.take(Streams::Only(Stream::Stderr)), b"e1");
        assert_eq!(b.take(Streams::All), b"o1o2");
        b.push(Stream::Stdout, &[b'x'; 150]);
        assert_eq!(b.bytes, 100);
        assert_eq!(b.dropped, 50);
    }
}
