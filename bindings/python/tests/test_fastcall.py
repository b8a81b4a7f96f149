"""The compiled execution path (``bioxen_vm._fastcall``) against the backend's own path.

Both must give the same dict for the same execution and raise the same exception for the
same failure. When the suite runs with the fast path off, the module is bound here to the
backend's library (so the ctypes and cffi function addresses are both exercised); when it is
on, the package already bound it.
"""

from __future__ import annotations

import importlib
import os
import re
import resource
import threading
from typing import Any, Dict

import pytest

import bioxen_vm
from bioxen_vm import _hotpath
from bioxen_vm import exceptions as E
from bioxen_vm._convert import result_dict
from bioxen_vm._native import backend


def _module() -> Any:
    try:
        module = importlib.import_module("bioxen_vm._fastcall")
    except ImportError:
        if os.environ.get("BIOXEN_VM_EXPECT_FASTCALL_BUILT") == "1":
            raise AssertionError("bioxen_vm._fastcall was not built by the install")
        pytest.skip("bioxen_vm._fastcall is not built (no C compiler or Python headers)")
    if not bioxen_vm.FASTCALL and not getattr(_module, "bound", False):
        _hotpath.bind(module, backend)
        _module.bound = True  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fast() -> Any:
    return _module()


def _pure(vm: int, code: bytes, args: bytes = b"", ms: int = 0) -> Dict[str, Any]:
    return result_dict(backend.execute_into(vm, code, len(code), args, ms))


def _pure_manager(m: int, vm_id: bytes, code: bytes, args: bytes = b"",
                  ms: int = 0) -> Dict[str, Any]:
    return result_dict(backend.manager_execute_into(m, vm_id, code, len(code), args, ms))


def _same(a: Dict[str, Any], b: Dict[str, Any]) -> None:
    assert a.pop("duration") >= 0 and b.pop("duration") >= 0
    for r in (a, b):  # returned tables are echoed as "table: 0x..." (a new one each run)
        r["stdout"] = re.sub(r"table: 0x[0-9a-f]+", "table", r["stdout"])
    assert a == b
    assert list(a) == list(b)  # the same keys in the same order


# Outputs that test each conversion: stripping (ASCII, the separators str.strip() also
# removes, non-breaking and em spaces), invalid UTF-8, NUL, values of every JSON kind,
# errors, and outputs large enough to grow the buffers.
CORPUS = [
    b"return 2+2",
    b"print('  padded \\t ') return 1",
    b"io.write('\\x1cx\\x1f')",
    b"io.write('\\xc2\\xa0nbsp\\xe2\\x80\\x83')",
    b"io.write('\\xff\\xfe bad utf-8 \\xc3')",
    b"io.write('a\\0b') return 'c\\0d'",
    b"return 1, 2.5, 'x', true, nil, {1, 2}, {k = 'v'}",
    b"return 'same'",
    b"return 'same'",
    b"io.stderr:write('  err  ')",
    b"error('boom')",
    b"error({code = 7})",
    b"local x = = 1",
    b"print(string.rep('y', 100000)) return string.rep('z', 70000)",
    b"return",
    b"return ...",
]


@pytest.mark.parametrize("code", CORPUS + [
    "return 'ü', '\U0001F600'".encode(), b"return '\xff\xfe' .. 'x'", b"return 'a\0b'"])
def test_the_same_dict_as_the_backend(fast: Any, vm: Any, code: bytes) -> None:
    h = vm._h()
    _same(fast.execute(h, code, b"", 0), _pure(h, code))
    # The same code as str (bytes that are not UTF-8 become lone surrogates, which go back
    # to the same bytes through "surrogateescape").
    text = code.decode("utf-8", "surrogateescape")
    _same(fast.execute(h, text, b"", 0), _pure(h, code))


def test_arguments_and_the_manager_variant(fast: Any, manager: Any) -> None:
    manager.create_vm("fc")
    m = manager._h()
    args = b'[1, "two", [3], {"four": 4}, null]'
    for code in (b"return ...", b"return select('#', ...)", b"print(...)"):
        _same(fast.manager_execute(m, b"fc", code, args, 0), _pure_manager(m, b"fc", code, args))


def _raised(call: Any) -> Any:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_the_same_exceptions(fast: Any, vm: Any, manager: Any) -> None:
    h = vm._h()
    m = manager._h()
    manager.create_vm("fc")
    pairs = [
        (lambda: fast.execute(h, b"while true do end", b"", 50),
         lambda: backend.execute_into(h, b"while true do end", 17, b"", 50)),
        (lambda: fast.execute(h, b"return 1", b"[1,", 0),
         lambda: backend.execute_into(h, b"return 1", 8, b"[1,", 0)),
        (lambda: fast.execute(h, b"return 1", b"\xff", 0),
         lambda: backend.execute_into(h, b"return 1", 8, b"\xff", 0)),
        (lambda: fast.execute(987654321, b"return 1", b"", 0),
         lambda: backend.execute_into(987654321, b"return 1", 8, b"", 0)),
        (lambda: fast.manager_execute(m, b"nope", b"return 1", b"", 0),
         lambda: backend.manager_execute_into(m, b"nope", b"return 1", 8, b"", 0)),
        (lambda: fast.manager_execute(m, b"\xff", b"return 1", b"", 0),
         lambda: backend.manager_execute_into(m, b"\xff", b"return 1", 8, b"", 0)),
    ]
    for fast_call, pure_call in pairs:
        a, b = _raised(fast_call), _raised(pure_call)
        assert type(a) is type(b) and str(a) == str(b), (a, b)
    assert isinstance(_raised(pairs[0][0]), E.VMTimeoutError)
    assert isinstance(_raised(pairs[3][0]), E.InvalidHandleError)
    # The VM and the manager keep working after every failure.
    assert fast.execute(h, b"return 5", b"", 0)["values"] == [5]
    assert fast.manager_execute(m, b"fc", b"return 6", b"", 0)["values"] == [6]


def test_bad_python_arguments(fast: Any, vm: Any, manager: Any) -> None:
    h = vm._h()
    m = manager._h()
    with pytest.raises(TypeError, match="code must be str or bytes"):
        fast.execute(h, bytearray(b"return 1"), b"", 0)
    with pytest.raises(TypeError, match="code must be str or bytes"):
        fast.manager_execute(m, b"x", 1, b"", 0)
    with pytest.raises(TypeError):
        fast.execute(h, b"return 1", None, 0)
    with pytest.raises(TypeError):
        fast.execute(h, b"return 1", b"")
    with pytest.raises(OverflowError):
        fast.execute(-1, b"return 1", b"", 0)
    with pytest.raises(TypeError):
        fast.execute("1", b"return 1", b"", 0)
    with pytest.raises(ValueError, match="NUL"):
        fast.manager_execute(m, b"a\0b", b"return 1", b"", 0)
    with pytest.raises(RuntimeError, match="already bound"):
        _hotpath.bind(fast, backend)
    assert fast.execute(h, b"return 1", b"", 0)["values"] == [1]


def test_threads_each_get_their_own_result(fast: Any) -> None:
    # 8 threads on 8 VMs, each result naming its own VM: a buffer shared between two calls
    # would show another thread's output.
    vms = [bioxen_vm.LuaProcess(f"t{i}") for i in range(8)]
    errors = []

    def run(i: int) -> None:
        h = vms[i]._h()
        code = f"print(string.rep('{i}', {100 + i * 37})) return {i}".encode()
        try:
            for _ in range(300):
                r = fast.execute(h, code, b"", 0)
                if r["stdout"] != str(i) * (100 + i * 37) + f"\n{i}" or r["values"] != [i]:
                    errors.append((i, r["stdout"][:20], r["values"]))
                    return
        except Exception as exc:  # pragma: no cover - reported below
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for v in vms:
        v.close()
    assert errors == []


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leak_per_call(fast: Any, vm: Any) -> None:
    # 200,000 calls: a leaked dict, list or string per call would be several MiB.
    h = vm._h()
    for code in (b"return 2+2", b"print('x') return 'y', {1}", b"error('e')"):
        for _ in range(20000):
            fast.execute(h, code, b"", 0)
    before = _rss_kib()
    for _ in range(70000):
        fast.execute(h, b"return 2+2", b"", 0)
        fast.execute(h, b"print('x') return 'y', {1}", b"", 0)
        fast.execute(h, b"error('e')", b"", 0)
    assert _rss_kib() - before < 2048


def _pure_send(m: int, vm_id: bytes, data: Any) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if not data.endswith(b"\n"):
        data += b"\n"
    backend.manager_send_input(m, vm_id, data, len(data))


def _pure_read(m: int, vm_id: bytes, ms: int) -> Any:
    data = backend.manager_read_output(m, vm_id, ms, 0)
    return None if data is None else data.decode("utf-8", "replace")


# Session input: with and without its newline, str and bytes, longer than the 256-byte
# stack buffer used to add a newline, output that is not UTF-8 or holds NUL.
SESSION_INPUT = [
    "print(1+1)",
    "print(1+1)\n",
    b"x = 41",
    b"print(x + 1)",
    "print('" + "w" * 300 + "')",
    "io.write('\\xff\\xfe', 'a\\0b', '\\n')",
    "print('\u00fc \U0001F600')",
    "error('session error')",
    "for i = 1, 3 do\nprint(i)\nend",
    "local t = {",
    "1}",
]


def test_the_session_round_trip_is_the_same(fast: Any, manager: Any) -> None:
    manager.create_interactive_vm("fast_s")
    manager.create_interactive_vm("pure_s")
    m = manager._h()
    assert fast.read_output(m, b"fast_s", 1000, 0) == _pure_read(m, b"pure_s", 1000)
    for line in SESSION_INPUT:
        fast.send_input(m, b"fast_s", line)
        _pure_send(m, b"pure_s", line)
        a = fast.read_output(m, b"fast_s", 5000, 0)
        b = _pure_read(m, b"pure_s", 5000)
        if a is not None and b is not None:  # each VM's tables have their own addresses
            a, b = (re.sub(r"table: 0x[0-9a-f]+", "table", x) for x in (a, b))
        assert a == b, (line, a, b)
    # Nothing buffered: None from both, without waiting and after waiting.
    assert fast.read_output(m, b"fast_s", 0, 0) is None
    assert fast.read_output(m, b"fast_s", 50, 0) is None and _pure_read(m, b"pure_s", 50) is None


def test_session_failures_are_the_same(fast: Any, manager: Any) -> None:
    manager.create_vm("plain")
    m = manager._h()
    pairs = [
        (lambda: fast.send_input(m, b"plain", "x = 1"),
         lambda: _pure_send(m, b"plain", "x = 1")),
        (lambda: fast.read_output(m, b"plain", 0, 0), lambda: _pure_read(m, b"plain", 0)),
        (lambda: fast.send_input(m, b"nope", "x = 1"), lambda: _pure_send(m, b"nope", "x = 1")),
        (lambda: fast.read_output(m, b"\xff", 0, 0), lambda: _pure_read(m, b"\xff", 0)),
        (lambda: fast.send_input(987654321, b"plain", b"x"),
         lambda: _pure_send(987654321, b"plain", b"x")),
    ]
    for fast_call, pure_call in pairs:
        a, b = _raised(fast_call), _raised(pure_call)
        assert type(a) is type(b) and str(a) == str(b), (a, b)
    assert isinstance(_raised(pairs[0][0]), E.SessionNotFoundError)
    with pytest.raises(ValueError, match="NUL"):
        fast.send_input(m, b"a\0b", "x")
    with pytest.raises(TypeError, match="code must be str or bytes"):
        fast.send_input(m, b"plain", None)
    with pytest.raises(TypeError):
        fast.read_output(m, b"plain", 0)
    with pytest.raises(OverflowError):
        fast.read_output(m, b"plain", -5, 0)
    # The manager still works.
    manager.create_interactive_vm("after")
    fast.send_input(m, b"after", "print('ok')")
    assert fast.read_output(m, b"after", 5000, 0) == "ok\n"


def test_the_package_uses_the_path_it_reports() -> None:
    if bioxen_vm.FASTCALL:
        assert _hotpath.execute is importlib.import_module("bioxen_vm._fastcall").execute
    else:
        assert _hotpath.execute.__module__ == "bioxen_vm._hotpath"
