class XCPngVM:
    """XCP-ng VM with interactive session support via XAPI and SSH"""
    def __init__(self, vm_id, config):
        self.vm_id = vm_id
        self.config = config  # Required: xcp_host, xcp_username, xcp_password, template_name, etc.
        self.xapi_client = XAPIClient(...)
        self.ssh_session = None
        self.session_active = False
    
    def start(self):
        """Create VM from template, start it, establish SSH connection"""
        # 1. Authenticate with XCP-ng XAPI
        # 2. Create VM from specified template
        # 3. Start the VM and wait for network
        # 4. Establish SSH connection
        # 5. Start interactive Lua session
    
    def send_input(self, input_text):
        """Send input to interactive Lua session over SSH"""
        
    def read_output(self, timeout=1.0):
        """Read output from interactive Lua session"""
        
    def execute_string(self, lua_code):
        """Execute Lua code and return result (compatibility method)"""
        
    def install_package(self, package_name):
        """Install Lua package via SSH using luarocks"""
        
    def stop(self):
        """Stop VM and cleanup resources"""
