//! The fake XAPI (tests/rig/fake_xapi.py) from Rust tests: started on free ports, driven
//! through its control endpoint, stopped by its pid (its guests with it) when dropped.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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
