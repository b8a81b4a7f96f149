from pylua_bioxen_vm_lib.logger import VMLogger

logger = VMLogger(debug_mode=True, component="MyApp")
logger.debug("Debug message")
