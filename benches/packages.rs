//! Package environments through the C ABI, side by side with plain luarocks (Debian's 3.8,
//! `lua5.4 /usr/bin/luarocks`, its own HOME and tree) in the same run, against the local
//! rocks server the tests build (tests/rocks/build_servers.py).
//!
//! `cargo bench --bench packages -- [--markdown <path>] [--quick] [--only <section>] [--no-wait]`
//! Sections: create, install, profile, search, require.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[allow(dead_code)]
mod harness;
use harness::libvm::LibVm;
use harness::manager::cstring;
use harness::*;

use bioxen_vm::ffi::{
    bioxen_vm_bytes, bioxen_vm_bytes_free, bioxen_vm_packages_create, bioxen_vm_packages_install,
    bioxen_vm_packages_search,
};

const SECTIONS: [(&str, Section); 5] = [
    ("create", section_create),
    ("install", section_install),
    ("profile", section_profile),
    ("search", section_search),
    ("require", section_require),
];

/// The main server (built once per run).
fn server() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tests/rocks/build_servers.py"))
        .arg(root.join("target/test-rocks"))
        .arg("5.4")
        .output()
        .expect("python3 tests/rocks/build_servers.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/main", String::from_utf8_lossy(&out.stdout).trim())
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("bioxen-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn call(f: unsafe extern "C" fn(*const std::ffi::c_char, *mut bioxen_vm_bytes) -> i32, req: &str) {
    let r = cstring(req);
    let mut out = bioxen_vm_bytes {
        data: std::ptr::null_mut(),
        len: 0,
    };
    // SAFETY: `r` is NUL-terminated, `out` valid for writes; freed below.
    let st = unsafe { f(r.as_ptr(), &mut out) };
    let body = harness::libvm::bytes_of(&out);
    // SAFETY: filled by the library.
    unsafe { bioxen_vm_bytes_free(&mut out) };
    assert_eq!(st, 0, "{req}: {}", String::from_utf8_lossy(&body));
}

fn install(req: &str) {
    let r = cstring(req);
    let mut out = bioxen_vm_bytes {
        data: std::ptr::null_mut(),
        len: 0,
    };
    // SAFETY: as in `call`; no progress callback.
    let st =
        unsafe { bioxen_vm_packages_install(r.as_ptr(), None, std::ptr::null_mut(), &mut out) };
    let body = harness::libvm::bytes_of(&out);
    // SAFETY: filled by the library.
    unsafe { bioxen_vm_bytes_free(&mut out) };
    assert_eq!(st, 0, "{req}: {}", String::from_utf8_lossy(&body));
}

fn create(path: &str, server: &str, cache: &str) {
    call(
        bioxen_vm_packages_create,
        &serde_json::json!({ "path": path, "servers": [server], "cache": cache_value(cache) })
            .to_string(),
    );
}

fn cache_value(cache: &str) -> serde_json::Value {
    if cache.is_empty() {
        serde_json::Value::Bool(false)
    } else {
        cache.into()
    }
}

/// Plain luarocks: `args` with a fresh HOME and working directory under `dir`.
fn luarocks(dir: &Path, args: &[&str]) {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new("lua5.4")
        .arg("/usr/bin/luarocks")
        .arg("--lua-version=5.4")
        .args(args)
        .env("HOME", &home)
        .env_remove("LUA_PATH")
        .env_remove("LUA_PATH_5_4")
        .current_dir(dir)
        .output()
        .expect("lua5.4 /usr/bin/luarocks");
    assert!(
        out.status.success(),
        "luarocks {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` timed samples of `f(i)`, after one untimed warm-up call.
fn samples(n: usize, mut f: impl FnMut(usize)) -> Stats {
    f(usize::MAX);
    stats(
        (0..n)
            .map(|i| {
                let t = Instant::now();
                f(i);
                t.elapsed().as_nanos() as f64
            })
            .collect(),
    )
}

/// A row whose target is a multiple of the anchor.
fn relative_row(op: &str, lib: Stats, anchor_label: &str, anchor: Stats, factor: f64) -> Row {
    let mut r = row(op, lib, anchor_label, anchor, None);
    r.target = format!("≤ {factor}× the anchor");
    r.met = if lib.median <= factor * anchor.median {
        Met::Yes
    } else {
        Met::No
    };
    r
}

fn section_create(cx: &Ctx) -> (Vec<Row>, String) {
    let s = Scratch::new("create");
    let srv = server();
    let n = cx.n(30, 5);
    let lib = samples(n, |i| create(&s.path(&format!("env-{i}")), &srv, ""));
    let plain = samples(n, |i| {
        let d = s.0.join(format!("init-{i}"));
        std::fs::create_dir_all(&d).unwrap();
        luarocks(&d, &["init"]);
    });
    (
        vec![row(
            "create an empty environment (bioxen_vm_packages_create)",
            lib,
            "`luarocks init` in an empty directory: ",
            plain,
            Some(50e6),
        )],
        format!(
            "create: {n} samples each; the anchor is luarocks' own project tree (`luarocks init`)"
        ),
    )
}

fn section_install(cx: &Ctx) -> (Vec<Row>, String) {
    let s = Scratch::new("install");
    let srv = server();
    let n = cx.n(12, 3);
    let cold_envs: Vec<String> = (0..=n).map(|i| s.path(&format!("cold-{i}"))).collect();
    for e in &cold_envs {
        create(e, &srv, "");
    }
    let mut k = 0;
    let cold = samples(n, |_| {
        install(&serde_json::json!({ "env": cold_envs[k], "rock": "bxt-base" }).to_string());
        k += 1;
    });
    let plain = samples(n, |i| {
        let d = s.0.join(format!("plain-{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let tree = d.join("tree").display().to_string();
        luarocks(
            &d,
            &[
                &format!("--tree={tree}"),
                &format!("--only-server={srv}"),
                "install",
                "bxt-base",
            ],
        );
    });
    let cache = s.path("cache");
    let prime = s.path("prime");
    create(&prime, &srv, &cache);
    install(&serde_json::json!({ "env": prime, "rock": "bxt-base" }).to_string());
    let envs: Vec<String> = (0..=n).map(|i| s.path(&format!("warm-{i}"))).collect();
    for e in &envs {
        create(e, &srv, &cache);
    }
    let mut k = 0;
    let warm = samples(n, |_| {
        install(&serde_json::json!({ "env": envs[k], "rock": "bxt-base" }).to_string());
        k += 1;
    });
    (
        vec![
            relative_row(
                "install one pure-Lua rock, cold (luarocks builds it; fresh environment, no cache)",
                cold,
                "plain `luarocks --tree --only-server install`: ",
                plain,
                1.2,
            ),
            row(
                "install the same rock warm (from the cache of built rocks, no luarocks run)",
                warm,
                "plain `luarocks --tree --only-server install`: ",
                plain,
                Some(30e6),
            ),
        ],
        format!("install: {n} samples each, every one into a fresh tree (environments created before the timing)"),
    )
}

const STANDARD: [&str; 3] = ["lua-cjson", "luafilesystem", "inspect"];

fn section_profile(cx: &Ctx) -> (Vec<Row>, String) {
    let s = Scratch::new("profile");
    let srv = server();
    let n = cx.n(6, 2);
    let bootstrap = |env: &str| {
        let r = cstring(
            &serde_json::json!({ "env": env, "profile": "standard", "catalogs": [] }).to_string(),
        );
        let mut out = bioxen_vm_bytes {
            data: std::ptr::null_mut(),
            len: 0,
        };
        // SAFETY: as in `call`.
        let st = unsafe {
            bioxen_vm::ffi::bioxen_vm_packages_bootstrap(
                r.as_ptr(),
                None,
                std::ptr::null_mut(),
                &mut out,
            )
        };
        let body = harness::libvm::bytes_of(&out);
        // SAFETY: filled by the library.
        unsafe { bioxen_vm_bytes_free(&mut out) };
        assert_eq!(st, 0, "{}", String::from_utf8_lossy(&body));
    };
    let cold_envs: Vec<String> = (0..=n).map(|i| s.path(&format!("cold-{i}"))).collect();
    for e in &cold_envs {
        create(e, &srv, "");
    }
    let mut k = 0;
    let cold = samples(n, |_| {
        bootstrap(&cold_envs[k]);
        k += 1;
    });
    let plain = samples(n, |i| {
        let d = s.0.join(format!("plain-{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let tree = d.join("tree").display().to_string();
        for rock in STANDARD {
            luarocks(
                &d,
                &[
                    &format!("--tree={tree}"),
                    &format!("--only-server={srv}"),
                    "install",
                    rock,
                ],
            );
        }
    });
    let cache = s.path("cache");
    let prime = s.path("prime");
    create(&prime, &srv, &cache);
    bootstrap(&prime);
    let warm_envs: Vec<String> = (0..=n).map(|i| s.path(&format!("warm-{i}"))).collect();
    for e in &warm_envs {
        create(e, &srv, &cache);
    }
    let mut k = 0;
    let warm = samples(n, |_| {
        bootstrap(&warm_envs[k]);
        k += 1;
    });
    (
        vec![
            relative_row(
                "the standard profile cold (lua-cjson, luafilesystem, inspect; installed and locked)",
                cold,
                "plain luarocks installing the three: ",
                plain,
                1.2,
            ),
            row(
                "the standard profile warm (from the cache; installed and locked)",
                warm,
                "plain luarocks installing the three: ",
                plain,
                Some(100e6),
            ),
        ],
        format!("profile: {n} samples each, fresh trees; bootstrap also writes the lockfile (hashing every file)"),
    )
}

fn section_search(cx: &Ctx) -> (Vec<Row>, String) {
    let s = Scratch::new("search");
    let srv = server();
    let mut packages = serde_json::Map::new();
    for i in 0..1000 {
        packages.insert(
            format!("rock-{i:04}"),
            serde_json::json!({ "category": "utility", "description": format!("Synthetic rock number {i}"),
                                "priority": i % 10, "labels": [format!("label{}", i % 7)], "modules": [format!("rock{i}")] }),
        );
    }
    let cat = s.path("catalog.json");
    std::fs::write(
        &cat,
        serde_json::json!({ "packages": packages }).to_string(),
    )
    .unwrap();
    let req = serde_json::json!({ "query": "synthetic 77", "catalogs": [cat], "servers": [srv] })
        .to_string();
    let n = cx.n(200, 20);
    let lib = samples(n, |_| call(bioxen_vm_packages_search, &req));
    let plain = samples(cx.n(10, 3), |_| {
        luarocks(
            &s.0,
            &[
                "search",
                "--porcelain",
                &format!("--only-server={srv}"),
                "bxt",
            ],
        )
    });
    (
        vec![row(
            "search a 1,000-rock catalog and a server (ranked: names, modules, labels, descriptions)",
            lib,
            "`luarocks search --porcelain` (names only, one server): ",
            plain,
            Some(10e6),
        )],
        format!("search: {n} samples; the catalog is parsed once and kept while its file is unchanged"),
    )
}

fn section_require(cx: &Ctx) -> (Vec<Row>, String) {
    let s = Scratch::new("require");
    let srv = server();
    let env = s.path("env");
    create(&env, &srv, "");
    install(&serde_json::json!({ "env": env, "rock": "bxt-mid" }).to_string());
    let tree = format!("{env}/tree/share/lua/5.4");
    let base = std::fs::read_to_string(format!("{tree}/bxt_base.lua")).unwrap();
    let mid = std::fs::read_to_string(format!("{tree}/bxt_mid/init.lua")).unwrap();
    let util = std::fs::read_to_string(format!("{tree}/bxt_mid/util.lua")).unwrap();
    let with_env = serde_json::json!({ "env": env }).to_string();
    let n = cx.n(200, 20);
    let lib = samples(n, |_| {
        let vm = LibVm::new(&with_env);
        vm.run(b"return require('bxt_mid').quadruple(1)", 0)
            .unwrap();
    });
    let code = format!(
        "package = {{ loaded = {{}} }} local loaded = package.loaded \
         function require(n) if not loaded[n] then loaded[n] = assert(load(({{ bxt_base = {base:?}, ['bxt_mid.util'] = {util:?} }})[n]))() end return loaded[n] end \
         return assert(load({mid:?}))().quadruple(1)"
    );
    let plain = samples(n, |_| {
        let vm = LibVm::new("{}");
        vm.run(code.as_bytes(), 0).unwrap();
    });
    (
        vec![row(
            "new basic VM + require of an environment module (3 files, read and loaded through the sandbox)",
            lib,
            "new basic VM + the same sources given as text to load(): ",
            plain,
            None,
        )],
        format!("require: {n} samples each, a fresh VM every time"),
    )
}

fn main() {
    bench_main(
        &SECTIONS,
        "package-environment",
        "Debian luarocks 3.8 on lua5.4, a local directory rocks server",
        &[
            "operation",
            "bioxen_vm",
            "plain luarocks (same run)",
            "anchor / bioxen_vm",
            "target",
            "met?",
            "other CPU",
        ],
    );
}
