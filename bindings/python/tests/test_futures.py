"""Asynchronous executions as concurrent.futures.Future, completed by native callbacks."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E
from bioxen_vm._native import dispatch


def test_execute_vm_async_returns_a_future_of_the_result(manager):
    manager.create_vm("a")
    f = manager.execute_vm_async("a", "return 6 * 7")
    assert isinstance(f, concurrent.futures.Future) and isinstance(f, bioxen_vm.JobFuture)
    r = f.result(10)
    assert r["values"] == [42] and r["stdout"] == "42" and r["success"]
    assert f.done() and not f.cancelled() and f.job_status() == "done"


def test_no_python_thread_per_call(manager):
    manager.create_vm("a")
    before = threading.active_count()
    futures = [manager.execute_vm_async("a", "return ...", args=[i]) for i in range(200)]
    assert threading.active_count() <= before + 1
    assert [f.result(30)["values"] for f in futures] == [[i] for i in range(200)]
    assert threading.active_count() <= before + 1


def test_jobs_on_one_vm_run_in_submission_order(manager):
    manager.create_vm("a")
    manager.execute_vm_sync("a", "log = {}")
    futures = [manager.execute_vm_async("a", "log[#log + 1] = ... return #log", args=[i])
               for i in range(50)]
    assert [f.result(30)["values"][0] for f in futures] == list(range(1, 51))


def test_done_callbacks_wait_and_as_completed(manager):
    for i in range(4):
        manager.create_vm(f"v{i}")
    seen = []
    event = threading.Event()
    futures = [manager.execute_vm_async(f"v{i}", "return ...", args=[i]) for i in range(4)]
    for f in futures:
        f.add_done_callback(lambda fut: (seen.append(fut.result()["values"][0]),
                                         len(seen) == 4 and event.set()))
    assert event.wait(30)
    assert sorted(seen) == [0, 1, 2, 3]
    done, pending = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 4 and not pending
    assert sorted(f.result()["values"][0] for f in
                  concurrent.futures.as_completed(futures, timeout=30)) == [0, 1, 2, 3]


def test_a_lua_error_is_a_result_and_a_timeout_an_exception(manager):
    manager.create_vm("a")
    r = manager.execute_vm_async("a", "error('async boom')").result(10)
    assert r["success"] is False and "async boom" in r["stderr"]
    f = manager.execute_vm_async("a", "while true do end", timeout=0.1)
    with pytest.raises(E.VMTimeoutError, match="after 0.1 seconds"):
        f.result(10)
    assert isinstance(f.exception(), E.LuaProcessError)


def test_cancel_a_running_job(manager):
    manager.create_vm("a")
    manager.execute_vm_sync("a", "kept = 1")
    f = manager.execute_vm_async("a", "while true do end")
    deadline = time.monotonic() + 10
    while manager.get_vm_info("a")["running"] is False and time.monotonic() < deadline:
        time.sleep(0.005)
    assert f.cancel() is True
    assert f.cancelled() and f.done()
    with pytest.raises(concurrent.futures.CancelledError):
        f.result(10)
    done, _ = concurrent.futures.wait([f], timeout=10)
    assert f in done
    assert manager.execute_vm_sync("a", "return kept")["values"] == [1]


def test_cancel_a_queued_job_and_a_finished_one(manager):
    manager.create_vm("a")
    blocker = manager.execute_vm_async("a", "local t = os.clock() while os.clock() - t < 0.3 "
                                            "do end return 'first'")
    queued = manager.execute_vm_async("a", "return 'never'")
    assert queued.cancel() is True and queued.cancelled()
    assert blocker.result(10)["values"] == ["first"]
    assert blocker.cancel() is False and not blocker.cancelled()
    assert queued.job_status() == "cancelled"


def test_wait_cancel_and_status_per_vm(manager):
    manager.create_vm("a")
    assert manager.get_vm_status("a") is None
    with pytest.raises(ValueError, match="No running operation found for VM 'a'"):
        manager.wait_for_vm("a")
    manager.execute_vm_async("a", "return 1")
    f2 = manager.execute_vm_async("a", "return 2")
    assert manager.wait_for_vm("a", timeout=10)["values"] == [2]
    assert f2.result(1)["values"] == [2]
    assert manager.get_vm_status("a") == "done"
    manager.execute_vm_async("a", "while true do end")
    assert manager.get_vm_status("a") == "running"
    with pytest.raises(E.WaitTimeoutError):
        manager.wait_for_vm("a", timeout=0.05)
    assert manager.cancel_vm("a") is True
    with pytest.raises(E.JobCancelledError):
        manager.wait_for_vm("a", timeout=10)
    assert manager.get_vm_status("a") == "cancelled"
    assert manager.cancel_vm("a") is False


def test_async_errors_at_submission(manager):
    with pytest.raises(E.VMNotFoundError, match="VM 'nope' not found"):
        manager.execute_vm_async("nope", "return 1")
    manager.create_vm("a")
    with pytest.raises(ValueError, match="Lua code cannot be empty"):
        manager.execute_vm_async("a", " ")


def test_futures_of_a_removed_vm_and_a_closed_manager():
    m = bioxen_vm.VMManager()
    m.create_vm("a")
    running = m.execute_vm_async("a", "while true do end")
    queued = m.execute_vm_async("a", "return 1")
    m.remove_vm("a")
    with pytest.raises((concurrent.futures.CancelledError, E.LuaVMError)):
        queued.result(10)
    m.create_vm("b")
    f = m.execute_vm_async("b", "while true do end")
    m.close()
    with pytest.raises((concurrent.futures.CancelledError, E.LuaVMError)):
        f.result(10)
    with pytest.raises((concurrent.futures.CancelledError, E.LuaVMError)):
        running.result(10)
    assert running.done() and queued.done() and f.done()


def test_job_callbacks_leave_no_handler_behind(manager):
    manager.create_vm("a")
    futures = [manager.execute_vm_async("a", "return 1") for _ in range(100)]
    concurrent.futures.wait(futures, timeout=30)
    deadline = time.monotonic() + 5
    while dispatch.job_handlers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dispatch.job_handlers == {}


def test_a_done_callback_may_use_the_library(manager):
    manager.create_vm("a")
    results = []
    done = threading.Event()

    def chain(fut):
        results.append(manager.execute_vm_sync("a", "return ...", args=[fut.result()["values"][0] + 1]))
        done.set()

    manager.execute_vm_async("a", "return 41").add_done_callback(chain)
    assert done.wait(10)
    assert results[0]["values"] == [42]
