"""Clusters of a manager's VMs: create, broadcast, wait, status, cleanup, shutdown."""

from __future__ import annotations

import concurrent.futures

import pytest

import bioxen_vm
from bioxen_vm import exceptions as E


def test_create_broadcast_wait(manager):
    ids = manager.create_vm_cluster("c", 3)
    assert ids == ["c_000", "c_001", "c_002"]
    futures = manager.broadcast_to_cluster("c_*", "local n = ... return n * 2", args=[21])
    assert sorted(futures) == ids
    assert all(isinstance(f, concurrent.futures.Future) for f in futures.values())
    results = manager.wait_for_cluster(futures, timeout=30)
    assert set(results) == set(ids)
    for r in results.values():
        assert r["success"] and r["values"] == [42] and r["stdout"] == "42"
        assert set(r) >= {"stdout", "stderr", "return_code", "success", "values", "error",
                          "duration"}


def test_wait_for_cluster_reports_failures_in_the_originals_shape(manager):
    manager.create_vm_cluster("f", 2)
    futures = manager.broadcast_to_cluster("f_00[01]", "while true do end", timeout=0.1)
    results = manager.wait_for_cluster(futures, timeout=30)
    for r in results.values():
        assert r["success"] is False and r["return_code"] == -1 and r["stdout"] == ""
        assert "timed out" in r["stderr"] and r["error"] == r["stderr"]
    futures = manager.broadcast_to_cluster("f_*", "error('lua error')")
    results = manager.wait_for_cluster(futures, timeout=30)
    assert all(r["return_code"] == 1 and "lua error" in r["stderr"] for r in results.values())


def test_wait_for_cluster_with_a_time_limit(manager):
    manager.create_vm_cluster("w", 2)
    futures = manager.broadcast_to_cluster("w_*", "local t = os.clock() "
                                                  "while os.clock() - t < 2 do end return 1")
    results = manager.wait_for_cluster(futures, timeout=0.1)
    assert all(r["success"] is False and r["return_code"] == -1 for r in results.values())
    assert manager.wait_for_cluster(futures, timeout=30)["w_000"]["values"] == [1]


def test_wait_for_cluster_with_other_futures(manager):
    ok = concurrent.futures.Future()
    ok.set_result({"stdout": "x", "stderr": "", "return_code": 0, "success": True})
    failed = concurrent.futures.Future()
    failed.set_exception(RuntimeError("went wrong"))
    pending = concurrent.futures.Future()
    results = manager.wait_for_cluster({"a": ok, "b": failed, "c": pending}, timeout=0.05)
    assert results["a"]["stdout"] == "x"
    assert results["b"] == {"success": False, "return_code": -1, "stdout": "",
                            "stderr": "went wrong", "error": "went wrong", "values": [],
                            "duration": 0.0}
    assert results["c"]["return_code"] == -1
    with pytest.raises(TypeError):
        manager.wait_for_cluster([ok])


def test_status_and_cleanup(manager):
    manager.create_vm_cluster("s", 2)
    manager.create_vm("other")
    assert manager.get_cluster_status("s_*") == {"s_000": "idle", "s_001": "idle"}
    futures = manager.broadcast_to_cluster("s_*", "return 1")
    manager.wait_for_cluster(futures)
    assert manager.get_cluster_status("s_*") == {"s_000": "done", "s_001": "done"}
    assert manager.get_cluster_status("nothing*") == {}
    assert manager.cleanup_cluster("s_*") == 2
    assert manager.list_vms() == ["other"]
    with pytest.raises(ValueError, match="No VMs found matching pattern"):
        manager.broadcast_to_cluster("s_*", "return 1")


def test_fnmatch_patterns(manager):
    manager.create_vm_cluster("p", 12)
    assert sorted(manager.get_cluster_status("p_00?")) == [f"p_00{i}" for i in range(10)]
    assert sorted(manager.get_cluster_status("p_01[01]")) == ["p_010", "p_011"]
    assert sorted(manager.get_cluster_status("p_00[!0-8]")) == ["p_009"]


def test_cluster_creation_is_all_or_nothing(manager):
    manager.create_vm("x_001")
    with pytest.raises(E.VMAlreadyExistsError):
        manager.create_vm_cluster("x", 3)
    assert manager.list_vms() == ["x_001"]


def test_vmcluster_class(manager):
    ids = manager.create_vm_cluster("k", 3)
    cluster = bioxen_vm.VMCluster(manager, "k", ids)
    assert len(cluster) == 3 and list(cluster) == ids
    assert repr(cluster) == "VMCluster(id='k', vms=3)"
    assert cluster.get_status() == {vm_id: "idle" for vm_id in ids}
    results = cluster.wait_all(cluster.broadcast("return 'hi'"), timeout=30)
    assert {r["stdout"] for r in results.values()} == {"hi"}
    assert cluster.get_status() == {vm_id: "done" for vm_id in ids}
    assert cluster.cleanup() == 3 and manager.list_vms() == []


def test_shutdown_all_keeps_the_manager_usable(manager):
    manager.create_vm_cluster("z", 3)
    manager.create_interactive_vm("zi").attach  # noqa: B018
    running = manager.execute_vm_async("z_000", "while true do end")
    assert manager.shutdown_all() == 4
    assert manager.list_vms() == [] and manager.list_interactive_sessions() == {}
    with pytest.raises((concurrent.futures.CancelledError, E.LuaVMError)):
        running.result(10)
    manager.create_vm("again")
    assert manager.execute_vm_sync("again", "return 1")["values"] == [1]


def test_with_block_closes_the_manager():
    with bioxen_vm.create_manager(max_workers=2) as m:
        m.create_vm("a")
        assert repr(m) == "VMManager(vms=1, interactive_sessions=0, max_workers=2)"
    assert m.closed
    with bioxen_vm.create_interactive_manager() as m2:
        assert m2.get_stats()["max_workers"] == 10
