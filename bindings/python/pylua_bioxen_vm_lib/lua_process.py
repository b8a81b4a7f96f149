"""``pylua_bioxen_vm_lib.lua_process``: ``LuaProcess``, the basic VM (bioxen_vm's).

A ``LuaProcess`` is a persistent, sandboxed Lua 5.4 state inside this process (the original
started a new ``lua -e`` per call, so nothing persisted); results are the original's dict
(``stdout``, ``stderr``, ``return_code``, ``success``) plus ``values``, ``error`` and
``duration``.
"""

from bioxen_vm import InteractiveSession, LuaProcess  # noqa: F401
from bioxen_vm.exceptions import (  # noqa: F401  (the original module's namespace)
    LuaNotFoundError,
    LuaProcessError,
    ScriptGenerationError,
)

from .logger import VMLogger  # noqa: F401
from .utils.curator import Curator  # noqa: F401

