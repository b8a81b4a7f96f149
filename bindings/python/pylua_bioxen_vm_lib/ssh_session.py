"""``pylua_bioxen_vm_lib.ssh_session``: SSH sessions to a remote Lua (not available yet).

bioxen_vm's ``ssh`` VM kind is not built in this version. Constructing an
``SSHSessionManager`` works (no connection is made, as in the original); connecting, starting
Lua and sending or reading raise :class:`NotAvailableError`.
"""

from bioxen_vm.exceptions import InteractiveSessionError, VMManagerError  # noqa: F401  (original namespace)

from ._missing import NotAvailableError, not_available  # noqa: F401


class SSHSessionManager:
    """SSHSessionManager(host, username, password=None, key_file=None, port=22)."""

    def __init__(self, host, username, password=None, key_file=None, port=22):
        self.host = host
        self.username = username
        self._password = password
        self.key_file = key_file
        self.port = port
        self.client = None
        self.channel = None
        self.connected = False
        self.session_active = False

    def __repr__(self):
        return "SSHSessionManager(host=%r, username=%r, port=%r)" % (
            self.host, self.username, self.port)

    def connect(self):
        not_available("ssh", "SSHSessionManager.connect")

    def start_lua_session(self):
        not_available("ssh", "SSHSessionManager.start_lua_session")

    def send_input(self, input_text):
        not_available("ssh", "SSHSessionManager.send_input")

    def read_output(self, timeout=1.0):
        not_available("ssh", "SSHSessionManager.read_output")

    def execute_command(self, command, timeout=5.0):
        not_available("ssh", "SSHSessionManager.execute_command")

    def reconnect(self):
        not_available("ssh", "SSHSessionManager.reconnect")

    def is_connected(self):
        return False

    def disconnect(self):
        """Nothing was connected: a no-op."""
        self.connected = False
        self.session_active = False

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.disconnect()
        return False
