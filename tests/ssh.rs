//! What only the `ssh` kind has, against a real OpenSSH server on 127.0.0.1
//! (tests/common/sshd.rs): host keys, authentication, bad input, shared connections,
//! stops, faults, and what is left on the remote side (nothing). The behaviour the kinds
//! share runs in the shared suites (sessions, clusters, kinds) with BIOXEN_TEST_VM_TYPE=ssh.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::sshd::*;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const MARGIN: Duration = Duration::from_millis(700);

fn try_new(options: &str) -> Result<TestVm, (i32, String)> {
    let mut h = 0;
    let o = c(options);
    match unsafe { bioxen_vm_new(o.as_ptr(), &mut h) } {
        OK => Ok(TestVm(h)),
        st => Err((st, last_error())),
    }
}

fn refused(options: &str) -> (i32, String, Duration) {
    let t = Instant::now();
    match try_new(options) {
        Ok(_) => panic!("connected with {options}"),
        Err((st, msg)) => (st, msg, t.elapsed()),
    }
}

fn no_interpreter_left(rig: &Sshd) {
    let left = rig.wait_gone(is_interpreter, Duration::from_secs(5));
    assert!(left.is_empty(), "interpreters left on the server: {left:?}");
}

#[test]
fn a_remote_vm_runs_lua_keeps_its_state_and_shows_no_secret() {
    let rig = Sshd::start("");
    let vm = TestVm::new(&rig.options("lua5.4", r#""key_passphrase": "not-used-secret""#));
    let r = vm.exec("x = 40 return x + 2, ...");
    assert_eq!(r.values, json!([42]));
    assert_eq!(r.out(), "42\n");
    assert_eq!(vm.exec("return x").values, json!([40]));
    let r = vm
        .try_exec("return ...", Some(r#"[1, "two", {"three": 3}]"#), 0)
        .unwrap();
    assert_eq!(r.values, json!([1, "two", {"three": 3}]));
    let info = vm.info();
    assert_eq!(info["lua_version"], json!("Lua 5.4"), "{info}");
    assert_eq!(
        info["host_key_fingerprint"],
        json!(rig.fingerprint),
        "{info}"
    );
    assert_eq!(info["host"], json!("127.0.0.1"));
    assert_eq!(info["port"], json!(rig.port));
    assert_eq!(info["username"], json!(USER));
    assert_eq!(info["auth_method"], json!("publickey (key_file)"));
    assert!(info["pid"].as_i64().unwrap() > 0);
    assert!(!info.to_string().contains("not-used-secret"), "{info}");
    drop(vm);
    no_interpreter_left(&rig);
}

// ---------------------------------------------------------------- host keys

fn write_known_hosts(rig: &Sshd, name: &str, text: &str) -> String {
    let p = rig.dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn with_known_hosts(rig: &Sshd, path: &str) -> String {
    rig.options("lua5.4", &format!(r#""known_hosts": {path:?}"#))
        .replacen(
            &format!(
                r#""known_hosts": {:?}, "#,
                rig.known_hosts.display().to_string()
            ),
            "",
            1,
        )
}

#[test]
fn host_keys_are_checked_and_never_trusted_on_first_use() {
    let rig = Sshd::start("");
    let other = rig.dir.join("other_key");
    keygen(&other, "");
    let other_pub = std::fs::read_to_string(rig.dir.join("other_key.pub")).unwrap();
    let other_pub: String = other_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let port = rig.port;

    // The right key, as OpenSSH writes it for a port other than 22.
    TestVm::new(&rig.options("lua5.4", "")).exec("return 1");

    // A changed key: refused, naming the host and both fingerprints.
    let kh = write_known_hosts(
        &rig,
        "kh_wrong",
        &format!("[127.0.0.1]:{port} {other_pub}\n"),
    );
    let (st, msg, _) = refused(&with_known_hosts(&rig, &kh));
    assert_eq!(st, S::VmConnectionError.code(), "{msg}");
    assert!(
        msg.contains("CHANGED") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(msg.contains(&rig.fingerprint), "{msg}");
    assert!(
        msg.contains("SHA256:") && msg.matches("SHA256:").count() >= 2,
        "{msg}"
    );

    // An unknown host, and a plain entry without the port (OpenSSH does not use it for
    // another port): refused, with the offered fingerprint and how to pin it.
    for text in [String::new(), format!("127.0.0.1 {}\n", rig.host_pub)] {
        let kh = write_known_hosts(&rig, "kh_unknown", &text);
        let (st, msg, _) = refused(&with_known_hosts(&rig, &kh));
        assert_eq!(st, S::VmConnectionError.code(), "{msg}");
        assert!(
            msg.contains("unknown") && msg.contains(&rig.fingerprint),
            "{msg}"
        );
        assert!(msg.contains("host_key_fingerprint"), "{msg}");
    }
    // A missing known_hosts file is refused too (it is never created or written).
    let missing = rig.dir.join("no_such_known_hosts");
    let (st, msg, _) = refused(&with_known_hosts(&rig, &missing.display().to_string()));
    assert_eq!(st, S::VmConnectionError.code(), "{msg}");
    assert!(!missing.exists());

    // Hashed entries (ssh-keygen -H) and patterns.
    let kh = write_known_hosts(
        &rig,
        "kh_hashed",
        &format!("[127.0.0.1]:{port} {}\n", rig.host_pub),
    );
    let out = std::process::Command::new("ssh-keygen")
        .args(["-H", "-f", &kh])
        .output()
        .unwrap();
    assert!(out.status.success());
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    TestVm::new(&with_known_hosts(&rig, &kh)).exec("return 1");
    let kh = write_known_hosts(
        &rig,
        "kh_pattern",
        &format!(
            "# comment\nexample.org {other_pub}\n[127.0.0.?]:{port},other {}\n",
            rig.host_pub
        ),
    );
    TestVm::new(&with_known_hosts(&rig, &kh)).exec("return 1");

    // @revoked wins.
    let kh = write_known_hosts(
        &rig,
        "kh_revoked",
        &format!(
            "@revoked [127.0.0.1]:{port} {}\n[127.0.0.1]:{port} {}\n",
            rig.host_pub, rig.host_pub
        ),
    );
    let (st, msg, _) = refused(&with_known_hosts(&rig, &kh));
    assert_eq!(st, S::VmConnectionError.code());
    assert!(msg.contains("@revoked"), "{msg}");

    // A pinned fingerprint: right, wrong.
    let empty = write_known_hosts(&rig, "kh_empty", "");
    let pinned = with_known_hosts(&rig, &empty).replacen(
        "\"vm_type\"",
        &format!(
            r#""host_key_fingerprint": "{}", "vm_type""#,
            rig.fingerprint
        ),
        1,
    );
    TestVm::new(&pinned).exec("return 1");
    let wrong = pinned.replace(
        &rig.fingerprint,
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let (st, msg, _) = refused(&wrong);
    assert_eq!(st, S::VmConnectionError.code());
    assert!(
        msg.contains("host_key_fingerprint") && msg.contains(&rig.fingerprint),
        "{msg}"
    );
    let bad = pinned.replace(&rig.fingerprint, "MD5:00:11");
    let (st, _, _) = refused(&bad);
    assert_eq!(st, S::InvalidArgument.code());

    // Only an explicit policy turns checking off.
    let insecure = with_known_hosts(&rig, &empty).replacen(
        "\"vm_type\"",
        r#""host_key_policy": "insecure-accept-any", "vm_type""#,
        1,
    );
    TestVm::new(&insecure).exec("return 1");
    let (st, _, _) = refused(&insecure.replace("insecure-accept-any", "accept-new"));
    assert_eq!(st, S::InvalidArgument.code());
}

// ---------------------------------------------------------------- authentication

fn auth_options(rig: &Sshd, auth: &str) -> String {
    format!(
        r#"{{"vm_type": "ssh", "host": "127.0.0.1", "port": {}, "username": "{USER}", "known_hosts": {:?}, "use_agent": false, "lua_executable": "lua5.4", {auth}}}"#,
        rig.port,
        rig.known_hosts.display().to_string()
    )
}

#[test]
fn every_authentication_method_and_its_failures() {
    let rig = Sshd::start("");
    let enc = rig.key_encrypted.display().to_string();
    // An encrypted key with its passphrase; a password.
    let vm = TestVm::new(&auth_options(
        &rig,
        &format!(r#""key_file": {enc:?}, "key_passphrase": "{KEY_PASSPHRASE}""#),
    ));
    assert_eq!(vm.exec("return 1").values, json!([1]));
    let pw = serde_json::to_string(PASSWORD).unwrap();
    let vm = TestVm::new(&auth_options(&rig, &format!(r#""password": {pw}"#)));
    assert_eq!(vm.info()["auth_method"], json!("password"));
    assert_eq!(vm.exec("return 2").values, json!([2]));

    let not_a_key = rig.dir.join("not_a_key");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    for (auth, words) in [
        (
            format!(r#""key_file": {enc:?}, "key_passphrase": "wrong""#),
            vec!["wrong passphrase"],
        ),
        (
            format!(r#""key_file": {enc:?}"#),
            vec!["encrypted", "key_passphrase"],
        ),
        (
            r#""key_file": "/no/such/key""#.to_string(),
            vec!["cannot be read", "/no/such/key"],
        ),
        (
            format!(r#""key_file": {:?}"#, not_a_key.display().to_string()),
            vec!["not a private key"],
        ),
        (
            r#""password": "hunter2-wrong""#.to_string(),
            vec!["authentication to", "password (refused)", "publickey"],
        ),
        (String::from(r#""port_unused": 1"#), vec!["unknown field"]),
    ] {
        let o = auth_options(&rig, &auth);
        let (st, msg, _) = refused(&o);
        let want = if auth.contains("port_unused") {
            S::InvalidArgument
        } else {
            S::VmConnectionError
        };
        assert_eq!(st, want.code(), "{auth}: {msg}");
        for w in words {
            assert!(msg.contains(w), "{auth}: {msg}");
        }
        assert!(
            !msg.contains("hunter2") && !msg.contains(KEY_PASSPHRASE),
            "{msg}"
        );
    }
    // No method at all.
    let o = auth_options(&rig, r#""connect_timeout": 5"#);
    let (st, msg, _) = refused(&o);
    assert_eq!(st, S::VmConnectionError.code());
    assert!(msg.contains("no method to try"), "{msg}");
    assert!(!rig.log().contains("hunter2"));
}

// ---------------------------------------------------------------- bad input

#[test]
fn what_is_not_an_ssh_server_is_a_clear_error_in_bounded_time() {
    let rig = Sshd::start("");
    let base = rig.options("lua5.4", r#""connect_timeout": 2"#);
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (st, msg, took) = refused(&base.replace(&rig.port.to_string(), &closed_port.to_string()));
    assert_eq!(st, S::VmConnectionError.code());
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(took < Duration::from_secs(2) + MARGIN);
    // A server that says nothing (an HTTP port waiting for a request), and one that
    // closes during the handshake.
    for mode in ["silent", "closes", "http"] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let m = mode.to_string();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                match m.as_str() {
                    "silent" => std::thread::sleep(Duration::from_secs(4)),
                    "closes" => {
                        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
                        let mut b = [0u8; 64];
                        let _ = s.read(&mut b);
                    }
                    _ => {
                        let _ =
                            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        });
        let (st, msg, took) = refused(&base.replace(&rig.port.to_string(), &port.to_string()));
        assert_eq!(st, S::VmConnectionError.code(), "{mode}: {msg}");
        assert!(msg.contains("handshake"), "{mode}: {msg}");
        assert!(took < Duration::from_secs(2) + MARGIN, "{mode}: {took:?}");
        let _ = server.join();
    }
}

#[test]
fn a_remote_interpreter_that_is_missing_or_not_lua_is_refused() {
    let rig = Sshd::start("");
    let marker = rig.dir.join("pwned");
    let (st, msg, _) = refused(&rig.options("no-such-lua5.9", ""));
    assert_eq!(st, S::LuaNotFound.code(), "{msg}");
    assert_eq!(
        msg,
        format!(
            "Lua executable 'no-such-lua5.9' not found in PATH on {USER}@127.0.0.1:{}",
            rig.port
        )
    );
    let (st, msg, took) = refused(&rig.options("/bin/cat", ""));
    assert_eq!(st, S::LuaNotFound.code(), "{msg}");
    assert!(msg.contains("did not start the agent"), "{msg}");
    assert!(took < Duration::from_secs(5) + MARGIN, "{took:?}");
    // Hostile names are one quoted word on the remote command line: never run.
    for exe in [
        format!("lua5.4; touch {}", marker.display()),
        format!("$(touch {})", marker.display()),
        format!("`touch {}`", marker.display()),
        format!("lua5.4\ntouch {}", marker.display()),
        format!("it's lua' ; touch {} ; '", marker.display()),
        "lua 5.4".to_string(),
    ] {
        let o = rig.options("X", "").replace(
            r#""lua_executable": "X""#,
            &format!(
                r#""lua_executable": {}"#,
                serde_json::to_string(&exe).unwrap()
            ),
        );
        let (st, msg, _) = refused(&o);
        assert_eq!(st, S::LuaNotFound.code(), "{exe:?}: {msg}");
        assert!(msg.contains(&exe), "{msg}");
        assert!(!marker.exists(), "{exe:?} ran a command");
    }
    no_interpreter_left(&rig);
}

#[test]
fn output_floods_stay_bounded_on_the_callers_side() {
    let rig = Sshd::start("");
    let vm = TestVm::new(&rig.options("lua5.4", r#""max_output": 1048576"#));
    let rss0 = rss_kib();
    let r = vm.exec("for i = 1, 64 do io.write(string.rep('x', 2^20)) end return 1");
    assert_eq!(r.values, json!([1]));
    assert_eq!(r.stdout.len(), 1 << 20);
    assert!(r.dropped >= 63 << 20, "{}", r.dropped);
    let r = vm.exec("os.execute('head -c 50000000 /dev/zero >&2') return 2");
    assert_eq!(r.values, json!([2]));
    assert!(r.stderr.len() <= 1 << 20);
    // Over SSH the raw stderr may still be on its way at the sync point: what comes late
    // is the next calls'. Every byte is kept or counted, none twice.
    let mut total = r.dropped + r.stderr.len() as u64;
    for _ in 0..20 {
        if total >= 50_000_000 {
            break;
        }
        let next = vm.exec("return 3");
        assert_eq!(next.values, json!([3]));
        assert!(next.stderr.len() <= 1 << 20);
        total += next.dropped + next.stderr.len() as u64;
    }
    assert_eq!(total, 50_000_000);
    let grew = rss_kib().saturating_sub(rss0);
    assert!(grew < 64 * 1024, "host RSS grew by {grew} KiB");
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

// ---------------------------------------------------------------- stops and cleanup

#[test]
fn timeouts_interrupts_and_frees_leave_nothing_running_remotely() {
    let rig = Sshd::start("");
    let vm = TestVm::new(&rig.options("lua5.4", ""));
    for code in [
        "while true do end",
        "os.execute('sleep 30')",
        "os.execute('setsid sleep 31 &') while true do end",
    ] {
        vm.exec("x = 1");
        let t = Instant::now();
        let (st, msg) = vm.try_exec(code, None, 1000).expect_err("stopped");
        assert_eq!(st, S::Timeout.code(), "{code}: {msg}");
        assert!(
            msg.contains("the ssh VM was restarted and its state was lost"),
            "{msg}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1) + MARGIN,
            "{code}: {:?}",
            t.elapsed()
        );
        let left = rig.wait_gone(
            |p| p.cmdline.iter().any(|a| a == "30" || a == "31"),
            Duration::from_secs(3),
        );
        assert!(left.is_empty(), "{code}: {left:?}");
        assert_eq!(vm.exec("return x").values, json!([null]));
    }
    // An interrupt from another thread.
    let h = vm.0;
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        assert_eq!(unsafe { bioxen_vm_interrupt(h, std::ptr::null_mut()) }, OK);
        t
    });
    let (st, _) = vm
        .try_exec("while true do end", None, 0)
        .expect_err("interrupted");
    let fired = stopper.join().unwrap();
    assert_eq!(st, S::Interrupted.code());
    assert!(
        fired.elapsed() < Duration::from_secs(1),
        "{:?}",
        fired.elapsed()
    );
    // Freeing while code runs (the call ends first, as the header says), and a VM that
    // left background work.
    vm.exec("os.execute('sleep 32 &')");
    let h = vm.0;
    std::mem::forget(vm);
    let runner = std::thread::spawn(move || {
        let code = "local t = os.clock() while os.clock() - t < 1 do end return 'done'";
        let mut r = empty_result();
        let st = unsafe {
            bioxen_vm_execute(
                h,
                code.as_ptr().cast(),
                code.len(),
                std::ptr::null(),
                0,
                &mut r,
            )
        };
        (st, take_result(r))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bioxen_vm_free(h), OK);
    let (st, r) = runner.join().unwrap();
    assert_eq!(st, OK);
    assert_eq!(r.values, json!(["done"]));
    no_interpreter_left(&rig);
    let left = rig.wait_gone(
        |p| p.cmdline.iter().any(|a| a == "32"),
        Duration::from_secs(3),
    );
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn vms_on_one_host_share_connections_within_max_sessions() {
    let rig = Sshd::start("MaxSessions 3");
    let o = rig.options("lua5.4", "");
    let vms: Vec<TestVm> = (0..7).map(|_| TestVm::new(&o)).collect();
    for (i, vm) in vms.iter().enumerate() {
        assert_eq!(vm.exec(&format!("return {i}")).values, json!([i]));
    }
    let conns: std::collections::HashSet<String> = vms
        .iter()
        .map(|v| v.info()["connection"].to_string())
        .collect();
    // MaxSessions 3: a new connection whenever the server refuses a channel.
    assert!(conns.len() >= 3 && conns.len() < 7, "{conns:?}");
    drop(vms);
    no_interpreter_left(&rig);
    // The default server: 9 VMs per connection.
    let rig = Sshd::start("");
    let o = rig.options("lua5.4", "");
    let vms: Vec<TestVm> = (0..10).map(|_| TestVm::new(&o)).collect();
    let conns: std::collections::HashSet<String> = vms
        .iter()
        .map(|v| v.info()["connection"].to_string())
        .collect();
    assert_eq!(conns.len(), 2, "{conns:?}");
    let t = Instant::now();
    let extra = TestVm::new(&o);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "a VM on a connected host took {:?}",
        t.elapsed()
    );
    drop(extra);
    drop(vms);
    no_interpreter_left(&rig);
}

#[test]
fn a_dropped_connection_fails_the_call_and_the_next_call_reconnects() {
    let rig = Sshd::start("");
    let vm = TestVm::new(&rig.options("lua5.4", r#""keepalive_interval": 1"#));
    vm.exec("x = 1");
    // The server's session process dies mid-call (the listener stays).
    let sessions: Vec<i32> = rig.server_pids().into_iter().skip(1).collect();
    assert!(!sessions.is_empty());
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        for p in sessions {
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    });
    let t = Instant::now();
    let (st, msg) = vm
        .try_exec("while true do end", None, 0)
        .expect_err("the connection dropped");
    killer.join().unwrap();
    assert_eq!(st, S::VmConnectionError.code(), "{msg}");
    assert!(msg.contains("state was lost"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    no_interpreter_left(&rig);
    let r = vm.exec("return x");
    assert_eq!(
        r.values,
        json!([null]),
        "a fresh interpreter after reconnecting"
    );
    assert_eq!(vm.exec("return 5").values, json!([5]));

    // A dead peer: the server stops answering without closing.
    let t0 = Instant::now();
    let rig2 = Sshd::start("");
    let vm2 = TestVm::new(&rig2.options("lua5.4", r#""keepalive_interval": 1"#));
    vm2.exec("return 1");
    let h = vm2.0;
    let freezer = {
        let pids = rig2.server_pids();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            for p in &pids {
                unsafe { libc::kill(*p, libc::SIGSTOP) };
            }
            pids
        })
    };
    let t = Instant::now();
    let code = "local t = os.time() while os.time() - t < 20 do end";
    let mut r = empty_result();
    let st = unsafe {
        bioxen_vm_execute(
            h,
            code.as_ptr().cast(),
            code.len(),
            std::ptr::null(),
            0,
            &mut r,
        )
    };
    let pids = freezer.join().unwrap();
    assert_eq!(st, S::VmConnectionError.code(), "{}", last_error());
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "dead peer seen after {:?}",
        t.elapsed()
    );
    for p in &pids {
        unsafe { libc::kill(*p, libc::SIGCONT) };
    }
    drop(vm2);
    drop(rig2);
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_host_that_dies_leaves_no_interpreter_behind() {
    if std::env::var("BIOXEN_SSH_DYING_HOST").is_ok() {
        // The host: a VM running a loop, then the process is killed from outside.
        let o = std::env::var("BIOXEN_SSH_DYING_HOST").unwrap();
        let vm = TestVm::new(&o);
        vm.exec("return 1");
        println!("ready");
        let _ = std::io::stdout().flush();
        let _ = vm.try_exec("os.execute('sleep 33 &') while true do end", None, 0);
        return;
    }
    let rig = Sshd::start("");
    let me = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(me)
        .args([
            "--exact",
            "a_host_that_dies_leaves_no_interpreter_behind",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("BIOXEN_SSH_DYING_HOST", rig.options("lua5.4", ""))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    let mut b = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") && Instant::now() < end {
        let n = out.read(&mut b).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&b[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("ready"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    let busy = Instant::now() + Duration::from_secs(5);
    while rig
        .processes()
        .iter()
        .all(|p| !p.cmdline.iter().any(|a| a == "33"))
        && Instant::now() < busy
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = rig.wait_gone(
        |p| is_interpreter(p) || p.cmdline.iter().any(|a| a == "33"),
        Duration::from_secs(5),
    );
    assert!(left.is_empty(), "left behind by a dead host: {left:?}");
}

#[test]
fn memory_limit_and_script_files_work_remotely() {
    let rig = Sshd::start("");
    let vm = TestVm::new(&rig.options("lua5.4", r#""memory_limit": 33554432"#));
    vm.exec("kept = 'yes'");
    let (st, msg) = vm
        .try_exec(
            "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end",
            None,
            20000,
        )
        .expect_err("the limit");
    assert_eq!(st, S::MemoryLimit.code(), "{msg}");
    assert_eq!(
        vm.exec("return kept").values,
        json!(["yes"]),
        "the state survives"
    );
    // A script file is read on the caller's side and runs remotely under its own name.
    let path = rig.dir.join("script.lua");
    std::fs::write(
        &path,
        "#!/usr/bin/env lua\nreturn 21 * 2, debug.getinfo(1, 'S').source\n",
    )
    .unwrap();
    let p = c(&path.display().to_string());
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_execute_file(vm.0, p.as_ptr(), 0, &mut r) },
        OK,
        "{}",
        last_error()
    );
    let r = take_result(r);
    assert_eq!(r.values, json!([42, format!("@{}", path.display())]));
}
