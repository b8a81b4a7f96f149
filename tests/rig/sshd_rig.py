#!/usr/bin/env python3
"""A private OpenSSH server on 127.0.0.1 for the C and Python tests of ssh VMs.

The same rig as tests/common/sshd.rs (the Rust tests'): a free port, keys made for the run
in a private directory, and a test user (bxuser, uid 4321, shell /bin/sh, an empty home)
that exists only in the server's own mount namespace. Stopped by its pid, and its
directory removed, whatever happens.

    python3 tests/rig/sshd_rig.py run -- COMMAND...

starts a server, runs COMMAND with BIOXEN_TEST_SSH_OPTIONS (the JSON options of an ssh VM
for it, lua5.4 on the remote side), BIOXEN_TEST_SSH_PORT, BIOXEN_TEST_SSH_KNOWN_HOSTS and
BIOXEN_TEST_SSH_RIG (its directory) in the environment, stops the server and exits with COMMAND's status. Python tests import
`Sshd` from here.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

USER = "bxuser"
UID = 4321
PASSWORD = "correct horse 'battery' $staple"


def _run(*cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed: {out.stderr}")
    return out.stdout


def _free_port(address="127.0.0.1"):
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _namespace(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


class Sshd:
    """`address`: the loopback address to listen on; `port`: a fixed port (else a free
    one); `authorized`: the authorized_keys text (else the rig's own client key)."""

    def __init__(self, extra="", address="127.0.0.1", port=None, authorized=None):
        if not os.path.exists("/usr/sbin/sshd"):
            raise RuntimeError("the ssh tests need OpenSSH's server (Debian package openssh-server)")
        if os.geteuid() != 0:
            raise RuntimeError("the ssh tests start sshd in a private mount namespace, which needs root")
        self.dir = tempfile.mkdtemp(prefix="bioxen_vm-sshd-")
        self.proc = None
        self.address = address
        self.fixed_port = port
        self.authorized_text = authorized
        try:
            self._start(extra)
        except BaseException:
            self.stop()
            raise

    def _start(self, extra):
        d = self.dir
        os.chmod(d, 0o755)
        home = os.path.join(d, "home")
        os.mkdir(home)
        os.chown(home, UID, UID)
        for name in ("host_ed25519", "client_ed25519"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bioxen-test", "-f", os.path.join(d, name))
        self.key = os.path.join(d, "client_ed25519")
        authorized = os.path.join(d, "authorized_keys")
        if self.authorized_text is None:
            shutil.copy(self.key + ".pub", authorized)
        else:
            with open(authorized, "w") as f:
                f.write(self.authorized_text)
        os.chmod(authorized, 0o644)
        pw_hash = _run("openssl", "passwd", "-6", "-salt", "bioxenvmtest", PASSWORD).strip()
        with open("/etc/passwd") as f:
            passwd = f.read()
        with open(os.path.join(d, "passwd"), "w") as f:
            f.write(passwd + f"{USER}:x:{UID}:{UID}:bioxen test:{home}:/bin/sh\n")
        try:
            with open("/etc/shadow") as f:
                shadow = f.read()
        except OSError:
            shadow = ""
        with open(os.path.join(d, "shadow"), "w") as f:
            f.write(shadow + f"{USER}:{pw_hash}:19000:0:99999:7:::\n")
        with open("/etc/group") as f:
            group = f.read()
        with open(os.path.join(d, "group"), "w") as f:
            f.write(group + f"{USER}:x:{UID}:\n")
        with open(os.path.join(d, "host_ed25519.pub")) as f:
            self.host_pub = " ".join(f.read().split()[:2])
        self.fingerprint = _run("ssh-keygen", "-l", "-E", "sha256", "-f", os.path.join(d, "host_ed25519.pub")).split()[1]
        for _ in range(5):
            self.port = self.fixed_port or _free_port(self.address)
            with open(os.path.join(d, "sshd_config"), "w") as f:
                f.write(
                    f"Port {self.port}\nListenAddress {self.address}\nHostKey {d}/host_ed25519\n"
                    f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\n"
                    "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\n"
                    "PermitRootLogin no\nStrictModes no\nLogLevel VERBOSE\nPrintMotd no\nPrintLastLog no\n"
                    f"X11Forwarding no\nAllowTcpForwarding no\nMaxStartups 100\nAllowUsers {USER}\n{extra}\n"
                )
            self.known_hosts = os.path.join(d, "known_hosts")
            with open(self.known_hosts, "w") as f:
                f.write(f"[{self.address}]:{self.port} {self.host_pub}\n")
            script = (
                f"mount --bind {d}/passwd /etc/passwd && mount --bind {d}/shadow /etc/shadow && "
                f"mount --bind {d}/group /etc/group && mount -t tmpfs -o mode=755 tmpfs /run && "
                f"mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -f {d}/sshd_config -E {d}/sshd.log"
            )
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._wait_listening(5.0):
                self.ns = _namespace(self.proc.pid)
                return
            self._stop_server()
        raise RuntimeError(f"sshd did not start: {self.log()}")

    def _wait_listening(self, limit):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.address, self.port), timeout=2) as s:
                    if s.recv(4) == b"SSH-":
                        return True
            except OSError:
                pass
            time.sleep(0.01)
        return False

    def log(self):
        try:
            with open(os.path.join(self.dir, "sshd.log")) as f:
                return f.read()
        except OSError:
            return ""

    def config(self, lua="lua5.4", **extra):
        """An ssh VM's options (a dict) for this server, with key authentication."""
        c = {
            "host": self.address, "port": self.port, "username": USER, "key_file": self.key,
            "known_hosts": self.known_hosts, "use_agent": False, "lua_executable": lua,
        }
        c.update(extra)
        return c

    def options_json(self, lua="lua5.4"):
        return json.dumps(dict(self.config(lua), vm_type="ssh"))

    def processes(self):
        """(pid, argv) of the test user's living processes on this server."""
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/status") as f:
                    status = f.read()
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            except OSError:
                continue
            uid = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("Uid:")), -1)
            zombie = any(l.startswith("State:") and "Z" in l.split()[1] for l in status.splitlines())
            if uid == UID and not zombie and _namespace(name) == self.ns:
                out.append((int(name), argv))
        return out

    def wait_gone(self, pred, limit=5.0):
        """Waits (bounded) until no process of the user here matches pred; those left."""
        end = time.monotonic() + limit
        while True:
            left = [p for p in self.processes() if pred(p[1])]
            if not left or time.monotonic() >= end:
                return left
            time.sleep(0.02)

    def _stop_server(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        mine = [pid for pid, _ in self.processes()] if self.proc is not None and getattr(self, "ns", "") else []
        self._stop_server()
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def main(argv):
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    rig = Sshd()
    try:
        env = dict(os.environ, BIOXEN_TEST_SSH_OPTIONS=rig.options_json(), BIOXEN_TEST_SSH_RIG=rig.dir,
                   BIOXEN_TEST_SSH_PORT=str(rig.port), BIOXEN_TEST_SSH_KNOWN_HOSTS=rig.known_hosts)
        rc = subprocess.call(argv[2:], env=env)
        if rc != 0:
            # What the server saw, for a failure that involved it (the log goes with the rig).
            try:
                with open(os.path.join(rig.dir, "sshd.log"), errors="replace") as f:
                    tail = f.readlines()[-60:]
                sys.stderr.write("sshd_rig: the last lines of sshd's log:\n" + "".join(tail))
            except OSError:
                pass
        return rc
    finally:
        rig.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
