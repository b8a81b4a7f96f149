from pylua_bioxen_vm_lib.utils.curator import PackageInstaller
from pylua_bioxen_vm_lib import VMManager
import time

# Install package
installer = PackageInstaller()
installer.install_package("bio_compute")

# Use package in VM
with VMManager() as manager:
    session = manager.create_interactive_vm("package_vm")
    
    # Load and use package
    manager.send_input("package_vm", 'require("bio_compute")\nprint(bio_compute.compute(10))')
    time.sleep(0.5)
    print(manager.read_output("package_vm"))
