"""``pylua_bioxen_vm_lib.xapi_client``: the original's ``XAPIClient``, speaking real XAPI.

The original's client spoke a REST dialect that no XCP-ng host serves and never checked
certificates. This one keeps its names, return values and messages, and talks XAPI
(JSON-RPC over verified TLS) through :class:`bioxen_vm.XAPISession`:

* ``XAPIClient(host, username, password, verify_ssl=True, tls_fingerprint=None,
  ca_file=None)``: TLS is verified by default (system roots, or ``ca_file``, or the pinned
  SHA-256 ``tls_fingerprint`` of the host's self-signed certificate); ``verify_ssl=False``
  turns checking off (logged as a warning). Constructing it makes no network call.
* ``authenticate()`` logs in (``XCPngConnectionError("Authentication error: …")`` /
  ``"Failed to connect to XCP-ng host: …"``); the other calls log in when needed.
* ``list_templates()`` → ``[{"uuid", "name", "name_label", "name_description"}]``;
  ``find_template(name)``; ``create_vm_from_template(vm_name, template_name, config)`` →
  the new VM's UUID (``VM.clone`` + ``VM.provision``; ``VMManagerError("Template not
  found: X")``); ``start_vm`` / ``stop_vm`` → whether the VM reached running / halted in
  120 / 60 s; ``get_vm_info`` → the VM record (with ``guest_metrics`` as a record);
  ``get_vm_network_info`` → ``{"ip_address", "device"}`` or ``{}``; ``delete_vm`` shuts the
  VM down and destroys it **with its disks** (the original left them); ``disconnect()``.

Unlike the original, no process-wide warning filter is installed and no VM is matched by
name alone (VMs are addressed by UUID).
"""

import ipaddress
import time

from bioxen_vm.exceptions import LuaVMError, VMManagerError, XCPngConnectionError  # noqa: F401
from bioxen_vm.xcpng import XAPIError, XAPISession

NULL = "OpaqueRef:NULL"


def _url(host):
    return host if "://" in host else "https://" + host


class XAPIClient:
    """XAPIClient(host, username, password, verify_ssl=True)."""

    def __init__(self, host, username, password, verify_ssl=True, tls_fingerprint=None,
                 ca_file=None):
        self.host = host
        self.username = username
        self._password = password
        self.verify_ssl = verify_ssl
        self.tls_fingerprint = tls_fingerprint
        self.ca_file = ca_file
        self.session_id = None
        self._session = None

    def __repr__(self):
        return "XAPIClient(host=%r, username=%r, verify_ssl=%r)" % (
            self.host, self.username, self.verify_ssl)

    # --- session ---------------------------------------------------------------------------

    def _config(self):
        c = {"url": _url(self.host), "username": self.username, "password": self._password}
        if self.tls_fingerprint:
            c["tls_fingerprint"] = self.tls_fingerprint
        elif self.ca_file:
            c["ca_file"] = self.ca_file
        elif not self.verify_ssl:
            c["insecure"] = True
        return c

    def authenticate(self):
        """Logs in; True."""
        try:
            s = XAPISession(config=self._config())
        except XCPngConnectionError as e:
            if "Authentication failed" in str(e):
                raise XCPngConnectionError("Authentication error: %s" % e) from None
            raise XCPngConnectionError("Failed to connect to XCP-ng host: %s" % e) from None
        except LuaVMError as e:
            raise XCPngConnectionError("Authentication error: %s" % e) from None
        if self._session is not None:
            self._session.close()
        self._session = s
        self.session_id = s.info().get("url")
        return True

    def _ensure_authenticated(self):
        if self._session is None:
            self.authenticate()

    def _call(self, method, *params):
        self._ensure_authenticated()
        return self._session.call(method, *params)

    def _ref(self, vm_uuid):
        try:
            return self._call("VM.get_by_uuid", vm_uuid)
        except XAPIError as e:
            raise VMManagerError("VM not found: %s (%s)" % (vm_uuid, e.code)) from None

    # --- templates -------------------------------------------------------------------------

    def list_templates(self):
        """The pool's templates: ``[{"uuid", "name", "name_label", "name_description"}]``."""
        try:
            vms = self._call("VM.get_all_records")
        except LuaVMError as e:
            if isinstance(e, XCPngConnectionError):
                raise
            raise XCPngConnectionError("Failed to list templates: %s" % e) from None
        out = []
        for rec in vms.values():
            if rec.get("is_a_template") and not rec.get("is_a_snapshot"):
                out.append({"uuid": rec["uuid"], "name": rec["name_label"],
                            "name_label": rec["name_label"],
                            "name_description": rec.get("name_description", "")})
        return out

    def find_template(self, template_name):
        """The first template named ``template_name`` (or with that UUID), or None."""
        for t in self.list_templates():
            if t["name"] == template_name or t["uuid"] == template_name:
                return t
        return None

    # --- VMs -------------------------------------------------------------------------------

    def create_vm_from_template(self, vm_name, template_name, config=None):
        """Clones the template as ``vm_name`` and provisions it; the new VM's UUID."""
        self._ensure_authenticated()
        template = self.find_template(template_name)
        if template is None:
            raise VMManagerError("Template not found: %s" % template_name)
        try:
            tref = self._call("VM.get_by_uuid", template["uuid"])
            vm = self._call("VM.clone", tref, vm_name)
            try:
                self._call("VM.provision", vm)
            except LuaVMError:
                self._destroy(vm)
                raise
            return self._call("VM.get_uuid", vm)
        except LuaVMError as e:
            raise VMManagerError("Failed to create VM: %s" % e) from None

    def _wait_for_vm_state(self, vm_uuid, state, timeout=60):
        end = time.monotonic() + timeout
        while True:
            try:
                if self._call("VM.get_power_state", self._ref(vm_uuid)).lower() == state:
                    return True
            except LuaVMError:
                pass
            if time.monotonic() >= end:
                return False
            time.sleep(0.1)

    def start_vm(self, vm_uuid):
        """Starts the VM; True once it runs (within 120 s), else False."""
        self._ensure_authenticated()
        try:
            self._call("VM.start", self._ref(vm_uuid), False, False)
        except LuaVMError as e:
            raise VMManagerError("Failed to start VM: %s" % e) from None
        return self._wait_for_vm_state(vm_uuid, "running", 120)

    def stop_vm(self, vm_uuid):
        """Shuts the VM down (clean, else hard); True once halted (within 60 s)."""
        self._ensure_authenticated()
        ref = self._ref(vm_uuid)
        try:
            try:
                self._call("VM.clean_shutdown", ref)
            except XAPIError:
                self._call("VM.hard_shutdown", ref)
        except LuaVMError as e:
            raise VMManagerError("Failed to stop VM: %s" % e) from None
        return self._wait_for_vm_state(vm_uuid, "halted", 60)

    def get_vm_info(self, vm_uuid):
        """The VM's record, with ``guest_metrics`` as its record (``networks``, ...)."""
        self._ensure_authenticated()
        try:
            rec = self._call("VM.get_record", self._ref(vm_uuid))
            gm = rec.get("guest_metrics", NULL)
            rec["guest_metrics"] = (self._call("VM_guest_metrics.get_record", gm)
                                    if gm and gm != NULL else {})
            return rec
        except LuaVMError as e:
            if isinstance(e, VMManagerError) and "VM not found" in str(e):
                raise
            raise VMManagerError("Failed to get VM info: %s" % e) from None

    def get_vm_network_info(self, vm_uuid):
        """``{"ip_address", "device"}`` of the guest's first usable IPv4 address, or ``{}``
        (never 127.0.0.1, as the original, nor link-local: guests report 169.254.x.y
        before DHCP)."""
        nets = (self.get_vm_info(vm_uuid).get("guest_metrics") or {}).get("networks") or {}
        for key in sorted(nets):
            parts = key.split("/")
            if len(parts) < 2 or parts[1] not in ("ip", "ipv4"):
                continue
            for value in str(nets[key]).split():
                try:
                    ip = ipaddress.ip_address(value)
                except ValueError:
                    continue
                if not (value == "127.0.0.1" or ip.is_link_local or ip.is_unspecified
                        or ip.is_multicast):
                    return {"ip_address": value, "device": parts[0]}
        return {}

    def _destroy(self, vm):
        rec = self._call("VM.get_record", vm)
        if rec["power_state"] != "Halted":
            self._call("VM.hard_shutdown", vm)
        disks = []
        for vbd in rec["VBDs"]:
            b = self._call("VBD.get_record", vbd)
            if b["type"] == "Disk" and b["VDI"] != NULL:
                disks.append(b["VDI"])
        self._call("VM.destroy", vm)
        for d in disks:
            try:
                self._call("VDI.destroy", d)
            except XAPIError as e:
                if e.code != "HANDLE_INVALID":
                    raise

    def delete_vm(self, vm_uuid):
        """Shuts the VM down and destroys it with its disks; True."""
        self._ensure_authenticated()
        ref = self._ref(vm_uuid)
        try:
            self._destroy(ref)
        except LuaVMError as e:
            raise VMManagerError("Failed to delete VM: %s" % e) from None
        return True

    def disconnect(self):
        """Logs out (errors ignored)."""
        s, self._session = self._session, None
        self.session_id = None
        if s is not None:
            try:
                s.close()
            except LuaVMError:
                pass
