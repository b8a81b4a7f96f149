//! The fake XAPI (tests/rig/fake_xapi.py) from Rust tests: started on free ports, driven
//! through its control endpoint, stopped by its pid (its guests with it) when dropped.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Fake {
    child: Option<Child>,
    pub info: Value,
    agent: ureq::Agent,
}

impl Fake {
    pub fn start() -> Fake {
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/rig/fake_xapi.py"
            ))
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake XAPI");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the fake XAPI says where it listens");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the fake XAPI did not start ({e}): {line:?}"));
        Fake {
            child: Some(child),
            info,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    pub fn s(&self, key: &str) -> String {
        self.info[key].as_str().unwrap_or_default().to_string()
    }

    pub fn control(&self, body: Value) -> Value {
        let url = format!("{}/fake/control", self.s("http"));
        let r = self
            .agent
            .post(&url)
            .send_string(&body.to_string())
            .unwrap_or_else(|e| panic!("fake control {body}: {e}"));
        serde_json::from_str(&r.into_string().unwrap()).unwrap()
    }

    pub fn config(&self, body: Value) {
        let mut b = body;
        b["op"] = "config".into();
        self.control(b);
    }

    pub fn fault(&self, body: Value) {
        let mut b = body;
        b["op"] = "fault".into();
        self.control(b);
    }

    pub fn stats(&self) -> Value {
        self.control(json!({"op": "stats"}))
    }

    pub fn calls(&self, method: &str) -> u64 {
        self.stats()["calls"][method].as_u64().unwrap_or(0)
    }

    /// Objects made since the fake started that still exist, by class.
    pub fn leftovers(&self) -> Value {
        self.control(json!({"op": "leftovers"}))
    }

    /// Waits (bounded) until nothing made since the start is left; panics with what is.
    pub fn assert_clean(&self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let left = self.leftovers();
            if left.as_object().is_some_and(|m| m.is_empty()) {
                return;
            }
            if Instant::now() >= end {
                panic!(
                    "left on the fake XAPI: {}",
                    serde_json::to_string_pretty(&left).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The JSON config of a session on this fake (`https` with the pinned fingerprint).
    pub fn session_config(&self, extra: Value) -> Value {
        let mut c = json!({
            "url": self.s("https"),
            "username": self.s("username"),
            "password": self.s("password"),
            "tls_fingerprint": self.s("fingerprint"),
        });
        if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        c
    }

    pub fn guests(&self) -> Value {
        self.control(json!({"op": "guests"}))
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One fake (and a guest key) for a whole test binary (the shared behaviour suites on
/// xcpng VMs), stopped by its pid when the binary exits (it stops its guests).
pub struct Shared {
    pub fake: Fake,
    pub key: std::path::PathBuf,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static SHARED_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn stop_shared() {
    let pid = SHARED_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: plain syscalls on our own child, at process exit.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    if let Some(s) = SHARED.get() {
        let _ = std::fs::remove_dir_all(s.key.parent().unwrap_or(&s.key));
    }
}

pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let fake = Fake::start();
        fake.config(json!({"guest_delay": 0, "linklocal_delay": 0}));
        SHARED_PID.store(
            fake.child.as_ref().map_or(0, |c| c.id() as i32),
            std::sync::atomic::Ordering::SeqCst,
        );
        let dir =
            std::env::temp_dir().join(format!("bioxen_vm-xcpng-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("key dir");
        let key = dir.join("id");
        super::sshd::keygen(&key, "");
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_shared) };
        Shared { fake, key }
    })
}

impl Shared {
    /// An xcpng VM's options as JSON object members, for the shared suites.
    pub fn members(&self, lua: &str) -> String {
        let f = &self.fake;
        let m = json!({
            "vm_type": "xcpng",
            "xcp_host": f.s("http"),
            "xcp_username": f.s("username"),
            "xcp_password": f.s("password"),
            "template_name": "Debian Bookworm 12",
            "vm_username": f.s("guest_user"),
            "vm_key_file": self.key.to_string_lossy(),
            "guest_port": f.info["guest_port"],
            "expected_ip_cidr": "127.0.0.0/8",
            "lua_executable": lua,
            "boot_timeout": 60,
            "poll_interval": 0.02,
        });
        let text = m.to_string();
        text[1..text.len() - 1].to_string()
    }
}
