//! The status codes every fallible C function returns.
//!
//! Numbers are explicit and append-only: a value, once published, keeps its meaning
//! forever. Codes 20 and up map one-to-one onto the exception classes of the original
//! Python library, so a binding can raise the same class the original raised.

/// Status returned by every fallible `bioxen_vm_*` function. `BIOXEN_VM_STATUS_OK` is 0;
/// every other value is a failure whose message `bioxen_vm_last_error_message()` returns.
/// Functions return it as `int32_t`; the enum only names the values.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum bioxen_vm_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A string argument (id, options, JSON) was not valid UTF-8.
    InvalidUtf8 = 2,
    /// A handle is 0, unknown, already freed, or of another kind.
    InvalidHandle = 3,
    /// An argument has a wrong value: bad JSON, unknown option, empty code, ...
    InvalidArgument = 4,
    /// The request is valid but not served by this build (for example a VM kind not built yet).
    Unsupported = 5,
    /// Lua code ran past its timeout and was stopped. The VM keeps its state. (`VMTimeoutError`)
    Timeout = 6,
    /// Lua code was stopped by an interrupt. The VM keeps its state.
    Interrupted = 7,
    /// Lua code hit the VM's memory limit. The VM keeps its state and stays usable.
    MemoryLimit = 8,
    /// A bug inside the library was caught at the boundary; nothing unwound into the caller.
    Panic = 9,
    /// The VM was running when a panic was caught; only freeing or removing it works now.
    VmPoisoned = 10,
    /// The job was cancelled before it finished.
    Cancelled = 11,
    /// Waiting for a job ended before the job finished; the job goes on.
    WaitTimeout = 12,
    /// An internal failure of the host (a thread could not be started, ...).
    Internal = 13,
    /// No VM with that id in the manager (the original raised `ValueError`).
    VmNotFound = 14,
    /// A VM with that id already exists in the manager (the original raised `ValueError`).
    VmAlreadyExists = 15,
    /// A script file does not exist (the original raised `FileNotFoundError`).
    FileNotFound = 16,
    /// `LuaVMError`: the root of the original hierarchy.
    LuaVmError = 20,
    /// `LuaProcessError`.
    LuaProcessError = 21,
    /// `NetworkingError`.
    NetworkingError = 22,
    /// `LuaNotFoundError`: the Lua interpreter could not be found.
    LuaNotFound = 23,
    /// `PTYError`.
    PtyError = 24,
    /// `LuaSocketNotFoundError`: LuaSocket could not be loaded.
    LuaSocketNotFound = 25,
    /// `VMConnectionError`.
    VmConnectionError = 26,
    /// `ScriptGenerationError`.
    ScriptGenerationError = 27,
    /// `XCPngConnectionError`.
    XcpngConnectionError = 28,
    /// `InteractiveSessionError`.
    InteractiveSessionError = 29,
    /// `AttachError`: the session is already attached.
    AttachError = 30,
    /// `DetachError`: the session is not attached.
    DetachError = 31,
    /// `SessionNotFoundError`.
    SessionNotFound = 32,
    /// `SessionAlreadyExistsError`.
    SessionAlreadyExists = 33,
    /// `SessionStateError`.
    SessionStateError = 34,
    /// `IOThreadError`.
    IoThreadError = 35,
    /// `VMManagerError`.
    VmManagerError = 36,
    /// `ProcessRegistryError`.
    ProcessRegistryError = 37,
    /// Package environments (60–66): no server of the environment has the rock (or that
    /// version of it). The details name the servers and the versions they have.
    PackageNotFound = 60,
    /// A dependency's constraint cannot be met (the details name the constraint and the
    /// versions the servers have), or a removal would break rocks that depend on it.
    DependencyConflict = 61,
    /// luarocks is not installed (locally, or on the remote host of an ssh environment).
    LuarocksNotFound = 62,
    /// Building a rock failed (a C compiler or the Lua headers missing, a broken rockspec).
    BuildFailed = 63,
    /// luarocks failed otherwise; the details carry its exit status, stdout and stderr.
    PackageError = 64,
    /// A lockfile cannot be read or reproduced (a server cannot provide a pinned rock, a
    /// rock's files do not match the pinned hash, the Lua version differs).
    LockfileError = 65,
    /// An environment does not exist, already exists, or is not usable as asked.
    EnvironmentError = 66,
}

/// Every status, in numeric order (used by tests and by `status_name`).
pub const ALL_STATUSES: &[bioxen_vm_status] = &[
    bioxen_vm_status::Ok,
    bioxen_vm_status::NullPointer,
    bioxen_vm_status::InvalidUtf8,
    bioxen_vm_status::InvalidHandle,
    bioxen_vm_status::InvalidArgument,
    bioxen_vm_status::Unsupported,
    bioxen_vm_status::Timeout,
    bioxen_vm_status::Interrupted,
    bioxen_vm_status::MemoryLimit,
    bioxen_vm_status::Panic,
    bioxen_vm_status::VmPoisoned,
    bioxen_vm_status::Cancelled,
    bioxen_vm_status::WaitTimeout,
    bioxen_vm_status::Internal,
    bioxen_vm_status::VmNotFound,
    bioxen_vm_status::VmAlreadyExists,
    bioxen_vm_status::FileNotFound,
    bioxen_vm_status::LuaVmError,
    bioxen_vm_status::LuaProcessError,
    bioxen_vm_status::NetworkingError,
    bioxen_vm_status::LuaNotFound,
    bioxen_vm_status::PtyError,
    bioxen_vm_status::LuaSocketNotFound,
    bioxen_vm_status::VmConnectionError,
    bioxen_vm_status::ScriptGenerationError,
    bioxen_vm_status::XcpngConnectionError,
    bioxen_vm_status::InteractiveSessionError,
    bioxen_vm_status::AttachError,
    bioxen_vm_status::DetachError,
    bioxen_vm_status::SessionNotFound,
    bioxen_vm_status::SessionAlreadyExists,
    bioxen_vm_status::SessionStateError,
    bioxen_vm_status::IoThreadError,
    bioxen_vm_status::VmManagerError,
    bioxen_vm_status::ProcessRegistryError,
    bioxen_vm_status::PackageNotFound,
    bioxen_vm_status::DependencyConflict,
    bioxen_vm_status::LuarocksNotFound,
    bioxen_vm_status::BuildFailed,
    bioxen_vm_status::PackageError,
    bioxen_vm_status::LockfileError,
    bioxen_vm_status::EnvironmentError,
];

impl bioxen_vm_status {
    /// The status as the `int32_t` the C functions return.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status for a code, if the code names one.
    pub fn from_code(code: i32) -> Option<Self> {
        ALL_STATUSES.iter().copied().find(|s| s.code() == code)
    }

    /// The constant's name without the prefix, e.g. `"INVALID_HANDLE"`.
    pub fn name(self) -> &'static str {
        // The names are ASCII literals: this cannot fail.
        self.c_name().to_str().unwrap_or("UNKNOWN")
    }

    /// [`Self::name`] as a NUL-terminated C string (static).
    pub fn c_name(self) -> &'static std::ffi::CStr {
        use bioxen_vm_status::*;
        match self {
            Ok => c"OK",
            NullPointer => c"NULL_POINTER",
            InvalidUtf8 => c"INVALID_UTF8",
            InvalidHandle => c"INVALID_HANDLE",
            InvalidArgument => c"INVALID_ARGUMENT",
            Unsupported => c"UNSUPPORTED",
            Timeout => c"TIMEOUT",
            Interrupted => c"INTERRUPTED",
            MemoryLimit => c"MEMORY_LIMIT",
            Panic => c"PANIC",
            VmPoisoned => c"VM_POISONED",
            Cancelled => c"CANCELLED",
            WaitTimeout => c"WAIT_TIMEOUT",
            Internal => c"INTERNAL",
            VmNotFound => c"VM_NOT_FOUND",
            VmAlreadyExists => c"VM_ALREADY_EXISTS",
            FileNotFound => c"FILE_NOT_FOUND",
            LuaVmError => c"LUA_VM_ERROR",
            LuaProcessError => c"LUA_PROCESS_ERROR",
            NetworkingError => c"NETWORKING_ERROR",
            LuaNotFound => c"LUA_NOT_FOUND",
            PtyError => c"PTY_ERROR",
            LuaSocketNotFound => c"LUA_SOCKET_NOT_FOUND",
            VmConnectionError => c"VM_CONNECTION_ERROR",
            ScriptGenerationError => c"SCRIPT_GENERATION_ERROR",
            XcpngConnectionError => c"XCPNG_CONNECTION_ERROR",
            InteractiveSessionError => c"INTERACTIVE_SESSION_ERROR",
            AttachError => c"ATTACH_ERROR",
            DetachError => c"DETACH_ERROR",
            SessionNotFound => c"SESSION_NOT_FOUND",
            SessionAlreadyExists => c"SESSION_ALREADY_EXISTS",
            SessionStateError => c"SESSION_STATE_ERROR",
            IoThreadError => c"IO_THREAD_ERROR",
            VmManagerError => c"VM_MANAGER_ERROR",
            ProcessRegistryError => c"PROCESS_REGISTRY_ERROR",
            PackageNotFound => c"PACKAGE_NOT_FOUND",
            DependencyConflict => c"DEPENDENCY_CONFLICT",
            LuarocksNotFound => c"LUAROCKS_NOT_FOUND",
            BuildFailed => c"BUILD_FAILED",
            PackageError => c"PACKAGE_ERROR",
            LockfileError => c"LOCKFILE_ERROR",
            EnvironmentError => c"ENVIRONMENT_ERROR",
        }
    }
}
