"""Threads: parallel VMs, one VM shared by threads, and the GIL released while Lua runs."""

from __future__ import annotations

import threading
import time

import bioxen_vm

BUSY = "local t = os.clock() while os.clock() - t < ... do end return 'done'"


def _run_threads(n, target):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_eight_threads_on_eight_vms():
    vms = [bioxen_vm.LuaProcess(f"t{i}") for i in range(8)]
    try:
        def work(i):
            vm = vms[i]
            vm.execute_string("mine = ...", args=[i])
            for k in range(200):
                r = vm.execute_string("mine = mine + 1 return mine, ...", args=[k])
                assert r["values"] == [i + k + 1, k], r
            assert vm.execute_string("return mine")["values"] == [i + 200]

        _run_threads(8, work)
    finally:
        for vm in vms:
            vm.close()


def test_eight_threads_on_eight_vms_of_one_manager(manager):
    for i in range(8):
        manager.create_vm(f"w{i}")

    def work(i):
        for k in range(100):
            r = manager.execute_vm_sync(f"w{i}", "n = (n or 0) + 1 return n")
            assert r["values"] == [k + 1]

    _run_threads(8, work)
    assert manager.get_stats()["total_vms"] == 8


def test_threads_sharing_one_vm_are_serialised(vm):
    vm.execute_string("counter = 0")

    def work(_i):
        for _ in range(100):
            vm.execute_string("local c = counter for i = 1, 50 do end counter = c + 1")

    _run_threads(8, work)
    assert vm.execute_string("return counter")["values"] == [800]


def test_the_gil_is_released_while_lua_runs(vm):
    """A Python thread keeps counting while another thread runs Lua for half a second.

    If the GIL were held during the native call, the counter could not move between the
    moment the call starts and the moment it returns.
    """
    count = [0]
    stop = threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=counter)
    t.start()
    try:
        time.sleep(0.05)
        before = count[0]
        r = vm.execute_string(BUSY, args=[0.5])
        after = count[0]
    finally:
        stop.set()
        t.join()
    assert r["values"] == ["done"]
    assert after - before > 10_000, (before, after)


def test_two_vms_run_in_parallel_threads():
    """Generous bound: two half-second chunks on two threads take well under 1 s... unless
    the machine is saturated; the counter test above is the strict one."""
    vms = [bioxen_vm.LuaProcess() for _ in range(2)]
    try:
        start = time.monotonic()
        vms[0].execute_string(BUSY, args=[0.3])
        one = time.monotonic() - start
        start = time.monotonic()
        _run_threads(2, lambda i: vms[i].execute_string(BUSY, args=[0.3]))
        two = time.monotonic() - start
        assert two < 1.9 * one + 0.2, (one, two)
    finally:
        for vm in vms:
            vm.close()


def test_interrupt_and_close_from_other_threads_while_running():
    vm = bioxen_vm.LuaProcess()
    outcome = []

    def run():
        try:
            vm.execute_string("while true do end", timeout=60)
        except bioxen_vm.LuaVMError as exc:
            outcome.append(type(exc).__name__)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while not vm.interrupt() and time.monotonic() < deadline:
        time.sleep(0.005)
    t.join(10)
    assert outcome == ["VMInterruptedError"]

    t = threading.Thread(target=run)
    t.start()
    while not vm.info()["running"] and time.monotonic() < deadline:
        time.sleep(0.005)
    start = time.monotonic()
    vm.close()  # interrupts the running call, then frees the VM
    t.join(10)
    assert not t.is_alive() and time.monotonic() - start < 10
    assert outcome == ["VMInterruptedError", "VMInterruptedError"]
    assert vm.closed
