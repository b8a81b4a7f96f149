from pylua_bioxen_vm_lib.utils.curator import PackageInstaller, search_packages

# Search and install a package
installer = PackageInstaller()
packages = search_packages("bio_compute")
installer.install_package("bio_compute")
