"""Bad input never crashes: wrong types, None, odd bytes, closed objects give exceptions."""

from __future__ import annotations

import gc

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E
from bioxen_vm._native import backend

BAD_IDS = [None, 3, 1.5, ["a"], object()]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_wrong_types_for_ids(manager, bad):
    manager.create_vm("ok")
    calls = [
        lambda: manager.create_vm(bad), lambda: manager.remove_vm(bad),
        lambda: manager.get_vm_info(bad), lambda: manager.execute_vm_sync(bad, "return 1"),
        lambda: manager.execute_vm_async(bad, "return 1"), lambda: manager.attach_to_vm(bad),
        lambda: manager.send_input(bad, "x"), lambda: manager.read_output(bad),
        lambda: manager.get_vm_status(bad), lambda: manager.cancel_vm(bad),
        lambda: manager.create_interactive_vm(bad), lambda: manager.create_vm_cluster(bad, 2),
        lambda: manager.broadcast_to_cluster(bad, "return 1"),
        lambda: manager.get_cluster_status(bad), lambda: manager.cleanup_cluster(bad),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    assert manager.list_vms() == ["ok"]


@pytest.mark.parametrize("bad", [None, 3, ["return 1"], {"code": 1}])
def test_wrong_types_for_code(vm, manager, bad):
    manager.create_vm("a")
    for call in (vm.execute_string, vm.execute_temp_script,
                 lambda c: manager.execute_vm_sync("a", c),
                 lambda c: manager.execute_vm_async("a", c)):
        with pytest.raises(TypeError):
            call(bad)


def test_non_utf8_and_nul_ids(manager):
    with pytest.raises(ValueError):
        manager.create_vm(b"\xff\xfe")
    with pytest.raises(ValueError):
        manager.create_vm("a\x00b")
    with pytest.raises(ValueError):
        manager.create_vm("\ud800")  # a lone surrogate cannot be UTF-8
    with pytest.raises(ValueError):
        manager.create_vm("")
    assert manager.list_vms() == []
    manager.create_vm(b"bytes-id")
    assert manager.list_vms() == ["bytes-id"]
    manager.create_vm("ünï ✓")
    assert manager.execute_vm_sync("ünï ✓", "return 1")["values"] == [1]


def test_bad_options(manager):
    with pytest.raises(ValueError):
        bioxen_vm.LuaProcess(memory_limit=-5)
    with pytest.raises(ValueError, match="unknown VM option"):
        manager.create_vm("x", no_such_option=1)
    with pytest.raises(TypeError):
        manager.create_vm("x", timeout=object())
    with pytest.raises(ValueError):
        bioxen_vm.VMManager(max_workers=0)
    with pytest.raises(TypeError):
        bioxen_vm.VMManager(max_workers="10")
    with pytest.raises(TypeError):
        bioxen_vm.LuaProcess(name=None)
    with pytest.raises(TypeError):
        manager.create_vm_cluster("c", "3")
    with pytest.raises(ValueError):
        manager.create_vm_cluster("c", 0)


def test_closed_vm_raises_cleanly_and_double_close_is_a_no_op():
    vm = bioxen_vm.LuaProcess()
    handle = vm._handle
    vm.close()
    vm.close()
    assert vm.closed
    for call in (lambda: vm.execute_string("return 1"), vm.interrupt, vm.info,
                 lambda: vm.execute_file("x.lua"), lambda: vm.execute_async("return 1"),
                 vm.start):
        with pytest.raises(E.InvalidHandleError, match="VM has been closed"):
            call()
    with pytest.raises(ValueError):  # InvalidHandleError is a ValueError too
        vm.execute_string("return 1")
    with pytest.raises(E.InvalidHandleError, match="not a live VM handle"):
        backend.execute(handle, b"return 1", 8, b"", 0)
    with vm:  # a closed VM in a with block: nothing happens on exit
        pass


def test_closed_manager_raises_cleanly():
    m = bioxen_vm.VMManager()
    vm = m.create_vm("a")
    session = m.create_interactive_vm("i")
    m.close()
    m.close()
    assert m.closed and repr(m) == "VMManager(closed)"
    for call in (m.list_vms, lambda: m.create_vm("b"), m.get_stats,
                 lambda: m.execute_vm_sync("a", "return 1"),
                 lambda: vm.execute_string("return 1"), lambda: session.send_input("x"),
                 lambda: session.read_output(), m.shutdown_all,
                 lambda: m.broadcast_to_cluster("*", "return 1")):
        with pytest.raises(E.InvalidHandleError, match="VMManager has been closed"):
            call()
    vm.close()  # the proxy's close is a no-op


def test_a_vm_freed_while_a_proxy_exists(manager):
    vm = manager.create_vm("gone")
    assert manager.remove_vm("gone") is True
    assert manager.remove_vm("gone") is False
    with pytest.raises(E.VMNotFoundError):
        vm.execute_string("return 1")


def test_handles_of_the_wrong_kind(manager):
    vm = bioxen_vm.LuaProcess()
    try:
        with pytest.raises(E.InvalidHandleError, match="not a live manager handle"):
            backend.manager_list_vms(vm._handle)
        with pytest.raises(E.InvalidHandleError):
            backend.execute(manager.handle, b"return 1", 8, b"", 0)
        with pytest.raises(E.InvalidHandleError):
            backend.job_wait(vm._handle, 0)
        with pytest.raises(E.InvalidHandleError):
            backend.execute(0, b"return 1", 8, b"", 0)
    finally:
        vm.close()


def test_backend_rejects_nulls_cleanly(manager):
    with pytest.raises(E.BioxenVMValueError):
        backend.manager_create_vm(manager.handle, None, None)
    with pytest.raises(E.BioxenVMValueError):
        backend.wait_for_cluster(None, 0)
    with pytest.raises(E.BioxenVMValueError):
        backend.wait_for_cluster(b"not json", 0)
    gc.collect()
