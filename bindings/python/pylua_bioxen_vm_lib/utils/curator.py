"""``pylua_bioxen_vm_lib.utils.curator``: the original's package layer, on bioxen_vm's
package environments (:mod:`bioxen_vm.packages`).

``Curator``, ``get_curator``, ``quick_install``, ``bootstrap_lua_environment`` and
``Package`` keep the original's names, signatures, catalogue injection (``packages_catalog``:
name -> :class:`Package`; ``profiles_catalog``: profile -> package names), manifest schema
and ``health_check`` keys; the specification's ``PackageInstaller`` and
``search_packages`` are here too. What changed, on purpose:

* Packages go into a package environment, never into ``~/.luarocks``: ``env`` (a name or a
  path), else ``$BIOXEN_VM_ENV``, else the environment named ``default`` under the data
  directory (``$BIOXEN_VM_DATA_DIR``, else ``~/.local/share/bioxen_vm``). It is created on
  the first install, with the servers given as ``servers`` or in ``$BIOXEN_VM_ROCKS_SERVERS``
  (separated by ``;``); nothing is installed from a server nobody named. VMs use the same
  environment through their ``env`` option or ``$BIOXEN_VM_ENV``.
* The manifest is written only where ``manifest_path`` says (never in the current
  directory); without it, it lives in memory. No log file is written: records go to the
  ``curator`` logger of :mod:`logging`, with no handler added.
* ``curate_environment`` knows the original's six profiles (minimal, standard, full,
  development, production, networking) when the catalogues do not name them;
  ``get_recommendations`` no longer raises ``TypeError``; ``list_installed_packages``
  reports what is installed (the original misparsed ``luarocks list``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional

from bioxen_vm import packages as _packages
from bioxen_vm.exceptions import LuaVMError, PackageEnvironmentError, PackageError

__all__ = ["Package", "Curator", "get_curator", "quick_install", "bootstrap_lua_environment",
           "PackageInstaller", "search_packages", "default_environment"]

log = logging.getLogger("curator")

#: The variable listing the servers of an environment created on first use.
SERVERS_VAR = "BIOXEN_VM_ROCKS_SERVERS"


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


def _servers(servers: Optional[Iterable[str]]) -> List[str]:
    if servers is not None:
        return list(servers)
    return [s for s in os.environ.get(SERVERS_VAR, "").split(";") if s.strip()]


def default_environment(env: Optional[str] = None, servers: Optional[Iterable[str]] = None,
                        create: bool = True) -> Optional[_packages.Environment]:
    """The environment the compatibility layer installs into (see the module docs); None
    when it does not exist and ``create`` is False."""
    ref = env or os.environ.get("BIOXEN_VM_ENV") or "default"
    try:
        return _packages.Environment(ref)
    except PackageEnvironmentError:
        if not create:
            return None
    where = {"path": ref} if ("/" in ref or ref in (".", "..")) else {"name": ref}
    return _packages.Environment.create(servers=_servers(servers), exist_ok=True, **where)


def _constraint(version: Optional[str]) -> Optional[str]:
    """The original's version argument as a constraint ("latest" and "" mean any)."""
    if version is None or version.strip() in ("", "latest"):
        return None
    return version.strip()


_DELTAS = {"dev": 120000000, "scm": 110000000, "cvs": 100000000, "rc": -1000,
           "pre": -10000, "beta": -100000, "alpha": -1000000}


def _version_key(v: str):
    """A version as luarocks parses it: (components, revision)."""
    v = v.strip().lower()
    m = re.match(r"^(.*)-(\d+)$", v)
    rev = None
    if m:
        v, rev = m.group(1), int(m.group(2))
    parts: List[float] = []
    i = 0
    for tok in re.findall(r"\d+|[a-z]+", v):
        if tok.isdigit():
            if i < len(parts):
                parts[i] += int(tok) / 100000
            else:
                parts.append(float(tok))
            i += 1
        else:
            d = _DELTAS.get(tok, ord(tok[0]) / 1000)
            if i < len(parts):
                parts[i] = d
            else:
                parts.append(d)
    return parts, rev


def _cmp(a: str, b: str) -> int:
    (pa, ra), (pb, rb) = _version_key(a), _version_key(b)
    n = max(len(pa), len(pb))
    pa, pb = pa + [0.0] * (n - len(pa)), pb + [0.0] * (n - len(pb))
    if pa != pb:
        return -1 if pa < pb else 1
    if ra is not None and rb is not None and ra != rb:
        return -1 if ra < rb else 1
    return 0


def version_satisfies(installed: str, constraint: Optional[str]) -> bool:
    """Whether ``installed`` meets ``constraint`` (``>=``, ``>``, ``<=``, ``<``, ``=``,
    ``==``, ``~=``, ``~>``, comma-separated; None, "" and "latest" meet anything)."""
    c = _constraint(constraint)
    if c is None:
        return True
    for item in c.split(","):
        item = item.strip()
        op = ""
        while item and item[0] in "<>=~!":
            op, item = op + item[0], item[1:]
        want = item.strip()
        if not want:
            return False
        if op == "~>":
            (pi, _), (pw, _) = _version_key(installed), _version_key(want)
            if pi[:len(pw)] + [0.0] * max(0, len(pw) - len(pi)) != pw:
                return False
            continue
        r = _cmp(installed, want)
        ok = {"": r == 0, "=": r == 0, "==": r == 0, "~=": r != 0, "!=": r != 0, ">": r > 0,
              ">=": r >= 0, "<": r < 0, "<=": r <= 0}.get(op)
        if not ok:
            return False
    return True


def _find_lua() -> Optional[str]:
    for candidate in ("/usr/local/bin/lua", "/usr/bin/lua", "/opt/lua/bin/lua"):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    for name in ("lua", "lua5.4", "lua5.3"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Curator:
    """Curator(lua_path=None, manifest_path=None, packages_catalog=None, profiles_catalog=None)
    as the original, plus ``env`` and ``servers`` (see the module docs)."""

    def __init__(self, lua_path=None, manifest_path=None, packages_catalog=None,
                 profiles_catalog=None, *, env: Optional[str] = None,
                 servers: Optional[Iterable[str]] = None):
        self.packages_catalog: Dict[str, Package] = dict(packages_catalog or {})
        self.profiles_catalog: Dict[str, List[str]] = dict(profiles_catalog or {})
        self.manifest_path = None if manifest_path is None else os.fspath(manifest_path)
        self._env_ref = env
        self._servers = None if servers is None else list(servers)
        self._env: Optional[_packages.Environment] = None
        self.lua_path = lua_path or self._lua_from_env() or _find_lua()
        self.manifest = self._load_manifest()

    # --- environment and manifest --------------------------------------------------------

    def _lua_from_env(self) -> Optional[str]:
        e = default_environment(self._env_ref, self._servers, create=False)
        if e is None:
            return None
        return shutil.which(e.info.get("interpreter") or "") or None

    @property
    def environment(self) -> _packages.Environment:
        """The package environment (created on first use)."""
        if self._env is None:
            self._env = default_environment(self._env_ref, self._servers)
        return self._env

    def _lua_version(self) -> str:
        e = default_environment(self._env_ref, self._servers, create=False)
        return e.lua_version if e is not None else "5.4"

    def _load_manifest(self) -> Dict[str, Any]:
        if self.manifest_path and os.path.isfile(self.manifest_path):
            try:
                with open(self.manifest_path) as f:
                    data = json.load(f)
                if isinstance(data, dict) and "packages" in data:
                    return data
            except (OSError, ValueError) as exc:
                log.warning("manifest %s unreadable (%s); starting a new one", self.manifest_path, exc)
        now = datetime.now().isoformat()
        return {"version": "1.0", "created": now, "lua_version": self._lua_version(),
                "packages": {}, "profiles": {}, "last_updated": now}

    def _save_manifest(self) -> None:
        self.manifest["last_updated"] = datetime.now().isoformat()
        if not self.manifest_path:
            return
        directory = os.path.dirname(os.path.abspath(self.manifest_path))
        os.makedirs(directory, exist_ok=True)
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.manifest, f, indent=2, default=str)
        os.replace(tmp, self.manifest_path)

    def _record(self, pkg: Package) -> None:
        entry = asdict(pkg)
        entry["install_date"] = pkg.install_date.isoformat() if pkg.install_date else None
        self.manifest["packages"][pkg.name] = entry
        self._save_manifest()

    # --- the original's methods -----------------------------------------------------------

    def _installed(self) -> Dict[str, str]:
        e = default_environment(self._env_ref, self._servers, create=False)
        if e is None:
            return {}
        return {r["name"]: r["version"] for r in e.list()}

    def is_package_installed(self, name: str, version: Optional[str] = None) -> bool:
        """Whether ``name`` is installed (and meets ``version``, a constraint)."""
        have = self._installed().get(str(name).lower())
        return have is not None and version_satisfies(have, version)

    def install_package(self, name: str, version: str = "latest", force: bool = False) -> bool:
        """Installs ``name`` (its catalogue dependencies first); True on success."""
        pkg = self.packages_catalog.get(name) or Package(name, version)
        if not force and self.is_package_installed(name, version if version != "latest" else pkg.version):
            log.info("%s is already installed", name)
            return True
        for dep in pkg.dependencies:
            if not self.is_package_installed(dep) and not self.install_package(dep):
                log.error("dependency %s of %s failed to install", dep, name)
                return False
        want = version if version != "latest" else pkg.version
        try:
            r = self.environment.install(name, _constraint(want), force=force)
        except (PackageError, LuaVMError) as exc:
            log.error("installing %s failed: %s", name, exc)
            return False
        pkg = Package(**{**asdict(pkg), "version": r.get("version") or want, "installed": True,
                         "install_date": datetime.now()})
        self._record(pkg)
        log.info("installed %s %s", name, pkg.version)
        return True

    def remove_package(self, name: str) -> bool:
        """Removes ``name``; True on success."""
        try:
            self.environment.remove(name)
        except (PackageError, LuaVMError) as exc:
            log.error("removing %s failed: %s", name, exc)
            return False
        self.manifest["packages"].pop(name, None)
        self._save_manifest()
        return True

    def get_lua_env(self) -> Dict[str, str]:
        """``{"LUA_PATH", "LUA_CPATH"}`` of the environment (its own directories only, for
        its Lua version)."""
        e = self.environment
        v = e.lua_version
        tree = os.path.join(e.path, "tree")
        lua = os.path.join(tree, "share", "lua", v)
        lib = os.path.join(tree, "lib", "lua", v)
        return {"LUA_PATH": f"{lua}/?.lua;{lua}/?/init.lua", "LUA_CPATH": f"{lib}/?.so"}

    def verify_local_package_installation(self, name: str) -> bool:
        """Whether the rock's directory is in the environment's tree."""
        e = default_environment(self._env_ref, self._servers, create=False)
        if e is None:
            return False
        return os.path.isdir(os.path.join(e.path, "tree", "lib", "luarocks",
                                          f"rocks-{e.lua_version}", str(name).lower()))

    def list_installed_packages(self) -> List[Dict[str, str]]:
        """``[{"name", "version"}]`` of what is installed."""
        return [{"name": n, "version": v} for n, v in sorted(self._installed().items())]

    def _profiles(self) -> Dict[str, List[str]]:
        merged = {name: list(p["packages"]) for name, p in _packages.profiles().items()}
        merged.update({k: list(v) for k, v in self.profiles_catalog.items()})
        merged.update({k: list(v) for k, v in self.manifest.get("profiles", {}).items()})
        return merged

    def curate_environment(self, profile: str = "standard") -> bool:
        """Installs every package of ``profile``; True when all installed."""
        profiles = self._profiles()
        if profile not in profiles:
            log.error("Unknown profile: %s. Available profiles: %s", profile, sorted(profiles))
            return False
        ok = True
        for name in profiles[profile]:
            ok = self.install_package(name) and ok
        return ok

    def get_available_profiles(self) -> List[str]:
        return sorted(self._profiles())

    def cleanup_orphaned_packages(self) -> List[str]:
        """Installed rocks that no catalogue or profile names and no installed rock needs
        (only reported, as in the original: nothing is removed)."""
        e = default_environment(self._env_ref, self._servers, create=False)
        if e is None:
            return []
        rocks = e.list()
        needed = {d for r in rocks for d in r.get("dependencies", {})}
        named = set(self.packages_catalog) | {p for ps in self._profiles().values() for p in ps}
        return sorted(r["name"] for r in rocks if r["name"] not in needed | named)

    def get_recommendations(self, installed: Optional[Iterable[str]] = None) -> List[Package]:
        """Catalogue packages worth installing: the missing dependencies of installed ones,
        then those of priority 7 and above; each once, highest priority first."""
        have = set(installed) if installed is not None else set(self._installed())
        out: Dict[str, Package] = {}
        for name in have:
            for dep in (self.packages_catalog.get(name) or Package(name)).dependencies:
                if dep not in have:
                    out.setdefault(dep, self.packages_catalog.get(dep) or Package(dep))
        for name, pkg in self.packages_catalog.items():
            if pkg.priority >= 7 and name not in have:
                out.setdefault(name, pkg)
        return sorted(out.values(), key=lambda p: (-p.priority, p.name))

    def health_check(self) -> Dict[str, Any]:
        """The original's keys (luarocks_available, lua_version, installed_packages,
        manifest_valid, catalog_size, available_profiles, timestamp,
        critical_packages_ratio), plus ``environment``: the environment's health check."""
        e = default_environment(self._env_ref, self._servers, create=False)
        env_health = e.health_check() if e is not None else None
        luarocks = shutil.which("luarocks") is not None
        if env_health is not None:
            luarocks = bool(env_health["checks"]["luarocks"]["ok"])
        installed = self._installed()
        critical = [n for n, p in self.packages_catalog.items() if p.priority >= 8]
        ratio = (sum(1 for n in critical if n in installed) / len(critical)) if critical else 1.0
        return {
            "luarocks_available": luarocks,
            "lua_version": self._lua_version(),
            "installed_packages": len(installed),
            "manifest_valid": isinstance(self.manifest.get("packages"), dict),
            "catalog_size": len(self.packages_catalog),
            "available_profiles": len(self._profiles()),
            "timestamp": datetime.now().isoformat(),
            "critical_packages_ratio": ratio,
            "environment": env_health,
        }


def get_curator(lua_path=None, manifest_path=None, packages_catalog=None, profiles_catalog=None,
                **kw: Any) -> Curator:
    """A :class:`Curator` (the original's factory)."""
    return Curator(lua_path, manifest_path, packages_catalog, profiles_catalog, **kw)


def quick_install(packages, profile=None, packages_catalog=None, profiles_catalog=None,
                  **kw: Any) -> bool:
    """Installs ``packages`` (and ``profile``'s); True when everything installed."""
    c = Curator(packages_catalog=packages_catalog, profiles_catalog=profiles_catalog, **kw)
    ok = True
    if profile:
        ok = c.curate_environment(profile)
    for name in packages or []:
        ok = c.install_package(name) and ok
    return ok


def bootstrap_lua_environment(profile="standard", packages_catalog=None, profiles_catalog=None,
                              **kw: Any) -> bool:
    """Health check, then the profile installed and the environment locked; True on
    success (False when luarocks is missing or the profile unknown, as the original)."""
    c = Curator(packages_catalog=packages_catalog, profiles_catalog=profiles_catalog, **kw)
    if shutil.which("luarocks") is None:
        log.error("luarocks is not installed")
        return False
    if profile not in c.get_available_profiles():
        log.error("Unknown profile: %s", profile)
        return False
    if not c.curate_environment(profile):
        return False
    try:
        c.environment.lock()
    except PackageError as exc:
        log.error("locking the environment failed: %s", exc)
        return False
    for rec in c.get_recommendations():
        log.info("recommended: %s (%s)", rec.name, rec.description)
    return True


class PackageInstaller:
    """The specification's installer: ``PackageInstaller().install_package("bio_compute")``.

    ``PackageInstaller(env=None, servers=None, catalogs=None)``: the environment as
    :class:`Curator` finds it. Methods return True on success (False, with the reason
    logged, on failure), as the specification's examples expect.
    """

    def __init__(self, env: Optional[str] = None, servers: Optional[Iterable[str]] = None,
                 catalogs: Optional[Iterable[str]] = None):
        self._env_ref = env
        self._servers = None if servers is None else list(servers)
        self.catalogs = list(catalogs or [])
        self._env: Optional[_packages.Environment] = None

    @property
    def environment(self) -> _packages.Environment:
        if self._env is None:
            self._env = default_environment(self._env_ref, self._servers)
        return self._env

    def install_package(self, name: str, version: Optional[str] = None, force: bool = False) -> bool:
        try:
            self.environment.install(name, _constraint(version), force=force)
            return True
        except (PackageError, LuaVMError) as exc:
            log.error("installing %s failed: %s", name, exc)
            return False

    def update_package(self, name: str) -> bool:
        """Installs the newest version the servers have."""
        try:
            self.environment.install(name)
            return True
        except (PackageError, LuaVMError) as exc:
            log.error("updating %s failed: %s", name, exc)
            return False

    def remove_package(self, name: str, force: bool = False) -> bool:
        try:
            self.environment.remove(name, force=force)
            return True
        except (PackageError, LuaVMError) as exc:
            log.error("removing %s failed: %s", name, exc)
            return False

    def is_installed(self, name: str) -> bool:
        e = default_environment(self._env_ref, self._servers, create=False)
        return e is not None and e.is_installed(name)

    def list_installed(self) -> List[Dict[str, Any]]:
        e = default_environment(self._env_ref, self._servers, create=False)
        return e.list() if e is not None else []

    def search(self, query: str) -> List[Dict[str, Any]]:
        return search_packages(query, catalogs=self.catalogs, env=self._env_ref, servers=self._servers)


def search_packages(query: str, catalogs: Optional[Iterable[str]] = None, env: Optional[str] = None,
                    servers: Optional[Iterable[str]] = None, limit: int = 0) -> List[Dict[str, Any]]:
    """Ranked search over the catalogues and the servers (the environment's, and those in
    ``servers`` or ``$BIOXEN_VM_ROCKS_SERVERS``): a list of dicts, best first."""
    e = default_environment(env, servers, create=False)
    extra = _servers(servers) if e is None else []
    return _packages.search(query, catalogs=catalogs or [], servers=extra,
                            env=e, limit=limit)

