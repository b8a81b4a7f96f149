"""Exceptions of bioxen_vm.

The classes of the original ``pylua_bioxen_vm_lib`` keep their names and hierarchy (every
one is a :class:`LuaVMError`; ``SessionNotFoundError`` and friends are
:class:`InteractiveSessionError` kinds; ``ProcessRegistryError`` is a
:class:`VMManagerError`), so ``except`` clauses written for the original keep working.

Every exception raised from a status of the C library carries the library's message and
two attributes, ``status`` (the number) and ``status_name`` (e.g. ``"TIMEOUT"``). Statuses
without an original counterpart get classes of their own, chosen so that old ``except``
clauses still match:

=====================  ==========================================================
status                 exception
=====================  ==========================================================
NULL_POINTER,          :class:`BioxenVMValueError` (also a ``ValueError``: the
INVALID_UTF8,          original raised ``ValueError`` for bad arguments such as
INVALID_ARGUMENT       empty code)
INVALID_HANDLE         :class:`InvalidHandleError` (a ``BioxenVMValueError``; also
                       raised for any use of a closed object)
UNSUPPORTED            :class:`UnsupportedError` (also a ``NotImplementedError``)
TIMEOUT                :class:`VMTimeoutError` (also a :class:`LuaProcessError`, which
                       is what the original raised for a timeout)
INTERRUPTED            :class:`VMInterruptedError` (a :class:`LuaProcessError`)
MEMORY_LIMIT           :class:`VMMemoryLimitError` (a :class:`LuaProcessError`)
PANIC, INTERNAL        :class:`BioxenVMInternalError`
VM_POISONED            :class:`VMPoisonedError`
CANCELLED              :class:`JobCancelledError` (also a
                       ``concurrent.futures.CancelledError``)
WAIT_TIMEOUT           :class:`WaitTimeoutError` (also a
                       ``concurrent.futures.TimeoutError``)
VM_NOT_FOUND,          :class:`VMNotFoundError`, :class:`VMAlreadyExistsError`
VM_ALREADY_EXISTS      (:class:`VMManagerError` kinds that are also ``ValueError``, as
                       the original raised ``ValueError`` there)
FILE_NOT_FOUND         :class:`ScriptNotFoundError` (also a ``FileNotFoundError``, which
                       the original raised: "Lua script not found: …")
20 ... 37              the original class of the same name
60 ... 66              the package layer's classes (:class:`PackageError` kinds:
                       :class:`PackageNotFoundError`, :class:`DependencyConflictError`,
                       :class:`LuaRocksNotFoundError`, :class:`BuildFailedError`,
                       :class:`LockfileError`, :class:`PackageEnvironmentError`), with
                       the details of the failure as attributes (``details``,
                       ``exit_status``, ``stderr``, ``stdout``, ``kind``)
=====================  ==========================================================

Why ``VMTimeoutError`` derives from ``LuaProcessError``: the original declared
``VMTimeoutError`` but never raised it; a timeout raised ``LuaProcessError("Lua execution
timed out after N seconds")``. Making ``VMTimeoutError`` a ``LuaProcessError`` (and so
still a ``LuaVMError``) lets both ``except LuaProcessError`` (old code) and ``except
VMTimeoutError`` (the name the spec gives a timeout) catch it, with ``type(e).__name__``
being ``"VMTimeoutError"``. Nothing the original raised changes which clause catches it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Optional

__all__ = [
    "LuaVMError",
    "LuaProcessError",
    "NetworkingError",
    "LuaNotFoundError",
    "PTYError",
    "LuaSocketNotFoundError",
    "VMConnectionError",
    "VMTimeoutError",
    "ScriptGenerationError",
    "XCPngConnectionError",
    "InteractiveSessionError",
    "AttachError",
    "DetachError",
    "SessionNotFoundError",
    "SessionAlreadyExistsError",
    "SessionStateError",
    "IOThreadError",
    "VMManagerError",
    "ProcessRegistryError",
    # bioxen_vm's own
    "BioxenVMValueError",
    "InvalidHandleError",
    "UnsupportedError",
    "VMInterruptedError",
    "VMMemoryLimitError",
    "VMPoisonedError",
    "BioxenVMInternalError",
    "PackageError",
    "PackageNotFoundError",
    "DependencyConflictError",
    "LuaRocksNotFoundError",
    "BuildFailedError",
    "LockfileError",
    "PackageEnvironmentError",
    "JobCancelledError",
    "WaitTimeoutError",
    "VMNotFoundError",
    "VMAlreadyExistsError",
    "ScriptNotFoundError",
]


class LuaVMError(Exception):
    """Root of every error of the library."""

    #: The C library's status number, when the error came from one (else ``None``).
    status: Optional[int] = None
    #: The status name without its prefix (e.g. ``"TIMEOUT"``), when there is one.
    status_name: Optional[str] = None


class LuaProcessError(LuaVMError):
    """An execution failed (the original's class; ``return_code``/``stderr`` optional)."""

    def __init__(
        self, message: str = "", return_code: Optional[int] = None, stderr: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.return_code = return_code
        self.stderr = stderr


class NetworkingError(LuaVMError):
    """A networking operation failed."""


class LuaNotFoundError(LuaVMError):
    """The Lua interpreter could not be found."""


class PTYError(LuaVMError):
    """A terminal-related failure (kept for compatibility)."""


class LuaSocketNotFoundError(LuaVMError):
    """LuaSocket could not be loaded."""


class VMConnectionError(LuaVMError):
    """A connection to a VM failed."""


class VMTimeoutError(LuaProcessError):
    """Lua code ran past its timeout: "Lua execution timed out after N seconds".

    Also a :class:`LuaProcessError`, which the original raised for a timeout. The VM keeps
    its state and stays usable. ``timeout`` holds the limit in seconds when known.
    """

    timeout: Optional[float] = None


class ScriptGenerationError(LuaVMError):
    """Building or running a script failed (``execute_temp_script`` wraps errors in it)."""


class XCPngConnectionError(LuaVMError):
    """Connecting to an XCP-ng host failed."""


class InteractiveSessionError(LuaVMError):
    """An interactive session operation failed."""


class AttachError(InteractiveSessionError):
    """The session is already attached."""


class DetachError(InteractiveSessionError):
    """The session is not attached."""


class SessionNotFoundError(InteractiveSessionError):
    """No such VM or session."""


class SessionAlreadyExistsError(InteractiveSessionError):
    """A session with that id already exists."""


class SessionStateError(InteractiveSessionError):
    """The session is in the wrong state for the operation."""


class IOThreadError(InteractiveSessionError):
    """Session I/O failed."""


class VMManagerError(LuaVMError):
    """A VM manager operation failed."""


class ProcessRegistryError(VMManagerError):
    """The registry of VMs is inconsistent."""


# --- bioxen_vm's own classes, for statuses the original had no class for ----------------


class BioxenVMValueError(LuaVMError, ValueError):
    """A bad argument (NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT): also a ValueError."""


class InvalidHandleError(BioxenVMValueError):
    """The object was closed (or its native handle is no longer valid)."""


class UnsupportedError(LuaVMError, NotImplementedError):
    """Valid, but not provided by this build of the library (also a NotImplementedError)."""


class VMInterruptedError(LuaProcessError):
    """The code was stopped by an interrupt; the VM keeps its state."""


class VMMemoryLimitError(LuaProcessError):
    """The code hit the VM's memory limit; the VM keeps its state and stays usable."""


class VMPoisonedError(LuaVMError):
    """An internal failure happened while the VM ran; only closing it works now."""


class BioxenVMInternalError(LuaVMError):
    """An internal failure of the library (PANIC, INTERNAL)."""


class JobCancelledError(LuaVMError, concurrent.futures.CancelledError):
    """The asynchronous execution was cancelled (also a futures ``CancelledError``)."""


class WaitTimeoutError(LuaVMError, concurrent.futures.TimeoutError):
    """Waiting ended before the job finished; the job goes on (also a ``TimeoutError``)."""


class VMNotFoundError(VMManagerError, ValueError):
    """No VM with that id ("VM 'x' not found"); a ValueError, as in the original."""


class VMAlreadyExistsError(VMManagerError, ValueError):
    """A VM with that id exists ("VM with ID 'x' already exists"); also a ValueError."""


class ScriptNotFoundError(LuaVMError, FileNotFoundError):
    """The Lua script does not exist ("Lua script not found: …"); a FileNotFoundError."""


# --- the package layer (bioxen_vm.packages) ---------------------------------------------


class PackageError(LuaVMError):
    """A package operation failed (PACKAGE_ERROR and the kinds below). ``details`` is the
    library's error object: ``kind`` and, where they apply, luarocks' ``exit_status``,
    ``stdout`` and ``stderr``, the ``rock``, the unmet ``constraint`` and the ``available``
    versions; the common ones are also attributes."""

    details: dict = {}

    @property
    def kind(self) -> Optional[str]:
        return self.details.get("kind")

    @property
    def exit_status(self) -> Optional[int]:
        return self.details.get("exit_status")

    @property
    def stderr(self) -> Optional[str]:
        return self.details.get("stderr")

    @property
    def stdout(self) -> Optional[str]:
        return self.details.get("stdout")


class PackageNotFoundError(PackageError):
    """No server of the environment has the rock (or a version meeting the constraint)."""


class DependencyConflictError(PackageError):
    """A dependency cannot be met (``details["constraint"]``, ``details["available"]``),
    or removing a rock would break others (``details["dependents"]``)."""


class LuaRocksNotFoundError(PackageError):
    """luarocks is not installed (here, or on the environment's SSH host)."""


class BuildFailedError(PackageError):
    """Building a rock failed (compiler or Lua headers missing, a broken rockspec)."""


class LockfileError(PackageError):
    """A lockfile cannot be read or reproduced."""


class PackageEnvironmentError(PackageError):
    """An environment does not exist, exists already, or is not usable as asked."""
