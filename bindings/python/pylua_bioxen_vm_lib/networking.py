"""``pylua_bioxen_vm_lib.networking``: ``NetworkedLuaVM``, ``validate_port``,
``validate_host`` and ``LuaScriptTemplate`` (bioxen_vm's).

``NetworkedLuaVM`` works as a basic VM; its LuaSocket modes (``start_server``,
``start_client``, ``start_p2p``) check their arguments as the original did and then raise
bioxen_vm's ``UnsupportedError`` until the C library exports its networking functions.
"""

from bioxen_vm import (  # noqa: F401
    LuaProcess,
    LuaScriptTemplate,
    NetworkedLuaVM,
    validate_host,
    validate_port,
)
from bioxen_vm.exceptions import (  # noqa: F401  (the original module's namespace)
    LuaSocketNotFoundError,
    NetworkingError,
    VMConnectionError,
)

from .logger import VMLogger  # noqa: F401

