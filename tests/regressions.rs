//! Bugs the property test (tests/fuzz_api.rs) found, each pinned by its reproduction.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use std::ptr::null;
use std::time::{Duration, Instant};

fn manager(options: &str) -> u64 {
    let mut m = 0;
    assert_eq!(
        unsafe { bioxen_vm_manager_new(c(options).as_ptr(), &mut m) },
        OK
    );
    m
}

/// `read_output` evaluated every queued line itself before looking at its timeout: with
/// five endless lines (each stopped by a 0.3 s default timeout) a 10 ms read took 1.5 s.
#[test]
fn a_read_evaluates_at_most_the_line_running_when_its_timeout_passes() {
    let m = manager(r#"{"max_workers": 1, "timeout": 0.3}"#);
    let (v0, v1) = (c("v0"), c("v1"));
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m, v0.as_ptr(), null()) },
        OK
    );
    assert_eq!(
        unsafe { bioxen_vm_manager_create_interactive_vm(m, v1.as_ptr(), null(), true) },
        OK
    );
    // The only worker is busy, so the reading thread evaluates the session's input.
    let mut job = 0;
    let spin = "local t = os.clock() while os.clock() - t < 0.25 do end";
    assert_eq!(
        unsafe {
            bioxen_vm_manager_execute_async(
                m,
                v0.as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut job,
            )
        },
        OK
    );
    let lines = "while true do end\n".repeat(5);
    assert_eq!(
        unsafe { bioxen_vm_manager_send_input(m, v1.as_ptr(), lines.as_ptr().cast(), lines.len()) },
        OK
    );
    let t = Instant::now();
    let mut out = bioxen_vm_bytes {
        data: std::ptr::null_mut(),
        len: 0,
    };
    let mut has = false;
    assert_eq!(
        unsafe { bioxen_vm_manager_read_output(m, v1.as_ptr(), 10, 0, &mut out, &mut has) },
        OK
    );
    let took = t.elapsed();
    unsafe { bioxen_vm_bytes_free(&mut out) };
    // At most the line being evaluated (0.3 s) runs past the 10 ms.
    assert!(
        took < Duration::from_millis(900),
        "read_output(10 ms) took {took:?}"
    );
    assert_eq!(bioxen_vm_manager_free(m), OK);
}

/// An interrupt that landed while a process VM restarted its interpreter gave
/// LUA_NOT_FOUND ("no answer within 5 seconds"), which no execute documents.
#[test]
fn an_interrupt_during_a_restart_is_an_interrupt() {
    let vm = TestVm::new(r#"{"vm_type": "process", "lua_executable": "lua5.4"}"#);
    for _ in 0..10 {
        let (st, _) = vm
            .try_exec("while true do end", None, 50)
            .expect_err("stopped");
        assert_eq!(st, S::Timeout.code());
        let h = vm.0;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                unsafe { bioxen_vm_interrupt(h, std::ptr::null_mut()) };
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let r = vm.try_exec("return 1", None, 0);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().unwrap();
        match r {
            Ok(res) => assert_eq!(res.values, serde_json::json!([1])),
            Err((st, msg)) => assert_eq!(st, S::Interrupted.code(), "{msg}"),
        }
    }
}

/// A broadcast racing `shutdown_all` returned SESSION_NOT_FOUND or VM_MANAGER_ERROR after
/// some sessions had the command already.
#[test]
fn a_broadcast_racing_shutdown_all_gives_documented_statuses() {
    for _ in 0..50 {
        let m = manager(r#"{"max_workers": 4}"#);
        for i in 0..3 {
            let id = c(&format!("v{i}"));
            assert_eq!(
                unsafe { bioxen_vm_manager_create_interactive_vm(m, id.as_ptr(), null(), true) },
                OK
            );
        }
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let b2 = barrier.clone();
        let t = std::thread::spawn(move || {
            b2.wait();
            let mut n = 0usize;
            unsafe { bioxen_vm_manager_shutdown_all(m, &mut n) }
        });
        barrier.wait();
        let (pat, cmd) = (c("v*"), "1");
        let mut out = bioxen_vm_bytes {
            data: std::ptr::null_mut(),
            len: 0,
        };
        let st = unsafe {
            bioxen_vm_manager_broadcast_to_sessions(
                m,
                pat.as_ptr(),
                cmd.as_ptr().cast(),
                cmd.len(),
                1000,
                &mut out,
            )
        };
        assert_eq!(t.join().unwrap(), OK);
        assert!(
            st == OK || st == S::VmNotFound.code(),
            "{} {}",
            status_name(st),
            last_error()
        );
        if st == OK {
            unsafe { bioxen_vm_bytes_free(&mut out) };
        }
        assert_eq!(bioxen_vm_manager_free(m), OK);
    }
}

/// A call with a timeout on a VM busy with an endless job waited for the VM without limit.
#[test]
fn a_timeout_covers_waiting_for_a_busy_vm() {
    let m = manager(r#"{"max_workers": 2}"#);
    let v = c("v");
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m, v.as_ptr(), null()) },
        OK
    );
    let mut job = 0;
    let spin = "while true do end";
    assert_eq!(
        unsafe {
            bioxen_vm_manager_execute_async(
                m,
                v.as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut job,
            )
        },
        OK
    );
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let (st, msg) = mexec(m, "v", "return 1", 300).expect_err("the VM is busy");
    assert_eq!(st, S::Timeout.code(), "{msg}");
    assert!(
        msg.starts_with("Lua execution timed out after 0.3 seconds"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_millis(300) + Duration::from_millis(400));
    assert_eq!(bioxen_vm_manager_free(m), OK);
}
