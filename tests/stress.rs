//! Concurrency: races on one VM and many threads on many VMs, each bounded in time.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use std::ptr::null;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Fails the test (by aborting the process) if `f` does not finish within `limit`: a
/// deadlock would otherwise hang the run.
fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let what = what.to_string();
    std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < limit {
            if d.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{what} did not finish within {limit:?}: deadlock?");
        std::process::abort();
    });
    let r = f();
    done.store(true, Ordering::SeqCst);
    r
}

fn exec_raw(vm: u64, src: &str, timeout_ms: u64) -> i32 {
    let mut r = empty_result();
    let st = unsafe {
        bioxen_vm_execute(
            vm,
            src.as_ptr().cast(),
            src.len(),
            null(),
            timeout_ms,
            &mut r,
        )
    };
    if st == OK {
        unsafe { bioxen_vm_result_free(&mut r) };
    }
    st
}

#[test]
fn execute_interrupt_and_free_of_one_vm_raced_from_16_threads() {
    within(Duration::from_secs(60), "16-thread race", || {
        for round in 0..20 {
            let mut vm = 0;
            assert_eq!(unsafe { bioxen_vm_new(null(), &mut vm) }, OK);
            let barrier = Arc::new(Barrier::new(16));
            let threads: Vec<_> = (0..16)
                .map(|t| {
                    let b = barrier.clone();
                    std::thread::spawn(move || {
                        b.wait();
                        let mut seen = Vec::new();
                        for i in 0..20 {
                            let st = match (t + i + round) % 8 {
                                0 => bioxen_vm_free(vm),
                                1 => unsafe { bioxen_vm_interrupt(vm, std::ptr::null_mut()) },
                                2 => exec_raw(
                                    vm,
                                    "local s = 0 for i = 1, 20000 do s = s + i end return s",
                                    0,
                                ),
                                3 => {
                                    let mut j = 0;
                                    let src = "x = (x or 0) + 1";
                                    let st = unsafe {
                                        bioxen_vm_execute_async(
                                            vm,
                                            src.as_ptr().cast(),
                                            src.len(),
                                            null(),
                                            0,
                                            &mut j,
                                        )
                                    };
                                    if st == OK {
                                        bioxen_vm_job_free(j);
                                    }
                                    st
                                }
                                _ => exec_raw(vm, "x = (x or 0) + 1 return x", 50),
                            };
                            seen.push(st);
                        }
                        seen
                    })
                })
                .collect();
            for t in threads {
                for st in t.join().unwrap() {
                    assert!(
                        st == OK || st == S::InvalidHandle.code() || st == S::Interrupted.code(),
                        "unexpected status {}",
                        status_name(st)
                    );
                }
            }
            assert_eq!(
                bioxen_vm_free(vm),
                S::InvalidHandle.code(),
                "freed exactly once by the race"
            );
        }
    });
}

#[test]
fn remove_raced_with_execute_in_a_manager() {
    within(Duration::from_secs(60), "manager race", || {
        let mut m = 0;
        assert_eq!(unsafe { bioxen_vm_manager_new(null(), &mut m) }, OK);
        let id = c("v");
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (stop, ops) = (stop.clone(), ops.clone());
                let id = id.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let st = match t % 4 {
                            0 => unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), null()) },
                            1 => unsafe { bioxen_vm_manager_remove_vm(m, id.as_ptr()) },
                            _ => mexec_status(m, "v", "y = (y or 0) + 1 return y", 0),
                        };
                        assert!(
                            [OK, S::VmNotFound.code(), S::VmAlreadyExists.code()].contains(&st),
                            "{}",
                            status_name(st)
                        );
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        assert!(ops.load(Ordering::Relaxed) > 1000);
        assert_eq!(bioxen_vm_manager_free(m), OK);
    });
}

#[test]
fn eight_threads_on_a_hundred_vms_with_mixed_operations() {
    within(Duration::from_secs(120), "8 x 100", || {
        let mut m = 0;
        let o = c(r#"{"max_workers": 4, "memory_limit": 4000000}"#);
        assert_eq!(unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut m) }, OK);
        let counted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let ids: Vec<_> = (0..100).map(|i| c(&format!("t{t}-vm{i}"))).collect();
                    for id in &ids {
                        assert_eq!(
                            unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), null()) },
                            OK
                        );
                    }
                    let mut jobs = Vec::new();
                    for round in 0..5u64 {
                        for (i, id) in ids.iter().enumerate() {
                            let src = "n = (n or 0) + 1 return n";
                            let st = match (i as u64 + round + t) % 5 {
                                0 | 1 => match mexec(m, id.to_str().unwrap(), src, 0) {
                                    Ok(r) => {
                                        assert!(r.success);
                                        counted.fetch_add(1, Ordering::Relaxed);
                                        OK
                                    }
                                    Err((st, _)) => st,
                                },
                                2 => {
                                    let mut j = 0;
                                    let st = unsafe {
                                        bioxen_vm_manager_execute_async(
                                            m,
                                            id.as_ptr(),
                                            src.as_ptr().cast(),
                                            src.len(),
                                            null(),
                                            0,
                                            &mut j,
                                        )
                                    };
                                    jobs.push(j);
                                    st
                                }
                                3 => {
                                    let mut b = bioxen_vm_bytes {
                                        data: std::ptr::null_mut(),
                                        len: 0,
                                    };
                                    let st = unsafe {
                                        bioxen_vm_manager_vm_info(m, id.as_ptr(), &mut b)
                                    };
                                    unsafe { bioxen_vm_bytes_free(&mut b) };
                                    st
                                }
                                _ => mexec_status(
                                    m,
                                    id.to_str().unwrap(),
                                    "local t = {} for i = 1, 1e7 do t[i] = i end",
                                    5,
                                ),
                            };
                            assert!(
                                [OK, S::MemoryLimit.code(), S::Timeout.code()].contains(&st),
                                "{}: {}",
                                status_name(st),
                                last_error()
                            );
                        }
                    }
                    for j in jobs {
                        let mut r = empty_result();
                        assert_eq!(
                            unsafe { bioxen_vm_job_wait(j, 0, &mut r) },
                            OK,
                            "{}",
                            last_error()
                        );
                        take_result(r);
                        counted.fetch_add(1, Ordering::Relaxed);
                        bioxen_vm_job_free(j);
                    }
                    // Each VM saw every increment aimed at it, in some order.
                    for id in &ids[..10] {
                        let r = mexec(m, id.to_str().unwrap(), "return n", 0).unwrap();
                        assert_eq!(r.values[0].as_u64().unwrap(), 3, "{}", r.out());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counted.load(Ordering::Relaxed), 8 * 100 * 3);
        let mut b = bioxen_vm_bytes {
            data: std::ptr::null_mut(),
            len: 0,
        };
        assert_eq!(unsafe { bioxen_vm_manager_stats(m, &mut b) }, OK);
        assert_eq!(take_json(b)["total_vms"], 800);
        assert_eq!(bioxen_vm_manager_free(m), OK);
    });
}

#[test]
fn different_vms_run_in_parallel() {
    // Two VMs busy at once on two threads: the second must not wait for the first.
    let a = TestVm::new("");
    let b = TestVm::new("");
    let started = Arc::new(Barrier::new(2));
    let s = started.clone();
    let ah = a.0;
    let t = std::thread::spawn(move || {
        s.wait();
        exec_raw(
            ah,
            "local t = os.clock() while os.clock() - t < 0.5 do end",
            0,
        )
    });
    started.wait();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    assert_eq!(exec_raw(b.0, "return 1", 0), OK);
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(t.join().unwrap(), OK);
}

#[test]
fn sessions_raced_from_16_threads() {
    within(Duration::from_secs(90), "session race", || {
        let mut m = 0;
        assert_eq!(
            unsafe { bioxen_vm_manager_new(c(r#"{"max_workers": 3}"#).as_ptr(), &mut m) },
            OK
        );
        let ids: Vec<_> = (0..4).map(|i| c(&format!("s{i}"))).collect();
        for id in &ids {
            assert_eq!(
                unsafe { bioxen_vm_manager_create_interactive_vm(m, id.as_ptr(), null(), true) },
                OK
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (stop, ops, ids) = (stop.clone(), ops.clone(), ids.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let id = &ids[((t as u64 + n) % 4) as usize];
                        let st = match (t + n as usize) % 9 {
                            0..=2 => {
                                let line = format!("x = (x or 0) + 1 print(x) -- {t}\n");
                                unsafe {
                                    bioxen_vm_manager_send_input(
                                        m,
                                        id.as_ptr(),
                                        line.as_ptr().cast(),
                                        line.len(),
                                    )
                                }
                            }
                            3 | 4 => {
                                let mut b = bioxen_vm_bytes {
                                    data: std::ptr::null_mut(),
                                    len: 0,
                                };
                                let mut has = false;
                                let flags = if n.is_multiple_of(2) { 0 } else { 4 };
                                let st = unsafe {
                                    bioxen_vm_manager_read_output(
                                        m,
                                        id.as_ptr(),
                                        20,
                                        flags,
                                        &mut b,
                                        &mut has,
                                    )
                                };
                                unsafe { bioxen_vm_bytes_free(&mut b) };
                                st
                            }
                            5 => {
                                let cmd = "for i = 1, 200 do y = i end";
                                let mut b = bioxen_vm_bytes {
                                    data: std::ptr::null_mut(),
                                    len: 0,
                                };
                                let st = unsafe {
                                    bioxen_vm_manager_execute_interactive_command(
                                        m,
                                        id.as_ptr(),
                                        cmd.as_ptr().cast(),
                                        cmd.len(),
                                        50,
                                        &mut b,
                                    )
                                };
                                unsafe { bioxen_vm_bytes_free(&mut b) };
                                st
                            }
                            6 => unsafe {
                                bioxen_vm_manager_interrupt_session(
                                    m,
                                    id.as_ptr(),
                                    std::ptr::null_mut(),
                                )
                            },
                            7 => {
                                // Detach then attach again (either may find the other state).
                                unsafe { bioxen_vm_manager_detach(m, id.as_ptr()) };
                                unsafe {
                                    bioxen_vm_manager_attach(
                                        m,
                                        id.as_ptr(),
                                        None,
                                        std::ptr::null_mut(),
                                    )
                                }
                            }
                            _ => {
                                if n.is_multiple_of(50) {
                                    // Terminate and bring the session back.
                                    unsafe { bioxen_vm_manager_terminate_session(m, id.as_ptr()) };
                                    unsafe {
                                        bioxen_vm_manager_attach(
                                            m,
                                            id.as_ptr(),
                                            None,
                                            std::ptr::null_mut(),
                                        )
                                    }
                                } else {
                                    let mut b = bioxen_vm_bytes {
                                        data: std::ptr::null_mut(),
                                        len: 0,
                                    };
                                    let st = unsafe { bioxen_vm_manager_list_sessions(m, &mut b) };
                                    unsafe { bioxen_vm_bytes_free(&mut b) };
                                    st
                                }
                            }
                        };
                        assert!(
                            [
                                OK,
                                S::SessionNotFound.code(),
                                S::AttachError.code(),
                                S::DetachError.code(),
                            ]
                            .contains(&st),
                            "{}: {}",
                            status_name(st),
                            last_error()
                        );
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            ops.load(Ordering::Relaxed) > 1000,
            "{}",
            ops.load(Ordering::Relaxed)
        );
        // Every session still answers (recreating the ones a terminate left without one).
        for id in &ids {
            unsafe { bioxen_vm_manager_attach(m, id.as_ptr(), None, std::ptr::null_mut()) };
            let cmd = "'alive'";
            let mut b = bioxen_vm_bytes {
                data: std::ptr::null_mut(),
                len: 0,
            };
            assert_eq!(
                unsafe {
                    bioxen_vm_manager_execute_interactive_command(
                        m,
                        id.as_ptr(),
                        cmd.as_ptr().cast(),
                        cmd.len(),
                        5000,
                        &mut b,
                    )
                },
                OK
            );
            let out = String::from_utf8(bytes_of(&b)).unwrap();
            unsafe { bioxen_vm_bytes_free(&mut b) };
            assert!(out.ends_with("alive\n"), "{out:?}");
        }
        let t = Instant::now();
        assert_eq!(bioxen_vm_manager_free(m), OK);
        assert!(t.elapsed() < Duration::from_secs(6));
    });
}
