import os
import time
from pylua_bioxen_vm_lib import VMManager, VMLogger
from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

# Set up logging
logger = VMLogger(
    debug_mode=os.getenv('PYLUA_DEBUG', 'false').lower() == 'true', 
    component="BioApp"
)

# Install required package
installer = PackageInstaller()
installer.install_package("bio_compute")

# Use the package in a VM
with VMManager(debug_mode=True) as manager:
    # Create interactive session
    session = manager.create_interactive_vm("bio_vm")
    
    # Load package and analyze sequence
    manager.send_input("bio_vm", '''
        require("bio_compute")
        result = bio_compute.analyze_sequence("ATCG")
        print("Analysis result:", result)
    ''')
    
    # Get results
    time.sleep(0.5)
    print(manager.read_output("bio_vm"))
    
    # Clean up
    manager.terminate_vm_session("bio_vm")
