create_vm(vm_id="default", vm_type="basic", networked=False, persistent=False, debug_mode=False, lua_executable="lua", config=None)
