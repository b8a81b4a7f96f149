"""The fake XAPI (tests/rig/fake_xapi.py) for the Python tests: started on free ports,
driven through its control endpoint, stopped by its pid (its guests with it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict

REPO = Path(__file__).resolve().parents[3]
FAKE = REPO / "tests" / "rig" / "fake_xapi.py"


class FakeXapi:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(FAKE), "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError("the fake XAPI did not start")
        self.info: Dict[str, Any] = json.loads(line)
        self.keydir = tempfile.mkdtemp(prefix="bioxen_vm-pytest-xcpng-")
        self.key = os.path.join(self.keydir, "id")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", self.key],
                       check=True, capture_output=True)

    def control(self, **body: Any) -> Any:
        req = urllib.request.Request(self.info["http"] + "/fake/control",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def config(self, **extra: Any) -> Dict[str, Any]:
        """An xcpng VM's config for this fake (TLS pinned), with ``extra`` on top."""
        c = {
            "xcp_host": self.info["https"], "xcp_username": self.info["username"],
            "xcp_password": self.info["password"], "tls_fingerprint": self.info["fingerprint"],
            "template_name": "Debian Bookworm 12", "vm_username": self.info["guest_user"],
            "vm_key_file": self.key, "guest_port": self.info["guest_port"],
            "expected_ip_cidr": "127.0.0.0/8", "lua_executable": "lua5.4", "boot_timeout": 30,
            "poll_interval": 0.05, "retry_backoff": 0.05,
        }
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def session_config(self) -> Dict[str, Any]:
        return {"url": self.info["https"], "username": self.info["username"],
                "password": self.info["password"], "tls_fingerprint": self.info["fingerprint"]}

    def assert_clean(self, limit: float = 10.0) -> None:
        """Nothing made since the start is left (waits, bounded, for teardowns)."""
        end = time.monotonic() + limit
        while True:
            left = self.control(op="leftovers")
            if not left:
                return
            if time.monotonic() >= end:
                raise AssertionError("left on the fake XAPI: %s" % json.dumps(left, indent=1)[:4000])
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["rm", "-rf", self.keydir], check=False)
