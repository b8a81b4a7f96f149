"""Asynchronous executions and clusters.

    python examples/python/async_and_clusters.py

Async executions run on the manager's worker pool (no Python thread per call) and return
concurrent.futures Futures. Clusters are groups of VMs named <cluster>_000, _001, ...
selected by fnmatch patterns.
"""

import concurrent.futures
import time

from bioxen_vm import VMManager

FIB = "local function f(n) if n < 2 then return n end return f(n-1) + f(n-2) end "

with VMManager(max_workers=4) as manager:
    # One async job: a Future of the usual result dict.
    manager.create_vm("worker")
    future = manager.execute_vm_async("worker", FIB + "return f(20)")
    print("fib(20) =", future.result(timeout=10)["stdout"])

    # A cluster of 4 VMs, the same code broadcast to all of them.
    ids = manager.create_vm_cluster("calc", 4)
    print("cluster:", ids)
    for i, vm_id in enumerate(ids):
        manager.execute_vm_sync(vm_id, f"shard = {i}")
    start = time.perf_counter()
    futures = manager.broadcast_to_cluster("calc_*", FIB + "return shard, f(24)")
    results = manager.wait_for_cluster(futures, timeout=30)
    elapsed = time.perf_counter() - start
    for vm_id in sorted(results):
        print(f"  {vm_id}: {results[vm_id]['values']}")
    print(f"4 x fib(24) on the worker pool in {elapsed * 1000:.1f} ms")
    print("status:", manager.get_cluster_status("calc_*"))

    # Futures work with the standard tools, e.g. as_completed.
    futures = [manager.execute_vm_async(vm_id, "return shard * 10") for vm_id in ids]
    total = sum(f.result()["values"][0] for f in concurrent.futures.as_completed(futures))
    print("sum of shard * 10:", total)

    # A job can be cancelled; a running one is interrupted.
    slow = manager.execute_vm_async("worker", "while true do end")
    time.sleep(0.05)
    print("cancelled the job:", slow.cancel())

    print("removed", manager.cleanup_cluster("calc_*"), "cluster VMs")
