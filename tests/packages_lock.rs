//! The cache of built rocks, lockfiles (lock, sync, install --locked), and the
//! environment's lock under concurrent installers (threads and processes).

mod common;

use common::rocks::*;
use serde_json::{json, Value};
use std::path::Path;

/// A tree's files, with the tree's own path in command wrappers replaced.
fn normalised(env: &str) -> Vec<(String, Vec<u8>)> {
    tree_files(&Path::new(env).join("tree"))
        .into_iter()
        .map(|(p, c)| {
            (
                p,
                String::from_utf8_lossy(&c)
                    .replace(env, "@ENV@")
                    .into_bytes(),
            )
        })
        .collect()
}

#[test]
fn a_rock_built_once_is_copied_from_the_cache() {
    let s = Scratch::new("cache");
    let cache = s.path("cache");
    let (a, b) = (s.path("a"), s.path("b"));
    create_env(&a, &[&main_server()], &cache);
    create_env(&b, &[&main_server()], &cache);
    let r = ok("install", &json!({ "env": a, "rock": "bxt-deep" }));
    assert_eq!(
        installed_names(&r),
        [
            ("bxt-base 1.0-1".into(), false),
            ("bxt-deep 1.0-1".into(), false),
            ("bxt-mid 1.0-1".into(), false)
        ]
    );
    ok("install", &json!({ "env": a, "rock": "bxt-tool" }));
    ok("install", &json!({ "env": a, "rock": "bxt-cmod" }));
    let t = std::time::Instant::now();
    let mut ev = Vec::new();
    let r = pkg_events("install", &json!({ "env": b, "rock": "bxt-deep" }), &mut ev).unwrap();
    let warm = t.elapsed();
    assert_eq!(
        installed_names(&r),
        [
            ("bxt-base 1.0-1".into(), true),
            ("bxt-deep 1.0-1".into(), true),
            ("bxt-mid 1.0-1".into(), true)
        ]
    );
    assert_eq!(r["luarocks"], Value::Null);
    assert!(!ev.iter().any(|e| e["step"] == "luarocks"), "{ev:?}");
    assert!(warm < std::time::Duration::from_millis(500), "{warm:?}");
    for rock in ["bxt-tool", "bxt-cmod"] {
        let r = ok("install", &json!({ "env": b, "rock": rock }));
        assert_eq!(r["installed"][0]["from_cache"], true, "{rock}: {r}");
    }
    // The same tree, manifest included, byte for byte (wrappers name their own tree).
    assert_eq!(normalised(&a), normalised(&b));
    // And it works: modules, the C module, the command with its wrapper.
    let out = std::process::Command::new(format!("{b}/tree/bin/bxt-tool"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bxt-tool says\thello\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // luarocks reads the manifest the cache path wrote: it lists and removes as usual.
    let r = ok("remove", &json!({ "env": b, "rock": "bxt-deep" }));
    assert_eq!(r["luarocks"]["exit_status"], 0);
    let again = ok("install", &json!({ "env": b, "rock": "bxt-deep" }));
    assert_eq!(installed_names(&again), [("bxt-deep 1.0-1".into(), true)]);
    // Without the cache, luarocks builds it.
    let c = s.path("c");
    ok(
        "create",
        &json!({ "path": c, "servers": [main_server()], "cache": false }),
    );
    let r = ok(
        "install",
        &json!({ "env": c, "rock": "bxt-base", "version": "1.0-1" }),
    );
    assert_eq!(r["installed"][0]["from_cache"], false);
    let r = ok(
        "install",
        &json!({ "env": b, "rock": "bxt-base", "version": "2.0-1", "cache": false }),
    );
    assert_eq!(r["installed"][0]["from_cache"], false);
}

#[test]
fn a_damaged_cache_object_is_dropped_and_the_rock_built() {
    let s = Scratch::new("damaged");
    let cache = s.path("cache");
    let (a, b) = (s.path("a"), s.path("b"));
    create_env(&a, &[&main_server()], &cache);
    create_env(&b, &[&main_server()], &cache);
    ok("install", &json!({ "env": a, "rock": "bxt-base" }));
    let objects: Vec<_> = std::fs::read_dir(format!("{cache}/objects"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(objects.len(), 1);
    let module = objects[0].path().join("files/share/lua/5.4/bxt_base.lua");
    std::fs::write(&module, "error('tampered')").unwrap();
    let r = ok("install", &json!({ "env": b, "rock": "bxt-base" }));
    assert_eq!(r["installed"][0]["from_cache"], false, "{r}");
    let text = std::fs::read_to_string(format!("{b}/tree/share/lua/5.4/bxt_base.lua")).unwrap();
    assert!(text.contains("version = \"2.0\""), "{text}");
    // The rebuilt rock went back into the cache.
    assert!(
        std::fs::read_to_string(objects[0].path().join("files/share/lua/5.4/bxt_base.lua"))
            .unwrap()
            .contains("2.0")
    );
}

#[test]
fn a_lockfile_reproduces_the_tree() {
    let s = Scratch::new("lock");
    let (a, b, c) = (s.path("a"), s.path("b"), s.path("c"));
    create_env(&a, &[&main_server()], &s.path("cache-a"));
    ok("install", &json!({ "env": a, "rock": "bxt-deep" }));
    ok("install", &json!({ "env": a, "rock": "bxt-tool" }));
    ok("install", &json!({ "env": a, "rock": "bxt-cmod" }));
    let l = ok("lock", &json!({ "env": a }));
    assert_eq!(l["format"], "bioxen-lock-1");
    assert_eq!(l["lua_version"], "5.4");
    let rocks = l["rocks"].as_array().unwrap();
    assert_eq!(rocks.len(), 5);
    assert_eq!(rocks[2]["name"], "bxt-deep");
    assert_eq!(
        rocks[2]["dependencies"],
        json!({ "bxt-base": "1.0-1", "bxt-mid": "1.0-1" })
    );
    assert!(rocks
        .iter()
        .all(|r| r["hash"].as_str().unwrap().len() == 71));
    let lockfile = format!("{a}/bioxen.lock");
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&lockfile).unwrap()).unwrap(),
        l
    );
    // Another environment (its own cache: everything built again) from the lockfile.
    create_env(&b, &[&main_server()], &s.path("cache-b"));
    let r = ok("sync", &json!({ "env": b, "lockfile": lockfile }));
    assert_eq!(r["installed"].as_array().unwrap().len(), 5);
    assert!(r["installed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["from_cache"] == false));
    assert_eq!(normalised(&a), normalised(&b));
    let lb = ok("lock", &json!({ "env": b, "path": s.path("b.lock") }));
    assert_eq!(lb, l);
    // From the cache by hash.
    create_env(&c, &[&main_server()], &s.path("cache-a"));
    let r = ok("sync", &json!({ "env": c, "lock": l }));
    assert!(
        r["installed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["from_cache"] == true),
        "{r}"
    );
    assert_eq!(normalised(&a), normalised(&c));
    // A newer bxt-base on the server changes nothing: the lock pins 1.0-1.
    assert!(normalised(&c)
        .iter()
        .any(|(p, t)| p.ends_with("bxt_base.lua") && String::from_utf8_lossy(t).contains("1.0")));
    // Sync takes away what the lockfile does not pin.
    ok("install", &json!({ "env": c, "rock": "inspect" }));
    let r = ok("sync", &json!({ "env": c, "lockfile": lockfile }));
    assert_eq!(
        r["removed"],
        json!([{ "name": "inspect", "version": "3.1.1-1" }])
    );
    assert_eq!(normalised(&a), normalised(&c));
    // The health check sees no drift; an edited module is drift.
    std::fs::copy(&lockfile, format!("{c}/bioxen.lock")).unwrap();
    let h = ok("health", &json!({ "env": c }));
    assert_eq!(h["checks"]["drift"]["ok"], true, "{h:#}");
    std::fs::write(format!("{c}/tree/share/lua/5.4/bxt_base.lua"), "return {}").unwrap();
    let h = ok("health", &json!({ "env": c }));
    assert_eq!(h["checks"]["drift"]["ok"], false);
    assert_eq!(
        h["checks"]["drift"]["changed"].as_array().unwrap().len(),
        1,
        "{h:#}"
    );
    assert_eq!(h["ok"], false);
}

#[test]
fn sync_fails_when_a_server_cannot_provide_or_provides_other_files() {
    let s = Scratch::new("syncfail");
    let srv = servers("5.4");
    let a = s.path("a");
    create_env(&a, &[&main_server()], &s.path("cache-a"));
    ok(
        "install",
        &json!({ "env": a, "rock": "bxt-base", "version": "1.0-1" }),
    );
    let l = ok("lock", &json!({ "env": a }));
    let b = s.path("b");
    create_env(
        &b,
        &[&srv.join("partial").display().to_string()],
        &s.path("cache-b"),
    );
    let f = fails("sync", &json!({ "env": b, "lock": l }), "LOCKFILE_ERROR");
    assert_eq!(f.detail["kind"], "unavailable", "{}", f.detail);
    assert!(f.message.contains("bxt-base 1.0-1"), "{}", f.message);
    assert_eq!(ok("list", &json!({ "env": b })), json!([]));
    let t = s.path("t");
    create_env(
        &t,
        &[&srv.join("tampered").display().to_string()],
        &s.path("cache-t"),
    );
    let f = fails("sync", &json!({ "env": t, "lock": l }), "LOCKFILE_ERROR");
    assert_eq!(f.detail["kind"], "hash_mismatch", "{}", f.detail);
    assert_eq!(
        ok("list", &json!({ "env": t })),
        json!([]),
        "the mismatching rock is not left installed"
    );
    // A lockfile for another Lua version.
    let mut l51 = l.clone();
    l51["lua_version"] = "5.1".into();
    let f = fails("sync", &json!({ "env": a, "lock": l51 }), "LOCKFILE_ERROR");
    assert!(f.message.contains("Lua 5.1"), "{}", f.message);
    for bad in [
        json!({ "format": "x" }),
        json!({ "format": "bioxen-lock-1", "lua_version": "5.4", "arch": "x", "rocks": [{ "name": "x; rm", "version": "1", "hash": "sha256:00" }] }),
    ] {
        fails("sync", &json!({ "env": a, "lock": bad }), "LOCKFILE_ERROR");
    }
}

#[test]
fn install_locked_installs_what_the_lockfile_pins() {
    let s = Scratch::new("locked");
    let a = s.path("a");
    create_env(&a, &[&main_server()], &s.path("cache"));
    ok("install", &json!({ "env": a, "rock": "bxt-mid" }));
    ok("lock", &json!({ "env": a }));
    ok("remove", &json!({ "env": a, "rock": "bxt-mid" }));
    ok("remove", &json!({ "env": a, "rock": "bxt-base" }));
    // bxt-base alone would be 2.0-1; locked, it is the pinned 1.0-1.
    let r = ok(
        "install",
        &json!({ "env": a, "rock": "bxt-base", "locked": true }),
    );
    assert_eq!(r["installed"][0]["version"], "1.0-1", "{r}");
    let r = ok(
        "install",
        &json!({ "env": a, "rock": "bxt-mid", "locked": true }),
    );
    assert_eq!(r["installed"][0]["name"], "bxt-mid", "{r}");
    let f = fails(
        "install",
        &json!({ "env": a, "rock": "bxt-tool", "locked": true }),
        "LOCKFILE_ERROR",
    );
    assert!(f.message.contains("does not pin bxt-tool"), "{}", f.message);
    fails(
        "install",
        &json!({ "env": a, "rock": "bxt-base", "version": ">= 2", "locked": true }),
        "LOCKFILE_ERROR",
    );
}

/// One installer run by a child process of this test binary (see `parallel_installers`).
#[test]
fn child_installer() {
    let Ok(req) = std::env::var("BIOXEN_PKGTEST_CHILD_INSTALL") else {
        return;
    };
    let req: Value = serde_json::from_str(&req).unwrap();
    ok("install", &req);
}

#[test]
fn parallel_installers_lose_no_entry() {
    let s = Scratch::new("parallel");
    let rocks = ["bxt-base", "bxt-tool", "inspect", "bxt-cmod"];
    for round in 0..20 {
        let env = s.path(&format!("env{round}"));
        ok(
            "create",
            &json!({ "path": env, "servers": [main_server()], "cache": false }),
        );
        std::thread::scope(|sc| {
            // Two threads of this process and two other processes, all at once.
            let threads: Vec<_> = rocks[..2]
                .iter()
                .map(|r| {
                    let env = env.clone();
                    sc.spawn(move || ok("install", &json!({ "env": env, "rock": r })))
                })
                .collect();
            let children: Vec<_> = rocks[2..]
                .iter()
                .map(|r| {
                    std::process::Command::new(std::env::current_exe().unwrap())
                        .args([
                            "--exact",
                            "child_installer",
                            "--nocapture",
                            "--test-threads=1",
                        ])
                        .env(
                            "BIOXEN_PKGTEST_CHILD_INSTALL",
                            json!({ "env": env, "rock": r }).to_string(),
                        )
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            for mut c in children {
                assert!(c.wait().unwrap().success());
            }
        });
        let l = ok("list", &json!({ "env": env }));
        let got: Vec<&str> = l
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        let mut want = rocks.to_vec();
        want.sort();
        assert_eq!(got, want, "round {round}: an entry was lost");
        std::fs::remove_dir_all(&env).unwrap();
    }
}
