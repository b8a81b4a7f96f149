//! Package environments: creating, opening, removing; what luarocks is given (its own
//! configuration, HOME and working directory); isolation between environments and from
//! the system; hostile names, versions, paths and servers refused before anything runs.

mod common;

use common::rocks::*;
use serde_json::json;
use std::path::Path;

#[test]
fn create_open_and_remove() {
    let s = Scratch::new("lifecycle");
    let env = s.path("envs/one");
    let d = ok(
        "create",
        &json!({ "path": env, "servers": [main_server()], "cache": false }),
    );
    assert_eq!(d["name"], "one");
    assert_eq!(d["lua_version"], "5.4");
    assert_eq!(d["interpreter"], "lua5.4");
    assert_eq!(d["servers"], json!([main_server()]));
    assert_eq!(d["cache"], serde_json::Value::Null);
    assert_eq!(d["include_system_modules"], false);
    for p in [
        "bioxen-env.json",
        "luarocks-config.lua",
        "tree/lib/luarocks/rocks-5.4/manifest",
        "home",
        "work",
    ] {
        assert!(Path::new(&env).join(p).exists(), "{p}");
    }
    // The configuration names this tree and this server only.
    let cfg = std::fs::read_to_string(format!("{env}/luarocks-config.lua")).unwrap();
    assert!(
        cfg.contains(&format!(
            "rocks_trees = {{ {{ name = \"bioxen\", root = \"{env}/tree\" }} }}"
        )),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!("rocks_servers = {{ \"{}\" }}", main_server())),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!("local_cache = \"{env}/download-cache\"")),
        "{cfg}"
    );
    assert_eq!(ok("open", &json!({ "env": env }))["path"], env);
    let f = fails("create", &json!({ "path": env }), "ENVIRONMENT_ERROR");
    assert!(f.message.contains("already exists"), "{}", f.message);
    assert_eq!(
        ok("create", &json!({ "path": env, "exist_ok": true }))["path"],
        env
    );
    // A directory with something else in it is never taken over.
    let other = s.path("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(format!("{other}/precious.txt"), "x").unwrap();
    fails("create", &json!({ "path": other }), "ENVIRONMENT_ERROR");
    fails("remove_env", &json!({ "env": other }), "ENVIRONMENT_ERROR");
    assert!(Path::new(&other).join("precious.txt").exists());
    assert_eq!(ok("remove_env", &json!({ "env": env }))["removed"], env);
    assert!(!Path::new(&env).exists());
    let f = fails("open", &json!({ "env": env }), "ENVIRONMENT_ERROR");
    assert!(f.message.contains("no environment"), "{}", f.message);
    let f = fails(
        "create",
        &json!({ "path": s.path("x"), "lua_version": "6.0" }),
        "INVALID_ARGUMENT",
    );
    assert!(f.message.contains("Lua version"), "{}", f.message);
    fails(
        "create",
        &json!({ "path": s.path("x"), "colour": "red" }),
        "INVALID_ARGUMENT",
    );
    fails(
        "create",
        &json!({ "name": "a", "path": s.path("x") }),
        "INVALID_ARGUMENT",
    );
    let f = pkg("create", &json!({})).unwrap_err();
    assert_eq!(f.name, "INVALID_ARGUMENT");
    // Duplicate keys are refused.
    use bioxen_vm::ffi::*;
    let text = common::c(&format!(
        r#"{{"path": "{}", "path": "/tmp/elsewhere"}}"#,
        s.path("dup")
    ));
    let mut out = bioxen_vm_bytes {
        data: std::ptr::null_mut(),
        len: 0,
    };
    let st = unsafe { bioxen_vm_packages_create(text.as_ptr(), &mut out) };
    unsafe { bioxen_vm_bytes_free(&mut out) };
    assert_eq!(common::status_name(st), "INVALID_ARGUMENT");
    assert!(!Path::new(&s.path("dup")).exists());
}

fn snapshot(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(p);
    v.sort();
    v
}

fn walk(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            out.push(format!("{} {:?}", path.display(), md.modified().ok()));
            if md.is_dir() {
                out.extend(walk(&path));
            }
        }
    }
    out
}

#[test]
fn environments_are_isolated_from_each_other_the_system_and_home() {
    let s = Scratch::new("isolation");
    let (a, b) = (s.path("a"), s.path("b"));
    create_env(&a, &[&main_server()], &s.path("cache"));
    create_env(&b, &[&main_server()], &s.path("cache"));
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let luarocks_home = [
        Path::new(&home).join(".luarocks"),
        Path::new(&home).join(".cache/luarocks"),
    ];
    let before: Vec<Vec<String>> = luarocks_home.iter().map(|p| snapshot(p)).collect();
    let exists_before: Vec<bool> = luarocks_home.iter().map(|p| p.exists()).collect();
    ok("install", &json!({ "env": a, "rock": "bxt-base" }));
    ok("install", &json!({ "env": a, "rock": "bxt-cmod" }));
    assert_eq!(ok("list", &json!({ "env": b })), json!([]));
    let (okb, _, errb) = run_in_env("lua5.4", &b, "require('bxt_base')");
    assert!(
        !okb && errb.contains("module 'bxt_base' not found"),
        "{errb}"
    );
    let (oka, outa, erra) = run_in_env(
        "lua5.4",
        &a,
        "print(require('bxt_base').version, require('bxt_cmod').kind)",
    );
    assert!(oka, "{erra}");
    assert_eq!(outa, "2.0\tcompiled\n");
    // The system interpreter does not see them either.
    let sys = std::process::Command::new("lua5.4")
        .arg("-e")
        .arg("require('bxt_base')")
        .env_remove("LUA_PATH")
        .env_remove("LUA_PATH_5_4")
        .output()
        .unwrap();
    assert!(!sys.status.success());
    // Nothing of luarocks' reached the caller's home; its own HOME got what luarocks keeps.
    let after: Vec<Vec<String>> = luarocks_home.iter().map(|p| snapshot(p)).collect();
    assert_eq!(before, after);
    assert_eq!(
        exists_before,
        luarocks_home.iter().map(|p| p.exists()).collect::<Vec<_>>()
    );
    // What it downloads stays in the environment; its work directory stays empty.
    assert_eq!(std::fs::read_dir(format!("{a}/work")).unwrap().count(), 0);
}

#[test]
fn hostile_names_versions_and_servers_are_refused_before_anything_runs() {
    let s = Scratch::new("hostile");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let marker = s.dir.join("pwned");
    let hostile_rocks = [
        "x; rm -rf ~".to_string(),
        "foo'); os.exit(1) --".to_string(),
        format!("x; touch {}", marker.display()),
        "$(touch /tmp/bioxen-pwned)".to_string(),
        "`id`".to_string(),
        "../../etc/passwd".to_string(),
        "/tmp/x.rock".to_string(),
        "bxt-base.rockspec".to_string(),
        "x.src.rock".to_string(),
        "http://127.0.0.1:1/x.rockspec".to_string(),
        "file:///etc/passwd".to_string(),
        "--only-server=/tmp".to_string(),
        "-h".to_string(),
        "bxt base".to_string(),
        "".to_string(),
        "bxt-base\n".to_string(),
        "x".repeat(200),
    ];
    for name in &hostile_rocks {
        let mut ev = Vec::new();
        let f = pkg_events("install", &json!({ "env": env, "rock": name }), &mut ev).unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT", "{name:?}: {}", f.message);
        assert!(ev.is_empty(), "{name:?}: something ran: {ev:?}");
        let f = pkg("remove", &json!({ "env": env, "rock": name })).unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT", "{name:?}");
        let f = pkg("show", &json!({ "env": env, "rock": name })).unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT", "{name:?}");
    }
    for v in [
        "1.0; id",
        "$(id)",
        ">= 1.0 && rm",
        "1.0\n",
        "--force",
        ">=",
        "1.0 2.0",
    ] {
        let f = pkg(
            "install",
            &json!({ "env": env, "rock": "bxt-base", "version": v }),
        )
        .unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT", "{v:?}: {}", f.message);
    }
    for srv in [
        "relative/dir",
        "ftp://127.0.0.1/x",
        "http://127.0.0.1/a b",
        "http://h/'x'",
        "/a\nb",
        "file://rel",
        "http://",
    ] {
        let f = pkg(
            "create",
            &json!({ "path": s.path("srv"), "servers": [srv] }),
        )
        .unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT", "{srv:?}");
    }
    for name in ["x; rm -rf ~", "../up", "a/b/../../c"] {
        let f = pkg("create", &json!({ "name": name })).unwrap_err();
        assert_eq!(f.name, "INVALID_ARGUMENT", "{name:?}");
    }
    assert!(!marker.exists());
    assert!(!Path::new("/tmp/bioxen-pwned").exists());
    assert_eq!(ok("list", &json!({ "env": env })), json!([]));
}

#[test]
fn an_http_server_serves_as_well_as_a_directory() {
    let s = Scratch::new("http");
    let http = HttpServer::start(&servers("5.4").join("main"));
    let env = s.path("env");
    create_env(&env, &[&http.url()], &s.path("cache"));
    let r = ok(
        "install",
        &json!({ "env": env, "rock": "bio_compute", "version": "~> 1.0" }),
    );
    assert_eq!(r["version"], "1.0-1");
    assert_eq!(r["installed"].as_array().unwrap().len(), 2);
    assert!(r["luarocks"]["command"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("--only-server={}", http.url()))));
    // Versions come from the server's manifest over HTTP.
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "version": ">= 9" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["available"], json!(["2.0-1", "1.0-1"]));
    drop(http);
    // A server that is gone: luarocks' own failure (its exit status and output).
    let f = pkg("install", &json!({ "env": env, "rock": "bxt-tool" })).unwrap_err();
    assert_ne!(f.name, "OK");
    assert!(
        f.detail["exit_status"].is_number() || f.detail["kind"] == "no_such_rock",
        "{}",
        f.detail
    );
}

#[test]
fn file_urls_and_several_servers() {
    let s = Scratch::new("servers");
    let srv = servers("5.4");
    let env = s.path("env");
    let url = format!("file://{}", srv.join("partial").display());
    create_env(&env, &[&url, &main_server()], &s.path("cache"));
    // bxt-base 2.0-1 is on both; bxt-mid needs 1.x, which only the second has.
    let r = ok("install", &json!({ "env": env, "rock": "bxt-mid" }));
    assert_eq!(r["installed"].as_array().unwrap().len(), 2, "{r}");
    let cfg = std::fs::read_to_string(format!("{env}/luarocks-config.lua")).unwrap();
    assert!(
        cfg.contains(&format!(
            "rocks_servers = {{ \"{}\", \"{}\" }}",
            srv.join("partial").display(),
            main_server()
        )),
        "{cfg}"
    );
}
