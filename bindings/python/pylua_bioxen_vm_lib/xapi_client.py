"""``pylua_bioxen_vm_lib.xapi_client``: the XCP-ng XAPI client (not available yet).

The original's client spoke a REST dialect that no XCP-ng host serves. bioxen_vm's
``xcpng`` VM kind, which will speak real XAPI, is not built in this version: constructing an
``XAPIClient`` works (it makes no network call, as in the original) and every call that would
talk to a host raises :class:`NotAvailableError`.
"""

from bioxen_vm.exceptions import VMManagerError, XCPngConnectionError  # noqa: F401  (original namespace)

from ._missing import NotAvailableError, not_available  # noqa: F401


class XAPIClient:
    """XAPIClient(host, username, password, verify_ssl=True).

    TLS verification is on by default (the original turned it off and silenced urllib3's
    warnings for the whole process; neither is copied).
    """

    def __init__(self, host, username, password, verify_ssl=True):
        self.host = host
        self.username = username
        self._password = password
        self.verify_ssl = verify_ssl
        self.session_id = None

    def __repr__(self):
        return "XAPIClient(host=%r, username=%r, verify_ssl=%r)" % (
            self.host, self.username, self.verify_ssl)

    def authenticate(self):
        not_available("xapi", "XAPIClient.authenticate")

    def list_templates(self):
        not_available("xapi", "XAPIClient.list_templates")

    def find_template(self, template_name):
        not_available("xapi", "XAPIClient.find_template")

    def create_vm_from_template(self, vm_name, template_name, config=None):
        not_available("xapi", "XAPIClient.create_vm_from_template")

    def start_vm(self, vm_uuid):
        not_available("xapi", "XAPIClient.start_vm")

    def stop_vm(self, vm_uuid):
        not_available("xapi", "XAPIClient.stop_vm")

    def get_vm_info(self, vm_uuid):
        not_available("xapi", "XAPIClient.get_vm_info")

    def get_vm_network_info(self, vm_uuid):
        not_available("xapi", "XAPIClient.get_vm_network_info")

    def delete_vm(self, vm_uuid):
        not_available("xapi", "XAPIClient.delete_vm")

    def disconnect(self):
        """Nothing was connected: a no-op."""
        self.session_id = None
