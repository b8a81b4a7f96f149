//! Installing, removing, listing and showing rocks in package environments, over the C
//! ABI, with the real luarocks against local rocks servers built from tests/rocks.

mod common;

use common::rocks::*;
use serde_json::json;

fn lua54(env_dir: &str, code: &str) -> (bool, String, String) {
    run_in_env("lua5.4", env_dir, code)
}

#[test]
fn install_resolves_dependencies_within_constraints() {
    let s = Scratch::new("deps");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let r = ok("install", &json!({ "env": env, "rock": "bxt-mid" }));
    assert_eq!(r["version"], "1.0-1");
    assert_eq!(r["already_installed"], false);
    assert_eq!(
        installed_names(&r),
        [
            ("bxt-base 1.0-1".into(), false),
            ("bxt-mid 1.0-1".into(), false)
        ]
    );
    assert_eq!(r["luarocks"]["exit_status"], 0);
    let l = ok("list", &json!({ "env": env }));
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[1]["name"], "bxt-mid");
    assert_eq!(l[1]["dependencies"]["bxt-base"], "1.0-1");
    let sh = ok("show", &json!({ "env": env, "rock": "bxt-mid" }));
    assert_eq!(sh["summary"], "Middle test rock that needs bxt-base 1.x");
    assert_eq!(sh["dependencies"][1], "bxt-base >= 1.0, < 2.0");
    assert!(sh["hash"].as_str().unwrap().starts_with("sha256:"));
    let (okk, out, err) = lua54(
        &env,
        "print(require('bxt_mid').quadruple(3), require('bxt_mid').base_version)",
    );
    assert!(okk, "{err}");
    assert_eq!(out, "12\t1.0\n");
    // Again: nothing to do.
    let again = ok("install", &json!({ "env": env, "rock": "bxt-mid" }));
    assert_eq!(again["already_installed"], true);
}

#[test]
fn a_constraint_chooses_the_highest_matching_version() {
    let s = Scratch::new("constraint");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let r = ok(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "version": ">= 1.0, < 2.0" }),
    );
    assert_eq!(r["version"], "1.0-1");
    assert_eq!(lua54(&env, "print(require('bxt_base').version)").1, "1.0\n");
    // Without a constraint the newest replaces it.
    let r = ok("install", &json!({ "env": env, "rock": "bxt-base" }));
    assert_eq!(r["version"], "2.0-1");
    let l = ok("list", &json!({ "env": env }));
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l[0]["version"], "2.0-1");
    assert_eq!(lua54(&env, "print(require('bxt_base').version)").1, "2.0\n");
    // An exact version, as luarocks writes it or without the revision.
    let r = ok(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "version": "1.0" }),
    );
    assert_eq!(r["version"], "1.0-1");
}

#[test]
fn a_constraint_on_servers_whose_manifest_cannot_be_read_asks_luarocks() {
    // The first server's manifest cannot be read (as an https:// one is not): the versions
    // come from `luarocks search`, and the constraint still holds.
    let s = Scratch::new("constraint-search");
    let env = s.path("env");
    create_env(
        &env,
        &[&s.path("unreadable"), &main_server()],
        &s.path("cache"),
    );
    let mut ev = Vec::new();
    let r = pkg_events(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "version": ">= 1.0, < 2.0" }),
        &mut ev,
    )
    .unwrap();
    assert_eq!(r["version"], "1.0-1");
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "version": ">= 7" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["available"], json!(["2.0-1", "1.0-1"]));
}

#[test]
fn a_c_rock_is_compiled_and_loads() {
    let s = Scratch::new("crock");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let r = ok("install", &json!({ "env": env, "rock": "bxt-needs-c" }));
    assert!(
        r["luarocks"]["stdout"]
            .as_str()
            .unwrap()
            .contains("bxt-cmod"),
        "{r}"
    );
    assert!(std::path::Path::new(&format!("{env}/tree/lib/lua/5.4/bxt_cmod.so")).is_file());
    let (okk, out, err) = lua54(&env, "local c = require('bxt_cmod') print(c.kind, c.add(2, 3), require('bxt_needs_c').sum(1, 2))");
    assert!(okk, "{err}");
    assert_eq!(out, "compiled\t5.0\t3.0\n");
}

#[test]
fn missing_rocks_and_versions_are_typed_errors() {
    let s = Scratch::new("missing");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-bse" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["kind"], "no_such_rock");
    assert!(
        f.message.contains("no such rock 'bxt-bse'"),
        "{}",
        f.message
    );
    assert!(
        f.detail["similar"]
            .as_array()
            .unwrap()
            .contains(&json!("bxt-base")),
        "{}",
        f.detail
    );
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "version": ">= 5" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["kind"], "no_matching_version");
    assert_eq!(f.detail["available"], json!(["2.0-1", "1.0-1"]));
    assert!(f.message.contains("2.0-1, 1.0-1"), "{}", f.message);
    // luarocks itself is asked when the servers' manifests cannot be read: its own
    // exit status and stderr come back.
    let e2 = s.path("env2");
    create_env(&e2, &[&s.path("no-such-server")], &s.path("cache"));
    let f = fails(
        "install",
        &json!({ "env": e2, "rock": "bxt-base" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["exit_status"], 1, "{}", f.detail);
    assert!(
        f.detail["stderr"]
            .as_str()
            .unwrap()
            .contains("No results matching query"),
        "{}",
        f.detail
    );
    // Only the named server was asked: nothing fell back to a server over the network.
    let said = format!("{}{}", f.detail["stdout"], f.detail["stderr"]);
    assert!(!said.contains("http"), "{said}");
    // Nothing was installed.
    assert_eq!(ok("list", &json!({ "env": env })), json!([]));
}

#[test]
fn a_dependency_conflict_names_the_constraint_and_the_versions() {
    let s = Scratch::new("conflict");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-needs-new" }),
        "DEPENDENCY_CONFLICT",
    );
    assert_eq!(f.detail["constraint"], "bxt-base >= 3.0", "{}", f.detail);
    assert_eq!(f.detail["available"], json!(["2.0-1", "1.0-1"]));
    assert_eq!(f.detail["exit_status"], 1);
    assert!(f.detail["stderr"]
        .as_str()
        .unwrap()
        .contains("Could not satisfy dependency bxt-base >= 3.0"));
    assert!(
        f.message.contains("bxt-base >= 3.0") && f.message.contains("2.0-1, 1.0-1"),
        "{}",
        f.message
    );
}

#[test]
fn build_failures_are_typed_errors() {
    let s = Scratch::new("build");
    let env = s.path("env");
    let srv = servers("5.4");
    create_env(
        &env,
        &[&main_server(), &srv.join("broken").display().to_string()],
        &s.path("cache"),
    );
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-badc" }),
        "BUILD_FAILED",
    );
    assert_eq!(f.detail["kind"], "build_failed");
    assert_eq!(f.detail["exit_status"], 1);
    assert!(
        f.detail["stderr"].as_str().unwrap().contains("bxt_badc.c"),
        "{}",
        f.detail
    );
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-missing-file" }),
        "BUILD_FAILED",
    );
    assert!(
        f.detail["stderr"]
            .as_str()
            .unwrap()
            .contains("bxt_missing.lua"),
        "{}",
        f.detail
    );
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-syntax" }),
        "BUILD_FAILED",
    );
    assert!(
        f.detail["stderr"]
            .as_str()
            .unwrap()
            .contains("Could not load rockspec"),
        "{}",
        f.detail
    );
    // Without the Lua headers a C rock cannot build, and the error says so.
    let e2 = s.path("noheaders");
    ok(
        "create",
        &json!({ "path": e2, "servers": [main_server()], "cache": s.path("cache"), "lua_incdir": "/nonexistent/include" }),
    );
    let f = fails(
        "install",
        &json!({ "env": e2, "rock": "bxt-cmod" }),
        "BUILD_FAILED",
    );
    assert_eq!(f.detail["kind"], "missing_headers", "{}", f.detail);
    assert!(f.message.contains("headers"), "{}", f.message);
    assert_eq!(ok("list", &json!({ "env": env })), json!([]));
}

#[test]
fn luarocks_missing_is_its_own_error() {
    let s = Scratch::new("nolr");
    let env = s.path("env");
    ok(
        "create",
        // No cache: a rock cached by another test would install without luarocks.
        &json!({ "path": env, "servers": [main_server()], "cache": false, "luarocks": "/nonexistent/bin/luarocks" }),
    );
    let f = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-base" }),
        "LUAROCKS_NOT_FOUND",
    );
    assert!(
        f.message.contains("apt-get install luarocks"),
        "{}",
        f.message
    );
    let e2 = s.path("noservers");
    ok("create", &json!({ "path": e2 }));
    let f = fails(
        "install",
        &json!({ "env": e2, "rock": "bxt-base" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["kind"], "no_server");
}

#[test]
fn remove_refuses_to_break_dependents_unless_forced() {
    let s = Scratch::new("remove");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    ok("install", &json!({ "env": env, "rock": "bxt-mid" }));
    let f = fails(
        "remove",
        &json!({ "env": env, "rock": "bxt-base" }),
        "DEPENDENCY_CONFLICT",
    );
    assert_eq!(f.detail["kind"], "would_break_dependents");
    assert_eq!(f.detail["dependents"], json!(["bxt-mid 1.0-1"]));
    assert_eq!(f.detail["exit_status"], 1);
    let r = ok("remove", &json!({ "env": env, "rock": "bxt-mid" }));
    assert_eq!(
        r["removed"],
        json!([{ "name": "bxt-mid", "version": "1.0-1" }])
    );
    ok("install", &json!({ "env": env, "rock": "bxt-mid" }));
    ok(
        "remove",
        &json!({ "env": env, "rock": "bxt-base", "force": true }),
    );
    let l = ok("list", &json!({ "env": env }));
    assert_eq!(l.as_array().unwrap().len(), 1);
    let f = fails(
        "remove",
        &json!({ "env": env, "rock": "bxt-base" }),
        "PACKAGE_NOT_FOUND",
    );
    assert_eq!(f.detail["kind"], "not_installed");
    fails(
        "show",
        &json!({ "env": env, "rock": "bxt-base" }),
        "PACKAGE_NOT_FOUND",
    );
}

#[test]
fn progress_reports_steps_and_luarocks_output() {
    let s = Scratch::new("progress");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let mut ev = Vec::new();
    pkg_events(
        "install",
        &json!({ "env": env, "rock": "bxt-base" }),
        &mut ev,
    )
    .unwrap();
    let steps: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["resolve", "luarocks", "installed"], "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e["event"] == "output"
                && e["line"].as_str().unwrap().contains("is now installed")),
        "{ev:?}"
    );
}

#[test]
fn a_busy_environment_times_out_within_the_limit() {
    let s = Scratch::new("busy");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    // Another holder of the environment's lock (as another process would be).
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{env}/.lock"))
        .unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    let t = std::time::Instant::now();
    let e = fails(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "timeout": 0.3 }),
        "TIMEOUT",
    );
    let took = t.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(300) && took < std::time::Duration::from_secs(2),
        "{took:?}"
    );
    assert!(e.message.contains("busy"), "{}", e.message);
    drop(f);
    ok(
        "install",
        &json!({ "env": env, "rock": "bxt-base", "timeout": 60 }),
    );
}

#[test]
fn lua_5_1_environments_build_for_lua_5_1() {
    let s = Scratch::new("lua51");
    let env = s.path("env");
    let srv = servers("5.1").join("main").display().to_string();
    ok(
        "create",
        &json!({ "path": env, "lua_version": "5.1", "servers": [srv], "cache": s.path("cache") }),
    );
    ok("install", &json!({ "env": env, "rock": "bxt-needs-c" }));
    ok("install", &json!({ "env": env, "rock": "bio_compute" }));
    let tree = format!("{env}/tree");
    let out = std::process::Command::new("lua5.1")
        .arg("-e")
        .arg("require('bio_compute') print(bio_compute.compute(10), require('bxt_needs_c').sum(2, 2))")
        .env("LUA_PATH", format!("{tree}/share/lua/5.1/?.lua;{tree}/share/lua/5.1/?/init.lua"))
        .env("LUA_CPATH", format!("{tree}/lib/lua/5.1/?.so"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "100\t4\n");
    // The same cache holds the 5.4 build separately: a 5.4 environment builds its own.
    let e54 = s.path("env54");
    create_env(&e54, &[&main_server()], &s.path("cache"));
    let r = ok("install", &json!({ "env": e54, "rock": "bxt-cmod" }));
    assert_eq!(r["installed"][0]["from_cache"], false, "{r}");
}

/// luarocks' own `luarocks_<rock>-*` directories in the system temp dir.
fn luarocks_tmp_dirs(rock: &str) -> std::collections::BTreeSet<String> {
    let prefix = format!("luarocks_{rock}-");
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn luarocks_temp_files_stay_in_the_environment_and_go_with_the_run() {
    let s = Scratch::new("tmpdirs");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    let before = luarocks_tmp_dirs("bxt-tool");
    // A run killed midway (cancelled at luarocks' first line) and a finished one.
    let mut c = CancelAt {
        at: "output".into(),
        events: Vec::new(),
    };
    let e = pkg_cancel(
        "install",
        &json!({ "env": env, "rock": "bxt-tool" }),
        &mut c,
    )
    .unwrap_err();
    assert_eq!(e.name, "CANCELLED", "{}", e.message);
    ok(
        "install",
        &json!({ "env": env, "rock": "bxt-tool", "cache": false }),
    );
    assert_eq!(luarocks_tmp_dirs("bxt-tool"), before);
    let work: Vec<_> = std::fs::read_dir(format!("{env}/work"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("tmp-"))
        .collect();
    assert!(work.is_empty(), "{work:?}");
}
