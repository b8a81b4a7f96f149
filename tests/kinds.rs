//! The same code gives the same results on every VM kind: a corpus run on an embedded
//! `basic` VM and on `process` VMs (a child `lua5.4` and `lua5.1` behind the agent), with
//! results compared field by field; and async jobs behave alike on both kinds.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::json;
use std::ptr::{null, null_mut};

/// Every interpreter the process kind is tested with (the test command installs them).
const INTERPRETERS: &[&str] = &["lua5.4", "lua5.1"];

fn process_vm(lua: &str) -> TestVm {
    TestVm::new(&format!(
        r#"{{"vm_type": "process", "lua_executable": "{lua}"}}"#
    ))
}

/// Snippets whose results are the same on Lua 5.1 and 5.4 (and so on every kind).
const PORTABLE: &[(&str, Option<&str>)] = &[
    ("return 2 + 2", None),
    ("print('a', 1)", None),
    ("io.write('x', 1, 'y') io.write('\\n')", None),
    ("print('one') io.write('two') print('three')", None),
    ("io.stderr:write('to stderr\\n') return 'ok'", None),
    ("return 'a', nil, true, false, 0.5, 'tail'", None),
    ("return {1, 2, 3}, {a = 1}, {}", None),
    ("return {nested = {list = {1, {x = 'y'}}}}", None),
    ("return 'caf\\195\\169', 'a\\0b', '\\255x'", None),
    ("return 'quote \" backslash \\\\ newline \\n tab \\t'", None),
    ("return 123456, -7", None),
    ("return 0.1, -2.5, 1e-7", None),
    ("local t = {} t.self = t return t.self == t", None),
    (
        "return ...",
        Some(r#"[1, "two", {"three": 3}, [4, 5], true, 0.25]"#),
    ),
    (
        "local a, b = ... return a.x + b[2]",
        Some(r#"[{"x": 40}, [0, 2]]"#),
    ),
    ("return select('#', ...)", Some("[]")),
    ("return 'ünï', ...", Some(r#"["\u00e9\ud83d\ude00"]"#)),
    ("error('boom')", None),
    ("local function f() error('deep') end f()", None),
    ("error('no position', 0)", None),
    ("local x = = 1", None),
    ("for i = 1, 3 do print(i) end error('after output')", None),
    ("print(('x'):rep(100000))", None),
    ("x = 10", None),
    ("return x", None),
    ("x = x + 1 return x", None),
    ("return type(print), type(string.format)", None),
];

/// Snippets whose results differ between Lua versions: compared with `lua5.4` only.
const LUA54_ONLY: &[&str] = &[
    "return 2^53, 3 // 2, 7 / 2",
    "return 100000000000000, -7",
    "return math.maxinteger, math.mininteger",
    "return 1.0, -0.0, 1e100",
    "return math.huge, -math.huge",
    "return 0x10, 1e15, 2^63",
    "error({code = 1})",
    "error(setmetatable({}, {__tostring = function() return 'custom' end}))",
    "return setmetatable({}, {__tostring = function() return 'shown' end}) ~= nil",
    "return utf8.char(72, 228, 8364)",
];

/// `text` with every `0x<hex>` (addresses in `table: 0x...`) replaced by `0x?`.
fn no_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i + 2]);
        rest = rest[i + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
        out.push('?');
    }
    out.push_str(rest);
    out
}

/// What must match: every field, with the traceback of an error reduced to its first line
/// and the presence of a traceback (frames inside the host differ between kinds).
fn comparable(r: &Res) -> serde_json::Value {
    let first = |s: &str| s.lines().next().unwrap_or("").to_string();
    json!({
        "success": r.success,
        "return_code": r.return_code,
        "stdout": no_addresses(&r.out()),
        "stderr_first_line": first(&r.err()),
        "stderr_has_traceback": r.err().contains("stack traceback:"),
        "values": no_addresses(&r.values.to_string()),
        "error_first_line": first(&r.error),
        "error_has_traceback": r.error.contains("stack traceback:"),
        "dropped": r.dropped,
    })
}

fn compare(basic: &TestVm, other: &TestVm, lua: &str, code: &str, args: Option<&str>) {
    let b = basic.try_exec(code, args, 0).expect("basic");
    let o = other.try_exec(code, args, 0).expect("process");
    assert_eq!(
        comparable(&b),
        comparable(&o),
        "{lua}: results differ for {code:?}\nbasic stderr: {}\n{lua} stderr: {}",
        b.err(),
        o.err()
    );
}

#[test]
fn the_corpus_gives_the_same_results_on_every_kind() {
    for lua in INTERPRETERS {
        let basic = TestVm::new("{}");
        let other = process_vm(lua);
        for (code, args) in PORTABLE {
            compare(&basic, &other, lua, code, *args);
        }
        if *lua == "lua5.4" {
            for code in LUA54_ONLY {
                compare(&basic, &other, lua, code, None);
            }
        }
    }
}

/// `code` through `bioxen_vm_execute_into` with the reused `buffer`, copied out.
fn exec_into(
    vm: &TestVm,
    buffer: *mut bioxen_vm_result_buffer,
    code: &str,
    args: Option<&str>,
) -> Res {
    let a = args.map(c);
    let mut view: *const bioxen_vm_result = null();
    let st = unsafe {
        bioxen_vm_execute_into(
            vm.0,
            code.as_ptr().cast(),
            code.len(),
            a.as_ref().map_or(null(), |a| a.as_ptr()),
            0,
            buffer,
            &mut view,
        )
    };
    assert_eq!(st, OK, "{code:?}: {}", last_error());
    copy_result(unsafe { &*view })
}

#[test]
fn a_reused_result_buffer_gives_the_results_of_execute_on_every_kind() {
    let mut buffer: *mut bioxen_vm_result_buffer = null_mut();
    assert_eq!(unsafe { bioxen_vm_result_buffer_new(&mut buffer) }, OK);
    let kinds = ["{}".to_string()].into_iter().chain(
        INTERPRETERS
            .iter()
            .map(|lua| format!(r#"{{"vm_type": "process", "lua_executable": "{lua}"}}"#)),
    );
    for options in kinds {
        // The same corpus on two VMs of the kind: one through execute, one through
        // execute_into, in the same order (snippets may leave globals behind).
        let (a, b) = (TestVm::new(&options), TestVm::new(&options));
        for (code, args) in PORTABLE {
            let owned = a.try_exec(code, *args, 0).expect("execute");
            let viewed = exec_into(&b, buffer, code, *args);
            assert_eq!(
                comparable(&owned),
                comparable(&viewed),
                "{options}: {code:?}"
            );
        }
    }
    assert_eq!(unsafe { bioxen_vm_result_buffer_free(buffer) }, OK);
}

#[test]
fn not_a_number_and_unusual_values_convert_alike() {
    // NaN prints as the C library prints it; both kinds put its text in the JSON.
    let basic = TestVm::new("{}");
    let other = process_vm("lua5.4");
    for code in ["return 0/0", "return -(0/0)", "return {1, 0/0}"] {
        let b = basic.exec(code);
        let o = other.exec(code);
        assert_eq!(no_addresses(&b.out()), no_addresses(&o.out()), "{code}");
        assert_eq!(b.values, o.values, "{code}");
    }
    // Functions and self-references become their opaque text on both.
    for code in ["return print", "local t = {} t[1] = t return t"] {
        let o = other.exec(code);
        let text = o.values.to_string();
        assert!(
            text.contains("function: ") || text.contains("table: "),
            "{code}: {text}"
        );
    }
}

#[test]
fn binary_chunks_are_refused_by_every_kind() {
    let other = process_vm("lua5.4");
    let r = other.try_exec("\x1bLua", None, 0).unwrap();
    assert!(!r.success);
    assert!(r.error.contains("binary"), "{}", r.error);
}

fn submit(vm: u64, code: &str, timeout_ms: u64) -> u64 {
    let mut j = 0;
    assert_eq!(
        unsafe {
            bioxen_vm_execute_async(
                vm,
                code.as_ptr().cast(),
                code.len(),
                null(),
                timeout_ms,
                &mut j,
            )
        },
        OK,
        "{}",
        last_error()
    );
    j
}

fn wait(j: u64, timeout_ms: u64) -> Result<Res, i32> {
    let mut r = empty_result();
    match unsafe { bioxen_vm_job_wait(j, timeout_ms, &mut r) } {
        OK => Ok(take_result(r)),
        st => Err(st),
    }
}

#[test]
fn async_jobs_behave_alike_on_every_kind() {
    for options in [
        "{}".to_string(),
        r#"{"vm_type": "process", "lua_executable": "lua5.4"}"#.to_string(),
        r#"{"vm_type": "process", "lua_executable": "lua5.1"}"#.to_string(),
    ] {
        let vm = TestVm::new(&options);
        // Submission order on one VM.
        vm.exec("order = ''");
        let jobs: Vec<u64> = (0..20)
            .map(|i| submit(vm.0, &format!("order = order .. '{i},' return {i}"), 0))
            .collect();
        for (i, j) in jobs.iter().enumerate() {
            assert_eq!(wait(*j, 10_000).unwrap().values, json!([i]), "{options}");
            assert_eq!(bioxen_vm_job_free(*j), OK);
        }
        let expected: String = (0..20).map(|i| format!("{i},")).collect();
        assert_eq!(vm.exec("return order").values, json!([expected]));
        // A Lua error is a result; a timeout is the job's status.
        let j = submit(vm.0, "error('async boom')", 0);
        let r = wait(j, 10_000).unwrap();
        assert!(!r.success && r.error.contains("async boom"), "{options}");
        bioxen_vm_job_free(j);
        let j = submit(vm.0, "while true do end", 100);
        assert_eq!(wait(j, 10_000), Err(S::Timeout.code()), "{options}");
        bioxen_vm_job_free(j);
        // Cancelling a running job stops it; a queued one never runs.
        let running = submit(vm.0, "while true do end", 0);
        let queued = submit(vm.0, "never = true", 0);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(unsafe { bioxen_vm_job_cancel(queued, null_mut()) }, OK);
        assert_eq!(unsafe { bioxen_vm_job_cancel(running, null_mut()) }, OK);
        assert_eq!(wait(running, 10_000), Err(S::Cancelled.code()), "{options}");
        assert_eq!(wait(queued, 10_000), Err(S::Cancelled.code()), "{options}");
        bioxen_vm_job_free(running);
        bioxen_vm_job_free(queued);
        assert_eq!(vm.exec("return never").values, json!([null]));
        // The VM goes on.
        assert_eq!(vm.exec("return 1 + 1").out(), "2\n");
    }
}
