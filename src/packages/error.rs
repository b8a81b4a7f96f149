//! The package layer's error: a status, the message the caller sees, and a JSON object of
//! details (`kind`, and where they apply luarocks' `exit_status`, `stderr` and `stdout`,
//! the `rock`, the unmet `constraint`, the versions the servers have as `available`, ...)
//! that the C API hands back next to the status.

use crate::error::Error;
use crate::status::bioxen_vm_status as St;
use serde_json::{Map, Value};

/// A failed package operation.
#[derive(Clone, Debug, PartialEq)]
pub struct PkgError {
    pub status: St,
    pub message: String,
    pub detail: Map<String, Value>,
}

/// Result alias of the package layer.
pub type PResult<T> = std::result::Result<T, PkgError>;

impl std::fmt::Display for PkgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PkgError {}

impl PkgError {
    pub fn new(status: St, kind: &str, message: impl Into<String>) -> Self {
        let mut detail = Map::new();
        detail.insert("kind".into(), kind.into());
        PkgError {
            status,
            message: message.into(),
            detail,
        }
    }

    /// Adds one detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.into(), value.into());
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(St::InvalidArgument, "invalid_argument", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(St::Internal, "internal", message)
    }

    pub fn environment(message: impl Into<String>) -> Self {
        Self::new(St::EnvironmentError, "environment", message)
    }

    pub fn lockfile(message: impl Into<String>) -> Self {
        Self::new(St::LockfileError, "lockfile", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(St::Timeout, "timeout", message)
    }

    /// An I/O failure on `path` while doing `what`.
    pub fn io(what: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        Self::internal(format!("{what} {}: {e}", path.display()))
            .with("path", path.display().to_string())
    }

    /// The error as the caller's JSON: `{"status", "status_name", "message", ...detail}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), self.status.code().into());
        m.insert("status_name".into(), self.status.name().into());
        m.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.detail {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    pub fn kind(&self) -> &str {
        self.detail
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

impl From<PkgError> for Error {
    fn from(e: PkgError) -> Error {
        match e.status {
            St::InvalidArgument => Error::InvalidArgument(e.message),
            St::Internal => Error::Internal(e.message),
            St::Timeout => Error::Timeout(e.message),
            St::FileNotFound => Error::FileNotFound(e.message),
            status => Error::Original {
                status,
                message: e.message,
            },
        }
    }
}

impl From<Error> for PkgError {
    fn from(e: Error) -> PkgError {
        let status = e.status();
        PkgError::new(status, "error", e.to_string())
    }
}
