"""Networked VMs (process VMs with LuaSocket), validate_port/validate_host, templates."""

from __future__ import annotations

import socket

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_p2p_ring(manager):
    base = _free_port()
    futures = manager.setup_p2p_cluster("ring", 3, base_port=base, run_duration=1,
                                        send_interval=0.2)
    assert len(futures) == 3
    results = [f.result(60) for f in futures]
    assert all(r["success"] for r in results), results
    assert sorted(manager.list_vms()) == ["ring_000", "ring_001", "ring_002"]
    assert any(r["values"][0]["received"] > 0 for r in results)
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
