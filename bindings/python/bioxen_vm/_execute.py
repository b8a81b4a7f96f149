"""Synchronous executions: ``execute(vm, code, args, ms)`` and
``manager_execute(manager, vm_id, code, args, ms)``, both returning the result dict.

Two implementations with one behaviour:

* the compiled fast path, :mod:`bioxen_vm._fastcall` (``_fastcall.c``), which ``pip
  install`` builds when a C compiler is present: it calls ``bioxen_vm_execute_into`` of the
  library the backend loaded (through the function's address) and builds the dict in C;
* the backend's own call (ctypes or cffi) followed by :func:`._convert.result_dict`.

The fast path is used when it was built, unless ``BIOXEN_VM_FASTCALL=0``. ``FASTCALL`` says
which one runs. Code arrives as ``str`` (encoded as UTF-8 with "surrogateescape") or
``bytes``, arguments and ids as ``bytes`` (the callers convert them); failures raise the
status's exception in both.
"""

from __future__ import annotations

import atexit
import os
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Union

from ._convert import _values_cache, result_dict, values_of
from ._native import backend

_OFF = ("0", "off", "no", "false")


def bind(module: ModuleType, native: Any) -> None:
    """Points the compiled module at ``native``'s library and helpers (once per process)."""
    address = native.function_address
    module.bind(address("bioxen_vm_execute_into"), address("bioxen_vm_manager_execute_into"),
                address("bioxen_vm_result_buffer_new"), address("bioxen_vm_result_buffer_free"),
                values_of, _values_cache, native.fail)
    atexit.register(module.release)


def _load() -> Optional[ModuleType]:
    if os.environ.get("BIOXEN_VM_FASTCALL", "").strip().lower() in _OFF:
        return None
    try:
        from . import _fastcall  # type: ignore[attr-defined]
    except ImportError:
        return None
    bind(_fastcall, backend)
    return _fastcall


_module = _load()

#: True when executions go through the compiled fast path.
FASTCALL = _module is not None

Code = Union[str, bytes]
execute: Callable[[int, Code, bytes, int], Dict[str, Any]]
manager_execute: Callable[[int, bytes, Code, bytes, int], Dict[str, Any]]

if _module is not None:
    execute = _module.execute
    manager_execute = _module.manager_execute
else:
    _execute_into = backend.execute_into
    _manager_execute_into = backend.manager_execute_into

    def execute(vm: int, code: Code, args: bytes, ms: int) -> Dict[str, Any]:
        if type(code) is str:
            code = code.encode("utf-8", "surrogateescape")
        return result_dict(_execute_into(vm, code, len(code), args, ms))

    def manager_execute(manager: int, vm_id: bytes, code: Code, args: bytes,
                        ms: int) -> Dict[str, Any]:
        if type(code) is str:
            code = code.encode("utf-8", "surrogateescape")
        return result_dict(_manager_execute_into(manager, vm_id, code, len(code), args, ms))
