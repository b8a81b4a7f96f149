"""Logging: native records routed into logging (caplog), VMLogger, PYLUA_DEBUG."""

from __future__ import annotations

import logging

import pytest

import bioxen_vm
from bioxen_vm import _log
from bioxen_vm.logger import VMLogger, get_logger, setup_global_logging

from conftest import run_python, tree


@pytest.fixture
def debug_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="bioxen_vm")
    _log.sync_level()
    yield caplog
    logging.getLogger("bioxen_vm").setLevel(logging.NOTSET)
    _log.sync_level()


def _native_records(caplog):
    return [r for r in caplog.records if r.name.startswith("bioxen_vm.")
            and not r.name.startswith("bioxen_vm.python")
            and r.name.split(".")[1] not in ("Test", "MyApp", "VM")]


def test_native_records_reach_logging(debug_logging):
    with bioxen_vm.LuaProcess() as vm:
        vm.execute_string("return 1")
    records = _native_records(debug_logging)
    assert records, "no record of the library reached logging"
    assert all(r.name.startswith("bioxen_vm.") for r in records)
    assert any(r.levelno == logging.DEBUG for r in records)


def test_debug_mode_vm_logs_at_info(caplog):
    caplog.set_level(logging.INFO, logger="bioxen_vm")
    _log.sync_level()
    try:
        with bioxen_vm.LuaProcess(debug_mode=True) as vm:
            caplog.clear()
            vm.execute_string("return 'debug mode'")
        info = [r for r in _native_records(caplog) if r.levelno == logging.INFO]
        assert info, "a debug_mode VM logs its executions at INFO"
        with bioxen_vm.LuaProcess() as vm:
            caplog.clear()
            vm.execute_string("return 'quiet'")
        assert not [r for r in _native_records(caplog) if r.levelno == logging.INFO]
    finally:
        logging.getLogger("bioxen_vm").setLevel(logging.NOTSET)
        _log.sync_level()


def test_native_level_follows_the_logger():
    logger = logging.getLogger("bioxen_vm")
    try:
        logger.setLevel(logging.WARNING)
        assert _log.sync_level() == 2
        logger.setLevel(logging.DEBUG)
        assert _log.sync_level() == 4
        logger.setLevel(_log.TRACE)
        assert _log.sync_level() == 5
        logger.setLevel(logging.CRITICAL + 10)
        assert _log.sync_level() == 0
    finally:
        logger.setLevel(logging.NOTSET)
        _log.sync_level()
    assert [_log.native_level_for(x) for x in (5, 10, 20, 30, 40, 50)] == [5, 4, 3, 2, 1, 0]


def test_records_from_library_threads(debug_logging, manager):
    manager.create_vm("a")
    manager.execute_vm_async("a", "return 1").result(10)
    assert _native_records(debug_logging)


def test_vmlogger_routes_into_logging(caplog):
    caplog.set_level(logging.DEBUG, logger="bioxen_vm.Test")
    log = VMLogger(debug_mode=True, component="Test")
    log.debug("debug message")
    log.info("info message", {"k": "v", "n": 2})
    log.warning("warn")
    log.error("bad")
    log.success("it worked")
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records
           if r.name == "bioxen_vm.Test"]
    assert got == [
        ("bioxen_vm.Test", "DEBUG", "debug message"),
        ("bioxen_vm.Test", "INFO", "info message | k=v | n=2"),
        ("bioxen_vm.Test", "WARNING", "warn"),
        ("bioxen_vm.Test", "ERROR", "bad"),
        ("bioxen_vm.Test", "INFO", "SUCCESS: it worked"),
    ]
    assert [e.message for e in log.get_history()][:2] == ["debug message", "info message"]
    assert log.enable_file_logging is False


def test_vmlogger_extras(caplog):
    caplog.set_level(logging.DEBUG, logger="bioxen_vm.MyApp")
    log = VMLogger(debug_mode=True, component="MyApp")
    with log.timed_operation("op"):
        pass
    assert log.get_performance_metrics("op")["count"] == 1
    log.start_progress("p", "Work", 2)
    log.update_progress("p")
    log.update_progress("p", message="last")
    log.log_installation("pkg", "1.0", True, duration=0.1)
    assert log.get_installation_history("pkg")[0]["success"] is True
    log.start_progress("q", "Other", 3)
    log.fail_progress("q", "broken")
    data = log.export_logs()
    assert data["component"] == "MyApp" and data["entries"]
    assert VMLogger.get_instance("Same") is VMLogger.get_instance("Same")
    assert get_logger("Same") is VMLogger.get_instance("Same")
    assert set(setup_global_logging()) == {"vm", "curator", "environment", "network"}
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Completed op in") for m in messages)
    assert any("Failed Other: broken" in m for m in messages)


def test_vmlogger_writes_no_files_and_prints_nothing(tmp_path):
    code = """
        import logging
        from bioxen_vm.logger import VMLogger
        log = VMLogger(debug_mode=True, component="X", log_dir="logs")
        log.debug("d"); log.info("i"); log.success("s")
        log.export_logs()
        import bioxen_vm
        vm = bioxen_vm.create_vm("x", debug_mode=True)
        vm.execute_string("print(1)")
    """
    r = run_python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""
    assert b"d\n" not in r.stderr and b"[DEBUG]" not in r.stderr
    assert tree(tmp_path) == ["home"]


def test_pylua_debug_turns_on_debug_logging_to_stderr(tmp_path):
    code = """
        import bioxen_vm
        vm = bioxen_vm.create_vm("x")
        vm.execute_string("return 1")
        from bioxen_vm.logger import VMLogger
        VMLogger(component="App").debug("app debug line")
    """
    r = run_python(code, tmp_path, {"PYLUA_DEBUG": "true"})
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "[DEBUG][App] app debug line" in err
    assert "][DEBUG][" in err.replace("[DEBUG][App]", "")  # records of the library too
    assert r.stdout == b""
    assert tree(tmp_path) == ["home"]
    quiet = run_python(code, tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout == b""


def test_pylua_debug_leaves_configured_logging_alone(tmp_path):
    code = """
        import logging, io
        buf = io.StringIO()
        logging.basicConfig(stream=buf, level=logging.DEBUG, format="%(name)s:%(message)s")
        import bioxen_vm
        bioxen_vm.create_vm("x").execute_string("return 1")
        print("records" if "bioxen_vm." in buf.getvalue() else "none")
    """
    r = run_python(code, tmp_path, {"PYLUA_DEBUG": "true"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"records\n" and r.stderr == b""


def test_a_failing_handler_does_not_break_executions(debug_logging):
    class Broken(logging.Handler):
        def emit(self, record):
            raise RuntimeError("handler failure")

    logger = logging.getLogger("bioxen_vm")
    handler = Broken()
    logger.addHandler(handler)
    old = logging.raiseExceptions
    logging.raiseExceptions = False
    try:
        with bioxen_vm.LuaProcess() as vm:
            assert vm.execute_string("return 5")["values"] == [5]
    finally:
        logging.raiseExceptions = old
        logger.removeHandler(handler)
