"""ssh VMs from Python, against a private OpenSSH server on 127.0.0.1 (tests/rig/sshd_rig.py):
bioxen_vm's VMManager with ssh defaults, and the compatibility SSHSessionManager."""

import importlib.util
import time

import pytest

from conftest import REPO

from bioxen_vm.exceptions import InteractiveSessionError, LuaVMError, VMConnectionError
from bioxen_vm.manager import VMManager

_spec = importlib.util.spec_from_file_location("sshd_rig", REPO / "tests" / "rig" / "sshd_rig.py")
sshd_rig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sshd_rig)


@pytest.fixture(scope="module")
def rig():
    with sshd_rig.Sshd() as r:
        yield r


def interpreters_left(rig):
    return rig.wait_gone(lambda argv: bool(argv) and argv[0].startswith("lua"), 5.0)


def test_a_manager_of_ssh_vms(rig):
    config = rig.config()
    lua = config.pop("lua_executable")
    with VMManager(max_workers=2, lua_executable=lua, vm_type="ssh", **config) as m:
        vm = m.create_vm("a")
        assert vm.execute_string("x = 40 return x + 2")["stdout"] == "42"
        assert m.execute_vm_sync("a", "return x")["stdout"] == "40"
        session = m.create_interactive_vm("b", auto_attach=False)
        session.send_input("y = 2\n")
        session.send_input("print(y * 21)\n")
        assert session.read_output(timeout=10) == "42\n"
        info = m.get_vm_info("a")
        assert info["vm_type"] == "ssh"
        assert info["host_key_fingerprint"] == rig.fingerprint
    assert interpreters_left(rig) == []


def test_config_names_the_host_everywhere_a_vm_is_made(rig):
    import bioxen_vm

    config = rig.config()
    with bioxen_vm.create_vm("s", vm_type="ssh", config=config, timeout=20) as vm:
        assert vm.execute_string("x = 6 return x * 7")["stdout"] == "42"
        assert vm.execute_string("return x")["stdout"] == "6"
        assert vm.execute_string("return _VERSION")["stdout"] == "Lua 5.4"
    with VMManager(max_workers=1) as m:
        m.create_vm("a", vm_type="ssh", config=config)
        assert m.execute_vm_sync("a", "return 1 + 1")["stdout"] == "2"
        # An explicit lua_executable wins over the config's.
        m.create_vm("b", vm_type="ssh", config=config, lua_executable="lua5.1")
        assert m.execute_vm_sync("b", "return _VERSION")["stdout"] == "Lua 5.1"
        session = m.create_interactive_vm("c", vm_type="ssh", config=config,
                                          auto_attach=False)
        session.send_input("print(6 * 7)\n")
        assert session.read_output(timeout=10) == "42\n"
        assert m.get_vm_info("c")["host"] == config["host"]
    with pytest.raises(TypeError, match="config must be a mapping"):
        bioxen_vm.create_vm("s", vm_type="ssh", config=["host"])
    assert interpreters_left(rig) == []


def test_a_bad_host_key_says_how_to_pin_or_opt_out(rig, tmp_path):
    config = rig.config()
    lua = config.pop("lua_executable")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config["known_hosts"] = str(empty)
    with VMManager(max_workers=1, lua_executable=lua, vm_type="ssh", **config) as m:
        with pytest.raises(VMConnectionError) as e:
            m.create_vm("a")
    text = str(e.value)
    assert rig.fingerprint in text and "host_key_fingerprint" in text and "insecure-accept-any" in text


def test_ssh_session_manager_as_the_original_used_it(rig):
    from pylua_bioxen_vm_lib.ssh_session import SSHSessionManager

    ssh = SSHSessionManager("127.0.0.1", sshd_rig.USER, key_file=rig.key, port=rig.port,
                            known_hosts=rig.known_hosts, lua_executable="lua5.4", use_agent=False)
    assert ssh.is_connected() is False
    assert ssh.read_output() == ""
    with pytest.raises(InteractiveSessionError, match="No active Lua session"):
        ssh.send_input("print(1)")
    with ssh:
        assert ssh.is_connected()
        assert ssh.start_lua_session() is True
        assert ssh.execute_command("x = 6") == ""
        assert ssh.execute_command("print(x * 7)") == "42\n"
        assert ssh.execute_command("return x") == "6\n"
        assert ssh.send_input("print('a > b', 1 + 1)") is True
        assert ssh.read_output(timeout=5) == "a > b\t2\n"
        # Unlike the original, reconnect starts Lua again (its state is new).
        assert ssh.reconnect() is True
        assert ssh.session_active
        assert ssh.execute_command("print(x)") == "nil\n"
    assert ssh.is_connected() is False
    ssh.disconnect()
    assert interpreters_left(rig) == []


def test_ssh_session_manager_failures(rig, tmp_path):
    from pylua_bioxen_vm_lib.ssh_session import SSHSessionManager

    with pytest.raises(InteractiveSessionError, match="No authentication method provided"):
        SSHSessionManager("127.0.0.1", sshd_rig.USER, port=rig.port).connect()
    bad = SSHSessionManager("127.0.0.1", sshd_rig.USER, password="wrong-secret", port=rig.port,
                            known_hosts=rig.known_hosts, lua_executable="lua5.4", use_agent=False)
    with pytest.raises(InteractiveSessionError, match="^SSH authentication failed: ") as e:
        bad.connect()
    assert "wrong-secret" not in str(e.value) and "wrong-secret" not in repr(bad)
    good = SSHSessionManager("127.0.0.1", sshd_rig.USER, password=sshd_rig.PASSWORD, port=rig.port,
                             known_hosts=rig.known_hosts, lua_executable="lua5.4", use_agent=False)
    with good:
        assert good.execute_command("print(_VERSION)") == "Lua 5.4\n"
    closed = socket_port()
    t = time.monotonic()
    with pytest.raises(InteractiveSessionError, match="^SSH connection failed: cannot connect"):
        SSHSessionManager("127.0.0.1", sshd_rig.USER, key_file=rig.key, port=closed,
                          known_hosts=rig.known_hosts, connect_timeout=2).connect()
    assert time.monotonic() - t < 5


def socket_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_errors_are_lua_vm_errors(rig):
    config = rig.config(lua="no-such-lua")
    lua = config.pop("lua_executable")
    with VMManager(max_workers=1, lua_executable=lua, vm_type="ssh", **config) as m:
        with pytest.raises(LuaVMError, match="not found in PATH on bxuser@127.0.0.1"):
            m.create_vm("x")
