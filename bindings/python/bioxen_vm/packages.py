"""Package environments: isolated luarocks trees that VMs of every kind can use.

An environment is a directory holding one luarocks tree, its own luarocks configuration
(that tree, the servers it names and no others), its own ``HOME`` and working directory,
and a lockfile once :meth:`Environment.lock` wrote one. It is named by a path, or by a name
under the data directory (``$BIOXEN_VM_DATA_DIR``, else ``$XDG_DATA_HOME/bioxen_vm``, else
``~/.local/share/bioxen_vm``), which is created only when an environment is created::

    from bioxen_vm import packages, LuaProcess

    env = packages.Environment.create(path="/srv/envs/science", servers=["/srv/rocks"])
    env.install("bio_compute")                  # or a constraint: version=">= 1.0, < 2.0"
    env.lock()                                  # <env>/bioxen.lock: versions and file hashes
    vm = LuaProcess(env=env)                    # require() sees the environment's modules only
    other = packages.Environment.create(path="/srv/envs/copy", servers=["/srv/rocks"])
    other.sync(env.lockfile)                    # the same tree, byte for byte

Every operation runs in the C library (``bioxen_vm_packages_*``); failures raise
:class:`~bioxen_vm.exceptions.PackageError` kinds carrying the library's error object as
``details`` (luarocks' ``exit_status``, ``stdout`` and ``stderr``, the unmet
``constraint``, the ``available`` versions, ...). Long operations take ``progress``: a
callable that receives each event (a dict) on the calling thread; returning ``False`` or
raising cancels the operation (:class:`~bioxen_vm.exceptions.JobCancelledError` or what it
raised; luarocks is stopped). ``ssh`` (a dict of ssh
VM options: ``host``, ``username``, ``key_file``, ...) puts the environment on that host.

Module functions mirror the methods: :func:`install`, :func:`remove`, :func:`list`,
:func:`search`, :func:`lock`, :func:`sync`, :func:`health_check`, :func:`bootstrap`,
:func:`profiles`, :func:`environments`, :func:`remove_environment`.
"""

from __future__ import annotations

import builtins
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

from ._errors import error_from_status
from ._native import backend as _backend
from ._signatures import SIGNATURES

__all__ = [
    "Environment", "Progress", "create_environment", "open_environment", "environments",
    "remove_environment", "install", "remove", "list", "show", "search", "lock", "sync",
    "bootstrap", "health_check", "profiles",
]

#: A progress callback: called with each event, e.g. ``{"event": "step", "step":
#: "luarocks", "rock": "inspect"}`` or ``{"event": "output", "stream": "stdout", "line":
#: "..."}``. Returning ``False`` (or raising) cancels the operation.
Progress = Callable[[Dict[str, Any]], Optional[bool]]
EnvLike = Union["Environment", str, "os.PathLike[str]"]


def _ctypes_call(name: str, text: bytes, progress: Optional[Progress], events: list
                 ) -> "tuple[int, Optional[str], bytes]":
    import ctypes

    from ._backend_ctypes import PROGRESS_FN, Bytes

    fn = _backend.functions[name]
    out = Bytes()
    ref = ctypes.byref(out)
    if "progress_fn" in SIGNATURES[name][2]:
        def tramp(event: bytes, _ud: Any) -> int:
            events.append(event)
            return _deliver(progress, events)
        cb = PROGRESS_FN(tramp) if progress is not None else PROGRESS_FN()
        status = fn(text, cb, None, ref)
    else:
        status = fn(text, ref)
    message = _backend.last_error_message() if status else None
    try:
        body = ctypes.string_at(out.data, out.len) if out.len else b""
    finally:
        _backend.functions["bioxen_vm_bytes_free"](ref)
    return status, message, body


def _cffi_call(name: str, text: bytes, progress: Optional[Progress], events: list
               ) -> "tuple[int, Optional[str], bytes]":
    ffi = _backend.ffi
    fn = _backend.functions[name]
    out = ffi.new("bioxen_vm_bytes *")
    if "progress_fn" in SIGNATURES[name][2]:
        def tramp(event: Any, _ud: Any) -> int:
            events.append(ffi.string(event))
            return _deliver(progress, events)
        cb = (ffi.callback("bioxen_vm_progress_fn", tramp, onerror=lambda *_: 1)
              if progress is not None else ffi.NULL)
        status = fn(text, cb, ffi.NULL, out)
    else:
        status = fn(text, out)
    message = _backend.last_error_message() if status else None
    try:
        body = ffi.buffer(out.data, out.len)[:] if out.len else b""
    finally:
        _backend.functions["bioxen_vm_bytes_free"](out)
    return status, message, body


def _deliver(progress: Optional[Progress], events: list) -> int:
    """Hands the newest event to ``progress`` and answers the library: 0 goes on, 1 cancels
    (``progress`` returned ``False`` or raised; what it raised is kept, and raised once the
    call returns, instead of unwinding into the library)."""
    raw = events.pop()
    if progress is None:
        return 0
    if _failed(events):
        return 1
    try:
        if progress(json.loads(raw)) is False:
            return 1
    except BaseException as exc:  # noqa: BLE001 - re-raised after the C call
        events.append(_Raised(exc))
        return 1
    return 0


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _failed(events: list) -> bool:
    return any(isinstance(e, _Raised) for e in events)


def _call(op: str, request: Mapping[str, Any], progress: Optional[Progress] = None) -> Any:
    """Calls ``bioxen_vm_packages_<op>`` with ``request`` (None values left out)."""
    clean = {k: v for k, v in request.items() if v is not None}
    try:
        text = json.dumps(clean, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the request cannot be passed as JSON: {exc}") from None
    events: list = []
    call = _cffi_call if _backend.name == "cffi" else _ctypes_call
    status, message, body = call(f"bioxen_vm_packages_{op}", text, progress, events)
    reply = json.loads(body) if body else None
    for e in events:
        if isinstance(e, _Raised):  # the callback raised: that cancelled the call
            raise e.exc
    if status:
        exc = error_from_status(status, message)
        exc.details = reply if isinstance(reply, dict) else {}  # type: ignore[attr-defined]
        raise exc
    return reply


def _env_text(env: EnvLike) -> str:
    if isinstance(env, Environment):
        return env.path
    return os.fspath(env)


def _timeout(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else float(timeout)


class Environment:
    """A package environment (see the module docs). ``Environment(env, ssh=None)`` opens an
    existing one (a name or a path); :meth:`create` makes a new one."""

    def __init__(self, env: EnvLike, *, ssh: Optional[Mapping[str, Any]] = None) -> None:
        self.ssh: Optional[Dict[str, Any]] = dict(ssh) if ssh is not None else None
        self.info: Dict[str, Any] = _call("open", {"env": _env_text(env), "ssh": self.ssh})

    @classmethod
    def _of(cls, info: Dict[str, Any], ssh: Optional[Mapping[str, Any]]) -> "Environment":
        self = cls.__new__(cls)
        self.ssh = dict(ssh) if ssh is not None else None
        self.info = info
        return self

    @classmethod
    def create(cls, name: Optional[str] = None, path: Optional[Union[str, "os.PathLike[str]"]] = None,
               *, lua_version: str = "5.4", servers: Iterable[str] = (),
               interpreter: Optional[str] = None, include_system_modules: bool = False,
               luarocks: Optional[str] = None, lua_incdir: Optional[str] = None,
               cache: Union[bool, str, None] = None, exist_ok: bool = False,
               ssh: Optional[Mapping[str, Any]] = None) -> "Environment":
        """Creates an environment: ``name`` (under the data directory) or ``path`` (a new or
        empty directory). ``servers``: directories, ``file://`` or ``http(s)://`` URLs, the
        only servers it installs from. ``cache``: True/None the machine's shared cache of
        built rocks, False none, or a directory. ``exist_ok``: open it when it exists."""
        info = _call("create", {
            "name": name, "path": None if path is None else os.fspath(path),
            "lua_version": lua_version, "servers": builtins.list(servers),
            "interpreter": interpreter, "include_system_modules": include_system_modules,
            "luarocks": luarocks, "lua_incdir": lua_incdir, "cache": cache,
            "exist_ok": exist_ok or None, "ssh": None if ssh is None else dict(ssh)})
        return cls._of(info, ssh)

    # --- facts ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The environment's directory (on its host, for an ssh one)."""
        return self.info["path"]

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def lua_version(self) -> str:
        return self.info["lua_version"]

    @property
    def servers(self) -> List[str]:
        return builtins.list(self.info.get("servers") or [])

    @property
    def lockfile(self) -> str:
        """Where :meth:`lock` writes the lockfile (``<env>/bioxen.lock``)."""
        return os.path.join(self.path, "bioxen.lock")

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        where = f", host={self.info['host']!r}" if self.info.get("host") else ""
        return f"Environment({self.path!r}, lua_version={self.lua_version!r}{where})"

    def vm_options(self) -> Dict[str, Any]:
        """The VM option that makes a VM use this environment (``{"env": path}``)."""
        return {"env": self.path}

    def _req(self, **kw: Any) -> Dict[str, Any]:
        return dict(kw, env=self.path, ssh=self.ssh)

    # --- operations -----------------------------------------------------------------------

    def install(self, rock: str, version: Optional[str] = None, *, force: bool = False,
                locked: bool = False, cache: Optional[bool] = None,
                timeout: Optional[float] = None, progress: Optional[Progress] = None
                ) -> Dict[str, Any]:
        """Installs ``rock`` (``version``: a version or a constraint such as ``">= 1.0,
        < 2.0"``). ``force`` reinstalls; ``locked`` installs what the lockfile pins.
        Returns ``{"rock", "version", "already_installed", "installed": [...],
        "luarocks": {...} or None}``."""
        return _call("install", self._req(rock=rock, version=version, force=force or None,
                                          locked=locked or None, cache=cache,
                                          timeout=_timeout(timeout)), progress)

    def remove(self, rock: str, version: Optional[str] = None, *, force: bool = False,
               timeout: Optional[float] = None, progress: Optional[Progress] = None
               ) -> Dict[str, Any]:
        """Removes ``rock`` (``force``: even when other rocks depend on it)."""
        return _call("remove", self._req(rock=rock, version=version, force=force or None,
                                         timeout=_timeout(timeout)), progress)

    def list(self) -> List[Dict[str, Any]]:
        """The installed rocks: ``[{"name", "version", "modules", "commands",
        "dependencies"}]``."""
        return _call("list", self._req())

    def show(self, rock: str) -> Dict[str, Any]:
        """One installed rock in detail (summary, modules, dependencies, files, hash)."""
        return _call("show", self._req(rock=rock))

    def is_installed(self, rock: str) -> bool:
        return any(r["name"] == rock.lower() for r in self.list())

    def lock(self, path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Dict[str, Any]:
        """Writes the lockfile (to ``path``, else :attr:`lockfile`) and returns it."""
        return _call("lock", self._req(path=None if path is None else os.fspath(path)))

    def sync(self, lockfile: Union[str, "os.PathLike[str]", Mapping[str, Any], None] = None, *,
             cache: Optional[bool] = None, timeout: Optional[float] = None,
             progress: Optional[Progress] = None) -> Dict[str, Any]:
        """Makes the environment hold exactly what ``lockfile`` pins (a path, a lockfile
        dict, or None for the environment's own)."""
        if isinstance(lockfile, Mapping):
            req = self._req(lock=dict(lockfile))
        else:
            req = self._req(lockfile=None if lockfile is None else os.fspath(lockfile))
        req.update(cache=cache, timeout=_timeout(timeout))
        return _call("sync", req, progress)

    def bootstrap(self, profile: str = "standard", *, catalogs: Iterable[str] = (),
                  lock: bool = True, timeout: Optional[float] = None,
                  progress: Optional[Progress] = None) -> Dict[str, Any]:
        """Installs a profile's packages (the original's six, extended or replaced by the
        catalogs) and locks the environment."""
        return _call("bootstrap", self._req(profile=profile, catalogs=builtins.list(catalogs),
                                            lock=lock, timeout=_timeout(timeout)), progress)

    def health_check(self) -> Dict[str, Any]:
        """``{"ok", "checks": {"luarocks", "interpreter", "headers", "servers", "modules",
        "drift"}}``."""
        return _call("health", self._req())

    def search(self, query: str, *, catalogs: Iterable[str] = (), limit: int = 0
               ) -> List[Dict[str, Any]]:
        """Ranked search over the catalogs and this environment's servers."""
        return search(query, catalogs=catalogs, env=self, limit=limit)

    def delete(self) -> None:
        """Removes the environment's directory."""
        _call("remove_env", {"env": self.path})


# --- module functions ---------------------------------------------------------------------


def create_environment(name: Optional[str] = None, path: Optional[str] = None, **kw: Any
                       ) -> Environment:
    """:meth:`Environment.create`."""
    return Environment.create(name, path, **kw)


def open_environment(env: EnvLike, *, ssh: Optional[Mapping[str, Any]] = None) -> Environment:
    """:class:`Environment` ``(env)``: opens an existing environment."""
    return Environment(env, ssh=ssh)


def _as_env(env: EnvLike, ssh: Optional[Mapping[str, Any]] = None) -> Environment:
    return env if isinstance(env, Environment) else Environment(env, ssh=ssh)


def environments() -> List[Dict[str, Any]]:
    """The environments under the data directory."""
    return _call("environments", {})


def remove_environment(env: EnvLike) -> None:
    """Removes an environment (only a directory that holds one)."""
    _call("remove_env", {"env": _env_text(env)})


def install(env: EnvLike, rock: str, version: Optional[str] = None, **kw: Any
            ) -> Dict[str, Any]:
    """:meth:`Environment.install`."""
    return _as_env(env).install(rock, version, **kw)


def remove(env: EnvLike, rock: str, version: Optional[str] = None, **kw: Any) -> Dict[str, Any]:
    """:meth:`Environment.remove`."""
    return _as_env(env).remove(rock, version, **kw)


def list(env: EnvLike) -> List[Dict[str, Any]]:  # noqa: A001 - the API's name
    """:meth:`Environment.list`."""
    return _as_env(env).list()


def show(env: EnvLike, rock: str) -> Dict[str, Any]:
    """:meth:`Environment.show`."""
    return _as_env(env).show(rock)


def lock(env: EnvLike, path: Optional[str] = None) -> Dict[str, Any]:
    """:meth:`Environment.lock`."""
    return _as_env(env).lock(path)


def sync(env: EnvLike, lockfile: Union[str, Mapping[str, Any], None] = None, **kw: Any
         ) -> Dict[str, Any]:
    """:meth:`Environment.sync`."""
    return _as_env(env).sync(lockfile, **kw)


def bootstrap(env: EnvLike, profile: str = "standard", **kw: Any) -> Dict[str, Any]:
    """:meth:`Environment.bootstrap`."""
    return _as_env(env).bootstrap(profile, **kw)


def health_check(env: EnvLike) -> Dict[str, Any]:
    """:meth:`Environment.health_check`."""
    return _as_env(env).health_check()


def search(query: str, *, catalogs: Iterable[str] = (), servers: Iterable[str] = (),
           env: Optional[EnvLike] = None, limit: int = 0) -> List[Dict[str, Any]]:
    """Ranked search: ``[{"name", "score", "matched", "version", "versions", "summary",
    "category", "labels", "modules", "priority", "sources"}]``, best first. ``catalogs``:
    catalog files (default: the JSON files in ``<data dir>/catalogs``); ``servers`` and
    ``env``'s servers are searched by name."""
    r = _call("search", {"query": query, "catalogs": builtins.list(catalogs),
                         "servers": builtins.list(servers),
                         "env": None if env is None else _env_text(env), "limit": limit})
    return r["results"]


def profiles(catalogs: Iterable[str] = ()) -> Dict[str, Dict[str, Any]]:
    """The profiles in effect: the original's six (minimal, standard, full, development,
    production, networking), extended or replaced by the catalogs."""
    return _call("profiles", {"catalogs": builtins.list(catalogs)})

