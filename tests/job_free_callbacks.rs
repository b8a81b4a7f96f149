//! Freeing a job's handle before it finishes keeps its on-done callbacks: they still run,
//! once, when the job ends, also when its manager is freed while it runs or waits.

mod common;
use bioxen_vm::ffi::*;
use common::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

static CALLED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn on_done(_job: u64, _status: i32, _ud: *mut c_void) {
    CALLED.fetch_add(1, SeqCst);
}

#[test]
fn callbacks_of_freed_job_handles_run_when_the_manager_goes() {
    let mut m = 0;
    assert_eq!(
        unsafe { bioxen_vm_manager_new(std::ptr::null(), &mut m) },
        OK
    );
    let id = c("a");
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), std::ptr::null()) },
        OK
    );
    let code = "while true do end";
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let mut job = 0;
        let st = unsafe {
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                0,
                &mut job,
            )
        };
        assert_eq!(st, OK);
        assert_eq!(
            bioxen_vm_job_on_done(job, Some(on_done), std::ptr::null_mut()),
            OK
        );
        jobs.push(job);
    }
    std::thread::sleep(Duration::from_millis(100));
    for j in jobs {
        assert_eq!(bioxen_vm_job_free(j), OK);
    }
    let t = Instant::now();
    assert_eq!(bioxen_vm_manager_free(m), OK);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let end = Instant::now() + Duration::from_secs(3);
    while CALLED.load(SeqCst) < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(CALLED.load(SeqCst), 3);
}
