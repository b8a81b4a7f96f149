//! A host process that exits without freeing its process VMs leaves no interpreter
//! behind: each agent sees its stdin close and exits.
//!
//! The test re-runs its own binary as the host (`BIOXEN_TEST_EXIT_CHILD=1`), which creates
//! VMs, prints their interpreters' pids and exits; the test then waits (bounded) for those
//! pids to be gone.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn host_child() {
    let mut pids = Vec::new();
    let mut m = 0;
    assert_eq!(
        unsafe { bioxen_vm::ffi::bioxen_vm_manager_new(std::ptr::null(), &mut m) },
        OK
    );
    for i in 0..3 {
        let vm = TestVm::new(r#"{"vm_type": "process", "lua_executable": "lua5.4"}"#);
        vm.exec("x = 1");
        pids.push(vm.info()["pid"].as_u64().unwrap());
        std::mem::forget(vm);
        let id = c(&format!("m{i}"));
        let o = c(r#"{"vm_type": "process", "lua_executable": "lua5.1"}"#);
        assert_eq!(
            unsafe { bioxen_vm::ffi::bioxen_vm_manager_create_vm(m, id.as_ptr(), o.as_ptr()) },
            OK
        );
    }
    println!("\nPIDS {}", serde_json::to_string(&pids).unwrap());
    // Exit with everything alive: no free, no shutdown.
    std::process::exit(0);
}

#[test]
fn interpreters_exit_with_their_host() {
    if std::env::var_os("BIOXEN_TEST_EXIT_CHILD").is_some() {
        host_child();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "interpreters_exit_with_their_host",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BIOXEN_TEST_EXIT_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("PIDS "))
        .unwrap_or_else(|| panic!("no pids in {text}"));
    let pids: Vec<u64> = serde_json::from_str(line).unwrap();
    assert_eq!(pids.len(), 3);
    let alive = |p: &u64| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = pids.iter().filter(|p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "interpreters still running after their host exited: {left:?}"
    );
}
