//! Networked VMs on 127.0.0.1: a server and a client, a P2P ring, injection attempts
//! through hosts and messages, `validate_port`, `validate_host` and the script templates.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::*;
use serde_json::{json, Value};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

const NETWORKED: &str = r#"{"networked": true, "lua_executable": "lua5.4"}"#;

/// `n` consecutive ports that are free on 127.0.0.1 right now (in 20000–59999).
fn free_ports(n: u16) -> u16 {
    // Tests in this binary run in parallel and each releases its ports
    // before the child Lua binds them, so every call starts at a block no
    // earlier call in this process was given: a process-wide counter, seeded
    // from the pid and the wall clock so concurrent test binaries differ too.
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    let _ = NEXT.compare_exchange(u64::MAX, seed % 4000, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..400 {
        let block = NEXT.fetch_add(1, Ordering::SeqCst) % 4000;
        let base = 20000 + block as u16 * 10;
        let held: Vec<_> = (0..n)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} free consecutive ports");
}

fn net_run(vm: u64, mode: &str, options: &str, timeout_ms: u64) -> Result<Res, (i32, String)> {
    let (m, o) = (c(mode), c(options));
    let mut r = empty_result();
    match unsafe { bioxen_vm_net_run(vm, m.as_ptr(), o.as_ptr(), timeout_ms, &mut r) } {
        OK => Ok(take_result(r)),
        st => Err((st, last_error())),
    }
}

fn manager() -> u64 {
    let mut m = 0;
    assert_eq!(unsafe { bioxen_vm_manager_new(null(), &mut m) }, OK);
    m
}

fn start(m: u64, id: &str, mode: &str, options: &str) -> Result<u64, (i32, String)> {
    let (i, md, o) = (c(id), c(mode), c(options));
    let mut j = 0;
    match unsafe {
        bioxen_vm_manager_net_start(m, i.as_ptr(), md.as_ptr(), o.as_ptr(), 20_000, &mut j)
    } {
        OK => Ok(j),
        st => Err((st, last_error())),
    }
}

fn wait(j: u64) -> Res {
    let mut r = empty_result();
    assert_eq!(
        unsafe { bioxen_vm_job_wait(j, 30_000, &mut r) },
        OK,
        "{}",
        last_error()
    );
    bioxen_vm_job_free(j);
    take_result(r)
}

fn create(m: u64, id: &str, options: &str) {
    let (i, o) = (c(id), c(options));
    assert_eq!(
        unsafe { bioxen_vm_manager_create_vm(m, i.as_ptr(), o.as_ptr()) },
        OK,
        "{}",
        last_error()
    );
}

#[test]
fn a_server_and_a_client_talk_with_the_original_lines() {
    let port = free_ports(1);
    let m = manager();
    create(m, "srv", NETWORKED);
    let server = start(
        m,
        "srv",
        "server",
        &format!(r#"{{"port": {port}, "accept_timeout": 20}}"#),
    )
    .unwrap();
    let client = TestVm::new(NETWORKED);
    // The server may not listen yet: retry the client for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = net_run(
            client.0,
            "client",
            &format!(r#"{{"host": "127.0.0.1", "port": {port}, "message": "hi there", "connect_timeout": 2}}"#),
            10_000,
        )
        .unwrap();
        if r.success || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(r.success, "{}", r.err());
    assert!(
        r.out()
            .contains("Lua Client: Connected to server at 127.0.0.1"),
        "{}",
        r.out()
    );
    assert!(
        r.out().contains(
            "Lua Client: Received from server: Hello from Lua Server! What's your message?"
        ),
        "{}",
        r.out()
    );
    assert!(
        r.out().contains("Lua Client: Sent message: 'hi there'"),
        "{}",
        r.out()
    );
    let s = wait(server);
    assert!(s.success, "{}", s.err());
    let out = s.out();
    for line in [
        format!("Lua Server: Listening on port {port}..."),
        "Lua Server: Client connected from 127.0.0.1".to_string(),
        "Lua Server: Received from client: hi there".to_string(),
        "Lua Server: Connection closed.".to_string(),
    ] {
        assert!(out.contains(&line), "missing {line:?} in {out}");
    }
    assert_eq!(s.values[0]["received"], "hi there");
    assert_eq!(bioxen_vm_manager_free(m), OK);
}

#[test]
fn a_p2p_ring_of_three_exchanges_heartbeats() {
    let base = free_ports(3);
    let m = manager();
    let id = c("ring");
    let mut b = bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    };
    let opts = c(r#"{"lua_executable": "lua5.4"}"#);
    let t = Instant::now();
    assert_eq!(
        unsafe {
            bioxen_vm_manager_setup_p2p_cluster(
                m,
                id.as_ptr(),
                3,
                base as i64,
                2.0,
                0.4,
                opts.as_ptr(),
                &mut b,
            )
        },
        OK,
        "{}",
        last_error()
    );
    let jobs = take_json(b);
    assert_eq!(jobs.as_object().unwrap().len(), 3);
    let ids: Vec<String> = jobs.as_object().unwrap().keys().cloned().collect();
    assert_eq!(ids, ["ring_000", "ring_001", "ring_002"]);
    let mut b = bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    };
    let j = c(&jobs.to_string());
    assert_eq!(
        unsafe { bioxen_vm_wait_for_cluster(j.as_ptr(), 30_000, &mut b) },
        OK,
        "{}",
        last_error()
    );
    let results = take_json(b);
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(15),
        "{elapsed:?}"
    );
    for (i, id) in ids.iter().enumerate() {
        let r = &results[id];
        assert_eq!(r["success"], true, "{id}: {r}");
        let out = r["stdout"].as_str().unwrap();
        assert!(
            out.contains(&format!(
                "P2P VM: Listening on local port {}...",
                base + i as u16
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "P2P VM: Connected to peer at 127.0.0.1:{}",
                base + ((i + 1) % 3) as u16
            )),
            "{out}"
        );
        // Heartbeats from both neighbours (the ring's connections go both ways).
        let beats = out.matches(": Heartbeat at ").count();
        assert!(beats >= 4, "{id} got {beats} heartbeats: {out}");
        assert!(out.contains("P2P VM: Shutting down after 2"), "{out}");
        assert!(r["values"][0]["received"].as_i64().unwrap() >= 1, "{r}");
    }
    for id in jobs.as_object().unwrap().values() {
        bioxen_vm_job_free(id.as_u64().unwrap());
    }
    assert_eq!(bioxen_vm_manager_free(m), OK);
}

#[test]
fn hosts_and_messages_are_data_not_code() {
    let port = free_ports(1);
    let m = manager();
    create(m, "srv", NETWORKED);
    let nasty = r#"x" .. os.exit(9) .. "]] os.exit(9) --[==[ \" \\ '"#;
    let server = start(
        m,
        "srv",
        "server",
        &format!(r#"{{"port": {port}, "accept_timeout": 20}}"#),
    )
    .unwrap();
    let client = TestVm::new(NETWORKED);
    let msg = json!({"host": "127.0.0.1", "port": port, "message": nasty, "connect_timeout": 2});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = net_run(client.0, "client", &msg.to_string(), 10_000).unwrap();
        if r.success || Instant::now() > deadline {
            assert!(r.success, "{}", r.err());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = wait(server);
    assert_eq!(
        s.values[0]["received"], nasty,
        "the message arrives as it was given"
    );
    // A host that tries to break out of a string is just an unknown host.
    let bad_host =
        json!({"host": "127.0.0.1\"); os.exit(9) --", "port": port, "connect_timeout": 1});
    let r = net_run(client.0, "client", &bad_host.to_string(), 10_000).unwrap();
    assert!(!r.success);
    assert_ne!(r.return_code, 9);
    assert_eq!(
        client.exec("return 'still here'").values,
        json!(["still here"])
    );
    assert_eq!(bioxen_vm_manager_free(m), OK);
}

#[test]
fn option_checks_with_the_original_messages() {
    let vm = TestVm::new(NETWORKED);
    let cases: &[(&str, &str, i32, &str)] = &[
        (
            "server",
            r#"{"port": 80}"#,
            S::InvalidArgument.code(),
            "Port must be between 1024 and 65535",
        ),
        (
            "server",
            r#"{"port": 70000}"#,
            S::InvalidArgument.code(),
            "Port must be between 1024 and 65535",
        ),
        (
            "server",
            r#"{}"#,
            S::InvalidArgument.code(),
            "option 'port' is required",
        ),
        (
            "client",
            r#"{"host": "  ", "port": 5000}"#,
            S::InvalidArgument.code(),
            "Host cannot be empty",
        ),
        (
            "client",
            r#"{"port": 5000}"#,
            S::InvalidArgument.code(),
            "Host cannot be empty",
        ),
        (
            "p2p",
            r#"{"local_port": 5000, "peer_host": "x"}"#,
            S::InvalidArgument.code(),
            "together",
        ),
        (
            "server",
            r#"{"port": 5000, "colour": 1}"#,
            S::InvalidArgument.code(),
            "unknown network option 'colour'",
        ),
        (
            "dance",
            r#"{}"#,
            S::InvalidArgument.code(),
            "unknown network mode 'dance'",
        ),
    ];
    for (mode, opts, st, msg) in cases {
        let (got, text) = net_run(vm.0, mode, opts, 0).unwrap_err();
        assert_eq!(got, *st, "{mode} {opts}: {text}");
        assert!(text.contains(msg), "{mode} {opts}: {text}");
    }
    // A VM without LuaSocket cannot network.
    let plain = TestVm::new("{}");
    let (st, msg) = net_run(plain.0, "server", r#"{"port": 5000}"#, 0).unwrap_err();
    assert_eq!(st, S::NetworkingError.code());
    assert!(msg.contains("not found"), "{msg}");
    let m = manager();
    create(m, "plain", "{}");
    assert_eq!(
        start(m, "plain", "server", r#"{"port": 5000}"#)
            .unwrap_err()
            .1,
        "Networked VM 'plain' not found"
    );
    assert_eq!(
        start(m, "ghost", "server", r#"{"port": 5000}"#)
            .unwrap_err()
            .1,
        "Networked VM 'ghost' not found"
    );
    let mut b = bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    };
    let id = c("one");
    assert_eq!(
        unsafe {
            bioxen_vm_manager_setup_p2p_cluster(m, id.as_ptr(), 1, 9000, 1.0, 0.0, null(), &mut b)
        },
        S::InvalidArgument.code()
    );
    assert_eq!(last_error(), "P2P cluster requires at least 2 VMs");
    assert_eq!(bioxen_vm_manager_free(m), OK);
    // A server with no client stops at the call's timeout; the VM goes on (fresh child).
    let port = free_ports(1);
    let (st, _) = net_run(vm.0, "server", &format!(r#"{{"port": {port}}}"#), 300).unwrap_err();
    assert_eq!(st, S::Timeout.code());
    assert_eq!(vm.exec("return 1").values, json!([1]));
}

#[test]
fn validate_port_and_host() {
    for p in [1024, 8080, 65535] {
        assert_eq!(bioxen_vm_validate_port(p), OK);
    }
    for p in [-1, 0, 80, 1023, 65536, i64::MAX] {
        assert_eq!(bioxen_vm_validate_port(p), S::InvalidArgument.code());
        assert_eq!(last_error(), "Port must be between 1024 and 65535");
    }
    assert_eq!(
        unsafe { bioxen_vm_validate_host(c("localhost").as_ptr()) },
        OK
    );
    for h in ["", "   ", "\t\n"] {
        assert_eq!(
            unsafe { bioxen_vm_validate_host(c(h).as_ptr()) },
            S::InvalidArgument.code()
        );
        assert_eq!(last_error(), "Host cannot be empty");
    }
    assert_eq!(
        unsafe { bioxen_vm_validate_host(null()) },
        S::NullPointer.code()
    );
}

fn template(name: &str, options: &Value) -> Result<String, (i32, String)> {
    let (n, o) = (c(name), c(&options.to_string()));
    let mut b = bioxen_vm_bytes {
        data: null_mut(),
        len: 0,
    };
    match unsafe { bioxen_vm_script_template(n.as_ptr(), o.as_ptr(), &mut b) } {
        OK => {
            let s = String::from_utf8(bytes_of(&b)).unwrap();
            unsafe { bioxen_vm_bytes_free(&mut b) };
            Ok(s)
        }
        st => Err((st, last_error())),
    }
}

#[test]
fn templates_quote_every_value() {
    let nasty = "\"]] os.exit(9) --[[ \\ \n\r\0 ' ü \u{1F600}";
    let vm = TestVm::new("{}");
    // Each template compiles, and each value reads back exactly as given.
    for (name, opts, var) in [
        (
            "simple_echo_server",
            json!({"port": 9000, "bind": nasty}),
            "bind",
        ),
        (
            "heartbeat_client",
            json!({"host": nasty, "port": 9000, "interval": 0.5, "count": 3}),
            "host",
        ),
        (
            "http_client_template",
            json!({"url": nasty, "method": nasty}),
            "url",
        ),
    ] {
        let src = template(name, &opts).unwrap();
        // The line that assigns the values, run alone, yields the values as given.
        let line = src
            .lines()
            .find(|l| l.starts_with("local ") && l.contains(&format!("{var},")))
            .unwrap();
        let r = vm.exec(&format!("{line}\nreturn {var}"));
        assert_eq!(r.values, json!([nasty]), "{name}: {line}");
        let r = vm
            .try_exec(
                "return load(...) ~= nil",
                Some(&json!([src]).to_string()),
                0,
            )
            .unwrap();
        assert_eq!(r.values, json!([true]), "{name} compiles:\n{src}");
    }
    assert_eq!(
        template("heartbeat_client", &json!({"host": " ", "port": 9000}))
            .unwrap_err()
            .1,
        "Host cannot be empty"
    );
    assert_eq!(
        template("simple_echo_server", &json!({"port": 22}))
            .unwrap_err()
            .1,
        "Port must be between 1024 and 65535"
    );
    assert!(template("nope", &json!({}))
        .unwrap_err()
        .1
        .contains("unknown template"));
}

#[test]
fn an_echo_server_template_runs() {
    // The rendered echo server really serves (in a child lua5.4 with LuaSocket).
    let port = free_ports(1);
    let src = template("simple_echo_server", &json!({"port": port})).unwrap();
    let m = manager();
    create(m, "echo", NETWORKED);
    let (i, code) = (c("echo"), src.clone());
    let mut job = 0;
    assert_eq!(
        unsafe {
            bioxen_vm_manager_execute_async(
                m,
                i.as_ptr(),
                code.as_ptr().cast(),
                code.len(),
                null(),
                0,
                &mut job,
            )
        },
        OK
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{BufRead, Write};
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"ping\n").unwrap();
            let mut line = String::new();
            std::io::BufReader::new(s).read_line(&mut line).unwrap();
            break line;
        }
        assert!(Instant::now() < deadline, "echo server never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reply, "Echo: ping\n");
    assert_eq!(unsafe { bioxen_vm_job_cancel(job, null_mut()) }, OK);
    bioxen_vm_job_free(job);
    assert_eq!(bioxen_vm_manager_free(m), OK);
}
