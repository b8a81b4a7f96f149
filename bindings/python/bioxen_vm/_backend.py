"""The interface every native backend implements (ctypes and cffi).

A backend only converts calls: Python values in, C call, Python values out. It holds no
state of the binding and no logic beyond that; everything above it is shared.

Besides the attributes named after the C functions (``bioxen_vm_manager_execute`` is
``backend.manager_execute``; calling conventions in :mod:`._signatures`), a backend has:

* ``name`` (``"ctypes"`` or ``"cffi"``) and ``path`` (the shared library it loaded);
* ``version() -> str``, ``abi_version() -> int``, ``status_name(int) -> str``,
  ``last_error_message() -> str | None``;
* ``fail(status)``: raises the exception of a failed call (reading the thread's last error);
* ``function_address(c_name) -> int``: where the loaded library's function is (for the
  compiled fast path, :mod:`._hotpath`);
* ``set_log_callback(enabled: bool, max_level: int)``: installs (or removes) the one
  native log callback, which calls ``dispatch.on_log(level, target, message)``;
* ``manager_attach(manager, vm_id, token: int | None)``: attaches a session; with a token
  its output goes to ``dispatch.on_output(token, vm_id, stream, data)``;
* ``job_on_done(job, token: int)``: ``dispatch.on_job(token, job, status)`` once the job
  has finished;
* ``xcpng_new(options, token) -> int`` and ``manager_create_xcpng_vm(manager, vm_id,
  options, interactive, token)``: deploys, each event going to
  ``dispatch.on_progress(token, event_json) -> int`` (non-zero cancels).

Failed calls raise the exception of :func:`._errors.error_from_status` with the message of
``bioxen_vm_last_error_message``, read on the calling thread right after the call.
Callback trampolines are created once per backend and stay referenced for the life of the
process; they never let an exception reach C.
"""

from __future__ import annotations

import _thread
from typing import Callable, Protocol

from ._signatures import SIGNATURES


class Dispatch(Protocol):
    """What the backends call back into (the shared layer's callback targets)."""

    def on_log(self, level: int, target: bytes, message: bytes) -> None: ...

    def on_output(self, token: int, vm_id: bytes, stream: int, data: bytes) -> None: ...

    def on_job(self, token: int, job: int, status: int) -> None: ...

    def on_progress(self, token: int, event: bytes) -> int: ...


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Wraps a callback target so that nothing escapes into C.

    An exception cannot cross the C boundary (ctypes would print it, cffi too); the
    dispatchers already catch their own errors, so what is left is a KeyboardInterrupt that
    arrived while the callback ran on the main thread: it is delivered again to the main
    thread, where it surfaces once control is back in Python.
    """

    def call(*args: object) -> None:
        try:
            fn(*args)
        except KeyboardInterrupt:
            try:
                _thread.interrupt_main()
            except BaseException:  # pragma: no cover - interpreter shutting down
                pass
        except BaseException:  # pragma: no cover - dispatchers catch their own errors
            pass

    return call



def missing_functions(exported: Callable[[str], bool], path: str) -> None:
    """Raises ImportError naming every function of the table the library lacks."""
    missing = [name for name in SIGNATURES if not exported(name)]
    if missing:
        raise ImportError(
            f"bioxen_vm: {path} does not export {', '.join(missing)}: the library is older "
            "than this binding; rebuild it (cargo build --release) and reinstall the package")
