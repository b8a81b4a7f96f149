"""Futures completed by the library's jobs (no Python thread per call).

:func:`start_job` wraps a job handle in a :class:`JobFuture` and registers a native
``bioxen_vm_job_on_done`` callback. When the job finishes, the library calls back on its
worker thread (or at once, if the job had already finished); the callback fetches the
outcome with ``bioxen_vm_job_wait(job, 0)`` and completes the future: a result dict, or the
exception of the job's status. ``cancel()`` cancels the native job (interrupting it if it
runs). The job handle is freed when the future is garbage collected.

Ctrl-C: a KeyboardInterrupt that ends a wait of the main thread in ``result()`` or
``exception()`` cancels the job before it propagates (unless the Ctrl-C mode is ``"off"``;
see ``_sigint``); so does one in ``wait_for_cluster``, whose native wait is stopped by
cancelling its jobs.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Dict, Optional

from . import _errors, _sigint
from ._convert import result_dict
from ._handles import own
from ._native import backend, dispatch
from .exceptions import LuaVMError, VMTimeoutError


class JobFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A :class:`concurrent.futures.Future` for one asynchronous execution."""

    def __init__(self, job: int) -> None:
        super().__init__()
        self._job = job
        self._free_job = own(self, backend.job_free, job)

    @property
    def job_handle(self) -> int:
        """The native job handle (valid while this future lives)."""
        return self._job

    def result(self, timeout: Optional[float] = None) -> Any:
        """The result dict, as :meth:`concurrent.futures.Future.result`; a KeyboardInterrupt
        (Ctrl-C) that ends the wait cancels the job first."""
        try:
            return super().result(timeout)
        except KeyboardInterrupt:
            cancel_on_ctrl_c(self)
            raise

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """As :meth:`concurrent.futures.Future.exception`; Ctrl-C cancels as in :meth:`result`."""
        try:
            return super().exception(timeout)
        except KeyboardInterrupt:
            cancel_on_ctrl_c(self)
            raise

    def job_status(self) -> str:
        """The native job's status: ``"running"``, ``"done"`` or ``"cancelled"``."""
        return backend.job_status(self._job)

    def cancel(self) -> bool:
        """Cancels the job: a queued job will not run, a running one is interrupted.

        Returns False when it had already finished (its result stays), as
        :meth:`concurrent.futures.Future.cancel` does for a finished future.
        """
        if self.done():
            return self.cancelled()
        cancelled = backend.job_cancel(self._job)  # may complete the future right here
        if self.done():
            return self.cancelled()
        if not cancelled:
            return False  # finished meanwhile: the callback brings the result
        return _mark_cancelled(self)


def cancel_on_ctrl_c(future: JobFuture) -> None:
    """Cancels the future's job because Ctrl-C ended a wait for it (not in mode "off")."""
    if _sigint.sigint_mode() == "off":
        return
    try:
        future.cancel()
    except Exception:  # freed or finished meanwhile: nothing left to stop
        pass


def _mark_cancelled(future: concurrent.futures.Future) -> bool:  # type: ignore[type-arg]
    if concurrent.futures.Future.cancel(future):
        future.set_running_or_notify_cancel()  # tells wait()/as_completed() waiters
        return True
    return future.cancelled()


def _complete(future: JobFuture, job: int, status: int, timeout: Optional[float],
              convert: Callable[[Any], Any]) -> None:
    if future.done():
        return
    try:
        if status == _errors.CANCELLED:
            _mark_cancelled(future)
            return
        outcome = convert(backend.job_wait(job, 0))
    except LuaVMError as exc:
        if isinstance(exc, VMTimeoutError) and timeout is not None:
            retitle_timeout(exc, timeout)
        _set(future, exc, failed=True)
        return
    except BaseException as exc:  # a conversion bug must still complete the future
        _set(future, exc, failed=True)
        return
    _set(future, outcome, failed=False)


def _set(future: JobFuture, value: Any, failed: bool) -> None:
    try:
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


def retitle_timeout(exc: VMTimeoutError, timeout: float) -> None:
    """Gives a timeout the original's text with the caller's own number of seconds."""
    exc.args = (f"Lua execution timed out after {timeout} seconds",)
    exc.timeout = timeout


def start_job(job: int, timeout: Optional[float] = None,
              convert: Callable[[Any], Any] = result_dict) -> JobFuture:
    """Wraps a job handle the caller owned into a :class:`JobFuture` (which now owns it)."""
    future = JobFuture(job)
    token = dispatch.new_token()
    # The handler (and through it the future) stays referenced until the job is done.
    dispatch.job_handlers[token] = (
        lambda job_, status: _complete(future, job_, status, timeout, convert))
    try:
        backend.job_on_done(job, token)
    except BaseException:
        dispatch.job_handlers.pop(token, None)
        future._free_job()
        raise
    return future


def _stop_jobs(frame_locals: Any) -> None:
    """Ctrl-C in ``wait_jobs_native`` (see ``_sigint``): cancels every job it waits for."""
    for future in frame_locals["futures"].values():
        cancel_on_ctrl_c(future)


@_sigint.stops(_stop_jobs)
def wait_jobs_native(futures: Dict[str, JobFuture], timeout_ms: int) -> Dict[str, Any]:
    """``bioxen_vm_wait_for_cluster`` over the futures' job handles."""
    import json

    jobs = json.dumps({vm_id: f.job_handle for vm_id, f in futures.items()})
    return json.loads(backend.wait_for_cluster(jobs.encode("utf-8"), timeout_ms))
