"""The library's log records, routed into :mod:`logging` (logger ``bioxen_vm``).

One native log callback is installed at import and stays for the life of the process. A
record with target ``bioxen_vm::manager`` goes to the logger ``bioxen_vm.manager`` (other
targets to ``bioxen_vm.native.<target>``), at the mapped level: error -> ERROR, warn ->
WARNING, info -> INFO, debug -> DEBUG, trace -> TRACE (5).

The library filters records by level before calling back, so records nobody listens to cost
nothing. The native level follows the effective level of the ``bioxen_vm`` logger; it is
re-read whenever a VM, manager or VMLogger is created, and by :func:`sync_level` (call it
after changing logging levels if objects already exist).

``PYLUA_DEBUG=true`` (as the spec says) turns debug logging on: the ``bioxen_vm`` logger is
set to DEBUG and, only if logging has no handler configured anywhere, a stderr handler with
the original's console format is added to it. Nothing is ever printed otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Dict

from ._native import backend, dispatch

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

ROOT_LOGGER = "bioxen_vm"
_root = logging.getLogger(ROOT_LOGGER)

#: native level (1 error .. 5 trace) -> logging level
LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: TRACE}

_loggers: Dict[bytes, logging.Logger] = {}
_lock = threading.Lock()
_installed_level = -1


def _logger_for(target: bytes) -> logging.Logger:
    logger = _loggers.get(target)
    if logger is None:
        name = target.decode("utf-8", "replace")
        if name == "bioxen_vm" or name.startswith("bioxen_vm::"):
            name = name.replace("::", ".")
        else:
            name = "bioxen_vm.native." + name.replace("::", ".")
        logger = logging.getLogger(name)
        _loggers[target] = logger
    return logger


def _on_log(level: int, target: bytes, message: bytes) -> None:
    try:
        py_level = LEVELS.get(level, logging.DEBUG)
        logger = _logger_for(target)
        if logger.isEnabledFor(py_level):
            logger.log(py_level, "%s", message.decode("utf-8", "replace"))
    except Exception:  # a handler failed: logging's own errors must not reach C
        pass


def native_level_for(py_level: int) -> int:
    """The native max level (0 off .. 5 trace) that delivers records at ``py_level``+."""
    if py_level <= TRACE:
        return 5
    if py_level <= logging.DEBUG:
        return 4
    if py_level <= logging.INFO:
        return 3
    if py_level <= logging.WARNING:
        return 2
    if py_level <= logging.ERROR:
        return 1
    return 0


def sync_level() -> int:
    """Sets the native level from the ``bioxen_vm`` logger's effective level; returns it."""
    global _installed_level
    level = native_level_for(_root.getEffectiveLevel())
    if level != _installed_level:
        with _lock:
            if level != _installed_level:
                backend.set_log_callback(True, level)
                _installed_level = level
    return level


def _pylua_debug() -> bool:
    return os.environ.get("PYLUA_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class ConsoleFormatter(logging.Formatter):
    """The original's console format: ``[YYYY-MM-DD HH:MM:SS][LEVEL][Component] message``."""

    def format(self, record: logging.LogRecord) -> str:
        component = getattr(record, "component", None) or record.name.split(".")[-1]
        stamp = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
        text = f"[{stamp}][{record.levelname}][{component}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def enable_debug_from_environment() -> None:
    """``PYLUA_DEBUG=true``: debug logging on (see the module docs)."""
    if not _pylua_debug():
        return
    _root.setLevel(logging.DEBUG)
    if not _root.hasHandlers():
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(ConsoleFormatter())
        _root.addHandler(handler)


def remove_callback() -> None:
    """Removes the native callback (at exit, so no library thread calls into Python then)."""
    global _installed_level
    dispatch.log_handler = None
    try:
        backend.set_log_callback(False, 0)
    except Exception:  # pragma: no cover - library already unloading
        pass
    _installed_level = -1


dispatch.log_handler = _on_log
enable_debug_from_environment()
sync_level()
