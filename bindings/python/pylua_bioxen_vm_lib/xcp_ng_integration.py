"""``pylua_bioxen_vm_lib.xcp_ng_integration``: the original's ``XCPngVM``, deploying for real.

As in the original, constructing an ``XCPngVM(vm_id, config)`` checks the configuration
(``xcp_host``, ``xcp_username``, ``xcp_password``, ``template_name``, in that order, each
missing one raising ``VMManagerError("Missing required configuration: <key>")``) and makes
no network call. ``start()`` deploys ``"<vm_id>_lua_vm"`` from the template through XAPI
(:class:`bioxen_vm.XcpngVM`: clone, provision, start, wait for the guest's IP and SSH, then
Lua over SSH), and sets ``vm_uuid``, ``vm_ip`` and ``session_active``. Every failure tears
down what was made (the original leaked the VM); calling ``start()`` twice does not make
a second VM. ``stop()`` shuts the VM down and destroys it with its disks, unless the
config says ``persistent``.

Config: the original's keys, plus everything :mod:`bioxen_vm.xcpng` takes
(``tls_fingerprint``, ``guest_port``, ``expected_ip_cidr``, ``boot_timeout``, ...);
``vm_username`` defaults to ``root`` as in the original; ``vm_config`` may hold
``vcpus``, ``memory_mb``, ``network``, ``sr``, ``full_copy``. ``package_env``,
``rocks_servers`` and ``luarocks`` (this module only) are the guest's package environment,
its servers and its luarocks for :meth:`XCPngVM.install_package`, which installs through
:mod:`bioxen_vm.packages` over SSH.

Intentional differences: TLS is verified (pin the host's certificate with
``tls_fingerprint``); ``execute_string`` runs the code as a chunk on the guest and returns
its real stdout and stderr (``{"stdout", "stderr"}``, as the original's keys);
``install_package`` refuses names that are not plain package names before anything is sent.
"""

import logging
import re

import bioxen_vm
from bioxen_vm.exceptions import (  # noqa: F401  (original namespace)
    InteractiveSessionError,
    LuaVMError,
    VMManagerError,
    VMTimeoutError,
    XCPngConnectionError,
)

from ._missing import NotAvailableError, not_available  # noqa: F401
from .ssh_session import SSHSessionManager  # noqa: F401
from .utils.curator import Curator, _servers  # noqa: F401
from .xapi_client import XAPIClient


REQUIRED_CONFIG = ("xcp_host", "xcp_username", "xcp_password", "template_name")
#: Keys of this module only (not passed to the library).
LOCAL_KEYS = ("luarocks", "package_env", "rocks_servers")
_log = logging.getLogger("pylua_bioxen_vm_lib.xcp_ng_integration")
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class XCPngVM:
    """XCPngVM(vm_id, config=None): an XCP-ng VM deployed from a template."""

    def __init__(self, vm_id, config=None):
        config = config or {}
        for key in REQUIRED_CONFIG:
            if key not in config:
                raise VMManagerError("Missing required configuration: %s" % key)
        self.vm_id = vm_id
        self.name = vm_id
        self.config = config
        tls = {k: config[k] for k in ("tls_fingerprint", "ca_file") if config.get(k)}
        self.xapi_client = XAPIClient(config["xcp_host"], config["xcp_username"],
                                      config["xcp_password"],
                                      verify_ssl=not config.get("insecure", False), **tls)
        self.vm_uuid = None
        self.vm_ip = None
        self.ssh_session = None
        self.session_active = False
        self.curator = None

    def __repr__(self):
        return "XCPngVM(vm_id=%r, host=%r, session_active=%r)" % (
            self.vm_id, self.config.get("xcp_host"), self.session_active)

    def _library_config(self):
        c = {k: v for k, v in self.config.items() if k not in LOCAL_KEYS}
        c.setdefault("vm_name", "%s_lua_vm" % self.vm_id)
        c.setdefault("vm_username", "root")
        return c

    def start(self):
        """Deploys the VM and opens the Lua session on it (a no-op when it runs)."""
        if self.session_active:
            return True
        vm = bioxen_vm.XcpngVM(self.vm_id, self._library_config())
        try:
            vm.start()
        except VMTimeoutError as e:
            # The original's words for a guest without an address.
            if "did not get IP address within" in str(e):
                raise VMManagerError(str(e)) from None
            raise
        info = vm.info()
        self.ssh_session = vm
        self.vm_uuid = info.get("vm_uuid")
        self.vm_ip = info.get("vm_ip")
        self.session_active = True
        return True

    def _vm(self):
        if not self.session_active or self.ssh_session is None:
            raise InteractiveSessionError("No active session")
        return self.ssh_session

    def send_input(self, input_text):
        """Sends a line to the Lua session on the guest; True."""
        vm = self._vm()
        try:
            vm.send_input(input_text)
            return True
        except LuaVMError as e:
            raise InteractiveSessionError("Failed to send input: %s" % e) from None

    def read_output(self, timeout=1.0):
        """The session's output so far (waiting up to ``timeout`` for it to be idle)."""
        vm = self._vm()
        try:
            return vm.read_output(timeout) or ""
        except LuaVMError as e:
            raise InteractiveSessionError("Failed to read output: %s" % e) from None

    def execute_string(self, lua_code, timeout=None):
        """Runs ``lua_code`` on the guest (starting the VM first if needed):
        ``{"stdout", "stderr"}``; a failure is reported in ``stderr``."""
        try:
            if not self.session_active:
                self.start()
            r = self.ssh_session.execute_string(lua_code, timeout=timeout)
            return {"stdout": r.get("stdout", ""), "stderr": r.get("stderr", "")}
        except Exception as e:  # the original's contract: errors land in stderr
            return {"stdout": "", "stderr": str(e)}

    def install_package(self, package_name):
        """Installs the rock ``package_name`` on the guest, by luarocks there over SSH (every
        argument quoted), into the guest's package environment (config ``package_env``,
        default ``"default"``, created on first use for the guest's Lua with the servers in
        config ``rocks_servers`` or ``$BIOXEN_VM_ROCKS_SERVERS``, and ``luarocks``), then
        adds that environment to the running session's module paths; whether it
        succeeded (a failure is logged with luarocks' exit status and stderr)."""
        vm = self._vm()
        if not isinstance(package_name, str) or not PACKAGE_NAME.match(package_name):
            raise InteractiveSessionError("Invalid package name: %r" % (package_name,))
        try:
            env = self._package_env(vm)
            env.install(package_name, timeout=600)
            code = ("local p, c = ... "
                    "if not package.path:find(p, 1, true) then package.path = p .. ';' .. "
                    "package.path end "
                    "if not package.cpath:find(c, 1, true) then package.cpath = c .. ';' .. "
                    "package.cpath end")
            tree, v = env.info["tree"], env.lua_version
            paths = "%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua" % (tree, v, tree, v)
            cpaths = "%s/lib/lua/%s/?.so" % (tree, v)
            vm.execute_string(code, args=[paths, cpaths], timeout=30)
        except LuaVMError as e:
            details = getattr(e, "details", {}) or {}
            _log.error("installing %s on %s failed: %s (exit status %s) %s", package_name,
                       self.vm_ip, e, details.get("exit_status"),
                       (details.get("stderr") or "").strip())
            return False
        return True

    def _guest_ssh(self, vm):
        """The ssh options that reach the guest as the session does (its pinned key)."""
        info = vm.info()
        c = self.config
        ssh = {"host": info.get("vm_ip") or self.vm_ip, "port": c.get("guest_port", 22),
               "username": c.get("vm_username", "root"), "key_file": c.get("vm_key_file"),
               "key_passphrase": c.get("vm_key_passphrase"), "password": c.get("vm_password"),
               "host_key_fingerprint": info.get("guest_host_key_fingerprint")}
        return {k: v for k, v in ssh.items() if v is not None}

    def _package_env(self, vm):
        from bioxen_vm import packages

        c = self.config
        servers = _servers(c.get("rocks_servers"))
        match = re.search(r"5\.[1-4]", str(vm.info().get("lua_version", "")))
        return packages.Environment.create(
            name=c.get("package_env", "default"), servers=servers,
            lua_version=match.group(0) if match else "5.4",
            interpreter=c.get("lua_executable"), luarocks=c.get("luarocks"), exist_ok=True,
            ssh=self._guest_ssh(vm))

    def get_vm_info(self):
        """``{vm_id, vm_uuid, vm_ip, session_active, vm_type}``, plus ``xcp_info`` (the VM's
        XAPI record) once deployed."""
        info = {
            "vm_id": self.vm_id,
            "vm_uuid": self.vm_uuid,
            "vm_ip": self.vm_ip,
            "session_active": self.session_active,
            "vm_type": "xcpng",
        }
        if self.vm_uuid:
            try:
                info["xcp_info"] = self.xapi_client.get_vm_info(self.vm_uuid)
            except LuaVMError:
                pass
        return info

    def stop(self):
        """Closes the session and shuts the VM down and destroys it (unless persistent);
        logs out."""
        vm, self.ssh_session = self.ssh_session, None
        self.session_active = False
        if vm is not None:
            vm.close()
        self.xapi_client.disconnect()
        self.vm_ip = None

    def cleanup(self):
        """The same as :meth:`stop` (managers call it)."""
        self.stop()
