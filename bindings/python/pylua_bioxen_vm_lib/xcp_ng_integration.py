"""``pylua_bioxen_vm_lib.xcp_ng_integration``: ``XCPngVM`` (not available yet).

As in the original, constructing an ``XCPngVM`` checks the configuration (``xcp_host``,
``xcp_username``, ``xcp_password``, ``template_name``, in that order, each missing one raising
``VMManagerError("Missing required configuration: <key>")``) and makes no network call, so
``create_vm(..., vm_type="xcpng", config=...)`` returns an unstarted VM. Everything that would
deploy or use the VM (``start``, ``execute_string``, ``send_input``, ``read_output``,
``install_package``) raises :class:`NotAvailableError`: bioxen_vm's ``xcpng`` VM kind is not
built in this version.
"""

from bioxen_vm.exceptions import (  # noqa: F401  (original namespace)
    InteractiveSessionError,
    VMManagerError,
    XCPngConnectionError,
)

from ._missing import NotAvailableError, not_available  # noqa: F401
from .ssh_session import SSHSessionManager  # noqa: F401
from .utils.curator import Curator  # noqa: F401
from .xapi_client import XAPIClient


REQUIRED_CONFIG = ("xcp_host", "xcp_username", "xcp_password", "template_name")


class XCPngVM:
    """XCPngVM(vm_id, config=None): an XCP-ng VM deployed from a template (not available)."""

    def __init__(self, vm_id, config=None):
        config = config or {}
        for key in REQUIRED_CONFIG:
            if key not in config:
                raise VMManagerError("Missing required configuration: %s" % key)
        self.vm_id = vm_id
        self.name = vm_id
        self.config = config
        self.xapi_client = XAPIClient(config["xcp_host"], config["xcp_username"],
                                      config["xcp_password"])
        self.vm_uuid = None
        self.vm_ip = None
        self.ssh_session = None
        self.session_active = False
        self.curator = None

    def __repr__(self):
        return "XCPngVM(vm_id=%r, host=%r, session_active=%r)" % (
            self.vm_id, self.config.get("xcp_host"), self.session_active)

    def start(self):
        not_available("xcpng", "XCPngVM.start")

    def send_input(self, input_text):
        not_available("xcpng", "XCPngVM.send_input")

    def read_output(self, timeout=1.0):
        not_available("xcpng", "XCPngVM.read_output")

    def execute_string(self, lua_code, timeout=None):
        not_available("xcpng", "XCPngVM.execute_string")

    def install_package(self, package_name):
        not_available("xcpng", "XCPngVM.install_package")

    def get_vm_info(self):
        return {
            "vm_id": self.vm_id,
            "vm_uuid": self.vm_uuid,
            "vm_ip": self.vm_ip,
            "session_active": self.session_active,
            "vm_type": "xcpng",
        }

    def stop(self):
        """Nothing was deployed: a no-op."""
        self.session_active = False

    def cleanup(self):
        """Nothing was deployed: a no-op (the original had no cleanup(); managers call it)."""
        self.session_active = False
