from pylua_bioxen_vm_lib import VMManager
from pylua_bioxen_vm_lib.exceptions import SessionNotFoundError

try:
    VMManager().attach_to_vm("nonexistent")
except SessionNotFoundError:
    print("Session not found")
