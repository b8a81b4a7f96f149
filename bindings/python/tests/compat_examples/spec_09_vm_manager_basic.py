from pylua_bioxen_vm_lib import VMManager

# Use context manager for automatic cleanup
with VMManager(debug_mode=True) as manager:
    # Create a VM
    vm = manager.create_vm("managed_vm")
    
    # Run some code
    result = manager.execute_vm_sync("managed_vm", 'print("Result:", 2 + 2)')
    print(result['stdout'])  # Output: Result: 4
