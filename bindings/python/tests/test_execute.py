"""Executions on standalone and managed VMs: results, errors, timeouts, files, arguments."""

from __future__ import annotations

import threading
import time

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E

RESULT_KEYS = {"stdout", "stderr", "return_code", "success", "values", "error", "duration"}


def test_result_dict_of_a_print(vm):
    r = vm.execute_string('print("hello")')
    assert set(r) == RESULT_KEYS
    assert r["stdout"] == "hello" and r["stderr"] == "" and r["return_code"] == 0
    assert r["success"] is True and r["values"] == [] and r["error"] is None
    assert isinstance(r["duration"], float) and 0 <= r["duration"] < 5


def test_returned_values_are_printed_and_decoded(vm):
    r = vm.execute_string("return 2 + 2")
    assert r["stdout"] == "4" and r["values"] == [4]
    r = vm.execute_string("return 1, 'two', {3, 4}, {k = true}, nil, 1.5")
    assert r["values"] == [1, "two", [3, 4], {"k": True}, None, 1.5]
    assert r["stdout"].startswith("1\ttwo\ttable: ")


def test_values_are_fresh_objects_each_call(vm):
    a = vm.execute_string("return 1, 2")["values"]
    a.append(99)
    assert vm.execute_string("return 1, 2")["values"] == [1, 2]


def test_state_persists_between_calls(vm):
    vm.execute_string("counter = 10")
    vm.execute_string("counter = counter + 1")
    assert vm.execute_string("return counter")["values"] == [11]


def test_stdout_and_stderr_are_stripped_at_both_ends(vm):
    r = vm.execute_string("io.write('  \\n padded \\n\\n') io.stderr:write('\\n err \\n')")
    assert r["stdout"] == "padded" and r["stderr"] == "err"


def test_lua_error_is_a_result_not_an_exception(vm):
    r = vm.execute_string("error('boom')")
    assert r["success"] is False and r["return_code"] == 1
    assert "boom" in r["stderr"] and "stack traceback" in r["stderr"]
    assert r["error"].startswith(r["stderr"].splitlines()[0])
    r = vm.execute_string("x = = 1")
    assert r["success"] is False and r["return_code"] == 1 and r["values"] == []
    assert vm.execute_string("return 'still fine'")["values"] == ["still fine"]


def test_code_as_bytes_with_nul_and_invalid_utf8(vm):
    r = vm.execute_string(b"return 'a\\0b', #'a\\0b'")
    assert r["values"] == ["a\x00b", 3]
    r = vm.execute_string(b"io.write('\\255ok')")
    assert r["stdout"] == "\ufffdok"  # decoded with errors='replace'
    assert vm.execute_string(bytearray(b"return 5"))["values"] == [5]
    assert vm.execute_string(memoryview(b"return 6"))["values"] == [6]


def test_args_arrive_as_the_chunks_varargs(vm):
    r = vm.execute_string("local a, b, c = ... return a + 1, b .. '!', c.k[2]",
                          args=[41, "hi", {"k": [1, 2]}])
    assert r["values"] == [42, "hi!", 2]
    assert vm.execute_string("return select('#', ...)", args=[])["values"] == [0]
    assert vm.execute_string("return ...", args=("t", None))["values"] == ["t", None]
    src = "'; os.exit(1) --"
    assert vm.execute_string("return ...", args=[src])["values"] == [src]
    with pytest.raises(TypeError):
        vm.execute_string("return ...", args="not a list")
    with pytest.raises(TypeError):
        vm.execute_string("return ...", args={"a": 1})
    with pytest.raises(ValueError):
        vm.execute_string("return ...", args=[float("nan")])
    with pytest.raises(TypeError):
        vm.execute_string("return ...", args=[object()])


def test_blank_code_is_a_value_error(vm):
    for code in ("", "   \n\t", b""):
        with pytest.raises(ValueError, match="Lua code cannot be empty"):
            vm.execute_string(code)


def test_timeout_message_keeps_the_callers_number(vm):
    with pytest.raises(E.VMTimeoutError, match=r"^Lua execution timed out after 0\.2 seconds$"):
        vm.execute_string("while true do end", timeout=0.2)
    with pytest.raises(E.VMTimeoutError, match=r"after 1 seconds$"):
        vm.execute_string("while true do end", timeout=1)
    assert vm.execute_string("return 'usable'")["values"] == ["usable"]


def test_pcall_cannot_swallow_a_timeout(vm):
    start = time.monotonic()
    with pytest.raises(E.VMTimeoutError):
        vm.execute_string("while true do pcall(function() while true do end end) end",
                          timeout=0.2)
    assert time.monotonic() - start < 5


def test_vm_default_timeout_option():
    with bioxen_vm.LuaProcess(timeout=0.2) as vm:
        with pytest.raises(E.VMTimeoutError, match="timed out"):
            vm.execute_string("while true do end")
        assert vm.info()["timeout"] == 0.2


def test_bad_timeouts_are_rejected(vm):
    for bad in ("1", [1], True):
        with pytest.raises(TypeError):
            vm.execute_string("return 1", timeout=bad)
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError):
            vm.execute_string("return 1", timeout=bad)
    assert vm.execute_string("return 1", timeout=0)["success"]  # 0: no per-call limit
    assert vm.execute_string("return 1", timeout=float("inf"))["success"]


def test_interrupt_from_another_thread(vm):
    def interrupt_when_running():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if vm.interrupt():
                return
            time.sleep(0.005)

    t = threading.Thread(target=interrupt_when_running)
    t.start()
    with pytest.raises(E.VMInterruptedError, match="interrupted"):
        vm.execute_string("while true do end", timeout=30)
    t.join()
    assert vm.interrupt() is False
    assert vm.execute_string("return 1")["values"] == [1]


def test_sandbox_and_trusted():
    with bioxen_vm.LuaProcess() as vm:
        assert vm.execute_string("return io.open == nil, os.execute == nil")["values"] == [
            True, True]
    with bioxen_vm.LuaProcess(sandbox="trusted") as vm:
        assert vm.execute_string("return type(os.getenv)")["values"] == ["function"]


def test_info_and_repr(vm):
    vm.execute_string("return 1")
    info = vm.info()
    assert info["name"] == "test_vm" and info["executions"] >= 1
    assert info["lua_version"] == "Lua 5.4" and info["vm_type"] == "basic"
    assert repr(vm) == ("LuaProcess(name='test_vm', lua_executable='lua', debug_mode=False, "
                        "packages_setup=False)")


def test_execute_file(vm, tmp_path):
    script = tmp_path / "script.lua"
    script.write_text("#!/usr/bin/env lua\nprint('from file') return ...\n")
    r = vm.execute_file(script)
    assert r["stdout"] == "from file" and r["success"]
    assert vm.execute_file(str(script))["success"]
    (tmp_path / "bad.lua").write_text("error('in file')\n")
    r = vm.execute_file(tmp_path / "bad.lua")
    assert r["success"] is False and "bad.lua:1: in file" in r["stderr"]
    (tmp_path / "empty.lua").write_text("")
    assert vm.execute_file(tmp_path / "empty.lua")["success"]
    with pytest.raises(FileNotFoundError, match="Lua script not found: "):
        vm.execute_file(tmp_path / "missing.lua")
    with pytest.raises(ValueError):
        vm.execute_file(tmp_path)
    with pytest.raises(TypeError):
        vm.execute_file(42)
    (tmp_path / "slow.lua").write_text("while true do end")
    with pytest.raises(E.VMTimeoutError, match="after 0.1 seconds"):
        vm.execute_file(tmp_path / "slow.lua", timeout=0.1)


def test_execute_temp_script(vm, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    r = vm.execute_temp_script("x_from_temp = 5 print('temp')")
    assert r["stdout"] == "temp" and vm.execute_string("return x_from_temp")["values"] == [5]
    assert vm.execute_temp_script("")["success"]
    with pytest.raises(E.ScriptGenerationError) as info:
        vm.execute_temp_script("while true do end", timeout=0.1)
    assert isinstance(info.value, E.VMTimeoutError)
    assert str(info.value) == ("Failed to create/execute temporary script: "
                               "Lua execution timed out after 0.1 seconds")
    assert isinstance(info.value.__cause__, E.VMTimeoutError)
    assert list(tmp_path.iterdir()) == []  # the temporary files are gone


def test_execute_async_on_a_standalone_vm(vm):
    futures = [vm.execute_async("local n = ... return n * 2", args=[i]) for i in range(20)]
    assert [f.result(10)["values"] for f in futures] == [[i * 2] for i in range(20)]
    f = vm.execute_async("while true do end", timeout=0.1)
    with pytest.raises(E.VMTimeoutError, match="0.1 seconds"):
        f.result(10)


def test_memory_limit_keeps_the_vm_usable():
    with bioxen_vm.LuaProcess(memory_limit=2 * 1024 * 1024) as vm:
        vm.execute_string("kept = 'state'")
        with pytest.raises(E.VMMemoryLimitError):
            vm.execute_string("local s = {} for i = 1, 1e7 do s[i] = tostring(i) end")
        assert vm.execute_string("return kept")["values"] == ["state"]


def test_managed_vm_executes_through_the_manager(manager):
    vm = manager.create_vm("m1")
    assert isinstance(vm, bioxen_vm.ManagedLuaVM) and isinstance(vm, bioxen_vm.LuaProcess)
    vm.execute_string("shared = 7")
    assert manager.execute_vm_sync("m1", "return shared")["values"] == [7]
    assert manager.get_vm("m1").execute_string("return shared + 1")["values"] == [8]
    assert manager.get_vm("missing") is None
    assert vm.info()["vm_id"] == "m1"
    assert vm.execute_temp_script("return shared")["values"] == [7]


def test_create_vm_factory():
    vm = bioxen_vm.create_vm("factory", debug_mode=True)
    try:
        assert type(vm) is bioxen_vm.LuaProcess and vm.name == "factory" and vm.debug_mode
        assert vm.lua_executable == "lua"
        r = vm.execute_string('print("hello")')
        assert r.pop("duration") >= 0
        assert r == {"stdout": "hello", "stderr": "", "return_code": 0, "success": True,
                     "values": [], "error": None}
    finally:
        vm.close()
    with pytest.raises(ValueError, match="Unknown VM type: nope"):
        bioxen_vm.create_vm("x", vm_type="nope")
    with pytest.raises(ValueError, match="require a config"):
        bioxen_vm.create_vm("x", vm_type="xcpng")
    with pytest.raises(TypeError):
        bioxen_vm.create_vm("x", vm_type=3)


def test_process_vm_kind():
    with bioxen_vm.create_vm("proc", vm_type="process") as vm:
        assert vm.execute_string("x = 1 return _VERSION, x")["values"][1] == 1
        assert vm.execute_string("return x + 1")["values"] == [2]
        r = vm.execute_string("os.exit(3)")
        assert r["success"] is False and r["return_code"] == 3
    with pytest.raises(E.LuaNotFoundError, match="not found"):
        bioxen_vm.create_vm("p2", vm_type="process", lua_executable="no-such-lua-here")


def test_manager_vm_accessors_and_interrupt(manager):
    manager.create_vm("one")
    manager.create_vm("two", persistent=True)
    vms = manager.vms
    assert sorted(vms) == ["one", "two"] and all(
        isinstance(v, bioxen_vm.ManagedLuaVM) for v in vms.values())
    assert list(manager.list_persistent_vms()) == ["two"]
    info = manager.get_vm_info("two")
    assert info["vm_id"] == "two" and info["persistent"] is True
    assert manager.interrupt_vm("one") is False
    f = manager.execute_vm_async("one", "while true do end")
    deadline = time.monotonic() + 10
    while not manager.interrupt_vm("one") and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(E.VMInterruptedError):
        f.result(10)
    vm = manager.get_vm("two")
    assert repr(vm) == "ManagedLuaVM(vm_id='two')" and vm.manager is manager
    assert vm.interrupt() is False


def test_reused_result_buffers_across_threads_sizes_and_failures(vm):
    # Executions reuse result buffers from a pool: results must never bleed from one call
    # into another, whatever the thread, the output size or a failure in between.
    vm.execute_string("count = 0")
    errors = []

    def worker(k):
        try:
            for i in range(200):
                size = (i * 37 + k) % 3000
                r = vm.execute_string("local s, n = ... return string.rep(s, n)",
                                      args=[chr(97 + k), size])
                if r["values"] != ["abcdefgh"[k] * size] or not r["success"]:
                    errors.append((k, i, size))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    with pytest.raises(E.VMTimeoutError):
        vm.execute_string("while true do end", timeout=0.05)
    r = vm.execute_string("print('after') return 1")
    assert (r["stdout"], r["values"], r["stderr"], r["error"]) == ("after\n1", [1], "", None)
    r = vm.execute_string("error('x')")
    assert not r["success"] and "x" in r["error"] and r["values"] == []
    r = vm.execute_string("return 2")
    assert (r["success"], r["error"], r["stderr"], r["values"]) == (True, None, "", [2])
