#!/usr/bin/env python3
"""A stateful fake XAPI (the management API of XCP-ng pools) for the xcpng tests.

One pool with one host, an SR, a network and templates; VMs, VBDs, VDIs, VIFs, guest
metrics, tasks, sessions and events with XAPI's back-references and lifecycle rules (a
clone is a template until provisioned; VM.destroy removes VBDs and VIFs but not VDIs;
VDI_IN_USE; power-state errors). It speaks JSON-RPC v1 and v2 on /jsonrpc and compact
XML-RPC on every other path, over HTTP and HTTPS (a self-signed certificate shaped like
xapi's: RSA 2048, no basicConstraints, IP SANs), on 127.0.0.1 (the master) and 127.0.0.2
(a pool member: logging in there answers HOST_IS_SLAVE with the master's address).

Starting a VM boots a real guest: an OpenSSH server (tests/rig/sshd_rig.py) on its own
loopback address 127.0.0.N, accepting only the public keys that reached it the way they
reach a real guest: baked into the template's disk (the VDI's sm_config
`fake:authorized_keys`, copied with the disk) or written by the deployer into the VM's
xenstore_data `vm-data/bioxen/authorized_keys` before VM.start (xenopsd copies vm-data at
domain build). After `guest_delay` seconds the guest metrics report a link-local address,
then the guest's address (unless `no_ip`).

    python3 tests/rig/fake_xapi.py serve      # prints one JSON line: ports, fingerprint...
    python3 tests/rig/fake_xapi.py run [--http] -- COMMAND...

`run` starts the fake, runs COMMAND with BIOXEN_TEST_XAPI (that JSON line),
BIOXEN_TEST_XAPI_SESSION (the JSON config of a session on it, TLS pinned) and
BIOXEN_TEST_XCPNG_OPTIONS (the JSON options of an xcpng VM on it, with a guest key made
for the run; with --http both use plain HTTP, for programs run under valgrind, which
cannot follow ring's assembly AES-GCM and reports false uninitialised bytes in TLS records)
in the environment, stops the fake and exits with COMMAND's status. The fake
stops its guests and removes its directory on SIGTERM, SIGINT or the end of its stdin.

Control: POST /fake/control with a JSON object {"op": ...}:
  state                       every object, by class
  leftovers                   objects made since the start that still exist (none after
                              a clean test), and live sessions and tasks
  stats                       connections accepted, requests, calls per method, most
                              requests in flight at once
  reset_stats
  config {...}                guest_delay, linklocal_delay, no_ip, ip_device, latency
                              {method: seconds}, task_steps, clean_shutdown ("ok",
                              "lacks_feature", "hang"), step_delay (every call),
                              infinity (bare Infinity in VM records), no_jsonrpc (an
                              old host: /jsonrpc is a 404)
  fault {method, nth, times, error: [CODE, params...] | action: drop|delay|slave,
         seconds}             fail the nth call (1-based, counted from now) of method;
                              Async.X counts as a call of X and fails in its task
  clear_faults
  expire_sessions             every session becomes invalid
  guests                      {vm_uuid: {ip, port, fingerprint, keys}}
  add_template {name, baked_key}
"""

import datetime
import http.server
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid as uuidlib
import xml.etree.ElementTree as ET
import xmlrpc.client
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sshd_rig import Sshd, USER, PASSWORD as GUEST_PASSWORD  # noqa: E402

ADMIN_USER = "root"
ADMIN_PASSWORD = "xapi-test-password"
NULL = "OpaqueRef:NULL"
CLASSES = ["pool", "host", "SR", "network", "VM", "VBD", "VDI", "VIF", "VM_guest_metrics",
           "VM_metrics", "task", "session", "PBD", "message"]


class Failure(Exception):
    def __init__(self, code, *params):
        super().__init__(code)
        self.details = [code] + [str(p) for p in params]


def now_xapi():
    return datetime.datetime.utcnow().strftime("%Y%m%dT%H:%M:%SZ")


def now_iso():
    return datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def new_ref():
    return "OpaqueRef:" + str(uuidlib.uuid4())


# --- XML-RPC, compact (npm xen-api's parser needs it), ints as strings as xapi does --------

def xml_value(v):
    if isinstance(v, bool):
        return "<value><boolean>%d</boolean></value>" % int(v)
    if isinstance(v, int):
        return "<value>%d</value>" % v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "<value><double>%s</double></value>" % ("nan" if v != v else ("inf" if v > 0 else "-inf"))
        return "<value><double>%r</double></value>" % v
    if v is None:
        return "<value><nil/></value>"
    if isinstance(v, (list, tuple)):
        return "<value><array><data>" + "".join(xml_value(x) for x in v) + "</data></array></value>"
    if isinstance(v, dict):
        return "<value><struct>" + "".join(
            "<member><name>%s</name>%s</member>" % (esc(k), xml_value(x)) for k, x in v.items()) + "</struct></value>"
    return "<value>%s</value>" % esc(str(v))


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_response(value):
    return ("<?xml version=\"1.0\"?><methodResponse><params><param>" + xml_value(value) +
            "</param></params></methodResponse>")


class Fake:
    def __init__(self, args):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.db = {c: {} for c in CLASSES}
        self.base = set()
        self.events = []
        self.event_id = 0
        self.dir = tempfile.mkdtemp(prefix="bioxen_vm-fake-xapi-")
        self.cfg = {"guest_delay": 0.3, "linklocal_delay": 0.2, "no_ip": False, "ip_device": 0,
                    "latency": {}, "task_steps": 4, "clean_shutdown": "ok", "step_delay": 0.0,
                    "infinity": True, "no_jsonrpc": False}
        self.faults = []
        self.counts = {}
        self.stats = {"connections": 0, "requests": 0, "inflight": 0, "max_inflight": 0, "uploads": 0}
        self.guests = {}  # vm ref -> {"sshd": Sshd, "ip": ..., "gen": n}
        self.guest_gen = itertools.count(1)
        self.next_ip = itertools.count(10)
        self.guest_port = None
        self.stopping = False
        with self.lock:
            self._setup()

    # --- objects ----------------------------------------------------------------------

    def add(self, cls, rec, base=False):
        ref = new_ref()
        rec.setdefault("uuid", str(uuidlib.uuid4()))
        self.db[cls][ref] = rec
        if base:
            self.base.add(ref)
        self.event(cls, "add", ref)
        return ref

    def delete(self, cls, ref):
        if self.db[cls].pop(ref, None) is not None:
            self.event(cls, "del", ref, snapshot={})

    def event(self, cls, op, ref, snapshot=None):
        self.event_id += 1
        if snapshot is None:
            snapshot = dict(self.db[cls].get(ref, {}))
        self.events.append({"id": self.event_id, "timestamp": now_xapi(), "class": cls.lower(),
                            "operation": op, "ref": ref, "snapshot": snapshot})
        if len(self.events) > 5000:
            del self.events[:1000]
        self.cond.notify_all()

    def mod(self, cls, ref):
        self.event(cls, "mod", ref)

    def get(self, cls, ref):
        rec = self.db.get(cls, {}).get(ref)
        if rec is None:
            raise Failure("HANDLE_INVALID", cls, ref)
        return rec

    def _setup(self):
        self.host = new_ref()
        self.pool = self.add("pool", {"name_label": "fake pool", "name_description": "", "master": self.host,
                                      "default_SR": NULL, "other_config": {}, "tags": []}, base=True)
        self.db["host"][self.host] = {"uuid": str(uuidlib.uuid4()), "name_label": "fake-host",
                                      "address": "127.0.0.1", "enabled": True, "resident_VMs": [],
                                      "software_version": {"product_version": "8.3.0", "platform_version": "3.4.0"},
                                      "other_config": {}, "memory_overhead": 0, "PBDs": []}
        self.base.add(self.host)
        self.sr = self.add("SR", {"name_label": "Local storage", "name_description": "", "type": "ext",
                                  "content_type": "user", "shared": False, "VDIs": [], "PBDs": [],
                                  "physical_size": 1 << 40, "physical_utilisation": 1 << 30,
                                  "other_config": {}, "sm_config": {}, "tags": []}, base=True)
        self.db["pool"][self.pool]["default_SR"] = self.sr
        self.iso_sr = self.add("SR", {"name_label": "ISOs", "name_description": "", "type": "iso",
                                      "content_type": "iso", "shared": True, "VDIs": [], "PBDs": [],
                                      "physical_size": 0, "physical_utilisation": 0,
                                      "other_config": {}, "sm_config": {}, "tags": []}, base=True)
        self.net = self.add("network", {"name_label": "Pool-wide network associated with eth0",
                                        "name_description": "", "bridge": "xenbr0", "MTU": 1500,
                                        "VIFs": [], "PIFs": [], "other_config": {}, "tags": []}, base=True)
        self.iso = self.new_vdi("debian.iso", self.iso_sr, 1 << 28, base=True, vtype="user", sharable=True,
                                read_only=True)
        self.add_template("Debian Bookworm 12", None)
        self.add_template("Debian Bookworm 12 (baked key)", "", baked_marker=True)

    def new_vdi(self, name, sr, size, base=False, vtype="system", sharable=False, read_only=False, sm=None):
        ref = self.add("VDI", {"name_label": name, "name_description": "", "SR": sr, "VBDs": [],
                               "virtual_size": size, "physical_utilisation": size // 10, "type": vtype,
                               "sharable": sharable, "read_only": read_only, "other_config": {},
                               "sm_config": dict(sm or {}), "xenstore_data": {}, "tags": [],
                               "is_a_snapshot": False, "managed": True, "missing": False}, base=base)
        self.db["SR"][sr]["VDIs"].append(ref)
        return ref

    def new_vbd(self, vm, vdi, device, vtype="Disk", base=False, bootable=True):
        ref = self.add("VBD", {"VM": vm, "VDI": vdi, "userdevice": str(device), "device": "", "type": vtype,
                               "mode": "RO" if vtype == "CD" else "RW", "bootable": bootable,
                               "currently_attached": False, "empty": vdi == NULL, "unpluggable": True,
                               "other_config": {}, "qos_algorithm_params": {}}, base=base)
        self.db["VM"][vm]["VBDs"].append(ref)
        if vdi != NULL:
            self.db["VDI"][vdi]["VBDs"].append(ref)
        return ref

    def new_vif(self, vm, network, device, base=False):
        mac = "02:00:%02x:%02x:%02x:%02x" % tuple(os.urandom(4))
        ref = self.add("VIF", {"VM": vm, "network": network, "device": str(device), "MAC": mac, "MTU": 1500,
                               "currently_attached": False, "other_config": {}, "locking_mode": "network_default",
                               "ipv4_allowed": [], "ipv6_allowed": [], "qos_algorithm_params": {}}, base=base)
        self.db["VM"][vm]["VIFs"].append(ref)
        self.db["network"][network]["VIFs"].append(ref)
        return ref

    def vm_record(self, name, template):
        return {"name_label": name, "name_description": "", "is_a_template": template, "is_a_snapshot": False,
                "is_control_domain": False, "power_state": "Halted", "resident_on": NULL, "affinity": NULL,
                "VCPUs_max": 1, "VCPUs_at_startup": 1, "memory_static_min": 1 << 29,
                "memory_static_max": 1 << 30, "memory_dynamic_min": 1 << 30, "memory_dynamic_max": 1 << 30,
                "VBDs": [], "VIFs": [], "guest_metrics": NULL, "metrics": NULL, "snapshots": [],
                "other_config": {}, "xenstore_data": {}, "platform": {}, "tags": [], "blocked_operations": {},
                "allowed_operations": [], "current_operations": {}, "HVM_boot_params": {"order": "cd"},
                "HVM_boot_policy": "BIOS order", "HVM_shadow_multiplier": 1.0, "PV_bootloader": "",
                "recommendations": "<restrictions/>", "domid": -1, "start_time": "19700101T00:00:00Z",
                "user_version": 1, "suspend_VDI": NULL, "parent": NULL, "children": [], "bios_strings": {}}

    def add_template(self, name, baked_key, baked_marker=False):
        with self.lock:
            vm = self.add("VM", self.vm_record(name, True), base=True)
            sm = {}
            if baked_key is not None:
                sm["fake:authorized_keys"] = baked_key
            if baked_marker:
                self.baked_template = vm
            disk = self.new_vdi(name + " 0", self.sr, 8 << 30, base=True, sm=sm)
            self.new_vbd(vm, disk, 0, base=True)
            self.new_vbd(vm, self.iso, 3, vtype="CD", base=True, bootable=False)
            self.new_vif(vm, self.net, 0, base=True)
            return vm

    # --- faults and accounting --------------------------------------------------------

    def count(self, method):
        base = method[len("Async."):] if method.startswith("Async.") else method
        with self.lock:
            self.counts[method] = self.counts.get(method, 0) + 1
            for f in self.faults:
                if f["method"] in (method, base):
                    f["seen"] += 1
                    if f["nth"] <= f["seen"] < f["nth"] + f["times"]:
                        return f
        return None

    # --- the API ----------------------------------------------------------------------

    def session_of(self, ref):
        s = self.db["session"].get(ref)
        if s is None or s.get("expired"):
            raise Failure("SESSION_INVALID", ref)
        return s

    def dispatch(self, method, params, member=False):
        if method == "system.listMethods":
            return self.list_methods()
        if method in ("session.login_with_password", "session.slave_local_login_with_password"):
            if len(params) < 2 or len(params) > 4:
                raise Failure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, 4, len(params))
            if member:
                raise Failure("HOST_IS_SLAVE", "127.0.0.1")
            if params[0] != ADMIN_USER or params[1] != ADMIN_PASSWORD:
                raise Failure("SESSION_AUTHENTICATION_FAILED", params[0], "Authentication failure")
            with self.lock:
                return self.add("session", {"this_host": self.host, "this_user": NULL,
                                            "originator": params[3] if len(params) > 3 else "",
                                            "validation_time": now_xapi(), "is_local_superuser": True})
        if not params or not isinstance(params[0], str):
            raise Failure("SESSION_INVALID", "")
        session, args = params[0], list(params[1:])
        if method == "session.logout":
            with self.lock:
                self.session_of(session)
                self.delete("session", session)
            return ""
        with self.lock:
            self.session_of(session)
        if method.startswith("Async."):
            return self.start_task(method[len("Async."):], args, session)
        return self.call(method, args, session)

    def list_methods(self):
        out = ["system.listMethods", "session.login_with_password", "session.logout"]
        for c in CLASSES:
            if c != "session":
                out += [c + ".get_all_records", c + ".get_record", c + ".get_all"]
        out += ["event.from", "event.inject", "VM.clone", "VM.copy", "VM.provision", "VM.start",
                "VM.clean_shutdown", "VM.hard_shutdown", "VM.shutdown", "VM.destroy"]
        return out

    def call(self, method, args, session, task=None):
        cls, _, name = method.partition(".")
        special = getattr(self, "m_%s_%s" % (cls, name), None)
        if special is not None:
            return special(args, session=session, task=task)
        if cls == "event":
            return getattr(self, "ev_" + name)(args)
        if cls not in self.db:
            raise Failure("MESSAGE_METHOD_UNKNOWN", method)
        with self.lock:
            return self.generic(cls, name, args, method)

    def generic(self, cls, name, args, method):
        table = self.db[cls]
        if name == "get_all":
            return [r for r in table if not self.hidden(cls, r)]
        if name == "get_all_records":
            return {r: dict(v) for r, v in table.items() if not self.hidden(cls, r)}
        if name == "get_by_uuid":
            for r, v in table.items():
                if v["uuid"] == args[0]:
                    return r
            raise Failure("UUID_INVALID", cls, args[0])
        if name == "get_by_name_label":
            return [r for r, v in table.items() if v.get("name_label") == args[0]]
        if not args:
            raise Failure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, 1, 0)
        rec = self.get(cls, args[0])
        if name == "get_record":
            return dict(rec)
        if name.startswith("get_"):
            field = name[4:]
            if field not in rec:
                raise Failure("MESSAGE_METHOD_UNKNOWN", method)
            return rec[field]
        if name.startswith("set_"):
            field = name[4:]
            if field not in rec or len(args) != 2:
                raise Failure("MESSAGE_METHOD_UNKNOWN", method)
            rec[field] = args[1]
            self.mod(cls, args[0])
            return ""
        if name.startswith("add_to_"):
            field = name[7:]
            if not isinstance(rec.get(field), dict) or len(args) != 3:
                raise Failure("MESSAGE_METHOD_UNKNOWN", method)
            if args[1] in rec[field]:
                raise Failure("MAP_DUPLICATE_KEY", cls, field, args[0], args[1])
            rec[field][args[1]] = args[2]
            self.mod(cls, args[0])
            return ""
        if name.startswith("remove_from_"):
            field = name[12:]
            if not isinstance(rec.get(field), dict) or len(args) != 2:
                raise Failure("MESSAGE_METHOD_UNKNOWN", method)
            rec[field].pop(args[1], None)
            self.mod(cls, args[0])
            return ""
        raise Failure("MESSAGE_METHOD_UNKNOWN", method)

    def hidden(self, cls, ref):
        return False

    # events

    def ev_inject(self, args):
        with self.lock:
            self.event(args[0], "mod", args[1])
            return "%020d,%020d" % (self.event_id, 0)

    def ev_from(self, args):
        classes, token, timeout = args[0], args[1], float(args[2])
        since = int(token.split(",")[0]) if token else 0
        want = {c.lower().split("/")[0] for c in classes}
        end = time.monotonic() + min(timeout, 30.0)
        with self.lock:
            while True:
                evs = [e for e in self.events if e["id"] > since and ("*" in want or e["class"] in want)]
                if evs or time.monotonic() >= end or self.stopping:
                    counts = {c: len(t) for c, t in self.db.items() if "*" in want or c.lower() in want}
                    return {"events": evs, "valid_ref_counts": counts,
                            "token": "%020d,%020d" % (self.event_id, 0)}
                self.cond.wait(max(0.0, end - time.monotonic()))

    # tasks

    def start_task(self, method, args, session):
        with self.lock:
            task = self.add("task", {"name_label": "Async." + method, "name_description": "",
                                     "status": "pending", "progress": 0.0, "result": "", "error_info": [],
                                     "created": now_xapi(), "finished": "19700101T00:00:00Z",
                                     "resident_on": self.host, "session": session, "other_config": {},
                                     "allowed_operations": ["cancel"], "type": "", "subtasks": [],
                                     "cancel_requested": False, "destroy_requested": False})
        fault = getattr(threading.current_thread(), "fault", None)
        threading.Thread(target=self.run_task, args=(task, method, args, session, fault), daemon=True).start()
        return task

    def task_cancelled(self, task):
        with self.lock:
            t = self.db["task"].get(task)
            return t is None or t["cancel_requested"]

    def run_task(self, task, method, args, session, fault):
        steps = max(1, int(self.cfg["task_steps"]))
        latency = float(self.cfg["latency"].get(method, 0.0))
        status, result, error = "success", "", []
        try:
            for i in range(steps):
                if self.task_cancelled(task):
                    raise Failure("TASK_CANCELLED", task)
                time.sleep(latency / steps)
                with self.lock:
                    t = self.db["task"].get(task)
                    if t is not None:
                        t["progress"] = round((i + 1) / (steps + 1), 3)
                        self.mod("task", task)
            if self.task_cancelled(task):
                raise Failure("TASK_CANCELLED", task)
            if fault is not None and "error" in fault:
                raise Failure(*fault["error"])
            value = self.call(method, args, session, task=task)
            result = "" if value == "" else xml_value(value)
        except Failure as f:
            status = "cancelled" if f.details[0] == "TASK_CANCELLED" else "failure"
            error = f.details
        except Exception as e:  # a bug in the fake: say so in the task
            status, error = "failure", ["INTERNAL_ERROR", repr(e)]
            traceback.print_exc()
        with self.lock:
            t = self.db["task"].get(task)
            if t is None:
                return
            t.update(status=status, result=result, error_info=error, progress=1.0, finished=now_iso(),
                     allowed_operations=[])
            self.mod("task", task)
            if t["destroy_requested"]:
                self.delete("task", task)

    def m_task_cancel(self, args, **_):
        with self.lock:
            t = self.get("task", args[0])
            if t["status"] == "pending":
                t["cancel_requested"] = True
                t["status"] = "cancelling"
                self.mod("task", args[0])
            return ""

    def m_task_destroy(self, args, **_):
        with self.lock:
            t = self.get("task", args[0])
            if t["status"] in ("pending", "cancelling"):
                t["destroy_requested"] = True
            else:
                self.delete("task", args[0])
            return ""

    def m_task_create(self, args, session=None, **_):
        with self.lock:
            return self.add("task", {"name_label": args[0], "name_description": args[1] if len(args) > 1 else "",
                                     "status": "pending", "progress": 0.0, "result": "", "error_info": [],
                                     "created": now_xapi(), "finished": "19700101T00:00:00Z",
                                     "resident_on": self.host, "session": session, "other_config": {},
                                     "allowed_operations": [], "type": "", "subtasks": [],
                                     "cancel_requested": False, "destroy_requested": False})

    # VMs

    def vm(self, ref):
        return self.get("VM", ref)

    def copy_vm(self, src, name, sr, task):
        s = self.vm(src)
        if s["power_state"] != "Halted":
            raise Failure("VM_BAD_POWER_STATE", src, "halted", s["power_state"].lower())
        rec = json.loads(json.dumps(s))
        rec.update(uuid=str(uuidlib.uuid4()), name_label=name, VBDs=[], VIFs=[], guest_metrics=NULL,
                   snapshots=[], children=[], parent=src, tags=list(s["tags"]))
        rec["other_config"].pop("mac_seed", None)
        vm = self.add("VM", rec)
        for vbd in s["VBDs"]:
            b = self.db["VBD"][vbd]
            if b["type"] == "CD" or b["VDI"] == NULL:
                self.new_vbd(vm, b["VDI"], b["userdevice"], vtype=b["type"], bootable=b["bootable"])
            else:
                d = self.db["VDI"][b["VDI"]]
                disk = self.new_vdi(d["name_label"], sr or d["SR"], d["virtual_size"], sm=d["sm_config"])
                self.new_vbd(vm, disk, b["userdevice"], bootable=b["bootable"])
        for vif in s["VIFs"]:
            v = self.db["VIF"][vif]
            self.new_vif(vm, v["network"], v["device"])
        return vm

    def m_VM_clone(self, args, task=None, **_):
        with self.lock:
            return self.copy_vm(args[0], args[1], None, task)

    def m_VM_copy(self, args, task=None, **_):
        with self.lock:
            sr = args[2] if len(args) > 2 and args[2] not in ("", NULL) else None
            if sr is not None:
                self.get("SR", sr)
            return self.copy_vm(args[0], args[1], sr, task)

    def m_VM_provision(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            if not v["is_a_template"]:
                raise Failure("PROVISION_ONLY_ALLOWED_ON_TEMPLATE", args[0])
            v["is_a_template"] = False
            self.mod("VM", args[0])
            return ""

    def m_VM_get_allowed_VIF_devices(self, args, **_):
        with self.lock:
            used = {self.db["VIF"][v]["device"] for v in self.vm(args[0])["VIFs"]}
            return [str(i) for i in range(7) if str(i) not in used]

    def m_VM_set_memory_limits(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            smin, smax, dmin, dmax = (int(a) for a in args[1:5])
            if not smin <= dmin <= dmax <= smax:
                raise Failure("MEMORY_CONSTRAINT_VIOLATION", "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max")
            v.update(memory_static_min=smin, memory_static_max=smax, memory_dynamic_min=dmin,
                     memory_dynamic_max=dmax)
            self.mod("VM", args[0])
            return ""

    def m_VM_set_VCPUs_at_startup(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            n = int(args[1])
            if n < 1 or n > int(v["VCPUs_max"]):
                raise Failure("VCPUs_at_startup must be between 1 and VCPUs_max")
            v["VCPUs_at_startup"] = n
            self.mod("VM", args[0])
            return ""

    def m_VM_set_VCPUs_max(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            if v["power_state"] != "Halted":
                raise Failure("VM_BAD_POWER_STATE", args[0], "halted", v["power_state"].lower())
            v["VCPUs_max"] = int(args[1])
            self.mod("VM", args[0])
            return ""

    def m_VM_start(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            if v["is_a_template"]:
                raise Failure("VM_IS_TEMPLATE", args[0], "start")
            if v["power_state"] != "Halted":
                raise Failure("VM_BAD_POWER_STATE", args[0], "halted", v["power_state"].lower())
            for vbd in v["VBDs"]:
                b = self.db["VBD"][vbd]
                b["currently_attached"] = True
            for vif in v["VIFs"]:
                self.db["VIF"][vif]["currently_attached"] = True
            v.update(power_state="Running", resident_on=self.host, domid=next(self.guest_gen),
                     start_time=now_xapi())
            self.db["host"][self.host]["resident_VMs"].append(args[0])
            self.mod("VM", args[0])
            keys = v["xenstore_data"].get("vm-data/bioxen/authorized_keys", "")
            for vbd in v["VBDs"]:
                b = self.db["VBD"][vbd]
                if b["type"] == "Disk" and b["VDI"] != NULL:
                    baked = self.db["VDI"][b["VDI"]]["sm_config"].get("fake:authorized_keys")
                    if baked:
                        keys += "\n" + baked
            gen = v["domid"]
            self.guests[args[0]] = {"gen": gen, "sshd": None, "ip": None, "keys": keys}
        threading.Thread(target=self.boot_guest, args=(args[0], gen, keys), daemon=True).start()
        return ""

    def boot_guest(self, vm, gen, keys):
        time.sleep(float(self.cfg["guest_delay"]))
        ip = "127.0.0.%d" % (10 + (next(self.next_ip) - 10) % 240)
        try:
            sshd = Sshd(address=ip, port=self.guest_port, authorized=keys.strip() + "\n")
        except Exception as e:
            sys.stderr.write("fake xapi: the guest of %s did not boot: %s\n" % (vm, e))
            return
        with self.lock:
            g = self.guests.get(vm)
            if g is None or g["gen"] != gen or self.stopping:
                sshd.stop()
                return
            g.update(sshd=sshd, ip=ip, fingerprint=sshd.fingerprint)
            v = self.db["VM"].get(vm)
            if v is None:
                return
            dev = int(self.cfg["ip_device"])
            nets = {} if self.cfg["no_ip"] else {"%d/ip" % dev: "169.254.%d.%d" % (gen % 250, 7),
                                                 "%d/ipv4/0" % dev: "169.254.%d.%d" % (gen % 250, 7),
                                                 "%d/ipv6/0" % dev: "fe80::%x" % gen}
            gm = self.add("VM_guest_metrics", {"os_version": {"name": "Debian GNU/Linux 12"},
                                               "PV_drivers_version": {"major": "8", "minor": "4"},
                                               "PV_drivers_up_to_date": True, "PV_drivers_detected": True,
                                               "networks": nets, "other": {"feature-shutdown": "1"},
                                               "memory": {}, "disks": {}, "live": True,
                                               "last_updated": now_xapi(), "can_use_hotplug_vbd": "yes",
                                               "can_use_hotplug_vif": "yes", "other_config": {}})
            v["guest_metrics"] = gm
            self.mod("VM", vm)
        if self.cfg["no_ip"]:
            return
        time.sleep(float(self.cfg["linklocal_delay"]))
        with self.lock:
            g = self.guests.get(vm)
            v = self.db["VM"].get(vm)
            if g is None or g["gen"] != gen or v is None or v["guest_metrics"] not in self.db["VM_guest_metrics"]:
                return
            rec = self.db["VM_guest_metrics"][v["guest_metrics"]]
            dev = int(self.cfg["ip_device"])
            rec["networks"] = {"%d/ip" % dev: ip, "%d/ipv4/0" % dev: ip, "%d/ipv6/0" % dev: "fe80::%x" % gen}
            rec["last_updated"] = now_xapi()
            self.mod("VM_guest_metrics", v["guest_metrics"])

    def halt(self, vm):
        v = self.vm(vm)
        g = self.guests.pop(vm, None)
        if g and g["sshd"] is not None:
            threading.Thread(target=g["sshd"].stop, daemon=True).start()
        for vbd in v["VBDs"]:
            self.db["VBD"][vbd]["currently_attached"] = False
        for vif in v["VIFs"]:
            self.db["VIF"][vif]["currently_attached"] = False
        if v["guest_metrics"] != NULL:
            self.delete("VM_guest_metrics", v["guest_metrics"])
        v.update(power_state="Halted", resident_on=NULL, guest_metrics=NULL, domid=-1)
        rv = self.db["host"][self.host]["resident_VMs"]
        if vm in rv:
            rv.remove(vm)
        self.mod("VM", vm)

    def m_VM_hard_shutdown(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            if v["power_state"] not in ("Running", "Paused", "Suspended"):
                raise Failure("VM_BAD_POWER_STATE", args[0], "running", v["power_state"].lower())
            self.halt(args[0])
            return ""

    def m_VM_clean_shutdown(self, args, task=None, **_):
        with self.lock:
            v = self.vm(args[0])
            if v["power_state"] != "Running":
                raise Failure("VM_BAD_POWER_STATE", args[0], "running", v["power_state"].lower())
            mode = self.cfg["clean_shutdown"]
        if mode == "lacks_feature":
            raise Failure("VM_LACKS_FEATURE", args[0])
        if mode == "hang":
            while not (task and self.task_cancelled(task)) and not self.stopping:
                time.sleep(0.05)
            raise Failure("TASK_CANCELLED", task or "")
        with self.lock:
            self.halt(args[0])
            return ""

    def m_VM_shutdown(self, args, **kw):
        try:
            return self.m_VM_clean_shutdown(args, **kw)
        except Failure as f:
            if f.details[0] == "VM_BAD_POWER_STATE":
                raise
            return self.m_VM_hard_shutdown(args, **kw)

    def m_VM_destroy(self, args, **_):
        with self.lock:
            v = self.vm(args[0])
            if args[0] in self.base:
                raise Failure("OPERATION_NOT_ALLOWED", "the fake's templates stay")
            if v["power_state"] != "Halted":
                raise Failure("VM_BAD_POWER_STATE", args[0], "halted", v["power_state"].lower())
            for vbd in list(v["VBDs"]):
                self.destroy_vbd(vbd)
            for vif in list(v["VIFs"]):
                self.destroy_vif(vif)
            if v["guest_metrics"] != NULL:
                self.delete("VM_guest_metrics", v["guest_metrics"])
            self.delete("VM", args[0])
            return ""

    def destroy_vbd(self, vbd):
        b = self.db["VBD"][vbd]
        if b["VDI"] in self.db["VDI"]:
            self.db["VDI"][b["VDI"]]["VBDs"].remove(vbd)
        if b["VM"] in self.db["VM"]:
            self.db["VM"][b["VM"]]["VBDs"].remove(vbd)
        self.delete("VBD", vbd)

    def destroy_vif(self, vif):
        v = self.db["VIF"][vif]
        if v["network"] in self.db["network"]:
            self.db["network"][v["network"]]["VIFs"].remove(vif)
        if v["VM"] in self.db["VM"]:
            self.db["VM"][v["VM"]]["VIFs"].remove(vif)
        self.delete("VIF", vif)

    # disks and NICs

    def m_VDI_create(self, args, **_):
        r = args[0]
        with self.lock:
            self.get("SR", r["SR"])
            ref = self.new_vdi(r.get("name_label", ""), r["SR"], int(r.get("virtual_size", 0)),
                               vtype=r.get("type", "user"), sharable=bool(r.get("sharable", False)),
                               read_only=bool(r.get("read_only", False)), sm=r.get("sm_config", {}))
            rec = self.db["VDI"][ref]
            rec["other_config"] = dict(r.get("other_config", {}))
            rec["name_description"] = r.get("name_description", "")
            rec["xenstore_data"] = dict(r.get("xenstore_data", {}))
            return ref

    def m_VDI_destroy(self, args, **_):
        with self.lock:
            d = self.get("VDI", args[0])
            if args[0] in self.base:
                raise Failure("OPERATION_NOT_ALLOWED", "the fake's disks stay")
            if any(self.db["VBD"][b]["currently_attached"] for b in d["VBDs"]):
                raise Failure("VDI_IN_USE", args[0], "destroy")
            for b in list(d["VBDs"]):
                self.destroy_vbd(b)
            self.db["SR"][d["SR"]]["VDIs"].remove(args[0])
            self.delete("VDI", args[0])
            return ""

    def m_VBD_create(self, args, **_):
        r = args[0]
        with self.lock:
            self.get("VM", r["VM"])
            if r.get("VDI", NULL) != NULL:
                self.get("VDI", r["VDI"])
            ref = self.new_vbd(r["VM"], r.get("VDI", NULL), r.get("userdevice", "autodetect"),
                               vtype=r.get("type", "Disk"), bootable=bool(r.get("bootable", False)))
            self.db["VBD"][ref]["other_config"] = dict(r.get("other_config", {}))
            return ref

    def m_VBD_destroy(self, args, **_):
        with self.lock:
            b = self.get("VBD", args[0])
            if b["currently_attached"]:
                raise Failure("DEVICE_ALREADY_ATTACHED", args[0])
            self.destroy_vbd(args[0])
            return ""

    def m_VBD_unplug(self, args, **_):
        with self.lock:
            b = self.get("VBD", args[0])
            if not b["currently_attached"]:
                raise Failure("DEVICE_ALREADY_DETACHED", args[0])
            b["currently_attached"] = False
            self.mod("VBD", args[0])
            return ""

    m_VBD_unplug_force = m_VBD_unplug

    def m_VBD_plug(self, args, **_):
        with self.lock:
            b = self.get("VBD", args[0])
            if b["currently_attached"]:
                raise Failure("DEVICE_ALREADY_ATTACHED", args[0])
            b["currently_attached"] = True
            self.mod("VBD", args[0])
            return ""

    def m_VIF_create(self, args, **_):
        r = args[0]
        with self.lock:
            self.get("VM", r["VM"])
            self.get("network", r["network"])
            ref = self.new_vif(r["VM"], r["network"], r.get("device", "0"))
            self.db["VIF"][ref]["other_config"] = dict(r.get("other_config", {}))
            return ref

    def m_VIF_destroy(self, args, **_):
        with self.lock:
            v = self.get("VIF", args[0])
            if v["currently_attached"]:
                raise Failure("DEVICE_ALREADY_ATTACHED", args[0])
            self.destroy_vif(args[0])
            return ""

    # uploads

    def import_raw_vdi(self, query, body):
        q = {k: v[0] for k, v in parse_qs(query).items()}
        with self.lock:
            self.session_of(q.get("session_id", ""))
            d = self.get("VDI", q.get("vdi", ""))
            if len(body) > d["virtual_size"]:
                raise Failure("VDI_IO_ERROR", "the image is larger than the disk")
            d["fake_content"] = body
            self.stats["uploads"] += 1

    # --- control ----------------------------------------------------------------------

    def control(self, req):
        op = req.get("op")
        with self.lock:
            if op == "state":
                return {c: {r: self.jsonable(v) for r, v in t.items()} for c, t in self.db.items()}
            if op == "leftovers":
                out = {}
                for c, t in self.db.items():
                    left = [r for r in t if r not in self.base]
                    if left:
                        out[c] = {r: self.jsonable(t[r]) for r in left}
                return out
            if op == "stats":
                return dict(self.stats, calls=dict(self.counts), sessions=len(self.db["session"]),
                            tasks=len(self.db["task"]))
            if op == "reset_stats":
                self.counts = {}
                self.stats.update(connections=0, requests=0, max_inflight=self.stats["inflight"], uploads=0)
                return {}
            if op == "config":
                for k, v in req.items():
                    if k != "op":
                        if k not in self.cfg:
                            raise ValueError("unknown config key " + k)
                        self.cfg[k] = v
                return dict(self.cfg)
            if op == "fault":
                f = {"method": req["method"], "nth": int(req.get("nth", 1)), "times": int(req.get("times", 1)),
                     "seen": 0}
                if "error" in req:
                    f["error"] = list(req["error"])
                else:
                    f["action"] = req.get("action", "drop")
                    f["seconds"] = float(req.get("seconds", 0))
                self.faults.append(f)
                return {}
            if op == "clear_faults":
                self.faults = []
                return {}
            if op == "expire_sessions":
                for s in self.db["session"].values():
                    s["expired"] = True
                return {"expired": len(self.db["session"])}
            if op == "guests":
                return {self.db["VM"][vm]["uuid"]: {"ip": g["ip"], "port": self.guest_port,
                                                    "fingerprint": g.get("fingerprint"), "keys": g["keys"]}
                        for vm, g in self.guests.items() if vm in self.db["VM"]}
            if op == "add_template":
                return self.add_template(req["name"], req.get("baked_key"))
            if op == "vdi_content":
                return {"bytes": len(self.get("VDI", req["vdi"]).get("fake_content", b""))}
        raise ValueError("unknown op %r" % op)

    def jsonable(self, v):
        return {k: x for k, x in v.items() if k != "fake_content"}

    def stop(self):
        with self.lock:
            self.stopping = True
            guests = list(self.guests.values())
            self.guests = {}
            self.cond.notify_all()
        for g in guests:
            if g["sshd"] is not None:
                g["sshd"].stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None
    member = False

    def setup(self):
        super().setup()
        # Headers and body go out as two writes: without this, Nagle holds the body until
        # the client's delayed ACK (40 ms a reply).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake.lock:
            self.fake.stats["connections"] += 1

    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if ctype == "application/json":
            self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_PUT(self):
        url = urlparse(self.path)
        data = self.body()
        if url.path.rstrip("/") != "/import_raw_vdi":
            return self.reply(404, "<html>not found</html>", "text/html")
        fault = self.fake.count("import_raw_vdi")
        if fault is not None and fault.get("action") == "drop":
            self.close_connection = True
            return
        if fault is not None and "error" in fault:
            return self.reply(500, "<html>%s</html>" % esc(fault["error"][0]), "text/html")
        try:
            self.fake.import_raw_vdi(url.query, data)
        except Failure as f:
            return self.reply(500, "<html>%s</html>" % esc(" ".join(f.details)), "text/html")
        self.reply(200, "", "text/plain")

    def do_POST(self):
        f = self.fake
        path = urlparse(self.path).path
        data = self.body()
        if path == "/fake/control":
            try:
                out = f.control(json.loads(data or b"{}"))
                return self.reply(200, json.dumps(out), "application/json")
            except Exception as e:
                return self.reply(400, json.dumps({"error": repr(e)}), "application/json")
        with f.lock:
            f.stats["requests"] += 1
            f.stats["inflight"] += 1
            f.stats["max_inflight"] = max(f.stats["max_inflight"], f.stats["inflight"])
        try:
            if path == "/jsonrpc" and f.cfg["no_jsonrpc"]:
                self.reply(404, "<html><body>not found</body></html>", "text/html")
            elif path == "/jsonrpc":
                self.jsonrpc(data)
            else:
                self.xmlrpc(data)
        finally:
            with f.lock:
                f.stats["inflight"] -= 1

    def run(self, method, params):
        """(value, None), or (None, details) for a failure; None to drop the connection."""
        fault = self.fake.count(method)
        if fault is not None:
            if fault.get("action") == "drop":
                return None
            if fault.get("action") == "delay":
                time.sleep(fault["seconds"])
            elif fault.get("action") == "slave":
                return None, ["HOST_IS_SLAVE", "127.0.0.1"]
            elif "error" in fault and not method.startswith("Async."):
                return None, list(fault["error"])
        threading.current_thread().fault = fault if method.startswith("Async.") else None
        step = float(self.fake.cfg.get("step_delay") or 0)
        if step:
            time.sleep(step)
        try:
            return self.fake.dispatch(method, params, member=self.member), None
        except Failure as e:
            return None, e.details
        finally:
            threading.current_thread().fault = None

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def jsonrpc(self, data):
        try:
            req = json.loads(data)
            method, params, rid = req["method"], req["params"], req["id"]
            if rid is None or not isinstance(params, (list, dict)):
                raise ValueError("no id or params")
            if isinstance(params, dict):
                params = [params]
        except Exception:
            return self.reply(500, "<html><body><h1>HTTP 500 internal server error</h1>"
                                   "Jsonrpc.Malformed_method_request</body></html>", "text/html")
        out = self.run(method, params)
        if out is None:
            return self.drop()
        value, err = out
        v2 = req.get("jsonrpc") == "2.0"
        if err is None:
            if self.fake.cfg["infinity"] and method in ("VM.get_record", "VM.get_all_records"):
                value = quirk(value)
            body = {"jsonrpc": "2.0", "result": value, "id": rid} if v2 else {"result": value, "error": None, "id": rid}
        elif v2:
            body = {"jsonrpc": "2.0", "error": {"code": 1, "message": err[0], "data": err[1:]}, "id": rid}
        else:
            body = {"result": None, "error": err, "id": rid}
        self.reply(200, json.dumps(body), "application/json")

    def xmlrpc(self, data):
        try:
            params, method = xmlrpc.client.loads(data, use_builtin_types=True)
        except Exception:
            return self.reply(500, "<html><body>malformed XML-RPC</body></html>", "text/html")
        out = self.run(method, list(params))
        if out is None:
            return self.drop()
        value, err = out
        if err is None:
            v = {"Status": "Success", "Value": value}
        else:
            v = {"Status": "Failure", "ErrorDescription": err}
        self.reply(200, xml_response(v), "text/xml")


def quirk(value):
    """VM records with a non-finite float, as xapi's Yojson writes them (bare Infinity)."""
    if isinstance(value, dict) and "HVM_shadow_multiplier" in value:
        return dict(value, HVM_shadow_multiplier=float("inf"))
    if isinstance(value, dict):
        return {k: quirk(v) for k, v in value.items()}
    return value


def make_cert(d):
    key, csr, crt, ext = (os.path.join(d, n) for n in ("xapi.key", "xapi.csr", "xapi.crt", "ext.cnf"))
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-signkey", key, "-out", crt, "-days", "30",
                    "-extfile", ext], check=True, capture_output=True)
    fp = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256"], check=True,
                        capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    return key, crt, fp


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def listen(fake, address, port, member, tls=None):
    handler = type("H", (Handler,), {"fake": fake, "member": member})
    srv = Server((address, port), handler)
    if tls is not None:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[1], tls[0])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def serve(argv):
    fake = Fake(argv)
    key, crt, fp = make_cert(fake.dir)
    servers = []
    for _ in range(20):
        try:
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            tport = probe.getsockname()[1]
            probe.close()
            probe = socket.socket()
            probe.bind(("127.0.0.10", 0))
            fake.guest_port = probe.getsockname()[1]
            probe.close()
            servers = [listen(fake, "127.0.0.1", port, False), listen(fake, "127.0.0.2", port, True),
                       listen(fake, "127.0.0.1", tport, False, (key, crt)),
                       listen(fake, "127.0.0.2", tport, True, (key, crt))]
            break
        except OSError:
            for s in servers:
                s.shutdown()
            servers = []
    if not servers:
        raise RuntimeError("no free ports for the fake XAPI")
    info = {"pid": os.getpid(), "http": "http://127.0.0.1:%d" % port, "https": "https://127.0.0.1:%d" % tport,
            "member_http": "http://127.0.0.2:%d" % port, "member_https": "https://127.0.0.2:%d" % tport,
            "fingerprint": fp, "cert": crt, "username": ADMIN_USER, "password": ADMIN_PASSWORD,
            "guest_port": fake.guest_port, "guest_user": USER, "guest_password": GUEST_PASSWORD,
            "dir": fake.dir}
    done = threading.Event()

    def stop(*_):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    # The parent holds our stdin: when it goes away (however it ends), so do we.
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    for s in servers:
        s.shutdown()
    fake.stop()


def run(argv, http=False):
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("the fake XAPI did not start")
        info = json.loads(line)
        key = os.path.join(info["dir"], "guest_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bioxen-test", "-f", key],
                       check=True, capture_output=True)
        url = info["http"] if http else info["https"]
        tls = {} if http else {"tls_fingerprint": info["fingerprint"]}
        session = dict({"url": url, "username": info["username"], "password": info["password"]}, **tls)
        vm = dict({"vm_type": "xcpng", "xcp_host": url, "xcp_username": info["username"],
                   "xcp_password": info["password"]}, **tls)
        vm.update({
            "template_name": "Debian Bookworm 12", "vm_username": info["guest_user"], "vm_key_file": key,
            "guest_port": info["guest_port"], "expected_ip_cidr": "127.0.0.0/8", "lua_executable": "lua5.4",
            "boot_timeout": 60, "poll_interval": 0.05, "retry_backoff": 0.05})
        env = dict(os.environ, BIOXEN_TEST_XAPI=line.strip(), BIOXEN_TEST_XAPI_SESSION=json.dumps(session),
                   BIOXEN_TEST_XCPNG_OPTIONS=json.dumps(vm))
        return subprocess.call(argv, env=env)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv):
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return 0
    if len(argv) >= 3 and argv[0] == "run" and argv[1] == "--":
        return run(argv[2:])
    if len(argv) >= 4 and argv[0] == "run" and argv[1] == "--http" and argv[2] == "--":
        return run(argv[3:], http=True)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
