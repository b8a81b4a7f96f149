"""The hot calls, each with one behaviour and two implementations:

* ``execute(vm, code, args, ms)`` and ``manager_execute(manager, vm_id, code, args, ms)``:
  a synchronous execution, returning the result dict;
* ``send_input(manager, vm_id, data)``: queues a line of session input (a newline is added
  when missing);
* ``read_output(manager, vm_id, ms, flags)``: the session's buffered output as ``str``
  (invalid UTF-8 replaced), or None.

The implementations:

* the compiled fast path, :mod:`bioxen_vm._fastcall` (``_fastcall.c``), which ``pip
  install`` builds when a C compiler and the Python headers are present: it calls the
  functions of the library the backend loaded (through their addresses) and builds the
  answers in C;
* the backend's own calls (ctypes or cffi), with :func:`._convert.result_dict`.

The fast path is used when it was built, unless ``BIOXEN_VM_FASTCALL=0``; ``FASTCALL`` says
which one runs. Code and input arrive as ``str`` (encoded as UTF-8 with "surrogateescape")
or ``bytes``; ids and arguments as ``bytes`` (the callers convert them). Failures raise the
status's exception in both.
"""

from __future__ import annotations

import atexit
import os
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Union

from ._convert import _values_cache, code_arg, result_dict, values_of
from ._native import backend

_OFF = ("0", "off", "no", "false")

def bind(module: ModuleType, native: Any) -> None:
    """Points the compiled module at ``native``'s library and helpers (once per process)."""
    addresses = {name: native.function_address(name) for name in module.FUNCTIONS}
    module.bind(addresses, values_of, _values_cache, native.fail)
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

#: True when the hot calls go through the compiled fast path.
FASTCALL = _module is not None

Code = Union[str, bytes]
execute: Callable[[int, Code, bytes, int], Dict[str, Any]]
manager_execute: Callable[[int, bytes, Code, bytes, int], Dict[str, Any]]
send_input: Callable[[int, bytes, Code], None]
read_output: Callable[[int, bytes, int, int], Optional[str]]

if _module is not None:
    execute = _module.execute
    manager_execute = _module.manager_execute
    send_input = _module.send_input
    read_output = _module.read_output
else:
    _execute_into = backend.execute_into
    _manager_execute_into = backend.manager_execute_into
    _send_input = backend.manager_send_input
    _read_output = backend.manager_read_output

    def execute(vm: int, code: Code, args: bytes, ms: int) -> Dict[str, Any]:
        code = code_arg(code)
        return result_dict(_execute_into(vm, code, len(code), args, ms))

    def manager_execute(manager: int, vm_id: bytes, code: Code, args: bytes,
                        ms: int) -> Dict[str, Any]:
        code = code_arg(code)
        return result_dict(_manager_execute_into(manager, vm_id, code, len(code), args, ms))

    def send_input(manager: int, vm_id: bytes, data: Code) -> None:
        data = code_arg(data, "input_str")
        if not data.endswith(b"\n"):
            data += b"\n"
        _send_input(manager, vm_id, data, len(data))

    def read_output(manager: int, vm_id: bytes, ms: int, flags: int) -> Optional[str]:
        data = _read_output(manager, vm_id, ms, flags)
        return None if data is None else data.decode("utf-8", "replace")
