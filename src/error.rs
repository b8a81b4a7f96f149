//! The one error type of the library. Each variant carries the message the caller sees
//! and maps onto exactly one status code.

use crate::status::bioxen_vm_status as Status;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call, as the caller should hear it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0} must not be NULL")]
    NullPointer(&'static str),
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("{0}")]
    InvalidHandle(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Interrupted(String),
    #[error("{0}")]
    MemoryLimit(String),
    #[error("{0}")]
    Panic(String),
    #[error("{0}")]
    Poisoned(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("{0}")]
    WaitTimeout(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    VmNotFound(String),
    #[error("{0}")]
    VmAlreadyExists(String),
    #[error("{0}")]
    FileNotFound(String),
    /// A failure that maps onto one of the original library's exception classes.
    #[error("{message}")]
    Original { status: Status, message: String },
}

impl Error {
    /// The status code this error is reported with.
    pub fn status(&self) -> Status {
        match self {
            Error::NullPointer(_) => Status::NullPointer,
            Error::InvalidUtf8(_) => Status::InvalidUtf8,
            Error::InvalidHandle(_) => Status::InvalidHandle,
            Error::InvalidArgument(_) => Status::InvalidArgument,
            Error::Unsupported(_) => Status::Unsupported,
            Error::Timeout(_) => Status::Timeout,
            Error::Interrupted(_) => Status::Interrupted,
            Error::MemoryLimit(_) => Status::MemoryLimit,
            Error::Panic(_) => Status::Panic,
            Error::Poisoned(_) => Status::VmPoisoned,
            Error::Cancelled(_) => Status::Cancelled,
            Error::WaitTimeout(_) => Status::WaitTimeout,
            Error::Internal(_) => Status::Internal,
            Error::VmNotFound(_) => Status::VmNotFound,
            Error::VmAlreadyExists(_) => Status::VmAlreadyExists,
            Error::FileNotFound(_) => Status::FileNotFound,
            Error::Original { status, .. } => *status,
        }
    }

    /// Shorthand for an `InvalidArgument` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
