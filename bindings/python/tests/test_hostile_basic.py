"""Hostile code against basic VMs, from Python (both backends and the fast path).

Library functions that loop in C are stopped by a timeout and by an interrupt from another
thread within the deadline plus a margin, and the VM keeps its state; what comes back is
bounded by ``max_output`` (values, errors) and by the deadline (a DAG of shared tables);
tables whose keys collide as JSON object keys come back as ``{"$lua_pairs": ...}``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E

#: How far past the deadline (or the interrupt) a stopped call may return: the promise is
#: 0.1 s; the rest is room for a loaded machine. Each escape runs for seconds unstopped.
MARGIN = 0.4

HUGE_LEN = "setmetatable({}, {__len = function() return math.maxinteger - 1 end})"

#: (name, setup run first without a deadline, the single long call)
ESCAPES = [
    ("table.move", "", "table.move({}, 1, math.maxinteger - 1, 2)"),
    ("table.insert", f"HUGE = {HUGE_LEN}", "table.insert(HUGE, 1, 'x')"),
    ("table.remove", f"HUGE = {HUGE_LEN}", "table.remove(HUGE, 1)"),
    ("table.concat", "T = setmetatable({}, {__index = type})",
     "return #table.concat(T, '', 1, 1 << 40)"),
    ("plain find", "H = string.rep('a', 1 << 26) N = string.rep('a', 1 << 16) .. 'b'",
     "return H:find(N, 1, true)"),
    ("%b", "H = string.rep('(', 1 << 20)", "return H:find('%b()')"),
    ("upper", "S = string.rep('a', 1 << 26) S = S .. S .. S .. S", "return #S:upper()"),
    ("string.pack", "F = string.rep('x', 1 << 26)", "return #string.pack(F) + #string.pack(F)"),
    ("os.date", "F = string.rep('%c', 1 << 24)", "return #os.date(F)"),
    ("load", "local t = {} for i = 1, 30000 do t[i] = 'goto l' .. i .. ' ::l' .. i .. '::' end "
             "local f = 'local function f() ' .. table.concat(t, ' ') .. ' end ' "
             "S = f .. f .. f",
     "return load(S, '=s') ~= nil"),
]

CLEAN = "S, T, H, N, F, HUGE = nil collectgarbage() return 1"


def check_kept(vm):
    r = vm.execute_string("local s = 0 for i = 1, 1000 do s = s + i end return kept, s")
    assert r["values"] == ["yes", 500500]


def prepared_vm(setup: str) -> bioxen_vm.LuaProcess:
    """A VM with the global check_kept looks for, after `setup` (run without a deadline)."""
    vm = bioxen_vm.LuaProcess()
    vm.execute_string("kept = 'yes'")
    if setup:
        assert vm.execute_string(setup)["success"]
    return vm


@pytest.mark.parametrize("name,setup,code", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_a_long_library_call_is_stopped_by_a_timeout(name, setup, code):
    with prepared_vm(setup) as vm:
        start = time.monotonic()
        with pytest.raises(E.VMTimeoutError, match=r"timed out after 0\.1 seconds"):
            vm.execute_string(code, timeout=0.1)
        took = time.monotonic() - start
        assert took < 0.1 + MARGIN, f"{name}: {took:.3f} s"
        check_kept(vm)
        vm.execute_string(CLEAN)


@pytest.mark.parametrize("name,setup,code", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_a_long_library_call_is_stopped_by_an_interrupt(name, setup, code):
    with prepared_vm(setup) as vm:
        outcome = {}

        def run():
            try:
                outcome["result"] = vm.execute_string(code)
            except BaseException as e:  # noqa: BLE001 (the test inspects it)
                outcome["error"] = e
            outcome["ended"] = time.monotonic()

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 20
        while not vm.info()["running"]:
            assert time.monotonic() < deadline, f"{name} never ran"
            time.sleep(0.002)
        time.sleep(0.1)  # well into its single long call (the setup ran before)
        assert vm.interrupt() is True
        interrupted = time.monotonic()
        t.join(20)
        assert not t.is_alive(), f"{name} was not stopped"
        assert isinstance(outcome.get("error"), E.VMInterruptedError), outcome
        assert outcome["ended"] - interrupted < MARGIN
        check_kept(vm)
        vm.execute_string(CLEAN)


def line(max_output: int) -> str:
    return (f"bioxen_vm: the returned values do not fit in max_output ({max_output} bytes) "
            "as JSON")


def test_values_that_do_not_fit_give_a_failed_result():
    with bioxen_vm.LuaProcess(max_output=1024) as vm:
        r = vm.execute_string("local s = string.rep('x', 1 << 20) return s, s")
        assert r["success"] is False and r["return_code"] == 1
        assert r["values"] == [] and r["error"] == line(1024)
        assert r["stderr"] == line(1024)
        assert r["stdout"] == "x" * 1024
        assert vm.execute_string("return 'small', 2")["values"] == ["small", 2]


def test_a_huge_error_is_cut_to_max_output():
    with bioxen_vm.LuaProcess(max_output=1024) as vm:
        r = vm.execute_string("error(string.rep('e', 1 << 24))")
        assert r["success"] is False
        assert len(r["error"]) == 1024 and r["error"].startswith("(bioxen_vm):1: eee")
        assert len(r["stderr"]) == 1024


def rss_peak_kib() -> tuple:
    fields = {}
    for entry in Path("/proc/self/status").read_text().splitlines():
        key, _, value = entry.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def test_host_memory_stays_bounded_by_the_limits():
    with bioxen_vm.LuaProcess(memory_limit=64 << 20, max_output=1024) as vm:
        vm.execute_string("S = string.rep('x', 16 << 20)")
        before = rss_peak_kib()[0]
        try:
            Path("/proc/self/clear_refs").write_text("5")
            peak_known = True
        except OSError:
            peak_known = False
        r = vm.execute_string("return " + ", ".join(["S"] * 200))
        now, peak = rss_peak_kib()
        grew_kib = (max(now, peak) if peak_known else now) - before
        assert r["success"] is False and r["error"] == line(1024)
        # Before the bound: gigabytes (200 copies of 16 MiB, twice).
        assert grew_kib < 128 * 1024, f"RSS grew by {grew_kib // 1024} MiB"


def test_a_dag_of_shared_tables_ends_by_the_deadline():
    with bioxen_vm.LuaProcess(max_output=1 << 32) as vm:
        vm.execute_string("kept = 'yes'")
        start = time.monotonic()
        with pytest.raises(E.VMTimeoutError):
            vm.execute_string("local t = {} for i = 1, 40 do t = {t, t} end return t",
                              timeout=0.1)
        assert time.monotonic() - start < 0.1 + MARGIN
        check_kept(vm)


def test_colliding_keys_come_back_losslessly(vm):
    r = vm.execute_string("return {[1] = 'a', ['1'] = 'b'}, {[true] = 1, ['true'] = 2}, "
                          "{1, 2, n = 2}")
    assert r["values"] == [
        {"$lua_pairs": [["1", "b"], [1, "a"]]},
        {"$lua_pairs": [["true", 2], [True, 1]]},
        {"1": 1, "2": 2, "n": 2},
    ]
