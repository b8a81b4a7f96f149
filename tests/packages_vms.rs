//! One package environment used by basic, process and ssh VMs (the VM option `env`), and
//! environments on an SSH host (the tests' private sshd): created, installed into and
//! synced over SSH, then used by an ssh VM.

mod common;

use common::rocks::*;
use common::sshd::Sshd;
use common::{c, last_error, status_name, TestVm};
use serde_json::json;
use std::sync::OnceLock;

fn try_vm(options: &str) -> Result<TestVm, (String, String)> {
    let mut h = 0;
    let o = c(options);
    let st = unsafe { bioxen_vm::ffi::bioxen_vm_new(o.as_ptr(), &mut h) };
    if st == 0 {
        Ok(TestVm(h))
    } else {
        Err((status_name(st), last_error()))
    }
}

static SHARED_DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

extern "C" fn remove_shared_env() {
    if let Some(d) = SHARED_DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// One environment for the whole binary: bio_compute (with bxt-base), bxt-needs-c (with
/// the C module bxt-cmod), bxt-mid. Removed when the binary exits.
fn shared_env() -> &'static str {
    static ENV: OnceLock<String> = OnceLock::new();
    ENV.get_or_init(|| {
        let s = std::mem::ManuallyDrop::new(Scratch::new("vms"));
        let env = s.path("env");
        let _ = SHARED_DIR.set(s.dir.clone());
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(remove_shared_env) };
        create_env(&env, &[&main_server()], &s.path("cache"));
        for rock in ["bio_compute", "bxt-needs-c", "bxt-mid"] {
            ok("install", &json!({ "env": env, "rock": rock }));
        }
        env
    })
}

fn opts(extra: serde_json::Value) -> String {
    let mut o = json!({ "env": shared_env() });
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    o.to_string()
}

#[test]
fn a_basic_vm_requires_pure_lua_modules_through_the_sandbox() {
    let vm = TestVm::new(&opts(json!({})));
    let r = vm.exec("require('bio_compute') return bio_compute.compute(10), bio_compute.analyze_sequence('ATCG')");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!([100, "length=4 A=1 C=1 G=1 T=1 GC=50%"]));
    let r = vm.exec("local m, path = require('bxt_mid') return m.quadruple(2), m.util.name, require('bxt_mid') == m, path, package.loaded.bxt_base.version");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values[0], 8);
    assert_eq!(r.values[1], "bxt_mid.util");
    assert_eq!(r.values[2], true);
    assert!(
        r.values[3]
            .as_str()
            .unwrap()
            .ends_with("/tree/share/lua/5.4/bxt_mid/init.lua"),
        "{:?}",
        r.values
    );
    assert_eq!(r.values[4], "1.0");
    // The sandbox still holds: no io.open, no os.execute, for modules as for code.
    let r = vm.exec("return io.open, os.execute, package.cpath");
    assert_eq!(r.values, json!([null, null, ""]));
    assert_eq!(vm.info()["env"], shared_env());
}

#[test]
fn a_basic_vm_refuses_c_modules_and_says_so() {
    let vm = TestVm::new(&opts(json!({})));
    let r = vm.exec("require('bxt_cmod')");
    assert!(!r.success);
    assert!(
        r.error.contains("module 'bxt_cmod' is a C module")
            && r.error.contains("bxt_cmod.so")
            && r.error.contains("trusted"),
        "{}",
        r.error
    );
    let r = vm.exec("require('bxt_needs_c')");
    assert!(!r.success);
    assert!(
        r.error.contains("module 'bxt_cmod' is a C module"),
        "{}",
        r.error
    );
    // Not found: where it looked, and nothing of the system's (lua-socket is installed).
    let r = vm.exec("require('socket')");
    assert!(
        r.error.contains("module 'socket' not found in environment")
            && r.error.contains("no file '"),
        "{}",
        r.error
    );
    assert!(!r.error.contains("/usr/share/lua"), "{}", r.error);
    for bad in ["../../etc/passwd", "a..b", "/etc/passwd", ""] {
        let r = vm.exec(&format!("require({bad:?})"));
        assert!(
            !r.success && r.error.contains("not a module name"),
            "{bad}: {}",
            r.error
        );
    }
    // preload works as Lua's does.
    let r = vm.exec("package.preload.virtual = function(n, extra) return { n = n, extra = extra } end local v = require('virtual') return v.n, v.extra");
    assert_eq!(r.values, json!(["virtual", ":preload:"]));
}

#[test]
fn module_code_runs_under_the_vms_limits_and_text_only() {
    let s = Scratch::new("vmlimits");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let dir = format!("{env}/tree/share/lua/5.4");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/spin.lua"), "while true do end").unwrap();
    std::fs::write(format!("{dir}/broken.lua"), "return {").unwrap();
    let out = std::process::Command::new("lua5.4")
        .arg("-e")
        .arg(format!("local f = io.open('{dir}/binary.lua', 'wb') f:write(string.dump(function() return 1 end)) f:close()"))
        .status()
        .unwrap();
    assert!(out.success());
    let vm = TestVm::new(&json!({ "env": env }).to_string());
    let t = std::time::Instant::now();
    let e = vm.try_exec("require('spin')", None, 300).unwrap_err();
    assert_eq!(status_name(e.0), "TIMEOUT");
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
    let r = vm.exec("require('binary')");
    assert!(
        r.error.contains("attempt to load a binary chunk"),
        "{}",
        r.error
    );
    let r = vm.exec("require('broken')");
    assert!(
        r.error.contains("error loading module 'broken'"),
        "{}",
        r.error
    );
    // The VM is fine afterwards.
    assert_eq!(vm.exec("return 1 + 1").values, json!([2]));
}

#[test]
fn a_trusted_basic_vm_loads_c_modules_of_the_environment_only() {
    let vm = TestVm::new(&opts(json!({ "sandbox": "trusted" })));
    let r = vm.exec("local c = require('bxt_cmod') return c.kind, c.add(2, 3), require('bxt_needs_c').sum(1, 1)");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!(["compiled", 5.0, 2.0]));
    let r = vm.exec("return package.path, package.cpath, pcall(require, 'socket')");
    let env = shared_env();
    assert_eq!(
        r.values[0],
        format!("{env}/tree/share/lua/5.4/?.lua;{env}/tree/share/lua/5.4/?/init.lua")
    );
    assert_eq!(r.values[1], format!("{env}/tree/lib/lua/5.4/?.so"));
    assert_eq!(r.values[2], false);
}

#[test]
fn vms_refuse_environments_they_cannot_use() {
    let s = Scratch::new("vmrefuse");
    let e = try_vm(&json!({ "env": s.path("nothing-here") }).to_string())
        .err()
        .unwrap();
    assert_eq!(e.0, "ENVIRONMENT_ERROR", "{}", e.1);
    let e51 = s.path("e51");
    ok("create", &json!({ "path": e51, "lua_version": "5.1" }));
    let e = try_vm(&json!({ "env": e51 }).to_string()).err().unwrap();
    assert_eq!(e.0, "ENVIRONMENT_ERROR");
    assert!(e.1.contains("basic VM runs Lua 5.4"), "{}", e.1);
    // A process VM runs the environment's own interpreter; a named one must match it.
    let vm = TestVm::new(&json!({ "vm_type": "process", "env": e51 }).to_string());
    assert_eq!(vm.exec("return _VERSION").values, json!(["Lua 5.1"]));
    let e = try_vm(
        &json!({ "vm_type": "process", "env": e51, "lua_executable": "lua5.4" }).to_string(),
    )
    .err()
    .unwrap();
    assert_eq!(e.0, "ENVIRONMENT_ERROR");
    assert!(
        e.1.contains("is for Lua 5.1") && e.1.contains("Lua 5.4"),
        "{}",
        e.1
    );
    let e = try_vm(&json!({ "env": 5 }).to_string()).err().unwrap();
    assert_eq!(e.0, "INVALID_ARGUMENT");
}

#[test]
fn a_process_vm_sees_the_environments_modules_c_included_and_nothing_else() {
    let vm = TestVm::new(&opts(json!({ "vm_type": "process" })));
    let r = vm.exec("require('bio_compute') return bio_compute.compute(7), require('bxt_needs_c').sum(2, 3), require('bxt_cmod').kind, _VERSION");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!([49, 5.0, "compiled", "Lua 5.4"]));
    let env = shared_env();
    let r = vm.exec(
        "return package.path, package.cpath, pcall(require, 'socket'), pcall(require, 'lfs')",
    );
    assert_eq!(
        r.values[0],
        format!("{env}/tree/share/lua/5.4/?.lua;{env}/tree/share/lua/5.4/?/init.lua")
    );
    assert_eq!(r.values[1], format!("{env}/tree/lib/lua/5.4/?.so"));
    assert_eq!(r.values[2], false, "the system's LuaSocket is not visible");
    assert_eq!(r.values[3], false, "the system's lfs is not visible");
    // Without the environment the same interpreter sees the system's modules.
    let plain = TestVm::new(r#"{"vm_type": "process", "lua_executable": "lua5.4"}"#);
    assert_eq!(
        plain.exec("return (pcall(require, 'socket'))").values,
        json!([true])
    );
}

#[test]
fn an_environment_with_system_modules_adds_them_after_its_own() {
    let s = Scratch::new("sysmods");
    let env = s.path("env");
    ok(
        "create",
        &json!({ "path": env, "servers": [main_server()], "cache": s.path("cache"), "include_system_modules": true }),
    );
    ok("install", &json!({ "env": env, "rock": "bxt-base" }));
    let vm = TestVm::new(&json!({ "vm_type": "process", "env": env }).to_string());
    let r = vm.exec("return require('bxt_base').version, (pcall(require, 'socket'))");
    assert_eq!(r.values, json!(["2.0", true]), "{}", r.error);
    let basic = TestVm::new(&json!({ "env": env }).to_string());
    let r = basic.exec("return require('bxt_base').version, package.path");
    assert!(
        r.values[1]
            .as_str()
            .unwrap()
            .contains("/usr/share/lua/5.4/?.lua"),
        "{:?}",
        r.values
    );
}

fn rig() -> &'static Sshd {
    common::sshd::shared()
}

fn ssh_members(rig: &Sshd) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&rig.options("lua5.4", "")).unwrap();
    let mut m = v.as_object().unwrap().clone();
    m.remove("vm_type");
    m.remove("lua_executable");
    serde_json::Value::Object(m)
}

#[test]
fn an_ssh_vm_uses_the_same_environment_on_its_host() {
    let rig = rig();
    let o: serde_json::Value =
        serde_json::from_str(&rig.options("lua", &format!("\"env\": {:?}", shared_env()))).unwrap();
    let vm = TestVm::new(&o.to_string());
    let r = vm.exec("require('bio_compute') return bio_compute.analyze_sequence('GGCC'), require('bxt_cmod').add(1, 2), package.path, (pcall(require, 'socket'))");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values[0], "length=4 A=0 C=2 G=2 T=0 GC=100%");
    assert_eq!(r.values[1], 3.0);
    assert!(
        r.values[2].as_str().unwrap().starts_with(shared_env()),
        "{:?}",
        r.values
    );
    assert_eq!(r.values[3], false);
}

#[test]
fn environments_on_an_ssh_host_install_sync_and_serve_ssh_vms() {
    let rig = rig();
    let ssh = ssh_members(rig);
    let srv = main_server();
    let d = ok(
        "create",
        &json!({ "ssh": ssh, "name": "remote1", "servers": [srv] }),
    );
    assert_eq!(d["host"], format!("bxuser@127.0.0.1:{}", rig.port));
    let dir = d["path"].as_str().unwrap().to_string();
    assert!(
        dir.ends_with("/.local/share/bioxen_vm/envs/remote1"),
        "{dir}"
    );
    // The directory is on the host: the rig user's home.
    assert!(rig
        .dir
        .join("home/.local/share/bioxen_vm/envs/remote1/bioxen-env.json")
        .is_file());
    fails(
        "create",
        &json!({ "ssh": ssh, "name": "remote1" }),
        "ENVIRONMENT_ERROR",
    );
    let mut ev = Vec::new();
    let r = pkg_events(
        "install",
        &json!({ "ssh": ssh, "env": "remote1", "rock": "bio_compute" }),
        &mut ev,
    )
    .unwrap();
    assert_eq!(r["luarocks"]["exit_status"], 0);
    assert!(
        r["luarocks"]["stdout"]
            .as_str()
            .unwrap()
            .contains("bio_compute 1.0-1 is now installed"),
        "{r}"
    );
    assert_eq!(
        installed_names(&r),
        [
            ("bio_compute 1.0-1".into(), false),
            ("bxt-base 2.0-1".into(), false)
        ]
    );
    assert!(ev.iter().any(|e| e["step"] == "luarocks"));
    let r = ok(
        "install",
        &json!({ "ssh": ssh, "env": "remote1", "rock": "bxt-base", "version": ">= 1.0, < 2.0" }),
    );
    assert_eq!(r["version"], "1.0-1");
    let l = ok("list", &json!({ "ssh": ssh, "env": "remote1" }));
    assert_eq!(l.as_array().unwrap().len(), 2);
    // Typed errors with luarocks' exit status, from the host.
    let f = fails(
        "install",
        &json!({ "ssh": ssh, "env": "remote1", "rock": "bxt-needs-new" }),
        "DEPENDENCY_CONFLICT",
    );
    assert_eq!(f.detail["exit_status"], 1);
    assert_eq!(f.detail["host"], format!("bxuser@127.0.0.1:{}", rig.port));
    let f = fails(
        "install",
        &json!({ "ssh": ssh, "env": "remote1", "rock": "no-such-rock" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["exit_status"], 1);
    for name in ["x; rm -rf ~", "foo'); os.exit(1) --", "$(id)"] {
        let mut ev = Vec::new();
        let f = pkg_events(
            "install",
            &json!({ "ssh": ssh, "env": "remote1", "rock": name }),
            &mut ev,
        )
        .unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT");
        assert!(ev.is_empty());
    }
    // An ssh VM with the remote environment by name.
    let mut o: serde_json::Value = serde_json::from_str(&rig.options("lua", "")).unwrap();
    o["env"] = "remote1".into();
    let vm = TestVm::new(&o.to_string());
    let r = vm
        .exec("require('bio_compute') return bio_compute.compute(3), require('bxt_base').version");
    assert!(r.success, "{}", r.error);
    assert_eq!(r.values, json!([9, "1.0"]));
    // A lockfile made here reproduces on the host (the same hashes), and the other way.
    let s = Scratch::new("remote-lock");
    let local = s.path("local");
    create_env(&local, &[&srv], &s.path("cache"));
    ok("install", &json!({ "env": local, "rock": "bxt-deep" }));
    let l = ok("lock", &json!({ "env": local }));
    ok(
        "create",
        &json!({ "ssh": ssh, "name": "remote2", "servers": [srv] }),
    );
    let r = ok("sync", &json!({ "ssh": ssh, "env": "remote2", "lock": l }));
    assert_eq!(r["installed"].as_array().unwrap().len(), 3);
    let remote_lock = ok("lock", &json!({ "ssh": ssh, "env": "remote2" }));
    assert_eq!(remote_lock, l);
    let rl = ok("lock", &json!({ "ssh": ssh, "env": "remote1" }));
    let back = s.path("back");
    create_env(&back, &[&srv], &s.path("cache2"));
    ok("sync", &json!({ "env": back, "lock": rl }));
    assert_eq!(ok("lock", &json!({ "env": back })), rl);
    // A host without luarocks (here: the environment names a program that is not there).
    ok(
        "create",
        &json!({ "ssh": ssh, "name": "nolr", "servers": [srv], "luarocks": "/nonexistent/luarocks" }),
    );
    let f = fails(
        "install",
        &json!({ "ssh": ssh, "env": "nolr", "rock": "bxt-base" }),
        "LUAROCKS_NOT_FOUND",
    );
    assert!(
        f.message.contains("is not installed on bxuser@127.0.0.1")
            && f.message.contains("apt-get install luarocks"),
        "{}",
        f.message
    );
    assert_eq!(f.detail["exit_status"], 127);
    fails(
        "open",
        &json!({ "ssh": ssh, "env": "nosuch" }),
        "ENVIRONMENT_ERROR",
    );
    fails(
        "create",
        &json!({ "ssh": ssh, "path": "relative/dir" }),
        "INVALID_ARGUMENT",
    );
}
