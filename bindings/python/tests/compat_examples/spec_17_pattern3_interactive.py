from pylua_bioxen_vm_lib import VMManager
import time

manager = VMManager(debug_mode=True)

# Create interactive session
session = manager.create_interactive_vm("interactive_vm")

# Send code
manager.send_input("interactive_vm", "x = 10\nprint('Value:', x)\n")
time.sleep(0.5)

# Read result
print(manager.read_output("interactive_vm"))  # Output: Value: 10

# Clean up
manager.detach_from_vm("interactive_vm")
manager.terminate_vm_session("interactive_vm")
