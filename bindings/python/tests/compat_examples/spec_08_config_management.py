# XCP-ng VM configuration
config = {
    "xapi_url": "https://xcpng-host",
    "username": "admin",
    "password": "password",
    "template": "lua-bio-template",
    "vm_name": "dynamic-lua-vm"
}
