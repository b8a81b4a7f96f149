"""``pylua_bioxen_vm_lib.interactive_session``: ``InteractiveSession`` and
``SessionManager`` (bioxen_vm's).

A session is a Lua REPL without a terminal: output comes back clean (no echo, prompts or
escape codes), and ``read_output(timeout)`` waits until the input sent so far is evaluated,
so no ``time.sleep`` is needed (the spec's sleeps still work).
"""

from bioxen_vm import InteractiveSession, SessionManager  # noqa: F401
from bioxen_vm.exceptions import (  # noqa: F401  (the original module's namespace)
    InteractiveSessionError,
    SessionAlreadyExistsError,
    SessionNotFoundError,
)

from .logger import VMLogger  # noqa: F401

