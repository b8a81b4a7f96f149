"""The ctypes backend: ``argtypes``/``restype`` for every exported function."""

from __future__ import annotations

import atexit
import ctypes
import struct
from ctypes import POINTER, byref, c_bool, c_char_p, c_double, c_int32, c_int64, c_size_t
from ctypes import c_uint32, c_uint64, c_void_p, string_at
from typing import Any, Callable, Dict, Optional

from ._backend import Dispatch, guarded, missing_functions
from ._errors import error_from_status
from .exceptions import LuaVMError
from ._signatures import SIGNATURES, short_name


class Bytes(ctypes.Structure):
    """``bioxen_vm_bytes``."""

    _fields_ = [("data", c_void_p), ("len", c_size_t)]


class Result(ctypes.Structure):
    """``bioxen_vm_result``, its ``bioxen_vm_bytes`` members laid out flat.

    The byte pointers are read as ``c_char_p`` (ctypes then copies up to the NUL the
    library puts after every value, without a foreign call); the length tells when a value
    held a NUL of its own, and only then is it copied with ``string_at``.
    """

    _fields_ = [
        ("success", c_bool),
        ("return_code", c_int32),
        ("stdout_data", c_char_p),
        ("stdout_len", c_size_t),
        ("stderr_data", c_char_p),
        ("stderr_len", c_size_t),
        ("values_data", c_char_p),
        ("values_len", c_size_t),
        ("error_data", c_char_p),
        ("error_len", c_size_t),
        ("duration_ns", c_uint64),
        ("output_dropped", c_uint64),
    ]


def _field_bytes(r: Result, name: str, length: int) -> bytes:
    """A result member's bytes, also when they contain NUL."""
    if not length:
        return b""
    data = getattr(r, name + "_data")
    if len(data) == length:
        return data
    address = c_void_p.from_buffer(r, getattr(Result, name + "_data").offset).value or 0
    return string_at(address, length)


#: ``Result``'s memory in C layout (pointers read as ints); checked against ``Result``.
_FIELDS = struct.Struct("@?iPNPNPNPNQQ")


if _FIELDS.size != ctypes.sizeof(Result):  # pragma: no cover - a platform this does not know
    raise ImportError("bioxen_vm: the result layout is not the one this binding reads")


def _read(r: Result) -> Any:
    """A filled result as the tuple backends return (see ``ResultTuple``): every number
    in one read of the struct's memory, then only the non-empty byte strings."""
    (success, return_code, _, out_n, _, err_n, _, values_n, _, msg_n, duration_ns,
     dropped) = _FIELDS.unpack_from(r)
    out = err = values = msg = b""
    if out_n:
        out = r.stdout_data
        if len(out) != out_n:
            out = _field_bytes(r, "stdout", out_n)
    if err_n:
        err = _field_bytes(r, "stderr", err_n)
    if values_n:
        values = r.values_data
        if len(values) != values_n:
            values = _field_bytes(r, "values", values_n)
    if msg_n:
        msg = _field_bytes(r, "error", msg_n)
    return (success, return_code, out, err, values, msg, duration_ns, dropped)


LOG_FN = ctypes.CFUNCTYPE(None, c_int32, c_char_p, c_char_p, c_void_p)
OUTPUT_FN = ctypes.CFUNCTYPE(None, c_char_p, c_int32, c_void_p, c_size_t, c_void_p)
JOB_FN = ctypes.CFUNCTYPE(None, c_uint64, c_int32, c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(c_int32, c_char_p, c_void_p)

#: abstract type of _signatures -> ctypes type
CTYPES: Dict[str, Any] = {
    "i32": c_int32,
    "u32": c_uint32,
    "i64": c_int64,
    "u64": c_uint64,
    "f64": c_double,
    "size": c_size_t,
    "bool": c_bool,
    "str": c_char_p,
    "buf": c_char_p,
    "cstr": c_char_p,
    "void": None,
    "void*": c_void_p,
    "bytes*": POINTER(Bytes),
    "result*": POINTER(Result),
    "rbuf*": c_void_p,
    "rbuf**": POINTER(c_void_p),
    "view**": POINTER(POINTER(Result)),
    "u64*": POINTER(c_uint64),
    "bool*": POINTER(c_bool),
    "size*": POINTER(c_size_t),
    "cstr*": POINTER(c_char_p),
    "log_fn": LOG_FN,
    "output_fn": OUTPUT_FN,
    "job_fn": JOB_FN,
    "progress_fn": PROGRESS_FN,
}


class CtypesBackend:
    """Calls the library through ctypes (a ``CDLL``: the GIL is released during calls)."""

    name = "ctypes"

    def __init__(self, path: str, dispatch: Dispatch) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        self._lib = lib
        self.functions: Dict[str, Any] = {}
        missing_functions(lambda name: hasattr(lib, name), path)
        for c_name, (_kind, restype, argtypes) in SIGNATURES.items():
            fn = getattr(lib, c_name)
            fn.restype = CTYPES[restype]
            fn.argtypes = [CTYPES[a] for a in argtypes]
            self.functions[c_name] = fn
        self._last_error = self.functions["bioxen_vm_last_error_message"]
        self._bytes_free = self.functions["bioxen_vm_bytes_free"]
        self._result_free = self.functions["bioxen_vm_result_free"]
        self._into_slots: list = []
        atexit.register(self._free_into_slots)
        for c_name, fn in self.functions.items():
            kind = SIGNATURES[c_name][0]
            if kind not in ("raw", "callback", "json"):
                setattr(self, short_name(c_name), self._wrap(kind, fn))
        # The trampolines live as long as the backend (module-level in practice).
        self._log_cb = LOG_FN(guarded(lambda level, target, message, _ud: dispatch.on_log(
            level, target or b"", message or b"")))
        self._output_cb = OUTPUT_FN(guarded(lambda vm_id, stream, data, length, ud: (
            dispatch.on_output(ud or 0, vm_id or b"", stream,
                               string_at(data, length) if length else b""))))
        self._job_cb = JOB_FN(guarded(lambda job, status, ud: dispatch.on_job(
            ud or 0, job, status)))

        def progress(event: Any, ud: Any) -> int:
            try:
                return dispatch.on_progress(ud or 0, event or b"")
            except BaseException:  # pragma: no cover - on_progress catches its own
                return 1

        self._progress_cb = PROGRESS_FN(progress)

    # --- library ------------------------------------------------------------------------

    def version(self) -> str:
        return self.functions["bioxen_vm_version"]().decode("utf-8", "replace")

    def abi_version(self) -> int:
        return int(self.functions["bioxen_vm_abi_version"]())

    def status_name(self, status: int) -> str:
        return self.functions["bioxen_vm_status_name"](status).decode("utf-8", "replace")

    def last_error_message(self) -> Optional[str]:
        message = self._last_error()
        return None if message is None else message.decode("utf-8", "replace")

    def fail(self, status: int) -> None:
        raise error_from_status(status, self.last_error_message())

    def function_address(self, c_name: str) -> int:
        return ctypes.cast(self.functions[c_name], c_void_p).value or 0

    # --- calling conventions --------------------------------------------------------------

    def _new_into_slot(self) -> list:
        """``[result buffer, byref of the out-pointer to its result, the result (read
        after a call)]``."""
        buffer = c_void_p()
        status = self.functions["bioxen_vm_result_buffer_new"](byref(buffer))
        if status:
            self.fail(status)
        return [buffer, byref(POINTER(Result)()), None]

    def _free_into_slots(self) -> None:
        """At exit: frees the pooled result buffers (those in use stay, and are reclaimed
        with the process)."""
        free = self.functions["bioxen_vm_result_buffer_free"]
        while self._into_slots:
            free(self._into_slots.pop()[0])

    def _wrap(self, kind: str, fn: Any) -> Callable[..., Any]:
        fail = self.fail
        bytes_free = self._bytes_free
        result_free = self._result_free

        if kind == "status":
            def call(*args: Any) -> None:
                status = fn(*args)
                if status:
                    fail(status)
        elif kind == "bytes":
            def call(*args: Any) -> bytes:  # type: ignore[misc]
                out = Bytes()
                ref = byref(out)
                try:  # from the call on: a signal handler may raise right after it
                    status = fn(*args, ref)
                    if status:
                        fail(status)
                    return string_at(out.data, out.len)
                finally:
                    bytes_free(ref)
        elif kind == "result":
            # Result structs (and their byref) are reused through a pool shared by all
            # threads (list pop/append are atomic); each call takes one for itself.
            pool: list = []

            def call(*args: Any) -> Any:  # type: ignore[misc]
                try:
                    r, ref = pool.pop()
                except IndexError:
                    r = Result()
                    ref = byref(r)
                try:  # from the call on: a signal handler may raise right after it
                    status = fn(*args, ref)
                    if status:
                        fail(status)
                    return _read(r)
                finally:
                    result_free(ref)  # frees the buffers and empties the struct for reuse
                    pool.append((r, ref))
        elif kind == "into":
            # Result buffers come from one pool shared by all threads and both functions
            # of this kind; each call takes one for itself. A buffer's result always lives
            # at the same address, so the view of it is made once.
            slots = self._into_slots
            new_slot = self._new_into_slot

            def call(*args: Any) -> Any:  # type: ignore[misc]
                try:
                    slot = slots.pop()
                except IndexError:
                    slot = new_slot()
                try:  # from the call on: a signal handler may raise right after it
                    status = fn(*args, slot[0], slot[1])
                    if status:
                        fail(status)
                    view = slot[2]
                    if view is None:
                        view = slot[2] = slot[1]._obj.contents
                    return _read(view)
                finally:
                    slots.append(slot)
        elif kind in ("u64", "bool", "size", "cstr"):
            out_type: Any = {"u64": c_uint64, "bool": c_bool, "size": c_size_t,
                             "cstr": c_char_p}[kind]
            is_cstr = kind == "cstr"

            def call(*args: Any) -> Any:  # type: ignore[misc]
                out = out_type()
                status = fn(*args, byref(out))
                if status:
                    fail(status)
                value = out.value
                return value.decode("utf-8", "replace") if is_cstr else value
        elif kind == "read":
            def call(*args: Any) -> Optional[bytes]:  # type: ignore[misc]
                out = Bytes()
                has = c_bool()
                ref = byref(out)
                try:  # from the call on: a signal handler may raise right after it
                    status = fn(*args, ref, byref(has))
                    if status:
                        fail(status)
                    return string_at(out.data, out.len) if has.value else None
                finally:
                    bytes_free(ref)
        elif kind == "xapi":
            def call(*args: Any) -> bytes:  # type: ignore[misc]
                out, err = Bytes(), Bytes()
                ref, eref = byref(out), byref(err)
                status = fn(*args, ref, eref)
                try:
                    if status:
                        try:
                            fail(status)
                        except LuaVMError as e:
                            e.xapi_error = string_at(err.data, err.len) if err.len else b""
                            raise
                    return string_at(out.data, out.len)
                finally:
                    bytes_free(ref)
                    bytes_free(eref)
        else:  # pragma: no cover - the table only holds the kinds above
            raise AssertionError(kind)
        call.__name__ = fn.__name__
        return call

    # --- callbacks ----------------------------------------------------------------------

    def set_log_callback(self, enabled: bool, max_level: int) -> None:
        status = self.functions["bioxen_vm_set_log_callback"](
            self._log_cb if enabled else LOG_FN(), None, max_level)
        if status:
            self.fail(status)

    def manager_attach(self, manager: int, vm_id: bytes, token: Optional[int]) -> None:
        status = self.functions["bioxen_vm_manager_attach"](
            manager, vm_id, self._output_cb if token is not None else OUTPUT_FN(), token)
        if status:
            self.fail(status)

    def job_on_done(self, job: int, token: int) -> None:
        status = self.functions["bioxen_vm_job_on_done"](job, self._job_cb, token)
        if status:
            self.fail(status)

    def xcpng_new(self, options: bytes, token: int) -> int:
        out = c_uint64()
        status = self.functions["bioxen_vm_xcpng_new"](
            options, self._progress_cb, token, byref(out))
        if status:
            self.fail(status)
        return out.value

    def manager_create_xcpng_vm(self, manager: int, vm_id: bytes, options: bytes,
                                interactive: bool, token: int) -> None:
        status = self.functions["bioxen_vm_manager_create_xcpng_vm"](
            manager, vm_id, options, interactive, self._progress_cb, token)
        if status:
            self.fail(status)
