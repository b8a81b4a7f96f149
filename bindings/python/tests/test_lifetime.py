"""Native handles are freed on close, on context exit, by garbage collection and at exit."""

from __future__ import annotations

import gc
import weakref

import pytest

import bioxen_vm
from bioxen_vm import _handles
from bioxen_vm import exceptions as E
from bioxen_vm._native import backend

from conftest import run_python


def _vm_is_live(handle):
    try:
        backend.info(handle)
        return True
    except E.InvalidHandleError:
        return False


def _manager_is_live(handle):
    try:
        backend.manager_stats(handle)
        return True
    except E.InvalidHandleError:
        return False


def test_context_manager_frees_the_vm():
    with bioxen_vm.LuaProcess() as vm:
        handle = vm._handle
        assert _vm_is_live(handle)
    assert not _vm_is_live(handle)


def test_garbage_collection_frees_a_vm():
    vm = bioxen_vm.LuaProcess()
    vm.execute_string("x = 1")
    handle = vm._handle
    ref = weakref.ref(vm)
    del vm
    gc.collect()
    assert ref() is None
    assert not _vm_is_live(handle)


def test_garbage_collection_frees_a_vm_in_a_reference_cycle():
    vm = bioxen_vm.LuaProcess()
    handle = vm._handle
    vm.myself = vm  # a cycle: only the cyclic collector frees it
    del vm
    assert _vm_is_live(handle)
    gc.collect()
    assert not _vm_is_live(handle)


def test_garbage_collection_frees_a_manager_and_its_vms():
    m = bioxen_vm.VMManager()
    vm = m.create_vm("a")
    m.create_interactive_vm("i")
    handle = m.handle
    del m
    gc.collect()
    assert _manager_is_live(handle)  # the VM proxy keeps its manager alive
    assert vm.execute_string("return 1")["values"] == [1]
    del vm
    gc.collect()
    assert not _manager_is_live(handle)


def test_a_session_keeps_its_manager_alive():
    session = bioxen_vm.create_interactive_session("s")
    handle = session.manager.handle
    gc.collect()
    session.send_input("x = 3")
    assert session.execute_and_wait("x") == "3\n"
    del session
    gc.collect()
    assert not _manager_is_live(handle)


def test_garbage_collection_frees_job_handles(manager):
    manager.create_vm("a")
    future = manager.execute_vm_async("a", "return 1")
    assert future.result(10)["values"] == [1]
    job = future.job_handle
    assert backend.job_status(job) == "done"
    del future
    gc.collect()
    with pytest.raises(E.InvalidHandleError):
        backend.job_status(job)


def test_no_handle_is_left_after_many_cycles():
    gc.collect()
    baseline = _handles.live_count()
    for i in range(300):
        with bioxen_vm.LuaProcess() as vm:
            vm.execute_string("return 1")
        vm2 = bioxen_vm.LuaProcess()
        vm2.execute_string("return 2")
        del vm2
        m = bioxen_vm.VMManager(max_workers=1)
        m.create_vm("a")
        m.execute_vm_async("a", "return 3").result(10)
        del m
    gc.collect()
    assert _handles.live_count() == baseline


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_rss_stays_bounded_over_2000_create_drop_cycles():
    def cycle():
        vm = bioxen_vm.LuaProcess()
        vm.execute_string("local t = {} for i = 1, 100 do t[i] = i end return #t")
        del vm
        m = bioxen_vm.VMManager(max_workers=1)
        m.create_vm("a").execute_string("return 1")
        m.create_interactive_vm("s").execute_and_wait("1 + 1")
        del m

    for _ in range(200):  # warm up allocators and caches
        cycle()
    gc.collect()
    before = _rss_kib()
    for _ in range(2000):
        cycle()
    gc.collect()
    grown = _rss_kib() - before
    assert grown < 64 * 1024, f"RSS grew by {grown} KiB over 2,000 cycles"


def test_exit_frees_every_native_object_and_stops_running_code(tmp_path):
    """At exit the binding frees what is still alive (jobs, managers, VMs), which stops
    running code at once, and every job's callback has come back: weakref's own exit hook
    (which disables finalizers) must not keep that from happening."""
    code = """
        import atexit, time
        def check():  # registered first, so it runs after the binding's exit hook
            from bioxen_vm import _handles, _native
            print("live", _handles.live_count(), "jobs", len(_native.dispatch.job_handlers),
                  "exit took <3s", time.monotonic() - started < 3.0)
        atexit.register(check)
        import bioxen_vm
        m = bioxen_vm.VMManager()
        m.create_vm("a")
        futures = [m.execute_vm_async("a", "while true do end") for _ in range(3)]
        vm = bioxen_vm.LuaProcess()
        vm.execute_string("x = 1")
        started = time.monotonic()
    """
    r = run_python(code, tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"live 0 jobs 0 exit took <3s True\n", (r.stdout, r.stderr)


def test_objects_alive_at_exit_are_freed_cleanly(tmp_path):
    """Running jobs, attached sessions with callbacks and log records at exit: the process
    exits normally (no library thread calls into a finalizing interpreter)."""
    code = """
        import logging, bioxen_vm
        logging.getLogger("bioxen_vm").setLevel(logging.DEBUG)
        bioxen_vm.logger.sync_level()
        m = bioxen_vm.VMManager()
        m.create_vm("a")
        futures = [m.execute_vm_async("a", "while true do end") for _ in range(3)]
        s = m.create_interactive_vm("i", auto_attach=False)
        s.attach(lambda text: None)
        s.send_input("for i = 1, 1e7 do if i % 1000 == 0 then print(i) end end")
        vm = bioxen_vm.LuaProcess()
        f = vm.execute_async("local t = os.clock() while os.clock() - t < 0.2 do end")
        print("ok")
    """
    for _ in range(3):
        r = run_python(code, tmp_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"ok\n"
