//! How an agent VM reaches its interpreter: the [`Transport`] trait that the `process` and
//! `ssh` kinds implement, and the [`Waker`] that lets another thread interrupt a
//! transport's wait.
//!
//! A transport starts `<lua> -e <bootstrap>` somewhere with three byte channels besides
//! the interpreter's stdin: the agent's frames (descriptor 3 of the interpreter), and the
//! interpreter's real stdout and stderr (what user code, C modules and subprocesses write
//! past the agent). It moves bytes without ever blocking past a wake-up, and it stops the
//! interpreter together with everything the interpreter started. It knows nothing of
//! frames, requests or results: that is [`super::agent_vm`].

use crate::error::Result;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// One of the byte streams that come back from the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The agent's frames.
    Frames,
    /// The interpreter's real stdout.
    RawOut,
    /// The interpreter's real stderr.
    RawErr,
}

/// Why [`Transport::pump`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Bytes moved (or may move on the next call).
    Progress,
    /// The waker fired.
    Woken,
    /// The deadline passed.
    Deadline,
    /// The interpreter ended (what it wrote before it ended has been handed on).
    Ended,
}

/// How an interpreter ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ended {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl Ended {
    /// `exited with code 3`, `was killed by signal 9`, or `ended`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended".to_string(),
        }
    }

    /// The result's `return_code` for a lost interpreter: its exit code (1 for 0), or
    /// minus the signal.
    pub fn return_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(0), _) => 1,
            (Some(c), _) => c,
            (None, Some(s)) => -s,
            _ => -1,
        }
    }
}

/// Where and how one agent VM's interpreter runs. Used by one thread at a time.
pub trait Transport: Send {
    /// Starts `<interpreter> -e <bootstrap>` with the channels described in the module
    /// docs. A transport that cannot find or reach the interpreter says so here.
    fn spawn(&mut self, bootstrap: &str) -> Result<()>;

    /// What names the interpreter the next `spawn` starts, for the cache of the agent's
    /// bytecode (`crate::agent::code_cache`); None: always send the source. Two
    /// interpreters that share a key must load each other's bytecode.
    fn code_key(&self) -> Option<String> {
        None
    }

    /// Called once the agent has answered: applies what needs the running interpreter
    /// (a memory limit measured from its size at rest, ...).
    fn started(&mut self) -> Result<()> {
        Ok(())
    }

    /// Writes what it can of `out` to the interpreter's stdin (advancing it), hands on
    /// what has arrived on each channel, and waits until one of those can make progress,
    /// `waker` fires, the interpreter ends, or `deadline` passes.
    fn pump(
        &mut self,
        out: &mut &[u8],
        sink: &mut dyn FnMut(Channel, &[u8]),
        waker: &Waker,
        deadline: Option<Instant>,
    ) -> io::Result<Pumped>;

    /// Hands on, without waiting, what is already there on the raw channels.
    fn drain_raw(&mut self, sink: &mut dyn FnMut(Channel, &[u8]));

    /// Stops the interpreter and everything it started (killing them), reaps it, and
    /// reports how it ended. Bounded in time. Nothing of the transport's is left running.
    fn kill(&mut self) -> Ended;

    /// How the interpreter ended, after `pump` returned [`Pumped::Ended`] (reaps it and
    /// stops what it left running).
    fn ended(&mut self) -> Ended;

    /// Asks the interpreter to exit (`quit`), waits up to `grace`, then kills what is
    /// left. Used when the VM is freed.
    fn shutdown(&mut self, grace: Duration);

    /// Whether an interpreter is running.
    fn running(&self) -> bool;

    /// After `pump` reported an end or an error: the status the call fails with when the
    /// interpreter could not be reached at all (a lost connection), rather than a failed
    /// result. Taken once.
    fn broken(&mut self) -> Option<crate::error::Error> {
        None
    }

    /// Kind-specific facts for `info`.
    fn info(&self) -> serde_json::Map<String, serde_json::Value>;
}

/// A descriptor another thread can make readable to end a transport's wait (an eventfd).
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the descriptor readable. Any thread; async-signal-safe.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears a wake-up.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Milliseconds for `poll` until `deadline` (-1: none), rounded up so that a wait never
/// ends before it.
pub fn poll_timeout(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}
