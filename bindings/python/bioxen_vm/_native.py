"""Loading the shared library and choosing the backend (shared by everything above it).

* The library: ``$BIOXEN_VM_LIB`` if set; else the copy bundled in this package (what
  ``pip install`` puts there); else, when running from a source checkout, the repository's
  ``target/release`` (or ``$CARGO_TARGET_DIR/release``) build.
* The header (for cffi's ``cdef`` and the ABI check): the bundled copy, else the
  repository's ``include/bioxen_vm.h``.
* The backend: ``$BIOXEN_VM_BACKEND`` (``ctypes`` or ``cffi``); by default cffi when it can
  be imported (slightly the faster of the two on the hot path; see README.md), else
  ctypes.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ._header import integer_defines

_HERE = Path(__file__).resolve().parent

if sys.platform == "darwin":
    LIBRARY_FILE = "libbioxen_vm.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "bioxen_vm.dll"
else:
    LIBRARY_FILE = "libbioxen_vm.so"
HEADER_FILE = "bioxen_vm.h"

#: Backends in the order the default choice tries them.
DEFAULT_BACKENDS: Tuple[str, ...] = ("cffi", "ctypes")


def _source_tree() -> Optional[Path]:
    """The repository root when this package runs from its source checkout."""
    root = _HERE.parents[2] if len(_HERE.parents) > 2 else None
    if root is not None and (root / "Cargo.toml").is_file() and (root / "include").is_dir():
        return root
    return None


def find_library() -> str:
    """The path of the shared library to load (see the module docs for the order)."""
    env = os.environ.get("BIOXEN_VM_LIB")
    if env:
        if not os.path.isfile(env):
            raise ImportError(f"BIOXEN_VM_LIB={env!r} is not a file")
        return os.path.abspath(env)
    bundled = _HERE / LIBRARY_FILE
    if bundled.is_file():
        return str(bundled)
    root = _source_tree()
    if root is not None:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or (root / "target"))
        if not target.is_absolute():
            target = root / target
        for profile in ("release", "debug"):
            candidate = target / profile / LIBRARY_FILE
            if candidate.is_file():
                return str(candidate)
    raise ImportError(
        f"bioxen_vm: {LIBRARY_FILE} not found (not bundled in {_HERE}); build it with "
        "`cargo build --release` and reinstall the package, or set BIOXEN_VM_LIB to its path")


def find_header() -> str:
    """The path of the C header matching the library."""
    bundled = _HERE / HEADER_FILE
    if bundled.is_file():
        return str(bundled)
    root = _source_tree()
    if root is not None and (root / "include" / HEADER_FILE).is_file():
        return str(root / "include" / HEADER_FILE)
    raise ImportError(f"bioxen_vm: {HEADER_FILE} not found (not bundled in {_HERE})")


class _Depth(threading.local):
    """Per thread: how many native callbacks are running on it (a class default of 0)."""

    depth = 0


class Dispatch:
    """Where native callbacks land: token -> handler tables the shared layer fills.

    The backends' trampolines call these methods (on whatever thread the library uses).
    Handlers must not raise; entries for output stay until removed, job entries are
    removed as they fire (a job's callback runs exactly once).
    """

    def __init__(self) -> None:
        self._tls = _Depth()
        self.log_handler: Optional[Callable[[int, bytes, bytes], None]] = None
        self.output_handlers: Dict[int, Callable[[bytes, int, bytes], None]] = {}
        self.job_handlers: Dict[int, Callable[[int, int], None]] = {}
        self.progress_handlers: Dict[int, Callable[[bytes], int]] = {}
        self._tokens = itertools.count(1)

    def new_token(self) -> int:
        """A fresh token (never 0, so it is never a NULL ``user_data``)."""
        return next(self._tokens)

    def in_callback(self) -> bool:
        """True on a thread that is running a native callback right now."""
        return self._tls.depth > 0

    def _call(self, handler: Callable[..., None], *args: Any) -> None:
        tls = self._tls
        tls.depth += 1
        try:
            handler(*args)
        finally:
            tls.depth -= 1

    def on_log(self, level: int, target: bytes, message: bytes) -> None:
        handler = self.log_handler
        if handler is not None:
            self._call(handler, level, target, message)

    def on_output(self, token: int, vm_id: bytes, stream: int, data: bytes) -> None:
        handler = self.output_handlers.get(token)
        if handler is not None:
            self._call(handler, vm_id, stream, data)

    def on_job(self, token: int, job: int, status: int) -> None:
        handler = self.job_handlers.pop(token, None)
        if handler is not None:
            self._call(handler, job, status)

    def on_progress(self, token: int, event: bytes) -> int:
        """A deploy's event; non-zero cancels the deploy (as does a handler that fails)."""
        handler = self.progress_handlers.get(token)
        if handler is None:
            return 0
        tls = self._tls
        tls.depth += 1
        try:
            return 1 if handler(event) else 0
        except BaseException:
            return 1
        finally:
            tls.depth -= 1


def _load(dispatch: Dispatch) -> Any:
    path = find_library()
    header_path = find_header()
    with open(header_path, encoding="utf-8") as f:
        header_text = f.read()
    choice = os.environ.get("BIOXEN_VM_BACKEND", "").strip().lower()
    if choice not in ("", "ctypes", "cffi"):
        raise ImportError(f"BIOXEN_VM_BACKEND must be 'ctypes' or 'cffi', not {choice!r}")
    candidates = (choice,) if choice else DEFAULT_BACKENDS
    backend: Any = None
    for name in candidates:
        if name == "cffi":
            try:
                from ._backend_cffi import CffiBackend
            except ImportError:
                if choice:
                    raise ImportError("BIOXEN_VM_BACKEND=cffi but cffi is not installed")
                continue
            backend = CffiBackend(path, dispatch, header_text)
        else:
            from ._backend_ctypes import CtypesBackend

            backend = CtypesBackend(path, dispatch)
        break
    expected = integer_defines(header_text).get("BIOXEN_VM_ABI_VERSION")
    actual = backend.abi_version()
    if expected is not None and actual != expected:
        raise ImportError(
            f"bioxen_vm: {path} implements ABI {actual} but the header {header_path} "
            f"declares ABI {expected}; rebuild and reinstall the package")
    backend.header_path = header_path
    return backend


dispatch = Dispatch()
backend = _load(dispatch)
