//! xcpng VMs over the C ABI against the fake XAPI (tests/rig/fake_xapi.py), whose started
//! VMs boot real guests (a private sshd with Lua on 127.0.0.N): deploy steps and progress,
//! key injection, host keys, Lua over SSH, teardown on free and on every failure, persistent
//! VMs, adoption, sweep and parallel clusters. After each test the fake holds nothing the
//! test made: no VM, VDI, VBD, VIF, guest metrics, task or session.

mod common;
use bioxen_vm::bioxen_vm_status as S;
use bioxen_vm::ffi::*;
use common::xapi_fake::Fake;
use common::*;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLEAN: Duration = Duration::from_secs(10);

/// A deploy's steps, in order.
const STEPS: &[&str] = &[
    "login",
    "find template",
    "clone",
    "tag",
    "configure",
    "provision",
    "start",
    "wait for guest metrics",
    "wait for an IP",
    "wait for SSH",
    "start the agent",
];

/// A key pair for the guests, in a directory removed on drop.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new() -> Keys {
        let dir = std::env::temp_dir().join(format!(
            "bioxen_vm-xcpng-test-{}-{}",
            std::process::id(),
            bioxen_vm::xapi::config::ORIGINATOR.len() + rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        common::sshd::keygen(&dir.join("id"), "");
        Keys { dir }
    }
    fn key(&self) -> String {
        self.dir.join("id").to_string_lossy().into_owned()
    }
}

fn rand_suffix() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn options(f: &Fake, k: &Keys, extra: Value) -> Value {
    let mut o = json!({
        "vm_type": "xcpng",
        "xcp_host": f.s("https"),
        "xcp_username": f.s("username"),
        "xcp_password": f.s("password"),
        "tls_fingerprint": f.s("fingerprint"),
        "template_name": "Debian Bookworm 12",
        "vm_username": f.s("guest_user"),
        "vm_key_file": k.key(),
        "guest_port": f.info["guest_port"],
        "expected_ip_cidr": "127.0.0.0/8",
        "lua_executable": "lua5.4",
        "boot_timeout": 20,
        "poll_interval": 0.05,
        "retry_backoff": 0.05,
    });
    for (key, v) in extra.as_object().unwrap() {
        if v.is_null() {
            o.as_object_mut().unwrap().remove(key);
        } else {
            o[key] = v.clone();
        }
    }
    o
}

/// Events the progress callback saw, and when to cancel.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<Value>>,
    cancel_at: Mutex<Option<(String, String)>>,
}

unsafe extern "C" fn on_progress(ev: *const c_char, ud: *mut c_void) -> i32 {
    let seen = &*(ud as *const Seen);
    let v: Value = serde_json::from_str(CStr::from_ptr(ev).to_str().unwrap()).unwrap();
    let stop =
        seen.cancel_at.lock().as_ref().is_some_and(|(step, state)| {
            v["step"] == step.as_str() && v["state"] == state.as_str()
        });
    seen.events.lock().push(v);
    i32::from(stop)
}

fn deploy(o: &Value, seen: Option<&Seen>) -> Result<TestVm, (i32, String)> {
    let t = c(&o.to_string());
    let mut h = 0;
    let st = unsafe {
        match seen {
            Some(s) => bioxen_vm_xcpng_new(
                t.as_ptr(),
                Some(on_progress),
                s as *const Seen as *mut c_void,
                &mut h,
            ),
            None => bioxen_vm_new(t.as_ptr(), &mut h),
        }
    };
    if st == OK {
        Ok(TestVm(h))
    } else {
        Err((st, last_error()))
    }
}

fn steps(seen: &Seen, state: &str) -> Vec<String> {
    seen.events
        .lock()
        .iter()
        .filter(|e| e["state"] == state)
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn deploy_run_lua_and_free_destroys_everything() {
    let f = Fake::start();
    let k = Keys::new();
    let seen = Seen::default();
    // A clone that takes a while reports its progress as it goes.
    f.config(json!({"latency": {"VM.clone": 0.5}}));
    let vm = deploy(
        &options(
            &f,
            &k,
            json!({"vm_name": "t1_lua_vm", "vcpus": 2, "memory_mb": 512}),
        ),
        Some(&seen),
    )
    .unwrap();
    assert_eq!(steps(&seen, "done"), STEPS);
    assert!(
        seen.events.lock().iter().any(|e| e["state"] == "progress"),
        "no task progress was passed on"
    );
    let r = vm.exec("x = 40; print(_VERSION); return x + 2");
    assert!(r.success, "{r:?}");
    assert_eq!(r.out(), "Lua 5.4\n42\n");
    assert_eq!(r.values, json!([42]));
    assert_eq!(vm.exec("return x").values, json!([40]));
    let info = vm.info();
    assert_eq!(info["vm_type"], "xcpng");
    let uuid = info["vm_uuid"].as_str().unwrap().to_string();
    let guests = f.guests();
    let g = &guests[&uuid];
    assert_eq!(info["vm_ip"], g["ip"], "{info}");
    assert_eq!(info["guest_host_key_fingerprint"], g["fingerprint"]);
    assert!(
        info["pool_host"].as_str().unwrap().contains("127.0.0.1"),
        "{info}"
    );
    assert!(info["deploy_timings"]["clone"].as_f64().is_some(), "{info}");
    assert!(
        !info.to_string().contains(&f.s("password")),
        "the XAPI password shows in info"
    );
    // The VM on the fake: named, tagged, configured, the key in xenstore_data.
    let state = f.control(json!({"op": "state"}));
    let (_, rec) = state["VM"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v["uuid"] == uuid.as_str())
        .unwrap();
    assert_eq!(rec["name_label"], "t1_lua_vm");
    assert_eq!(rec["VCPUs_at_startup"], 2);
    assert_eq!(rec["memory_static_max"], 512u64 << 20);
    assert_eq!(
        rec["other_config"]["bioxen_vm:deploy_id"],
        info["deploy_id"]
    );
    let pubkey = std::fs::read_to_string(k.key() + ".pub").unwrap();
    assert_eq!(
        rec["xenstore_data"]["vm-data/bioxen/authorized_keys"],
        pubkey.trim()
    );
    for vdi in state["VDI"].as_object().unwrap().values() {
        if vdi["name_label"] == "Debian Bookworm 12 0"
            && vdi["other_config"].get("bioxen_vm:deploy_id").is_some()
        {
            assert_eq!(
                vdi["other_config"]["bioxen_vm:deploy_id"],
                info["deploy_id"]
            );
        }
    }
    drop(vm);
    f.assert_clean(CLEAN);
    assert!(f.guests().as_object().unwrap().is_empty());
}

fn failed(o: &Value, seen: Option<&Seen>) -> (i32, String, Duration) {
    let t = Instant::now();
    match deploy(o, seen) {
        Ok(vm) => panic!("deployed {}", vm.info()),
        Err((st, m)) => (st, m, t.elapsed()),
    }
}

#[test]
fn every_failing_xapi_call_leaves_nothing_behind() {
    let f = Fake::start();
    let k = Keys::new();
    let o = options(
        &f,
        &k,
        json!({"vcpus": 2, "network": "Pool-wide network associated with eth0"}),
    );
    for method in [
        "VM.get_by_name_label",
        "VM.clone",
        "VM.add_to_other_config",
        "VDI.add_to_other_config",
        "VM.set_VCPUs_at_startup",
        "VM.add_to_xenstore_data",
        "VM.provision",
        "VM.start",
        "VM.get_guest_metrics",
        "VM_guest_metrics.get_networks",
    ] {
        f.control(json!({"op": "clear_faults"}));
        f.fault(json!({"method": method, "error": ["INTERNAL_ERROR", "injected into ".to_string() + method]}));
        let (st, msg, _) = failed(&o, None);
        assert_eq!(st, S::VmManagerError as i32, "{method}: {msg}");
        assert!(
            msg.contains("INTERNAL_ERROR(injected into"),
            "{method}: {msg}"
        );
        f.assert_clean(CLEAN);
    }
    // A lost connection on a state-changing call fails the deploy (it is not sent twice).
    for method in ["VM.provision", "VM.start", "VM.set_name_description"] {
        f.control(json!({"op": "clear_faults"}));
        f.fault(json!({"method": method, "action": "drop"}));
        let (st, msg, _) = failed(&o, None);
        assert_eq!(st, S::XcpngConnectionError as i32, "{method}: {msg}");
        f.assert_clean(CLEAN);
    }
    f.control(json!({"op": "clear_faults"}));
    // Transient pool errors are retried.
    f.fault(json!({"method": "VM.clone", "times": 2, "error": ["OTHER_OPERATION_IN_PROGRESS", "SR", "x"]}));
    let before = f.calls("Async.VM.clone");
    let vm = deploy(&o, None).unwrap();
    assert_eq!(f.calls("Async.VM.clone") - before, 3);
    drop(vm);
    f.assert_clean(CLEAN);
}

#[test]
fn failures_after_boot_leave_nothing_behind() {
    let f = Fake::start();
    let k = Keys::new();
    // No interpreter on the guest.
    let (st, msg, _) = failed(
        &options(&f, &k, json!({"lua_executable": "no-such-lua"})),
        None,
    );
    assert_eq!(st, S::LuaNotFound as i32, "{msg}");
    f.assert_clean(CLEAN);
    // The key was not injected, and the template does not have it: the guest refuses us.
    let (st, msg, _) = failed(&options(&f, &k, json!({"key_injection": "template"})), None);
    assert_eq!(st, S::VmConnectionError as i32, "{msg}");
    f.assert_clean(CLEAN);
    // A pinned guest host key that does not match.
    let pin = format!("SHA256:{}", "A".repeat(43));
    let (st, msg, _) = failed(
        &options(&f, &k, json!({"guest_host_key_fingerprint": pin})),
        None,
    );
    assert_eq!(st, S::VmConnectionError as i32, "{msg}");
    assert!(msg.contains("does not match"), "{msg}");
    f.assert_clean(CLEAN);
    // A template with the key baked into its disk works without injection.
    let pubkey = std::fs::read_to_string(k.key() + ".pub").unwrap();
    f.control(json!({"op": "add_template", "name": "Baked", "baked_key": pubkey.trim()}));
    let vm = deploy(
        &options(
            &f,
            &k,
            json!({"key_injection": "template", "template_name": "Baked"}),
        ),
        None,
    )
    .unwrap();
    assert_eq!(vm.exec("return 7").values, json!([7]));
    drop(vm);
    f.assert_clean(CLEAN);
    // Unknown template: the original's words.
    let (st, msg, _) = failed(&options(&f, &k, json!({"template_name": "Nope"})), None);
    assert_eq!(st, S::VmManagerError as i32);
    assert_eq!(msg, "Template not found: Nope");
    f.assert_clean(CLEAN);
}

#[test]
fn no_ip_times_out_naming_the_step() {
    let f = Fake::start();
    let k = Keys::new();
    f.config(json!({"no_ip": true}));
    let (st, msg, took) = failed(&options(&f, &k, json!({"boot_timeout": 1.5})), None);
    assert_eq!(st, S::Timeout as i32, "{msg}");
    assert!(
        msg.contains("step 'wait for an IP'")
            && msg.contains("did not get IP address within 1.5 seconds"),
        "{msg}"
    );
    assert!(
        took < Duration::from_millis(1500) + Duration::from_secs(3),
        "{took:?}"
    );
    f.assert_clean(CLEAN);
    // A guest that only ever reports link-local addresses gets none either.
    f.config(json!({"no_ip": false, "linklocal_delay": 30}));
    let (st, msg, _) = failed(&options(&f, &k, json!({"boot_timeout": 1.5})), None);
    assert_eq!(st, S::Timeout as i32, "{msg}");
    assert!(msg.contains("169.254."), "{msg}");
    f.assert_clean(CLEAN);
}

#[test]
fn cancelling_at_any_step_leaves_nothing_behind() {
    let f = Fake::start();
    let k = Keys::new();
    let o = options(&f, &k, json!({}));
    for step in STEPS {
        let seen = Seen::default();
        *seen.cancel_at.lock() = Some(((*step).into(), "start".into()));
        let (st, msg, _) = failed(&o, Some(&seen));
        assert_eq!(st, S::Cancelled as i32, "{step}: {msg}");
        assert!(steps(&seen, "failed").len() == 1, "{step}");
        f.assert_clean(CLEAN);
    }
    // While a clone task runs (XAPI rolls its clone back), and while waiting for an IP.
    f.config(json!({"latency": {"VM.clone": 1.0}, "linklocal_delay": 1.0}));
    for (step, state) in [("clone", "progress"), ("wait for an IP", "wait")] {
        let seen = Seen::default();
        *seen.cancel_at.lock() = Some((step.into(), state.into()));
        let (st, msg, took) = failed(&o, Some(&seen));
        assert_eq!(st, S::Cancelled as i32, "{step}: {msg}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        f.assert_clean(CLEAN);
    }
}

#[test]
fn shutdown_falls_back_to_hard_and_persistent_vms_are_kept_and_attached() {
    let f = Fake::start();
    let k = Keys::new();
    // A guest that ignores the clean shutdown: hard after shutdown_timeout.
    f.config(json!({"clean_shutdown": "hang"}));
    let vm = deploy(&options(&f, &k, json!({"shutdown_timeout": 0.5})), None).unwrap();
    let t = Instant::now();
    drop(vm);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    f.assert_clean(CLEAN);
    f.config(json!({"clean_shutdown": "lacks_feature"}));
    drop(deploy(&options(&f, &k, json!({})), None).unwrap());
    f.assert_clean(CLEAN);
    f.config(json!({"clean_shutdown": "ok"}));
    // persistent: left halted, and attached again by UUID.
    let vm = deploy(&options(&f, &k, json!({"persistent": true})), None).unwrap();
    vm.exec("return 1");
    let uuid = vm.info()["vm_uuid"].as_str().unwrap().to_string();
    drop(vm);
    let vms = f.control(json!({"op": "state"}))["VM"].clone();
    let (vref, rec) = vms
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v["uuid"] == uuid.as_str())
        .map(|(r, v)| (r.clone(), v.clone()))
        .unwrap();
    assert_eq!(rec["power_state"], "Halted");
    assert_eq!(rec["other_config"]["bioxen_vm:persistent"], "true");
    let vm = deploy(
        &options(&f, &k, json!({"vm_uuid": uuid, "template_name": null})),
        None,
    )
    .unwrap();
    assert_eq!(vm.info()["vm_uuid"], uuid.as_str());
    assert_eq!(vm.exec("return 2").values, json!([2]));
    drop(vm);
    let rec = &f.control(json!({"op": "state"}))["VM"][&vref];
    assert_eq!(rec["power_state"], "Halted", "an attached VM is kept");
    // sweep keeps persistent VMs, even with any_owner.
    let s = open_session(&f);
    let report = sweep(s, true);
    assert_eq!(report["kept"], json!([uuid]), "{report}");
    // Destroy it through the library's teardown: a deploy that adopts it by UUID... here by hand.
    xapi_call(
        s,
        "VM.remove_from_other_config",
        json!([vref, "bioxen_vm:persistent"]),
    );
    let report = sweep(s, true);
    assert_eq!(report["vms"], json!([uuid]), "{report}");
    assert_eq!(bioxen_vm_xapi_close(s), OK);
    f.assert_clean(CLEAN);
}

fn open_session(f: &Fake) -> u64 {
    let cfg = c(
        &json!({"url": f.s("http"), "username": f.s("username"), "password": f.s("password")})
            .to_string(),
    );
    let mut h = 0;
    assert_eq!(
        unsafe { bioxen_vm_xapi_open(cfg.as_ptr(), &mut h) },
        OK,
        "{}",
        last_error()
    );
    h
}

fn xapi_call(s: u64, method: &str, params: Value) -> Value {
    let m = c(method);
    let p = c(&params.to_string());
    let mut out = bioxen_vm_bytes::empty();
    let st =
        unsafe { bioxen_vm_xapi_call(s, m.as_ptr(), p.as_ptr(), &mut out, std::ptr::null_mut()) };
    assert_eq!(st, OK, "{method}: {}", last_error());
    take_json(out)
}

fn sweep(s: u64, any_owner: bool) -> Value {
    let mut out = bioxen_vm_bytes::empty();
    assert_eq!(
        unsafe { bioxen_vm_xcpng_sweep(s, any_owner, &mut out) },
        OK,
        "{}",
        last_error()
    );
    take_json(out)
}

#[test]
fn a_deploy_id_adopts_its_vm_and_sweep_removes_dead_owners() {
    let f = Fake::start();
    let k = Keys::new();
    // Through the pool member: HOST_IS_SLAVE is followed to the master.
    let o = options(
        &f,
        &k,
        json!({"xcp_host": f.s("member_https"), "deploy_id": "adopt-1", "persistent": true}),
    );
    let vm = deploy(&o, None).unwrap();
    let uuid = vm.info()["vm_uuid"].clone();
    assert!(vm.info()["xapi_url"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    drop(vm);
    let mut again = o.clone();
    again["persistent"] = false.into();
    let vm = deploy(&again, None).unwrap();
    let info = vm.info();
    assert_eq!(info["vm_uuid"], uuid);
    assert_eq!(info["adopted"], true);
    let tagged = f.control(json!({"op": "state"}))["VM"]
        .as_object()
        .unwrap()
        .values()
        .filter(|v| v["other_config"]["bioxen_vm:deploy_id"] == "adopt-1")
        .count();
    assert_eq!(tagged, 1, "a second VM was made");
    drop(vm);
    f.assert_clean(CLEAN);
    // A VM whose owner died (a pid that is not running) is swept; a live owner's is not.
    let s = open_session(&f);
    let t = xapi_call(s, "VM.get_by_name_label", json!(["Debian Bookworm 12"]))[0].clone();
    let machine = std::fs::read_to_string("/etc/machine-id")
        .map(|m| m.trim().to_string())
        .unwrap_or_default();
    let machine = if machine.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string()
    } else {
        machine
    };
    let dead = xapi_call(s, "VM.clone", json!([t, "orphan"]));
    xapi_call(
        s,
        "VM.add_to_other_config",
        json!([dead, "bioxen_vm:deploy_id", "x1"]),
    );
    xapi_call(
        s,
        "VM.add_to_other_config",
        json!([dead, "bioxen_vm:owner", format!("{machine}/4194000/1")]),
    );
    let live = deploy(&options(&f, &k, json!({})), None).unwrap();
    let report = sweep(s, false);
    assert_eq!(report["vms"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["errors"], json!([]));
    assert_eq!(
        live.exec("return 3").values,
        json!([3]),
        "sweep touched a live VM"
    );
    drop(live);
    assert_eq!(bioxen_vm_xapi_close(s), OK);
    f.assert_clean(CLEAN);
}

#[test]
fn interrupts_and_timeouts_behave_as_on_ssh_vms() {
    let f = Fake::start();
    let k = Keys::new();
    let vm = deploy(&options(&f, &k, json!({})), None).unwrap();
    let (st, msg) = vm.try_exec("while true do end", None, 500).unwrap_err();
    assert_eq!(st, S::Timeout as i32, "{msg}");
    let h = vm.0;
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut was = false;
        unsafe { bioxen_vm_interrupt(h, &mut was) };
        was
    });
    let (st, _) = vm.try_exec("while true do end", None, 0).unwrap_err();
    assert_eq!(st, S::Interrupted as i32);
    assert!(t.join().unwrap());
    assert_eq!(vm.exec("return 5").values, json!([5]));
    drop(vm);
    f.assert_clean(CLEAN);
}

#[test]
fn a_cluster_deploys_in_parallel_on_one_session_with_bounded_calls() {
    let f = Fake::start();
    let k = Keys::new();
    // Each call takes a little while on the pool, so that parallel deploys overlap.
    f.config(json!({"step_delay": 0.01}));
    let mut m = 0;
    let mo = c(r#"{"max_workers": 4}"#);
    assert_eq!(unsafe { bioxen_vm_manager_new(mo.as_ptr(), &mut m) }, OK);
    let o = c(&options(&f, &k, json!({"max_calls_in_flight": 5})).to_string());
    let id = c("xc");
    let mut ids = bioxen_vm_bytes::empty();
    let t = Instant::now();
    let st = unsafe { bioxen_vm_manager_create_cluster(m, id.as_ptr(), 6, o.as_ptr(), &mut ids) };
    assert_eq!(st, OK, "{}", last_error());
    let took = t.elapsed();
    assert_eq!(take_json(ids).as_array().unwrap().len(), 6);
    let st = f.stats();
    assert_eq!(
        st["calls"]["session.login_with_password"], 1,
        "one session per pool: {st}"
    );
    assert!(st["max_inflight"].as_u64().unwrap() <= 5, "{st}");
    assert!(
        st["max_inflight"].as_u64().unwrap() >= 2,
        "the deploys did not overlap: {st}"
    );
    for i in 0..6 {
        let r = mexec(m, &format!("xc_{i:03}"), "return 10 + 1", 0).unwrap();
        assert_eq!(r.values, json!([11]));
    }
    eprintln!("6 VMs deployed as one cluster in {took:?}");
    assert_eq!(bioxen_vm_manager_free(m), OK);
    f.assert_clean(CLEAN);
    // A cluster with one failing deploy: all or none.
    f.fault(json!({"method": "VM.start", "nth": 3, "error": ["NO_HOSTS_AVAILABLE"]}));
    assert_eq!(unsafe { bioxen_vm_manager_new(mo.as_ptr(), &mut m) }, OK);
    let mut ids = bioxen_vm_bytes::empty();
    let st = unsafe { bioxen_vm_manager_create_cluster(m, id.as_ptr(), 5, o.as_ptr(), &mut ids) };
    assert_eq!(st, S::VmManagerError as i32, "{}", last_error());
    assert!(last_error().contains("NO_HOSTS_AVAILABLE"));
    assert_eq!(bioxen_vm_manager_free(m), OK);
    f.assert_clean(CLEAN);
}
