//! What goes into an execution and what comes out of it.

use std::time::Duration;

/// One execution request.
#[derive(Clone, Copy, Debug)]
pub struct ExecRequest<'a> {
    /// Lua source text (bytes; may contain NUL). Binary chunks are refused.
    pub code: &'a [u8],
    /// Arguments as a parsed JSON array; they arrive as the chunk's `...`.
    pub args: Option<&'a serde_json::Value>,
    /// Chunk name for messages and tracebacks (`None`: `=(bioxen_vm)`; `@path` for files).
    pub chunk_name: Option<&'a [u8]>,
}

/// The outcome of an execution that ran to its end (successfully or with a Lua error).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecOutput {
    pub success: bool,
    /// 0 when the chunk ran to its end, 1 for a Lua error (syntax or runtime).
    pub return_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// JSON array of the returned values (`[]` when none, or on error).
    pub values_json: Vec<u8>,
    /// The error message with its traceback, when `success` is false.
    pub error: Option<String>,
    pub duration: Duration,
    /// Bytes of output dropped because a stream passed `max_output`.
    pub output_dropped: u64,
}

/// What evaluating one piece of interactive input did.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplStep {
    /// The chunk is not complete yet: more lines are needed (nothing ran).
    Incomplete,
    /// The chunk ran (or failed to compile); its output as for an execution.
    Ran(ExecOutput),
}
