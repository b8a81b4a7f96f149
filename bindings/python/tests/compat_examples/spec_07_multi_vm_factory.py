# Factory pattern with vm_type parameter
vm_basic = create_vm("vm1", vm_type="basic")      # Local Lua process
vm_xcpng = create_vm("vm2", vm_type="xcpng", config=config)  # XCP-ng VM

# Unified interface for both types
vm_basic.start()
vm_xcpng.start()
