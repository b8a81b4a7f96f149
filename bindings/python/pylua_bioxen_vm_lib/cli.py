"""``pylua_bioxen_vm_lib.cli``: the original's "Lua Package Curator" CLI (not available).

In 0.1.22 this module could not even be imported (the file is cut off mid-line). Here it
imports, and ``main()`` raises :class:`NotAvailableError`: the CLI drives the package
layer, which is not built in this version of bioxen_vm.
"""

from ._missing import NotAvailableError, not_available  # noqa: F401


def main(argv=None):
    not_available("packages", "pylua_bioxen_vm_lib.cli")
