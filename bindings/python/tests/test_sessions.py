"""Interactive sessions: input, output, attach/detach, callbacks, SessionManager."""

from __future__ import annotations

import threading
import time

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E


def test_spec_example_send_input_and_read_output(manager):
    session = manager.create_interactive_vm("interactive_vm")
    assert isinstance(session, bioxen_vm.InteractiveSession)
    manager.send_input("interactive_vm", "x = 42\nprint('Value:', x)\n")
    assert manager.read_output("interactive_vm", timeout=5) == "Value:\t42\n"
    assert manager.read_output("interactive_vm") is None  # nothing buffered: None
    assert manager.read_output("interactive_vm", timeout=0) is None


def test_session_methods(manager):
    s = manager.create_interactive_vm("s")
    assert s.session_id == "s" and s.name == "InteractiveSession_s"
    assert s.is_running() and s.is_attached()
    s.send_input("y = 5")  # a newline is added
    s.send_command(["z = y * 2", "print(z)"])
    assert s.read_output(timeout=5) == "10\n"
    assert s.execute_and_wait("y + z") == "15\n"
    assert s.execute_and_wait("print('a'); error('e')").startswith("a\nstdin:1: e\n")
    s.send_input(b"print('bytes')")
    assert s.read_output(timeout=5) == "bytes\n"


def test_the_session_shares_the_vms_state(manager):
    s = manager.create_interactive_vm("shared")
    manager.execute_vm_sync("shared", "from_execute = 'yes'")
    assert s.execute_and_wait("from_execute") == "yes\n"
    s.execute_and_wait("from_session = 3")
    assert manager.execute_vm_sync("shared", "return from_session")["values"] == [3]


def test_multi_line_input_and_incomplete_chunks(manager):
    s = manager.create_interactive_vm("ml")
    s.send_input("function add(a, b)")
    s.send_input("  return a + b")
    assert s.read_output(timeout=1) is None
    assert manager.list_interactive_sessions()["ml"]["incomplete_input"] is True
    s.send_input("end")
    s.send_input("add(2, 3)")
    assert s.read_output(timeout=5) == "5\n"


def test_read_output_waits_for_idle_without_sleeping(manager):
    s = manager.create_interactive_vm("slow")
    s.send_input("local t = os.clock() while os.clock() - t < 0.3 do end print('late')")
    start = time.monotonic()
    assert s.read_output(timeout=10) == "late\n"
    assert time.monotonic() - start < 8
    s.send_input("local t = os.clock() while os.clock() - t < 1 do end print('later')")
    start = time.monotonic()
    assert s.read_output(timeout=0) is None  # 0: no wait
    assert time.monotonic() - start < 0.5
    assert s.read_output(timeout=None) == "later\n"  # None: no limit


def test_attach_with_a_callback_streams_output(manager):
    s = manager.create_interactive_vm("cb", auto_attach=False)
    assert not s.is_attached()
    chunks = []
    s.attach(chunks.append)
    assert s.is_attached()
    s.send_input("for i = 1, 3 do print('tick', i) end")
    assert s.read_output(timeout=5) == "tick\t1\ntick\t2\ntick\t3\n"
    assert "".join(chunks) == "tick\t1\ntick\t2\ntick\t3\n"
    s.detach()
    assert not s.is_attached()
    s.send_input("print('after detach')")
    assert s.read_output(timeout=5) == "after detach\n"
    assert "after detach" not in "".join(chunks)


def test_callbacks_get_utf8_split_across_chunks(manager):
    s = manager.create_interactive_vm("utf", auto_attach=False)
    chunks = []
    s.attach(chunks.append)
    s.send_input("io.write('\\xc3') io.write('\\xa9\\n')")  # é written in two halves
    s.read_output(timeout=5)
    assert "".join(chunks) == "é\n"


def test_callback_errors_are_swallowed(manager):
    s = manager.create_interactive_vm("bad_cb", auto_attach=False)

    def broken(_text):
        raise RuntimeError("callback failure")

    s.attach(broken)
    assert s.execute_and_wait("print('still works')") == "still works\n"


def test_a_callback_cannot_use_its_own_session(manager):
    s = manager.create_interactive_vm("reentry", auto_attach=False)
    errors = []

    def callback(_text):
        try:
            manager.read_output("reentry")
        except E.InteractiveSessionError as exc:
            errors.append(str(exc))

    s.attach(callback)
    s.execute_and_wait("print(1)")
    assert errors and "own output callback" in errors[0]


def test_attach_detach_errors(manager):
    manager.create_vm("plain")
    with pytest.raises(E.SessionNotFoundError, match="VM 'ghost' not found"):
        manager.attach_to_vm("ghost")
    session = manager.attach_to_vm("plain")  # creates the session
    assert session.is_attached()
    with pytest.raises(E.AttachError):
        manager.attach_to_vm("plain")
    manager.detach_from_vm("plain")
    with pytest.raises(E.DetachError):
        session.detach()
    with pytest.raises(E.DetachError):
        manager.detach_from_vm("plain")  # attached no more (the original meant DetachError)
    manager.detach_from_vm("ghost")  # no session at all: silent, as the original
    with pytest.raises(TypeError):
        manager.attach_to_vm("plain", output_callback=42)


def test_interrupt_keeps_the_session(manager):
    s = manager.create_interactive_vm("int")
    s.execute_and_wait("kept = 'yes'")
    s.send_input("while true do end")
    s.send_input("print('queued behind')")

    def interrupt_soon():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if manager.list_interactive_sessions()["int"]["evaluating"]:
                break
            time.sleep(0.005)
        s.interrupt()

    t = threading.Thread(target=interrupt_soon)
    t.start()
    out = s.read_output(timeout=20)
    t.join()
    assert "interrupted" in out and "queued behind" not in out
    assert s.execute_and_wait("kept") == "yes\n"


def test_terminate_and_clone(manager):
    s = manager.create_interactive_vm("orig")
    s.execute_and_wait("v = 1")
    clone = manager.clone_vm_session("orig", "copy")
    assert clone.is_attached()
    assert clone.execute_and_wait("v") == "nil\n"  # a fresh state
    with pytest.raises(E.SessionNotFoundError, match="Source VM"):
        manager.clone_vm_session("missing", "x")
    s.terminate()
    assert not s.is_running()
    with pytest.raises(E.SessionNotFoundError):
        s.send_input("1")
    manager.terminate_vm_session("orig")  # silent now
    assert "orig" in manager.list_vms()  # the VM stays
    s.start()  # a new session on the same VM, not attached
    assert s.is_running() and not s.is_attached()
    assert s.execute_and_wait("v") == "1\n"
    with pytest.raises(E.InteractiveSessionError, match="already running"):
        s.start()


def test_session_context_manager(manager):
    manager.create_vm("ctx")
    session = manager._session_object("ctx")
    with session as s:
        assert s.is_running()
        assert s.execute_and_wait("1 + 1") == "2\n"
    assert not session.is_running()


def test_list_sessions_and_stats(manager):
    manager.create_interactive_vm("a")
    manager.create_interactive_vm("b", auto_attach=False)
    sessions = manager.list_interactive_sessions()
    assert set(sessions) == {"a", "b"}
    for details in sessions.values():
        assert {"attached", "running", "last_activity"} <= set(details)
        # The original's "running": the session is live (its child was alive), idle or not.
        assert details["running"] is True
        assert details["evaluating"] is False and details["idle"] is True
    assert sessions["a"]["attached"] and not sessions["b"]["attached"]
    assert set(manager.list_sessions()) == {"a", "b"}
    stats = manager.get_stats()
    assert stats["interactive_sessions"] == 2 and stats["attached_sessions"] == 1
    persistent = manager.list_persistent_vms()
    assert set(persistent) == {"a", "b"} and persistent["a"]["session_attached"]
    assert repr(manager) == "VMManager(vms=2, interactive_sessions=2, max_workers=4)"


def test_session_manager_of_a_vm_manager(manager):
    sm = manager.session_manager
    s = sm.create_session("sm1")
    assert s.is_running() and not s.is_attached()
    with pytest.raises(E.SessionAlreadyExistsError, match="Session 'sm1' already exists"):
        sm.create_session("sm1")
    assert sm.get_session("sm1").session_id == "sm1"
    assert sm.get_session("nope") is None
    assert set(sm.list_sessions()) == {"sm1"}
    sm.terminate_session("sm1")
    sm.terminate_session("sm1")  # silent
    assert sm.get_session("sm1") is None
    sm.create_session("sm1")  # the VM exists: only a new session
    sm.create_session("sm2")
    sm.remove_session("sm2")
    assert set(sm.list_sessions()) == {"sm1"}
    sm.cleanup_all()
    assert sm.list_sessions() == {}


def test_standalone_session_manager():
    with bioxen_vm.SessionManager() as sm:
        vm = bioxen_vm.LuaProcess()
        s = sm.create_session("alone", vm)
        assert s.vm_instance is vm
        s.send_input("print('standalone')")
        assert s.read_output(timeout=5) == "standalone\n"
        vm.close()
    assert sm.manager.closed


def test_create_interactive_session_factory():
    s = bioxen_vm.create_interactive_session("factory")
    assert s.is_attached()
    assert s.execute_and_wait("2 ^ 10") == "1024.0\n"
    s2 = bioxen_vm.create_interactive_session("f2", auto_attach=False)
    assert not s2.is_attached()


def test_lua_process_interactive_methods():
    vm = bioxen_vm.LuaProcess("lp")
    try:
        assert not vm.is_interactive_running()
        assert vm.read_output() is None
        with pytest.raises(E.InteractiveSessionError):
            vm.send_input("x = 1")
        session = vm.start()
        assert vm.is_interactive_running() and session.is_attached()
        with pytest.raises(E.InteractiveSessionError, match="already running"):
            vm.start()
        vm.send_input("print('from session')")
        assert vm.read_output(timeout=5) == "from session\n"
        vm.stop()
        assert not vm.is_interactive_running()
        assert vm.execute_string("return 'vm still usable'")["values"] == ["vm still usable"]
    finally:
        vm.close()


def test_managed_vm_interactive_methods_share_state(manager):
    vm = manager.create_vm("mvm")
    vm.execute_string("seen = 'shared'")
    vm.start()
    vm.send_input("print(seen)")
    assert vm.read_output(timeout=5) == "shared\n"
    assert vm.is_interactive_running()
    vm.stop()
    assert not vm.is_interactive_running()


def test_broadcast_to_interactive_sessions(manager):
    sessions = manager.bulk_create_interactive_cluster("node", 3)
    assert sorted(sessions) == ["node_000", "node_001", "node_002"]
    for s in sessions.values():
        assert not s.is_attached()
    with pytest.raises(ValueError, match="No attached sessions found matching pattern"):
        manager.broadcast_to_interactive_sessions("node_*", "_VERSION")
    for vm_id in ("node_000", "node_001"):
        manager.attach_to_vm(vm_id)
    out = manager.broadcast_to_interactive_sessions("node_*", "_VERSION")
    assert out == {"node_000": "Lua 5.4\n", "node_001": "Lua 5.4\n"}


def test_output_buffer_and_many_sessions(manager):
    for i in range(50):
        manager.create_interactive_vm(f"many{i}", auto_attach=False)
    for i in range(50):
        manager.send_input(f"many{i}", f"print({i} * 2)")
    for i in range(50):
        assert manager.read_output(f"many{i}", timeout=10) == f"{i * 2}\n"


def test_a_read_timeout_never_interrupts_the_line_it_evaluates(manager):
    # The documented contract: the reader may evaluate queued input itself (when no worker
    # got to it first), and a timeout that passes meanwhile lets the line finish: it is not
    # interrupted and its output is complete.
    manager.create_interactive_vm("slow")
    manager.send_input("slow", "local t = os.clock() while os.clock() - t < 0.4 do end "
                               "finished = true print('done')")
    started = time.monotonic()
    out = manager.read_output("slow", timeout=0.05)
    took = time.monotonic() - started
    if out is None:  # a pool worker took the line first: the timeout bounded the wait
        assert took < 0.3
        out = manager.read_output("slow", timeout=5)
    else:  # this thread evaluated it: the line ran to its end, past the timeout
        assert took >= 0.3
    assert out == "done\n"
    assert manager.execute_interactive_command("slow", "print(finished)") == "true\n"
