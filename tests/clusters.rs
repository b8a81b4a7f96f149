//! Per-VM job tracking, clusters, broadcasts, shutdown_all and persistent VMs, through the
//! C ABI.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::{json, Value};
use std::ffi::CStr;
use std::ptr::{null, null_mut};

struct Mgr(u64);

impl Mgr {
    fn new() -> Mgr {
        let mut m = 0;
        assert_eq!(
            unsafe {
                bioxen_vm_manager_new(c(&kind_options(r#""max_workers": 4"#)).as_ptr(), &mut m)
            },
            OK
        );
        Mgr(m)
    }
    fn json(&self, st: i32, b: bioxen_vm_bytes) -> Value {
        assert_eq!(st, OK, "{}", last_error());
        take_json(b)
    }
    fn async_exec(&self, id: &str, code: &str) -> u64 {
        let mut j = 0;
        let st = unsafe {
            bioxen_vm_manager_execute_async(
                self.0,
                c(id).as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                null(),
                0,
                &mut j,
            )
        };
        assert_eq!(st, OK, "{}", last_error());
        j
    }
    fn status(&self, id: &str) -> String {
        let mut s = null();
        assert_eq!(
            unsafe { bioxen_vm_manager_vm_status(self.0, c(id).as_ptr(), &mut s) },
            OK
        );
        unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string()
    }
}

impl Drop for Mgr {
    fn drop(&mut self) {
        bioxen_vm_manager_free(self.0);
    }
}

fn empty() -> bioxen_vm_bytes {
    bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    }
}

#[test]
fn wait_cancel_and_status_track_every_job_of_a_vm() {
    let m = Mgr::new();
    let id = c("v");
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m.0, id.as_ptr(), null()) },
        OK
    );
    assert_eq!(m.status("v"), "idle");
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_manager_wait_for_vm(m.0, id.as_ptr(), 0, &mut r) },
        S::InvalidArgument.code()
    );
    assert_eq!(last_error(), "No running operation found for VM 'v'");
    // Several jobs at once: none is lost (the original kept only the last future).
    let jobs: Vec<u64> = (0..5)
        .map(|i| m.async_exec("v", &format!("n = (n or 0) + 1 return {i}")))
        .collect();
    assert_eq!(
        unsafe { bioxen_vm_manager_wait_for_vm(m.0, id.as_ptr(), 5000, &mut r) },
        OK
    );
    assert_eq!(
        take_result(r).values,
        json!([4]),
        "the most recent job's outcome"
    );
    assert_eq!(mexec(m.0, "v", "return n", 0).unwrap().values, json!([5]));
    assert_eq!(m.status("v"), "done");
    // Cancel every unfinished job.
    let spin = m.async_exec("v", "while true do end");
    let queued = m.async_exec("v", "return 1");
    assert_eq!(m.status("v"), "running");
    let mut cancelled = false;
    assert_eq!(
        unsafe { bioxen_vm_manager_cancel_vm(m.0, id.as_ptr(), &mut cancelled) },
        OK
    );
    assert!(cancelled);
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_job_wait(spin, 5000, &mut r) },
        S::Cancelled.code()
    );
    assert_eq!(
        unsafe { bioxen_vm_job_wait(queued, 5000, &mut r) },
        S::Cancelled.code()
    );
    assert_eq!(m.status("v"), "cancelled");
    assert_eq!(
        unsafe { bioxen_vm_manager_cancel_vm(m.0, id.as_ptr(), &mut cancelled) },
        OK
    );
    assert!(!cancelled);
    for j in jobs.into_iter().chain([spin, queued]) {
        assert_eq!(bioxen_vm_job_free(j), OK);
    }
}

#[test]
fn clusters_broadcast_wait_status_and_cleanup() {
    let m = Mgr::new();
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_create_cluster(m.0, c("web").as_ptr(), 3, null(), &mut b) };
    assert_eq!(m.json(st, b), json!(["web_000", "web_001", "web_002"]));
    let mut b = empty();
    let st = unsafe {
        bioxen_vm_manager_create_cluster(
            m.0,
            c("db").as_ptr(),
            2,
            c(r#"{"memory_limit": 4000000}"#).as_ptr(),
            &mut b,
        )
    };
    assert_eq!(m.json(st, b), json!(["db_000", "db_001"]));
    // All or none: a clash leaves nothing behind.
    let mut b = empty();
    assert_eq!(
        unsafe { bioxen_vm_manager_create_cluster(m.0, c("web").as_ptr(), 4, null(), &mut b) },
        S::VmAlreadyExists.code()
    );
    let mut b = empty();
    assert_eq!(
        unsafe { bioxen_vm_manager_create_cluster(m.0, c("x").as_ptr(), 0, null(), &mut b) },
        S::InvalidArgument.code()
    );
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_cluster_status(m.0, c("*").as_ptr(), &mut b) };
    let status = m.json(st, b);
    assert_eq!(status.as_object().unwrap().len(), 5);
    assert_eq!(status["web_000"], "idle");

    let code = "local i = ... return i * 2, _G.tag";
    let mut b = empty();
    let st = unsafe {
        bioxen_vm_manager_broadcast(
            m.0,
            c("web_*").as_ptr(),
            code.as_ptr().cast(),
            code.len(),
            c("[21]").as_ptr(),
            0,
            &mut b,
        )
    };
    let jobs = m.json(st, b);
    assert_eq!(jobs.as_object().unwrap().len(), 3);
    let mut b = empty();
    let st = unsafe { bioxen_vm_wait_for_cluster(c(&jobs.to_string()).as_ptr(), 5000, &mut b) };
    let results = m.json(st, b);
    for id in ["web_000", "web_001", "web_002"] {
        assert_eq!(results[id]["success"], true);
        assert_eq!(results[id]["values"], json!([42, null]));
        assert_eq!(results[id]["stdout"], "42\tnil\n");
    }
    for h in jobs.as_object().unwrap().values() {
        assert_eq!(bioxen_vm_job_free(h.as_u64().unwrap()), OK);
    }
    // A failing job has the original's shape.
    let spin = "while true do end";
    let mut b = empty();
    let st = unsafe {
        bioxen_vm_manager_broadcast(
            m.0,
            c("db_00[0]").as_ptr(),
            spin.as_ptr().cast(),
            spin.len(),
            null(),
            20,
            &mut b,
        )
    };
    let jobs = m.json(st, b);
    let mut b = empty();
    let st = unsafe { bioxen_vm_wait_for_cluster(c(&jobs.to_string()).as_ptr(), 5000, &mut b) };
    let results = m.json(st, b);
    assert_eq!(results["db_000"]["success"], false);
    assert_eq!(results["db_000"]["return_code"], -1);
    // A process VM adds that its child was restarted.
    assert!(results["db_000"]["stderr"]
        .as_str()
        .unwrap()
        .starts_with("Lua execution timed out after 0.02 seconds"));
    assert_eq!(results["db_000"]["status"], "TIMEOUT");
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_cluster_status(m.0, c("db_*").as_ptr(), &mut b) };
    assert_eq!(m.json(st, b), json!({"db_000": "done", "db_001": "idle"}));
    for h in jobs.as_object().unwrap().values() {
        bioxen_vm_job_free(h.as_u64().unwrap());
    }
    // No match; bad job objects.
    let mut b = empty();
    assert_eq!(
        unsafe {
            bioxen_vm_manager_broadcast(
                m.0,
                c("nope*").as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut b,
            )
        },
        S::VmNotFound.code()
    );
    assert_eq!(last_error(), "No VMs found matching pattern: nope*");
    let mut b = empty();
    assert_eq!(
        unsafe { bioxen_vm_wait_for_cluster(c("[1]").as_ptr(), 0, &mut b) },
        S::InvalidArgument.code()
    );
    assert_eq!(
        unsafe { bioxen_vm_wait_for_cluster(c(r#"{"a": 12345}"#).as_ptr(), 0, &mut b) },
        S::InvalidHandle.code()
    );
    // Cleanup.
    let mut n = 0usize;
    assert_eq!(
        unsafe { bioxen_vm_manager_cleanup_cluster(m.0, c("web_*").as_ptr(), &mut n) },
        OK
    );
    assert_eq!(n, 3);
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_list_vms(m.0, &mut b) };
    assert_eq!(m.json(st, b), json!(["db_000", "db_001"]));
}

#[test]
fn interactive_clusters_and_broadcast_to_attached_sessions() {
    let m = Mgr::new();
    let mut b = empty();
    let st = unsafe {
        bioxen_vm_manager_create_interactive_cluster(m.0, c("s").as_ptr(), 3, null(), &mut b)
    };
    assert_eq!(m.json(st, b), json!(["s_000", "s_001", "s_002"]));
    let cmd = "x = (x or 0) + 1 print('x', x)";
    let mut b = empty();
    assert_eq!(
        unsafe {
            bioxen_vm_manager_broadcast_to_sessions(
                m.0,
                c("s_*").as_ptr(),
                cmd.as_ptr().cast(),
                cmd.len(),
                5000,
                &mut b,
            )
        },
        S::VmNotFound.code()
    );
    assert_eq!(
        last_error(),
        "No attached sessions found matching pattern: s_*"
    );
    for id in ["s_000", "s_002"] {
        assert_eq!(
            unsafe { bioxen_vm_manager_attach(m.0, c(id).as_ptr(), None, null_mut()) },
            OK
        );
    }
    let mut b = empty();
    let st = unsafe {
        bioxen_vm_manager_broadcast_to_sessions(
            m.0,
            c("s_*").as_ptr(),
            cmd.as_ptr().cast(),
            cmd.len(),
            5000,
            &mut b,
        )
    };
    assert_eq!(m.json(st, b), json!({"s_000": "x\t1\n", "s_002": "x\t1\n"}));
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_list_persistent_vms(m.0, &mut b) };
    let p = m.json(st, b);
    assert_eq!(p.as_object().unwrap().len(), 3);
    assert_eq!(p["s_000"]["session_attached"], true);
    assert_eq!(p["s_001"]["session_attached"], false);
    assert_eq!(p["s_001"]["session_active"], true);
    assert_eq!(p["s_001"]["vm_type"], test_kind());
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_vm_info(m.0, c("s_000").as_ptr(), &mut b) };
    let info = m.json(st, b);
    assert_eq!(info["persistent"], true);
    assert_eq!(info["session_exists"], true);
    assert_eq!(info["session_attached"], true);
}

#[test]
fn shutdown_all_never_waits_for_running_code() {
    let m = Mgr::new();
    let mut b = empty();
    let st =
        unsafe { bioxen_vm_manager_create_cluster(m.0, c("busy").as_ptr(), 3, null(), &mut b) };
    m.json(st, b);
    let jobs: Vec<u64> = ["busy_000", "busy_001", "busy_002"]
        .iter()
        .map(|id| m.async_exec(id, "while true do end"))
        .collect();
    assert_eq!(
        unsafe { bioxen_vm_manager_create_interactive_vm(m.0, c("sess").as_ptr(), null(), true) },
        OK
    );
    let spin = "while true do end\n";
    assert_eq!(
        unsafe {
            bioxen_vm_manager_send_input(m.0, c("sess").as_ptr(), spin.as_ptr().cast(), spin.len())
        },
        OK
    );
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t = std::time::Instant::now();
    let mut n = 0usize;
    assert_eq!(unsafe { bioxen_vm_manager_shutdown_all(m.0, &mut n) }, OK);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(n, 4);
    for j in jobs {
        let mut r = empty_result();
        let st = unsafe { bioxen_vm_job_wait(j, 5000, &mut r) };
        assert!(
            st == S::Cancelled.code() || st == S::Interrupted.code(),
            "{}",
            status_name(st)
        );
        bioxen_vm_job_free(j);
    }
    // The manager stays usable.
    let mut b = empty();
    let st = unsafe { bioxen_vm_manager_list_vms(m.0, &mut b) };
    assert_eq!(m.json(st, b), json!([]));
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m.0, c("again").as_ptr(), null()) },
        OK
    );
}
