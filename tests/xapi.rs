//! The XAPI client over the C ABI (`bioxen_vm_xapi_*`) against the fake XAPI
//! (tests/rig/fake_xapi.py): TLS policies, login and logout, HOST_IS_SLAVE, expired
//! sessions, lost connections, typed errors, the typing quirks, the XML-RPC fallback,
//! timeouts and the bound on calls in flight. After each test the fake holds no session.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::xapi_fake::Fake;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Session(u64);

impl Drop for Session {
    fn drop(&mut self) {
        assert_eq!(bioxen_vm_xapi_close(self.0), OK);
    }
}

fn open(cfg: &Value) -> Result<Session, (i32, String)> {
    let mut h = 0;
    let t = c(&cfg.to_string());
    match unsafe { bioxen_vm_xapi_open(t.as_ptr(), &mut h) } {
        OK => Ok(Session(h)),
        st => Err((st, last_error())),
    }
}

fn xcall(s: &Session, method: &str, params: Value) -> Result<Value, (i32, String, Value)> {
    let m = c(method);
    let p = c(&params.to_string());
    let mut out = bioxen_vm_bytes::empty();
    let mut err = bioxen_vm_bytes::empty();
    let st = unsafe { bioxen_vm_xapi_call(s.0, m.as_ptr(), p.as_ptr(), &mut out, &mut err) };
    let r = if st == OK {
        Ok(serde_json::from_slice(&bytes_of(&out)).unwrap())
    } else {
        let e = bytes_of(&err);
        Err((
            st,
            last_error(),
            if e.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&e).unwrap()
            },
        ))
    };
    unsafe {
        bioxen_vm_bytes_free(&mut out);
        bioxen_vm_bytes_free(&mut err);
    }
    r
}

fn info(s: &Session) -> Value {
    let mut out = bioxen_vm_bytes::empty();
    assert_eq!(unsafe { bioxen_vm_xapi_info(s.0, &mut out) }, OK);
    let v = serde_json::from_slice(&bytes_of(&out)).unwrap();
    unsafe { bioxen_vm_bytes_free(&mut out) };
    v
}

fn no_sessions(f: &Fake) {
    let end = Instant::now() + Duration::from_secs(5);
    while f.stats()["sessions"] != 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(f.stats()["sessions"], 0, "sessions left open on the fake");
}

#[test]
fn pinned_tls_login_calls_and_logout() {
    let f = Fake::start();
    {
        let s = open(&f.session_config(json!({}))).unwrap();
        assert_eq!(f.stats()["sessions"], 1);
        let vms = xcall(&s, "VM.get_all_records", json!([])).unwrap();
        let templates: Vec<_> = vms
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v["is_a_template"] == true)
            .collect();
        assert!(templates.len() >= 2);
        // xapi writes non-finite floats as bare Infinity: they arrive as strings.
        assert_eq!(templates[0]["HVM_shadow_multiplier"], "Infinity");
        // 64-bit integers stay integers.
        assert_eq!(templates[0]["memory_static_max"], 1u64 << 30);
        let i = info(&s);
        assert_eq!(i["protocol"], "json-rpc");
        assert_eq!(i["logins"], 1);
        // The session was opened with our originator.
        let state = f.control(json!({"op": "state"}));
        let sess: Vec<_> = state["session"].as_object().unwrap().values().collect();
        assert!(sess[0]["originator"]
            .as_str()
            .unwrap()
            .starts_with("bioxen_vm/"));
    }
    no_sessions(&f);
}

#[test]
fn certificates_are_checked() {
    let f = Fake::start();
    // A wrong pin is refused, and says what the server offered.
    let wrong = "AB:".repeat(31) + "AB";
    let (st, msg) = open(&f.session_config(json!({"tls_fingerprint": wrong})))
        .err()
        .unwrap();
    assert_eq!(st, S::XcpngConnectionError as i32, "{msg}");
    assert!(msg.contains(&f.s("fingerprint")), "{msg}");
    // The system roots do not know a self-signed certificate.
    let (st, msg) = open(&f.session_config(json!({"tls_fingerprint": null})))
        .err()
        .unwrap();
    assert_eq!(st, S::XcpngConnectionError as i32, "{msg}");
    assert!(
        msg.to_lowercase().contains("certificate") || msg.contains("TLS"),
        "{msg}"
    );
    // The host's own certificate as a CA file works (it is not CA:TRUE, and names the IP).
    drop(
        open(&f.session_config(json!({"tls_fingerprint": null, "ca_file": f.s("cert")}))).unwrap(),
    );
    // insecure works, when asked.
    drop(open(&f.session_config(json!({"tls_fingerprint": null, "insecure": true}))).unwrap());
    // Two policies at once are refused.
    let (st, _) = open(&f.session_config(json!({"insecure": true})))
        .err()
        .unwrap();
    assert_eq!(st, S::InvalidArgument as i32);
    // Plain HTTP needs no TLS policy.
    drop(open(&f.session_config(json!({"url": f.s("http"), "tls_fingerprint": null}))).unwrap());
    no_sessions(&f);
}

#[test]
fn bad_credentials_and_options() {
    let f = Fake::start();
    let (st, msg) = open(&f.session_config(json!({"password": "nope"})))
        .err()
        .unwrap();
    assert_eq!(st, S::XcpngConnectionError as i32);
    assert!(
        msg.contains("Authentication failed") && msg.contains("SESSION_AUTHENTICATION_FAILED"),
        "{msg}"
    );
    assert!(!msg.contains("nope"), "the password shows: {msg}");
    let (st, msg) = open(&f.session_config(json!({"colour": "red"})))
        .err()
        .unwrap();
    assert_eq!(st, S::InvalidArgument as i32);
    assert!(msg.contains("colour"), "{msg}");
    let (st, _) = open(&json!({"url": "https://h/x", "username": "u", "password": "p"}))
        .err()
        .unwrap();
    assert_eq!(st, S::InvalidArgument as i32);
    let dup = c(r#"{"url": "http://127.0.0.1:1", "url": "x", "username": "u", "password": "p"}"#);
    let mut h = 0;
    assert_eq!(
        unsafe { bioxen_vm_xapi_open(dup.as_ptr(), &mut h) },
        S::InvalidArgument as i32
    );
    // Nothing listens on port 1: a connection error, quickly.
    let t = Instant::now();
    let (st, _) = open(&json!({"url": "http://127.0.0.1:1", "username": "u", "password": "p"}))
        .err()
        .unwrap();
    assert_eq!(st, S::XcpngConnectionError as i32);
    assert!(t.elapsed() < Duration::from_secs(5));
    no_sessions(&f);
}

#[test]
fn host_is_slave_is_followed_to_the_master() {
    let f = Fake::start();
    for (url, pin) in [
        (f.s("member_http"), None),
        (f.s("member_https"), Some(f.s("fingerprint"))),
    ] {
        let s = open(&f.session_config(json!({"url": url, "tls_fingerprint": pin}))).unwrap();
        let i = info(&s);
        assert_eq!(i["logins"], 2, "{i}");
        assert!(
            i["url"]
                .as_str()
                .unwrap()
                .starts_with(&(url.split("://").next().unwrap().to_string() + "://127.0.0.1:")),
            "{i}"
        );
        xcall(&s, "pool.get_all_records", json!([])).unwrap();
    }
    no_sessions(&f);
}

#[test]
fn expired_sessions_log_in_again_once() {
    let f = Fake::start();
    let s = open(&f.session_config(json!({}))).unwrap();
    f.control(json!({"op": "expire_sessions"}));
    xcall(&s, "VM.get_all", json!([])).unwrap();
    assert_eq!(info(&s)["logins"], 2);
    // A state-changing call is retried too: XAPI did not run it.
    f.control(json!({"op": "expire_sessions"}));
    let pool = xcall(&s, "pool.get_all", json!([])).unwrap()[0].clone();
    xcall(&s, "pool.add_to_other_config", json!([pool, "k", "v"])).unwrap();
    assert_eq!(info(&s)["logins"], 3);
    drop(s);
    // The expired sessions were never logged out by us (they are invalid); the live one was.
    let live = f.control(json!({"op": "state"}))["session"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["expired"] != true)
        .count();
    assert_eq!(live, 0);
}

#[test]
fn lost_connections_are_retried_only_for_reads() {
    let f = Fake::start();
    let s = open(&f.session_config(json!({"url": f.s("http"), "tls_fingerprint": null}))).unwrap();
    f.fault(json!({"method": "VM.get_all", "nth": 1, "action": "drop"}));
    xcall(&s, "VM.get_all", json!([])).unwrap();
    assert_eq!(f.calls("VM.get_all"), 2);
    let pool = xcall(&s, "pool.get_all", json!([])).unwrap()[0].clone();
    f.fault(json!({"method": "pool.set_name_label", "nth": 1, "action": "drop"}));
    let (st, msg, err) = xcall(&s, "pool.set_name_label", json!([pool, "x"]))
        .err()
        .unwrap();
    assert_eq!(st, S::XcpngConnectionError as i32, "{msg}");
    assert_eq!(err["code"], "TRANSPORT");
    assert_eq!(
        f.calls("pool.set_name_label"),
        1,
        "a state-changing call was sent again"
    );
    drop(s);
    no_sessions(&f);
}

#[test]
fn xapi_errors_are_typed() {
    let f = Fake::start();
    let s = open(&f.session_config(json!({}))).unwrap();
    let (st, msg, err) = xcall(&s, "VM.get_record", json!(["OpaqueRef:nope"]))
        .err()
        .unwrap();
    assert_eq!(st, S::VmManagerError as i32);
    assert_eq!(
        err,
        json!({"code": "HANDLE_INVALID", "params": ["VM", "OpaqueRef:nope"]})
    );
    assert!(msg.starts_with("VM.get_record: HANDLE_INVALID"), "{msg}");
    f.fault(json!({"method": "VM.get_all", "error": ["OTHER_OPERATION_IN_PROGRESS", "VM", "x"]}));
    let (_, _, err) = xcall(&s, "VM.get_all", json!([])).err().unwrap();
    assert_eq!(err["code"], "OTHER_OPERATION_IN_PROGRESS");
    // Bad parameters are refused before anything is sent.
    let (st, _, _) = xcall(&s, "VM.get_all", json!({"a": 1})).err().unwrap();
    assert_eq!(st, S::InvalidArgument as i32);
    let (st, _, _) = xcall(&s, "session.logout", json!([])).err().unwrap();
    assert_eq!(st, S::InvalidArgument as i32);
    // system.* takes no session.
    let methods = xcall(&s, "system.listMethods", json!([])).unwrap();
    assert!(methods
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "VM.get_all_records"));
    let mut out = bioxen_vm_bytes::empty();
    let m = c("VM.get_all");
    assert_eq!(
        unsafe {
            bioxen_vm_xapi_call(
                0,
                m.as_ptr(),
                std::ptr::null(),
                &mut out,
                std::ptr::null_mut(),
            )
        },
        S::InvalidHandle as i32
    );
    assert_eq!(
        unsafe {
            bioxen_vm_xapi_call(
                s.0,
                std::ptr::null(),
                std::ptr::null(),
                &mut out,
                std::ptr::null_mut(),
            )
        },
        S::NullPointer as i32
    );
    drop(s);
    no_sessions(&f);
}

#[test]
fn xml_rpc_when_the_host_has_no_json_rpc() {
    let f = Fake::start();
    f.config(json!({"no_jsonrpc": true}));
    let s = open(&f.session_config(json!({}))).unwrap();
    assert_eq!(info(&s)["protocol"], "xml-rpc");
    let vms = xcall(&s, "VM.get_all_records", json!([])).unwrap();
    assert!(vms
        .as_object()
        .unwrap()
        .values()
        .any(|v| v["is_a_template"] == true));
    let (_, _, err) = xcall(&s, "VM.get_record", json!(["OpaqueRef:nope"]))
        .err()
        .unwrap();
    assert_eq!(err["code"], "HANDLE_INVALID");
    drop(s);
    no_sessions(&f);
}

#[test]
fn calls_are_bounded_in_time_and_in_number() {
    let f = Fake::start();
    let s =
        open(&f.session_config(json!({"call_timeout": 0.5, "max_calls_in_flight": 3}))).unwrap();
    f.fault(json!({"method": "pool.get_all", "action": "delay", "seconds": 3}));
    let t = Instant::now();
    let (st, msg, _) = xcall(&s, "pool.get_all", json!([])).err().unwrap();
    assert!(st == S::Timeout as i32, "{} {msg}", status_name(st));
    assert!(
        t.elapsed() < Duration::from_millis(500) + Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    // The abandoned call still sleeps on the fake: wait for it (bounded) before counting.
    let end = Instant::now() + Duration::from_secs(5);
    while f.stats()["inflight"] != 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    f.config(json!({"step_delay": 0.1}));
    f.control(json!({"op": "reset_stats"}));
    std::thread::scope(|sc| {
        for _ in 0..12 {
            sc.spawn(|| xcall(&s, "VM.get_all", json!([])).unwrap());
        }
    });
    let st = f.stats();
    assert!(st["max_inflight"].as_u64().unwrap() <= 3, "{st}");
    assert!(st["max_inflight"].as_u64().unwrap() >= 2, "{st}");
    // Keep-alive: the 12 calls used at most 3 (+1) connections.
    assert!(st["connections"].as_u64().unwrap() <= 4, "{st}");
    drop(s);
    f.config(json!({"step_delay": 0}));
    no_sessions(&f);
}

#[test]
fn the_fake_speaks_json_rpc_v1_and_refuses_malformed_requests() {
    // Our client speaks v2; the fake serves v1 too (replies with "error": null), as xapi.
    let f = Fake::start();
    let agent = ureq::AgentBuilder::new().build();
    let url = format!("{}/jsonrpc", f.s("http"));
    let login = json!({"method": "session.login_with_password",
                       "params": [f.s("username"), f.s("password")], "id": 7});
    let r = agent.post(&url).send_string(&login.to_string()).unwrap();
    assert_eq!(r.content_type(), "application/json");
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["id"], 7);
    let s = v["result"].as_str().unwrap().to_string();
    let bad = json!({"method": "VM.get_record", "params": [s, "OpaqueRef:x"], "id": 8});
    let v: Value = serde_json::from_str(
        &agent
            .post(&url)
            .send_string(&bad.to_string())
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["error"], json!(["HANDLE_INVALID", "VM", "OpaqueRef:x"]));
    let out = json!({"method": "session.logout", "params": [s], "id": 9});
    agent.post(&url).send_string(&out.to_string()).unwrap();
    // No id: HTTP 500 with an HTML body, as xapi answers.
    match agent
        .post(&url)
        .send_string(r#"{"method": "VM.get_all", "params": []}"#)
    {
        Err(ureq::Error::Status(500, r)) => assert!(r.into_string().unwrap().contains("html")),
        other => panic!("{other:?}"),
    }
    no_sessions(&f);
}
