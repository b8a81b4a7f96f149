"""XCP-ng VMs and XAPI sessions from Python, against the fake XAPI (whose started VMs
boot real guests: a private sshd with Lua on 127.0.0.N): deploy with a progress callable,
Lua and sessions on the guest, cancellation by the callable, by interrupt() and by close()
from another thread, managers, typed XAPI errors and sweep. After each test nothing the
test made is left on the fake."""

from __future__ import annotations

import threading
import time

import pytest

import bioxen_vm
from bioxen_vm import VMManager, XAPIError, XAPISession, XcpngVM
from bioxen_vm.exceptions import JobCancelledError, LuaVMError, VMManagerError

from xapi_fake import FakeXapi

STEPS = ["login", "find template", "clone", "tag", "configure", "provision", "start",
         "wait for guest metrics", "wait for an IP", "wait for SSH", "start the agent"]


@pytest.fixture(scope="module")
def fake():
    f = FakeXapi()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(autouse=True)
def clean(fake):
    fake.control(op="clear_faults")
    fake.control(op="config", linklocal_delay=0.2, no_ip=False, latency={})
    yield
    fake.assert_clean()


def test_create_deploy_run_and_close(fake):
    vm = bioxen_vm.create_vm("py1", vm_type="xcpng", config=fake.config(vm_name="py1_lua_vm"))
    assert isinstance(vm, XcpngVM) and not vm.started
    assert fake.control(op="stats")["sessions"] == 0, "creating an xcpng VM made a connection"
    events = []
    vm.start(progress=events.append)
    assert [e["step"] for e in events if e["state"] == "done"] == STEPS
    r = vm.execute_string("x = 41; return x + 1")
    assert r["success"] and r["stdout"] == "42"
    assert vm.execute_string("return x")["stdout"] == "41"
    info = vm.info()
    assert info["vm_uuid"] == vm.vm_uuid and vm.vm_ip.startswith("127.0.0.")
    assert fake.info["password"] not in repr(info)
    # The interactive session shares the state.
    vm.send_input("print(x * 2)")
    assert "82" in (vm.read_output(timeout=5) or "")
    vm.close()
    assert not vm.started


def test_first_use_deploys(fake):
    with XcpngVM("py2", fake.config()) as vm:
        assert vm.execute_string("return 'hi'")["stdout"] == "hi"


def test_the_progress_callable_cancels(fake):
    def stop_at_ip(e):
        return not (e["step"] == "wait for an IP" and e["state"] == "start")

    vm = XcpngVM("py3", fake.config(), progress=stop_at_ip)
    with pytest.raises(JobCancelledError, match="wait for an IP"):
        vm.start()
    assert not vm.started

    def boom(e):
        if e["step"] == "provision":
            raise RuntimeError("the callable failed")

    with pytest.raises(RuntimeError, match="the callable failed"):
        XcpngVM("py4", fake.config(), progress=boom).start()


@pytest.mark.parametrize("how", ["interrupt", "close"])
def test_interrupt_or_close_from_another_thread_cancels_the_deploy(fake, how):
    fake.control(op="config", linklocal_delay=30)
    vm = XcpngVM("py5", fake.config())
    seen = threading.Event()

    def later():
        deadline = time.monotonic() + 20
        while not vm.deploying and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        seen.set()
        getattr(vm, how)()

    t = threading.Thread(target=later)
    t.start()
    start = time.monotonic()
    with pytest.raises(JobCancelledError):
        vm.start()
    t.join()
    assert seen.is_set() and time.monotonic() - start < 10


def test_a_manager_deploys_with_progress(fake):
    m = VMManager(max_workers=2)
    try:
        events = []
        s = m.create_interactive_vm("mx", vm_type="xcpng",
                                    config=fake.config(progress=None), progress=events.append,
                                    auto_attach=False)
        assert any(e["step"] == "start the agent" for e in events)
        m.send_input("mx", "x = 42")
        m.send_input("mx", "print(x)")
        assert "42" in (m.read_output("mx", timeout=5) or "")
        assert m.execute_vm_sync("mx", "return x")["stdout"] == "42"
        assert s is not None
        vm = m.create_vm("my", vm_type="xcpng", config=fake.config())
        assert vm.execute_string("return 3")["stdout"] == "3"
        with pytest.raises(ValueError, match="require a config"):
            m.create_vm("mz", vm_type="xcpng")
    finally:
        m.close()


def test_a_failed_deploy_is_a_typed_error(fake):
    with pytest.raises(VMManagerError, match="Template not found: Nope"):
        XcpngVM("py6", fake.config(template_name="Nope")).start()
    fake.control(op="fault", method="VM.start", error=["NO_HOSTS_AVAILABLE"])
    with pytest.raises(VMManagerError, match="NO_HOSTS_AVAILABLE"):
        XcpngVM("py7", fake.config()).start()


def test_xapi_sessions(fake):
    with XAPISession(config=fake.session_config()) as s:
        vms = s.call("VM.get_all_records")
        assert any(v["is_a_template"] for v in vms.values())
        with pytest.raises(XAPIError) as e:
            s.call("VM.get_record", "OpaqueRef:nope")
        assert e.value.code == "HANDLE_INVALID" and e.value.params == ["VM", "OpaqueRef:nope"]
        assert s.info()["protocol"] == "json-rpc"
        assert s.sweep() == {"vms": [], "vdis": [], "kept": [], "errors": []}
    with pytest.raises(LuaVMError, match="closed"):
        s.call("VM.get_all")
    with pytest.raises(bioxen_vm.XCPngConnectionError, match="Authentication failed"):
        XAPISession(config=dict(fake.session_config(), password="wrong"))
