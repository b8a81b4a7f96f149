//! The VM layer: the `Backend` trait every VM kind implements, and `Vm`, the
//! kind-independent wrapper that serialises calls, applies defaults and keeps statistics.
//!
//! Nothing here assumes that Lua runs in-process: a backend receives code as bytes and
//! returns an [`ExecOutput`]; stopping running code goes through a [`Stopper`] that any
//! thread may call while the backend is busy.

pub mod agent_vm;
pub mod embedded;
mod files;
pub(crate) mod options;
mod output;
mod proc_tree;
pub mod process;
pub mod shell;
pub mod ssh;
pub mod transport;
#[allow(clippy::module_inception)]
mod vm;
pub mod xcpng;

pub use options::{Sandbox, VmKind, VmOptions};
pub use output::{ExecOutput, ExecRequest, ReplStep};
pub use vm::{is_blank, reserve_serials, with_serial, Vm};

use crate::error::Result;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Chunk name of executed code in error messages and tracebacks, for every kind.
pub const CHUNK_NAME: &std::ffi::CStr = c"=(bioxen_vm)";

/// The message of an interrupted execution, for every kind.
pub const INTERRUPTED_MESSAGE: &str = "Lua execution interrupted";

/// "5" for whole seconds, else the shortest decimal form ("0.5").
pub fn seconds_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// `Lua execution timed out after N seconds` (the original's words), for every kind.
pub fn timeout_message(timeout: Option<Duration>) -> String {
    format!(
        "Lua execution timed out after {} seconds",
        seconds_text(timeout.unwrap_or_default())
    )
}

/// The error of an execution whose returned values do not fit in `max_output` bytes as
/// JSON, for every kind.
pub fn values_too_large_message(max_output: usize) -> String {
    format!("bioxen_vm: the returned values do not fit in max_output ({max_output} bytes) as JSON")
}

/// Why running code is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    /// The call's deadline passed.
    Timeout = 1,
    /// Someone called interrupt (or cancelled the running job).
    Interrupt = 2,
}

/// A thread-safe handle that stops whatever a backend is running right now.
/// Calling it while nothing runs does nothing and returns `false`.
pub trait Stopper: Send + Sync {
    /// Stop the code running now, if any, for `reason`. `epoch` is `None` for "whatever runs
    /// now", or the number a deadline was scheduled for (see [`Backend::execute`]): a stop
    /// for a finished execution must not hit the next one.
    fn stop(&self, reason: StopReason, epoch: Option<u64>) -> bool;
}

/// One VM kind. A backend is used by one thread at a time (the `Vm` holds it under a
/// lock); its [`Stopper`] is the only part other threads touch.
pub trait Backend: Send {
    /// Run `req.code`. A Lua error is `Ok` with `success == false`; a timeout, an interrupt
    /// and an exceeded memory limit are `Err` with their own statuses. `timeout` is the
    /// effective limit (the call's, else the VM's default). The backend keeps its state
    /// across calls and stays usable after every outcome.
    ///
    /// `cancel`, when given, is a flag another thread may set and then call the stopper: the
    /// backend reads it once its stopper is armed (before running anything), so a cancel that
    /// arrives before the stopper can act is not lost.
    fn execute(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExecOutput>;

    /// `execute` into `out`, which may hold an earlier result: a backend that can reuses its
    /// buffers, so a caller that keeps one result for many calls allocates nothing once the
    /// buffers are large enough. On `Err`, `out` is unspecified (but valid).
    fn execute_into(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        out: &mut ExecOutput,
    ) -> Result<()> {
        *out = self.execute(req, timeout, cancel)?;
        Ok(())
    }

    /// Evaluates interactive input the way the standalone `lua` evaluates typed lines:
    /// `chunk` is the input so far (lines joined with newlines). When `first_line` is set,
    /// `return <chunk>;` is tried first (a leading `=` stands for `return `), so a bare
    /// expression yields its value; otherwise the chunk is compiled as it is, and an
    /// incomplete chunk (a syntax error at `<eof>`) gives [`ReplStep::Incomplete`] without
    /// running anything. Returned values are printed to stdout; errors (message and
    /// traceback) go to stderr. Stops as `execute` does.
    fn repl_eval(
        &mut self,
        chunk: &[u8],
        first_line: bool,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ReplStep>;

    /// The handle other threads use to stop running code.
    fn stopper(&self) -> std::sync::Arc<dyn Stopper>;

    /// Kind-specific facts for `info` (merged into the VM's info object).
    fn info(&self) -> serde_json::Map<String, serde_json::Value>;
}
