//! Helpers of the package tests: the local rocks servers (built once per test binary by
//! tests/rocks/build_servers.py with the real luarocks), scratch directories, the package
//! functions of the C ABI by name, and a loopback HTTP server for a directory.

#![allow(dead_code)]

use super::{bytes_of, c, last_error};
use bioxen_vm::ffi::*;
use serde_json::Value;
use std::ffi::{c_char, c_void, CStr};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// The servers for Lua `lua`: `<dir>/main`, `partial`, `tampered`, `broken`.
pub fn servers(lua: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(l, _)| l == lua) {
        return p.clone();
    }
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bioxen-test-rocks");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rocks/build_servers.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&root)
        .arg(lua)
        .output()
        .expect("python3 runs tests/rocks/build_servers.py");
    assert!(
        out.status.success(),
        "building the rocks servers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = root.join(lua);
    built.push((lua.to_string(), dir.clone()));
    dir
}

/// The main server for Lua 5.4.
pub fn main_server() -> String {
    servers("5.4").join("main").display().to_string()
}

/// A directory removed (whatever is in it) when dropped; world-readable so that the ssh
/// rig's user can read environments in it.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "bioxen-pkgtest-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Plain = unsafe extern "C" fn(*const c_char, *mut bioxen_vm_bytes) -> i32;
type WithProgress = unsafe extern "C" fn(
    *const c_char,
    bioxen_vm_progress_fn,
    *mut c_void,
    *mut bioxen_vm_bytes,
) -> i32;

fn plain(op: &str) -> Option<Plain> {
    Some(match op {
        "create" => bioxen_vm_packages_create,
        "open" => bioxen_vm_packages_open,
        "environments" => bioxen_vm_packages_environments,
        "remove_env" => bioxen_vm_packages_remove_env,
        "list" => bioxen_vm_packages_list,
        "show" => bioxen_vm_packages_show,
        "search" => bioxen_vm_packages_search,
        "lock" => bioxen_vm_packages_lock,
        "health" => bioxen_vm_packages_health,
        "profiles" => bioxen_vm_packages_profiles,
        _ => return None,
    })
}

fn with_progress(op: &str) -> Option<WithProgress> {
    Some(match op {
        "install" => bioxen_vm_packages_install,
        "remove" => bioxen_vm_packages_remove,
        "sync" => bioxen_vm_packages_sync,
        "bootstrap" => bioxen_vm_packages_bootstrap,
        _ => return None,
    })
}

/// A failed call: the status, its name, the last error message and the error object.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: i32,
    pub name: String,
    pub message: String,
    pub detail: Value,
}

unsafe extern "C" fn collect(event: *const c_char, ud: *mut c_void) -> i32 {
    let events = &mut *(ud as *mut Vec<Value>);
    let text = CStr::from_ptr(event).to_string_lossy();
    events.push(serde_json::from_str(&text).expect("progress events are JSON"));
    0
}

/// What a cancelling progress callback saw: the events, and the first event that matches
/// `at` (a step name, or "output" for luarocks' first line) answered with a cancel.
pub struct CancelAt {
    pub at: String,
    pub events: Vec<Value>,
}

unsafe extern "C" fn cancel_at(event: *const c_char, ud: *mut c_void) -> i32 {
    let c = &mut *(ud as *mut CancelAt);
    let text = CStr::from_ptr(event).to_string_lossy();
    let v: Value = serde_json::from_str(&text).expect("progress events are JSON");
    let hit = v["step"] == c.at.as_str() || (c.at == "output" && v["event"] == "output");
    c.events.push(v);
    i32::from(hit)
}

/// As [`pkg_events`], with a callback that cancels at `c.at`.
pub fn pkg_cancel(op: &str, req: &Value, c: &mut CancelAt) -> Result<Value, Failure> {
    pkg_with(op, req, Some(cancel_at), c as *mut CancelAt as *mut c_void)
}

static DATA_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

extern "C" fn remove_data_dir() {
    if let Some(d) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Points the data directory (named environments, the default shared cache) into a
/// scratch directory of this test binary, removed at exit, unless the binary chose one:
/// no test writes under the caller's HOME.
fn isolate_data_dir() {
    DATA_DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("BIOXEN_VM_DATA_DIR") {
            return PathBuf::from(d);
        }
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bioxen-pkgdata-{}", std::process::id()));
        std::env::set_var("BIOXEN_VM_DATA_DIR", &d);
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(remove_data_dir) };
        d
    });
}

/// Calls `bioxen_vm_packages_<op>` with `req`; `events` collects progress events.
pub fn pkg_events(op: &str, req: &Value, events: &mut Vec<Value>) -> Result<Value, Failure> {
    pkg_with(
        op,
        req,
        Some(collect),
        events as *mut Vec<Value> as *mut c_void,
    )
}

fn pkg_with(
    op: &str,
    req: &Value,
    cb: bioxen_vm_progress_fn,
    ud: *mut c_void,
) -> Result<Value, Failure> {
    isolate_data_dir();
    let text = c(&req.to_string());
    let mut out = bioxen_vm_bytes {
        data: std::ptr::null_mut(),
        len: 0,
    };
    let st = unsafe {
        if let Some(f) = plain(op) {
            f(text.as_ptr(), &mut out)
        } else if let Some(f) = with_progress(op) {
            f(text.as_ptr(), cb, ud, &mut out)
        } else {
            panic!("no package function {op}")
        }
    };
    let body = bytes_of(&out);
    unsafe { bioxen_vm_bytes_free(&mut out) };
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("package replies are JSON")
    };
    if st == 0 {
        Ok(v)
    } else {
        Err(Failure {
            status: st,
            name: super::status_name(st),
            message: last_error(),
            detail: v,
        })
    }
}

pub fn pkg(op: &str, req: &Value) -> Result<Value, Failure> {
    let mut ev = Vec::new();
    pkg_events(op, req, &mut ev)
}

/// `pkg` that must succeed.
pub fn ok(op: &str, req: &Value) -> Value {
    pkg(op, req).unwrap_or_else(|f| {
        panic!(
            "{op} {req} failed: {} {}\n{:#}",
            f.name, f.message, f.detail
        )
    })
}

/// `pkg` that must fail with status `name`.
pub fn fails(op: &str, req: &Value, name: &str) -> Failure {
    match pkg(op, req) {
        Ok(v) => panic!("{op} {req} succeeded: {v}"),
        Err(f) => {
            assert_eq!(f.name, name, "{op} {req}: {} {:#}", f.message, f.detail);
            f
        }
    }
}

/// Creates an environment at `path` on `servers`, with its own cache at `cache`.
pub fn create_env(path: &str, servers: &[&str], cache: &str) -> Value {
    ok(
        "create",
        &serde_json::json!({ "path": path, "servers": servers, "cache": cache }),
    )
}

/// Every file under `dir` with its content, relative (for comparing trees).
pub fn tree_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// `python3 -m http.server` on 127.0.0.1 for a directory; stopped by pid when dropped.
pub struct HttpServer {
    child: Child,
    pub port: u16,
}

impl HttpServer {
    pub fn start(dir: &Path) -> HttpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "the HTTP server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        HttpServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `code` in `interp` (lua5.4 or lua5.1) with the module paths of the environment at
/// `env_dir` alone: (success, stdout, stderr).
pub fn run_in_env(interp: &str, env_dir: &str, code: &str) -> (bool, String, String) {
    let v = if interp == "lua5.1" { "5.1" } else { "5.4" };
    let tree = format!("{env_dir}/tree");
    let path = format!("{tree}/share/lua/{v}/?.lua;{tree}/share/lua/{v}/?/init.lua");
    let cpath = format!("{tree}/lib/lua/{v}/?.so");
    let out = Command::new(interp)
        .arg("-e")
        .arg(code)
        .env("LUA_PATH", &path)
        .env("LUA_CPATH", &cpath)
        .env("LUA_PATH_5_4", &path)
        .env("LUA_CPATH_5_4", &cpath)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `installed` list of an install or sync reply: ("name version", from_cache), sorted.
pub fn installed_names(r: &Value) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = r["installed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                format!(
                    "{} {}",
                    x["name"].as_str().unwrap(),
                    x["version"].as_str().unwrap()
                ),
                x["from_cache"].as_bool().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}
