"""The exception hierarchy, and which status raises which exception (also from real calls)."""

from __future__ import annotations

import concurrent.futures
import re
import time
from pathlib import Path

import pytest

import bioxen_vm
from bioxen_vm import _errors, exceptions as E
from bioxen_vm._native import backend

HEADER = Path(bioxen_vm._backend.header_path).read_text(encoding="utf-8")

# The original's classes and their direct base (exceptions.py of 0.1.22, §1.12).
ORIGINAL_HIERARCHY = {
    "LuaVMError": "Exception",
    "LuaProcessError": "LuaVMError",
    "NetworkingError": "LuaVMError",
    "LuaNotFoundError": "LuaVMError",
    "PTYError": "LuaVMError",
    "LuaSocketNotFoundError": "LuaVMError",
    "VMConnectionError": "LuaVMError",
    "VMTimeoutError": "LuaVMError",  # here through LuaProcessError (see exceptions.py)
    "ScriptGenerationError": "LuaVMError",
    "XCPngConnectionError": "LuaVMError",
    "InteractiveSessionError": "LuaVMError",
    "AttachError": "InteractiveSessionError",
    "SessionNotFoundError": "InteractiveSessionError",
    "DetachError": "InteractiveSessionError",
    "IOThreadError": "InteractiveSessionError",
    "SessionStateError": "InteractiveSessionError",
    "SessionAlreadyExistsError": "InteractiveSessionError",
    "VMManagerError": "LuaVMError",
    "ProcessRegistryError": "VMManagerError",
}


@pytest.mark.parametrize("name,base", sorted(ORIGINAL_HIERARCHY.items()))
def test_original_classes_keep_name_and_kind(name, base):
    cls = getattr(E, name)
    assert cls.__name__ == name
    assert issubclass(cls, getattr(E, base) if base != "Exception" else Exception)
    assert issubclass(cls, E.LuaVMError)
    if name in bioxen_vm.__all__ or name == "XCPngConnectionError":
        assert getattr(bioxen_vm, name) is cls


def test_direct_bases_are_the_originals_except_the_timeout():
    for name, base in ORIGINAL_HIERARCHY.items():
        bases = [b.__name__ for b in getattr(E, name).__bases__]
        if name == "VMTimeoutError":
            assert bases == ["LuaProcessError"]
        else:
            assert bases == [base], name
    assert not issubclass(E.XCPngConnectionError, E.VMManagerError)


def test_lua_process_error_carries_return_code_and_stderr():
    e = E.LuaProcessError("boom", return_code=3, stderr="err")
    assert (str(e), e.return_code, e.stderr) == ("boom", 3, "err")
    assert E.LuaProcessError("x").return_code is None


def _header_statuses():
    body = HEADER.split("typedef enum bioxen_vm_status", 1)[1].split("} bioxen_vm_status;")[0]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"BIOXEN_VM_STATUS_(\w+) = (\d+)", body)}


def test_every_status_of_the_header_is_mapped():
    statuses = _header_statuses()
    assert len(statuses) >= 35
    for name, number in statuses.items():
        assert getattr(_errors, name) == number, name
        assert backend.status_name(number) == name == _errors.status_name(number)
        if number != 0:
            assert number in _errors.STATUS_EXCEPTIONS, name
    assert set(_errors.STATUS_EXCEPTIONS) == set(statuses.values()) - {0}
    assert backend.status_name(9999) == "UNKNOWN" == _errors.status_name(9999)


EXPECTED = {
    "NULL_POINTER": (E.BioxenVMValueError, ValueError),
    "INVALID_UTF8": (E.BioxenVMValueError, ValueError),
    "INVALID_HANDLE": (E.InvalidHandleError, ValueError),
    "INVALID_ARGUMENT": (E.BioxenVMValueError, ValueError),
    "UNSUPPORTED": (E.UnsupportedError, NotImplementedError),
    "TIMEOUT": (E.VMTimeoutError, E.LuaProcessError),
    "INTERRUPTED": (E.VMInterruptedError, E.LuaProcessError),
    "MEMORY_LIMIT": (E.VMMemoryLimitError, E.LuaProcessError),
    "PANIC": (E.BioxenVMInternalError, E.LuaVMError),
    "VM_POISONED": (E.VMPoisonedError, E.LuaVMError),
    "CANCELLED": (E.JobCancelledError, concurrent.futures.CancelledError),
    "WAIT_TIMEOUT": (E.WaitTimeoutError, concurrent.futures.TimeoutError),
    "INTERNAL": (E.BioxenVMInternalError, E.LuaVMError),
    "VM_NOT_FOUND": (E.VMNotFoundError, ValueError),
    "VM_ALREADY_EXISTS": (E.VMAlreadyExistsError, ValueError),
    "FILE_NOT_FOUND": (E.ScriptNotFoundError, FileNotFoundError),
    "LUA_VM_ERROR": (E.LuaVMError, E.LuaVMError),
    "LUA_PROCESS_ERROR": (E.LuaProcessError, E.LuaVMError),
    "NETWORKING_ERROR": (E.NetworkingError, E.LuaVMError),
    "LUA_NOT_FOUND": (E.LuaNotFoundError, E.LuaVMError),
    "PTY_ERROR": (E.PTYError, E.LuaVMError),
    "LUA_SOCKET_NOT_FOUND": (E.LuaSocketNotFoundError, E.LuaVMError),
    "VM_CONNECTION_ERROR": (E.VMConnectionError, E.LuaVMError),
    "SCRIPT_GENERATION_ERROR": (E.ScriptGenerationError, E.LuaVMError),
    "XCPNG_CONNECTION_ERROR": (E.XCPngConnectionError, E.LuaVMError),
    "INTERACTIVE_SESSION_ERROR": (E.InteractiveSessionError, E.LuaVMError),
    "ATTACH_ERROR": (E.AttachError, E.InteractiveSessionError),
    "DETACH_ERROR": (E.DetachError, E.InteractiveSessionError),
    "SESSION_NOT_FOUND": (E.SessionNotFoundError, E.InteractiveSessionError),
    "SESSION_ALREADY_EXISTS": (E.SessionAlreadyExistsError, E.InteractiveSessionError),
    "SESSION_STATE_ERROR": (E.SessionStateError, E.InteractiveSessionError),
    "IO_THREAD_ERROR": (E.IOThreadError, E.InteractiveSessionError),
    "VM_MANAGER_ERROR": (E.VMManagerError, E.LuaVMError),
    "PROCESS_REGISTRY_ERROR": (E.ProcessRegistryError, E.VMManagerError),
    "PACKAGE_NOT_FOUND": (E.PackageNotFoundError, E.PackageError),
    "DEPENDENCY_CONFLICT": (E.DependencyConflictError, E.PackageError),
    "LUAROCKS_NOT_FOUND": (E.LuaRocksNotFoundError, E.PackageError),
    "BUILD_FAILED": (E.BuildFailedError, E.PackageError),
    "PACKAGE_ERROR": (E.PackageError, E.LuaVMError),
    "LOCKFILE_ERROR": (E.LockfileError, E.PackageError),
    "ENVIRONMENT_ERROR": (E.PackageEnvironmentError, E.PackageError),
}


def test_expected_table_covers_every_status():
    assert set(EXPECTED) == set(_header_statuses()) - {"OK"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_status_raises_its_class_with_the_message(name):
    number = getattr(_errors, name)
    cls, also = EXPECTED[name]
    exc = _errors.error_from_status(number, f"message of {name}")
    assert type(exc) is cls
    assert isinstance(exc, also) and isinstance(exc, E.LuaVMError)
    assert str(exc) == f"message of {name}"
    assert (exc.status, exc.status_name) == (number, name)
    with pytest.raises(cls):
        raise exc


def test_a_status_without_message_still_says_what_failed():
    exc = _errors.error_from_status(_errors.INTERNAL, None)
    assert "INTERNAL" in str(exc)


def test_timeout_satisfies_both_except_clauses(vm):
    for clause in (E.LuaProcessError, E.VMTimeoutError, E.LuaVMError):
        with pytest.raises(clause) as info:
            vm.execute_string("while true do end", timeout=0.1)
        assert str(info.value) == "Lua execution timed out after 0.1 seconds"
        assert type(info.value).__name__ == "VMTimeoutError"
        assert info.value.timeout == 0.1


def test_real_calls_raise_the_mapped_classes(tmp_path):
    m = bioxen_vm.VMManager()
    try:
        m.create_vm("a")
        cases = [
            (lambda: backend.manager_create_vm(m.handle, None, b""), E.BioxenVMValueError, ""),
            (lambda: m.create_vm(b"\xff\xfe"), E.BioxenVMValueError, ""),
            (lambda: backend.execute(123456, b"x", 1, b"", 0), E.InvalidHandleError,
             "not a live VM handle"),
            (lambda: m.execute_vm_sync("a", "   "), E.BioxenVMValueError,
             "Lua code cannot be empty"),
            (lambda: m.create_vm("x", vm_type="xcpng", config={}), E.VMManagerError,
             "Missing required configuration: xcp_host"),
            (lambda: m.create_vm("y", vm_type="nope"), E.BioxenVMValueError,
             "Unknown VM type: nope"),
            (lambda: m.execute_vm_sync("a", "while true do end", timeout=0.05),
             E.VMTimeoutError, "timed out after 0.05 seconds"),
            (lambda: m.execute_vm_sync("zz", "return 1"), E.VMNotFoundError,
             "VM 'zz' not found"),
            (lambda: m.create_vm("a"), E.VMAlreadyExistsError, "VM with ID 'a' already exists"),
            (lambda: m.get_vm("a").execute_file(tmp_path / "none.lua"), E.ScriptNotFoundError,
             "Lua script not found: "),
            (lambda: m.attach_to_vm("nope"), E.SessionNotFoundError, "VM 'nope' not found"),
            (lambda: m.send_input("a", "x"), E.SessionNotFoundError,
             "No interactive session for VM 'a'"),
            (lambda: m.wait_for_vm("a"), E.BioxenVMValueError,
             "No running operation found for VM 'a'"),
        ]
        for call, cls, text in cases:
            with pytest.raises(cls) as info:
                call()
            assert text in str(info.value)
            assert info.value.status_name is not None
        m.create_interactive_vm("i")
        with pytest.raises(E.AttachError):
            m.attach_to_vm("i")
        m.get_vm("i")  # still there
        session = m.detach_from_vm("i")
        assert session is None
        with pytest.raises(E.DetachError):
            m._detach("i", quiet=False)
        with pytest.raises(E.NetworkingError):
            m.start_server_vm("a", 20000)
    finally:
        m.close()


def test_memory_limit_and_interrupt_statuses():
    with bioxen_vm.LuaProcess(memory_limit=4 * 1024 * 1024) as vm:
        with pytest.raises(E.VMMemoryLimitError):
            vm.execute_string("local t = {} for i = 1, 1e8 do t[i] = i end")
        assert vm.execute_string("return 1")["values"] == [1]
    with bioxen_vm.LuaProcess() as vm:
        import threading

        def stop_soon():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not vm.interrupt():
                time.sleep(0.01)

        t = threading.Thread(target=stop_soon)
        t.start()
        with pytest.raises(E.VMInterruptedError):
            vm.execute_string("while true do end", timeout=20)
        t.join()


def test_job_statuses_as_futures_exceptions(manager):
    manager.create_vm("j")
    f = manager.execute_vm_async("j", "local t = os.clock() while os.clock() - t < 5 do end")
    with pytest.raises(E.WaitTimeoutError):
        manager.wait_for_vm("j", timeout=0.05)
    with pytest.raises(concurrent.futures.TimeoutError):
        manager.wait_for_vm("j", timeout=0.05)
    assert f.cancel()
    with pytest.raises(E.JobCancelledError):
        manager.wait_for_vm("j", timeout=10)
    with pytest.raises(concurrent.futures.CancelledError):
        f.result(10)
