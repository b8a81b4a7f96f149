"""``pylua_bioxen_vm_lib.exceptions``: the original's exception classes (bioxen_vm's).

Same names and hierarchy as 0.1.22: everything is a ``LuaVMError``; ``AttachError``,
``DetachError``, ``SessionNotFoundError``, ``SessionAlreadyExistsError``,
``SessionStateError`` and ``IOThreadError`` are ``InteractiveSessionError`` kinds;
``ProcessRegistryError`` is a ``VMManagerError``; ``XCPngConnectionError`` is a direct
``LuaVMError``. They are the very classes bioxen_vm raises, so ``except`` clauses written
for either package catch the other's errors. bioxen_vm's own classes for statuses the
original had no class for (``UnsupportedError``, ``VMMemoryLimitError``, ...) are here as
well, and :class:`NotAvailableError` for what this version does not serve. Importing this
module prints nothing (the original ran stray test code at import).
"""

from bioxen_vm.exceptions import *  # noqa: F401,F403

from ._missing import NotAvailableError  # noqa: F401
