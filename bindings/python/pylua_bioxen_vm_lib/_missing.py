"""What this version of bioxen_vm does not serve yet, and the error that says so.

Importing any module of the compatibility package always works; the error comes when a
feature that is not built is used (a constructor that would do real work, or a method).
"""

from bioxen_vm.exceptions import UnsupportedError

__all__ = ["NotAvailableError", "not_available"]

_WHY = {
    "xcpng": "XCP-ng VMs (vm_type='xcpng': XAPI provisioning, then SSH) are not built in this "
             "version of bioxen_vm; only 'basic' VMs are",
    "ssh": "SSH sessions (the 'ssh' VM kind) are not built in this version of bioxen_vm",
    "xapi": "the XAPI client of XCP-ng VMs (vm_type='xcpng') is not built in this version of "
            "bioxen_vm",
    "packages": "the specification only names it, without behaviour; bioxen_vm.packages "
                "manages environments, servers and dependencies",
    "cli": "the original's command-line interface never worked (cli.py is cut off mid-line, "
           "bioxen-luavm imports a module its wheel lacks) and is not provided by bioxen_vm",
}


class NotAvailableError(UnsupportedError):
    """A feature of pylua_bioxen_vm_lib 0.1.22 that this version of bioxen_vm does not serve.

    It is bioxen_vm's ``UnsupportedError``, so a ``LuaVMError`` (``except LuaVMError``
    catches it, as it catches every error of the library) and a ``NotImplementedError``.
    ``feature`` names what is missing.
    """

    def __init__(self, feature, what=None):
        self.feature = feature
        why = _WHY.get(feature, "%s is not built in this version of bioxen_vm" % feature)
        super().__init__("%s is not available: %s" % (what or feature, why))


# Tracebacks name it where users import it from.
NotAvailableError.__module__ = "pylua_bioxen_vm_lib.exceptions"


def not_available(feature, what=None):
    """Raise NotAvailableError for ``feature`` (``what``: the name that was used)."""
    raise NotAvailableError(feature, what)
