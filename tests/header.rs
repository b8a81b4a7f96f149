//! The checked-in header must be exactly what cbindgen (pinned in Cargo.toml) generates,
//! and its version macros must match Cargo.toml. `BIOXEN_VM_BLESS=1` rewrites the header.

use std::path::Path;

fn generate() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(root).join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/bioxen_vm.h");
    let fresh = generate();
    if std::env::var_os("BIOXEN_VM_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/bioxen_vm.h is stale: run scripts/gen-header.sh and commit the result"
    );
}

#[test]
fn version_macros_match_cargo() {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/bioxen_vm.h"))
            .unwrap();
    let get = |name: &str| -> String {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .to_string()
    };
    assert_eq!(
        get("BIOXEN_VM_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        get("BIOXEN_VM_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        get("BIOXEN_VM_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert_eq!(
        get("BIOXEN_VM_ABI_VERSION"),
        bioxen_vm::ffi::bioxen_vm_abi_version().to_string()
    );
    let v = unsafe { std::ffi::CStr::from_ptr(bioxen_vm::ffi::bioxen_vm_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
