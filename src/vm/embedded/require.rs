//! `require` in basic VMs that use a package environment (the VM option `env`).
//!
//! In the default sandbox, `require(name)` looks in `package.loaded`, then
//! `package.preload`, then for `name` as a pure-Lua module in the environment's Lua
//! directories (`a/b.lua`, `a/b/init.lua`): the file is read and loaded as a text chunk
//! (binary chunks are refused, as `load` refuses them) and run inside the sandbox, under
//! the VM's limits. A C module there is refused with a message that says so, as is a
//! module that is not found (the message lists where it looked). A trusted VM keeps Lua's
//! own `require`, with `package.path` and `package.cpath` set to the environment's
//! directories only, so its C modules load normally.
//!
//! Rust values that own memory never live across a Lua call here (a Lua error unwinds
//! with longjmp): what a lookup finds goes into buffers of [`Modules`], which the VM owns.

use crate::packages::ModulePaths;
use crate::vm::Sandbox;
use mlua::ffi;
use std::os::raw::c_int;
use std::path::PathBuf;

/// Largest module file read.
const MAX_MODULE: u64 = 16 << 20;

/// What `require` searches, and its scratch buffers.
pub struct Modules {
    env: String,
    lua_dirs: Vec<PathBuf>,
    lib_dirs: Vec<PathBuf>,
    path: String,
    cpath: String,
    content: Vec<u8>,
    /// `@<file>` and a NUL: the chunk name.
    chunk: Vec<u8>,
    /// The file found, or the error message.
    text: Vec<u8>,
}

impl Modules {
    pub fn new(env: String, paths: &ModulePaths) -> Modules {
        Modules {
            env,
            lua_dirs: paths.lua_dirs.clone(),
            lib_dirs: paths.lib_dirs.clone(),
            path: paths.lua_path(false),
            cpath: paths.lua_cpath(false),
            content: Vec::new(),
            chunk: Vec::new(),
            text: Vec::new(),
        }
    }
}

enum Found {
    Lua,
    /// `text` holds the message.
    Refused,
}

/// Looks `name` up (no Lua call in here).
fn find(m: &mut Modules, name: &[u8]) -> Found {
    m.text.clear();
    let name = String::from_utf8_lossy(name).into_owned();
    if !crate::packages::names::module_name(&name) {
        m.text
            .extend_from_slice(format!("module '{name}' not found: not a module name").as_bytes());
        return Found::Refused;
    }
    let rel = name.replace('.', "/");
    let mut tried = String::new();
    for dir in &m.lua_dirs {
        for candidate in [
            dir.join(format!("{rel}.lua")),
            dir.join(&rel).join("init.lua"),
        ] {
            match std::fs::metadata(&candidate) {
                Ok(md) if md.is_file() && md.len() <= MAX_MODULE => {
                    m.content.clear();
                    match std::fs::File::open(&candidate).and_then(|f| {
                        std::io::Read::read_to_end(
                            &mut std::io::Read::take(f, MAX_MODULE),
                            &mut m.content,
                        )
                    }) {
                        Ok(_) => {
                            let shown = candidate.display().to_string();
                            m.chunk.clear();
                            m.chunk.push(b'@');
                            m.chunk.extend(shown.bytes().filter(|b| *b != 0));
                            m.chunk.push(0);
                            m.text.extend_from_slice(shown.as_bytes());
                            return Found::Lua;
                        }
                        Err(e) => {
                            m.text.extend_from_slice(
                                format!(
                                    "module '{name}': cannot read {}: {e}",
                                    candidate.display()
                                )
                                .as_bytes(),
                            );
                            return Found::Refused;
                        }
                    }
                }
                Ok(md) if md.is_file() => {
                    m.text.extend_from_slice(
                        format!(
                            "module '{name}': {} is larger than {MAX_MODULE} bytes",
                            candidate.display()
                        )
                        .as_bytes(),
                    );
                    return Found::Refused;
                }
                _ => tried.push_str(&format!("\n\tno file '{}'", candidate.display())),
            }
        }
    }
    let root = rel.split('/').next().unwrap_or(&rel).to_string();
    for dir in &m.lib_dirs {
        for candidate in [
            dir.join(format!("{rel}.so")),
            dir.join(format!("{root}.so")),
        ] {
            if candidate.is_file() {
                m.text.extend_from_slice(
                    format!(
                        "module '{name}' is a C module ({}): a basic VM in the default sandbox loads only pure-Lua modules of environment {} (a trusted VM or a process VM loads C modules)",
                        candidate.display(),
                        m.env
                    )
                    .as_bytes(),
                );
                return Found::Refused;
            }
        }
    }
    m.text.extend_from_slice(
        format!("module '{name}' not found in environment {}:{tried}", m.env).as_bytes(),
    );
    Found::Refused
}

fn cstr(s: &'static [u8]) -> *const std::os::raw::c_char {
    s.as_ptr().cast()
}

/// The sandbox's `require` (upvalue 1: the `Modules`, upvalue 2: the `package` table).
unsafe extern "C-unwind" fn sandbox_require(l: *mut ffi::lua_State) -> c_int {
    let m = ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *mut Modules;
    let mut len = 0usize;
    let p = ffi::luaL_checklstring(l, 1, &mut len);
    ffi::lua_settop(l, 1);
    // 2: package.loaded
    if ffi::lua_getfield(l, ffi::lua_upvalueindex(2), cstr(b"loaded\0")) != ffi::LUA_TTABLE {
        ffi::lua_pushstring(l, cstr(b"'package.loaded' must be a table\0"));
        ffi::lua_error(l);
    }
    ffi::lua_pushvalue(l, 1);
    if ffi::lua_gettable(l, 2) != ffi::LUA_TNIL && ffi::lua_toboolean(l, 3) != 0 {
        return 1;
    }
    ffi::lua_settop(l, 2);
    // package.preload[name]
    if ffi::lua_getfield(l, ffi::lua_upvalueindex(2), cstr(b"preload\0")) == ffi::LUA_TTABLE {
        ffi::lua_pushvalue(l, 1);
        if ffi::lua_gettable(l, 3) == ffi::LUA_TFUNCTION {
            ffi::lua_pushvalue(l, 1);
            ffi::lua_pushstring(l, cstr(b":preload:\0"));
            ffi::lua_call(l, 2, 1);
            // 4: the result, 5: the loader data.
            ffi::lua_pushstring(l, cstr(b":preload:\0"));
            return store(l, 4, 5);
        }
    }
    ffi::lua_settop(l, 2);
    let name = std::slice::from_raw_parts(p.cast::<u8>(), len);
    // SAFETY: the VM owns `Modules` for the state's life; no reference outlives this line.
    match find(&mut *m, name) {
        Found::Lua => {
            // 3: the file's name (the loader's second argument and require's second result)
            ffi::lua_pushlstring(l, (*m).text.as_ptr().cast(), (*m).text.len());
            let st = ffi::luaL_loadbufferx(
                l,
                (*m).content.as_ptr().cast(),
                (*m).content.len(),
                (*m).chunk.as_ptr().cast(),
                cstr(b"t\0"),
            );
            if st != ffi::LUA_OK {
                // 4: the message
                ffi::lua_pushfstring(
                    l,
                    cstr(b"error loading module '%s' from file '%s':\n\t%s\0"),
                    ffi::lua_tolstring(l, 1, std::ptr::null_mut()),
                    ffi::lua_tolstring(l, 3, std::ptr::null_mut()),
                    ffi::lua_tolstring(l, 4, std::ptr::null_mut()),
                );
                ffi::lua_error(l);
            }
            // 4: the chunk, called as Lua's loader calls it.
            ffi::lua_pushvalue(l, 1);
            ffi::lua_pushvalue(l, 3);
            ffi::lua_call(l, 2, 1);
            store(l, 4, 3)
        }
        Found::Refused => {
            ffi::lua_pushlstring(l, (*m).text.as_ptr().cast(), (*m).text.len());
            ffi::lua_error(l)
        }
    }
}

/// `package.loaded[name]` (table at 2, name at 1) from the loader's result at `result`
/// (`true` when it returned nothing); returns it and the value at `extra`.
unsafe fn store(l: *mut ffi::lua_State, result: c_int, extra: c_int) -> c_int {
    if ffi::lua_type(l, result) != ffi::LUA_TNIL {
        ffi::lua_pushvalue(l, 1);
        ffi::lua_pushvalue(l, result);
        ffi::lua_settable(l, 2);
    }
    ffi::lua_pushvalue(l, 1);
    if ffi::lua_gettable(l, 2) == ffi::LUA_TNIL {
        ffi::lua_pop(l, 1);
        ffi::lua_pushboolean(l, 1);
        ffi::lua_pushvalue(l, 1);
        ffi::lua_pushvalue(l, -2);
        ffi::lua_settable(l, 2);
    }
    ffi::lua_pushvalue(l, extra);
    2
}

unsafe fn set_string(l: *mut ffi::lua_State, table: c_int, field: &'static [u8], value: &str) {
    ffi::lua_pushlstring(l, value.as_ptr().cast(), value.len());
    ffi::lua_setfield(l, table, cstr(field));
}

/// Makes the library's Lua C API visible to the C modules a trusted VM loads (the
/// library may have been loaded with RTLD_LOCAL, as Python loads it).
fn promote_lua_api() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: dladdr of a function of this library; dlopen with RTLD_NOLOAD only raises
        // the flags of the library that is loaded already (it loads nothing).
        unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            if libc::dladdr(promote_lua_api as *const libc::c_void, &mut info) != 0
                && !info.dli_fname.is_null()
            {
                libc::dlopen(
                    info.dli_fname,
                    libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL,
                );
            }
        }
    });
}

/// Installs `require` (default sandbox) or the environment's paths (trusted) into the
/// state whose globals table is at `g`.
///
/// # Safety
/// `m` must outlive the state.
pub unsafe fn install(l: *mut ffi::lua_State, g: c_int, sandbox: Sandbox, m: *mut Modules) {
    if sandbox == Sandbox::Trusted {
        promote_lua_api();
        ffi::lua_getfield(l, g, cstr(b"package\0"));
        let pkg = ffi::lua_gettop(l);
        set_string(l, pkg, b"path\0", &(*m).path);
        set_string(l, pkg, b"cpath\0", &(*m).cpath);
        ffi::lua_settop(l, pkg - 1);
        return;
    }
    ffi::lua_createtable(l, 0, 5);
    let pkg = ffi::lua_gettop(l);
    ffi::lua_createtable(l, 0, 8);
    let loaded = ffi::lua_gettop(l);
    for lib in [
        b"string\0" as &'static [u8],
        b"table\0",
        b"math\0",
        b"utf8\0",
        b"coroutine\0",
        b"os\0",
        b"io\0",
    ] {
        ffi::lua_getfield(l, g, cstr(lib));
        ffi::lua_setfield(l, loaded, cstr(lib));
    }
    ffi::lua_pushvalue(l, g);
    ffi::lua_setfield(l, loaded, cstr(b"_G\0"));
    ffi::lua_pushvalue(l, pkg);
    ffi::lua_setfield(l, loaded, cstr(b"package\0"));
    ffi::lua_setfield(l, pkg, cstr(b"loaded\0"));
    ffi::lua_createtable(l, 0, 0);
    ffi::lua_setfield(l, pkg, cstr(b"preload\0"));
    set_string(l, pkg, b"path\0", &(*m).path);
    set_string(l, pkg, b"cpath\0", "");
    set_string(l, pkg, b"config\0", "/\n;\n?\n!\n-\n");
    ffi::lua_pushlightuserdata(l, m.cast());
    ffi::lua_pushvalue(l, pkg);
    ffi::lua_pushcclosure(l, sandbox_require, 2);
    ffi::lua_setfield(l, g, cstr(b"require\0"));
    ffi::lua_setfield(l, g, cstr(b"package\0"));
}
