//! Catalogs, profiles, bootstrap, ranked search and the health check.

mod common;

use common::rocks::*;
use serde_json::{json, Value};

fn write(path: &str, v: &Value) {
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn the_originals_six_profiles_as_data() {
    let p = ok("profiles", &json!({ "catalogs": [] }));
    let names: Vec<&String> = p.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "development",
            "full",
            "minimal",
            "networking",
            "production",
            "standard"
        ]
    );
    assert_eq!(
        p["standard"]["packages"],
        json!(["lua-cjson", "luafilesystem", "inspect"])
    );
    assert_eq!(
        p["full"]["packages"],
        json!([
            "lua-cjson",
            "luafilesystem",
            "penlight",
            "inspect",
            "luasocket",
            "lpeg"
        ])
    );
    assert_eq!(
        p["development"]["packages"],
        json!([
            "lua-cjson",
            "luafilesystem",
            "penlight",
            "inspect",
            "busted",
            "luassert"
        ])
    );
    assert_eq!(
        p["production"]["packages"],
        json!(["lua-cjson", "luafilesystem", "penlight"])
    );
    assert_eq!(
        p["networking"]["packages"],
        json!(["lua-cjson", "luasocket", "http", "penlight"])
    );
    assert_eq!(p["minimal"]["packages"], json!([]));
    assert_eq!(p["standard"]["development_tools"], true);
    assert_eq!(p["minimal"]["luarocks_required"], false);
    assert_eq!(p["networking"]["networking"], true);
    let s = Scratch::new("profiles");
    let extend = s.path("extend.json");
    write(
        &extend,
        &json!({ "profiles": { "science": { "description": "bio", "packages": ["bio_compute >= 1.0"] }, "standard": { "packages": ["inspect"] } } }),
    );
    let p = ok("profiles", &json!({ "catalogs": [extend] }));
    assert_eq!(p.as_object().unwrap().len(), 7);
    assert_eq!(p["standard"]["packages"], json!(["inspect"]));
    assert_eq!(p["science"]["packages"], json!(["bio_compute >= 1.0"]));
    let replace = s.path("replace.json");
    write(
        &replace,
        &json!({ "replace_profiles": true, "profiles": { "only": { "packages": [] } } }),
    );
    let p = ok("profiles", &json!({ "catalogs": [replace] }));
    assert_eq!(p.as_object().unwrap().keys().collect::<Vec<_>>(), ["only"]);
    let bad = s.path("bad.json");
    write(
        &bad,
        &json!({ "profiles": { "x": { "packages": ["x; rm -rf ~"] } } }),
    );
    fails(
        "profiles",
        &json!({ "catalogs": [bad] }),
        "INVALID_ARGUMENT",
    );
    write(&bad, &json!({ "packages": { "x": { "colour": "red" } } }));
    fails(
        "profiles",
        &json!({ "catalogs": [bad] }),
        "INVALID_ARGUMENT",
    );
}

#[test]
fn bootstrap_installs_a_profile_and_locks_it_then_warm_from_the_cache() {
    let s = Scratch::new("bootstrap");
    let cache = s.path("cache");
    let (a, b) = (s.path("a"), s.path("b"));
    create_env(&a, &[&main_server()], &cache);
    create_env(&b, &[&main_server()], &cache);
    let r = ok(
        "bootstrap",
        &json!({ "env": a, "profile": "standard", "catalogs": [] }),
    );
    assert_eq!(
        r["packages"],
        json!(["lua-cjson", "luafilesystem", "inspect"])
    );
    let locked: Vec<&str> = r["lock"]["rocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(locked, ["inspect", "lua-cjson", "luafilesystem"]);
    assert!(std::path::Path::new(&format!("{a}/bioxen.lock")).is_file());
    let t = std::time::Instant::now();
    let r = ok(
        "bootstrap",
        &json!({ "env": b, "profile": "standard", "catalogs": [] }),
    );
    let warm = t.elapsed();
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["installed"][0]["from_cache"] == true),
        "{r:#}"
    );
    assert!(warm < std::time::Duration::from_secs(1), "{warm:?}");
    let h = ok("health", &json!({ "env": b }));
    assert_eq!(h["ok"], true, "{h:#}");
    assert_eq!(h["checks"]["modules"]["modules"], 4, "{h:#}");
    let f = fails(
        "bootstrap",
        &json!({ "env": a, "profile": "nosuch", "catalogs": [] }),
        "INVALID_ARGUMENT",
    );
    assert!(f.message.contains("standard"), "{}", f.message);
    // An unknown package in a profile is the install's own error.
    let cat = s.path("cat.json");
    write(
        &cat,
        &json!({ "profiles": { "odd": { "packages": ["no-such-rock-here"] } } }),
    );
    fails(
        "bootstrap",
        &json!({ "env": a, "profile": "odd", "catalogs": [cat] }),
        "PACKAGE_NOT_FOUND",
    );
    ok(
        "bootstrap",
        &json!({ "env": a, "profile": "minimal", "catalogs": [] }),
    );
}

fn big_catalog(path: &str, n: usize) {
    let mut packages = serde_json::Map::new();
    for i in 0..n {
        packages.insert(
            format!("rock-{i:04}"),
            json!({ "category": if i % 2 == 0 { "utility" } else { "science" }, "description": format!("Synthetic rock number {i} for searching"),
                    "priority": (i % 10) as i64, "labels": [format!("label{}", i % 7)], "modules": [format!("rock{i}")] }),
        );
    }
    packages.insert("bio_compute".into(), json!({ "category": "science", "description": "Biological computation: sequences and GC content", "priority": 8, "labels": ["dna", "bio"], "modules": ["bio_compute"] }));
    packages.insert("seqtools".into(), json!({ "category": "science", "description": "Sequence tools (uses bio_compute)", "priority": 3, "labels": ["dna"], "modules": ["seqtools"] }));
    write(
        path,
        &json!({ "format": "bioxen-catalog-1", "packages": packages }),
    );
}

#[test]
fn search_ranks_names_modules_labels_and_descriptions() {
    let s = Scratch::new("search");
    let cat = s.path("cat.json");
    big_catalog(&cat, 1000);
    let r = ok(
        "search",
        &json!({ "query": "bio_compute", "catalogs": [cat], "servers": [main_server()] }),
    );
    let hits = r["results"].as_array().unwrap();
    assert_eq!(hits[0]["name"], "bio_compute");
    assert_eq!(hits[0]["score"], 100);
    assert_eq!(
        hits[0]["version"], "1.0-1",
        "the server's version: {}",
        hits[0]
    );
    assert_eq!(hits[0]["category"], "science");
    assert!(hits[0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x.as_str().unwrap().starts_with("server:")));
    assert_eq!(
        hits[1]["name"], "seqtools",
        "described as using it: {hits:?}"
    );
    let r = ok("search", &json!({ "query": "dna", "catalogs": [cat] }));
    let names: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["bio_compute", "seqtools"],
        "labels tie; priority decides"
    );
    let r = ok(
        "search",
        &json!({ "query": "rock42", "catalogs": [cat], "limit": 3 }),
    );
    assert_eq!(r["results"][0]["name"], "rock-0042");
    assert_eq!(r["results"][0]["matched"], json!(["module"]));
    assert!(r["results"].as_array().unwrap().len() <= 3);
    let r = ok(
        "search",
        &json!({ "query": "gc content", "catalogs": [cat] }),
    );
    assert_eq!(r["results"][0]["name"], "bio_compute");
    // Names only servers know.
    let r = ok(
        "search",
        &json!({ "query": "bxt-mi", "servers": [main_server()], "catalogs": [cat] }),
    );
    assert_eq!(r["results"][0]["name"], "bxt-mid");
    assert_eq!(r["results"][0]["versions"], json!(["1.0-1"]));
    let r = ok(
        "search",
        &json!({ "query": "zzz-nothing", "catalogs": [cat] }),
    );
    assert_eq!(r["results"], json!([]));
    // Quick on a 1,000-rock catalog (the benchmark measures it; this only bounds it).
    let t = std::time::Instant::now();
    for _ in 0..20 {
        ok(
            "search",
            &json!({ "query": "synthetic 77", "catalogs": [cat] }),
        );
    }
    assert!(
        t.elapsed() / 20 < std::time::Duration::from_millis(100),
        "{:?}",
        t.elapsed() / 20
    );
    let r = ok(
        "search",
        &json!({ "query": "unreadable", "servers": [s.path("nope")], "catalogs": [] }),
    );
    assert_eq!(r["unreadable_servers"].as_array().unwrap().len(), 1);
}

#[test]
fn the_health_check_names_what_is_wrong() {
    let s = Scratch::new("health");
    let env = s.path("env");
    create_env(&env, &[&main_server()], &s.path("cache"));
    ok("install", &json!({ "env": env, "rock": "bxt-needs-c" }));
    let h = ok("health", &json!({ "env": env }));
    assert_eq!(h["ok"], true, "{h:#}");
    for k in [
        "luarocks",
        "interpreter",
        "headers",
        "servers",
        "modules",
        "drift",
    ] {
        assert_eq!(h["checks"][k]["ok"], true, "{k}: {h:#}");
    }
    assert!(
        h["checks"]["luarocks"]["message"]
            .as_str()
            .unwrap()
            .contains("3."),
        "{h:#}"
    );
    assert_eq!(h["checks"]["headers"]["present"], true);
    ok(
        "remove",
        &json!({ "env": env, "rock": "bxt-cmod", "force": true }),
    );
    let h = ok("health", &json!({ "env": env }));
    assert_eq!(h["checks"]["modules"]["ok"], false);
    assert_eq!(
        h["checks"]["modules"]["failed"][0]["module"], "bxt_needs_c",
        "{h:#}"
    );
    let http = HttpServer::start(&servers("5.4").join("main"));
    let e2 = s.path("env2");
    ok(
        "create",
        &json!({ "path": e2, "servers": [http.url()], "luarocks": "/nonexistent/luarocks", "interpreter": "/nonexistent/lua", "lua_incdir": "/nonexistent" }),
    );
    let h = ok("health", &json!({ "env": e2 }));
    assert_eq!(h["checks"]["servers"]["ok"], true, "{h:#}");
    drop(http);
    let h = ok("health", &json!({ "env": e2 }));
    assert_eq!(h["ok"], false);
    for k in ["luarocks", "interpreter", "servers"] {
        assert_eq!(h["checks"][k]["ok"], false, "{k}: {h:#}");
    }
    assert_eq!(h["checks"]["headers"]["present"], false);
}
