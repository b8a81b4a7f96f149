"""The cffi backend, in ABI mode: ``ffi.cdef`` from the bundled header, no compiler."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import cffi

from ._backend import Dispatch, guarded
from ._errors import error_from_status
from ._header import preprocess
from ._signatures import SIGNATURES, short_name


class CffiBackend:
    """Calls the library through cffi (``ffi.dlopen``; the GIL is released during calls)."""

    name = "cffi"

    def __init__(self, path: str, dispatch: Dispatch, header_text: str) -> None:
        self.path = path
        ffi = cffi.FFI()
        ffi.cdef(preprocess(header_text))
        lib = ffi.dlopen(path)
        self.ffi = ffi
        self._lib = lib
        self.functions: Dict[str, Any] = {}
        for c_name in SIGNATURES:
            try:
                self.functions[c_name] = getattr(lib, c_name)
            except AttributeError:
                continue  # not exported by this build (or not in the header)
        self._last_error = self.functions["bioxen_vm_last_error_message"]
        self._bytes_free = self.functions["bioxen_vm_bytes_free"]
        self._result_free = self.functions["bioxen_vm_result_free"]
        for c_name, fn in self.functions.items():
            kind, _restype, argtypes = SIGNATURES[c_name]
            if kind not in ("raw", "callback"):
                # cffi wants ffi.NULL, not None, for a NULL `const char *`
                nullable = tuple(i for i, t in enumerate(argtypes) if t == "str")
                setattr(self, short_name(c_name), self._wrap(kind, self._nulls(fn, nullable)))

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

    def _fail(self, status: int) -> None:
        raise error_from_status(status, self.last_error_message())

    # --- calling conventions --------------------------------------------------------------

    def _nulls(self, fn: Any, positions: "tuple[int, ...]") -> Any:
        """``fn`` with None turned into ffi.NULL at the string positions."""
        if not positions:
            return fn
        null = self.ffi.NULL
        if len(positions) == 1:
            (p,) = positions

            def call1(*args: Any) -> Any:
                if args[p] is None:
                    args = args[:p] + (null,) + args[p + 1:]
                return fn(*args)
            return call1

        def call(*args: Any) -> Any:
            if None in args:
                args = tuple(null if a is None and i in positions else a
                             for i, a in enumerate(args))
            return fn(*args)
        return call

    def _wrap(self, kind: str, fn: Any) -> Callable[..., Any]:
        fail = self._fail
        new = self.ffi.new
        unpack = self.ffi.unpack
        string = self.ffi.string
        bytes_free = self._bytes_free
        result_free = self._result_free

        if kind == "status":
            def call(*args: Any) -> None:
                status = fn(*args)
                if status:
                    fail(status)
        elif kind == "bytes":
            def call(*args: Any) -> bytes:  # type: ignore[misc]
                out = new("bioxen_vm_bytes *")
                status = fn(*args, out)
                if status:
                    fail(status)
                try:
                    return unpack(out.data, out.len)
                finally:
                    bytes_free(out)
        elif kind == "result":
            def call(*args: Any) -> Any:  # type: ignore[misc]
                r = new("bioxen_vm_result *")
                status = fn(*args, r)
                if status:
                    fail(status)
                try:
                    o, e, v, m = r.stdout_text, r.stderr_text, r.values_json, r.error_message
                    return (r.success, r.return_code, unpack(o.data, o.len),
                            unpack(e.data, e.len), unpack(v.data, v.len),
                            unpack(m.data, m.len), r.duration_ns, r.output_dropped)
                finally:
                    result_free(r)
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
                status = fn(*args, out, has)
                if status:
                    fail(status)
                try:
                    return unpack(out.data, out.len) if has[0] else None
                finally:
                    bytes_free(out)
        else:  # pragma: no cover - the table only holds the kinds above
            raise AssertionError(kind)
        return call

    # --- callbacks ----------------------------------------------------------------------

    def set_log_callback(self, enabled: bool, max_level: int) -> None:
        callback = self._log_cb if enabled else self.ffi.NULL
        status = self.functions["bioxen_vm_set_log_callback"](callback, self.ffi.NULL, max_level)
        if status:
            self._fail(status)

    def manager_attach(self, manager: int, vm_id: bytes, token: Optional[int]) -> None:
        if token is None:
            callback, ud = self.ffi.NULL, self.ffi.NULL
        else:
            callback, ud = self._output_cb, self.ffi.cast("void *", token)
        status = self.functions["bioxen_vm_manager_attach"](manager, vm_id, callback, ud)
        if status:
            self._fail(status)

    def job_on_done(self, job: int, token: int) -> None:
        status = self.functions["bioxen_vm_job_on_done"](
            job, self._job_cb, self.ffi.cast("void *", token))
        if status:
            self._fail(status)
