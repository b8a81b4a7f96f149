"""Ownership of native handles: freed on close(), on context exit, when garbage collected,
and at interpreter exit (before the native log callback is removed).

Collection uses :class:`weakref.finalize` rather than ``__del__``: it runs at most once,
never sees a half-torn-down object, and is run by this module's exit hook while the
interpreter is still whole, so no library thread calls into a finalizing interpreter.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any, Callable, Dict

from . import _log
from ._native import dispatch

_live: Dict[int, weakref.finalize] = {}
_lock = threading.Lock()
_ids = iter(range(1, 1 << 62))


def _release(key: int, free: Callable[[int], Any], handle: int) -> None:
    with _lock:
        _live.pop(key, None)
    try:
        free(handle)
    except Exception:  # already freed elsewhere (INVALID_HANDLE) or library unloading
        pass


def own(obj: object, free: Callable[[int], Any], handle: int) -> weakref.finalize:
    """Registers ``free(handle)`` to run once: when called, when ``obj`` dies, or at exit."""
    with _lock:
        key = next(_ids)
        finalizer = weakref.finalize(obj, _release, key, free, handle)
        finalizer.atexit = False  # this module's exit hook runs it, in a known order
        _live[key] = finalizer
    return finalizer


def live_count() -> int:
    """How many native handles the binding currently owns (for tests and diagnostics)."""
    return len(_live)


def _at_exit() -> None:
    # Newest first: jobs and sessions before the managers that run them. Freeing a VM or a
    # manager cancels its jobs, whose callbacks then run; wait (briefly) for them, and only
    # then remove the log callback: no library thread may call into Python once the
    # interpreter finalizes.
    with _lock:
        finalizers = sorted(_live.items(), reverse=True)
    for _key, finalizer in finalizers:
        finalizer()
    deadline = time.monotonic() + 5.0
    while dispatch.job_handlers and time.monotonic() < deadline:
        time.sleep(0.005)
    dispatch.output_handlers.clear()
    _log.remove_callback()


atexit.register(_at_exit)
