//! Every exported function through the C ABI: success paths, every status path, bad input.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

fn code(s: &str) -> (*const c_char, usize) {
    (s.as_ptr().cast(), s.len())
}

fn new_bytes() -> bioxen_vm_bytes {
    bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    }
}

fn manager(options: &str) -> u64 {
    let mut m = 0;
    let o = c(options);
    assert_eq!(
        unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut m) },
        OK,
        "{}",
        last_error()
    );
    m
}

fn create(m: u64, id: &str, options: &str) -> i32 {
    let (i, o) = (c(id), c(options));
    unsafe { bioxen_vm_manager_create_vm(m, i.as_ptr(), o.as_ptr()) }
}

#[test]
fn version_abi_and_status_names() {
    let v = unsafe { CStr::from_ptr(bioxen_vm_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(bioxen_vm_abi_version(), 1);
    for s in bioxen_vm::status::ALL_STATUSES {
        assert_eq!(status_name(s.code()), s.name());
        assert_eq!(S::from_code(s.code()), Some(*s));
    }
    assert_eq!(status_name(OK), "OK");
    assert_eq!(status_name(-1), "UNKNOWN");
    assert_eq!(status_name(1000), "UNKNOWN");
    // Numbers are part of the ABI: they must never change.
    assert_eq!(S::InvalidHandle.code(), 3);
    assert_eq!(S::Timeout.code(), 6);
    assert_eq!(S::SessionNotFound.code(), 32);
    assert_eq!(S::ProcessRegistryError.code(), 37);
}

#[test]
fn execute_results_follow_the_repl() {
    let vm = TestVm::new("");
    let r = vm.exec("return 2 + 2");
    assert!(r.success);
    assert_eq!(r.return_code, 0);
    assert_eq!(r.out(), "4\n");
    assert_eq!(r.values, serde_json::json!([4]));
    assert_eq!(r.error, "");
    assert_eq!(vm.exec("print('a', 1)").out(), "a\t1\n");
    assert_eq!(
        vm.exec("io.write('x', 1, 2.5) io.write('y')").out(),
        "x12.5y"
    );
    assert_eq!(
        vm.exec("return 1.5, 2.0, 'two', true, nil").out(),
        "1.5\t2.0\ttwo\ttrue\tnil\n"
    );
    let r = vm.exec("return {1, 2, {a = 1}}, {}, {x = {y = 'z'}}");
    assert_eq!(
        r.values,
        serde_json::json!([[1, 2, {"a": 1}], {}, {"x": {"y": "z"}}])
    );
    // What JSON cannot hold becomes its tostring.
    let r = vm.exec("local t = {} t.self = t return print, 0/0, math.huge, t");
    let v = r.values.as_array().unwrap();
    assert!(v[0].as_str().unwrap().starts_with("function: "));
    assert!(v[1].as_str().unwrap().contains("nan"));
    assert_eq!(v[2], "inf");
    assert!(v[3]["self"].as_str().unwrap().starts_with("table: "));
    // __tostring is used for stdout, as the REPL does.
    let r = vm.exec("return setmetatable({}, {__tostring = function() return 'T!' end})");
    assert_eq!(r.out(), "T!\n");
}

#[test]
fn lua_errors_are_results() {
    let vm = TestVm::new("");
    let r = vm.exec("error('boom')");
    assert!(!r.success);
    assert_eq!(r.return_code, 1);
    assert!(r.error.starts_with("(bioxen_vm):1: boom"), "{}", r.error);
    assert!(r.error.contains("stack traceback:"), "{}", r.error);
    assert!(r.err().starts_with("(bioxen_vm):1: boom"), "{}", r.err());
    assert_eq!(r.values, serde_json::json!([]));
    let r = vm.exec("x = ");
    assert!(!r.success);
    assert_eq!(r.return_code, 1);
    assert_eq!(r.error, "(bioxen_vm):1: unexpected symbol near <eof>");
    // Output printed before the error is kept.
    let r = vm.exec("print('before') error({code = 1})");
    assert_eq!(r.out(), "before\n");
    assert!(
        r.error.starts_with("(error object is a table value)"),
        "{}",
        r.error
    );
    // The VM goes on.
    assert_eq!(vm.exec("return 1").values, serde_json::json!([1]));
}

#[test]
fn globals_persist_and_args_arrive_as_varargs() {
    let vm = TestVm::new("");
    vm.exec("x = 41");
    vm.exec("function inc(n) return n + 1 end");
    assert_eq!(vm.exec("return inc(x)").values, serde_json::json!([42]));
    let r = vm
        .try_exec(
            "local a, b, c = ... return a + 1, b, c.k[1], select('#', ...)",
            Some(r#"[1, "two", {"k": [true]}]"#),
            0,
        )
        .unwrap();
    assert_eq!(r.values, serde_json::json!([2, "two", true, 3]));
    // Arguments are data: no code is pasted.
    let r = vm
        .try_exec("return ...", Some(r#"["'); os.exit(1) --"]"#), 0)
        .unwrap();
    assert_eq!(r.values, serde_json::json!(["'); os.exit(1) --"]));
    for bad in ["{\"a\":1}", "1", "[1,", "nope"] {
        let (st, msg) = vm.try_exec("return ...", Some(bad), 0).unwrap_err();
        assert_eq!(st, S::InvalidArgument.code(), "{bad}: {msg}");
    }
    // Empty args text means none.
    assert_eq!(
        vm.try_exec("return select('#', ...)", Some(""), 0)
            .unwrap()
            .values,
        serde_json::json!([0])
    );
}

#[test]
fn empty_and_blank_code_is_invalid() {
    let vm = TestVm::new("");
    for src in ["", "   ", "\n\t \r\n"] {
        let (st, msg) = vm.try_exec(src, None, 0).unwrap_err();
        assert_eq!(st, S::InvalidArgument.code());
        assert_eq!(msg, "Lua code cannot be empty");
    }
    let mut r = empty_result();
    let st = unsafe { bioxen_vm_execute(vm.0, null(), 0, null(), 0, &mut r) };
    assert_eq!(st, S::InvalidArgument.code());
}

#[test]
fn code_and_output_may_hold_nul_and_invalid_utf8() {
    let vm = TestVm::new("");
    let src = b"local s = 'a\0b' print(s) io.write('\\255\\0\\254') return #s";
    let mut r = empty_result();
    let st = unsafe { bioxen_vm_execute(vm.0, src.as_ptr().cast(), src.len(), null(), 0, &mut r) };
    assert_eq!(st, OK, "{}", last_error());
    assert_eq!(r.stdout_text.len, 4 + 3 + 2);
    let r = take_result(r);
    assert_eq!(r.stdout, b"a\0b\n\xff\0\xfe3\n");
    assert_eq!(r.values, serde_json::json!([3]));
    // Invalid UTF-8 in a returned value becomes U+FFFD in JSON.
    let r = vm.exec("return '\\255x'");
    assert_eq!(r.values, serde_json::json!(["\u{fffd}x"]));
}

#[test]
fn ten_megabytes_of_code() {
    let vm = TestVm::new("");
    let mut src = String::from("local t = 0\n");
    while src.len() < 10 << 20 {
        src.push_str("t = t + 1\n");
    }
    src.push_str("return t");
    let r = vm.exec(&src);
    assert!(r.success);
    assert!(r.values[0].as_i64().unwrap() > 1_000_000);
    // A 10 MB syntax error is a result too.
    let bad = "x = ".repeat(10 << 18);
    assert!(!vm.exec(&bad).success);
}

#[test]
fn null_pointers_are_reported() {
    let vm = TestVm::new("");
    let (p, n) = code("return 1");
    let id = c("a");
    let nul = S::NullPointer.code();
    let mut h = 0u64;
    let mut r = empty_result();
    let mut b = new_bytes();
    unsafe {
        assert_eq!(bioxen_vm_new(null(), null_mut()), nul);
        assert_eq!(last_error(), "out_vm must not be NULL");
        assert_eq!(bioxen_vm_execute(vm.0, null(), 5, null(), 0, &mut r), nul);
        assert_eq!(last_error(), "code must not be NULL");
        assert_eq!(bioxen_vm_execute(vm.0, p, n, null(), 0, null_mut()), nul);
        assert_eq!(
            bioxen_vm_execute_async(vm.0, p, n, null(), 0, null_mut()),
            nul
        );
        assert_eq!(
            bioxen_vm_execute_async(vm.0, null(), 3, null(), 0, &mut h),
            nul
        );
        assert_eq!(bioxen_vm_info(vm.0, null_mut()), nul);
        assert_eq!(
            bioxen_vm_interrupt(vm.0, null_mut()),
            OK,
            "out_was_running may be NULL"
        );
        assert_eq!(bioxen_vm_manager_new(null(), null_mut()), nul);
        let m = manager("");
        assert_eq!(bioxen_vm_manager_create_vm(m, null(), null()), nul);
        assert_eq!(
            bioxen_vm_manager_create_vm(m, id.as_ptr(), null()),
            OK,
            "options may be NULL"
        );
        assert_eq!(bioxen_vm_manager_remove_vm(m, null()), nul);
        assert_eq!(
            bioxen_vm_manager_execute(m, null(), p, n, null(), 0, &mut r),
            nul
        );
        assert_eq!(
            bioxen_vm_manager_execute(m, id.as_ptr(), null(), 1, null(), 0, &mut r),
            nul
        );
        assert_eq!(
            bioxen_vm_manager_execute(m, id.as_ptr(), p, n, null(), 0, null_mut()),
            nul
        );
        assert_eq!(
            bioxen_vm_manager_execute_async(m, null(), p, n, null(), 0, &mut h),
            nul
        );
        assert_eq!(
            bioxen_vm_manager_execute_async(m, id.as_ptr(), p, n, null(), 0, null_mut()),
            nul
        );
        assert_eq!(bioxen_vm_manager_interrupt(m, null(), null_mut()), nul);
        assert_eq!(bioxen_vm_manager_vm_info(m, null(), &mut b), nul);
        assert_eq!(bioxen_vm_manager_vm_info(m, id.as_ptr(), null_mut()), nul);
        assert_eq!(bioxen_vm_manager_list_vms(m, null_mut()), nul);
        assert_eq!(bioxen_vm_manager_stats(m, null_mut()), nul);
        let mut job = 0;
        assert_eq!(bioxen_vm_execute_async(vm.0, p, n, null(), 0, &mut job), OK);
        assert_eq!(bioxen_vm_job_wait(job, 0, null_mut()), nul);
        assert_eq!(bioxen_vm_job_status(job, null_mut()), nul);
        assert_eq!(
            bioxen_vm_job_cancel(job, null_mut()),
            OK,
            "out_cancelled may be NULL"
        );
        assert_eq!(bioxen_vm_job_free(job), OK);
        assert_eq!(bioxen_vm_manager_free(m), OK);
        // Freeing NULL is a no-op.
        bioxen_vm_bytes_free(null_mut());
        bioxen_vm_result_free(null_mut());
    }
    // Nothing was lost: the VM still works.
    assert_eq!(vm.exec("return 7").values, serde_json::json!([7]));
}

#[test]
fn invalid_utf8_is_reported() {
    let bad = b"\xff\xfe\0";
    let bad_p: *const c_char = bad.as_ptr().cast();
    let m = manager("");
    assert_eq!(create(m, "ok", ""), OK);
    let (p, n) = code("return 1");
    let mut h = 0;
    let mut r = empty_result();
    let u = S::InvalidUtf8.code();
    unsafe {
        assert_eq!(bioxen_vm_new(bad_p, &mut h), u);
        assert_eq!(last_error(), "options_json is not valid UTF-8");
        assert_eq!(bioxen_vm_manager_new(bad_p, &mut h), u);
        assert_eq!(bioxen_vm_manager_create_vm(m, bad_p, null()), u);
        assert_eq!(
            bioxen_vm_manager_execute(m, bad_p, p, n, null(), 0, &mut r),
            u
        );
        let ok = c("ok");
        assert_eq!(
            bioxen_vm_manager_execute(m, ok.as_ptr(), p, n, bad_p, 0, &mut r),
            u
        );
        assert_eq!(bioxen_vm_manager_remove_vm(m, bad_p), u);
        bioxen_vm_manager_free(m);
    }
}

#[test]
fn handles_are_checked() {
    let vm = TestVm::new("");
    let m = manager("");
    let mut r = empty_result();
    let (p, n) = code("return 1");
    let inv = S::InvalidHandle.code();
    unsafe {
        // Zero, garbage, and a handle of another kind.
        for h in [0u64, 12345, u64::MAX, m] {
            assert_eq!(bioxen_vm_execute(h, p, n, null(), 0, &mut r), inv, "{h:#x}");
        }
        assert!(last_error().contains("is not a live VM handle"));
        assert_eq!(
            bioxen_vm_manager_create_vm(vm.0, c("x").as_ptr(), null()),
            inv
        );
        assert_eq!(bioxen_vm_job_free(vm.0), inv);
        // Freeing zero is a no-op, freeing twice is an error, a stale handle stays invalid.
        assert_eq!(bioxen_vm_free(0), OK);
        assert_eq!(bioxen_vm_manager_free(0), OK);
        assert_eq!(bioxen_vm_job_free(0), OK);
        let mut h = 0;
        assert_eq!(bioxen_vm_new(null(), &mut h), OK);
        assert_eq!(bioxen_vm_free(h), OK);
        assert_eq!(bioxen_vm_free(h), inv);
        assert_eq!(bioxen_vm_execute(h, p, n, null(), 0, &mut r), inv);
        let mut h2 = 0;
        assert_eq!(bioxen_vm_new(null(), &mut h2), OK);
        assert_ne!(h, h2, "handles are never reused");
        assert_eq!(bioxen_vm_free(h2), OK);
        assert_eq!(bioxen_vm_manager_free(m), OK);
        assert_eq!(bioxen_vm_manager_free(m), inv);
        assert_eq!(bioxen_vm_manager_stats(m, &mut new_bytes()), inv);
    }
    assert_eq!(vm.exec("return 1").values, serde_json::json!([1]));
}

#[test]
fn options_are_validated() {
    let mut h = 0;
    let cases = [
        (
            r#"{"vm_type":"nope"}"#,
            "Unknown VM type: nope. Supported types: basic, process, ssh, xcpng",
        ),
        (
            r#"{"sandbox":"loose"}"#,
            "Unknown sandbox: loose. Supported: default, trusted",
        ),
        (r#"{"colour":"red"}"#, "unknown VM option 'colour'"),
        (
            r#"{"memory_limit":-1}"#,
            "option 'memory_limit' must be a non-negative integer",
        ),
        (
            r#"{"memory_limit":1000}"#,
            "option 'memory_limit' must be at least 262144 bytes",
        ),
        (
            r#"{"timeout":"5"}"#,
            "option 'timeout' must be a non-negative number of seconds",
        ),
        (
            r#"{"debug_mode":1}"#,
            "option 'debug_mode' must be true or false",
        ),
        ("[1]", "VM options must be a JSON object"),
        ("{", "VM options is not valid JSON"),
    ];
    for (o, msg) in cases {
        let oc = c(o);
        assert_eq!(
            unsafe { bioxen_vm_new(oc.as_ptr(), &mut h) },
            S::InvalidArgument.code(),
            "{o}"
        );
        assert!(last_error().starts_with(msg), "{o}: {}", last_error());
    }
    // An xcpng VM without its pool: the original's check and words.
    let oc = c(r#"{"vm_type":"xcpng"}"#);
    assert_eq!(
        unsafe { bioxen_vm_new(oc.as_ptr(), &mut h) },
        S::VmManagerError.code()
    );
    assert_eq!(last_error(), "Missing required configuration: xcp_host");
    let oc = c(r#"{"vm_type":"ssh"}"#);
    assert_eq!(
        unsafe { bioxen_vm_new(oc.as_ptr(), &mut h) },
        S::InvalidArgument.code()
    );
    assert_eq!(last_error(), "an ssh VM needs the option 'host'");
    let oc = c(r#"{"networked":true, "lua_executable": "no-lua-here"}"#);
    assert_eq!(
        unsafe { bioxen_vm_new(oc.as_ptr(), &mut h) },
        S::LuaNotFound.code()
    );
    let mut m = 0;
    for o in [
        r#"{"max_workers":0}"#,
        r#"{"max_workers":"2"}"#,
        r#"{"vm_type":"lisp"}"#,
        r#"{"networked":true}"#,
    ] {
        let oc = c(o);
        assert_eq!(
            unsafe { bioxen_vm_manager_new(oc.as_ptr(), &mut m) },
            S::InvalidArgument.code(),
            "{o}"
        );
    }
}

#[test]
fn manager_lifecycle_with_the_original_messages() {
    let m = manager(r#"{"max_workers": 2, "memory_limit": 8000000, "lua_executable": "lua5.4"}"#);
    assert_eq!(create(m, "a", ""), OK);
    assert_eq!(create(m, "b", r#"{"persistent": true}"#), OK);
    assert_eq!(create(m, "a", ""), S::VmAlreadyExists.code());
    assert_eq!(last_error(), "VM with ID 'a' already exists");
    assert_eq!(create(m, "", ""), S::InvalidArgument.code());
    assert_eq!(
        create(m, "c", r#"{"vm_type":"lisp"}"#),
        S::InvalidArgument.code()
    );
    assert_eq!(
        last_error(),
        "Unknown VM type: lisp. Supported types: basic, process, ssh, xcpng"
    );
    let (st, msg) = mexec(m, "zzz", "return 1", 0).unwrap_err();
    assert_eq!(
        (st, msg.as_str()),
        (S::VmNotFound.code(), "VM 'zzz' not found")
    );
    mexec(m, "a", "x = 'from a'", 0).unwrap();
    assert_eq!(
        mexec(m, "a", "return x", 0).unwrap().values,
        serde_json::json!(["from a"])
    );
    assert_eq!(
        mexec(m, "b", "return x", 0).unwrap().values,
        serde_json::json!([null]),
        "VMs are isolated"
    );
    let mut b = new_bytes();
    unsafe {
        assert_eq!(bioxen_vm_manager_list_vms(m, &mut b), OK);
        assert_eq!(take_json(b), serde_json::json!(["a", "b"]));
        let mut b = new_bytes();
        assert_eq!(bioxen_vm_manager_vm_info(m, c("b").as_ptr(), &mut b), OK);
        let info = take_json(b);
        assert_eq!(info["vm_id"], "b");
        assert_eq!(info["vm_type"], "basic");
        assert_eq!(info["persistent"], true);
        assert_eq!(info["memory_limit"], 8000000, "manager defaults apply");
        assert_eq!(info["session_exists"], false);
        assert_eq!(info["interactive_capable"], true);
        assert!(info["memory_used"].as_u64().unwrap() > 1000);
        let mut b = new_bytes();
        assert_eq!(
            bioxen_vm_manager_vm_info(m, c("q").as_ptr(), &mut b),
            S::VmNotFound.code()
        );
        let mut b = new_bytes();
        assert_eq!(bioxen_vm_manager_stats(m, &mut b), OK);
        let stats = take_json(b);
        assert_eq!(stats["total_vms"], 2);
        assert_eq!(stats["basic_vms"], 2);
        assert_eq!(stats["networked_vms"], 0);
        assert_eq!(stats["persistent_vms"], 1);
        assert_eq!(stats["max_workers"], 2);
        assert_eq!(stats["lua_executable"], "lua5.4");
        for k in [
            "interactive_sessions",
            "attached_sessions",
            "running_operations",
            "completed_operations",
        ] {
            assert!(stats.get(k).is_some(), "{k}");
        }
        let mut was = true;
        assert_eq!(
            bioxen_vm_manager_interrupt(m, c("a").as_ptr(), &mut was),
            OK
        );
        assert!(!was);
        assert_eq!(
            bioxen_vm_manager_interrupt(m, c("q").as_ptr(), &mut was),
            S::VmNotFound.code()
        );
        assert_eq!(bioxen_vm_manager_remove_vm(m, c("a").as_ptr()), OK);
        assert_eq!(
            bioxen_vm_manager_remove_vm(m, c("a").as_ptr()),
            S::VmNotFound.code()
        );
        assert_eq!(last_error(), "VM 'a' not found");
        assert_eq!(create(m, "a", ""), OK, "a removed id is free again");
        assert_eq!(
            mexec(m, "a", "return x", 0).unwrap().values,
            serde_json::json!([null])
        );
        assert_eq!(bioxen_vm_manager_free(m), OK);
    }
}

#[test]
fn async_jobs() {
    let m = manager(r#"{"max_workers": 2}"#);
    assert_eq!(create(m, "a", ""), OK);
    assert_eq!(create(m, "b", ""), OK);
    let id = c("a");
    // Jobs on one VM run in submission order.
    let mut jobs = Vec::new();
    for i in 0..50 {
        let src = format!("seq = (seq or '') .. '{i},' return {i}");
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
        assert_eq!(st, OK, "{}", last_error());
        jobs.push(j);
    }
    for (i, j) in jobs.iter().enumerate() {
        let mut r = empty_result();
        assert_eq!(unsafe { bioxen_vm_job_wait(*j, 0, &mut r) }, OK);
        assert_eq!(take_result(r).values, serde_json::json!([i]));
        // Waiting again gives the same outcome.
        let mut r = empty_result();
        assert_eq!(unsafe { bioxen_vm_job_wait(*j, 10, &mut r) }, OK);
        assert_eq!(take_result(r).values, serde_json::json!([i]));
        let mut s = null();
        assert_eq!(unsafe { bioxen_vm_job_status(*j, &mut s) }, OK);
        assert_eq!(unsafe { CStr::from_ptr(s) }.to_str().unwrap(), "done");
        let mut cancelled = true;
        assert_eq!(unsafe { bioxen_vm_job_cancel(*j, &mut cancelled) }, OK);
        assert!(!cancelled, "a finished job cannot be cancelled");
        assert_eq!(bioxen_vm_job_free(*j), OK);
        assert_eq!(bioxen_vm_job_free(*j), S::InvalidHandle.code());
    }
    let expect: String = (0..50).map(|i| format!("{i},")).collect();
    assert_eq!(
        mexec(m, "a", "return seq", 0).unwrap().values,
        serde_json::json!([expect])
    );

    // A running job: wait times out, cancel interrupts it, the VM keeps its state.
    let spin = "while true do end";
    let mut j = 0;
    unsafe {
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut j
            ),
            OK
        );
        // A job queued behind it.
        let mut queued = 0;
        let q = "return 'never'";
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                q.as_ptr().cast(),
                q.len(),
                null(),
                0,
                &mut queued
            ),
            OK
        );
        let mut r = empty_result();
        assert_eq!(bioxen_vm_job_wait(j, 30, &mut r), S::WaitTimeout.code());
        let mut s = null();
        assert_eq!(bioxen_vm_job_status(j, &mut s), OK);
        assert_eq!(CStr::from_ptr(s).to_str().unwrap(), "running");
        let mut cancelled = false;
        assert_eq!(bioxen_vm_job_cancel(queued, &mut cancelled), OK);
        assert!(cancelled);
        assert_eq!(bioxen_vm_job_cancel(j, &mut cancelled), OK);
        assert!(cancelled);
        assert_eq!(bioxen_vm_job_wait(j, 5000, &mut r), S::Cancelled.code());
        assert_eq!(
            bioxen_vm_job_wait(queued, 5000, &mut r),
            S::Cancelled.code()
        );
        assert_eq!(bioxen_vm_job_status(j, &mut s), OK);
        assert_eq!(CStr::from_ptr(s).to_str().unwrap(), "cancelled");
        bioxen_vm_job_free(j);
        bioxen_vm_job_free(queued);
    }
    assert_eq!(
        mexec(m, "a", "return seq ~= nil", 0).unwrap().values,
        serde_json::json!([true])
    );

    // A job's own failure is the wait's status; timeouts apply to jobs.
    unsafe {
        let mut j = 0;
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                c("b").as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                20,
                &mut j
            ),
            OK
        );
        let mut r = empty_result();
        assert_eq!(bioxen_vm_job_wait(j, 0, &mut r), S::Timeout.code());
        assert_eq!(last_error(), "Lua execution timed out after 0.02 seconds");
        bioxen_vm_job_free(j);
        // Empty code is refused at submission.
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                " ".as_ptr().cast(),
                1,
                null(),
                0,
                &mut j
            ),
            S::InvalidArgument.code()
        );
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                c("zz").as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut j
            ),
            S::VmNotFound.code()
        );
    }

    // Freeing the manager interrupts running work and cancels what is queued; job handles stay valid.
    let mut j = 0;
    let mut q = 0;
    unsafe {
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut j
            ),
            OK
        );
        assert_eq!(
            bioxen_vm_manager_execute_async(
                m,
                id.as_ptr(),
                spin.as_ptr().cast(),
                spin.len(),
                null(),
                0,
                &mut q
            ),
            OK
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t = std::time::Instant::now();
        assert_eq!(bioxen_vm_manager_free(m), OK);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        let mut r = empty_result();
        assert_eq!(bioxen_vm_job_wait(j, 2000, &mut r), S::Interrupted.code());
        assert_eq!(bioxen_vm_job_wait(q, 2000, &mut r), S::Cancelled.code());
        bioxen_vm_job_free(j);
        bioxen_vm_job_free(q);
    }
}

#[test]
fn standalone_async_and_free_with_queued_jobs() {
    let vm = TestVm::new("");
    let src = "return 6 * 7";
    let mut j = 0;
    unsafe {
        assert_eq!(
            bioxen_vm_execute_async(
                vm.0,
                src.as_ptr().cast(),
                src.len(),
                c("[]").as_ptr(),
                0,
                &mut j
            ),
            OK
        );
        let mut r = empty_result();
        assert_eq!(bioxen_vm_job_wait(j, 0, &mut r), OK);
        assert_eq!(take_result(r).values, serde_json::json!([42]));
        bioxen_vm_job_free(j);
        // Free a VM with a running job and a queued one: the queued one is cancelled.
        let mut h = 0;
        assert_eq!(bioxen_vm_new(null(), &mut h), OK);
        let spin = "local t = os.clock() while os.clock() - t < 0.1 do end return 1";
        let (mut a, mut b) = (0, 0);
        assert_eq!(
            bioxen_vm_execute_async(h, spin.as_ptr().cast(), spin.len(), null(), 0, &mut a),
            OK
        );
        assert_eq!(
            bioxen_vm_execute_async(h, spin.as_ptr().cast(), spin.len(), null(), 0, &mut b),
            OK
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(bioxen_vm_free(h), OK);
        let mut r = empty_result();
        assert_eq!(
            bioxen_vm_job_wait(a, 0, &mut r),
            OK,
            "the running job finishes"
        );
        bioxen_vm_result_free(&mut r);
        assert_eq!(bioxen_vm_job_wait(b, 0, &mut r), S::Cancelled.code());
        bioxen_vm_job_free(a);
        bioxen_vm_job_free(b);
    }
}

#[test]
fn result_and_bytes_free_twice_is_harmless() {
    let vm = TestVm::new("");
    let mut r = empty_result();
    let (p, n) = code("print('x') return 1");
    unsafe {
        assert_eq!(bioxen_vm_execute(vm.0, p, n, null(), 0, &mut r), OK);
        bioxen_vm_result_free(&mut r);
        bioxen_vm_result_free(&mut r);
        assert_eq!(r.stdout_text.len, 0);
        let mut zeroed = empty_result();
        bioxen_vm_result_free(&mut zeroed);
        let mut b = new_bytes();
        assert_eq!(bioxen_vm_info(vm.0, &mut b), OK);
        assert!(b.len > 0);
        assert_eq!(*b.data.add(b.len), 0, "NUL-terminated");
        bioxen_vm_bytes_free(&mut b);
        bioxen_vm_bytes_free(&mut b);
        // Empty outputs still point at a valid empty C string.
        assert_eq!(bioxen_vm_execute(vm.0, p, n, null(), 0, &mut r), OK);
        assert_eq!(r.error_message.len, 0);
        assert!(!r.error_message.data.is_null());
        assert_eq!(*r.error_message.data, 0);
        bioxen_vm_result_free(&mut r);
    }
}

#[test]
fn last_error_is_per_thread_and_cleared_on_success() {
    let vm = TestVm::new("");
    assert!(vm.try_exec("", None, 0).is_err());
    assert_eq!(last_error(), "Lua code cannot be empty");
    std::thread::spawn(|| assert_eq!(last_error(), ""))
        .join()
        .unwrap();
    vm.exec("return 1");
    assert!(bioxen_vm_last_error_message().is_null());
}

#[test]
fn log_callback_sees_records_on_any_thread() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    static DEBUG_VM: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn cb(
        level: i32,
        target: *const c_char,
        msg: *const c_char,
        ud: *mut std::ffi::c_void,
    ) {
        assert_eq!(ud as usize, 0x1234);
        assert!((1..=5).contains(&level));
        let t = CStr::from_ptr(target).to_str().unwrap();
        let m = CStr::from_ptr(msg).to_str().unwrap();
        assert!(t.starts_with("bioxen_vm"), "{t}");
        SEEN.fetch_add(1, Ordering::SeqCst);
        if m.contains("'chatty'") && level == 3 {
            DEBUG_VM.fetch_add(1, Ordering::SeqCst);
        }
    }
    assert_eq!(
        bioxen_vm_set_log_callback(Some(cb), 0x1234 as *mut _, 9),
        S::InvalidArgument.code()
    );
    assert_eq!(
        bioxen_vm_set_log_callback(Some(cb), 0x1234 as *mut _, 3),
        OK
    );
    let m = manager("");
    assert_eq!(create(m, "chatty", r#"{"debug_mode": true}"#), OK);
    assert_eq!(create(m, "quiet", ""), OK);
    std::thread::spawn(move || {
        mexec(m, "chatty", "return 1", 0).unwrap();
        mexec(m, "quiet", "return 1", 0).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(
        DEBUG_VM.load(Ordering::SeqCst),
        1,
        "a debug_mode VM logs its executions at info"
    );
    assert_eq!(bioxen_vm_set_log_callback(None, null_mut(), 0), OK);
    let before = SEEN.load(Ordering::SeqCst);
    mexec(m, "chatty", "return 1", 0).unwrap();
    assert_eq!(
        SEEN.load(Ordering::SeqCst),
        before,
        "no records after removal"
    );
    bioxen_vm_manager_free(m);
}

#[test]
fn panics_become_statuses_and_poison_the_vm() {
    let st = bioxen_vm::ffi::boundary::call(|| panic!("deliberate"));
    assert_eq!(st, S::Panic.code());
    assert!(last_error().contains("deliberate"), "{}", last_error());
    let vm = bioxen_vm::vm::Vm::new("p", Default::default()).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        vm.with_backend_for_test(|| panic!("while holding the VM"))
    }));
    assert!(r.is_err());
    let req = bioxen_vm::vm::ExecRequest {
        code: b"return 1",
        args: None,
        chunk_name: None,
    };
    let e = vm.execute(&req, None).unwrap_err();
    assert_eq!(e.status(), S::VmPoisoned);
    // Other VMs are unaffected.
    assert_eq!(
        TestVm::new("").exec("return 1").values,
        serde_json::json!([1])
    );
}

#[test]
fn freeing_a_vm_stops_finalizers_that_resume_old_coroutines() {
    let vm = TestVm::new("");
    vm.exec(
        "co = coroutine.create(function() while true do end end)
         keep = setmetatable({}, {__gc = function() coroutine.resume(co) end})",
    );
    let t = std::time::Instant::now();
    drop(vm);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
}
