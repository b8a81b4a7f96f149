"""``pylua_bioxen_vm_lib.vm_manager``: ``VMManager`` and ``VMCluster`` (bioxen_vm's).

A manager's VM and its interactive session share one Lua state (the original ran them as
two unrelated processes). ``vm_type="xcpng"`` raises bioxen_vm's ``UnsupportedError``
("VM type 'xcpng' is not built in this version"): the kind is not built yet.
"""

from bioxen_vm import (  # noqa: F401
    InteractiveSession,
    LuaProcess,
    NetworkedLuaVM,
    SessionManager,
    VMCluster,
    VMManager,
)
from bioxen_vm.exceptions import (  # noqa: F401  (the original module's namespace)
    InteractiveSessionError,
    ProcessRegistryError,
    SessionAlreadyExistsError,
    SessionNotFoundError,
    VMManagerError,
)

from .logger import VMLogger  # noqa: F401

