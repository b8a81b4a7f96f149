"""The original's package layer on package environments: Curator (every method of
0.1.22), get_curator, quick_install, bootstrap_lua_environment, Package, EnvironmentManager,
and the specification's PackageInstaller and search_packages."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

from pylua_bioxen_vm_lib.env import EnvironmentManager
from pylua_bioxen_vm_lib.utils import curator as cur
from pylua_bioxen_vm_lib.utils.curator import (Curator, Package, PackageInstaller,
                                               bootstrap_lua_environment, get_curator,
                                               quick_install, search_packages,
                                               version_satisfies)
from rocks_server import main_server


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Named environments and the default shared cache go to a temporary data directory,
    never under HOME; no environment is active."""
    monkeypatch.setenv("BIOXEN_VM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BIOXEN_VM_ENV", raising=False)
    monkeypatch.delenv("BIOXEN_VM_ROCKS_SERVERS", raising=False)


@pytest.fixture
def envpath(tmp_path):
    return str(tmp_path / "env")


@pytest.fixture
def curator(tmp_path, envpath):
    catalog = {
        "bxt-mid": Package("bxt-mid", category="test", description="needs bxt-base",
                           dependencies=["bxt-base"], priority=6),
        "bio_compute": Package("bio_compute", category="science", description="bio",
                               priority=9),
        "inspect": Package("inspect", priority=8),
    }
    profiles = {"science": ["bio_compute", "bxt-mid"]}
    return Curator(manifest_path=str(tmp_path / "state" / "manifest.json"),
                   packages_catalog=catalog, profiles_catalog=profiles, env=envpath,
                   servers=[main_server()])


def test_install_is_installed_remove_and_the_manifest(curator, tmp_path, envpath):
    assert not curator.is_package_installed("bxt-mid")
    assert curator.install_package("bxt-mid") is True
    assert curator.is_package_installed("bxt-mid")
    assert curator.is_package_installed("bxt-base", ">= 1.0")
    assert not curator.is_package_installed("bxt-base", ">= 2.0")
    assert curator.is_package_installed("bxt-base", "~> 1.0")
    assert curator.verify_local_package_installation("bxt-base")
    # The catalogue's dependency first (the newest bxt-base), then bxt-mid, whose
    # constraint brings bxt-base 1.x in its place.
    assert curator.list_installed_packages() == [
        {"name": "bxt-base", "version": "1.0-1"}, {"name": "bxt-mid", "version": "1.0-1"}]
    manifest = json.loads((tmp_path / "state" / "manifest.json").read_text())
    assert set(manifest) == {"version", "created", "lua_version", "packages", "profiles",
                             "last_updated"}
    assert manifest["lua_version"] == "5.4"
    entry = manifest["packages"]["bxt-mid"]
    assert entry["installed"] is True and entry["version"] == "1.0-1"
    assert set(entry) == {f.name for f in dataclasses.fields(Package)}
    assert curator.install_package("no-such-rock") is False
    assert curator.remove_package("bxt-mid") is True
    assert curator.remove_package("bxt-mid") is False
    env = curator.get_lua_env()
    assert env["LUA_PATH"] == f"{envpath}/tree/share/lua/5.4/?.lua;{envpath}/tree/share/lua/5.4/?/init.lua"
    assert env["LUA_CPATH"] == f"{envpath}/tree/lib/lua/5.4/?.so"


def test_profiles_recommendations_cleanup_and_health(curator):
    assert "standard" in curator.get_available_profiles()
    assert "science" in curator.get_available_profiles()
    assert curator.curate_environment("science") is True
    assert curator.curate_environment("no-such-profile") is False
    recs = curator.get_recommendations()
    # No TypeError (the original's set() of dataclasses); inspect has priority 8.
    assert [p.name for p in recs] == ["inspect"]
    assert curator.cleanup_orphaned_packages() == []
    curator.environment.install("bxt-tool")
    assert curator.cleanup_orphaned_packages() == ["bxt-tool"]
    assert curator.is_package_installed("bxt-tool"), "cleanup only reports"
    h = curator.health_check()
    assert set(h) == {"luarocks_available", "lua_version", "installed_packages",
                      "manifest_valid", "catalog_size", "available_profiles", "timestamp",
                      "critical_packages_ratio", "environment"}
    assert h["luarocks_available"] is True and h["lua_version"] == "5.4"
    assert h["catalog_size"] == 3
    assert h["critical_packages_ratio"] == 0.5
    assert h["environment"]["checks"]["servers"]["ok"] is True


def test_module_functions(tmp_path, envpath):
    assert quick_install(["bxt-base"], env=envpath, servers=[main_server()]) is True
    assert get_curator(env=envpath).is_package_installed("bxt-base")
    assert bootstrap_lua_environment("standard", env=envpath) is True
    assert os.path.isfile(os.path.join(envpath, "bioxen.lock"))
    assert bootstrap_lua_environment("nosuch", env=envpath) is False


def test_the_specifications_installer_and_search(envpath):
    inst = PackageInstaller(env=envpath, servers=[main_server()])
    assert inst.install_package("bio_compute") is True
    assert inst.is_installed("bio_compute")
    assert inst.update_package("bxt-base") is True
    assert [p["name"] for p in inst.list_installed()] == ["bio_compute", "bxt-base"]
    hits = search_packages("bio_compute", env=envpath)
    assert hits[0]["name"] == "bio_compute" and hits[0]["version"] == "1.0-1"
    assert inst.remove_package("bio_compute") is True
    assert inst.install_package("x; rm -rf ~") is False


def test_version_constraints_as_the_original_accepted_them():
    for v, c, want in [("1.2.3-1", ">= 1.2", True), ("1.2.3-1", "> 1.3", False),
                       ("2.0-1", "<= 2.0", True), ("2.0-1", "< 2.0", False),
                       ("1.0-1", "= 1.0", True), ("1.10", "> 1.9", True),
                       ("1.2.9", "~> 1.2", True), ("1.3", "~> 1.2", False),
                       ("1.0", "latest", True), ("1.0", "", True), ("1.0rc1", "< 1.0", True),
                       ("scm-1", "> 99", True)]:
        assert version_satisfies(v, c) is want, (v, c)


def _run(code, tmp_path, **env):
    """Runs `code` in a fresh process, in an empty cwd, with HOME another empty directory;
    returns (proc, files in cwd, files in HOME)."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    full = dict(os.environ, HOME=str(home), PYTHONPATH=os.pathsep.join(sys.path), **env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full,
                          capture_output=True, text=True)
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))  # noqa: E731
    return proc, files(cwd), files(home)


def test_nothing_lands_in_the_current_directory_or_home(tmp_path):
    data = tmp_path / "data"
    proc, cwd, home = _run("""
        from pylua_bioxen_vm_lib.utils.curator import Curator, PackageInstaller
        from pylua_bioxen_vm_lib.env import EnvironmentManager
        c = Curator()
        assert c.install_package("bxt-base")
        c.health_check()
        c.list_installed_packages()
        EnvironmentManager("standard").validate_environment()
        assert PackageInstaller().install_package("bio_compute")
        print("ok")
    """, tmp_path, BIOXEN_VM_DATA_DIR=str(data), BIOXEN_VM_ROCKS_SERVERS=main_server())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    assert cwd == [] and home == [], (cwd, home)
    assert (data / "envs" / "default" / "tree").is_dir()


def test_environment_manager(tmp_path, envpath):
    cfg = tmp_path / "cfg" / "environment.json"
    m = EnvironmentManager("standard", config_path=str(cfg), env=envpath, servers=[main_server()])
    assert not cfg.exists(), "nothing written at construction"
    assert m.get_profile_info()["is_current"] is True
    assert [p["name"] for p in m.list_available_profiles()] == list(EnvironmentManager.PROFILES)
    assert m.is_development_mode() and not m.is_production_mode() and not m.is_networking_enabled()
    assert m.get_recommended_packages() == ["lua-cjson", "luafilesystem", "inspect"]
    assert m.check_package_availability() == {"lua-cjson": False, "luafilesystem": False,
                                              "inspect": False}
    assert m.install_profile_packages() == {"lua-cjson": True, "luafilesystem": True,
                                            "inspect": True}
    assert m.check_package_availability() == {"lua-cjson": True, "luafilesystem": True,
                                              "inspect": True}
    assert m.validate_environment() == []
    v = m.get_environment_variables()
    assert v["LUA_PATH"].startswith(f"{envpath}/tree/share/lua/5.4/?.lua")
    assert v["LUA_DEV_MODE"] == "1" and "LUA_PRODUCTION" not in v
    m.set_profile("production")
    saved = json.loads(cfg.read_text())
    assert saved["profile"] == "production" and saved["last_updated"][:2] == "20"
    assert m.get_lua_paths()["lua_cpath"] == f"{envpath}/tree/lib/lua/5.4/?.so"
    assert "Profile: production" in m.create_env_summary()
    info = m.get_system_info()
    assert info["environment"]["path"] == envpath
    with pytest.raises(ValueError, match="Unknown profile"):
        m.set_profile("bogus")
    assert cur.default_environment(envpath).path == envpath
