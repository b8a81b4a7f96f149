"""Managed VMs: many VMs by id in one VMManager.

    python examples/python/managed_vms.py
"""

from bioxen_vm import VMManager

# Leaving the `with` block frees the manager and every VM in it.
with VMManager() as manager:
    # Each VM is an isolated Lua state: the same global name holds different values.
    for name, value in (("alpha", 1), ("beta", 2), ("gamma", 3)):
        manager.create_vm(name)
        manager.execute_vm_sync(name, f"counter = {value * 100}")

    for name in manager.list_vms():
        result = manager.execute_vm_sync(name, "counter = counter + 1 return counter")
        print(f"{name}: counter = {result['stdout']}")

    # create_vm returns a VM object bound to the manager; it runs on the same state.
    vm = manager.get_vm("alpha")
    print("alpha via its object:", vm.execute_string("return counter")["stdout"])

    # A VM can have its own limits: here a memory cap (bytes) and a default timeout (s).
    manager.create_vm("limited", memory_limit=4 * 1024 * 1024, timeout=1.0)
    info = manager.get_vm_info("limited")
    print("limited:", {k: info[k] for k in ("vm_id", "vm_type") if k in info})

    stats = manager.get_stats()
    print("total VMs:", stats["total_vms"])

    # Removing a VM frees its Lua state.
    manager.remove_vm("gamma")
    print("after removing gamma:", manager.list_vms())
