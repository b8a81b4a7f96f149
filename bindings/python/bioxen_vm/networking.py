"""Networking helpers of the original: argument checks and Lua script templates.

``validate_port``/``validate_host`` and :class:`LuaScriptTemplate` are pure Python. The
templates return Lua source for LuaSocket (they never run it); unlike the original, every
value is quoted as a Lua string literal, so no argument can inject code.
"""

from __future__ import annotations

from typing import Any


def validate_port(port: int) -> None:
    """Raises ``ValueError("Port must be between 1024 and 65535")`` outside that range.

    A non-integer raises TypeError (as the original's comparison did).
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be int, not {type(port).__name__}")
    if not 1024 <= port <= 65535:
        raise ValueError("Port must be between 1024 and 65535")


def validate_host(host: Any) -> None:
    """Raises ``ValueError("Host cannot be empty")`` for None, empty or blank hosts."""
    if host is None or not str(host).strip():
        raise ValueError("Host cannot be empty")


def lua_string(value: Any) -> str:
    """``value`` as a Lua string literal (every byte that needs it escaped)."""
    out = ['"']
    for byte in str(value).encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def _number(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    return repr(value)


class LuaScriptTemplate:
    """Lua source templates for LuaSocket (they return code; they never run it)."""

    @staticmethod
    def simple_echo_server(port: int) -> str:
        """A server that answers every line with ``Echo: <line>`` (forever)."""
        validate_port(port)
        return f"""local socket = require("socket")
local server = assert(socket.bind("*", {port}))
print("Echo server listening on port {port}")
while true do
    local client = server:accept()
    local line, err = client:receive()
    if line then client:send("Echo: " .. line .. "\\n") end
    client:close()
end
"""

    @staticmethod
    def heartbeat_client(host: str, port: int, interval: float = 1, count: int = 10) -> str:
        """A client that sends ``count`` heartbeats, ``interval`` seconds apart."""
        validate_host(host)
        validate_port(port)
        return f"""local socket = require("socket")
local host, port = {lua_string(host)}, {port}
for i = 1, {_number(count, "count")} do
    local client = socket.connect(host, port)
    if client then
        client:send("heartbeat " .. i .. "\\n")
        client:close()
        print("Heartbeat " .. i .. " sent")
    else
        print("Heartbeat " .. i .. " failed")
    end
    socket.sleep({_number(interval, "interval")})
end
"""

    @staticmethod
    def http_client_template(url: str, method: str = "GET") -> str:
        """An HTTP request with LuaSocket's ``socket.http`` (``method`` is used)."""
        return f"""local http = require("socket.http")
local ltn12 = require("ltn12")
local body = {{}}
local ok, code = http.request{{url = {lua_string(url)}, method = {lua_string(method)},
                               sink = ltn12.sink.table(body)}}
print("HTTP " .. {lua_string(method)} .. " " .. {lua_string(url)} .. ": " .. tostring(code))
print(table.concat(body))
"""
