//! Progress of long operations: a callback that receives one JSON object per event
//! (`{"event": "step", ...}` for the layer's own steps, `{"event": "output", "stream":
//! "stdout"|"stderr", "line": ...}` for each line luarocks prints), from whatever thread
//! runs the operation, and answers whether to go on.

use super::error::{PResult, PkgError};
use crate::status::bioxen_vm_status as St;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where progress goes: returns false to cancel the operation.
pub type Progress = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// The error of an operation its progress callback cancelled.
pub fn cancelled() -> PkgError {
    PkgError::new(
        St::Cancelled,
        "cancelled",
        "cancelled by the progress callback",
    )
}

fn emit(p: Option<&Progress>, v: &Value) -> PResult<()> {
    match p {
        Some(p) if !p(v) => Err(cancelled()),
        _ => Ok(()),
    }
}

/// Reports one of the layer's steps (`step`: "resolve", "cache-hit", "luarocks",
/// "installed", "removed", "locked", ...), with the rock concerned when there is one;
/// `Err` (CANCELLED) when the callback asks to stop.
pub fn step(
    p: Option<&Progress>,
    step: &str,
    rock: Option<&str>,
    version: Option<&str>,
) -> PResult<()> {
    if p.is_none() {
        return Ok(());
    }
    let mut v = json!({ "event": "step", "step": step });
    if let Some(r) = rock {
        v["rock"] = r.into();
    }
    if let Some(ver) = version {
        v["version"] = ver.into();
    }
    emit(p, &v)
}

/// Reports one line of a child's output; `Err` (CANCELLED) when the callback asks to stop.
pub fn line(p: Option<&Progress>, stream: &str, text: &str) -> PResult<()> {
    if p.is_none() {
        return Ok(());
    }
    emit(
        p,
        &json!({ "event": "output", "stream": stream, "line": text }),
    )
}
