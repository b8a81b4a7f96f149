//! Freeing, removing, `shutdown_all` and manager free leave no child, no zombie and no fd
//! behind (alone in its test binary, so that counts are not disturbed by other tests).

mod common;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::json;
use std::ptr::null;
use std::time::{Duration, Instant};

fn opts(lua: &str) -> String {
    format!(r#"{{"vm_type": "process", "lua_executable": "{lua}"}}"#)
}

/// Children of this process that are alive or zombies.
fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|t| t.split_whitespace().nth(1) == Some(&me))
                })
                .unwrap_or(false)
        })
        .count()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn create_execute_remove_cycles_leave_nothing_behind() {
    let mut m = 0;
    let o = c(&opts("lua5.4"));
    assert_eq!(unsafe { bioxen_vm_manager_new(null(), &mut m) }, OK);
    let (fds0, kids0) = (open_fds(), children());
    for i in 0..200 {
        let id = c(&format!("p{i}"));
        assert_eq!(
            unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), o.as_ptr()) },
            OK,
            "{}",
            last_error()
        );
        let r = mexec(m, &format!("p{i}"), "return 1", 0).unwrap();
        assert_eq!(r.values, json!([1]));
        if i % 50 == 7 {
            // Some cycles end with the child dead or killed.
            let _ = mexec(m, &format!("p{i}"), "os.exit(1)", 0);
        }
        assert_eq!(unsafe { bioxen_vm_manager_remove_vm(m, id.as_ptr()) }, OK);
    }
    // Some VMs left for shutdown_all and for freeing the manager.
    for i in 0..5 {
        let id = c(&format!("q{i}"));
        assert_eq!(
            unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), o.as_ptr()) },
            OK
        );
    }
    assert_eq!(
        unsafe { bioxen_vm_manager_shutdown_all(m, std::ptr::null_mut()) },
        OK
    );
    for i in 0..5 {
        let id = c(&format!("r{i}"));
        assert_eq!(
            unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), o.as_ptr()) },
            OK
        );
    }
    assert_eq!(bioxen_vm_manager_free(m), OK);
    // Standalone VMs too, one killed while running.
    for _ in 0..20 {
        let vm = TestVm::new(&opts("lua5.4"));
        let _ = vm.try_exec("while true do end", None, 10);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while (open_fds() > fds0 || children() > kids0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        open_fds() <= fds0,
        "fds: {} before, {} after",
        fds0,
        open_fds()
    );
    assert!(
        children() <= kids0,
        "children: {} before, {} after",
        kids0,
        children()
    );
}
