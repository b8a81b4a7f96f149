//! Authentication through a running ssh-agent (SSH_AUTH_SOCK): every identity is tried,
//! not only the first. Alone in its binary, because it sets SSH_AUTH_SOCK for the process.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::sshd::*;
use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An ssh-agent in the foreground on a private socket, stopped by its pid.
struct Agent {
    child: std::process::Child,
    sock: std::path::PathBuf,
}

impl Agent {
    fn start(dir: &std::path::Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (Debian package openssh-client)");
        let end = Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            assert!(Instant::now() < end, "ssh-agent did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, sock }
    }

    fn add(&self, key: &std::path::Path) {
        let st = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn try_new(options: &str) -> Result<TestVm, (i32, String)> {
    let mut h = 0;
    let o = c(options);
    match unsafe { bioxen_vm_new(o.as_ptr(), &mut h) } {
        OK => Ok(TestVm(h)),
        st => Err((st, last_error())),
    }
}

#[test]
fn the_agents_identities_are_tried_in_turn() {
    let rig = Sshd::start("");
    let agent = Agent::start(&rig.dir);
    // SAFETY (edition 2021: safe): this binary has this one test, and no other thread
    // reads the environment yet.
    std::env::set_var("SSH_AUTH_SOCK", &agent.sock);
    let options = format!(
        r#"{{"vm_type": "ssh", "host": "127.0.0.1", "port": {}, "username": "{USER}", "known_hosts": {:?}, "lua_executable": "lua5.4"}}"#,
        rig.port,
        rig.known_hosts.display().to_string()
    );
    // An agent without the right key.
    let wrong = rig.dir.join("wrong_key");
    keygen(&wrong, "");
    agent.add(&wrong);
    let (st, msg) = try_new(&options).err().expect("refused");
    assert_eq!(st, S::VmConnectionError.code());
    assert!(
        msg.contains("ssh-agent (no identity was accepted)"),
        "{msg}"
    );
    // The right key as the second identity.
    agent.add(&rig.key);
    let vm = TestVm::new(&options);
    assert_eq!(vm.exec("return 'via agent'").values, json!(["via agent"]));
    assert_eq!(
        vm.info()["auth_method"],
        json!("publickey (ssh-agent identity 2)")
    );
    // use_agent: false leaves the agent alone.
    let (st, msg) = try_new(&options.replace(
        "\"lua_executable\"",
        "\"use_agent\": false, \"lua_executable\"",
    ))
    .err()
    .expect("refused");
    assert_eq!(st, S::VmConnectionError.code());
    assert!(msg.contains("no method to try"), "{msg}");
}
