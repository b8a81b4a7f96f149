//! Environment-driven logging, checked in child processes (the logger is process-global):
//! `PYLUA_DEBUG=true` and `BIOXEN_VM_LOG` send records to stderr, nothing reaches stdout,
//! and without them the library is silent.

mod common;
use common::*;
use std::process::Command;

const CHILD: &str = "BIOXEN_VM_TEST_CHILD";

/// The body the child runs: a few executions, one failing.
#[test]
fn child_body() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let vm = TestVm::new(r#"{"debug_mode": false}"#);
    vm.exec("print('to the result, not to stdout') return secret_code_marker");
    let _ = vm.try_exec("", None, 0);
}

fn run_child(env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_body",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(CHILD, "1")
    .env_remove("BIOXEN_VM_LOG")
    .env_remove("PYLUA_DEBUG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The test harness prints its own lines to stdout; anything else there came from us.
fn library_stdout(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.starts_with("running ") && !l.starts_with("test ") && !l.contains("test result:")
        })
        .filter(|l| !l.trim().chars().all(|c| c == '.'))
        .collect()
}

#[test]
fn silent_by_default() {
    let (out, err) = run_child(&[]);
    assert_eq!(library_stdout(&out), Vec::<&str>::new());
    assert!(!err.contains("bioxen_vm"), "{err}");
}

#[test]
fn pylua_debug_logs_to_stderr_only() {
    let (out, err) = run_child(&[("PYLUA_DEBUG", "true")]);
    assert_eq!(library_stdout(&out), Vec::<&str>::new());
    assert!(err.contains("bioxen_vm::vm"), "{err}");
    assert!(err.contains("executed"), "{err}");
    assert!(
        !err.contains("secret_code_marker"),
        "code is logged at trace level only: {err}"
    );
}

#[test]
fn bioxen_vm_log_filter_reaches_trace() {
    let (out, err) = run_child(&[("BIOXEN_VM_LOG", "bioxen_vm=trace")]);
    assert_eq!(library_stdout(&out), Vec::<&str>::new());
    assert!(err.contains("secret_code_marker"), "{err}");
}
