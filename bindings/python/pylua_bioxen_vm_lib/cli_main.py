"""``pylua_bioxen_vm_lib.cli_main``: the original's ``bioxen-luavm`` entry point (not available).

In 0.1.22 it always failed (it imports a module the wheel does not ship). Here ``main()``
raises :class:`NotAvailableError`.
"""

from ._missing import NotAvailableError, not_available  # noqa: F401


def main():
    not_available("cli", "pylua_bioxen_vm_lib.cli_main.main")
