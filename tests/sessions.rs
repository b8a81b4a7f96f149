//! Interactive sessions through the C ABI: REPL semantics, attach/detach, reads, errors.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};
use std::sync::Mutex;

struct Mgr(u64);

impl Mgr {
    fn new() -> Mgr {
        let mut m = 0;
        let o = c(&kind_options(""));
        assert_eq!(
            unsafe { bioxen_vm_manager_new(o.as_ptr(), &mut m) },
            OK,
            "{}",
            last_error()
        );
        Mgr(m)
    }
    fn interactive(&self, id: &str, attach: bool) {
        let id = c(id);
        assert_eq!(
            unsafe { bioxen_vm_manager_create_interactive_vm(self.0, id.as_ptr(), null(), attach) },
            OK,
            "{}",
            last_error()
        );
    }
    fn send(&self, id: &str, input: &str) -> i32 {
        let id = c(id);
        unsafe {
            bioxen_vm_manager_send_input(self.0, id.as_ptr(), input.as_ptr().cast(), input.len())
        }
    }
    fn read(&self, id: &str, timeout_ms: u64, flags: i32) -> Option<String> {
        let idc = c(id);
        let mut b = bioxen_vm_bytes {
            data: null_mut(),
            len: 0,
        };
        let mut has = false;
        let st = unsafe {
            bioxen_vm_manager_read_output(self.0, idc.as_ptr(), timeout_ms, flags, &mut b, &mut has)
        };
        assert_eq!(st, OK, "{}", last_error());
        let s = String::from_utf8(bytes_of(&b)).unwrap();
        unsafe { bioxen_vm_bytes_free(&mut b) };
        has.then_some(s)
    }
    fn command(&self, id: &str, cmd: &str) -> String {
        let idc = c(id);
        let mut b = bioxen_vm_bytes {
            data: null_mut(),
            len: 0,
        };
        let st = unsafe {
            bioxen_vm_manager_execute_interactive_command(
                self.0,
                idc.as_ptr(),
                cmd.as_ptr().cast(),
                cmd.len(),
                5000,
                &mut b,
            )
        };
        assert_eq!(st, OK, "{}", last_error());
        let s = String::from_utf8(bytes_of(&b)).unwrap();
        unsafe { bioxen_vm_bytes_free(&mut b) };
        s
    }
}

impl Drop for Mgr {
    fn drop(&mut self) {
        bioxen_vm_manager_free(self.0);
    }
}

#[test]
fn a_session_reads_back_like_the_repl_without_a_terminal() {
    let m = Mgr::new();
    m.interactive("s", true);
    assert_eq!(m.send("s", "x = 42\n"), OK);
    assert_eq!(m.send("s", "print('Value:', x)\n"), OK);
    assert_eq!(m.read("s", 5000, 0).as_deref(), Some("Value:\t42\n"));
    // Nothing buffered: no output at all (None in the bindings).
    assert_eq!(m.read("s", 0, 0), None);
    assert_eq!(m.read("s", 50, 0), None);
    // A bare expression prints its value; `=expr` works; several values are tab-separated.
    assert_eq!(m.command("s", "1 + 1"), "2\n");
    assert_eq!(m.command("s", "=x * 2"), "84\n");
    assert_eq!(m.command("s", "x, 'two', nil"), "42\ttwo\tnil\n");
    // Statements print nothing.
    assert_eq!(m.command("s", "local y = 1"), "");
}

#[test]
fn incomplete_chunks_wait_for_more_lines() {
    let m = Mgr::new();
    m.interactive("s", true);
    for line in [
        "function add(a, b)",
        "  local s = a + b",
        "  return s",
        "end",
    ] {
        assert_eq!(m.send("s", &format!("{line}\n")), OK);
    }
    assert_eq!(
        m.read("s", 5000, 0),
        None,
        "defining a function prints nothing"
    );
    assert_eq!(m.command("s", "add(2, 3)"), "5\n");
    // Several lines in one send, the last one without a newline.
    assert_eq!(
        m.command("s", "for i = 1, 3 do\nio.write(i, ' ')\nend"),
        "1 2 3 "
    );
    // A string spanning lines.
    assert_eq!(m.command("s", "s = [[a\nb]] print(#s)"), "3\n");
}

#[test]
fn errors_go_to_stderr_and_the_session_goes_on() {
    let m = Mgr::new();
    m.interactive("s", true);
    m.send("s", "error('boom')\n");
    m.send("s", "print('after')\n");
    let both = m.read("s", 5000, 0).unwrap();
    assert!(
        both.starts_with("stdin:1: boom\nstack traceback:"),
        "{both}"
    );
    assert!(both.ends_with("after\n"), "{both}");
    // Streams apart.
    m.send("s", "print('out') io.stderr:write('err') x = = 1\n");
    let err = m.read("s", 5000, BIOXEN_VM_READ_STDERR_FLAG).unwrap();
    assert!(
        err.starts_with("stdin:1: unexpected symbol near '='"),
        "{err}"
    );
    assert_eq!(m.read("s", 0, 0), None, "a syntax error runs nothing");
    m.send("s", "print('out') io.stderr:write('err')\n");
    assert_eq!(
        m.read("s", 5000, BIOXEN_VM_READ_STDOUT_FLAG).as_deref(),
        Some("out\n")
    );
    assert_eq!(
        m.read("s", 0, BIOXEN_VM_READ_STDERR_FLAG).as_deref(),
        Some("err")
    );
}

const BIOXEN_VM_READ_STDOUT_FLAG: i32 = bioxen_vm_read::Stdout as i32;
const BIOXEN_VM_READ_STDERR_FLAG: i32 = bioxen_vm_read::Stderr as i32;

#[test]
fn session_and_execute_share_the_vm_state() {
    let m = Mgr::new();
    m.interactive("s", false);
    mexec(m.0, "s", "shared = 'from execute'", 0).unwrap();
    assert_eq!(m.command("s", "shared"), "from execute\n");
    m.command("s", "back = 7");
    assert_eq!(
        mexec(m.0, "s", "return back", 0).unwrap().values,
        serde_json::json!([7])
    );
}

#[test]
fn attach_detach_and_their_errors() {
    let m = Mgr::new();
    m.interactive("s", false);
    let id = c("s");
    let mut attached = true;
    unsafe {
        assert_eq!(
            bioxen_vm_manager_is_attached(m.0, id.as_ptr(), &mut attached),
            OK
        );
        assert!(!attached);
        assert_eq!(
            bioxen_vm_manager_detach(m.0, id.as_ptr()),
            S::DetachError.code()
        );
        assert_eq!(last_error(), "Session 's' is not attached");
        assert_eq!(
            bioxen_vm_manager_attach(m.0, id.as_ptr(), None, null_mut()),
            OK
        );
        assert_eq!(
            bioxen_vm_manager_attach(m.0, id.as_ptr(), None, null_mut()),
            S::AttachError.code()
        );
        assert_eq!(last_error(), "Session 's' is already attached");
        assert_eq!(
            bioxen_vm_manager_is_attached(m.0, id.as_ptr(), &mut attached),
            OK
        );
        assert!(attached);
        assert_eq!(bioxen_vm_manager_detach(m.0, id.as_ptr()), OK);
        // Unknown VM, VM without a session.
        let nope = c("nope");
        assert_eq!(
            bioxen_vm_manager_attach(m.0, nope.as_ptr(), None, null_mut()),
            S::SessionNotFound.code()
        );
        assert_eq!(last_error(), "VM 'nope' not found");
        assert_eq!(m.send("nope", "1"), S::SessionNotFound.code());
        let plain = c("plain");
        assert_eq!(bioxen_vm_manager_create_vm(m.0, plain.as_ptr(), null()), OK);
        assert_eq!(m.send("plain", "1"), S::SessionNotFound.code());
        assert_eq!(last_error(), "No interactive session for VM 'plain'");
        // Attaching a VM without a session creates one (as the original's attach_to_vm).
        assert_eq!(
            bioxen_vm_manager_attach(m.0, plain.as_ptr(), None, null_mut()),
            OK
        );
        assert_eq!(m.command("plain", "6 * 7"), "42\n");
        // A second interactive VM with the same id.
        assert_eq!(
            bioxen_vm_manager_create_interactive_vm(m.0, id.as_ptr(), null(), true),
            S::VmAlreadyExists.code()
        );
    }
}

#[test]
fn the_output_callback_streams_output_as_it_is_produced() {
    /// (vm id, stream, bytes, user data) of each call.
    type Call = (String, i32, Vec<u8>, usize);
    static SEEN: Mutex<Vec<Call>> = Mutex::new(Vec::new());
    unsafe extern "C" fn cb(
        vm_id: *const c_char,
        stream: i32,
        data: *const c_char,
        len: usize,
        ud: *mut c_void,
    ) {
        let id = CStr::from_ptr(vm_id).to_str().unwrap().to_string();
        let d = std::slice::from_raw_parts(data as *const u8, len).to_vec();
        SEEN.lock().unwrap().push((id, stream, d, ud as usize));
    }
    let m = Mgr::new();
    m.interactive("cb", false);
    let id = c("cb");
    assert_eq!(
        unsafe { bioxen_vm_manager_attach(m.0, id.as_ptr(), Some(cb), 0x77 as *mut c_void) },
        OK
    );
    m.command("cb", "print('hello')");
    m.command("cb", "error('bad')");
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        (
            "cb".to_string(),
            bioxen_vm_stream::Stdout as i32,
            b"hello\n".to_vec(),
            0x77
        )
    );
    assert_eq!(seen[1].1, bioxen_vm_stream::Stderr as i32);
    assert!(String::from_utf8_lossy(&seen[1].2).starts_with("stdin:1: bad"));
    // Detached: no more calls.
    assert_eq!(unsafe { bioxen_vm_manager_detach(m.0, id.as_ptr()) }, OK);
    m.command("cb", "print('quiet')");
    assert_eq!(SEEN.lock().unwrap().len(), 2);
}

#[test]
fn interrupt_and_terminate_while_evaluating() {
    let m = Mgr::new();
    m.interactive("s", true);
    let id = c("s");
    m.command("s", "keep = 'state'");
    assert_eq!(m.send("s", "while true do end\n"), OK);
    assert_eq!(m.send("s", "print('queued behind the loop')\n"), OK);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut was = false;
    assert_eq!(
        unsafe { bioxen_vm_manager_interrupt_session(m.0, id.as_ptr(), &mut was) },
        OK
    );
    assert!(was);
    let out = m.read("s", 5000, 0).unwrap();
    assert_eq!(
        out,
        format!("Lua execution interrupted{}\n", lost_state_note()),
        "queued input is discarded"
    );
    assert_eq!(m.command("s", "keep"), kept_state("state\n"));
    // Terminate while evaluating.
    assert_eq!(m.send("s", "while true do end\n"), OK);
    std::thread::sleep(std::time::Duration::from_millis(30));
    let t = std::time::Instant::now();
    assert_eq!(
        unsafe { bioxen_vm_manager_terminate_session(m.0, id.as_ptr()) },
        OK
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(m.send("s", "1"), S::SessionNotFound.code());
    assert_eq!(last_error(), "No interactive session for VM 's'");
    assert_eq!(
        unsafe { bioxen_vm_manager_terminate_session(m.0, id.as_ptr()) },
        S::SessionNotFound.code()
    );
    // The VM and its state stay; a new session can be made for it.
    assert_eq!(
        unsafe { bioxen_vm_manager_attach(m.0, id.as_ptr(), None, null_mut()) },
        OK
    );
    assert_eq!(m.command("s", "keep"), kept_state("state\n"));
}

#[test]
fn list_clone_and_counters() {
    let m = Mgr::new();
    m.interactive("a", true);
    m.interactive("b", false);
    m.command("a", "1");
    m.command("a", "2");
    let mut b = bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    };
    assert_eq!(unsafe { bioxen_vm_manager_list_sessions(m.0, &mut b) }, OK);
    let list = take_json(b);
    assert_eq!(list["a"]["attached"], true);
    assert_eq!(list["a"]["executions"], 2);
    assert_eq!(list["a"]["running"], true);
    assert_eq!(list["a"]["evaluating"], false);
    assert_eq!(list["a"]["idle"], true);
    assert!(list["a"]["last_activity"].as_f64().unwrap() > 1.7e9);
    assert_eq!(list["b"]["attached"], false);
    m.command("a", "x = 1");
    let (a, bb, none) = (c("a"), c("a2"), c("none"));
    unsafe {
        assert_eq!(
            bioxen_vm_manager_clone_session(m.0, a.as_ptr(), bb.as_ptr()),
            OK
        );
        assert_eq!(
            bioxen_vm_manager_clone_session(m.0, none.as_ptr(), c("z").as_ptr()),
            S::SessionNotFound.code()
        );
        assert_eq!(last_error(), "Source VM 'none' not found");
        assert_eq!(
            bioxen_vm_manager_clone_session(m.0, a.as_ptr(), bb.as_ptr()),
            S::VmAlreadyExists.code()
        );
    }
    assert_eq!(
        m.command("a2", "x"),
        "nil\n",
        "a clone starts from a fresh state"
    );
    let mut b = bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    };
    assert_eq!(unsafe { bioxen_vm_manager_stats(m.0, &mut b) }, OK);
    let stats = take_json(b);
    assert_eq!(stats["interactive_sessions"], 3);
    assert_eq!(stats["attached_sessions"], 2);
}

#[test]
fn one_megabyte_input_lines() {
    let m = Mgr::new();
    m.interactive("big", true);
    let payload = "x".repeat(1 << 20);
    // A 1 MB expression line, then a 1 MB statement line.
    assert_eq!(m.command("big", &format!("#'{payload}'")), "1048576\n");
    assert_eq!(m.command("big", &format!("s = '{payload}'")), "");
    assert_eq!(m.command("big", "#s"), "1048576\n");
    // A 1 MB line of a multi-line chunk.
    m.send("big", "t = {\n");
    m.send("big", &format!("'{payload}',\n"));
    assert_eq!(m.command("big", "}"), "");
    assert_eq!(m.command("big", "#t[1]"), "1048576\n");
}

#[test]
fn input_left_after_an_any_output_read_is_still_evaluated() {
    let m = Mgr::new();
    m.interactive("s", true);
    for _ in 0..20 {
        assert_eq!(m.send("s", "print(1)\nn = (n or 0) + 1\nn = n + 1\n"), OK);
        // Returns as soon as there is output, leaving the rest of the input queued.
        assert!(m
            .read("s", 5000, bioxen_vm_read::AnyOutput as i32)
            .is_some());
    }
    // Nobody reads any more: the rest must still be evaluated, in the background.
    let t = std::time::Instant::now();
    loop {
        let mut b = bioxen_vm_bytes {
            data: null_mut(),
            len: 0,
        };
        assert_eq!(unsafe { bioxen_vm_manager_list_sessions(m.0, &mut b) }, OK);
        let info = take_json(b);
        if info["s"]["executions"] == 60 {
            assert_eq!(info["s"]["idle"], true);
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "stuck: {info}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(m.command("s", "n"), "40\n");
}

#[test]
fn session_input_runs_under_the_vm_limits() {
    let m = Mgr::new();
    let id = c("lim");
    let opts = c(r#"{"timeout": 0.05, "memory_limit": 4000000}"#);
    assert_eq!(
        unsafe { bioxen_vm_manager_create_interactive_vm(m.0, id.as_ptr(), opts.as_ptr(), true) },
        OK
    );
    m.command("lim", "kept = 'yes'");
    // A runaway line stops at the VM's default timeout; the session and its state go on.
    let t = std::time::Instant::now();
    assert_eq!(
        m.command("lim", "while true do end"),
        format!(
            "Lua execution timed out after 0.05 seconds{}\n",
            lost_state_note()
        )
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    // A memory bomb hits the VM's limit.
    let out = m.command("lim", "local t = {} for i = 1, 1e8 do t[i] = i end");
    assert!(
        out.starts_with("Lua memory limit of 4000000 bytes exceeded"),
        "{out}"
    );
    assert_eq!(m.command("lim", "kept"), kept_state("yes\n"));
}
