"""bioxen_vm: isolated, persistent Lua 5.4 VMs in this process, through libbioxen_vm.

The public API of the original ``pylua_bioxen_vm_lib`` (0.1.22) with the same names:
``create_vm``, ``VMManager``, ``InteractiveSession``, ``SessionManager``, ``VMCluster``,
``LuaProcess``, ``NetworkedLuaVM``, the exception hierarchy, and ``VMLogger``. Each VM is a
sandboxed Lua state of the C library (``libbioxen_vm``), loaded at run time through ctypes
or cffi (``BIOXEN_VM_BACKEND``), with synchronous executions compiled against the CPython
API when ``pip install`` could build that (``FASTCALL``); the GIL is released while Lua
runs.

    >>> from bioxen_vm import create_vm
    >>> with create_vm("demo") as vm:
    ...     vm.execute_string("x = 40 return x + 2")["stdout"]
    '42'
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from . import _log as _log_setup  # noqa: F401  (installs the native log callback)
from . import _sigint, exceptions, logger
from ._native import backend as _backend
from ._hotpath import FASTCALL as _FASTCALL
from ._sigint import set_sigint_mode, sigint_mode
from .exceptions import (AttachError, BioxenVMInternalError, BioxenVMValueError, DetachError,
                         InteractiveSessionError, InvalidHandleError, IOThreadError,
                         JobCancelledError, LuaNotFoundError, LuaProcessError,
                         LuaSocketNotFoundError, LuaVMError, NetworkingError,
                         ProcessRegistryError, PTYError, ScriptGenerationError,
                         SessionAlreadyExistsError, SessionNotFoundError, SessionStateError,
                         UnsupportedError, VMAlreadyExistsError, VMConnectionError,
                         VMInterruptedError, VMManagerError, VMMemoryLimitError,
                         VMNotFoundError, VMPoisonedError, VMTimeoutError, WaitTimeoutError,
                         XCPngConnectionError)
from .futures import JobFuture
from .logger import VMLogger
from .manager import VMCluster, VMManager
from .networking import LuaScriptTemplate, validate_host, validate_port
from .session import InteractiveSession, SessionManager
from .vm import LuaProcess, ManagedLuaVM, NetworkedLuaVM
from .xcpng import XAPIError, XAPISession, XcpngVM

#: The C library's version (``bioxen_vm_version()``).
__version__: str = _backend.version()
#: Which native backend this process uses: ``"cffi"`` or ``"ctypes"``.
BACKEND: str = _backend.name
#: The shared library this process loaded.
LIBRARY_PATH: str = _backend.path
#: True when synchronous executions take the compiled path (``bioxen_vm._fastcall``, built
#: by ``pip install`` when a C compiler and the Python headers are present; turned off with
#: ``BIOXEN_VM_FASTCALL=0``), False when they go through the backend.
FASTCALL: bool = _FASTCALL

# Ctrl-C stops the main thread's blocking calls (bioxen_vm/_sigint.py): installed now if this
# is the main thread, else by the first VM or manager the main thread creates.
_sigint.arm()

__all__ = [
    "XcpngVM", "XAPISession", "XAPIError",
    # classes
    "LuaProcess", "NetworkedLuaVM", "VMManager", "VMCluster", "InteractiveSession",
    "SessionManager", "LuaScriptTemplate",
    # functions
    "validate_port", "validate_host", "sigint_mode", "set_sigint_mode",
    # exceptions (the original's)
    "LuaVMError", "LuaProcessError", "NetworkingError", "LuaNotFoundError",
    "LuaSocketNotFoundError", "VMConnectionError", "VMTimeoutError", "ScriptGenerationError",
    "InteractiveSessionError", "AttachError", "DetachError", "PTYError",
    "SessionNotFoundError", "SessionAlreadyExistsError", "SessionStateError", "IOThreadError",
    "ProcessRegistryError", "VMManagerError",
    # factories and version
    "__version__", "create_vm", "create_manager", "create_interactive_manager",
    "create_interactive_session",
    # bioxen_vm's additions
    "VMLogger", "ManagedLuaVM", "JobFuture", "XCPngConnectionError", "BioxenVMValueError",
    "InvalidHandleError", "UnsupportedError", "VMInterruptedError", "VMMemoryLimitError",
    "VMPoisonedError", "BioxenVMInternalError", "JobCancelledError", "WaitTimeoutError",
    "VMNotFoundError", "VMAlreadyExistsError", "BACKEND", "LIBRARY_PATH", "FASTCALL",
    "exceptions", "logger",
]


def create_vm(vm_id: str = "default", vm_type: str = "basic", networked: bool = False,
              persistent: bool = False, debug_mode: bool = False, lua_executable: str = "lua",
              config: Optional[Mapping[str, Any]] = None, **options: Any
              ) -> Union[LuaProcess, NetworkedLuaVM]:
    """A standalone VM named ``vm_id`` (the original's factory).

    ``vm_type="basic"`` gives a :class:`LuaProcess`, or with ``networked=True`` a
    :class:`NetworkedLuaVM` (a ``process`` VM: a child ``lua`` that can load LuaSocket);
    ``vm_type="process"`` a :class:`LuaProcess` running a child ``lua_executable``.
    ``vm_type="xcpng"`` gives an unstarted :class:`~bioxen_vm.xcpng.XcpngVM` for the pool
    that ``config`` names (deployed by its ``start()`` or first use; ``progress=`` a
    callable for the deploy's steps). ``vm_type="ssh"`` gives a :class:`LuaProcess` whose
    ``lua_executable`` runs on the host that ``config`` names (``host``, ``port``,
    ``username``, ``key_file`` / ``password`` / the ssh-agent, ``known_hosts`` or
    ``host_key_fingerprint``, ...: the ssh options of the README). Unknown kinds raise
    ``ValueError`` ("Unknown VM type: …").
    ``persistent`` is accepted and ignored (only managers keep a registry), as in the
    original. Extra keywords are VM options (``sandbox``, ``memory_limit``, ``timeout``,
    ``max_output``, ``chunk_cache``, ``env``).
    """
    if not isinstance(vm_type, str):
        raise TypeError(f"vm_type must be str, not {type(vm_type).__name__}")
    if networked and vm_type in ("basic", "process"):
        return NetworkedLuaVM(vm_id, lua_executable, debug_mode, **options)
    if vm_type == "xcpng":
        from .xcpng import XcpngVM

        if config is None:
            raise ValueError("XCP-ng VMs require a config")
        return XcpngVM(vm_id, config, debug_mode=debug_mode or None,
                       persistent=persistent or None,
                       lua_executable=None if lua_executable == "lua" else lua_executable,
                       **options)
    return LuaProcess(vm_id, lua_executable, debug_mode, vm_type=vm_type, config=config,
                      **options)


def create_manager(max_workers: int = 10, lua_executable: str = "lua",
                   debug_mode: bool = False, **vm_defaults: Any) -> VMManager:
    """A :class:`VMManager`."""
    return VMManager(max_workers, lua_executable, debug_mode, **vm_defaults)


def create_interactive_manager(max_workers: int = 10, lua_executable: str = "lua",
                               debug_mode: bool = False, **vm_defaults: Any) -> VMManager:
    """A :class:`VMManager` (the same as :func:`create_manager`, as in the original)."""
    return VMManager(max_workers, lua_executable, debug_mode, **vm_defaults)


def create_interactive_session(vm_id: str = "interactive", networked: bool = False,
                               lua_executable: str = "lua", auto_attach: bool = True,
                               debug_mode: bool = False) -> InteractiveSession:
    """An interactive session on a new VM of a new manager.

    The manager lives as long as the session object (``session.manager``), and is freed
    with it.
    """
    manager = VMManager(lua_executable=lua_executable, debug_mode=debug_mode)
    return manager.create_interactive_vm(vm_id, networked=networked, auto_attach=auto_attach)
