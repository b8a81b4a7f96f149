"""``VMLogger``: the original's logging API, routed into :mod:`logging`. Writes no files.

``VMLogger(debug_mode=False, component="VM", log_dir="logs", enable_file_logging=True)``
logs to the logger ``bioxen_vm.<component>`` (so the library's own records, under
``bioxen_vm``, and the application's are configured in one place). ``debug_mode=True``
sets that logger to DEBUG. ``log_dir`` and ``enable_file_logging`` are accepted for
compatibility and ignored: nothing is written to disk, and no handler is added (configure
:mod:`logging` as usual; ``PYLUA_DEBUG=true`` adds a stderr handler only when logging has
none, see :mod:`bioxen_vm._log`). Messages with ``context`` read ``message | k=v | k2=v2``,
as the original's console lines. History, progress and metrics are kept in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, Iterator, List, Optional

from . import _log
from ._log import ConsoleFormatter, sync_level

__all__ = ["VMLogger", "LogEntry", "ProgressTracker", "get_logger", "setup_global_logging",
           "integrate_with_curator_logger", "ConsoleFormatter", "sync_level"]

_MAX_HISTORY = 10_000


@dataclass
class LogEntry:
    """One record of a VMLogger's in-memory history."""

    timestamp: str
    level: str
    component: str
    message: str
    context: Optional[Dict[str, Any]] = None
    duration: Optional[float] = None


@dataclass
class ProgressTracker:
    """A running operation of ``start_progress``."""

    operation_id: str
    name: str
    total_steps: int
    current_step: int = 0
    start_time: float = field(default_factory=time.time)
    context: Optional[Dict[str, Any]] = None


def _format(message: str, context: Optional[Dict[str, Any]]) -> str:
    if not context:
        return str(message)
    return str(message) + "".join(f" | {k}={v}" for k, v in context.items())


class VMLogger:
    """The original's ``VMLogger``, writing no files (see the module docs)."""

    _instances: Dict[str, "VMLogger"] = {}
    _instances_lock = threading.Lock()

    def __init__(self, debug_mode: bool = False, component: str = "VM", log_dir: str = "logs",
                 enable_file_logging: bool = True) -> None:
        self.debug_mode = bool(debug_mode)
        self.component = str(component)
        self.log_dir = log_dir  # kept for compatibility; never created or written
        self.enable_file_logging = False
        self.logger = logging.getLogger(f"{_log.ROOT_LOGGER}.{self.component}")
        if self.debug_mode or _log._pylua_debug():
            self.logger.setLevel(logging.DEBUG)
        self._history: List[LogEntry] = []
        self._installs: List[Dict[str, Any]] = []
        self._metrics: List[Dict[str, Any]] = []
        self._progress: Dict[str, ProgressTracker] = {}
        self._lock = threading.Lock()
        sync_level()

    @classmethod
    def get_instance(cls, component: str = "VM", **kwargs: Any) -> "VMLogger":
        """One logger per component."""
        with cls._instances_lock:
            instance = cls._instances.get(component)
            if instance is None:
                instance = cls._instances[component] = cls(component=component, **kwargs)
            return instance

    def __repr__(self) -> str:
        return f"VMLogger(component={self.component!r}, debug_mode={self.debug_mode})"

    # --- logging ----------------------------------------------------------------------------

    def _emit(self, level: int, message: str, context: Optional[Dict[str, Any]],
              duration: Optional[float] = None, prefix: str = "") -> None:
        text = prefix + _format(message, context)
        entry = LogEntry(datetime.now().isoformat(), logging.getLevelName(level),
                         self.component, prefix + str(message), context, duration)
        with self._lock:
            self._history.append(entry)
            if len(self._history) > _MAX_HISTORY:
                del self._history[: len(self._history) - _MAX_HISTORY]
        self.logger.log(level, "%s", text, extra={"component": self.component},
                        stacklevel=3)

    def debug(self, message: str, context: Optional[Dict[str, Any]] = None) -> None:
        """Logs at DEBUG (shown when ``debug_mode`` or the logging config allows it)."""
        self._emit(logging.DEBUG, message, context)

    def info(self, message: str, context: Optional[Dict[str, Any]] = None) -> None:
        """Logs at INFO."""
        self._emit(logging.INFO, message, context)

    def warning(self, message: str, context: Optional[Dict[str, Any]] = None) -> None:
        """Logs at WARNING."""
        self._emit(logging.WARNING, message, context)

    def error(self, message: str, context: Optional[Dict[str, Any]] = None) -> None:
        """Logs at ERROR."""
        self._emit(logging.ERROR, message, context)

    def success(self, message: str, context: Optional[Dict[str, Any]] = None) -> None:
        """Logs at INFO with a ``SUCCESS: `` prefix (as the original)."""
        self._emit(logging.INFO, message, context, prefix="SUCCESS: ")

    # --- timing and progress -------------------------------------------------------------

    @contextlib.contextmanager
    def timed_operation(self, operation_name: str,
                        context: Optional[Dict[str, Any]] = None) -> Iterator[None]:
        """Logs the start and the end (with its duration) of a block."""
        start = time.perf_counter()
        self.debug(f"Starting {operation_name}", context)
        ok = False
        try:
            yield
            ok = True
        finally:
            duration = time.perf_counter() - start
            with self._lock:
                self._metrics.append({"operation": operation_name, "duration": duration,
                                      "success": ok, "timestamp": time.time()})
            if ok:
                self._emit(logging.DEBUG, f"Completed {operation_name} in {duration:.3f}s",
                           context, duration)
            else:
                self._emit(logging.ERROR, f"Failed {operation_name} after {duration:.3f}s",
                           context, duration)

    def start_progress(self, operation_id: str, name: str, total_steps: int,
                       context: Optional[Dict[str, Any]] = None) -> None:
        """Starts tracking an operation of ``total_steps`` steps."""
        with self._lock:
            self._progress[operation_id] = ProgressTracker(operation_id, name, total_steps,
                                                           context=context)
        self.info(f"Started {name} (0/{total_steps})", context)

    def update_progress(self, operation_id: str, steps: int = 1, message: Optional[str] = None,
                        context: Optional[Dict[str, Any]] = None) -> None:
        """Advances an operation, logging its progress and an ETA."""
        with self._lock:
            tracker = self._progress.get(operation_id)
            if tracker is None:
                return
            tracker.current_step = min(tracker.total_steps, tracker.current_step + steps)
            done, total = tracker.current_step, tracker.total_steps
            elapsed = time.time() - tracker.start_time
        eta = elapsed / done * (total - done) if done else 0.0
        text = f"{tracker.name}: {done}/{total} ({done * 100 // max(total, 1)}%)"
        if message:
            text += f" - {message}"
        self.info(f"{text} ETA {eta:.1f}s", context)
        if done >= total:
            with self._lock:
                self._progress.pop(operation_id, None)
            self.success(f"Completed {tracker.name} in {elapsed:.1f}s", context)

    def fail_progress(self, operation_id: str, error: Optional[str] = None) -> None:
        """Ends an operation as failed."""
        with self._lock:
            tracker = self._progress.pop(operation_id, None)
        if tracker is not None:
            self.error(f"Failed {tracker.name}" + (f": {error}" if error else ""))

    # --- installations, history, metrics (in memory) -------------------------------------

    def log_installation(self, package: str, version: str, success: bool,
                         duration: Optional[float] = None, error: Optional[str] = None,
                         context: Optional[Dict[str, Any]] = None) -> None:
        """Records a package installation (in memory) and logs it."""
        record = {"package": package, "version": version, "success": bool(success),
                  "duration": duration, "error": error, "timestamp": time.time(),
                  "context": context}
        with self._lock:
            self._installs.append(record)
        if success:
            self.success(f"Installed {package} {version}", context)
        else:
            self.error(f"Failed to install {package} {version}: {error}", context)

    def get_installation_history(self, package: Optional[str] = None, days: int = 30
                                 ) -> List[Dict[str, Any]]:
        """Installations recorded in the last ``days`` days (optionally of one package)."""
        since = time.time() - timedelta(days=days).total_seconds()
        with self._lock:
            return [dict(r) for r in self._installs if r["timestamp"] >= since
                    and (package is None or r["package"] == package)]

    def get_performance_metrics(self, operation: Optional[str] = None, hours: int = 24
                                ) -> Dict[str, Any]:
        """Count, total, average, min and max duration of timed operations."""
        since = time.time() - hours * 3600
        with self._lock:
            durations = [m["duration"] for m in self._metrics if m["timestamp"] >= since
                         and (operation is None or m["operation"] == operation)]
        if not durations:
            return {"count": 0}
        return {"count": len(durations), "total_duration": sum(durations),
                "average_duration": sum(durations) / len(durations),
                "min_duration": min(durations), "max_duration": max(durations)}

    def get_history(self) -> List[LogEntry]:
        """The in-memory history of this logger's records (newest last)."""
        with self._lock:
            return list(self._history)

    def cleanup_old_logs(self, days: int = 30) -> int:
        """Drops in-memory history older than ``days`` days; how many records went."""
        cutoff = (datetime.now() - timedelta(days=days)).isoformat()
        with self._lock:
            before = len(self._history)
            self._history = [e for e in self._history if e.timestamp >= cutoff]
            return before - len(self._history)

    def export_logs(self, output_file: Optional[str] = None) -> Dict[str, Any]:
        """The history as a dict; written as JSON to ``output_file`` only when one is given
        (the original wrote to the current directory by default; this never does)."""
        with self._lock:
            data = {"component": self.component, "exported_at": datetime.now().isoformat(),
                    "entries": [asdict(e) for e in self._history],
                    "installations": list(self._installs), "metrics": list(self._metrics)}
        if output_file is not None:
            with open(output_file, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, default=str)
        return data


def get_logger(component: str = "VM", debug_mode: bool = False, **kwargs: Any) -> VMLogger:
    """The VMLogger of ``component`` (created on first use)."""
    return VMLogger.get_instance(component, debug_mode=debug_mode, **kwargs)


def setup_global_logging(debug_mode: bool = False, log_dir: str = "logs"
                         ) -> Dict[str, VMLogger]:
    """Loggers ``vm``, ``curator``, ``environment``, ``network`` (no files)."""
    return {key: get_logger(component, debug_mode=debug_mode, log_dir=log_dir)
            for key, component in (("vm", "VM"), ("curator", "Curator"),
                                   ("environment", "Environment"), ("network", "Network"))}


def integrate_with_curator_logger(py_logger: logging.Logger, vm_logger: VMLogger) -> None:
    """Sends ``py_logger``'s records to ``vm_logger``'s logger as well."""
    class _Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            vm_logger.logger.handle(record)

    if not any(isinstance(h, _Forward) for h in py_logger.handlers):
        py_logger.addHandler(_Forward())
