"""Networking helpers of the original: argument checks and Lua script templates.

Both are served by the C library (``bioxen_vm_validate_port``, ``_validate_host``,
``bioxen_vm_script_template``) with the original's messages; the networked VMs themselves
are :class:`~bioxen_vm.NetworkedLuaVM` and a manager's ``networked=True`` VMs.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from ._native import backend


def validate_port(port: int) -> None:
    """Raises ``ValueError("Port must be between 1024 and 65535")`` outside that range.

    A non-integer raises TypeError (as the original's comparison did).
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be int, not {type(port).__name__}")
    if not -(1 << 63) <= port < (1 << 63):
        raise ValueError("Port must be between 1024 and 65535")
    backend.validate_port(port)


def validate_host(host: Any) -> None:
    """Raises ``ValueError("Host cannot be empty")`` for None, empty or blank hosts."""
    if host is None:
        raise ValueError("Host cannot be empty")
    if not isinstance(host, str):
        raise TypeError(f"host must be str, not {type(host).__name__}")
    data = host.encode("utf-8")
    if b"\0" in data:
        raise ValueError("host must not contain NUL characters")
    backend.validate_host(data)


def _template(name: str, options: Dict[str, Any]) -> str:
    clean = {k: v for k, v in options.items() if v is not None}
    try:
        encoded = json.dumps(clean, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"template values cannot be passed as JSON: {exc}") from None
    return backend.script_template(name.encode("ascii"), encoded).decode("utf-8", "replace")


class LuaScriptTemplate:
    """The original's script templates (``bioxen_vm_script_template``).

    Each returns Lua source for LuaSocket and never runs it; every value is a quoted Lua
    literal in the source, so nothing given can change what the script does.
    """

    @staticmethod
    def simple_echo_server(port: int, bind: str = "127.0.0.1") -> str:
        """A server answering every line with ``Echo: <line>`` (forever)."""
        return _template("simple_echo_server", {"port": port, "bind": bind})

    @staticmethod
    def heartbeat_client(host: str, port: int, interval: float = 1, count: int = 10) -> str:
        """A client sending ``count`` heartbeats, ``interval`` seconds apart."""
        return _template("heartbeat_client", {"host": host, "port": port,
                                              "interval": interval, "count": count})

    @staticmethod
    def http_client_template(url: str, method: str = "GET") -> str:
        """An HTTP request of ``method`` to ``url``."""
        return _template("http_client_template", {"url": url, "method": method})
