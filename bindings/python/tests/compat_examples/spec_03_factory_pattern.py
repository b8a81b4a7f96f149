from pylua_bioxen_vm_lib import create_vm

# Create a basic VM (local process-based)
vm = create_vm("test_vm", vm_type="basic", debug_mode=True)

# Create an XCP-ng VM (requires configuration)
xcpng_config = {
    'xcp_host': '192.168.1.100',
    'xcp_username': 'root',
    'xcp_password': 'password',
    'template_name': 'ubuntu-20.04-lua',
    'vm_username': 'ubuntu',
    'vm_password': 'ubuntu'
}
vm_xcpng = create_vm("xcpng_vm", vm_type="xcpng", config=xcpng_config)
