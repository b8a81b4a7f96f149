#!/usr/bin/env python3
"""The fake XAPI as the published Python `XenAPI` package (XML-RPC) sees it: log in, list
templates, clone, provision, start, read the guest metrics, shut down and destroy with
the disks, log out. Run under `fake_xapi.py run --` (BIOXEN_TEST_XAPI). If this client
and the fake disagree, the fake is wrong."""

import json
import os
import sys
import time
import urllib.request

import XenAPI


def main():
    info = json.loads(os.environ["BIOXEN_TEST_XAPI"])
    for url, kw in ((info["http"] + "/", {}), (info["https"] + "/", {"ignore_ssl": True})):
        s = XenAPI.Session(url, **kw)
        s.xenapi.login_with_password(info["username"], info["password"], "1.0", "xenapi-check")
        x = s.xenapi
        try:
            templates = [r for r, v in x.VM.get_all_records().items() if v["is_a_template"]]
            assert templates, "no templates"
            t = next(r for r in templates if x.VM.get_name_label(r) == "Debian Bookworm 12")
            vm = x.VM.clone(t, "xenapi-check")
            assert x.VM.get_is_a_template(vm) is True, "a clone is a template until provisioned"
            try:
                x.VM.start(vm, False, False)
                raise AssertionError("starting a template must fail")
            except XenAPI.Failure as f:
                assert f.details[0] == "VM_IS_TEMPLATE", f.details
            x.VM.provision(vm)
            task = x.Async.VM.start(vm, False, False)
            end = time.monotonic() + 10
            while x.task.get_status(task) == "pending" and time.monotonic() < end:
                time.sleep(0.05)
            assert x.task.get_status(task) == "success", x.task.get_record(task)
            x.task.destroy(task)
            assert x.VM.get_power_state(vm) == "Running"
            end = time.monotonic() + 20
            ip = None
            while time.monotonic() < end and ip is None:
                gm = x.VM.get_guest_metrics(vm)
                if gm != "OpaqueRef:NULL":
                    nets = x.VM_guest_metrics.get_networks(gm)
                    ip = next((v for k, v in nets.items() if k.endswith("/ip") and not v.startswith("169.254.")), None)
                time.sleep(0.05)
            assert ip and ip.startswith("127.0.0."), "no guest IP"
            disks = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm) if x.VBD.get_type(b) == "Disk"]
            x.VM.hard_shutdown(vm)
            x.VM.destroy(vm)
            for d in disks:
                x.VDI.destroy(d)
            try:
                x.VM.get_record(vm)
                raise AssertionError("the VM is still there")
            except XenAPI.Failure as f:
                assert f.details[0] == "HANDLE_INVALID", f.details
        finally:
            s.xenapi.session.logout()
        print("XenAPI (XML-RPC) against %s: ok (guest at %s)" % (url, ip))
    req = urllib.request.Request(info["http"] + "/fake/control", data=b'{"op": "leftovers"}', method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        left = json.load(r)
    assert left == {}, "left on the fake: %r" % left
    return 0


if __name__ == "__main__":
    sys.exit(main())
