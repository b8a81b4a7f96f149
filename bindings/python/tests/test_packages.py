"""bioxen_vm.packages: environments, installs, lockfiles, search, health, typed errors and
progress, and VMs using an environment, against local rocks servers (tests/rocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bioxen_vm
from bioxen_vm import LuaProcess, VMManager, packages
from bioxen_vm.exceptions import (BioxenVMValueError, BuildFailedError,
                                  DependencyConflictError, LockfileError, LuaVMError,
                                  PackageEnvironmentError, PackageError, PackageNotFoundError)
from rocks_server import main_server, servers


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Named environments and the default shared cache go to a temporary data directory,
    never under HOME; no environment is active."""
    monkeypatch.setenv("BIOXEN_VM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BIOXEN_VM_ENV", raising=False)
    monkeypatch.delenv("BIOXEN_VM_ROCKS_SERVERS", raising=False)


@pytest.fixture
def env(tmp_path):
    return packages.Environment.create(path=tmp_path / "env", servers=[main_server()],
                                       cache=str(tmp_path / "cache"))


def test_create_open_and_describe(tmp_path, env):
    assert env.path == str(tmp_path / "env")
    assert env.lua_version == "5.4"
    assert env.servers == [main_server()]
    assert os.fspath(env) == env.path
    again = packages.Environment(env.path)
    assert again.info["tree"] == env.info["tree"]
    with pytest.raises(PackageEnvironmentError, match="already exists"):
        packages.Environment.create(path=env.path)
    with pytest.raises(PackageEnvironmentError, match="no environment"):
        packages.Environment(tmp_path / "nothing")
    with pytest.raises(BioxenVMValueError):
        packages.Environment.create(path=tmp_path / "x", lua_version="9.9")
    assert isinstance(PackageError("x"), LuaVMError)


def test_install_list_show_remove(env):
    events = []
    r = env.install("bxt-mid", progress=events.append)
    assert r["version"] == "1.0-1"
    assert sorted(x["name"] for x in r["installed"]) == ["bxt-base", "bxt-mid"]
    assert [e["step"] for e in events if e["event"] == "step"] == ["resolve", "luarocks", "installed"]
    assert any(e["event"] == "output" for e in events)
    assert [x["name"] for x in env.list()] == ["bxt-base", "bxt-mid"]
    assert packages.list(env.path) == env.list()
    assert env.show("bxt-mid")["dependencies"] == ["lua >= 5.1", "bxt-base >= 1.0, < 2.0"]
    assert env.is_installed("bxt-base")
    with pytest.raises(DependencyConflictError) as info:
        env.remove("bxt-base")
    assert info.value.details["dependents"] == ["bxt-mid 1.0-1"]
    assert info.value.exit_status == 1
    env.remove("bxt-mid")
    packages.remove(env, "bxt-base")
    assert env.list() == []


def test_typed_errors_carry_luarocks_details(env, tmp_path):
    with pytest.raises(PackageNotFoundError) as info:
        env.install("bxt-bse")
    assert info.value.kind == "no_such_rock"
    assert "bxt-base" in info.value.details["similar"]
    with pytest.raises(DependencyConflictError) as info:
        env.install("bxt-needs-new")
    e = info.value
    assert e.details["constraint"] == "bxt-base >= 3.0"
    assert e.details["available"] == ["2.0-1", "1.0-1"]
    assert e.exit_status == 1 and "Could not satisfy" in e.stderr
    assert e.status_name == "DEPENDENCY_CONFLICT"
    with pytest.raises(BuildFailedError) as info:
        env.install("bxt-badc")
    assert "bxt_badc.c" in info.value.stderr
    for hostile in ["x; rm -rf ~", "foo'); os.exit(1) --", "../../etc/passwd",
                    "http://127.0.0.1:1/x.rockspec", "/tmp/x.rock"]:
        with pytest.raises(BioxenVMValueError, match="invalid rock name"):
            env.install(hostile)
    with pytest.raises(TypeError):
        env.install("bxt-base", version=object())


def test_a_progress_callback_that_raises_cancels_and_raises_after_the_call(env):
    def boom(_event):
        raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        env.install("bxt-base", progress=boom)
    assert not env.is_installed("bxt-base"), "the install was cancelled"


def test_a_progress_callback_returning_false_cancels(env):
    from bioxen_vm.exceptions import JobCancelledError

    seen = []

    def stop_at_first_line(event):
        seen.append(event)
        return event["event"] != "output"
    with pytest.raises(JobCancelledError, match="cancelled by the progress callback") as e:
        env.install("bxt-base", progress=stop_at_first_line)
    assert e.value.details["kind"] == "cancelled"
    assert seen[-1]["event"] == "output" and sum(x["event"] == "output" for x in seen) == 1
    assert not env.is_installed("bxt-base")
    env.install("bxt-base", progress=lambda _e: None)
    assert env.is_installed("bxt-base")


def test_lock_sync_and_the_cache(tmp_path, env):
    env.install("bxt-deep")
    lock = env.lock()
    assert [r["name"] for r in lock["rocks"]] == ["bxt-base", "bxt-deep", "bxt-mid"]
    assert json.loads(Path(env.lockfile).read_text()) == lock
    other = packages.Environment.create(path=tmp_path / "other", servers=[main_server()],
                                        cache=str(tmp_path / "cache"))
    r = other.sync(env.lockfile)
    assert all(x["from_cache"] for x in r["installed"])
    assert other.lock(tmp_path / "other.lock") == lock
    third = packages.Environment.create(path=tmp_path / "third", servers=[main_server()],
                                        cache=False)
    r = packages.sync(third, lock)
    assert not any(x["from_cache"] for x in r["installed"])
    assert third.lock(tmp_path / "third.lock") == lock
    partial = packages.Environment.create(path=tmp_path / "partial",
                                          servers=[str(servers() / "partial")], cache=False)
    with pytest.raises(LockfileError) as info:
        partial.sync(lock)
    assert info.value.kind == "unavailable"
    assert packages.health_check(other)["ok"] is True


def test_search_and_profiles(tmp_path, env):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"packages": {
        "bio_compute": {"category": "science", "description": "Sequences and GC content",
                        "labels": ["dna"], "priority": 9, "modules": ["bio_compute"]},
        "other": {"description": "unrelated", "priority": 1}}}))
    hits = packages.search("dna", catalogs=[str(catalog)])
    assert [h["name"] for h in hits] == ["bio_compute"]
    hits = env.search("bxt-bas")
    assert hits[0]["name"] == "bxt-base" and hits[0]["versions"] == ["2.0-1", "1.0-1"]
    assert packages.search("nothing-matches-this", catalogs=[str(catalog)]) == []
    profiles = packages.profiles()
    assert list(profiles) == ["development", "full", "minimal", "networking", "production",
                              "standard"]
    r = env.bootstrap("standard")
    assert [x["name"] for x in r["lock"]["rocks"]] == ["inspect", "lua-cjson", "luafilesystem"]


def test_vms_use_the_environment(env):
    env.install("bio_compute")
    env.install("bxt-cmod")
    with LuaProcess(env=env) as vm:
        r = vm.execute_string("require('bio_compute') print(bio_compute.compute(10))")
        assert r["stdout"] == "100", r
        r = vm.execute_string("require('bxt_cmod')")
        assert not r["success"] and "is a C module" in r["stderr"]
    with LuaProcess(env=env.path, sandbox="trusted") as vm:
        r = vm.execute_string("print(require('bxt_cmod').kind)")
        assert r["stdout"] == "compiled", r
    with LuaProcess(env=env, vm_type="process") as vm:
        r = vm.execute_string("print(require('bxt_cmod').add(1, 2), pcall(require, 'socket'))")
        assert r["stdout"].startswith("3.0\tfalse"), r
    with VMManager() as m:
        m.create_vm("a", env=env.path)
        assert m.execute_vm_sync("a", "require('bio_compute') print(bio_compute.analyze_sequence('AT'))")[
            "stdout"] == "length=2 A=1 C=0 G=0 T=1 GC=0%"


def test_a_luarocks_lock_in_the_callers_directory_changes_nothing(tmp_path, env):
    # luarocks 3.8 honours ./luarocks.lock for build/make; it runs elsewhere here.
    work = tmp_path / "work"
    work.mkdir()
    (work / "luarocks.lock").write_text('return { dependencies = { ["bxt-base"] = "1.0-1" } }\n')
    code = textwrap.dedent(f"""
        from bioxen_vm import packages
        e = packages.Environment({env.path!r})
        print(e.install("bxt-mid")["installed"][0]["version"], e.install("bxt-base")["version"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1.0-1", "2.0-1"]
    assert sorted(p.name for p in work.iterdir()) == ["luarocks.lock"]


def test_named_environments_and_the_data_directory(tmp_path):
    data = tmp_path / "data"
    code = textwrap.dedent(f"""
        from bioxen_vm import packages
        e = packages.Environment.create(name="alpha", servers=[{main_server()!r}])
        e.install("bxt-base")
        print([x["name"] for x in packages.environments()])
        packages.remove_environment("alpha")
        print(packages.environments())
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, BIOXEN_VM_DATA_DIR=str(data),
                                              PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['alpha']", "[]"]
    assert (data / "cache" / "objects").is_dir()
