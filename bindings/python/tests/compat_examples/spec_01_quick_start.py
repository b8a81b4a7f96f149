from pylua_bioxen_vm_lib import create_vm

# Create and use a basic VM
vm = create_vm("my_vm", vm_type="basic")
result = vm.execute_string('return 2 + 2')
print(result['stdout'])  # Output: 4

# Create and use an XCP-ng VM (requires XCP-ng configuration)
config = {
    'xcp_host': '192.168.1.100',
    'xcp_username': 'root',
    'xcp_password': 'password',
    'template_name': 'ubuntu-20.04-lua',
    'vm_username': 'ubuntu',
    'vm_password': 'ubuntu'
}
xcpng_vm = create_vm("xcpng_vm", vm_type="xcpng", config=config)
