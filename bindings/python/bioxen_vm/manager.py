"""Managers: many VMs by string id, asynchronous jobs, sessions and clusters."""

from __future__ import annotations

import codecs
import concurrent.futures
import fnmatch
import logging
import math
import threading
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union,
                    cast)

from . import _convert, _sigint
from ._convert import (FOREVER_MS, IdCache, args_arg, code_arg, json_value, options_arg,
                       result_dict, text_arg, timeout_ms, with_config)
from ._hotpath import manager_execute, read_output, send_input
from ._handles import own
from ._log import sync_level
from ._native import backend, dispatch
from .exceptions import (DetachError, InteractiveSessionError, InvalidHandleError,
                         LuaVMError, SessionNotFoundError, VMNotFoundError, VMTimeoutError)
from .futures import JobFuture, cancel_on_ctrl_c, retitle_timeout, start_job, wait_jobs_native
from .session import InteractiveSession, OutputCallback, SessionManager
from .vm import ManagedLuaVM, ManagedNetworkedLuaVM, _int, _str

_log = logging.getLogger("bioxen_vm.python")
_ceil = math.ceil


class _CallbackState(threading.local):
    """Per thread: the (manager, vm id) whose output callback runs on it, if any."""

    current: Optional[tuple] = None  # a class default: no failed lookup per call


_tls = _CallbackState()

#: handler(vm_id, stream, data) receiving a session's raw output
RawOutputHandler = Callable[[bytes, int, bytes], None]


def _in_own_callback(manager: int, vm_id: bytes) -> bool:
    return _tls.current == (manager, vm_id)


def _text_handler(manager: int, callback: OutputCallback) -> RawOutputHandler:
    """Decodes a session's output (incrementally per stream) and calls ``callback(text)``."""
    decoders = {
        1: codecs.getincrementaldecoder("utf-8")("replace"),
        2: codecs.getincrementaldecoder("utf-8")("replace"),
    }

    def handler(vm_id: bytes, stream: int, data: bytes) -> None:
        decoder = decoders.get(stream) or decoders[1]
        text = decoder.decode(data)
        if not text:
            return
        _tls.current = (manager, vm_id)
        try:
            callback(text)
        except Exception:  # the original swallowed callback errors; keep them in the log
            _log.debug("output callback for %r raised", vm_id, exc_info=True)
        finally:
            _tls.current = None

    return handler


# Ctrl-C in a manager's blocking calls (see ``_sigint``): each stops what its call waits for.

def _stop_managed_vm(frame_locals: Any) -> None:
    backend.manager_interrupt(frame_locals["self"]._handle, frame_locals["idb"])


def _stop_session(frame_locals: Any) -> None:
    backend.manager_interrupt_session(frame_locals["self"]._handle, frame_locals["idb"])


def _stop_sessions(frame_locals: Any) -> None:
    """The attached sessions matching the pattern (those a broadcast sent its command to)."""
    manager, pattern = frame_locals["self"], frame_locals["pattern"]
    for vm_id, info in manager.list_interactive_sessions().items():
        if info.get("attached") and fnmatch.fnmatchcase(vm_id, pattern):
            manager.interrupt_session(vm_id)


def _stop_vm_jobs(frame_locals: Any) -> None:
    backend.manager_cancel_vm(frame_locals["self"]._handle, frame_locals["idb"])


def _vm_options(vm_type: str, networked: Optional[bool], persistent: bool,
                debug_mode: Optional[bool], lua_executable: Optional[str],
                extra: Mapping[str, Any]) -> bytes:
    options: Dict[str, Any] = dict(extra)
    if vm_type != "basic":
        options["vm_type"] = vm_type
    if networked:
        options["networked"] = True
    if persistent:
        options["persistent"] = True
    if debug_mode is not None:
        options["debug_mode"] = bool(debug_mode)
    if lua_executable is not None:
        options["lua_executable"] = lua_executable
    return options_arg(options)


class VMManager:
    """Many VMs by id, with async executions, interactive sessions and clusters.

    ``VMManager(max_workers=10, lua_executable="lua", debug_mode=False)`` as the original;
    keyword extras are defaults for its VMs (``sandbox``, ``memory_limit``, ``timeout``,
    ``max_output``, ``chunk_cache``). A ``with`` block closes it on exit (the original
    called ``shutdown_all`` there): running code is interrupted, jobs are cancelled and
    every VM is freed. It is also freed when garbage collected. A closed manager raises
    :class:`InvalidHandleError` ("VMManager has been closed") on use.
    """

    _handle: int = 0

    def __init__(self, max_workers: int = 10, lua_executable: str = "lua",
                 debug_mode: bool = False, **vm_defaults: Any) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be int, not {type(max_workers).__name__}")
        if not isinstance(lua_executable, str):
            raise TypeError(
                f"lua_executable must be str, not {type(lua_executable).__name__}")
        self.max_workers = max_workers
        self.lua_executable = lua_executable
        self.debug_mode = bool(debug_mode)
        self._lock = threading.Lock()
        self._tokens: Dict[bytes, int] = {}  # vm id -> output callback token
        self._id = IdCache()
        self._ids = self._id._cache  # str id -> bytes, read directly on hot paths
        sync_level()
        _sigint.arm()
        options = options_arg({"max_workers": max_workers, "lua_executable": lua_executable,
                               "debug_mode": self.debug_mode, **vm_defaults})
        handle = backend.manager_new(options)
        self._handle = handle
        self._free = own(self, backend.manager_free, handle)
        self.session_manager = SessionManager(debug_mode, manager=self)

    # --- lifetime -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the manager is closed (its native handle freed)."""
        return not self._handle

    def close(self) -> None:
        """Frees the manager: interrupts running code, cancels jobs, frees every VM."""
        if self._handle:
            self._handle = 0
            self._free()
            with self._lock:
                tokens, self._tokens = self._tokens, {}
            for token in tokens.values():
                dispatch.output_handlers.pop(token, None)

    def __enter__(self) -> "VMManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _h(self) -> int:
        handle = self._handle
        if not handle:
            raise InvalidHandleError("VMManager has been closed")
        return handle

    @property
    def handle(self) -> int:
        """The native manager handle (for diagnostics)."""
        return self._h()

    def __repr__(self) -> str:
        if self.closed:
            return "VMManager(closed)"
        stats = self.get_stats()
        return (f"VMManager(vms={stats['total_vms']}, "
                f"interactive_sessions={stats['interactive_sessions']}, "
                f"max_workers={stats['max_workers']})")

    # --- VMs ------------------------------------------------------------------------------

    def create_vm(self, vm_id: str, vm_type: str = "basic", networked: bool = False,
                  persistent: bool = False, debug_mode: Optional[bool] = None,
                  lua_executable: Optional[str] = None, config: Optional[Mapping[str, Any]] = None,
                  **options: Any) -> ManagedLuaVM:
        """Creates the VM ``vm_id`` and returns it (a :class:`ManagedLuaVM`).

        A duplicate id raises :class:`~bioxen_vm.exceptions.VMAlreadyExistsError` (a
        ``ValueError``: "VM with ID 'x' already exists"); an unknown ``vm_type`` a
        ``ValueError`` ("Unknown VM type: …"). ``vm_type="process"`` runs a real
        ``lua`` interpreter (``lua_executable``) as a child; ``networked=True`` gives such a
        VM that must load LuaSocket (a :class:`ManagedNetworkedLuaVM`). ``config`` holds the
        kind's own options: for ``vm_type="ssh"`` the host (``host``, ``port``,
        ``username``, ``key_file``, ``known_hosts``, ...), for ``"xcpng"`` the pool, template
        and guest (see :mod:`bioxen_vm.xcpng`); keywords win over it. Extra keywords are VM
        options (``sandbox``, ``memory_limit``, ``timeout``, ``max_output``,
        ``chunk_cache``, ``env``).
        """
        idb = text_arg(vm_id, "vm_id")
        sync_level()
        if vm_type == "xcpng":
            self._create_xcpng(idb, config, False, persistent, debug_mode, lua_executable,
                               options)
            return ManagedLuaVM(self, idb.decode("utf-8"))
        backend.manager_create_vm(self._h(), idb, _vm_options(
            vm_type, networked, persistent, debug_mode, lua_executable,
            with_config(config, options, False)))
        cls = ManagedNetworkedLuaVM if networked else ManagedLuaVM
        return cls(self, idb.decode("utf-8"))

    def get_vm(self, vm_id: str) -> Optional[ManagedLuaVM]:
        """The VM ``vm_id`` (a networked one as :class:`ManagedNetworkedLuaVM`), or None."""
        info = self.get_vm_info(vm_id)
        if info is None:
            return None
        cls = ManagedNetworkedLuaVM if info.get("networked") else ManagedLuaVM
        return cls(self, text_arg(vm_id, "vm_id").decode("utf-8"))

    def list_vms(self) -> List[str]:
        """The VM ids, in creation order."""
        return json_value(backend.manager_list_vms(self._h()))

    @property
    def vms(self) -> Dict[str, ManagedLuaVM]:
        """``{vm_id: VM}`` (the original's attribute)."""
        return {vm_id: vm for vm_id in self.list_vms()
                if (vm := self.get_vm(vm_id)) is not None}

    def remove_vm(self, vm_id: str) -> bool:
        """Removes the VM (queued jobs cancelled, session ended); False if there was none."""
        idb = text_arg(vm_id, "vm_id")
        try:
            backend.manager_remove_vm(self._h(), idb)
        except VMNotFoundError:
            return False
        finally:
            self._forget_callback(idb)
        return True

    def list_persistent_vms(self) -> Dict[str, Dict[str, Any]]:
        """The persistent and interactive VMs with their registry facts."""
        return json_value(backend.manager_list_persistent_vms(self._h()))

    def get_vm_info(self, vm_id: str) -> Optional[Dict[str, Any]]:
        """The VM's facts (``vm_id``, ``vm_name``, ``vm_type``, ...), or None if unknown."""
        try:
            return json_value(backend.manager_vm_info(self._h(), text_arg(vm_id, "vm_id")))
        except VMNotFoundError:
            return None

    def get_stats(self) -> Dict[str, Any]:
        """The original's statistics (``total_vms``, ``interactive_sessions``, ...)."""
        return json_value(backend.manager_stats(self._h()))

    def interrupt_vm(self, vm_id: str) -> bool:
        """Stops the code running on the VM now; True if something ran."""
        return bool(backend.manager_interrupt(self._h(), text_arg(vm_id, "vm_id")))

    # --- executions -----------------------------------------------------------------------

    @_sigint.stops(_stop_managed_vm)
    def execute_vm_sync(self, vm_id: str, lua_code: Union[str, bytes],
                        timeout: Optional[float] = None,
                        args: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
        """Runs code on the VM and returns the result dict (as ``LuaProcess``)."""
        idb = self._id(vm_id)
        code = code_arg(lua_code)
        try:
            return manager_execute(self._h(), idb, code, args_arg(args), timeout_ms(timeout))
        except VMTimeoutError as exc:
            if timeout is not None:
                retitle_timeout(exc, timeout)
            raise

    def execute_vm_async(self, vm_id: str, lua_code: Union[str, bytes],
                         timeout: Optional[float] = None,
                         args: Optional[Sequence[Any]] = None) -> JobFuture:
        """Queues code on the manager's worker pool; a Future of the result dict.

        Jobs on one VM run in submission order. ``future.cancel()`` cancels the job (a
        running one is interrupted).
        """
        idb = text_arg(vm_id, "vm_id")
        code = code_arg(lua_code)
        job = backend.manager_execute_async(self._h(), idb, code, len(code), args_arg(args),
                                            timeout_ms(timeout))
        return start_job(job, timeout)

    @_sigint.stops(_stop_vm_jobs)
    def wait_for_vm(self, vm_id: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Waits for the VM's async jobs; the result of the latest one.

        No job: ``ValueError`` ("No running operation found for VM 'x'"); the wait running
        out: :class:`~bioxen_vm.exceptions.WaitTimeoutError` (a ``TimeoutError``, the job
        goes on); a cancelled job: :class:`~bioxen_vm.exceptions.JobCancelledError`.
        """
        idb = text_arg(vm_id, "vm_id")
        r = backend.manager_wait_for_vm(self._h(), idb, timeout_ms(timeout, none_ms=0))
        return result_dict(r)

    def cancel_vm(self, vm_id: str) -> bool:
        """Cancels the VM's unfinished jobs (a running one is interrupted); True if any."""
        return bool(backend.manager_cancel_vm(self._h(), text_arg(vm_id, "vm_id")))

    def get_vm_status(self, vm_id: str) -> Optional[str]:
        """``"running"``, ``"done"`` or ``"cancelled"`` for the latest job; None if none."""
        status = backend.manager_vm_status(self._h(), text_arg(vm_id, "vm_id"))
        return None if status == "idle" else status

    # --- interactive sessions -------------------------------------------------------------

    def _session_object(self, vm_id: str) -> InteractiveSession:
        return InteractiveSession(vm_id, ManagedLuaVM(self, vm_id), self.lua_executable,
                                  self.debug_mode, manager=self)

    def _check_reentry(self, idb: bytes) -> int:
        handle = self._handle
        if not handle:
            raise InvalidHandleError("VMManager has been closed")
        if _tls.current is not None and _in_own_callback(handle, idb):
            raise InteractiveSessionError(
                f"cannot use the session of VM '{idb.decode('utf-8', 'replace')}' from its "
                "own output callback")
        return handle

    def _forget_callback(self, idb: bytes) -> None:
        with self._lock:
            token = self._tokens.pop(idb, None)
        if token is not None:
            dispatch.output_handlers.pop(token, None)

    def _attach_raw(self, vm_id: str, handler: Optional[RawOutputHandler]) -> None:
        idb = text_arg(vm_id, "vm_id")
        handle = self._check_reentry(idb)
        token = None
        if handler is not None:
            token = dispatch.new_token()
            dispatch.output_handlers[token] = handler
        try:
            backend.manager_attach(handle, idb, token)
        except BaseException:
            if token is not None:
                dispatch.output_handlers.pop(token, None)
            raise
        with self._lock:
            old = self._tokens.pop(idb, None)
            if token is not None:
                self._tokens[idb] = token
        if old is not None:
            dispatch.output_handlers.pop(old, None)

    def attach_to_vm(self, vm_id: str, output_callback: Optional[OutputCallback] = None
                     ) -> InteractiveSession:
        """Attaches the VM's session (creating it if needed) and returns it.

        ``output_callback(text)`` then receives the session's output as it is produced, on
        the thread that evaluates the input (a worker, or a thread reading output); it must
        not call functions of the same session. An unknown VM raises
        ``SessionNotFoundError("VM 'x' not found")``, an attached session ``AttachError``.
        """
        handler = None
        if output_callback is not None:
            if not callable(output_callback):
                raise TypeError("output_callback must be callable")
            handler = _text_handler(self._h(), output_callback)
        self._attach_raw(vm_id, handler)
        return self._session_object(text_arg(vm_id, "vm_id").decode("utf-8"))

    def _detach(self, vm_id: str, quiet: bool) -> None:
        idb = text_arg(vm_id, "vm_id")
        handle = self._check_reentry(idb)
        try:
            backend.manager_detach(handle, idb)
        except SessionNotFoundError:
            if not quiet:
                raise
        finally:
            self._forget_callback(idb)

    def detach_from_vm(self, vm_id: str) -> None:
        """Detaches the VM's session; silent if it has none (as the original).

        Detaching a session that is not attached raises
        :class:`~bioxen_vm.exceptions.DetachError`.
        """
        self._detach(vm_id, quiet=True)

    def _is_attached(self, vm_id: str) -> bool:
        return bool(backend.manager_is_attached(self._h(), text_arg(vm_id, "vm_id")))

    def _session_exists(self, vm_id: str) -> bool:
        try:
            self._is_attached(vm_id)
        except SessionNotFoundError:
            return False
        return True

    def _open_session(self, vm_id: str) -> None:
        """Creates the VM's session, not attached (attach, then detach)."""
        self._attach_raw(vm_id, None)
        try:
            self._detach(vm_id, quiet=False)
        except DetachError:  # pragma: no cover - detached by another thread meanwhile
            pass

    def send_input(self, vm_id: str, input_str: Union[str, bytes]) -> None:
        """Queues input for the VM's session (a newline is added when missing).

        Returns at once; the output comes through :meth:`read_output` or the callback.
        No session: ``SessionNotFoundError("No interactive session for VM 'x'")``.
        """
        idb = self._ids.get(vm_id) if type(vm_id) is str else None  # hot path: inlined
        if idb is None:
            idb = self._id(vm_id)
        data = input_str if type(input_str) is str else code_arg(input_str, "input_str")
        handle = self._handle
        if not handle or _tls.current is not None:
            handle = self._check_reentry(idb)
        send_input(handle, idb, data)

    @_sigint.stops(_stop_session)
    def read_output(self, vm_id: str, timeout: Optional[float] = 0.1) -> Optional[str]:
        """The session's buffered output (stdout and stderr in order), or None if none.

        With a ``timeout`` (seconds) it first waits, up to that long, until all input sent
        so far is evaluated; 0 does not wait; None waits without limit. The waiting thread
        evaluates queued input itself when no worker is at it, and a timeout never interrupts
        the session: a line it is evaluating when the timeout passes runs to its end first.
        """
        idb = self._ids.get(vm_id) if type(vm_id) is str else None  # hot path: inlined
        if idb is None:
            idb = self._id(vm_id)
        handle = self._handle
        if not handle or _tls.current is not None:
            handle = self._check_reentry(idb)
        if type(timeout) is float and 0.0 < timeout < 1e9:
            ms = _ceil(timeout * 1000)
        else:
            ms = timeout_ms(timeout, none_ms=FOREVER_MS)
        return read_output(handle, idb, ms, 0)

    @_sigint.stops(_stop_session)
    def _read_output_raw(self, vm_id: str, timeout: Optional[float], flags: int
                         ) -> Optional[bytes]:
        idb = text_arg(vm_id, "vm_id")
        return backend.manager_read_output(self._check_reentry(idb), idb,
                                           timeout_ms(timeout, none_ms=FOREVER_MS), flags)

    @_sigint.stops(_stop_session)
    def execute_interactive_command(self, vm_id: str, command: Union[str, bytes],
                                    timeout: Optional[float] = 5.0) -> str:
        """Sends ``command``, waits up to ``timeout`` to be idle, returns what it printed."""
        idb = self._id(vm_id)
        data = code_arg(command, "command")
        out = backend.manager_execute_interactive_command(
            self._check_reentry(idb), idb, data, len(data),
            timeout_ms(timeout, none_ms=FOREVER_MS))
        return _convert.decode(out)

    def interrupt_session(self, vm_id: str) -> bool:
        """Stops the session's running evaluation (as Ctrl-C); True if one was running.

        The session and the VM's state stay; queued input and an incomplete chunk are
        discarded.
        """
        idb = text_arg(vm_id, "vm_id")
        return bool(backend.manager_interrupt_session(self._h(), idb))

    def list_interactive_sessions(self) -> Dict[str, Dict[str, Any]]:
        """``{vm_id: {attached, running, idle, last_activity, ...}}``."""
        return json_value(backend.manager_list_sessions(self._h()))

    def list_sessions(self) -> Dict[str, Dict[str, Any]]:
        """Same as :meth:`list_interactive_sessions` (the spec's name)."""
        return self.list_interactive_sessions()

    def terminate_vm_session(self, vm_id: str) -> None:
        """Ends the VM's session (the VM stays); silent if it has none."""
        idb = text_arg(vm_id, "vm_id")
        handle = self._check_reentry(idb)
        try:
            backend.manager_terminate_session(handle, idb)
        except SessionNotFoundError:
            pass
        finally:
            self._forget_callback(idb)

    def create_interactive_vm(self, vm_id: str, vm_type: str = "basic",
                              config: Optional[Mapping[str, Any]] = None,
                              networked: bool = False, auto_attach: bool = True,
                              **options: Any) -> InteractiveSession:
        """Creates a VM with a session (attached unless ``auto_attach`` is False).

        ``config`` as for :meth:`create_vm`: ``vm_type="ssh"`` takes the host there;
        ``vm_type="xcpng"`` deploys on the pool ``config`` names (see
        :mod:`bioxen_vm.xcpng`; ``progress=`` a callable receives each deploy step).
        """
        idb = text_arg(vm_id, "vm_id")
        sync_level()
        if vm_type == "xcpng":
            self._create_xcpng(idb, config, True, False, None, None, options)
            session = self._session_object(idb.decode("utf-8"))
            if auto_attach:
                self.attach_to_vm(idb.decode("utf-8"))
            return session
        backend.manager_create_interactive_vm(
            self._h(), idb, _vm_options(vm_type, networked, False, None, None,
                                        with_config(config, options, False)),
            bool(auto_attach))
        return self._session_object(idb.decode("utf-8"))

    def _create_xcpng(self, idb: bytes, config: Optional[Mapping[str, Any]], interactive: bool,
                      persistent: bool, debug_mode: Optional[bool],
                      lua_executable: Optional[str], options: Dict[str, Any]) -> None:
        """Deploys an xcpng VM: ``config`` (the pool, template and guest keys) plus the VM
        options; ``options["progress"]``, when given, receives each deploy event."""
        from .xcpng import deploy_in

        if config is None:
            raise ValueError("XCP-ng VMs require a config")
        progress = options.pop("progress", None)
        import json

        merged = dict(config)
        raw = _vm_options("xcpng", None, persistent, debug_mode, lua_executable, options)
        merged.update(json.loads(raw) if raw else {})
        deploy_in(self, idb.decode("utf-8"), merged, interactive, progress)

    def clone_vm_session(self, source_vm_id: str, target_vm_id: str) -> InteractiveSession:
        """A new interactive VM with the options of ``source_vm_id`` (fresh state), attached.

        Unknown source: ``SessionNotFoundError("Source VM 'x' not found")``.
        """
        dst = text_arg(target_vm_id, "target_vm_id")
        backend.manager_clone_session(self._h(), text_arg(source_vm_id, "source_vm_id"), dst)
        return self._session_object(dst.decode("utf-8"))

    def bulk_create_interactive_cluster(self, cluster_id: str, vm_count: int,
                                        networked: Optional[bool] = None,
                                        **options: Any) -> Dict[str, InteractiveSession]:
        """Creates ``vm_count`` interactive VMs ``<cluster_id>_000``, ... (not attached).

        ``networked``: the original defaulted to True, which made no difference to plain
        execution there. Here a networked VM is a child ``lua`` process that must load
        LuaSocket, so by default (None) the VMs are basic; pass True for networked VMs.
        """
        ids = json_value(backend.manager_create_interactive_cluster(
            self._h(), text_arg(cluster_id, "cluster_id"), _count(vm_count),
            _vm_options("basic", networked, False, None, None, options)))
        return {vm_id: self._session_object(vm_id) for vm_id in ids}

    @_sigint.stops(_stop_sessions)
    def broadcast_to_interactive_sessions(self, pattern: str, command: Union[str, bytes],
                                          timeout: Optional[float] = 5.0) -> Dict[str, str]:
        """Runs ``command`` in every attached session matching ``pattern`` (fnmatch).

        Returns ``{vm_id: output}``. No match: ``ValueError`` ("No attached sessions found
        matching pattern: …").
        """
        data = code_arg(command, "command")
        return json_value(backend.manager_broadcast_to_sessions(
            self._h(), text_arg(pattern, "pattern"), data, len(data),
            timeout_ms(timeout, none_ms=FOREVER_MS)))

    # --- clusters -------------------------------------------------------------------------

    def create_vm_cluster(self, cluster_id: str, vm_count: int,
                          networked: Optional[bool] = None, **options: Any) -> List[str]:
        """Creates ``vm_count`` VMs ``<cluster_id>_000``, ...; returns their ids.

        All or none. ``networked`` as in :meth:`bulk_create_interactive_cluster`.
        """
        return json_value(backend.manager_create_cluster(
            self._h(), text_arg(cluster_id, "cluster_id"), _count(vm_count),
            _vm_options("basic", networked, False, None, None, options)))

    def broadcast_to_cluster(self, pattern: str, lua_code: Union[str, bytes],
                             timeout: Optional[float] = None,
                             args: Optional[Sequence[Any]] = None) -> Dict[str, JobFuture]:
        """Queues code on every VM matching ``pattern`` (fnmatch); ``{vm_id: Future}``.

        No match: ``ValueError`` ("No VMs found matching pattern: …").
        """
        code = code_arg(lua_code)
        jobs = json_value(backend.manager_broadcast(
            self._h(), text_arg(pattern, "pattern"), code, len(code), args_arg(args),
            timeout_ms(timeout)))
        return self._wrap_jobs(jobs, timeout)

    @staticmethod
    def _wrap_jobs(jobs: Dict[str, int], timeout: Optional[float]) -> Dict[str, JobFuture]:
        """``{vm_id: job handle}`` as ``{vm_id: Future}`` (in id order)."""
        futures: Dict[str, JobFuture] = {}
        pending = dict(sorted(jobs.items()))
        try:
            for vm_id, job in list(pending.items()):
                futures[vm_id] = start_job(job, timeout)
                del pending[vm_id]
        finally:
            for job in pending.values():  # only after a failure: free what was not wrapped
                backend.job_free(job)
        return futures

    def wait_for_cluster(self, futures: Mapping[str, "concurrent.futures.Future[Any]"],
                         timeout: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        """``{vm_id: result}`` once every future is done (or ``timeout`` seconds in all).

        A failed, cancelled or unfinished job gives the original's error entry:
        ``{success: False, return_code: -1, stdout: "", stderr: message, error: message}``.
        Futures of this library are waited for natively (``bioxen_vm_wait_for_cluster``);
        other futures are waited for in Python.
        """
        if not isinstance(futures, Mapping):
            raise TypeError("futures must be a mapping {vm_id: future}")
        ms = timeout_ms(timeout)
        if all(isinstance(f, JobFuture) for f in futures.values()):
            native = {str(k): cast(JobFuture, v) for k, v in futures.items()}
            raw = wait_jobs_native(native, ms)
            return {vm_id: _convert.cluster_result(entry) for vm_id, entry in raw.items()}
        try:
            concurrent.futures.wait(list(futures.values()), timeout=timeout)
        except KeyboardInterrupt:
            for future in futures.values():
                if isinstance(future, JobFuture):
                    cancel_on_ctrl_c(future)
            raise
        results: Dict[str, Dict[str, Any]] = {}
        for vm_id, future in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                results[vm_id] = future.result()
                continue
            if future.cancelled():
                message = "cancelled"
            elif not future.done():
                message = "still running"
            else:
                message = str(future.exception())
            results[vm_id] = {"success": False, "return_code": -1, "stdout": "",
                              "stderr": message, "error": message, "values": [],
                              "duration": 0.0}
        return results

    def get_cluster_status(self, pattern: str) -> Dict[str, str]:
        """``{vm_id: status}`` for the VMs matching ``pattern`` (``"idle"`` if no job)."""
        return json_value(backend.manager_cluster_status(self._h(),
                                                         text_arg(pattern, "pattern")))

    def cleanup_cluster(self, pattern: str) -> int:
        """Removes every VM matching ``pattern``; how many."""
        removed = backend.manager_cleanup_cluster(self._h(), text_arg(pattern, "pattern"))
        self._prune_callbacks()
        return int(removed)

    def shutdown_all(self) -> int:
        """Interrupts and removes every VM without waiting; the manager stays usable.

        Returns how many VMs were removed.
        """
        removed = backend.manager_shutdown_all(self._h())
        self._prune_callbacks()
        return int(removed)

    def _prune_callbacks(self) -> None:
        with self._lock:
            ids = list(self._tokens)
        for idb in ids:
            try:
                attached = self._is_attached(idb.decode("utf-8"))
            except LuaVMError:
                attached = False
            if not attached:
                self._forget_callback(idb)

    # --- networking ----------------------------------------------------------------------

    def _net_start(self, vm_id: str, mode: str, options: Dict[str, Any],
                   timeout: Optional[float]) -> JobFuture:
        job = backend.manager_net_start(self._h(), text_arg(vm_id, "vm_id"),
                                        mode.encode("ascii"), options_arg(options),
                                             timeout_ms(timeout))
        return start_job(job, timeout)

    def start_server_vm(self, vm_id: str, port: int, timeout: Optional[float] = None, *,
                        bind: Optional[str] = None, accept_timeout: Optional[float] = None,
                        receive_timeout: Optional[float] = None) -> JobFuture:
        """The networked VM's server mode as a job; a Future of the result dict.

        An unknown or non-networked id raises
        :class:`~bioxen_vm.exceptions.NetworkingError` ("Networked VM 'x' not found").
        """
        _int(port, "port")
        return self._net_start(vm_id, "server", {
            "port": port, "bind": bind, "accept_timeout": accept_timeout,
            "receive_timeout": receive_timeout}, timeout)

    def start_client_vm(self, vm_id: str, host: str, port: int,
                        message: str = "Hello from client!", timeout: Optional[float] = None,
                        *, connect_timeout: Optional[float] = None) -> JobFuture:
        """The networked VM's client mode as a job; a Future of the result dict."""
        _int(port, "port")
        _str(host, "host")
        return self._net_start(vm_id, "client", {
            "host": host, "port": port, "message": message,
            "connect_timeout": connect_timeout}, timeout)

    def start_p2p_vm(self, vm_id: str, local_port: int, peer_host: Optional[str] = None,
                     peer_port: Optional[int] = None, run_duration: float = 30,
                     timeout: Optional[float] = None, *, send_interval: float = 5,
                     bind: Optional[str] = None) -> JobFuture:
        """The networked VM's P2P mode as a job; a Future of the result dict."""
        _int(local_port, "local_port")
        if peer_port is not None:
            _int(peer_port, "peer_port")
        _str(peer_host, "peer_host")
        return self._net_start(vm_id, "p2p", {
            "local_port": local_port, "peer_host": peer_host, "peer_port": peer_port,
            "run_duration": run_duration, "send_interval": send_interval, "bind": bind},
            timeout)

    def setup_p2p_cluster(self, cluster_id: str, vm_count: int, base_port: int = 8080,
                          run_duration: float = 60, *, send_interval: float = 0,
                          **vm_options: Any) -> List[JobFuture]:
        """The original's P2P ring: ``vm_count`` (at least 2) networked VMs
        ``<cluster_id>_000``, ...; VM i listens on ``base_port + i`` (127.0.0.1) and
        connects to VM i+1. Returns the Futures of their P2P runs, in VM order.
        ``send_interval`` 0 means the original's 5 seconds.
        """
        _int(base_port, "base_port")
        for value, what in ((run_duration, "run_duration"), (send_interval, "send_interval")):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{what} must be a number, not {type(value).__name__}")
        jobs = json_value(backend.manager_setup_p2p_cluster(
            self._h(), text_arg(cluster_id, "cluster_id"), _count(vm_count), base_port,
            float(run_duration), float(send_interval), options_arg(vm_options)))
        return list(self._wrap_jobs(jobs, None).values())

def _count(vm_count: Any) -> int:
    if isinstance(vm_count, bool) or not isinstance(vm_count, int):
        raise TypeError(f"vm_count must be int, not {type(vm_count).__name__}")
    if vm_count < 0:
        raise ValueError("vm_count must not be negative")
    return vm_count


class VMCluster:
    """A group of a manager's VMs (the original's convenience class)."""

    def __init__(self, manager: VMManager, cluster_id: str, vm_ids: Sequence[str]) -> None:
        self.manager = manager
        self.cluster_id = cluster_id
        self.vm_ids = list(vm_ids)

    def broadcast(self, lua_code: Union[str, bytes], timeout: Optional[float] = None,
                  args: Optional[Sequence[Any]] = None) -> Dict[str, JobFuture]:
        """Queues code on every VM of the cluster; ``{vm_id: Future}``."""
        return {vm_id: self.manager.execute_vm_async(vm_id, lua_code, timeout, args)
                for vm_id in self.vm_ids}

    def wait_all(self, futures: Mapping[str, "concurrent.futures.Future[Any]"],
                 timeout: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        """``manager.wait_for_cluster(futures, timeout)``."""
        return self.manager.wait_for_cluster(futures, timeout)

    def get_status(self) -> Dict[str, str]:
        """``{vm_id: status}``, ``"idle"`` for a VM without jobs."""
        return {vm_id: self.manager.get_vm_status(vm_id) or "idle" for vm_id in self.vm_ids}

    def cleanup(self) -> int:
        """Removes the cluster's VMs; how many were removed."""
        return sum(1 for vm_id in self.vm_ids if self.manager.remove_vm(vm_id))

    def __len__(self) -> int:
        return len(self.vm_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.vm_ids)

    def __repr__(self) -> str:
        return f"VMCluster(id={self.cluster_id!r}, vms={len(self.vm_ids)})"

