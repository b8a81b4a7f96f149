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
``vcpus``, ``memory_mb``, ``network``, ``sr``, ``full_copy``. ``luarocks`` (this module
only) names the guest's luarocks for :meth:`XCPngVM.install_package`.

Intentional differences: TLS is verified (pin the host's certificate with
``tls_fingerprint``); ``execute_string`` runs the code as a chunk on the guest and returns
its real stdout and stderr (``{"stdout", "stderr"}``, as the original's keys);
``install_package`` refuses names that are not plain package names before anything is sent.
"""

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
from .utils.curator import Curator  # noqa: F401
from .xapi_client import XAPIClient


REQUIRED_CONFIG = ("xcp_host", "xcp_username", "xcp_password", "template_name")
#: Keys of this module only (not passed to the library).
LOCAL_KEYS = ("luarocks",)
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
        """``luarocks install <package_name>`` on the guest; whether it succeeded."""
        vm = self._vm()
        if not isinstance(package_name, str) or not PACKAGE_NAME.match(package_name):
            raise InteractiveSessionError("Invalid package name: %r" % (package_name,))
        luarocks = self.config.get("luarocks", "luarocks")
        if not isinstance(luarocks, str) or not re.match(r"^[A-Za-z0-9_./-]+$", luarocks):
            raise InteractiveSessionError("Invalid luarocks command: %r" % (luarocks,))
        code = ("local ok = os.execute('%s install %s') print(ok and 'installed' or 'failed')"
                % (luarocks, package_name))
        try:
            r = vm.execute_string(code, timeout=600)
        except LuaVMError as e:
            raise InteractiveSessionError(
                "Failed to install package %s: %s" % (package_name, e)) from None
        return r.get("success", False) and r.get("stdout", "").strip().endswith("installed")

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
