"""Basic VMs: :class:`LuaProcess` (a standalone VM), :class:`ManagedLuaVM` (a manager's VM
by id) and :class:`NetworkedLuaVM`.

A VM is a persistent, sandboxed Lua 5.4 state inside this process: globals persist across
``execute_*`` calls. Results are the original's dicts (``stdout``, ``stderr`` stripped at
both ends, ``return_code``, ``success``) plus ``values`` (the returned values, decoded from
JSON), ``error`` (message and traceback of a Lua error, else None) and ``duration``
(seconds). A Lua error is a result with ``success == False``, never an exception; a timeout
raises :class:`~bioxen_vm.exceptions.VMTimeoutError` (a ``LuaProcessError``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Union

from . import _convert, _sigint
from ._convert import (NO_JSON, args_arg, code_arg, options_arg, result_dict, timeout_ms,
                       with_config)
from ._hotpath import execute, manager_execute
from ._handles import own
from ._log import sync_level
from ._native import backend
from .exceptions import (InteractiveSessionError, InvalidHandleError, LuaVMError,
                         ScriptGenerationError, VMTimeoutError)
from .futures import JobFuture, retitle_timeout, start_job

if TYPE_CHECKING:
    from .manager import VMManager
    from .session import InteractiveSession

PathLike = Union[str, "os.PathLike[str]"]


def path_arg(script_path: Any) -> bytes:
    """A script path as the NUL-terminated bytes the C API takes."""
    path = os.fsencode(os.fspath(script_path))
    if b"\0" in path:
        raise ValueError("script_path must not contain NUL characters")
    return path


_wrapped_classes: Dict[type, type] = {}


def _stop_vm(frame_locals: Any) -> None:
    """Ctrl-C in a VM's blocking call (see ``_sigint``): interrupts the VM."""
    frame_locals["self"].interrupt()


def as_script_generation_error(exc: LuaVMError) -> LuaVMError:
    """``exc`` re-raised as the original's ScriptGenerationError, keeping its own class.

    The original wrapped every failure of ``execute_temp_script`` (a timeout included) in
    ``ScriptGenerationError("Failed to create/execute temporary script: …")``. The new
    exception is of a class derived from both, so ``except ScriptGenerationError`` (old
    code) and ``except VMTimeoutError`` (say) both catch it.
    """
    if isinstance(exc, ScriptGenerationError):
        return exc
    base = type(exc)
    cls = _wrapped_classes.get(base)
    if cls is None:
        cls = type(f"ScriptGeneration{base.__name__}", (ScriptGenerationError, base),
                   {"__module__": __name__, "__doc__": f"A {base.__name__} of a script."})
        _wrapped_classes[base] = cls
    wrapped = cls(f"Failed to create/execute temporary script: {exc}")
    wrapped.status, wrapped.status_name = exc.status, exc.status_name
    if isinstance(exc, VMTimeoutError):
        wrapped.timeout = exc.timeout  # type: ignore[attr-defined]
    return wrapped


class LuaProcess:
    """A standalone basic VM (the original's ``LuaProcess``), owning one native VM.

    ``LuaProcess(name="LuaVM", lua_executable="lua", debug_mode=False)`` as the original;
    keyword-only extras are passed to the VM as options: ``sandbox`` (``"default"`` or
    ``"trusted"``), ``memory_limit`` (bytes), ``timeout`` (seconds, the default limit of each
    execution), ``max_output``, ``chunk_cache``, ``vm_type``, ``env`` (a package environment:
    a :class:`bioxen_vm.packages.Environment`, a name or a path; ``require`` then finds its
    modules only), ``config`` (the kind's own options: for ``vm_type="ssh"`` ``host``,
    ``port``, ``username``, ``key_file``, ``known_hosts``, ...; the keywords above win over
    it). For a ``basic`` VM ``lua_executable`` is kept for compatibility only: the VM
    embeds Lua 5.4 and never runs an interpreter; ``process`` and ``ssh`` VMs run it (a
    ``lua_executable`` in ``config`` is used when this one is left at ``"lua"``).

    Close it with :meth:`close` (or a ``with`` block); it is also freed when garbage
    collected. Any call on a closed VM raises :class:`InvalidHandleError` ("VM has been
    closed").
    """

    _handle: int = 0

    def __init__(self, name: str = "LuaVM", lua_executable: str = "lua",
                 debug_mode: bool = False, *, sandbox: Optional[str] = None,
                 memory_limit: Optional[int] = None, timeout: Optional[float] = None,
                 max_output: Optional[int] = None, chunk_cache: Optional[int] = None,
                 vm_type: str = "basic", env: Any = None,
                 config: Optional[Mapping[str, Any]] = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        if not isinstance(lua_executable, str):
            raise TypeError(
                f"lua_executable must be str, not {type(lua_executable).__name__}")
        self.name = name
        self.lua_executable = lua_executable
        self.debug_mode = bool(debug_mode)
        self._session_manager: Optional["VMManager"] = None
        sync_level()
        _sigint.arm()
        explicit = {
            "lua_executable": lua_executable, "debug_mode": self.debug_mode or None,
            "sandbox": sandbox, "memory_limit": memory_limit, "timeout": timeout,
            "max_output": max_output, "chunk_cache": chunk_cache,
            "vm_type": None if vm_type == "basic" else vm_type,
            "env": None if env is None else os.fspath(env)}
        options = options_arg(with_config(config, explicit, lua_executable == "lua"))
        handle = backend.new(options)
        self._handle = handle
        self._free = own(self, backend.free, handle)

    # --- lifetime -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (the native VM is freed)."""
        return not self._handle

    def close(self) -> None:
        """Frees the native VM (and the interactive session, if started). Idempotent.

        Code running on the VM in another thread is interrupted first (that call raises
        :class:`~bioxen_vm.exceptions.VMInterruptedError`); the library frees the VM once
        the call has returned.
        """
        self.cleanup()
        handle = self._handle
        if handle:
            self._handle = 0
            try:
                backend.interrupt(handle)
            except LuaVMError:
                pass
            self._free()

    def __enter__(self) -> "LuaProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _h(self) -> int:
        handle = self._handle
        if not handle:
            raise InvalidHandleError("VM has been closed")
        return handle

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, "
                f"lua_executable={self.lua_executable!r}, debug_mode={self.debug_mode}, "
                f"packages_setup=False)")

    # --- executions (shared by every VM kind) ----------------------------------------------

    @_sigint.stops(_stop_vm)
    def _run(self, code: Union[str, bytes], args: bytes, ms: int) -> Dict[str, Any]:
        handle = self._handle
        if not handle:
            raise InvalidHandleError("VM has been closed")
        return execute(handle, code, args, ms)

    def _run_async(self, code: bytes, args: bytes, ms: int) -> int:
        return backend.execute_async(self._h(), code, len(code), args, ms)

    @_sigint.stops(_stop_vm)
    def _run_file(self, path: bytes, ms: int) -> Any:
        return backend.execute_file(self._h(), path, ms)

    @_sigint.stops(_stop_vm)
    def _run_temp_script(self, code: bytes, ms: int) -> Any:
        return backend.execute_temp_script(self._h(), code, len(code), ms)

    @_sigint.stops(_stop_vm)
    def _net_run(self, mode: bytes, options: bytes, ms: int) -> Any:
        return backend.net_run(self._h(), mode, options, ms)

    def execute_string(self, lua_code: Union[str, bytes], timeout: Optional[float] = None,
                       args: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
        """Runs Lua code and returns the result dict.

        ``timeout``: seconds (None or 0: no per-call limit; the VM's default applies).
        ``args``: a list, passed as JSON, arriving as the chunk's ``...``.
        Blank code raises ``ValueError`` ("Lua code cannot be empty").
        """
        code = lua_code if type(lua_code) is str else code_arg(lua_code)
        ms = 0 if timeout is None else timeout_ms(timeout)
        try:
            return self._run(code, NO_JSON if args is None else args_arg(args), ms)
        except VMTimeoutError as exc:
            if timeout is not None:
                retitle_timeout(exc, timeout)
            raise

    def execute_file(self, script_path: PathLike, timeout: Optional[float] = None
                     ) -> Dict[str, Any]:
        """Runs a Lua script file in the VM's state (``bioxen_vm_execute_file``).

        The chunk is named ``@<path>`` (messages name the file); a ``#!`` first line is
        skipped. A missing file raises :class:`~bioxen_vm.exceptions.ScriptNotFoundError`
        (a ``FileNotFoundError``: "Lua script not found: …"), a path that is not a regular
        file ``ValueError``; an empty file is a valid script.
        """
        path = path_arg(script_path)
        try:
            r = self._run_file(path, timeout_ms(timeout))
        except VMTimeoutError as exc:
            if timeout is not None:
                retitle_timeout(exc, timeout)
            raise
        return result_dict(r)

    def execute_temp_script(self, lua_code: Union[str, bytes],
                            timeout: Optional[float] = None) -> Dict[str, Any]:
        """The original's ``execute_temp_script`` (``bioxen_vm_execute_temp_script``).

        The library writes the code to a new ``bioxen_vm-<pid>-<n>.lua`` (mode 0600) in the
        temp directory, runs it as :meth:`execute_file` does and removes it whatever
        happens. Empty code is allowed. As in the original, every failure is raised as a
        :class:`ScriptGenerationError` ("Failed to create/execute temporary script: …"),
        whose class also derives from the specific one (a timeout is both a
        ``ScriptGenerationError`` and a ``VMTimeoutError``).
        """
        code = code_arg(lua_code)
        try:
            r = self._run_temp_script(code, timeout_ms(timeout))
        except LuaVMError as exc:
            if isinstance(exc, VMTimeoutError) and timeout is not None:
                retitle_timeout(exc, timeout)
            raise as_script_generation_error(exc) from exc
        return result_dict(r)

    def execute_async(self, lua_code: Union[str, bytes], timeout: Optional[float] = None,
                      args: Optional[Sequence[Any]] = None) -> JobFuture:
        """Queues the code on the library's worker pool; a Future of the result dict."""
        code = code_arg(lua_code)
        job = self._run_async(code, args_arg(args), timeout_ms(timeout))
        return start_job(job, timeout)

    def interrupt(self) -> bool:
        """Stops the code running on this VM now (from any thread); True if something ran.

        The interrupted call raises :class:`~bioxen_vm.exceptions.VMInterruptedError`; the
        VM keeps its state.
        """
        return bool(backend.interrupt(self._h()))

    def info(self) -> Dict[str, Any]:
        """The VM's facts: options, ``vm_name``, ``created_at``, ``executions``, ..."""
        data = _convert.json_value(backend.info(self._h()))
        data["name"] = self.name
        return data

    # --- interactive session --------------------------------------------------------------

    def _session(self) -> Optional["InteractiveSession"]:
        manager = self._session_manager
        if manager is None or manager.closed:
            return None
        from .session import InteractiveSession

        session = InteractiveSession(self.name, self, manager=manager)
        return session if session.is_running() else None

    def start_interactive_session(self) -> "InteractiveSession":
        """Starts a Lua REPL session for this VM and returns it.

        A standalone VM has no session in the C API (sessions live on a manager's VMs), so
        the session runs on a second Lua state with this VM's options, inside a private
        manager: as in the original (whose session was a separate ``lua -i``), it does not
        see the globals of ``execute_*`` calls. A manager's VM (:class:`ManagedLuaVM`)
        shares one state between both.
        """
        self._h()
        if self._session() is not None:
            raise InteractiveSessionError("Session already running")
        from .manager import VMManager

        if self._session_manager is None or self._session_manager.closed:
            self._session_manager = VMManager(max_workers=1, lua_executable=self.lua_executable,
                                              debug_mode=self.debug_mode)
        manager = self._session_manager
        if self.name in manager.list_vms():
            return manager.attach_to_vm(self.name)
        return manager.create_interactive_vm(self.name)

    def stop_interactive_session(self) -> None:
        """Ends the interactive session, if any."""
        manager, self._session_manager = self._session_manager, None
        if manager is not None:
            manager.close()

    def start(self) -> "InteractiveSession":
        """Starts the interactive session (the original's ``start``)."""
        return self.start_interactive_session()

    def stop(self) -> None:
        """Stops the interactive session (the original's ``stop``: ``cleanup``).

        The VM itself stays usable; :meth:`close` frees it.
        """
        self.cleanup()

    def _require_session(self) -> "InteractiveSession":
        session = self._session()
        if session is None:
            raise InteractiveSessionError(
                f"No interactive session running for VM '{self.name}' (call start() first)")
        return session

    def send_input(self, input_str: Union[str, bytes]) -> None:
        """Sends a line (a newline is added when missing) to the interactive session."""
        self._require_session().send_input(input_str)

    def read_output(self, timeout: Optional[float] = 0.1) -> Optional[str]:
        """The session's buffered output, or None; waits up to ``timeout`` to be idle."""
        session = self._session()
        return None if session is None else session.read_output(timeout)

    def is_interactive_running(self) -> bool:
        """True while an interactive session runs."""
        return self._session() is not None

    def cleanup(self) -> None:
        """Ends the interactive session (the VM stays usable)."""
        self.stop_interactive_session()


class ManagedLuaVM(LuaProcess):
    """A manager's VM, by id: what :meth:`VMManager.create_vm` and ``get_vm`` return.

    It shares :class:`LuaProcess`'s methods; executions go through
    ``bioxen_vm_manager_execute``, and its interactive session is the manager's session of
    the same VM, sharing its globals. The manager owns the VM: :meth:`close` only forgets
    this proxy; ``manager.remove_vm(vm_id)`` removes the VM.
    """

    def __init__(self, manager: "VMManager", vm_id: str) -> None:  # noqa: D107
        self._manager = manager
        self.vm_id = vm_id
        self._id = _convert.text_arg(vm_id, "vm_id")
        self.name = vm_id
        self.lua_executable = manager.lua_executable
        self.debug_mode = manager.debug_mode
        self._session_manager = None

    @property
    def manager(self) -> "VMManager":
        """The manager that owns this VM."""
        return self._manager

    @property
    def closed(self) -> bool:
        return self._manager.closed

    def close(self) -> None:
        """Nothing to free: the manager owns the VM (``remove_vm`` removes it)."""

    def __repr__(self) -> str:
        return f"ManagedLuaVM(vm_id={self.vm_id!r})"

    @_sigint.stops(_stop_vm)
    def _run(self, code: Union[str, bytes], args: bytes, ms: int) -> Dict[str, Any]:
        return manager_execute(self._manager._h(), self._id, code, args, ms)

    def _run_async(self, code: bytes, args: bytes, ms: int) -> int:
        return backend.manager_execute_async(self._manager._h(), self._id, code, len(code),
                                             args, ms)

    @_sigint.stops(_stop_vm)
    def _run_file(self, path: bytes, ms: int) -> Any:
        return backend.manager_execute_file(self._manager._h(), self._id, path, ms)

    @_sigint.stops(_stop_vm)
    def _run_temp_script(self, code: bytes, ms: int) -> Any:
        return backend.manager_execute_temp_script(self._manager._h(), self._id, code,
                                                   len(code), ms)

    def _net_run(self, mode: bytes, options: bytes, ms: int) -> Any:
        job = backend.manager_net_start(self._manager._h(), self._id, mode, options, ms)
        return start_job(job, convert=lambda r: r).result()

    def interrupt(self) -> bool:
        return bool(backend.manager_interrupt(self._manager._h(), self._id))

    def info(self) -> Dict[str, Any]:
        data = _convert.json_value(backend.manager_vm_info(self._manager._h(), self._id))
        data["name"] = self.name
        return data

    def _session(self) -> Optional["InteractiveSession"]:
        from .session import InteractiveSession

        session = InteractiveSession(self.vm_id, self, manager=self._manager)
        return session if session.is_running() else None

    def start_interactive_session(self) -> "InteractiveSession":
        """Opens (attaches) the manager's session of this VM."""
        if self._session() is not None:
            raise InteractiveSessionError("Session already running")
        return self._manager.attach_to_vm(self.vm_id)

    def stop_interactive_session(self) -> None:
        if not self._manager.closed:
            self._manager.terminate_vm_session(self.vm_id)


class NetworkedLuaVM(LuaProcess):
    """The original's networked VM: LuaSocket server, client and P2P modes.

    It is a ``process`` VM: a real ``lua`` interpreter (``lua_executable``) running as a
    persistent child, which can load LuaSocket. As in the original, a missing interpreter
    raises :class:`~bioxen_vm.exceptions.LuaNotFoundError` at construction and a missing
    LuaSocket :class:`~bioxen_vm.exceptions.LuaSocketNotFoundError` on the first network
    call. It runs plain code too (``execute_string`` and friends).

    The modes block until they end and return the result dict; every value is passed to
    the script as data (``bioxen_vm_net_run``), never pasted into its source. Ports must be
    1024-65535 (``ValueError("Port must be between 1024 and 65535")``), hosts non-empty.
    Unlike the original, a server binds 127.0.0.1 unless ``bind="*"`` is given.
    """

    def __init__(self, name: str = "NetworkedLuaVM", lua_executable: str = "lua",
                 debug_mode: bool = False, **options: Any) -> None:
        options.setdefault("vm_type", "process")
        super().__init__(name, lua_executable, debug_mode, **options)

    def _net(self, mode: str, options: Dict[str, Any], timeout: Optional[float]
             ) -> Dict[str, Any]:
        ms = timeout_ms(timeout)
        try:
            r = self._net_run(mode.encode("ascii"), options_arg(options), ms)
        except VMTimeoutError as exc:
            if timeout is not None:
                retitle_timeout(exc, timeout)
            raise
        return result_dict(r)

    def start_server(self, port: int, timeout: Optional[float] = None, *,
                     bind: Optional[str] = None, accept_timeout: Optional[float] = None,
                     receive_timeout: Optional[float] = None) -> Dict[str, Any]:
        """Accepts one client on ``port``, greets it, reads one line; the result dict.

        Prints the original's ``Lua Server: …`` lines; ``values`` is
        ``[{"received": line, "client": ip}]``.
        """
        _int(port, "port")
        return self._net("server", {"port": port, "bind": bind,
                                    "accept_timeout": accept_timeout,
                                    "receive_timeout": receive_timeout}, timeout)

    def start_client(self, host: str, port: int, message: str = "Hello from Lua Client!",
                     timeout: Optional[float] = None, *,
                     connect_timeout: Optional[float] = None) -> Dict[str, Any]:
        """Connects to ``host:port``, reads the greeting, sends ``message``."""
        _int(port, "port")
        _str(host, "host")
        return self._net("client", {"host": host, "port": port, "message": message,
                                    "connect_timeout": connect_timeout}, timeout)

    def start_p2p(self, local_port: int, peer_host: Optional[str] = None,
                  peer_port: Optional[int] = None, run_duration: float = 30,
                  send_interval: float = 5, timeout: Optional[float] = None, *,
                  bind: Optional[str] = None) -> Dict[str, Any]:
        """Listens on ``local_port`` and exchanges heartbeats with a peer for
        ``run_duration`` seconds (wall clock); ``values`` is ``[{"sent", "received"}]``."""
        _int(local_port, "local_port")
        if peer_port is not None:
            _int(peer_port, "peer_port")
        if peer_host is not None:
            _str(peer_host, "peer_host")
        return self._net("p2p", {"local_port": local_port, "peer_host": peer_host,
                                 "peer_port": peer_port, "run_duration": run_duration,
                                 "send_interval": send_interval, "bind": bind}, timeout)


class ManagedNetworkedLuaVM(ManagedLuaVM, NetworkedLuaVM):
    """A manager's networked VM (``create_vm(..., networked=True)``).

    The network modes run as jobs of the manager (``bioxen_vm_manager_net_start``) and
    these methods wait for them; ``VMManager.start_server_vm`` and friends return Futures.
    """

    def __repr__(self) -> str:
        return f"ManagedNetworkedLuaVM(vm_id={self.vm_id!r})"


def _int(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")


def _str(value: Any, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
