"""``pylua_bioxen_vm_lib.utils.curator``: the package layer (not available yet).

The ``Package`` record is here as in the original. Everything that would install, remove or
look up Lua packages (``Curator``, ``get_curator``, ``quick_install``,
``bootstrap_lua_environment``, and the specification's ``PackageInstaller`` and
``search_packages``, which the original never had) raises :class:`NotAvailableError` when
used: package management is not built in this version of bioxen_vm. Nothing here writes a
file (the original's ``Curator`` created ``./manifest.json`` and ``./logs/``).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import List, Optional

from .._missing import NotAvailableError, not_available


@dataclass
class Package:
    """Represents a curated package with metadata (the original's dataclass, same fields)."""

    name: str
    version: str = "latest"
    category: str = "utility"
    description: str = ""
    dependencies: List[str] = None
    installed: bool = False
    install_date: Optional[datetime] = None
    source: str = "luarocks"
    priority: int = 5

    def __post_init__(self):
        if self.dependencies is None:
            self.dependencies = []


class Curator:
    """Curator(lua_path=None, manifest_path=None, packages_catalog=None, profiles_catalog=None).

    Not available: constructing one raises :class:`NotAvailableError`.
    """

    def __init__(self, lua_path=None, manifest_path=None, packages_catalog=None,
                 profiles_catalog=None):
        not_available("packages", "Curator")


def get_curator(lua_path=None, manifest_path=None, packages_catalog=None, profiles_catalog=None):
    not_available("packages", "get_curator")


def quick_install(packages, profile=None, packages_catalog=None, profiles_catalog=None):
    not_available("packages", "quick_install")


def bootstrap_lua_environment(profile="standard", packages_catalog=None, profiles_catalog=None):
    not_available("packages", "bootstrap_lua_environment")


class PackageInstaller:
    """Named by the specification, never part of the original. Not available."""

    def __init__(self, *args, **kwargs):
        not_available("packages", "PackageInstaller")


def search_packages(query, *args, **kwargs):
    """Named by the specification, never part of the original. Not available."""
    not_available("packages", "search_packages")
