"""``pylua_bioxen_vm_lib.logger``: ``VMLogger`` and the original's logging helpers.

Everything is bioxen_vm's (:mod:`bioxen_vm.logger`: records go to :mod:`logging`, nothing
is ever written to disk), with one compatibility addition: a ``VMLogger`` created with
``debug_mode=True`` shows its records on stderr in the original's console format
(``[YYYY-MM-DD HH:MM:SS][LEVEL][Component] message``) when logging has no handler
configured for it, as the original's did. An application that configures :mod:`logging`
keeps full control: then nothing is added.
"""

import logging
import sys

from bioxen_vm import logger as _bx_logger
from bioxen_vm.logger import (  # noqa: F401
    ConsoleFormatter,
    LogEntry,
    ProgressTracker,
    integrate_with_curator_logger,
    sync_level,
)


class _StderrHandler(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (so redirections are honoured)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(ConsoleFormatter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class VMLogger(_bx_logger.VMLogger):
    """bioxen_vm's ``VMLogger``; with ``debug_mode=True`` it also shows records on stderr
    when nothing else would (see the module docs)."""

    _instances = {}  # get_instance's registry, separate from bioxen_vm's

    def __init__(self, debug_mode=False, component="VM", log_dir="logs",
                 enable_file_logging=True):
        super().__init__(debug_mode=debug_mode, component=component, log_dir=log_dir,
                         enable_file_logging=enable_file_logging)
        if self.debug_mode and not self.logger.hasHandlers():
            self.logger.addHandler(_StderrHandler())


def get_logger(component="VM", debug_mode=False, **kwargs):
    """The VMLogger of ``component`` (created on first use)."""
    return VMLogger.get_instance(component, debug_mode=debug_mode, **kwargs)


def setup_global_logging(debug_mode=False, log_dir="logs"):
    """Loggers ``vm``, ``curator``, ``environment``, ``network`` (no files)."""
    return {key: get_logger(component, debug_mode=debug_mode, log_dir=log_dir)
            for key, component in (("vm", "VM"), ("curator", "Curator"),
                                   ("environment", "Environment"), ("network", "Network"))}
