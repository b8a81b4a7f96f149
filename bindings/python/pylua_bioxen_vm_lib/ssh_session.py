"""``pylua_bioxen_vm_lib.ssh_session``: an interactive Lua on a remote host over SSH.

``SSHSessionManager(host, username, password=None, key_file=None, port=22)`` keeps the
original's names and flow (``connect``, ``start_lua_session``, ``send_input``,
``read_output``, ``execute_command``, ``is_connected``, ``reconnect``, ``disconnect``, the
context manager), on bioxen_vm's ``ssh`` VM kind: one SSH connection, a persistent remote
``lua`` driven through the agent protocol (no PTY, no prompt scraping, no sleeps), and clean
output (no echo, no prompts, no escape codes).

Differences from the original, on purpose:

- **Host keys are verified.** The original accepted any key (paramiko's AutoAddPolicy). The
  key must be in ``known_hosts`` (default ``~/.ssh/known_hosts``, read only), or match
  ``host_key_fingerprint="SHA256:..."`` (as ``ssh-keygen -lf`` prints it); only
  ``host_key_policy="insecure-accept-any"`` turns the check off (logged as a warning). An
  unknown or changed key raises :class:`InteractiveSessionError` whose message names both
  fingerprints and these options.
- ``reconnect()`` starts Lua again (the original left the session inactive).
- A key file and a password may both be given: the key is tried first, then the password.
"""

from typing import Any, Optional

from bioxen_vm.exceptions import (  # noqa: F401  (original namespace)
    InteractiveSessionError,
    LuaVMError,
    VMManagerError,
)

_VM_ID = "ssh_lua"


class SSHSessionManager:
    """SSHSessionManager(host, username, password=None, key_file=None, port=22, **options).

    Keyword options (bioxen_vm's ssh VM options): ``known_hosts``, ``host_key_fingerprint``,
    ``host_key_policy``, ``key_passphrase``, ``use_agent``, ``lua_executable`` (default
    ``"lua"``), ``connect_timeout`` (seconds, default 30 as the original),
    ``keepalive_interval``.
    """

    def __init__(self, host: str, username: str, password: Optional[str] = None,
                 key_file: Optional[str] = None, port: int = 22, **options: Any) -> None:
        self.host = host
        self.username = username
        self._password = password
        self.key_file = key_file
        self.port = port
        self._options = dict(options)
        self.client: Any = None
        self.channel: Any = None
        self.connected = False
        self.session_active = False
        self._session: Any = None

    def __repr__(self) -> str:
        return "SSHSessionManager(host=%r, username=%r, port=%r)" % (
            self.host, self.username, self.port)

    def _vm_options(self) -> "tuple[str, dict]":
        o = dict(self._options)
        lua = o.pop("lua_executable", "lua")
        o.setdefault("connect_timeout", 30)
        o.update(vm_type="ssh", host=self.host, port=self.port, username=self.username)
        if self.key_file is not None:
            o["key_file"] = self.key_file
        if self._password is not None:
            o["password"] = self._password
        return lua, o

    def connect(self) -> bool:
        """Connects, checks the host key, authenticates and starts the remote agent."""
        if self.connected:
            return True
        if self._password is None and self.key_file is None and not self._options.get("use_agent"):
            raise InteractiveSessionError("No authentication method provided")
        from bioxen_vm.manager import VMManager

        lua, options = self._vm_options()
        manager = VMManager(max_workers=2, lua_executable=lua, **options)
        try:
            self._session = manager.create_interactive_vm(_VM_ID, auto_attach=False)
        except LuaVMError as exc:
            manager.close()
            text = str(exc)
            if "authentication" in text:
                raise InteractiveSessionError(f"SSH authentication failed: {text}") from exc
            raise InteractiveSessionError(f"SSH connection failed: {text}") from exc
        self.client = manager
        self.channel = self._session
        self.connected = True
        return True

    def start_lua_session(self) -> bool:
        """Makes the remote Lua session active (connecting first if needed)."""
        if not self.connected:
            self.connect()
        self.session_active = True
        return True

    def send_input(self, input_text: str) -> bool:
        """Sends one line (a newline is added when missing) to the remote Lua."""
        if not self.session_active:
            raise InteractiveSessionError("No active Lua session")
        if not input_text.endswith("\n"):
            input_text += "\n"
        self._session.send_input(input_text)
        return True

    def read_output(self, timeout: float = 1.0) -> str:
        """What the remote Lua printed, once it has evaluated its input (or after
        ``timeout`` seconds); ``""`` without an active session."""
        if not self.session_active:
            return ""
        out = self._session.read_output(timeout=timeout)
        return out or ""

    def execute_command(self, command: str, timeout: float = 5.0) -> str:
        """Sends ``command`` and returns its output (starting the session if needed)."""
        if not self.session_active:
            self.start_lua_session()
        self.send_input(command)
        return self.read_output(timeout)

    def is_connected(self) -> bool:
        return bool(self.connected and self.client is not None and not self.client.closed)

    def reconnect(self) -> bool:
        """Disconnects, connects again and starts Lua again (its state is lost)."""
        self.disconnect()
        self.connect()
        return self.start_lua_session()

    def disconnect(self) -> None:
        """Stops the remote Lua and closes the connection. Idempotent; never raises."""
        manager, self.client, self.channel, self._session = self.client, None, None, None
        self.connected = False
        self.session_active = False
        if manager is not None:
            try:
                manager.close()
            except LuaVMError:
                pass

    def __enter__(self) -> "SSHSessionManager":
        self.connect()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self.disconnect()
        return False
