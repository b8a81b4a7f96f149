//! Progress of long operations: a callback that receives one JSON object per event
//! (`{"event": "step", ...}` for the layer's own steps, `{"event": "output", "stream":
//! "stdout"|"stderr", "line": ...}` for each line luarocks prints), from whatever thread
//! runs the operation.

use serde_json::{json, Value};
use std::sync::Arc;

/// Where progress goes.
pub type Progress = Arc<dyn Fn(&Value) + Send + Sync>;

/// Reports one of the layer's steps (`step`: "resolve", "cache-hit", "luarocks",
/// "installed", "removed", "locked", ...), with the rock concerned when there is one.
pub fn step(p: Option<&Progress>, step: &str, rock: Option<&str>, version: Option<&str>) {
    if let Some(p) = p {
        let mut v = json!({ "event": "step", "step": step });
        if let Some(r) = rock {
            v["rock"] = r.into();
        }
        if let Some(ver) = version {
            v["version"] = ver.into();
        }
        p(&v);
    }
}

/// Reports one line of a child's output.
pub fn line(p: Option<&Progress>, stream: &str, text: &str) {
    if let Some(p) = p {
        p(&json!({ "event": "output", "stream": stream, "line": text }));
    }
}
