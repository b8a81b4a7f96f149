"""Networked VMs (process VMs with LuaSocket), validate_port/validate_host, templates."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A message that would end the child interpreter with status 7 if it were ever pasted into
# Lua source (inside "...", '...', [[...]] or [==[...]==]): quotes, long brackets,
# backslashes, a newline, a carriage return, a NUL, non-ASCII.
NASTY_MESSAGE = ('x" .. os.exit(7) .. "]] .. os.exit(7) .. [["\' .. os.exit(7) .. \' '
                 '\\ \\" \\n \n2nd line \r\n \0 ]==] os.exit(7) --[==[ ü \U0001F600')
# The same on one line: LuaSocket's line reads end at "\n" and drop "\r".
NASTY_LINE = NASTY_MESSAGE.replace("\n", " ").replace("\r", " ")
# Hosts that try to break out of a string or a long bracket. The last label is longer than
# 63 bytes, so no resolver can put the name in a DNS query: the lookup fails locally.
NASTY_HOSTS = ['127.0.0.1"); os.exit(7) --' + "x" * 70,
               "]] .. os.exit(7) .. [[" + "x" * 70,
               "127.0.0.1' .. os.exit(7) .. '\\" + "x" * 70]


class _OneLineServer:
    """A plain TCP server on 127.0.0.1 in a thread: accepts one client, sends a greeting
    line, and keeps every byte the client sends until it closes the connection."""

    GREETING = "Hello from the test server"

    def __init__(self, timeout: float = 20) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(timeout)
        self.port = self.sock.getsockname()[1]
        self.timeout = timeout
        self.data = b""
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(self.timeout)
                conn.sendall(self.GREETING.encode() + b"\n")
                chunks = []
                while True:
                    b = conn.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
                self.data = b"".join(chunks)
        except Exception as exc:  # reported by received()
            self.error = exc
        finally:
            self.sock.close()

    def received(self) -> bytes:
        self.thread.join(self.timeout + 10)
        assert not self.thread.is_alive(), "the test server is still running"
        if self.error is not None:
            raise self.error
        return self.data

    def close(self) -> None:
        self.sock.close()  # ends a pending accept()
        self.thread.join(self.timeout + 10)


def test_validate_port_and_host():
    for port in (1024, 8080, 65535):
        assert bioxen_vm.validate_port(port) is None
    for port in (0, 80, 1023, 65536, -1, 1 << 70):
        with pytest.raises(ValueError, match="^Port must be between 1024 and 65535$"):
            bioxen_vm.validate_port(port)
    for bad in ("8080", 80.0, None, True):
        with pytest.raises(TypeError):
            bioxen_vm.validate_port(bad)
    assert bioxen_vm.validate_host("localhost") is None
    for host in (None, "", "   "):
        with pytest.raises(ValueError, match="^Host cannot be empty$"):
            bioxen_vm.validate_host(host)
    with pytest.raises(TypeError):
        bioxen_vm.validate_host(5)


def test_templates_quote_every_value():
    src = bioxen_vm.LuaScriptTemplate.simple_echo_server(9000)
    assert "9000" in src and 'require("socket")' in src
    evil = 'x"); os.exit(1) --'
    src = bioxen_vm.LuaScriptTemplate.heartbeat_client(evil, 9000, interval=2, count=3)
    assert evil not in src  # only as a quoted literal
    src = bioxen_vm.LuaScriptTemplate.http_client_template("http://example/", "POST")
    assert "POST" in src
    with pytest.raises(ValueError):
        bioxen_vm.LuaScriptTemplate.simple_echo_server(80)
    with pytest.raises(ValueError):
        bioxen_vm.LuaScriptTemplate.heartbeat_client("", 9000)
    # the source is valid Lua (compiled, not run)
    with bioxen_vm.LuaProcess() as vm:
        r = vm.execute_string("return load(...) ~= nil", args=[src])
        assert r["values"] == [True]


def test_networked_vm_is_a_process_vm_that_runs_code():
    vm = bioxen_vm.create_vm("net", networked=True)
    try:
        assert isinstance(vm, bioxen_vm.NetworkedLuaVM)
        assert vm.execute_string("x = 2 return x * 21")["values"] == [42]
        assert vm.info()["vm_type"] == "process"
    finally:
        vm.close()


def test_server_and_client_round_trip(manager):
    port = _free_port()
    manager.create_vm("server", networked=True)
    client = manager.create_vm("client", networked=True)
    assert isinstance(client, bioxen_vm.NetworkedLuaVM)
    server_future = manager.start_server_vm("server", port, timeout=30, accept_timeout=20)
    for _ in range(50):  # the server binds asynchronously: retry the client briefly
        r = manager.start_client_vm("client", "127.0.0.1", port, message="hello 'there'",
                                    timeout=30).result(30)
        if r["success"]:
            break
    assert r["success"], r
    assert "Lua Client:" in r["stdout"]
    s = server_future.result(30)
    assert s["success"], s
    assert f"Lua Server: Listening on port {port}..." in s["stdout"]
    assert s["values"][0]["received"] == "hello 'there'"


def test_standalone_networked_vm_modes():
    port = _free_port()
    with bioxen_vm.NetworkedLuaVM("alone") as vm:
        r = vm.start_server(port, timeout=30, accept_timeout=0.2)
        assert r["success"] is False  # nobody connected within the accept timeout
        r = vm.start_p2p(port, run_duration=0.3, send_interval=0.1, timeout=30)
        assert r["success"], r
        assert "P2P VM:" in r["stdout"] and "sent" in r["values"][0]
        with pytest.raises(ValueError, match="Port must be between 1024 and 65535"):
            vm.start_server(80)
        with pytest.raises(ValueError, match="Host cannot be empty"):
            vm.start_client("  ", port)
        with pytest.raises(TypeError):
            vm.start_server("8080")


def _free_ports(n):
    """``n`` consecutive ports free on 127.0.0.1 right now (in 20000-59999)."""
    for attempt in range(400):
        base = 20000 + ((time.monotonic_ns() // 1000 + attempt * 97) % 4000) * 10
        held = []
        try:
            for i in range(n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} free consecutive ports")


def test_p2p_ring(manager):
    base = _free_ports(3)
    t = time.monotonic()
    futures = manager.setup_p2p_cluster("ring", 3, base_port=base, run_duration=2,
                                        send_interval=0.4)
    assert len(futures) == 3
    results = [f.result(30) for f in futures]
    elapsed = time.monotonic() - t
    assert 1.9 <= elapsed < 15, elapsed
    assert sorted(manager.list_vms()) == ["ring_000", "ring_001", "ring_002"]
    for i, r in enumerate(results):
        assert r["success"], r
        out = r["stdout"]
        assert f"P2P VM: Listening on local port {base + i}..." in out, out
        assert f"P2P VM: Connected to peer at 127.0.0.1:{base + (i + 1) % 3}" in out, out
        # Heartbeats from both neighbours: the peer this VM connected to answers on that
        # connection, the one that connected to this VM on the accepted one.
        for neighbour in (base + (i + 1) % 3, base + (i - 1) % 3):
            assert f"P2P VM {neighbour}: Heartbeat at " in out, (neighbour, out)
        beats = out.count(": Heartbeat at ")
        assert beats >= 4, (beats, out)
        assert "P2P VM: Shutting down after 2" in out, out
        assert r["values"][0]["received"] >= beats, r
    with pytest.raises(ValueError, match="at least 2 VMs"):
        manager.setup_p2p_cluster("solo", 1, base_port=base)


def test_network_modes_need_a_networked_vm(manager):
    manager.create_vm("plain")
    with pytest.raises(E.NetworkingError, match="Networked VM 'plain' not found"):
        manager.start_client_vm("plain", "127.0.0.1", 9000)
    with pytest.raises(E.NetworkingError):
        manager.start_p2p_vm("nope", 9000)
    with bioxen_vm.LuaProcess() as basic:
        with pytest.raises(AttributeError):
            basic.start_server  # noqa: B018  (only NetworkedLuaVM has the modes)


def test_p2p_through_the_manager_and_a_proxy(manager):
    port = _free_port()
    vm = manager.create_vm("peer", networked=True)
    assert manager.get_vm("peer").__class__ is bioxen_vm.vm.ManagedNetworkedLuaVM
    f = manager.start_p2p_vm("peer", port, run_duration=0.3, send_interval=0.1, timeout=30)
    assert f.result(30)["success"]
    assert manager.get_vm_status("peer") == "done"
    r = vm.start_server(_free_port(), timeout=30, accept_timeout=0.1)
    assert r["success"] is False


def _child(info):
    return info["pid"], info["restarts"]


def test_a_client_message_is_data_byte_for_byte():
    """The message reaches a real server (Python, 127.0.0.1) exactly as given, and the
    child interpreter that sent it was never ended by it."""
    server = _OneLineServer()
    try:
        with bioxen_vm.NetworkedLuaVM("sender") as vm:
            before = _child(vm.info())
            r = vm.start_client("127.0.0.1", server.port, message=NASTY_MESSAGE, timeout=30,
                                connect_timeout=10)
            assert server.received() == NASTY_MESSAGE.encode("utf-8") + b"\n"
            assert r["success"], r
            assert r["return_code"] != 7
            assert r["values"] == [{"greeting": _OneLineServer.GREETING, "sent": NASTY_MESSAGE}]
            assert f"Lua Client: Sent message: '{NASTY_MESSAGE}'" in r["stdout"]
            assert vm.execute_string("return 'still here'")["values"] == ["still here"]
            assert _child(vm.info()) == before  # same child, never restarted
    finally:
        server.close()


def test_a_client_message_is_data_through_the_manager(manager):
    """As tests/net.rs: a Lua server VM receives the line exactly as the client VM was
    given it, through the manager's jobs."""
    port = _free_port()
    manager.create_vm("srv", networked=True)
    manager.create_vm("cli", networked=True)
    before = _child(manager.get_vm_info("cli"))
    server = manager.start_server_vm("srv", port, timeout=30, accept_timeout=20)
    deadline = time.monotonic() + 10
    while True:  # the server binds asynchronously: retry the client for a bounded time
        r = manager.start_client_vm("cli", "127.0.0.1", port, message=NASTY_LINE, timeout=30,
                                    connect_timeout=2).result(30)
        if r["success"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r["success"], r
    assert r["values"][0]["sent"] == NASTY_LINE
    s = server.result(30)
    assert s["success"], s
    assert s["values"][0]["received"] == NASTY_LINE
    assert s["values"][0]["client"] == "127.0.0.1"
    assert _child(manager.get_vm_info("cli")) == before
    assert manager.execute_vm_sync("cli", "return 'still here'")["values"] == ["still here"]


@pytest.mark.parametrize("host", NASTY_HOSTS)
def test_a_host_with_lua_in_it_is_only_a_host_name(host):
    """A host that tries to break out of a string is just an unknown host: the connection
    fails with the name quoted as given, and nothing in it runs."""
    with bioxen_vm.NetworkedLuaVM("hosty") as vm:
        before = _child(vm.info())
        r = vm.start_client(host, _free_port(), message="m", timeout=30, connect_timeout=2)
        assert r["success"] is False, r
        assert r["return_code"] != 7, r
        assert "Lua Client: Connected" not in r["stdout"]
        assert f"Lua Client: Failed to connect to {host}:" in r["stderr"], r
        assert _child(vm.info()) == before  # the child is the same and was never restarted
        assert vm.execute_string("return 'still here'")["values"] == ["still here"]


def test_a_host_with_lua_in_it_through_the_manager(manager):
    manager.create_vm("cli", networked=True)
    before = _child(manager.get_vm_info("cli"))
    for host in NASTY_HOSTS:
        r = manager.start_client_vm("cli", host, _free_port(), timeout=30,
                                    connect_timeout=2).result(30)
        assert r["success"] is False, r
        assert r["return_code"] != 7, r
        assert f"Lua Client: Failed to connect to {host}:" in r["stderr"], r
    with pytest.raises(ValueError, match="Host cannot be empty"):
        manager.start_client_vm("cli", " \t\n", _free_port())
    assert _child(manager.get_vm_info("cli")) == before
    assert manager.execute_vm_sync("cli", "return 'still here'")["values"] == ["still here"]
