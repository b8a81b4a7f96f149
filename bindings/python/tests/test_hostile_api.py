"""Hostile arguments at the Python level: duplicate JSON keys (through the backend, since a
dict cannot hold one key twice), ``max_output=0``, and timeouts of 0, 1 ms, huge and
infinite on the calls that take one, through the public API and straight to the C API."""

from __future__ import annotations

import math
import time

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E
from bioxen_vm._native import backend

UINT64_MAX = 2**64 - 1
#: Milliseconds as the C API takes them: none, the shortest, the largest and around the
#: century past which a limit means "no limit".
C_TIMEOUTS = [0, 1, UINT64_MAX, UINT64_MAX - 1, 3_153_600_000_000, 86_400_000]
#: Seconds as Python callers pass them.
PY_TIMEOUTS = [None, 0, 1e-3, 1e9 - 1, 1e300, math.inf]

SANDBOX_TWICE = b'{"sandbox": "default", "sandbox": "trusted"}'


def test_duplicate_keys_are_refused_by_the_library():
    with pytest.raises(E.BioxenVMValueError, match='duplicate key "sandbox"'):
        backend.new(SANDBOX_TWICE)
    with pytest.raises(E.BioxenVMValueError, match="duplicate key"):
        backend.new(b'{"sandbox": "default", "s\\u0061ndbox": "trusted"}')
    with pytest.raises(E.BioxenVMValueError, match="duplicate key"):
        backend.manager_new(b'{"max_workers": 1, "max_workers": 2}')


def test_duplicate_keys_in_arguments_and_job_maps(manager):
    manager.create_vm("v")
    code = b"return ..."
    with pytest.raises(E.BioxenVMValueError, match='duplicate key "k"'):
        backend.manager_execute(manager.handle, b"v", code, len(code),
                                b'[{"a": {"k": 1, "k": 2}}]', 0)
    with pytest.raises(E.BioxenVMValueError, match="duplicate key"):
        backend.manager_create_vm(manager.handle, b"w", SANDBOX_TWICE)
    with pytest.raises(E.BioxenVMValueError, match="duplicate key"):
        backend.wait_for_cluster(b'{"v": 1, "v": 1}', 0)
    assert manager.list_vms() == ["v"]
    # The same key in different objects is no duplicate.
    r = manager.execute_vm_sync("v", "local t = ... return t.a.k + t.b.k",
                                args=[{"a": {"k": 1}, "b": {"k": 2}}])
    assert r["values"] == [3]


def test_max_output_zero_is_refused():
    with pytest.raises(ValueError, match="max_output' must be at least 1 byte"):
        bioxen_vm.LuaProcess(max_output=0)
    with pytest.raises(ValueError, match="max_output' must be at least 1 byte"):
        bioxen_vm.VMManager(max_output=0)
    vm = bioxen_vm.LuaProcess(max_output=1)
    try:
        assert vm.execute_string("io.write('abc')")["stdout"] == "a"
    finally:
        vm.close()


@pytest.mark.parametrize("seconds", [1e300, 1e9, -1.0])
def test_out_of_range_seconds_in_options_are_refused(seconds):
    with pytest.raises(ValueError):
        bioxen_vm.LuaProcess(timeout=seconds)


def test_the_c_api_takes_every_timeout(manager):
    manager.create_vm("v")
    manager.create_interactive_vm("s")
    cmd = b"return 6 * 7"
    for ms in C_TIMEOUTS:
        out = backend.manager_execute_interactive_command(manager.handle, b"s", cmd, len(cmd),
                                                          ms)
        out_all = backend.manager_broadcast_to_sessions(manager.handle, b"s*", cmd, len(cmd),
                                                        ms)
        if ms != 1:
            assert b"42" in out, (ms, out)
            assert b"42" in out_all, (ms, out_all)
        backend.manager_read_output(manager.handle, b"s", ms, 0)
        code = b"return 1"
        try:
            r = backend.manager_execute(manager.handle, b"v", code, len(code), b"", ms)
            assert r[4] == b"[1]"
        except E.VMTimeoutError:
            assert ms == 1
        job = backend.manager_execute_async(manager.handle, b"v", code, len(code), b"", ms)
        try:
            backend.job_wait(job, UINT64_MAX)
        except E.VMTimeoutError:
            assert ms == 1
        backend.job_wait(job, ms) if ms != 1 else None
        backend.job_free(job)


@pytest.mark.parametrize("timeout", PY_TIMEOUTS)
def test_the_public_api_takes_every_timeout(manager, timeout):
    manager.create_vm("v")
    manager.create_interactive_vm("s")
    try:
        assert manager.execute_vm_sync("v", "return 1", timeout=timeout)["values"] == [1]
    except E.VMTimeoutError:
        assert timeout is not None and timeout < 0.01
    out = manager.execute_interactive_command("s", "return 6 * 7", timeout=timeout)
    if timeout is None or timeout >= 1:
        assert "42" in out
    manager.read_output("s", timeout=timeout)
    manager.broadcast_to_interactive_sessions("s*", "return 1", timeout=timeout)
    vm = bioxen_vm.LuaProcess()
    try:
        r = vm.execute_string("return 2", timeout=timeout)
        assert r["success"] or timeout == 1e-3
    except E.VMTimeoutError:
        assert timeout == 1e-3
    finally:
        vm.close()


def test_a_short_limit_holds_and_a_huge_one_does_not_cut_work(manager):
    manager.create_vm("v")
    started = time.monotonic()
    with pytest.raises(E.VMTimeoutError):
        manager.execute_vm_sync("v", "while true do end", timeout=0.05)
    assert time.monotonic() - started < 0.05 + 0.5
    spin = "local t = os.clock() while os.clock() - t < 0.2 do end return 'done'"
    for timeout in (1e300, math.inf, None):
        assert manager.execute_vm_sync("v", spin, timeout=timeout)["values"] == ["done"]
