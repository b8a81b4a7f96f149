from pylua_bioxen_vm_lib import create_vm

# Create an XCP-ng VM with config
vm_xcpng = create_vm("xcpng_vm", vm_type="xcpng", config={"template": "lua-bio-template"})
vm_xcpng.start()
result = vm_xcpng.execute_string('print("Hello from XCP-ng VM")')
print(result['stdout'])
