//! `ssh` VMs against a private OpenSSH server on 127.0.0.1 (the tests' rig), side by side
//! with the anchors measured in the same run: a raw ssh2 connection (connect, handshake,
//! authenticate, exec), the OpenSSH client running one command, and a raw ssh2 exec
//! channel feeding one persistent `lua5.4` a line at a time.
//!
//! `cargo bench --bench ssh -- [--markdown <path>] [--quick] [--only <section>] [--no-wait]`
//! Sections: connect, execute, session, parallel, bulk, deadpeer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod harness;
#[path = "../tests/common/sshd.rs"]
mod sshd;
use harness::libvm::LibVm;
use harness::manager::{cstring, LibManager};
use harness::*;

const SECTIONS: [(&str, Section); 6] = [
    ("connect", section_connect),
    ("execute", section_execute),
    ("session", section_session),
    ("parallel", section_parallel),
    ("bulk", section_bulk),
    ("deadpeer", section_deadpeer),
];

fn rig() -> sshd::Sshd {
    sshd::Sshd::start("")
}

fn vm_options(rig: &sshd::Sshd, extra: &str) -> String {
    rig.options("lua5.4", extra)
}

/// A raw ssh2 session to the rig, authenticated with its key.
fn raw_session(rig: &sshd::Sshd) -> ssh2::Session {
    let tcp = TcpStream::connect(("127.0.0.1", rig.port)).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut s = ssh2::Session::new().expect("session");
    s.set_tcp_stream(tcp);
    s.handshake().expect("handshake");
    let mut kh = s.known_hosts().expect("known_hosts");
    kh.read_file(&rig.known_hosts, ssh2::KnownHostFileKind::OpenSSH)
        .expect("known_hosts file");
    let (key, _) = s.host_key().expect("host key");
    assert!(matches!(
        kh.check_port("127.0.0.1", rig.port, key),
        ssh2::CheckResult::Match
    ));
    s.userauth_pubkey_file(sshd::USER, None, &rig.key, None)
        .expect("auth");
    s
}

/// Connect + authenticate + exec one `lua5.4 -e` + read its output + close.
fn raw_connect_exec(rig: &sshd::Sshd) {
    let s = raw_session(rig);
    let mut ch = s.channel_session().expect("channel");
    ch.exec("lua5.4 -e 'print(1)'").expect("exec");
    let mut out = String::new();
    ch.read_to_string(&mut out).expect("read");
    ch.wait_close().expect("close");
    assert_eq!(out, "1\n");
}

fn cli_connect_exec(rig: &sshd::Sshd) {
    let out = std::process::Command::new("ssh")
        .args(["-q", "-i"])
        .arg(&rig.key)
        .args(["-p", &rig.port.to_string()])
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", rig.known_hosts.display()))
        .arg(format!("{}@127.0.0.1", sshd::USER))
        .arg("lua5.4 -e 'print(1)'")
        .output()
        .expect("ssh");
    assert_eq!(
        out.stdout,
        b"1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn samples_of(n: usize, mut f: impl FnMut()) -> Stats {
    f();
    stats(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_nanos() as f64
            })
            .collect(),
    )
}

fn section_connect(cx: &Ctx) -> (Vec<Row>, String) {
    let rig = rig();
    let o = vm_options(&rig, "");
    let n = cx.n(20, 5);
    let mut lib = Vec::new();
    let mut raw = Vec::new();
    let mut cli = Vec::new();
    for i in 0..=n {
        let t = Instant::now();
        let vm = LibVm::new(&o);
        let a = t.elapsed().as_nanos() as f64;
        drop(vm);
        let t = Instant::now();
        raw_connect_exec(&rig);
        let b = t.elapsed().as_nanos() as f64;
        let t = Instant::now();
        cli_connect_exec(&rig);
        let c = t.elapsed().as_nanos() as f64;
        if i > 0 {
            lib.push(a);
            raw.push(b);
            cli.push(c);
        }
        // Let the freed VM's connection go (it is held only by its VMs).
        std::thread::sleep(Duration::from_millis(20));
    }
    let (lib, raw, cli) = (stats(lib), stats(raw), stats(cli));
    let first = LibVm::new(&o);
    let second = samples_of(cx.n(50, 10), || drop(LibVm::new(&o)));
    drop(first);
    // The floor of a new VM on a connected host: a new channel running an interpreter.
    let s = raw_session(&rig);
    let raw_channel = samples_of(cx.n(50, 10), || {
        let mut ch = s.channel_session().expect("channel");
        ch.exec("exec lua5.4 -e 'io.write(1)'").expect("exec");
        let mut out = String::new();
        ch.read_to_string(&mut out).expect("read");
        ch.wait_close().expect("close");
        assert_eq!(out, "1");
    });
    let rows = vec![
        row(
            "connect + create the first ssh VM on a host (bioxen_vm_new; free not timed)",
            lib,
            "raw ssh2 connect + auth + exec `lua5.4 -e`: ",
            raw,
            Some(120e6),
        ),
        row(
            "  same, against the OpenSSH client running one command",
            lib,
            "`ssh host lua5.4 -e ...`: ",
            cli,
            Some(120e6),
        ),
        row(
            "create + free a second VM on a connected host",
            second,
            "raw ssh2 new channel on a connected session, exec `lua5.4 -e`, read, close: ",
            raw_channel,
            Some(5e6),
        ),
    ];
    (
        rows,
        format!("connect: {n} samples per side, sides alternating; the first VM's connection is new each time (the pool holds connections weakly); the agent is started and answered before bioxen_vm_new returns"),
    )
}

/// A persistent `lua5.4` on a raw exec channel that evaluates one line at a time.
struct RawRepl {
    _s: ssh2::Session,
    ch: ssh2::Channel,
    out: BufReader<ssh2::Stream>,
}

impl RawRepl {
    fn new(rig: &sshd::Sshd) -> Self {
        let s = raw_session(rig);
        let mut ch = s.channel_session().expect("channel");
        ch.exec(r#"lua5.4 -e 'for l in io.lines() do io.write(tostring(load(l)()), "\n") io.flush() end'"#)
            .expect("exec");
        let out = BufReader::new(ch.stream(0));
        RawRepl { _s: s, ch, out }
    }

    fn round_trip(&mut self, line: &[u8]) {
        self.ch.write_all(line).expect("write");
        self.ch.flush().expect("flush");
        let mut reply = Vec::new();
        self.out.read_until(b'\n', &mut reply).expect("read");
        assert_eq!(reply, b"1\n");
    }
}

fn exec_ok(vm: &LibVm, code: &[u8]) {
    vm.exec(code, 0);
}

fn section_execute(cx: &Ctx) -> (Vec<Row>, String) {
    let rig = rig();
    let vm = LibVm::new(&vm_options(&rig, ""));
    assert_eq!(vm.values("return 1"), "[1]");
    let mut raw = RawRepl::new(&rig);
    let plan = Plan {
        warmup: cx.n(200, 20),
        samples: cx.n(2000, 100),
        batch: 1,
    };
    let (lib, anchor) = paired(
        &plan,
        || exec_ok(&vm, b"return 1"),
        || raw.round_trip(b"return 1\n"),
    );
    let mut r = row(
        "execute `return 1` on an ssh VM (execute + result_free)",
        lib,
        "raw ssh2 exec channel, one line to a persistent lua5.4: ",
        anchor,
        Some(anchor.median * 1.5),
    );
    r.target = format!("≤ 1.5× the raw channel ({})", fmt_ns(anchor.median * 1.5));
    (
        vec![r],
        format!(
            "execute: {} paired samples of one call each, {} warm-up; p99 in brackets",
            plan.samples, plan.warmup
        ),
    )
}

fn section_session(cx: &Ctx) -> (Vec<Row>, String) {
    let rig = rig();
    let m = LibManager::new(&vm_options(&rig, ""));
    let id = cstring("s");
    m.create_session(&id);
    let mut raw = RawRepl::new(&rig);
    let plan = Plan {
        warmup: cx.n(100, 10),
        samples: cx.n(1000, 60),
        batch: 1,
    };
    let line = b"x = (x or 0) + 1";
    let (lib, anchor) = paired(
        &plan,
        || {
            m.command_with(&id, line, 5000, |_| ())
                .unwrap_or_else(|st| panic!("execute_interactive_command ({st}): {}", last_error()))
        },
        || raw.round_trip(b"return 1\n"),
    );
    let rows = vec![row(
        "session round trip on an ssh VM (execute_interactive_command + bytes_free)",
        lib,
        "raw ssh2 exec channel, one line to a persistent lua5.4: ",
        anchor,
        None,
    )];
    (rows, format!("session: {} paired samples", plan.samples))
}

fn section_parallel(cx: &Ctx) -> (Vec<Row>, String) {
    let rig = rig();
    let o = vm_options(&rig, "");
    let calls = cx.n(2000, 200);
    let one = LibVm::new(&o);
    exec_ok(&one, b"return 1");
    let t = Instant::now();
    for _ in 0..calls {
        exec_ok(&one, b"return 1");
    }
    let single = t.elapsed().as_secs_f64() / calls as f64;
    let vms: Vec<LibVm> = (0..8).map(|_| LibVm::new(&o)).collect();
    for v in &vms {
        exec_ok(v, b"return 1");
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        for v in &vms {
            s.spawn(move || {
                for _ in 0..calls {
                    exec_ok(v, b"return 1");
                }
            });
        }
    });
    let eight = t.elapsed().as_secs_f64() / (8 * calls) as f64;
    let speedup = single / eight;
    let rows = vec![Row {
        op: "8 ssh VMs on one host executing `return 1` in parallel (throughput)".into(),
        lib: format!("{:.0} calls/s", 1.0 / eight),
        anchor: format!("one VM: {:.0} calls/s", 1.0 / single),
        ratio: format!("{speedup:.2}×"),
        target: "– (reported)".into(),
        met: Met::Info,
        other: String::new(),
    }];
    (
        rows,
        format!("parallel: {calls} calls per VM; the 8 VMs share one connection (one I/O thread)"),
    )
}

fn section_bulk(cx: &Ctx) -> (Vec<Row>, String) {
    let rig = rig();
    let vm = LibVm::new(&vm_options(&rig, r#""max_output": 67108864"#));
    vm.exec(b"s = string.rep('x', 16 * 2^20)", 0);
    let n = cx.n(10, 3);
    let code = b"return s";
    let lib = samples_of(n, || exec_ok(&vm, code));
    // The raw anchor: the same 16 MiB written by a lua5.4 on a raw exec channel.
    let s = raw_session(&rig);
    let raw = samples_of(n, || {
        let mut ch = s.channel_session().expect("channel");
        ch.exec("lua5.4 -e 'io.write(string.rep(\"x\", 16 * 2^20))'")
            .expect("exec");
        let mut total = 0usize;
        let mut b = vec![0u8; 1 << 16];
        loop {
            let k = ch.read(&mut b).expect("read");
            if k == 0 {
                break;
            }
            total += k;
        }
        ch.wait_close().expect("close");
        assert_eq!(total, 16 << 20);
    });
    // Twice 16 MiB come back: the values' JSON and the printed value.
    let mib = 16.0;
    let lib_rate = 2.0 * mib / (lib.median / 1e9);
    let raw_rate = mib / (raw.median / 1e9);
    let rows = vec![Row {
        op: "a 16 MiB string returned by an ssh VM (values JSON + printed value: 32 MiB)".into(),
        lib: format!("{lib_rate:.0} MiB/s ({})", fmt_stats(lib)),
        anchor: format!("raw ssh2 channel, 16 MiB from lua5.4: {raw_rate:.0} MiB/s"),
        ratio: format!("{:.2}×", lib_rate / raw_rate),
        target: "≥ 100 MiB/s".into(),
        met: if lib_rate >= 100.0 { Met::Yes } else { Met::No },
        other: String::new(),
    }];
    (rows, format!("bulk: {n} samples per side"))
}

fn section_deadpeer(cx: &Ctx) -> (Vec<Row>, String) {
    let n = cx.n(3, 1);
    let mut times = Vec::new();
    for _ in 0..n {
        let rig = rig();
        let vm = LibVm::new(&vm_options(&rig, ""));
        exec_ok(&vm, b"return 1");
        let pids = rig.server_pids();
        let freezer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            for p in &pids {
                // SAFETY: plain syscall on the rig's server processes.
                unsafe { libc::kill(*p, libc::SIGSTOP) };
            }
            (Instant::now(), pids)
        });
        let code = b"local t = os.time() while os.time() - t < 60 do end";
        let st = vm.run(code, 0).err().unwrap_or(0);
        let (frozen_at, pids) = freezer.join().expect("freezer");
        times.push(frozen_at.elapsed().as_nanos() as f64);
        assert_eq!(
            st,
            26,
            "expected VM_CONNECTION_ERROR, got {st}: {}",
            last_error()
        );
        for p in &pids {
            // SAFETY: as above.
            unsafe { libc::kill(*p, libc::SIGCONT) };
        }
    }
    let s = stats(times);
    let rows = vec![Row {
        op: "dead peer (server stops answering without closing): the call in flight fails".into(),
        lib: format!("after {}", fmt_stats(s)),
        anchor: "Ansible: no bound; Mitogen: 45–300 s".into(),
        ratio: "–".into(),
        target: "≤ 10 s".into(),
        met: if s.median <= 10e9 { Met::Yes } else { Met::No },
        other: String::new(),
    }];
    (
        rows,
        format!("deadpeer: {n} samples; default keepalive_interval (4 s): dead after two silent intervals"),
    )
}

fn main() {
    bench_main(
        &SECTIONS,
        "ssh-kind",
        "OpenSSH sshd on 127.0.0.1, lua5.4 on the remote side",
        &[
            "operation",
            "bioxen_vm",
            "anchor (same run)",
            "anchor / bioxen_vm",
            "target",
            "met?",
            "other CPU",
        ],
    );
}
