from pylua_bioxen_vm_lib import VMManager

manager = VMManager(debug_mode=True)
session_manager = manager.session_manager

# Create a session
session = manager.create_interactive_vm("test_session")

# List active sessions
sessions = session_manager.list_sessions()
print(sessions)  # Output: {'test_session': <session_details>}

# Clean up
session_manager.terminate_session("test_session")
