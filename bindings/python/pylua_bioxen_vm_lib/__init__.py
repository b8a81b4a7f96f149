"""pylua_bioxen_vm_lib: the original library's import paths, served by bioxen_vm.

Code written for ``pylua_bioxen_vm_lib`` 0.1.22 (or from its specification) imports this
package unchanged. Every name comes from :mod:`bioxen_vm` (the same classes, so
``isinstance`` checks and ``except`` clauses work across both names), laid out in the
original's modules:

=============================================  ============================================
module                                         names
=============================================  ============================================
``pylua_bioxen_vm_lib``                        ``create_vm``, ``create_manager``,
                                               ``create_interactive_manager``,
                                               ``create_interactive_session``, the classes and
                                               exceptions below, ``__version__``, and
                                               ``VMLogger`` (the spec imports it from here)
``.lua_process``                               ``LuaProcess``
``.networking``                                ``NetworkedLuaVM``, ``validate_port``,
                                               ``validate_host``, ``LuaScriptTemplate``
``.interactive_session``                       ``InteractiveSession``, ``SessionManager``
``.vm_manager``                                ``VMManager``, ``VMCluster``
``.exceptions``                                every exception class
``.logger``                                    ``VMLogger``, ``get_logger``, ...
``.xcp_ng_integration``, ``.xapi_client``      ``XCPngVM``, ``XAPIClient`` (real XAPI)
``.ssh_session``                               ``SSHSessionManager`` (the ssh kind)   
``.utils``, ``.utils.curator``, ``.env``,      the package layer: ``Curator``,
``.package_manager``                           ``PackageInstaller``, ``EnvironmentManager``,
                                               ... on :mod:`bioxen_vm.packages`
``.cli``, ``.cli_main``                        (not available)
=============================================  ============================================

What bioxen_vm does not serve yet (the CLI)
imports fine and raises :class:`~pylua_bioxen_vm_lib.exceptions.NotAvailableError` (a
``LuaVMError`` and ``NotImplementedError``) naming what is missing when it is used.
Importing prints nothing and writes no file.

Differences from 0.1.22 that migrating code may notice (all intentional):

* A VM is a persistent Lua state in this process: globals survive between calls, and
  ``execute_string("return 2 + 2")["stdout"]`` is ``"4"`` (returned values are printed as
  the Lua REPL prints them), as the specification says.
* Sessions return clean output: ``Value:\\t42\\n``, not the terminal's echo, prompts and
  escape codes. (The specification's ``Value: 42`` with a space was never right: Lua's
  ``print`` separates values with a tab.)
* ``__version__`` is ``"0.1.22"``, the version whose API this package reproduces, so
  version checks written for the original keep passing; bioxen_vm's own version is
  ``__bioxen_vm_version__``.
"""

import bioxen_vm as _bioxen_vm
from bioxen_vm import (  # noqa: F401
    AttachError,
    DetachError,
    InteractiveSession,
    InteractiveSessionError,
    IOThreadError,
    LuaNotFoundError,
    LuaProcess,
    LuaProcessError,
    LuaScriptTemplate,
    LuaSocketNotFoundError,
    LuaVMError,
    NetworkedLuaVM,
    NetworkingError,
    ProcessRegistryError,
    PTYError,
    ScriptGenerationError,
    SessionAlreadyExistsError,
    SessionManager,
    SessionNotFoundError,
    SessionStateError,
    VMCluster,
    VMConnectionError,
    VMManager,
    VMManagerError,
    VMTimeoutError,
    create_interactive_manager,
    create_interactive_session,
    create_manager,
    validate_host,
    validate_port,
)

from .logger import VMLogger
from .xcp_ng_integration import XCPngVM

#: The version of the original API this package reproduces (see the module docs).
__version__ = "0.1.22"
#: The version of bioxen_vm (the C library) serving it.
__bioxen_vm_version__ = _bioxen_vm.__version__
__author__ = "pylua_bioxen_vm_lib contributors"
__description__ = "The pylua_bioxen_vm_lib API, served by bioxen_vm"

__all__ = [
    "LuaProcess",
    "NetworkedLuaVM",
    "VMManager",
    "VMCluster",
    "InteractiveSession",
    "SessionManager",
    "LuaScriptTemplate",
    "validate_port",
    "validate_host",
    "LuaVMError",
    "LuaProcessError",
    "NetworkingError",
    "LuaNotFoundError",
    "LuaSocketNotFoundError",
    "VMConnectionError",
    "VMTimeoutError",
    "ScriptGenerationError",
    "InteractiveSessionError",
    "AttachError",
    "DetachError",
    "PTYError",
    "SessionNotFoundError",
    "SessionAlreadyExistsError",
    "SessionStateError",
    "IOThreadError",
    "ProcessRegistryError",
    "VMManagerError",
    "__version__",
    "create_vm",
    "create_manager",
    "create_interactive_manager",
    "create_interactive_session",
    "VMLogger",
]


def create_vm(vm_id="default", vm_type="basic", networked=False, persistent=False,
              debug_mode=False, lua_executable="lua", config=None, **options):
    """Creates a VM, as the original's factory.

    ``vm_type="basic"`` (the default) gives a ``LuaProcess`` (a ``NetworkedLuaVM`` with
    ``networked=True``): :func:`bioxen_vm.create_vm`. ``vm_type="xcpng"`` gives an
    unstarted :class:`~pylua_bioxen_vm_lib.xcp_ng_integration.XCPngVM` after checking
    ``config`` as the original did (``VMManagerError("Missing required configuration:
    xcp_host")``, ...); its ``start()`` deploys on the pool through XAPI. Other kinds and
    unknown names raise what bioxen_vm raises (``UnsupportedError`` / ``ValueError``).
    """
    if vm_type == "xcpng":
        return XCPngVM(vm_id, config)
    return _bioxen_vm.create_vm(vm_id, vm_type=vm_type, networked=networked,
                                persistent=persistent, debug_mode=debug_mode,
                                lua_executable=lua_executable, config=config, **options)
