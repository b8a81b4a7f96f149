"""Status numbers of the C library and the exception each one raises (shared by backends)."""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import exceptions as E

OK = 0
NULL_POINTER = 1
INVALID_UTF8 = 2
INVALID_HANDLE = 3
INVALID_ARGUMENT = 4
UNSUPPORTED = 5
TIMEOUT = 6
INTERRUPTED = 7
MEMORY_LIMIT = 8
PANIC = 9
VM_POISONED = 10
CANCELLED = 11
WAIT_TIMEOUT = 12
INTERNAL = 13
VM_NOT_FOUND = 14
VM_ALREADY_EXISTS = 15
FILE_NOT_FOUND = 16
LUA_VM_ERROR = 20
LUA_PROCESS_ERROR = 21
NETWORKING_ERROR = 22
LUA_NOT_FOUND = 23
PTY_ERROR = 24
LUA_SOCKET_NOT_FOUND = 25
VM_CONNECTION_ERROR = 26
SCRIPT_GENERATION_ERROR = 27
XCPNG_CONNECTION_ERROR = 28
INTERACTIVE_SESSION_ERROR = 29
ATTACH_ERROR = 30
DETACH_ERROR = 31
SESSION_NOT_FOUND = 32
SESSION_ALREADY_EXISTS = 33
SESSION_STATE_ERROR = 34
IO_THREAD_ERROR = 35
VM_MANAGER_ERROR = 36
PROCESS_REGISTRY_ERROR = 37
PACKAGE_NOT_FOUND = 60
DEPENDENCY_CONFLICT = 61
LUAROCKS_NOT_FOUND = 62
BUILD_FAILED = 63
PACKAGE_ERROR = 64
LOCKFILE_ERROR = 65
ENVIRONMENT_ERROR = 66

#: status -> exception class. Every status the C library defines is here.
STATUS_EXCEPTIONS: Dict[int, Type[E.LuaVMError]] = {
    NULL_POINTER: E.BioxenVMValueError,
    INVALID_UTF8: E.BioxenVMValueError,
    INVALID_HANDLE: E.InvalidHandleError,
    INVALID_ARGUMENT: E.BioxenVMValueError,
    UNSUPPORTED: E.UnsupportedError,
    TIMEOUT: E.VMTimeoutError,
    INTERRUPTED: E.VMInterruptedError,
    MEMORY_LIMIT: E.VMMemoryLimitError,
    PANIC: E.BioxenVMInternalError,
    VM_POISONED: E.VMPoisonedError,
    CANCELLED: E.JobCancelledError,
    WAIT_TIMEOUT: E.WaitTimeoutError,
    INTERNAL: E.BioxenVMInternalError,
    VM_NOT_FOUND: E.VMNotFoundError,
    VM_ALREADY_EXISTS: E.VMAlreadyExistsError,
    FILE_NOT_FOUND: E.ScriptNotFoundError,
    LUA_VM_ERROR: E.LuaVMError,
    LUA_PROCESS_ERROR: E.LuaProcessError,
    NETWORKING_ERROR: E.NetworkingError,
    LUA_NOT_FOUND: E.LuaNotFoundError,
    PTY_ERROR: E.PTYError,
    LUA_SOCKET_NOT_FOUND: E.LuaSocketNotFoundError,
    VM_CONNECTION_ERROR: E.VMConnectionError,
    SCRIPT_GENERATION_ERROR: E.ScriptGenerationError,
    XCPNG_CONNECTION_ERROR: E.XCPngConnectionError,
    INTERACTIVE_SESSION_ERROR: E.InteractiveSessionError,
    ATTACH_ERROR: E.AttachError,
    DETACH_ERROR: E.DetachError,
    SESSION_NOT_FOUND: E.SessionNotFoundError,
    SESSION_ALREADY_EXISTS: E.SessionAlreadyExistsError,
    SESSION_STATE_ERROR: E.SessionStateError,
    IO_THREAD_ERROR: E.IOThreadError,
    VM_MANAGER_ERROR: E.VMManagerError,
    PROCESS_REGISTRY_ERROR: E.ProcessRegistryError,
    PACKAGE_NOT_FOUND: E.PackageNotFoundError,
    DEPENDENCY_CONFLICT: E.DependencyConflictError,
    LUAROCKS_NOT_FOUND: E.LuaRocksNotFoundError,
    BUILD_FAILED: E.BuildFailedError,
    PACKAGE_ERROR: E.PackageError,
    LOCKFILE_ERROR: E.LockfileError,
    ENVIRONMENT_ERROR: E.PackageEnvironmentError,
}

_NAMES = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int)}


def status_name(status: int) -> str:
    """The name of a status without its prefix (Python's copy of bioxen_vm_status_name)."""
    return _NAMES.get(status, "UNKNOWN")


def error_from_status(status: int, message: Optional[str]) -> E.LuaVMError:
    """The exception for a failed call: the status's class with the library's message."""
    cls = STATUS_EXCEPTIONS.get(status, E.LuaVMError)
    name = status_name(status)
    if not message:
        message = f"bioxen_vm call failed with status {name} ({status})"
    exc = cls(message)
    exc.status = status
    exc.status_name = name
    return exc
