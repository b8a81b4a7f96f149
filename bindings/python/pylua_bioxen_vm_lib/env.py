"""``pylua_bioxen_vm_lib.env``: environment profiles (the package layer, not available yet).

``EnvironmentManager.PROFILES`` is the original's table, verbatim. Constructing an
``EnvironmentManager`` checks the profile name as the original did (``ValueError`` for an
unknown one) and then raises :class:`NotAvailableError`: environments and luarocks installs
are not built in this version of bioxen_vm. Nothing is written (the original created
``~/.config/pylua_vm/`` at construction).
"""

from bioxen_vm.exceptions import LuaNotFoundError  # noqa: F401  (original namespace)

from ._missing import NotAvailableError, not_available  # noqa: F401
from .logger import VMLogger  # noqa: F401


class EnvironmentManager:
    """EnvironmentManager(profile="standard", config_path=None, debug_mode=False)."""

    # Environment profiles with their characteristics
    PROFILES = {
        'minimal': {
            'description': 'Minimal environment with core Lua only',
            'packages': [],
            'luarocks_required': False,
            'development_tools': False,
            'networking': False
        },
        'standard': {
            'description': 'Standard environment with curated essential packages',
            'packages': ['lua-cjson', 'luafilesystem', 'inspect'],
            'luarocks_required': True,
            'development_tools': True,
            'networking': False
        },
        'full': {
            'description': 'Full environment with all curated packages',
            'packages': ['lua-cjson', 'luafilesystem', 'penlight', 'inspect', 'luasocket', 'lpeg'],
            'luarocks_required': True,
            'development_tools': True,
            'networking': True
        },
        'development': {
            'description': 'Development environment with testing and debugging tools',
            'packages': ['lua-cjson', 'luafilesystem', 'penlight', 'inspect', 'busted', 'luassert'],
            'luarocks_required': True,
            'development_tools': True,
            'networking': False
        },
        'production': {
            'description': 'Production environment with optimized, stable packages',
            'packages': ['lua-cjson', 'luafilesystem', 'penlight'],
            'luarocks_required': True,
            'development_tools': False,
            'networking': False
        },
        'networking': {
            'description': 'Network-focused environment for distributed systems',
            'packages': ['lua-cjson', 'luasocket', 'http', 'penlight'],
            'luarocks_required': True,
            'development_tools': False,
            'networking': True
        }
    }

    def __init__(self, profile="standard", config_path=None, debug_mode=False):
        if profile not in self.PROFILES:
            available = ", ".join(self.PROFILES.keys())
            raise ValueError(f"Unknown profile '{profile}'. Available profiles: {available}")
        not_available("packages", "EnvironmentManager")
