"""XCP-ng VMs and XAPI sessions.

* :class:`XcpngVM`: a VM deployed on an XCP-ng pool from a template (``vm_type="xcpng"``),
  created unstarted (no network traffic) and deployed by :meth:`XcpngVM.start` or its
  first use; once up it runs Lua over SSH like an ``ssh`` VM. Progress goes to a callable;
  :meth:`XcpngVM.interrupt` or :meth:`XcpngVM.close` from another thread cancels a deploy
  (everything it made is torn down). Closing a deployed VM shuts it down and destroys it
  with its disks, unless ``persistent``.
* :class:`XAPISession`: a logged-in XAPI session: ``call("VM.get_all_records")``, typed
  errors (:class:`XAPIError` carries ``code`` and ``params``), :meth:`XAPISession.sweep`.

The configuration keys are the C library's (``bioxen_vm_xcpng_new`` in the header; the
README's "XCP-ng VMs" section): the original's ``xcp_host``, ``xcp_username``,
``xcp_password``, ``template_name``, ``vm_username``, ``vm_password``, ``vm_key_file``,
``vm_config`` and the spec's ``xapi_url``, ``username``, ``password``, ``template``,
``vm_name``, with ``tls_fingerprint`` / ``ca_file`` / ``insecure`` and the rest.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from . import _convert
from ._native import backend, dispatch
from .exceptions import LuaVMError, VMManagerError

Progress = Callable[[Dict[str, Any]], Any]


class XAPIError(VMManagerError):
    """XAPI answered a call with an error: ``code`` (``"VM_BAD_POWER_STATE"``, ...) and
    ``params`` (a list of strings)."""

    def __init__(self, message: str, code: str, params: list) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


def _xapi_error(e: LuaVMError) -> LuaVMError:
    """``e`` with ``code`` and ``params`` from the library's error object (an XAPI fault
    becomes :class:`XAPIError`)."""
    raw = getattr(e, "xapi_error", b"")
    try:
        detail = json.loads(raw) if raw else {}
    except ValueError:
        detail = {}
    code, params = detail.get("code", ""), detail.get("params", [])
    if isinstance(e, VMManagerError) and code and code.isupper():
        err: LuaVMError = XAPIError(str(e), code, params)
        err.__cause__ = None
        return err
    e.code, e.params = code, params  # type: ignore[attr-defined]
    return e


class XAPISession:
    """A logged-in XAPI session (``bioxen_vm_xapi_open``): ``url``, ``username``,
    ``password`` and the TLS and limit options as keywords, or a ``config`` mapping.

    Logged out by :meth:`close` (or a ``with`` block, or garbage collection).
    """

    _handle = 0

    def __init__(self, url: Optional[str] = None, username: Optional[str] = None,
                 password: Optional[str] = None, *, config: Optional[Mapping[str, Any]] = None,
                 **options: Any) -> None:
        cfg: Dict[str, Any] = dict(config or {})
        for k, v in (("url", url), ("username", username), ("password", password)):
            if v is not None:
                cfg[k] = v
        cfg.update(options)
        self.url = cfg.get("url")
        self._handle = backend.xapi_open(json.dumps(cfg).encode())
        self._lock = threading.Lock()

    def _h(self) -> int:
        if not self._handle:
            raise LuaVMError("the XAPI session is closed")
        return self._handle

    def call(self, method: str, *params: Any) -> Any:
        """Calls ``method`` with ``params`` (the session is put first); its JSON result.
        An XAPI error raises :class:`XAPIError`."""
        try:
            out = backend.xapi_call(self._h(), method.encode(), json.dumps(list(params)).encode())
        except LuaVMError as e:
            raise _xapi_error(e) from None
        return json.loads(out) if out else None

    def info(self) -> Dict[str, Any]:
        """``url`` (the master's after a redirect), ``protocol``, ``open``, counters."""
        return _convert.json_value(backend.xapi_info(self._h()))

    def sweep(self, any_owner: bool = False) -> Dict[str, Any]:
        """Removes what this library tagged on the pool whose owner process is gone (all of
        it with ``any_owner``, persistent VMs excepted): ``{"vms", "vdis", "kept",
        "errors"}``."""
        return _convert.json_value(backend.xcpng_sweep(self._h(), bool(any_owner)))

    def close(self) -> None:
        """Logs out. Idempotent."""
        with self._lock:
            h, self._handle = self._handle, 0
        if h:
            backend.xapi_close(h)

    def __enter__(self) -> "XAPISession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def sweep(config: Mapping[str, Any], any_owner: bool = False) -> Dict[str, Any]:
    """Opens a session from ``config`` (:class:`XAPISession`'s keys), sweeps, closes."""
    with XAPISession(config=config) as s:
        return s.sweep(any_owner)


class _Deploy:
    """One deploy's progress handler: the user's callable and the cancel flag."""

    def __init__(self, progress: Optional[Progress]) -> None:
        self.progress = progress
        self.cancel = threading.Event()
        self.token = dispatch.new_token()
        self.error: Optional[BaseException] = None

    def __call__(self, event: bytes) -> int:
        if self.cancel.is_set():
            return 1
        if self.progress is not None:
            try:
                if self.progress(json.loads(event)) is False:
                    self.cancel.set()
            except BaseException as e:  # the caller's error cancels the deploy
                self.error = e
                self.cancel.set()
        return 1 if self.cancel.is_set() else 0

    def __enter__(self) -> "_Deploy":
        dispatch.progress_handlers[self.token] = self
        return self

    def __exit__(self, *exc: object) -> None:
        dispatch.progress_handlers.pop(self.token, None)


def deploy_in(manager: Any, vm_id: str, options: Mapping[str, Any], interactive: bool,
              progress: Optional[Progress] = None,
              on_start: Optional[Callable[[_Deploy], None]] = None) -> None:
    """Deploys the xcpng VM ``vm_id`` in ``manager`` (a :class:`~bioxen_vm.VMManager`),
    ``progress`` receiving each event (a dict); returning ``False`` or raising cancels."""
    with _Deploy(progress) as d:
        if on_start is not None:
            on_start(d)
        try:
            backend.manager_create_xcpng_vm(
                manager._h(), vm_id.encode(), json.dumps(dict(options)).encode(),
                bool(interactive), d.token)
        except LuaVMError:
            if d.error is not None:
                raise d.error from None
            raise


class XcpngVM:
    """``XcpngVM(vm_id, config, progress=None, **options)``: an XCP-ng VM, unstarted.

    ``config`` holds the xcpng keys; ``options`` are common VM options (``timeout``,
    ``persistent``, ``lua_executable``, ``debug_mode``, ...). Nothing is sent anywhere
    until :meth:`start` (or the first execution). The VM lives in a private manager, so
    :meth:`execute_string` and the interactive :meth:`send_input` / :meth:`read_output`
    share one Lua state on the guest.
    """

    def __init__(self, vm_id: str = "default", config: Optional[Mapping[str, Any]] = None,
                 progress: Optional[Progress] = None, **options: Any) -> None:
        if not isinstance(vm_id, str):
            raise TypeError(f"vm_id must be str, not {type(vm_id).__name__}")
        self.vm_id = vm_id
        self.name = vm_id
        self.config: Dict[str, Any] = dict(config or {})
        self.options = {k: v for k, v in options.items() if v is not None}
        self.progress = progress
        self._lock = threading.Lock()
        self._manager: Any = None
        self._deploying: Optional[_Deploy] = None

    # --- lifetime --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True while the VM is deployed."""
        return self._manager is not None

    @property
    def deploying(self) -> bool:
        return self._deploying is not None

    def start(self, progress: Optional[Progress] = None) -> "XcpngVM":
        """Deploys the VM (blocking; see the module docs); a no-op when it runs."""
        from .manager import VMManager

        with self._lock:
            if self._manager is not None:
                return self
            manager = VMManager(max_workers=2)
            opts = dict(self.config)
            opts.update(self.options)
            opts["vm_type"] = "xcpng"

            def started(d: _Deploy) -> None:
                self._deploying = d

            try:
                deploy_in(manager, self.vm_id, opts, True, progress or self.progress, started)
            except BaseException:
                manager.close()
                raise
            finally:
                self._deploying = None
            self._manager = manager
        return self

    def interrupt(self) -> bool:
        """Cancels a deploy in progress (it is torn down), else interrupts running code.
        Any thread. Whether anything was stopped."""
        d = self._deploying
        if d is not None:
            d.cancel.set()
            return True
        m = self._manager
        return bool(m is not None and m.interrupt_vm(self.vm_id))

    def stop(self) -> None:
        """Shuts the VM down and destroys it (unless ``persistent``); :meth:`start` deploys
        a new one. Cancels a deploy in progress."""
        d = self._deploying
        if d is not None:
            d.cancel.set()
        with self._lock:
            m, self._manager = self._manager, None
        if m is not None:
            m.close()

    def close(self) -> None:
        """The same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> "XcpngVM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"XcpngVM(vm_id={self.vm_id!r}, started={self.started})"

    # --- use -------------------------------------------------------------------------------

    def _m(self) -> Any:
        if self._manager is None:
            self.start()
        return self._manager

    def execute_string(self, lua_code: Union[str, bytes], timeout: Optional[float] = None,
                       args: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
        """Runs Lua on the guest (deploying first if needed), ``args`` as ``...``: the result
        dict."""
        return self._m().execute_vm_sync(self.vm_id, lua_code, timeout=timeout, args=args)

    def send_input(self, input_str: Union[str, bytes]) -> None:
        """A line for the interactive session on the guest."""
        self._m().send_input(self.vm_id, input_str)

    def read_output(self, timeout: Optional[float] = 0.1) -> Optional[str]:
        """The session's output, or None."""
        return self._m().read_output(self.vm_id, timeout)

    def info(self) -> Dict[str, Any]:
        """The VM's facts (``vm_uuid``, ``vm_ip``, ``pool_host``, ``deploy_timings``, ...);
        only ``vm_id`` and ``started`` before it is deployed."""
        m = self._manager
        data: Dict[str, Any] = {"vm_id": self.vm_id, "started": m is not None,
                                "vm_type": "xcpng"}
        if m is not None:
            data.update(m.get_vm_info(self.vm_id) or {})
        return data

    get_vm_info = info

    @property
    def vm_uuid(self) -> Optional[str]:
        return self.info().get("vm_uuid") if self.started else None

    @property
    def vm_ip(self) -> Optional[str]:
        return self.info().get("vm_ip") if self.started else None
