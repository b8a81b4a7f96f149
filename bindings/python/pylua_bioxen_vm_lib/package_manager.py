"""``pylua_bioxen_vm_lib.package_manager``: named by the specification only.

The original 0.1.22 had no such module. Its names are here so that code written from the
specification imports; using any of them raises :class:`NotAvailableError`.
"""

from ._missing import NotAvailableError, not_available  # noqa: F401
from .utils.curator import PackageInstaller, search_packages  # noqa: F401


class PackageManager:
    def __init__(self, *args, **kwargs):
        not_available("packages", "PackageManager")


class RepositoryManager:
    def __init__(self, *args, **kwargs):
        not_available("packages", "RepositoryManager")


class DependencyResolver:
    def __init__(self, *args, **kwargs):
        not_available("packages", "DependencyResolver")
