from pylua_bioxen_vm_lib import VMManager
import time

# Create an interactive session
manager = VMManager(debug_mode=True)
session = manager.create_interactive_vm("interactive_vm")

# Send some Lua code
manager.send_input("interactive_vm", "x = 42\nprint('Value:', x)\n")

# Wait a moment for processing
time.sleep(0.5)

# Read the result
print(manager.read_output("interactive_vm"))  # Output: Value: 42
