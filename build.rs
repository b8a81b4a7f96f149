//! Compiles the stoppable pattern matcher (src/vm/embedded/lpattern.c, Lua 5.4.9's own
//! code with a stop check) against the vendored Lua's headers.

fn main() {
    let src = "src/vm/embedded/lpattern.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let include = std::env::var("DEP_LUA_INCLUDE")
        .expect("mlua-sys (vendored Lua 5.4) must provide DEP_LUA_INCLUDE");
    cc::Build::new()
        .file(src)
        .include(include)
        .flag_if_supported("-std=c99")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("bioxen_vm_lpattern");
}
