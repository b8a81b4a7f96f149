"""``pylua_bioxen_vm_lib.package_manager``: named by the specification only.

The original 0.1.22 had no such module. ``PackageInstaller`` and ``search_packages`` (the
specification's package example) are the working ones of
:mod:`pylua_bioxen_vm_lib.utils.curator`. ``PackageManager``, ``RepositoryManager`` and
``DependencyResolver`` were only ever names in the specification, with no described
behaviour: using them raises :class:`NotAvailableError` (:mod:`bioxen_vm.packages` is what
manages environments, servers and dependencies).
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
