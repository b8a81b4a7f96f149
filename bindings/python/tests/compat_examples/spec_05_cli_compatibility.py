from pylua_bioxen_vm_lib import VMManager

manager = VMManager()

# Create interactive VMs with vm_type support
session = manager.create_interactive_vm("vm_id", vm_type="xcpng", config=config)

# Unified interface for both basic and XCP-ng VMs
manager.send_input("vm_id", "lua_command")
output = manager.read_output("vm_id")
manager.terminate_vm_session("vm_id")
