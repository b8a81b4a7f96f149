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
from bioxen_vm import _execute
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
        _execute.bind(module, backend)
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
        _execute.bind(fast, backend)
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


def test_the_package_uses_the_path_it_reports() -> None:
    if bioxen_vm.FASTCALL:
        assert _execute.execute is importlib.import_module("bioxen_vm._fastcall").execute
    else:
        assert _execute.execute.__module__ == "bioxen_vm._execute"
