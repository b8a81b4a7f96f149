"""Ownership of native handles: freed on close(), on context exit, when garbage collected,
and at interpreter exit (before the native log callback is removed).

Collection uses :class:`weakref.finalize` rather than ``__del__``: it runs at most once,
never sees a half-torn-down object, and is run by this module's exit hook while the
interpreter is still whole, so no library thread calls into a finalizing interpreter.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from . import _log
from ._native import dispatch

# No lock here: a finalizer may run inside any allocation (the cyclic collector), also
# while this module's own code runs on the same thread. Dict operations and the counter
# are atomic under the GIL.
_live: Dict[int, weakref.finalize] = {}
_ids = itertools.count(1)
_deferred: "queue.SimpleQueue[Tuple[Callable[[int], Any], int]]" = queue.SimpleQueue()
_reaper: Optional[threading.Thread] = None
_reaper_lock = threading.Lock()


def _free(free: Callable[[int], Any], handle: int) -> None:
    try:
        free(handle)
    except Exception:  # already freed elsewhere (INVALID_HANDLE) or library unloading
        pass


def _reap() -> None:
    while True:
        free, handle = _deferred.get()
        _free(free, handle)


def _release(key: int, free: Callable[[int], Any], handle: int) -> None:
    _live.pop(key, None)
    if dispatch.in_callback():
        # On a library thread inside a callback: freeing a manager there would wait for
        # that very worker. Hand it to a Python thread.
        global _reaper
        _deferred.put((free, handle))
        if _reaper is None:
            with _reaper_lock:
                if _reaper is None:
                    _reaper = threading.Thread(target=_reap, name="bioxen_vm-reaper",
                                               daemon=True)
                    _reaper.start()
        return
    _free(free, handle)


def own(obj: object, free: Callable[[int], Any], handle: int) -> weakref.finalize:
    """Registers ``free(handle)`` to run once: when called, when ``obj`` dies, or at exit."""
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
    # Not finalizer(): weakref's own exit hook, registered with the first finalize (after
    # this one, so it runs first), turns every finalizer into a no-op. detach() still
    # hands over what to call.
    for _key, finalizer in sorted(list(_live.items()), reverse=True):
        info = finalizer.detach()
        if info is not None:
            _obj, func, args, kwargs = info
            func(*args, **kwargs)
    while True:
        try:
            free, handle = _deferred.get_nowait()
        except queue.Empty:
            break
        _free(free, handle)
    deadline = time.monotonic() + 5.0
    while dispatch.job_handlers and time.monotonic() < deadline:
        time.sleep(0.005)
    dispatch.output_handlers.clear()
    _log.remove_callback()


atexit.register(_at_exit)
