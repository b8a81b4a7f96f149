//! Compiles the stoppable library functions of `basic` VMs (src/vm/embedded/*.c, Lua
//! 5.4.9's own code with stop checks, see stop.h there) against the vendored Lua's
//! headers, and sets the ABI version:
//! the one place it is written (the crate reads it as `BIOXEN_VM_ABI_VERSION`; on Linux the
//! shared library's SONAME is `libbioxen_vm.so.<ABI>`; tests/header.rs checks the header's
//! `#define` against it).

/// Bump on any change of a signature or a struct layout in include/bioxen_vm.h.
const ABI_VERSION: u32 = 1;

fn main() {
    println!("cargo:rustc-env=BIOXEN_VM_ABI_VERSION={ABI_VERSION}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbioxen_vm.so.{ABI_VERSION}");
        // The Lua C API for the C modules of trusted VMs (src/vm/embedded/require.rs), bound
        // within the library so that another Lua in the process never replaces it.
        let map = concat!(env!("CARGO_MANIFEST_DIR"), "/src/vm/embedded/lua-api.map");
        println!("cargo:rerun-if-changed={map}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
        for kind in ["tests", "benches"] {
            println!("cargo:rustc-link-arg-{kind}=-Wl,--export-dynamic-symbol=lua_*,--export-dynamic-symbol=luaL_*");
        }
    }
    const DIR: &str = "src/vm/embedded";
    const SOURCES: [&str; 8] = [
        "lpattern.c",
        "lstrlib_stop.c",
        "ltablib_stop.c",
        "lutf8lib_stop.c",
        "loslib_stop.c",
        "lload_stop.c",
        "lgc_stop.c",
        "ltraceback.c",
    ];
    println!("cargo:rerun-if-changed={DIR}/stop.h");
    for src in SOURCES {
        println!("cargo:rerun-if-changed={DIR}/{src}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let include = std::env::var("DEP_LUA_INCLUDE")
        .expect("mlua-sys (vendored Lua 5.4) must provide DEP_LUA_INCLUDE");
    cc::Build::new()
        .files(SOURCES.iter().map(|s| format!("{DIR}/{s}")))
        .include(include)
        .flag_if_supported("-std=c99")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("bioxen_vm_lualib");
}
