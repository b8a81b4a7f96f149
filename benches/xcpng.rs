//! `xcpng` VMs against the fake XAPI (tests/rig/fake_xapi.py) answering as fast as it can
//! (no task latency, guests reported as soon as their sshd listens): XAPI calls and HTTP
//! connections per deploy and per teardown, counted on the fake; the library's own time
//! per deploy (its process's CPU time, and the wall time of the XAPI steps); and 16 VMs
//! deployed as one cluster against one VM, over 5 runs that must all succeed.
//!
//! `cargo bench --bench xcpng -- [--markdown <path>] [--quick] [--only <section>] [--no-wait]`
//! Sections: calls, owntime, cluster.

use std::time::{Duration, Instant};

#[allow(dead_code)]
mod harness;
#[path = "../tests/common/sshd.rs"]
mod sshd;
#[path = "../tests/common/xapi_fake.rs"]
mod xapi_fake;
use harness::libvm::LibVm;
use harness::manager::cstring;
use harness::*;
use serde_json::{json, Value};
use xapi_fake::Fake;

const SECTIONS: [(&str, Section); 3] = [
    ("calls", section_calls),
    ("owntime", section_owntime),
    ("cluster", section_cluster),
];

/// A fake that answers at once, and a guest key.
struct Pool {
    fake: Fake,
    dir: std::path::PathBuf,
}

impl Pool {
    fn new() -> Pool {
        let fake = Fake::start();
        fake.config(json!({"guest_delay": 0, "linklocal_delay": 0, "task_steps": 1}));
        let dir =
            std::env::temp_dir().join(format!("bioxen_vm-xcpng-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("key dir");
        sshd::keygen(&dir.join("id"), "");
        Pool { fake, dir }
    }

    fn options(&self, extra: Value) -> String {
        let f = &self.fake;
        let mut o = json!({
            "vm_type": "xcpng",
            "xcp_host": f.s("https"),
            "xcp_username": f.s("username"),
            "xcp_password": f.s("password"),
            "tls_fingerprint": f.s("fingerprint"),
            "template_name": "Debian Bookworm 12",
            "vm_username": f.s("guest_user"),
            "vm_key_file": self.dir.join("id").to_string_lossy(),
            "guest_port": f.info["guest_port"],
            "expected_ip_cidr": "127.0.0.0/8",
            "lua_executable": "lua5.4",
            "boot_timeout": 60,
            "poll_interval": 0.02,
        });
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        o.to_string()
    }

    fn clean(&self) {
        self.fake.assert_clean(Duration::from_secs(20));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The VM's `info` as JSON.
fn info_of(vm: &LibVm) -> Value {
    let mut out = bioxen_vm::ffi::bioxen_vm_bytes::empty();
    // SAFETY: `out` is valid for writes.
    let st = unsafe { bioxen_vm::ffi::bioxen_vm_info(vm.0, &mut out) };
    assert_eq!(st, 0, "bioxen_vm_info: {}", last_error());
    let v = serde_json::from_slice(&harness::libvm::bytes_of(&out)).expect("info is JSON");
    // SAFETY: filled by the library.
    unsafe { bioxen_vm::ffi::bioxen_vm_bytes_free(&mut out) };
    v
}

/// This process's CPU time (user + system), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn info_row(op: &str, lib: String, anchor: String, ratio: String, target: &str, met: Met) -> Row {
    Row {
        op: op.into(),
        lib,
        anchor,
        ratio,
        target: target.into(),
        met,
        other: String::new(),
    }
}

fn calls_of(stats: &Value) -> (u64, u64, u64) {
    let calls: u64 = stats["calls"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    (
        calls,
        stats["requests"].as_u64().unwrap_or(0),
        stats["connections"].as_u64().unwrap_or(0),
    )
}

fn section_calls(cx: &Ctx) -> (Vec<Row>, String) {
    let pool = Pool::new();
    let o = pool.options(json!({}));
    let n = cx.n(5, 2);
    let (mut dep, mut down) = (Vec::new(), Vec::new());
    for _ in 0..n {
        pool.fake.control(json!({"op": "reset_stats"}));
        let vm = LibVm::new(&o);
        dep.push(calls_of(&pool.fake.stats()));
        pool.fake.control(json!({"op": "reset_stats"}));
        drop(vm);
        down.push(calls_of(&pool.fake.stats()));
        pool.clean();
    }
    let med = |v: &[(u64, u64, u64)], i: usize| {
        let mut x: Vec<u64> = v
            .iter()
            .map(|t| match i {
                0 => t.0,
                1 => t.1,
                _ => t.2,
            })
            .collect();
        x.sort_unstable();
        x[x.len() / 2]
    };
    let rows = vec![
        info_row(
            "XAPI calls per deploy (login to a running agent)",
            format!("{} calls, {} HTTP requests", med(&dep, 0), med(&dep, 1)),
            format!("{} HTTP connections (keep-alive)", med(&dep, 2)),
            "–".into(),
            "– (reported)",
            Met::Info,
        ),
        info_row(
            "XAPI calls per teardown (clean shutdown, destroy with disks, logout)",
            format!("{} calls, {} HTTP requests", med(&down, 0), med(&down, 1)),
            format!("{} HTTP connections (keep-alive)", med(&down, 2)),
            "–".into(),
            "– (reported)",
            Met::Info,
        ),
    ];
    (
        rows,
        format!("calls: {n} deploys; counted on the fake (medians)"),
    )
}

fn section_owntime(cx: &Ctx) -> (Vec<Row>, String) {
    let pool = Pool::new();
    let o = pool.options(json!({}));
    let n = cx.n(10, 3);
    let (mut cpu, mut wall, mut xapi) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let c0 = cpu_seconds();
        let t = Instant::now();
        let vm = LibVm::new(&o);
        wall.push(t.elapsed().as_secs_f64() * 1e9);
        cpu.push((cpu_seconds() - c0) * 1e9);
        let info = info_of(&vm);
        let steps = &info["deploy_timings"];
        // The XAPI steps: from login to start (the rest waits for the guest).
        let start = bioxen_vm::vm::xcpng::deploy::STEPS
            .iter()
            .position(|s| *s == "start")
            .expect("a start step");
        let x: f64 = bioxen_vm::vm::xcpng::deploy::STEPS[..=start]
            .iter()
            .filter_map(|s| steps[*s].as_f64())
            .sum();
        xapi.push(x * 1e9);
        drop(vm);
        pool.clean();
    }
    let (cpu, wall, xapi) = (stats(cpu), stats(wall), stats(xapi));
    let rows = vec![
        info_row(
            "library CPU time per deploy (this process, user + system)",
            fmt_stats(cpu),
            format!("deploy wall time {}", fmt_stats(wall)),
            format!("{:.1}% of the wall time", cpu.median / wall.median * 100.0),
            "– (reported)",
            Met::Info,
        ),
        info_row(
            "wall time of the XAPI steps per deploy (login … start)",
            fmt_stats(xapi),
            format!("deploy wall time {}", fmt_stats(wall)),
            format!("{:.1}%", xapi.median / wall.median * 100.0),
            "– (reported)",
            Met::Info,
        ),
    ];
    (
        rows,
        format!(
            "owntime: {n} deploys; the rest of the wall time is the guest booting (a private sshd started by the fake) and SSH"
        ),
    )
}

/// Wall seconds of one cluster deploy of `count` VMs, and the CPU seconds this process used.
fn deploy_cluster(pool: &Pool, o: &str, count: usize) -> Result<(f64, f64), String> {
    let m = harness::manager::LibManager::new(r#"{"max_workers": 4}"#);
    let id = cstring("bench");
    let oc = cstring(o);
    let mut ids = bioxen_vm::ffi::bioxen_vm_bytes::empty();
    let c0 = cpu_seconds();
    let t = Instant::now();
    // SAFETY: valid C strings and out-parameter.
    let st = unsafe {
        bioxen_vm::ffi::bioxen_vm_manager_create_cluster(
            m.0,
            id.as_ptr(),
            count,
            oc.as_ptr(),
            &mut ids,
        )
    };
    let took = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    // SAFETY: filled by the library (or empty).
    unsafe { bioxen_vm::ffi::bioxen_vm_bytes_free(&mut ids) };
    let r = if st == 0 {
        Ok((took, cpu))
    } else {
        Err(format!("status {st}: {}", last_error()))
    };
    drop(m);
    pool.clean();
    r
}

fn section_cluster(cx: &Ctx) -> (Vec<Row>, String) {
    let pool = Pool::new();
    let o = pool.options(json!({}));
    let runs = cx.n(5, 2);
    let (mut one, mut sixteen, mut failures) = (Vec::new(), Vec::new(), 0);
    let mut cpu = Vec::new();
    for _ in 0..runs {
        match deploy_cluster(&pool, &o, 1) {
            Ok((t, _)) => one.push(t * 1e9),
            Err(e) => {
                eprintln!("one VM: {e}");
                failures += 1;
            }
        }
        match deploy_cluster(&pool, &o, 16) {
            Ok((t, c)) => {
                sixteen.push(t * 1e9);
                cpu.push(c * 1e9);
            }
            Err(e) => {
                eprintln!("16 VMs: {e}");
                failures += 1;
            }
        }
    }
    let (a, b) = (stats(one), stats(sixteen));
    let ratio = b.median / a.median;
    let rows = vec![
        info_row(
            "16 xcpng VMs deployed as one cluster (create_cluster, wall time)",
            fmt_stats(b),
            format!("one VM: {}", fmt_stats(a)),
            format!("{ratio:.2}× one VM's time"),
            "– (reported)",
            Met::Info,
        ),
        info_row(
            "library CPU time while 16 VMs deploy (this process)",
            fmt_stats(stats(cpu.clone())),
            format!("cluster wall time {}", fmt_stats(b)),
            format!("{:.1}%", stats(cpu).median / b.median * 100.0),
            "– (reported)",
            Met::Info,
        ),
        info_row(
            "failed cluster deploys",
            format!("{failures} of {}", 2 * runs),
            "–".into(),
            "–".into(),
            "0",
            if failures == 0 { Met::Yes } else { Met::No },
        ),
    ];
    (
        rows,
        format!("cluster: {runs} runs of one VM and of 16 (8 deploys at a time, one XAPI session); every run torn down and checked clean; on 2 cores the 16 guests' sshd start-ups (in the fake) bound the wall time"),
    )
}

fn main() {
    bench_main(
        &SECTIONS,
        "xcpng-kind",
        "the fake XAPI (Python) on 127.0.0.1 answering at once, guests as private sshd on 127.0.0.N, lua5.4",
        &[
            "operation",
            "bioxen_vm",
            "anchor (same run)",
            "ratio",
            "target",
            "met?",
            "other CPU",
        ],
    );
}
