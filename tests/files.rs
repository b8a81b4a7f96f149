//! `execute_file` and `execute_temp_script` on every kind, standalone and in a manager.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::json;
use std::ffi::CString;
use std::ptr::{null, null_mut};

const KINDS: &[&str] = &[
    "{}",
    r#"{"vm_type": "process", "lua_executable": "lua5.4"}"#,
    r#"{"vm_type": "process", "lua_executable": "lua5.1"}"#,
];

struct Dir(std::path::PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("bioxen_vm-files-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn file(&self, name: &str, body: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_file(vm: u64, path: &str, timeout_ms: u64) -> Result<Res, (i32, String)> {
    let p = CString::new(path).unwrap();
    let mut r = empty_result();
    match unsafe { bioxen_vm_execute_file(vm, p.as_ptr(), timeout_ms, &mut r) } {
        OK => Ok(take_result(r)),
        st => Err((st, last_error())),
    }
}

fn run_temp(vm: u64, code: &str, timeout_ms: u64) -> Result<Res, (i32, String)> {
    let mut r = empty_result();
    match unsafe {
        bioxen_vm_execute_temp_script(vm, code.as_ptr().cast(), code.len(), timeout_ms, &mut r)
    } {
        OK => Ok(take_result(r)),
        st => Err((st, last_error())),
    }
}

/// Temp scripts of this process left in the temp directory.
fn leftover_temp_scripts() -> usize {
    let prefix = format!("bioxen_vm-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

#[test]
fn files_run_in_the_vm_state_with_their_name_in_messages() {
    let dir = Dir::new("run");
    let ok = dir.file("ok.lua", b"#!/usr/bin/env lua\ncounter = (counter or 0) + 1\nprint('run', counter)\nreturn counter\n");
    let bad = dir.file("bad.lua", b"\n\nerror('in file')\n");
    let syntax = dir.file("syntax.lua", b"x = = 1\n");
    let empty = dir.file("empty.lua", b"");
    for kind in KINDS {
        let vm = TestVm::new(kind);
        let r = run_file(vm.0, &ok, 0).unwrap();
        assert_eq!(
            (r.out(), r.values.clone()),
            ("run\t1\n1\n".to_string(), json!([1])),
            "{kind}"
        );
        let r = run_file(vm.0, &ok, 0).unwrap();
        assert_eq!(r.values, json!([2]), "{kind}: globals persist");
        assert_eq!(vm.exec("return counter").values, json!([2]));
        let r = run_file(vm.0, &bad, 0).unwrap();
        assert!(!r.success && r.return_code == 1);
        assert!(
            r.error.starts_with(&format!("{bad}:3: in file")),
            "{kind}: {}",
            r.error
        );
        let r = run_file(vm.0, &syntax, 0).unwrap();
        assert!(
            !r.success && r.error.starts_with(&format!("{syntax}:1:")),
            "{kind}: {}",
            r.error
        );
        let r = run_file(vm.0, &empty, 0).unwrap();
        assert!(r.success && r.out().is_empty(), "{kind}");
        // The original's errors.
        let missing = format!("{}/missing.lua", dir.0.display());
        assert_eq!(
            run_file(vm.0, &missing, 0).unwrap_err(),
            (
                S::FileNotFound.code(),
                format!("Lua script not found: {missing}")
            )
        );
        let (st, msg) = run_file(vm.0, &dir.0.to_string_lossy(), 0).unwrap_err();
        assert_eq!(st, S::InvalidArgument.code());
        assert!(msg.contains("is not a file"), "{msg}");
        // A timeout in a file is the VM's timeout.
        let spin = dir.file("spin.lua", b"while true do end");
        assert_eq!(run_file(vm.0, &spin, 50).unwrap_err().0, S::Timeout.code());
    }
}

#[test]
fn temp_scripts_are_removed_whatever_happens() {
    for kind in KINDS {
        let vm = TestVm::new(kind);
        let r = run_temp(vm.0, "y = 5 return y * 2", 0).unwrap();
        assert_eq!(r.values, json!([10]), "{kind}");
        assert_eq!(vm.exec("return y").values, json!([5]));
        let r = run_temp(vm.0, "error('temp boom')", 0).unwrap();
        assert!(
            !r.success && r.error.contains(".lua:1: temp boom"),
            "{}",
            r.error
        );
        assert_eq!(
            run_temp(vm.0, "while true do end", 50).unwrap_err().0,
            S::Timeout.code()
        );
        assert!(
            run_temp(vm.0, "", 0).unwrap().success,
            "empty code is allowed"
        );
    }
    assert_eq!(leftover_temp_scripts(), 0);
}

#[test]
fn manager_vms_and_bad_input() {
    let mut m = 0;
    assert_eq!(unsafe { bioxen_vm_manager_new(null(), &mut m) }, OK);
    let id = c("f");
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m, id.as_ptr(), null()) },
        OK
    );
    let dir = Dir::new("mgr");
    let f = c(&dir.file("m.lua", b"return 'from file'"));
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_manager_execute_file(m, id.as_ptr(), f.as_ptr(), 0, &mut r) },
        OK
    );
    assert_eq!(take_result(r).values, json!(["from file"]));
    let code = "return 'temp'";
    let mut r = empty_result();
    assert_eq!(
        unsafe {
            bioxen_vm_manager_execute_temp_script(
                m,
                id.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                0,
                &mut r,
            )
        },
        OK
    );
    assert_eq!(take_result(r).values, json!(["temp"]));
    let other = c("nope");
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_manager_execute_file(m, other.as_ptr(), f.as_ptr(), 0, &mut r) },
        S::VmNotFound.code()
    );
    assert_eq!(
        unsafe {
            bioxen_vm_manager_execute_temp_script(
                m,
                other.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                0,
                &mut r,
            )
        },
        S::VmNotFound.code()
    );
    unsafe {
        assert_eq!(
            bioxen_vm_manager_execute_file(m, id.as_ptr(), null(), 0, &mut r),
            S::NullPointer.code()
        );
        assert_eq!(
            bioxen_vm_manager_execute_file(m, id.as_ptr(), f.as_ptr(), 0, null_mut()),
            S::NullPointer.code()
        );
        assert_eq!(
            bioxen_vm_manager_execute_temp_script(m, id.as_ptr(), null(), 3, 0, &mut r),
            S::NullPointer.code()
        );
        assert_eq!(
            bioxen_vm_execute_file(0, f.as_ptr(), 0, &mut r),
            S::InvalidHandle.code()
        );
        assert_eq!(
            bioxen_vm_execute_temp_script(0, code.as_ptr().cast(), code.len(), 0, &mut r),
            S::InvalidHandle.code()
        );
    }
    assert_eq!(bioxen_vm_manager_free(m), OK);
}
