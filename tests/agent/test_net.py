"""The networked VM scripts (src/agent/net/*.lua) run through the agent, on 127.0.0.1 only."""

import json
import re
import socket
import subprocess
import time

import pytest

from conftest import REQUIRED, ROOT, TIMEOUT, Agent

NET = ROOT / "src" / "agent" / "net"
GREETING = "Hello from Lua Server! What's your message?"


def script(name):
    return (NET / f"{name}.lua").read_text()


@pytest.fixture
def agents(lua, tmp_path):
    """Starts agents on demand (only where LuaSocket is installed); stops all of them."""
    has_socket = subprocess.run([lua, "-e", "require('socket')"], capture_output=True, timeout=TIMEOUT).returncode == 0
    if not has_socket:
        if lua in REQUIRED:
            pytest.fail(f"LuaSocket is not installed for {lua} (Debian package lua-socket)")
        pytest.skip(f"no LuaSocket for {lua}")
    started = []

    def start():
        a = Agent(lua, cwd=tmp_path)
        started.append(a)
        return a

    yield start
    for a in started:
        a.close()


def start_script(agent, name, opts):
    agent.send("exec", script(name), json.dumps([opts]), f"@{NET / name}.lua")


def free_ports(n):
    """n distinct ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def lines(result):
    return result.out.decode().splitlines()


def assert_alive(agent):
    agent.send("ping")
    assert agent.next_frame() == ["pong"]
    assert agent.proc.poll() is None


def start_server(agent, **extra):
    opts = {"port": 0, "accept_timeout": 10, "receive_timeout": 10}
    opts.update(extra)
    start_script(agent, "server", opts)
    first = agent.next_frame()
    assert first[0] == "out", first
    m = re.fullmatch(r"Lua Server: Listening on port (\d+)\.\.\.\n", first[1].decode())
    assert m, first
    return int(m.group(1)), first


def test_server_and_client_exchange_a_message(agents):
    server, client = agents(), agents()
    port, first = start_server(server)
    c = client.exec(
        script("client"),
        [{"host": "127.0.0.1", "port": port, "message": "hi there", "connect_timeout": 5}],
    )
    assert c.status == "ok", c.error
    assert lines(c)[:4] == [
        f"Lua Client: Connected to server at 127.0.0.1:{port}",
        f"Lua Client: Received from server: {GREETING}",
        "Lua Client: Sent message: 'hi there'",
        "Lua Client: Connection closed.",
    ]
    assert re.fullmatch(r"table: 0x[0-9a-f]+", lines(c)[4])  # the returned value, printed
    assert c.values == [{"greeting": GREETING, "sent": "hi there"}]
    assert c.err == b""

    s = server.response()
    assert s.status == "ok", s.error
    assert [first[1].decode().rstrip("\n")] + lines(s)[:3] == [
        f"Lua Server: Listening on port {port}...",
        "Lua Server: Client connected from 127.0.0.1",
        "Lua Server: Received from client: hi there",
        "Lua Server: Connection closed.",
    ]
    assert s.values == [{"received": "hi there", "client": "127.0.0.1"}]
    assert s.err == b""


def test_client_default_message(agents):
    server, client = agents(), agents()
    port, _ = start_server(server)
    c = client.exec(script("client"), [{"host": "127.0.0.1", "port": port, "connect_timeout": 5}])
    assert c.values == [{"greeting": GREETING, "sent": "Hello from Lua Client!"}]
    assert server.response().values == [{"received": "Hello from Lua Client!", "client": "127.0.0.1"}]


def test_injection_through_message_is_just_data(agents):
    server, client = agents(), agents()
    port, _ = start_server(server)
    message = '"]] os.exit(9) --\'); os.exit(9) --[==['
    c = client.exec(script("client"), [{"host": "127.0.0.1", "port": port, "message": message,
                                        "connect_timeout": 5}])
    assert c.status == "ok", c.error
    assert f"Lua Client: Sent message: '{message}'" in lines(c)
    s = server.response()
    assert s.values == [{"received": message, "client": "127.0.0.1"}]
    assert f"Lua Server: Received from client: {message}" in lines(s)
    assert_alive(server)
    assert_alive(client)


def test_injection_through_host_is_just_data(agents):
    client = agents()
    port = free_ports(1)[0]
    host = '127.0.0.1"); os.exit(9) --'
    c = client.exec(script("client"), [{"host": host, "port": port, "connect_timeout": 2}])
    assert c.status == "error"
    prefix = f"Lua Client: Failed to connect to {host}:{port}: "
    assert c.error.startswith(prefix), c.error
    assert c.err.decode().startswith(prefix)
    assert_alive(client)
    r = client.exec(script("p2p"), [{"local_port": 0, "peer_host": host, "peer_port": port,
                                     "run_duration": 0.5, "send_interval": 10}])
    assert r.status == "ok", r.error
    assert f"P2P VM: Failed to connect to peer {host}:{port}:" in r.err.decode()
    assert_alive(client)


def test_client_connection_refused_is_an_error(agents):
    client = agents()
    port = free_ports(1)[0]
    c = client.exec(script("client"), [{"host": "127.0.0.1", "port": port, "connect_timeout": 2}])
    assert c.status == "error"
    assert c.error.startswith(f"Lua Client: Failed to connect to 127.0.0.1:{port}: connection refused")
    assert_alive(client)


def test_server_bind_failure_and_accept_timeout(agents):
    server = agents()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = server.exec(script("server"), [{"port": port}])
    assert r.status == "error"
    assert r.error.startswith(f"Lua Server: Failed to bind to port {port}: ")
    assert r.err.decode().startswith(f"Lua Server: Failed to bind to port {port}: ")
    assert_alive(server)
    t0 = time.monotonic()
    r = server.exec(script("server"), [{"port": 0, "accept_timeout": 0.3}])
    assert r.status == "error"
    assert r.error.startswith("Lua Server: No client connected: timeout")
    assert time.monotonic() - t0 < 5
    r = server.exec(script("server"), [{"port": "80; os.exit(9)"}])
    assert r.status == "error"
    assert r.error.startswith("server: port must be")
    assert_alive(server)


def test_p2p_survives_idle_time_and_uses_wall_clock(agents):
    a = agents()
    t0 = time.monotonic()
    r = a.exec(script("p2p"), [{"local_port": 0, "run_duration": 1, "send_interval": 10}])
    elapsed = time.monotonic() - t0
    assert r.status == "ok", r.error
    assert 0.9 <= elapsed < 5, elapsed
    out = lines(r)
    assert re.fullmatch(r"P2P VM: Listening on local port \d+\.\.\.", out[0])
    assert out[1] == "P2P VM: Shutting down after 1 seconds."
    assert r.values == [{"sent": 0, "received": 0}]
    assert r.err == b""


def test_p2p_ring_of_three(agents):
    n = 3
    ring = [agents() for _ in range(n)]
    ports = free_ports(n)
    t0 = time.monotonic()
    for i, a in enumerate(ring):
        start_script(a, "p2p", {
            "local_port": ports[i],
            "peer_host": "127.0.0.1",
            "peer_port": ports[(i + 1) % n],
            "run_duration": 2,
            "send_interval": 0.4,
        })
    results = [a.response(timeout=30) for a in ring]
    elapsed = time.monotonic() - t0
    assert 2 <= elapsed < 10, elapsed
    for i, r in enumerate(results):
        me, succ, pred = ports[i], ports[(i + 1) % n], ports[(i - 1) % n]
        assert r.status == "ok", r.error
        out = lines(r)
        assert out[0] == f"P2P VM: Listening on local port {me}..."
        assert f"P2P VM: Connected to peer at 127.0.0.1:{succ}" in out
        assert any(re.fullmatch(r"P2P VM: Accepted connection from 127\.0\.0\.1:\d+", l) for l in out), out
        assert f"P2P VM: Received from 127.0.0.1: Hello from P2P VM on port {pred}!" in out
        assert f"P2P VM: Received from 127.0.0.1: Welcome to P2P VM on port {succ}!" in out
        for neighbour in (succ, pred):
            beats = [l for l in out if l.startswith(f"P2P VM: Received from 127.0.0.1: P2P VM {neighbour}: Heartbeat at ")]
            assert len(beats) >= 2, (neighbour, out)
        assert out[-2] == "P2P VM: Shutting down after 2 seconds."
        counts = r.values[0]
        assert counts["sent"] >= 4 and counts["received"] >= 4, counts
    for a in ring:
        assert_alive(a)
