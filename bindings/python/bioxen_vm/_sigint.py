"""Ctrl-C in blocking calls: SIGINT stops the Lua code the main thread is waiting for.

CPython runs a Python signal handler only in the main thread, between bytecodes. A main
thread blocked in one call of the library (an execution, a session read, a wait for jobs:
the GIL released, no bytecode running) would see its KeyboardInterrupt only once that call
ended by itself. CPython's C-level handler, though, also writes the signal's number to the
*wakeup fd* (:func:`signal.set_wakeup_fd`) at once, whatever the main thread is doing.

This module points the wakeup fd at a pipe that a daemon thread, the *watcher*, reads. On
SIGINT the watcher looks at the main thread's stack (``sys._current_frames()``) for frames
of the functions registered with :func:`stops` (the package's blocking calls) and calls
each one's stop function with that frame's locals: ``bioxen_vm_interrupt``, the manager's
interrupt, the session's interrupt, the cancel of a VM's jobs or of a job. The library call
returns (INTERRUPTED, CANCELLED, or a session's output so far) and Python's own handler
raises KeyboardInterrupt in the main thread as the call returns. A call records nothing
before it blocks: the frame it runs in is the record, so the hot path pays nothing. A stop
that did not take (the library can miss an interrupt that comes as a process VM's call
begins) is made again every 0.1 s while that frame is still on the main thread's stack,
for up to 5 s.

Whose handler decides (:func:`set_sigint_mode`, ``BIOXEN_VM_SIGINT``):

* ``"auto"`` (the default): calls are stopped only while SIGINT's Python handler is
  :func:`signal.default_int_handler` (the one that raises KeyboardInterrupt). With any
  other handler nothing is stopped: the handler runs once the call ends by itself, as for
  any other blocking call in Python, so a handler that does not raise never costs a call.
* ``"always"``: calls are stopped whatever the handler; the handler runs in the calling
  thread as the call returns, and what it raises comes out of the call (if it returns, the
  call ends as a stopped call does: ``VMInterruptedError``, ``JobCancelledError``, or a
  session read's output so far).
* ``"off"``: nothing is stopped. Set in the environment, nothing is installed at all.

Sharing the wakeup fd: it is one per process. If something owned it when this module armed
(an asyncio loop with signal handlers, say), its fd keeps getting every signal byte: the
watcher forwards what it reads. ``signal.set_wakeup_fd`` is wrapped so that later callers
(asyncio's ``add_signal_handler``, trio) are served the same way: the real function checks
their call (main thread, usable non-blocking fd) and the previous fd they see is theirs,
while the pipe stays installed underneath and the watcher forwards to their fd. Only C code
calling ``PySignal_SetWakeupFd`` directly bypasses the wrapper; Ctrl-C then stops no call
(nothing notices: finding out would cost a system call).

Only the main thread receives KeyboardInterrupt in Python, so only its calls are stopped;
calls on other threads are not affected by Ctrl-C (stop them with ``interrupt()`` or
``cancel()``). A forked child gets a pipe and a watcher of its own.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar

_log = logging.getLogger("bioxen_vm.python")

MODES = ("auto", "always", "off")
_SIGINT = getattr(signal, "SIGINT", None)

#: stop(frame_locals): stops the library call that a frame of a registered function waits in
StopFn = Callable[[Mapping[str, Any]], None]
F = TypeVar("F", bound=Callable[..., Any])

_stops: Dict[CodeType, StopFn] = {}

#: A stop that did not take is made again this often, for this long.
RETRY_EVERY = 0.1
RETRY_FOR = 5.0

#: (frame, its stop, when to give up): stops made, to make again while the frame is blocked
Pending = List[Tuple[FrameType, StopFn, float]]

# The real function, also when this module is imported again over its own wrapper.
_real_set_wakeup_fd: Callable[..., int] = getattr(
    signal.set_wakeup_fd, "_bioxen_vm_real", signal.set_wakeup_fd)


def stops(stop: StopFn) -> Callable[[F], F]:
    """Registers the decorated function as a blocking call: while the main thread runs in it,
    SIGINT calls ``stop(locals of its frame)``. The function itself is left as it is."""

    def register(fn: F) -> F:
        _stops[fn.__code__] = stop
        return fn

    return register


def _initial_mode() -> str:
    mode = os.environ.get("BIOXEN_VM_SIGINT", "").strip().lower() or "auto"
    if mode in ("0", "no", "false", "none"):
        mode = "off"
    if mode not in MODES:
        _log.warning("BIOXEN_VM_SIGINT=%r is not one of %s; using 'auto'", mode, MODES)
        mode = "auto"
    return mode


_mode = _initial_mode()


class _Wakeup:
    """This process's pipe behind the wakeup fd, and the fd it forwards to (-1: none)."""

    def __init__(self, read_fd: int, write_fd: int, downstream: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.downstream = downstream


# Set once, on the main thread (arm) or in a forked child's only thread: no lock needed.
_state: Optional[_Wakeup] = None


def sigint_mode() -> str:
    """What SIGINT does to the main thread's blocking calls: ``"auto"``, ``"always"`` or
    ``"off"`` (see the module docs)."""
    return _mode


def set_sigint_mode(mode: str) -> str:
    """Sets the mode (``"auto"``, ``"always"`` or ``"off"``) and returns the previous one.

    From the main thread, a mode other than ``"off"`` also installs the watcher if it is
    not installed yet (from another thread it is installed by the next VM or manager
    created on the main thread). ``"off"`` leaves the watcher installed, stopping nothing.
    """
    global _mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    previous, _mode = _mode, mode
    if mode != "off":
        arm()
    return previous


def armed() -> bool:
    """True once this process's pipe and watcher are installed."""
    return _state is not None


def arm() -> bool:
    """Installs the pipe and the watcher (once per process); True if they are in place.

    Does nothing in mode ``"off"``, off the main thread, or where ``set_wakeup_fd`` refuses
    a pipe (a platform without it, a subinterpreter).
    """
    if _state is not None:
        return True
    if _mode == "off" or _SIGINT is None:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    return _install(None)


def _install(previous_state: Optional[_Wakeup]) -> bool:
    """A new pipe as the wakeup fd, forwarding to what was there (or, in a forked child, to
    what the parent forwarded to), and its watcher, started first (the pipe is only
    installed once something reads it)."""
    global _state
    try:
        read_fd, write_fd = os.pipe()
    except OSError:  # out of file descriptors: Ctrl-C stays as Python has it
        return False
    state = _Wakeup(read_fd, write_fd, -1)
    try:
        os.set_blocking(write_fd, False)
        threading.Thread(target=_watch, args=(state,), name="bioxen_vm-sigint",
                         daemon=True).start()
    except (AttributeError, OSError, RuntimeError):  # no such call here; no thread
        os.close(read_fd)
        os.close(write_fd)
        return False
    try:
        previous = _real_set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # refused (a subinterpreter, a platform without it)
        os.close(write_fd)  # the watcher reads the end of its pipe and closes the rest
        return False
    if previous_state is not None:
        previous = previous_state.downstream
    state.downstream = previous if previous >= 0 else -1
    _state = state
    if signal.set_wakeup_fd is not _set_wakeup_fd:
        signal.set_wakeup_fd = _set_wakeup_fd
    return True


def _set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = True) -> int:
    """``signal.set_wakeup_fd`` while the watcher's pipe is installed: the caller's fd gets
    every signal byte through the watcher, and the previous fd returned is the caller's
    view. The real function checks the call (and raises what it raises)."""
    state = _state
    if state is None:
        return _real_set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)
    _real_set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)
    _real_set_wakeup_fd(state.write_fd, warn_on_full_buffer=False)
    previous = state.downstream
    # Never the pipe itself (whose fd no caller is shown): the watcher would feed itself.
    state.downstream = fd if fd >= 0 and fd != state.write_fd else -1
    return previous


_set_wakeup_fd.__doc__ = (_real_set_wakeup_fd.__doc__ or "") + (
    "\n\n(bioxen_vm: the fd gets its signal bytes forwarded from bioxen_vm's wakeup pipe, "
    "which stays installed underneath; see bioxen_vm/_sigint.py.)")
_set_wakeup_fd._bioxen_vm_real = _real_set_wakeup_fd  # type: ignore[attr-defined]


def _watch(state: _Wakeup) -> None:
    """The watcher: reads signal numbers, forwards them, stops the main thread's calls on
    SIGINT and makes the stops again while those calls stay blocked. Ends at the end of its
    pipe (when installing the pipe failed after it started), closing the read end itself so
    that no fd number is reused under a read."""
    pending: Pending = []
    retry_at = 0.0
    while True:
        if pending:
            wait = max(0.0, retry_at - time.monotonic())
            try:
                readable = select.select([state.read_fd], [], [], wait)[0]
            except (OSError, ValueError):
                readable = [state.read_fd]
            if time.monotonic() >= retry_at:
                pending = _stop_again(pending)
                retry_at = time.monotonic() + RETRY_EVERY
            if not readable:
                continue
        try:
            data = os.read(state.read_fd, 512)
        except OSError:
            data = b""
        if not data:
            try:
                os.close(state.read_fd)
            except OSError:
                pass
            return
        downstream = state.downstream
        if downstream >= 0:
            try:
                os.write(downstream, data)
            except OSError:  # full or closed: dropped, as CPython drops its own write
                pass
        if _SIGINT in data and state is _state:
            try:
                pending = _on_sigint(pending)
                retry_at = time.monotonic() + RETRY_EVERY
            except Exception:  # pragma: no cover - stop functions catch their own errors
                _log.debug("stopping the main thread's call on SIGINT failed", exc_info=True)


def _main_stack() -> List[FrameType]:
    """The main thread's frames, innermost first."""
    frames = []
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def _stop(frame: FrameType, stop: StopFn) -> None:
    try:
        stop(frame.f_locals)
    except Exception:  # a closed handle, a call that ended meanwhile
        _log.debug("stop on SIGINT raised", exc_info=True)


def _on_sigint(pending: Pending) -> Pending:
    """Stops every registered call on the main thread's stack; the stops to make again."""
    mode = _mode
    if mode == "off":
        return pending
    if mode == "auto" and signal.getsignal(_SIGINT) is not signal.default_int_handler:
        return pending
    give_up = time.monotonic() + RETRY_FOR
    made = []
    for frame in _main_stack():
        stop = _stops.get(frame.f_code)
        if stop is not None:
            _stop(frame, stop)
            made.append((frame, stop, give_up))
    return made + [p for p in pending if all(p[0] is not m[0] for m in made)]


def _stop_again(pending: Pending) -> Pending:
    """The stops whose call is still on the main thread's stack, made again."""
    now = time.monotonic()
    stack = _main_stack()
    still = [p for p in pending if now < p[2] and any(p[0] is f for f in stack)]
    for frame, stop, _ in still:
        _stop(frame, stop)
    return still


def _after_fork_in_child() -> None:
    """The child shares the parent's pipe: it gets its own (and its own watcher), so neither
    process acts on the other's signals."""
    global _state
    state = _state
    if state is None:
        return
    _state = None
    if not _install(state):
        try:
            _real_set_wakeup_fd(state.downstream, warn_on_full_buffer=True)
        except (ValueError, OSError):
            pass
    for fd in (state.read_fd, state.write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
