"""``pylua_bioxen_vm_lib.env``: ``EnvironmentManager``, the original's environment
profiles, on bioxen_vm's package environments (:mod:`bioxen_vm.packages`).

``EnvironmentManager.PROFILES`` is the original's table, verbatim; the constructor checks
the profile name as the original did (``ValueError`` for an unknown one). The packages of
a profile go into the package environment the compatibility layer uses (``env``, else
``$BIOXEN_VM_ENV``, else ``default``; see :mod:`pylua_bioxen_vm_lib.utils.curator`), never
into the system's luarocks tree. What changed, on purpose: nothing is written at
construction (the original created ``~/.config/pylua_vm/``): the configuration file is
written by :meth:`~EnvironmentManager.save_config` and :meth:`set_profile` only;
``validate_environment`` checks without writing a test file; the Lua paths are the
environment's, for its Lua version (the original hard-coded 5.4 directories);
``last_updated`` is a time, not the host name.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from datetime import datetime
from typing import Any, Dict, List, Optional

from bioxen_vm.exceptions import LuaNotFoundError, PackageError

from .logger import VMLogger  # noqa: F401  (original namespace)
from .utils.curator import default_environment

__all__ = ["EnvironmentManager", "LuaNotFoundError"]


def _first_line(cmd: List[str]) -> Optional[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


class EnvironmentManager:
    """EnvironmentManager(profile="standard", config_path=None, debug_mode=False), plus
    ``env`` and ``servers`` for the package environment (see the module docs)."""

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

    def __init__(self, profile="standard", config_path=None, debug_mode=False, *,
                 env: Optional[str] = None, servers=None):
        if profile not in self.PROFILES:
            available = ", ".join(self.PROFILES.keys())
            raise ValueError(f"Unknown profile '{profile}'. Available profiles: {available}")
        self.profile = profile
        self.debug_mode = bool(debug_mode)
        self._env_ref = env
        self._servers = servers
        self.config_path = os.fspath(config_path) if config_path else self._default_config_path()
        self.lua_executable = next(
            (n for n in ("lua", "lua5.4", "lua5.3", "lua5.2", "lua5.1") if shutil.which(n)), None)
        self.lua_version = _first_line([self.lua_executable, "-v"]) if self.lua_executable else None
        self.luarocks_version = _first_line(["luarocks", "--version"]) if shutil.which("luarocks") else None
        self.config = self._load_config()

    # --- configuration --------------------------------------------------------------------

    @staticmethod
    def _default_config_path() -> str:
        home = os.path.expanduser("~")
        system = platform.system()
        if system == "Darwin":
            return os.path.join(home, "Library", "Application Support", "PyLuaVM", "environment.json")
        if system == "Windows":
            return os.path.join(home, "AppData", "Local", "PyLuaVM", "environment.json")
        return os.path.join(home, ".config", "pylua_vm", "environment.json")

    def _load_config(self) -> Dict[str, Any]:
        try:
            with open(self.config_path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_config(self) -> None:
        """Writes the configuration (``profile``, ``last_updated``) to ``config_path``."""
        self.config.update(profile=self.profile, last_updated=datetime.now().isoformat())
        os.makedirs(os.path.dirname(os.path.abspath(self.config_path)), exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2, sort_keys=True)

    def reset_config(self) -> None:
        self.config = {}
        self.profile = "standard"

    def set_profile(self, profile, save_config=True) -> None:
        if profile not in self.PROFILES:
            available = ", ".join(self.PROFILES.keys())
            raise ValueError(f"Unknown profile '{profile}'. Available profiles: {available}")
        self.profile = profile
        if save_config:
            self.save_config()

    # --- profiles -------------------------------------------------------------------------

    def get_profile_info(self, name=None) -> Dict[str, Any]:
        name = name or self.profile
        if name not in self.PROFILES:
            raise ValueError(f"Unknown profile '{name}'")
        return dict(self.PROFILES[name], name=name, is_current=(name == self.profile))

    def list_available_profiles(self) -> List[Dict[str, Any]]:
        return [self.get_profile_info(n) for n in self.PROFILES]

    def get_recommended_packages(self) -> List[str]:
        return list(self.PROFILES[self.profile]["packages"])

    def is_development_mode(self) -> bool:
        return bool(self.PROFILES[self.profile]["development_tools"])

    def is_production_mode(self) -> bool:
        return self.profile == "production"

    def is_networking_enabled(self) -> bool:
        return bool(self.PROFILES[self.profile]["networking"])

    # --- the environment ------------------------------------------------------------------

    def _env(self, create=False):
        return default_environment(self._env_ref, self._servers, create=create)

    def validate_environment(self) -> List[str]:
        """Problems found (an empty list when none); nothing is written."""
        errors = []
        if not self.lua_executable:
            errors.append("Lua interpreter not found in PATH")
        needs_luarocks = self.PROFILES[self.profile]["luarocks_required"]
        if needs_luarocks and not shutil.which("luarocks"):
            errors.append("LuaRocks not found (required by profile '%s')" % self.profile)
        directory = os.path.dirname(os.path.abspath(self.config_path))
        existing = directory
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK):
            errors.append(f"Configuration directory not writable: {directory}")
        env = self._env()
        if env is not None:
            health = env.health_check()
            for name, check in health["checks"].items():
                if not check.get("ok"):
                    errors.append(f"environment {env.path}: {name}: {check.get('message')}")
        return errors

    def get_system_info(self) -> Dict[str, Any]:
        env = self._env()
        return {
            "platform": {"system": platform.system(), "release": platform.release(),
                         "machine": platform.machine(), "python": platform.python_version()},
            "lua": {"executable": self.lua_executable, "version": self.lua_version},
            "luarocks": {"available": self.luarocks_version is not None,
                         "version": self.luarocks_version},
            "environment": {"profile": self.profile,
                            "path": env.path if env is not None else None,
                            "lua_version": env.lua_version if env is not None else None},
            "validation": self.validate_environment(),
        }

    def get_cross_platform_path(self, p) -> str:
        return os.path.normpath(os.path.expanduser(os.fspath(p)))

    def get_lua_paths(self) -> Dict[str, str]:
        """``{"lua_path", "lua_cpath"}``: the environment's directories for its Lua version."""
        env = self._env()
        version = env.lua_version if env is not None else "5.4"
        tree = os.path.join(env.path, "tree") if env is not None else ""
        lua = os.path.join(tree, "share", "lua", version)
        lib = os.path.join(tree, "lib", "lua", version)
        return {"lua_path": f"{lua}/?.lua;{lua}/?/init.lua", "lua_cpath": f"{lib}/?.so"}

    def install_profile_packages(self) -> Dict[str, bool]:
        """Installs the profile's packages into the environment: ``{package: bool}``.
        Without luarocks: ``LuaNotFoundError``, as the original."""
        packages = self.PROFILES[self.profile]["packages"]
        if packages and not shutil.which("luarocks"):
            raise LuaNotFoundError("LuaRocks not found. Install with: apt-get install luarocks")
        result = {}
        env = self._env(create=bool(packages))
        for name in packages:
            try:
                env.install(name)
                result[name] = True
            except PackageError:
                result[name] = False
        return result

    def check_package_availability(self, pkgs=None) -> Dict[str, bool]:
        """``{package: installed?}`` for ``pkgs`` (default: the profile's)."""
        pkgs = list(pkgs if pkgs is not None else self.PROFILES[self.profile]["packages"])
        env = self._env()
        have = {r["name"] for r in env.list()} if env is not None else set()
        return {p: p.lower() in have for p in pkgs}

    def get_environment_variables(self) -> Dict[str, str]:
        """LUA_PATH/LUA_CPATH of the environment, and LUA_DEV_MODE, LUA_DEBUG,
        LUA_PRODUCTION, LUA_NETWORKING as the profile says."""
        paths = self.get_lua_paths()
        out = {"LUA_PATH": paths["lua_path"], "LUA_CPATH": paths["lua_cpath"]}
        if self.is_development_mode():
            out["LUA_DEV_MODE"] = "1"
        if self.debug_mode:
            out["LUA_DEBUG"] = "1"
        if self.is_production_mode():
            out["LUA_PRODUCTION"] = "1"
        if self.is_networking_enabled():
            out["LUA_NETWORKING"] = "1"
        return out

    def setup_environment_variables(self) -> Dict[str, str]:
        variables = self.get_environment_variables()
        os.environ.update(variables)
        return variables

    def create_env_summary(self) -> str:
        info = self.get_profile_info()
        env = self._env()
        lines = [
            f"Profile: {self.profile} - {info['description']}",
            f"Packages: {', '.join(info['packages']) or '(none)'}",
            f"Lua: {self.lua_version or 'not found'}",
            f"LuaRocks: {self.luarocks_version or 'not found'}",
            f"Environment: {env.path if env is not None else '(not created yet)'}",
        ]
        return "\n".join(lines)
