"""The cffi backend, in ABI mode: ``ffi.cdef`` from the bundled header, no compiler."""

from __future__ import annotations

import atexit
import struct
from typing import Any, Callable, Dict, Optional

import cffi

from ._backend import Dispatch, guarded, missing_functions
from ._errors import error_from_status
from .exceptions import LuaVMError
from ._header import preprocess
from ._signatures import SIGNATURES, short_name


#: bioxen_vm_result with its bioxen_vm_bytes members spelled out (same layout; checked).
_FLAT_RESULT = """
typedef struct {
  bool success;
  int32_t return_code;
  char *stdout_data; size_t stdout_len;
  char *stderr_data; size_t stderr_len;
  char *values_data; size_t values_len;
  char *error_data; size_t error_len;
  uint64_t duration_ns;
  uint64_t output_dropped;
} bioxen_vm_result_flat;
"""


#: The flat result's memory in C layout (pointers read as ints); checked at load.
_FLAT_FIELDS = struct.Struct("@?iPNPNPNPNQQ")


def _check_flat_layout(ffi: Any) -> None:
    pairs = [("success", "success"), ("return_code", "return_code"),
             ("stdout_text", "stdout_data"), ("stderr_text", "stderr_data"),
             ("values_json", "values_data"), ("error_message", "error_data"),
             ("duration_ns", "duration_ns"), ("output_dropped", "output_dropped")]
    same = ffi.sizeof("bioxen_vm_result") == ffi.sizeof("bioxen_vm_result_flat") == (
        _FLAT_FIELDS.size) and ffi.offsetof("bioxen_vm_result", "return_code") == 4 and all(
        ffi.offsetof("bioxen_vm_result", a) == ffi.offsetof("bioxen_vm_result_flat", b)
        for a, b in pairs)
    if not same:
        raise ImportError("bioxen_vm: bioxen_vm_result in the header does not have the "
                          "layout this binding reads; update bioxen_vm/_backend_cffi.py")


class CffiBackend:
    """Calls the library through cffi (``ffi.dlopen``; the GIL is released during calls)."""

    name = "cffi"

    def __init__(self, path: str, dispatch: Dispatch, header_text: str) -> None:
        self.path = path
        ffi = cffi.FFI()
        ffi.cdef(preprocess(header_text))
        ffi.cdef(_FLAT_RESULT)
        _check_flat_layout(ffi)
        lib = ffi.dlopen(path)
        self.ffi = ffi
        self._lib = lib
        def exported(name: str) -> bool:
            try:
                getattr(lib, name)
            except AttributeError:  # not in the header, or not exported by the library
                return False
            return True

        missing_functions(exported, path)
        self.functions: Dict[str, Any] = {name: getattr(lib, name) for name in SIGNATURES}
        self._last_error = self.functions["bioxen_vm_last_error_message"]
        self._bytes_free = self.functions["bioxen_vm_bytes_free"]
        self._result_free = self.functions["bioxen_vm_result_free"]
        self._into_slots: list = []
        atexit.register(self._free_into_slots)
        for c_name, fn in self.functions.items():
            kind, _restype, argtypes = SIGNATURES[c_name]
            if kind not in ("raw", "callback", "json"):
                # cffi wants ffi.NULL, not None, for a NULL `const char *`
                nullable = frozenset(i for i, t in enumerate(argtypes) if t == "str")
                setattr(self, short_name(c_name), self._wrap(kind, fn, nullable))

        def user_data(ud: Any) -> int:
            return int(ffi.cast("uintptr_t", ud))

        def ignore(*_: Any) -> None:  # onerror: never print, never unwind into C
            return None

        string, unpack = ffi.string, ffi.unpack
        self._log_cb = ffi.callback("bioxen_vm_log_fn", onerror=ignore)(guarded(
            lambda level, target, message, _ud: dispatch.on_log(
                level, string(target) if target else b"",
                string(message) if message else b"")))
        self._output_cb = ffi.callback("bioxen_vm_output_fn", onerror=ignore)(guarded(
            lambda vm_id, stream, data, length, ud: dispatch.on_output(
                user_data(ud), string(vm_id) if vm_id else b"", stream,
                unpack(data, length) if length else b"")))
        self._job_cb = ffi.callback("bioxen_vm_job_callback", onerror=ignore)(guarded(
            lambda job, status, ud: dispatch.on_job(user_data(ud), job, status)))

        def cancel(*_: Any) -> int:  # onerror of the progress callback: cancel the deploy
            return 1

        self._progress_cb = ffi.callback("bioxen_vm_progress_fn", onerror=cancel)(
            lambda event, ud: dispatch.on_progress(
                user_data(ud), string(event) if event else b""))

    # --- library ------------------------------------------------------------------------

    def version(self) -> str:
        return self.ffi.string(self.functions["bioxen_vm_version"]()).decode("utf-8", "replace")

    def abi_version(self) -> int:
        return int(self.functions["bioxen_vm_abi_version"]())

    def status_name(self, status: int) -> str:
        name = self.functions["bioxen_vm_status_name"](status)
        return self.ffi.string(name).decode("utf-8", "replace")

    def last_error_message(self) -> Optional[str]:
        message = self._last_error()
        if message == self.ffi.NULL:
            return None
        return self.ffi.string(message).decode("utf-8", "replace")

    def fail(self, status: int) -> None:
        raise error_from_status(status, self.last_error_message())

    def function_address(self, c_name: str) -> int:
        return int(self.ffi.cast("uintptr_t", self.functions[c_name]))

    # --- calling conventions --------------------------------------------------------------

    def _new_into_slot(self) -> tuple:
        """``[result buffer, out-pointer to its result, flat view of the result and a buffer
        over its memory (both made after the first call)]``."""
        holder = self.ffi.new("bioxen_vm_result_buffer **")
        status = self.functions["bioxen_vm_result_buffer_new"](holder)
        if status:
            self.fail(status)
        return (holder[0], self.ffi.new("bioxen_vm_result **"), None, None)

    def _free_into_slots(self) -> None:
        """At exit: frees the pooled result buffers (those in use stay, and are reclaimed
        with the process)."""
        free = self.functions["bioxen_vm_result_buffer_free"]
        while self._into_slots:
            free(self._into_slots.pop()[0])

    def _wrap(self, kind: str, c_fn: Any, nullable: "frozenset[int]") -> Callable[..., Any]:
        fail = self.fail
        null = self.ffi.NULL

        if nullable:
            def fn(*args: Any) -> Any:
                if None in args:
                    args = tuple(null if a is None and i in nullable else a
                                 for i, a in enumerate(args))
                return c_fn(*args)
        else:
            fn = c_fn
        new = self.ffi.new
        unpack = self.ffi.unpack
        string = self.ffi.string
        bytes_free = self._bytes_free
        result_free = self._result_free

        fields = _FLAT_FIELDS.unpack_from

        def read(flat: Any, memory: Any) -> Any:
            # All the numbers in one read of the struct's memory, then only the non-empty
            # byte strings through cffi.
            (success, return_code, _, out_n, _, err_n, _, values_n, _, msg_n, duration_ns,
             dropped) = fields(memory)
            return (success, return_code,
                    unpack(flat.stdout_data, out_n) if out_n else b"",
                    unpack(flat.stderr_data, err_n) if err_n else b"",
                    unpack(flat.values_data, values_n) if values_n else b"",
                    unpack(flat.error_data, msg_n) if msg_n else b"",
                    duration_ns, dropped)

        # NULL for None where the C type is a nullable `const char *`.
        position = next(iter(nullable)) if len(nullable) == 1 else -1

        def with_nulls(args: tuple) -> tuple:
            if position >= 0:
                return args[:position] + (null,) + args[position + 1:]
            return tuple(null if a is None and i in nullable else a
                         for i, a in enumerate(args))

        if kind == "status":
            def call(*args: Any) -> None:
                status = fn(*args)
                if status:
                    fail(status)
        elif kind == "bytes":
            def call(*args: Any) -> bytes:  # type: ignore[misc]
                out = new("bioxen_vm_bytes *")
                try:  # from the call on: a signal handler may raise right after it
                    status = fn(*args, out)
                    if status:
                        fail(status)
                    return unpack(out.data, out.len)
                finally:
                    bytes_free(out)
        elif kind == "result":
            # The result is read through a flat view of bioxen_vm_result (same layout, its
            # bioxen_vm_bytes members spelled out), which saves a cdata per member. Result
            # structs are reused through a pool shared by all threads (list pop/append are
            # atomic): each call takes one for itself, so a nested call on the same thread
            # (from a callback) never shares it.
            ffi = self.ffi
            pool: list = []

            def call(*args: Any) -> Any:  # type: ignore[misc]
                try:
                    flat, r = pool.pop()
                except IndexError:
                    flat = new("bioxen_vm_result_flat *")
                    r = ffi.cast("bioxen_vm_result *", flat)
                if args[position] is None if position >= 0 else None in args:
                    args = with_nulls(args)
                try:  # from the call on: a signal handler may raise right after it
                    status = c_fn(*args, r)
                    if status:
                        fail(status)
                    return read(flat, ffi.buffer(flat))
                finally:
                    result_free(r)  # frees the buffers and empties the struct for reuse
                    pool.append((flat, r))
        elif kind == "into":
            # Result buffers come from one pool shared by all threads and both functions
            # of this kind; each call takes one for itself. A buffer's result always lives
            # at the same address, so its flat view is made once.
            slots = self._into_slots
            new_slot = self._new_into_slot

            def call(*args: Any) -> Any:  # type: ignore[misc]
                try:
                    buffer, out, flat, memory = slot = slots.pop()
                except IndexError:
                    buffer, out, flat, memory = slot = new_slot()
                if args[position] is None if position >= 0 else None in args:
                    args = with_nulls(args)
                try:  # from the call on: a signal handler may raise right after it
                    status = c_fn(*args, buffer, out)
                    if status:
                        fail(status)
                    if flat is None:
                        flat = self.ffi.cast("bioxen_vm_result_flat *", out[0])
                        memory = self.ffi.buffer(flat)
                        slot = (buffer, out, flat, memory)
                    return read(flat, memory)
                finally:
                    slots.append(slot)
        elif kind in ("u64", "bool", "size"):
            out_type = {"u64": "uint64_t *", "bool": "bool *", "size": "size_t *"}[kind]

            def call(*args: Any) -> Any:  # type: ignore[misc]
                out = new(out_type)
                status = fn(*args, out)
                if status:
                    fail(status)
                return out[0]
        elif kind == "cstr":
            def call(*args: Any) -> str:  # type: ignore[misc]
                out = new("const char **")
                status = fn(*args, out)
                if status:
                    fail(status)
                return string(out[0]).decode("utf-8", "replace")
        elif kind == "read":
            def call(*args: Any) -> Optional[bytes]:  # type: ignore[misc]
                out = new("bioxen_vm_bytes *")
                has = new("bool *")
                try:  # from the call on: a signal handler may raise right after it
                    status = fn(*args, out, has)
                    if status:
                        fail(status)
                    return unpack(out.data, out.len) if has[0] else None
                finally:
                    bytes_free(out)
        elif kind == "xapi":
            def call(*args: Any) -> bytes:  # type: ignore[misc]
                out = new("bioxen_vm_bytes *")
                err = new("bioxen_vm_bytes *")
                status = fn(*args, out, err)
                try:
                    if status:
                        try:
                            fail(status)
                        except LuaVMError as e:
                            e.xapi_error = unpack(err.data, err.len) if err.len else b""
                            raise
                    return unpack(out.data, out.len)
                finally:
                    bytes_free(out)
                    bytes_free(err)
        else:  # pragma: no cover - the table only holds the kinds above
            raise AssertionError(kind)
        return call

    # --- callbacks ----------------------------------------------------------------------

    def set_log_callback(self, enabled: bool, max_level: int) -> None:
        callback = self._log_cb if enabled else self.ffi.NULL
        status = self.functions["bioxen_vm_set_log_callback"](callback, self.ffi.NULL, max_level)
        if status:
            self.fail(status)

    def manager_attach(self, manager: int, vm_id: bytes, token: Optional[int]) -> None:
        if token is None:
            callback, ud = self.ffi.NULL, self.ffi.NULL
        else:
            callback, ud = self._output_cb, self.ffi.cast("void *", token)
        status = self.functions["bioxen_vm_manager_attach"](manager, vm_id, callback, ud)
        if status:
            self.fail(status)

    def job_on_done(self, job: int, token: int) -> None:
        status = self.functions["bioxen_vm_job_on_done"](
            job, self._job_cb, self.ffi.cast("void *", token))
        if status:
            self.fail(status)

    def xcpng_new(self, options: bytes, token: int) -> int:
        out = self.ffi.new("uint64_t *")
        status = self.functions["bioxen_vm_xcpng_new"](
            options, self._progress_cb, self.ffi.cast("void *", token), out)
        if status:
            self.fail(status)
        return int(out[0])

    def manager_create_xcpng_vm(self, manager: int, vm_id: bytes, options: bytes,
                                interactive: bool, token: int) -> None:
        status = self.functions["bioxen_vm_manager_create_xcpng_vm"](
            manager, vm_id, options, interactive, self._progress_cb,
            self.ffi.cast("void *", token))
        if status:
            self.fail(status)
