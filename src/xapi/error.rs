//! What can go wrong talking to XAPI, and how it reaches callers.

use crate::error::Error;
use crate::status::bioxen_vm_status as St;

/// A failed XAPI call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XapiError {
    /// XAPI answered with an error: its code (`VM_BAD_POWER_STATE`, ...) and params.
    Fault { code: String, params: Vec<String> },
    /// The request or its reply was lost (connection refused, reset, closed): a
    /// state-changing call may or may not have run.
    Transport(String),
    /// The reply could not be understood (not JSON, HTTP 500, ...).
    Protocol(String),
    /// The server's certificate was refused, or TLS could not be set up.
    Tls(String),
    /// The call, or a wait, ran past its limit.
    Timeout(String),
    /// The caller cancelled the operation.
    Cancelled(String),
    /// The configuration is wrong.
    Config(String),
}

impl XapiError {
    /// The XAPI error code, for a fault.
    pub fn code(&self) -> Option<&str> {
        match self {
            XapiError::Fault { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether this is the fault `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// The error as JSON: `{"code": ..., "params": [...]}` for a fault, else
    /// `{"code": "TRANSPORT" | "PROTOCOL" | "TLS" | "TIMEOUT" | "CANCELLED" | "CONFIG",
    /// "params": [message]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let (code, params) = match self {
            XapiError::Fault { code, params } => (code.as_str(), params.clone()),
            XapiError::Transport(m) => ("TRANSPORT", vec![m.clone()]),
            XapiError::Protocol(m) => ("PROTOCOL", vec![m.clone()]),
            XapiError::Tls(m) => ("TLS", vec![m.clone()]),
            XapiError::Timeout(m) => ("TIMEOUT", vec![m.clone()]),
            XapiError::Cancelled(m) => ("CANCELLED", vec![m.clone()]),
            XapiError::Config(m) => ("CONFIG", vec![m.clone()]),
        };
        serde_json::json!({"code": code, "params": params})
    }
}

impl std::fmt::Display for XapiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XapiError::Fault { code, params } if params.is_empty() => write!(f, "{code}"),
            XapiError::Fault { code, params } => write!(f, "{code}({})", params.join(", ")),
            XapiError::Transport(m)
            | XapiError::Protocol(m)
            | XapiError::Tls(m)
            | XapiError::Timeout(m)
            | XapiError::Cancelled(m)
            | XapiError::Config(m) => f.write_str(m),
        }
    }
}

impl XapiError {
    /// The library error for this failure, `context` first ("VM.start: ...").
    ///
    /// An answer from XAPI (a fault) is VM_MANAGER_ERROR, as the original's failed VM
    /// operations were, except a refused login (XCPNG_CONNECTION_ERROR); an unreachable or
    /// unintelligible server and refused certificates are XCPNG_CONNECTION_ERROR; limits
    /// are TIMEOUT, cancellations CANCELLED, bad configurations INVALID_ARGUMENT.
    pub fn into_error(self, context: &str) -> Error {
        let message = if context.is_empty() {
            self.to_string()
        } else {
            format!("{context}: {self}")
        };
        match self {
            XapiError::Fault { code, .. } if code == "SESSION_AUTHENTICATION_FAILED" => {
                Error::Original {
                    status: St::XcpngConnectionError,
                    message: format!("Authentication failed: {message}"),
                }
            }
            XapiError::Fault { .. } => Error::Original {
                status: St::VmManagerError,
                message,
            },
            XapiError::Transport(_) | XapiError::Protocol(_) | XapiError::Tls(_) => {
                Error::Original {
                    status: St::XcpngConnectionError,
                    message,
                }
            }
            XapiError::Timeout(_) => Error::Timeout(message),
            XapiError::Cancelled(_) => Error::Cancelled(message),
            XapiError::Config(_) => Error::InvalidArgument(message),
        }
    }
}

impl From<XapiError> for Error {
    fn from(e: XapiError) -> Error {
        e.into_error("")
    }
}
