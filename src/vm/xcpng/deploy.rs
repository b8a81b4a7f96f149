//! Deploying an xcpng VM: named steps (see [`STEPS`]), each reported to the progress
//! observer and logged, every object tagged with the deploy id, and everything made so far
//! torn down on any failure or cancellation.

use super::guest_ip;
use super::options::{KeyInjection, Target, XcpngOptions};
use super::progress::{Observer, Progress};
use super::teardown::{self, TAG_ID, TAG_OWNER, TAG_PERSISTENT};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::vm::ssh::options::{HostKeyPolicy, SshOptions};
use crate::xapi::{task, Client, XapiError};
use serde_json::{json, Value};
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The steps of a deploy, in order (an adopted or attached VM skips the ones it is past).
pub const STEPS: &[&str] = &[
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

/// The xenstore key the guest's boot script reads its authorized key from.
pub const KEY_PATH: &str = "vm-data/bioxen/authorized_keys";

/// What a finished deploy knows.
pub struct Deployed {
    pub client: Arc<Client>,
    pub vm: String,
    pub uuid: String,
    pub ip: IpAddr,
    pub pool_host: String,
    pub deploy_id: String,
    pub vm_name: String,
    /// The library made this VM (it destroys it when freed unless persistent).
    pub owned: bool,
    pub adopted: bool,
    pub host_key: String,
    pub timings: Vec<(&'static str, f64)>,
    pub total: f64,
}

/// A fresh deploy id (16 hex digits).
pub fn new_id() -> String {
    String::from_utf8_lossy(&crate::agent::new_token())
        .chars()
        .take(16)
        .collect()
}

/// `<machine>/<pid>/<start time>` of this process.
pub fn owner() -> String {
    let machine = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(hostname);
    format!(
        "{machine}/{}/{}",
        std::process::id(),
        start_time(std::process::id()).unwrap_or(0)
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn looks_like_uuid(t: &str) -> bool {
    t.len() == 36
        && t.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// What has been made so far (what a failure must undo).
#[derive(Default)]
struct Made {
    vm: Option<String>,
    owned: bool,
    started: bool,
}

struct Run<'a> {
    o: &'a XcpngOptions,
    c: Arc<Client>,
    p: Progress,
    cancel: Arc<AtomicBool>,
    made: Made,
    id: String,
    vm_name: String,
    adopted: bool,
}

fn cancelled_error(step: &str) -> Error {
    Error::Cancelled(format!("the deploy was cancelled during '{step}'"))
}

impl Run<'_> {
    fn x(&self, what: &str) -> impl Fn(XapiError) -> Error + '_ {
        let what = what.to_string();
        move |e| {
            e.into_error(&format!(
                "xcpng deploy {} ({}): {what}",
                self.id, self.vm_name
            ))
        }
    }

    fn check(&mut self) -> Result<()> {
        if self.p.tick("") || self.cancel.load(SeqCst) {
            self.cancel.store(true, SeqCst);
            return Err(cancelled_error(self.p.step()));
        }
        Ok(())
    }

    /// A step begins (a cancel asked for at its start stops it before it does anything).
    fn begin(&mut self, step: &'static str, message: &str) -> Result<()> {
        self.p.start(step, message);
        self.check()
    }

    fn call(&self, method: &str, params: &[Value]) -> Result<Value> {
        self.c.call(method, params).map_err(self.x(method))
    }

    /// A task with progress and cancellation, transient errors retried.
    fn task(&mut self, method: &str, params: &[Value]) -> Result<Value> {
        let deadline = Deadline::after(Some(self.o.task_timeout));
        let limit = format!(
            "task_timeout ({} s)",
            crate::vm::seconds_text(self.o.task_timeout)
        );
        let cancel = self.cancel.clone();
        let c = self.c.clone();
        let is_cancelled = move || cancel.load(SeqCst);
        let p = &mut self.p;
        let flag = self.cancel.clone();
        let r = task::retrying(&c, method, &is_cancelled, deadline, || {
            task::run(
                &c,
                method,
                params,
                &mut task::Watch {
                    cancelled: &is_cancelled,
                    progress: &mut |x| {
                        p.task(x);
                        if p.cancelled() {
                            flag.store(true, SeqCst);
                        }
                    },
                    deadline,
                    limit: &limit,
                },
            )
        });
        match r {
            Err(XapiError::Cancelled(_)) => Err(cancelled_error(self.p.step())),
            Err(e) => Err(self.x(method)(e)),
            Ok(v) => Ok(v),
        }
    }

    /// Waits until `probe` gives a value, polling every `poll_interval`, within `deadline`.
    fn wait_for<T>(
        &mut self,
        deadline: Deadline,
        what_timed_out: impl Fn(&Self) -> String,
        mut probe: impl FnMut(&mut Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let poll = self.o.xapi.poll_interval;
        loop {
            self.check()?;
            if let Some(v) = probe(self)? {
                return Ok(v);
            }
            if deadline.passed() {
                return Err(Error::Timeout(format!(
                    "xcpng deploy {} ({}): step '{}' did not finish within boot_timeout ({} s): {}",
                    self.id,
                    self.vm_name,
                    self.p.step(),
                    crate::vm::seconds_text(self.o.boot_timeout),
                    what_timed_out(self)
                )));
            }
            let cancel = self.cancel.clone();
            let end = Instant::now() + poll;
            while Instant::now() < end && !deadline.passed() {
                if self.p.tick("") {
                    cancel.store(true, SeqCst);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20).min(poll));
            }
        }
    }

    fn tag(&self, class: &str, obj: &str, key: &str, value: &str) -> Result<()> {
        let m = format!("{class}.add_to_other_config");
        match self.c.call(&m, &[obj.into(), key.into(), value.into()]) {
            Ok(_) => Ok(()),
            Err(e) if e.is("MAP_DUPLICATE_KEY") => {
                self.call(
                    &format!("{class}.remove_from_other_config"),
                    &[obj.into(), key.into()],
                )?;
                self.call(&m, &[obj.into(), key.into(), value.into()])
                    .map(drop)
            }
            Err(e) => Err(self.x(&m)(e)),
        }
    }

    fn find_template(&mut self, name: &str) -> Result<String> {
        if looks_like_uuid(name) {
            match self.c.call("VM.get_by_uuid", &[name.into()]) {
                Ok(r) => return Ok(s(&r)),
                Err(e) if e.is("UUID_INVALID") => {}
                Err(e) => return Err(self.x("VM.get_by_uuid")(e)),
            }
        }
        let refs = self.call("VM.get_by_name_label", &[name.into()])?;
        let mut found = Vec::new();
        for r in refs.as_array().cloned().unwrap_or_default() {
            if self.call("VM.get_is_a_template", std::slice::from_ref(&r))? == true {
                found.push(s(&r));
            }
        }
        match found.len() {
            0 => Err(Error::Original {
                status: crate::status::bioxen_vm_status::VmManagerError,
                message: format!("Template not found: {name}"),
            }),
            1 => Ok(found.remove(0)),
            n => Err(Error::Original {
                status: crate::status::bioxen_vm_status::VmManagerError,
                message: format!("{n} templates are named '{name}': give the template's UUID"),
            }),
        }
    }

    /// The VM an earlier deploy with this id made, if any.
    fn adoptable(&self) -> Result<Option<String>> {
        let all = self.call("VM.get_all_records", &[])?;
        let mine: Vec<String> = all
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v["other_config"][TAG_ID] == self.id.as_str())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        match mine.len() {
            0 => Ok(None),
            1 => Ok(mine.into_iter().next()),
            n => Err(Error::Original {
                status: crate::status::bioxen_vm_status::VmManagerError,
                message: format!(
                    "{n} VMs carry deploy id '{}': remove the extra ones (bioxen_vm_xcpng_sweep) or use another id",
                    self.id
                ),
            }),
        }
    }

    fn resolve(&self, class: &str, name: &str) -> Result<String> {
        if looks_like_uuid(name) {
            if let Ok(r) = self.c.call(&format!("{class}.get_by_uuid"), &[name.into()]) {
                return Ok(s(&r));
            }
        }
        let refs = self.call(&format!("{class}.get_by_name_label"), &[name.into()])?;
        match refs.as_array().map(Vec::as_slice).unwrap_or_default() {
            [one] => Ok(s(one)),
            [] => Err(Error::invalid(format!("no {class} is named '{name}'"))),
            _ => Err(Error::invalid(format!(
                "several {class}s are named '{name}': give its UUID"
            ))),
        }
    }

    fn steps(&mut self, persistent: bool) -> Result<(String, IpAddr, String)> {
        let o = self.o;
        // find template (or the VM to adopt or attach)
        self.begin("find template", "")?;
        let mut template = None;
        match &o.target {
            Target::Attach(uuid) => {
                let vm = match self.c.call("VM.get_by_uuid", &[uuid.as_str().into()]) {
                    Ok(r) => s(&r),
                    Err(e) if e.is("UUID_INVALID") => {
                        return Err(Error::Original {
                            status: crate::status::bioxen_vm_status::VmManagerError,
                            message: format!("no VM has the UUID {uuid} (option 'vm_uuid')"),
                        })
                    }
                    Err(e) => return Err(self.x("VM.get_by_uuid")(e)),
                };
                if self.call("VM.get_is_a_template", &[vm.as_str().into()])? == true {
                    return Err(Error::invalid(format!(
                        "VM {uuid} is a template: give it as 'template_name' to deploy from it"
                    )));
                }
                self.made.vm = Some(vm);
                self.p.done("attaching to an existing VM");
            }
            Target::Template(name) => {
                if o.deploy_id.is_some() {
                    if let Some(vm) = self.adoptable()? {
                        self.made = Made {
                            vm: Some(vm),
                            owned: true,
                            started: false,
                        };
                        self.adopted = true;
                    }
                }
                if self.adopted {
                    self.p
                        .done("adopting the VM an earlier deploy with this id made");
                } else {
                    template = Some(self.find_template(name)?);
                    self.p.done("");
                }
            }
        }
        self.check()?;
        // clone (or copy)
        if let Some(t) = template {
            let copy = o.hardware.full_copy.unwrap_or(false);
            self.begin(if copy { "copy" } else { "clone" }, "")?;
            let vm = if copy {
                let sr = match &o.hardware.sr {
                    Some(sr) => self.resolve("SR", sr)?,
                    None => String::new(),
                };
                self.task(
                    "VM.copy",
                    &[t.into(), self.vm_name.clone().into(), sr.into()],
                )?
            } else {
                self.task("VM.clone", &[t.into(), self.vm_name.clone().into()])?
            };
            let vm = s(&vm);
            if !vm.starts_with("OpaqueRef:") {
                return Err(Error::Internal(format!(
                    "VM.clone returned '{vm}', not a VM"
                )));
            }
            self.made = Made {
                vm: Some(vm),
                owned: true,
                started: false,
            };
            self.p.done("");
        }
        let vm = self.made.vm.clone().unwrap_or_default();
        let vmv = Value::from(vm.clone());
        // tag
        if self.made.owned {
            self.begin("tag", "")?;
            let owner = owner();
            self.tag("VM", &vm, TAG_ID, &self.id)?;
            self.tag("VM", &vm, TAG_OWNER, &owner)?;
            if persistent {
                self.tag("VM", &vm, TAG_PERSISTENT, "true")?;
            }
            self.call(
                "VM.set_name_description",
                &[vmv.clone(), format!("bioxen_vm deploy {}", self.id).into()],
            )?;
            for vbd in self
                .call("VM.get_VBDs", std::slice::from_ref(&vmv))?
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let rec = self.call("VBD.get_record", std::slice::from_ref(&vbd))?;
                self.tag("VBD", &s(&vbd), TAG_ID, &self.id)?;
                if rec["type"] == "Disk" && rec["VDI"] != "OpaqueRef:NULL" {
                    self.tag("VDI", &s(&rec["VDI"]), TAG_ID, &self.id)?;
                    self.tag("VDI", &s(&rec["VDI"]), TAG_OWNER, &owner)?;
                }
            }
            for vif in self
                .call("VM.get_VIFs", std::slice::from_ref(&vmv))?
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                self.tag("VIF", &s(&vif), TAG_ID, &self.id)?;
            }
            self.p.done("");
            self.check()?;
        }
        let rec = self.call("VM.get_record", std::slice::from_ref(&vmv))?;
        let state = s(&rec["power_state"]);
        // configure
        if state == "Halted" {
            self.begin("configure", "")?;
            self.configure(&vmv, &rec)?;
            self.p.done("");
            self.check()?;
        }
        // provision
        if rec["is_a_template"] == true {
            self.begin("provision", "")?;
            self.task("VM.provision", std::slice::from_ref(&vmv))?;
            self.p.done("");
            self.check()?;
        }
        // start
        self.begin("start", "")?;
        match state.as_str() {
            "Halted" => {
                self.made.started = true;
                self.task("VM.start", &[vmv.clone(), false.into(), false.into()])?;
                self.p.done("");
            }
            "Running" => self.p.done("already running"),
            other => {
                return Err(Error::Original {
                    status: crate::status::bioxen_vm_status::VmManagerError,
                    message: format!(
                        "VM {} is {other}; it must be Halted or Running",
                        self.vm_name
                    ),
                })
            }
        }
        let boot = Deadline::after(Some(o.boot_timeout));
        // wait for guest metrics
        self.begin("wait for guest metrics", "")?;
        let gm = self.wait_for(
            boot,
            |_| {
                "the VM reports no guest metrics (are the guest tools installed and running?)"
                    .into()
            },
            |r| {
                let gm = r.call("VM.get_guest_metrics", std::slice::from_ref(&vmv))?;
                Ok((gm != "OpaqueRef:NULL").then_some(gm))
            },
        )?;
        self.p.done("");
        // wait for an IP
        self.begin("wait for an IP", "")?;
        let last = std::cell::RefCell::new(String::from("none"));
        let mut gm = gm;
        let ip = self.wait_for(
            boot,
            |r| {
                format!(
                    "the VM did not get IP address within {} seconds (it reported: {}{})",
                    crate::vm::seconds_text(r.o.boot_timeout),
                    last.borrow(),
                    r.o.expected_ip_cidr
                        .map(|c| format!("; expected_ip_cidr {c}"))
                        .unwrap_or_default()
                )
            },
            |r| {
                let nets = match r
                    .c
                    .call("VM_guest_metrics.get_networks", std::slice::from_ref(&gm))
                {
                    Ok(n) => n,
                    Err(e) if e.is("HANDLE_INVALID") => {
                        gm = r.call("VM.get_guest_metrics", std::slice::from_ref(&vmv))?;
                        return Ok(None);
                    }
                    Err(e) => return Err(r.x("VM_guest_metrics.get_networks")(e)),
                };
                let map = nets.as_object().cloned().unwrap_or_default();
                *last.borrow_mut() = guest_ip::reported(&map);
                Ok(guest_ip::pick(
                    &map,
                    r.o.expected_ip_cidr.as_ref(),
                    r.o.allow_ipv6,
                ))
            },
        )?;
        self.p.done(&ip.to_string());
        // wait for SSH
        self.p
            .start("wait for SSH", &format!("{ip}:{}", o.guest_port));
        let addr = SocketAddr::new(ip, o.guest_port);
        let why = std::cell::RefCell::new(String::from("no answer yet"));
        let host_key = self.wait_for(
            boot,
            |_| format!("no SSH server answered on {addr} ({})", why.borrow()),
            |_| match host_key_of(addr) {
                Ok(k) => Ok(Some(k)),
                Err(e) => {
                    *why.borrow_mut() = e;
                    Ok(None)
                }
            },
        )?;
        let host_key = match &o.guest_host_key_fingerprint {
            Some(pin) if *pin != host_key => {
                return Err(Error::Original {
                    status: crate::status::bioxen_vm_status::VmConnectionError,
                    message: format!(
                        "host key of the guest at {addr} does not match guest_host_key_fingerprint: it offered {host_key}, the pinned one is {pin}; refusing to connect"
                    ),
                })
            }
            Some(_) => host_key,
            None => {
                log::info!(target: "bioxen_vm::xcpng", "deploy {} ({}): accepting host key {host_key} of the guest at {addr}, for the VM this call deployed (pinned for this VM from now on)", self.id, self.vm_name);
                host_key
            }
        };
        self.p.done(&host_key);
        Ok((host_key, ip, s(&rec["uuid"])))
    }

    fn configure(&mut self, vm: &Value, rec: &Value) -> Result<()> {
        let o = self.o;
        if let Some(n) = o.hardware.vcpus {
            let max = rec["VCPUs_max"].as_u64().unwrap_or(1);
            if u64::from(n) > max {
                self.call("VM.set_VCPUs_max", &[vm.clone(), n.into()])?;
                self.call("VM.set_VCPUs_at_startup", &[vm.clone(), n.into()])?;
            } else {
                self.call("VM.set_VCPUs_at_startup", &[vm.clone(), n.into()])?;
                self.call("VM.set_VCPUs_max", &[vm.clone(), n.into()])?;
            }
        }
        if let Some(mb) = o.hardware.memory_mb {
            let bytes = mb << 20;
            let smin = rec["memory_static_min"]
                .as_u64()
                .unwrap_or(bytes)
                .min(bytes);
            self.call(
                "VM.set_memory_limits",
                &[
                    vm.clone(),
                    smin.into(),
                    bytes.into(),
                    bytes.into(),
                    bytes.into(),
                ],
            )?;
        }
        if let Some(net) = &o.hardware.network {
            let net = self.resolve("network", net)?;
            let mut present = false;
            for vif in rec["VIFs"].as_array().cloned().unwrap_or_default() {
                if self.call("VIF.get_network", &[vif])? == net.as_str() {
                    present = true;
                }
            }
            if !present {
                let devices = self.call("VM.get_allowed_VIF_devices", std::slice::from_ref(vm))?;
                let device = devices.get(0).cloned().ok_or_else(|| {
                    Error::invalid(format!("VM {} has no free network device", self.vm_name))
                })?;
                let mtu = self
                    .call("network.get_MTU", &[net.as_str().into()])
                    .unwrap_or(json!(1500));
                self.call(
                    "VIF.create",
                    &[json!({
                        "device": device, "network": net, "VM": vm, "MAC": "", "MTU": mtu,
                        "other_config": {TAG_ID: self.id}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}, "locking_mode": "network_default",
                    })],
                )?;
            }
        }
        if o.key_injection == KeyInjection::Xenstore {
            if let Some(key) = &o.guest_public_key {
                let _ = self.c.call(
                    "VM.remove_from_xenstore_data",
                    &[vm.clone(), KEY_PATH.into()],
                );
                self.call(
                    "VM.add_to_xenstore_data",
                    &[vm.clone(), KEY_PATH.into(), key.as_str().into()],
                )?;
            }
        }
        Ok(())
    }
}

/// Connects to `addr`, waits (briefly) for the SSH banner, and returns the server's host
/// key fingerprint from a handshake.
fn host_key_of(addr: SocketAddr) -> std::result::Result<String, String> {
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    tcp.peek(&mut head).map_err(|e| format!("no banner: {e}"))?;
    if &head != b"SSH-" {
        let mut b = [0u8; 64];
        let n = tcp.read(&mut b).unwrap_or(0);
        return Err(format!(
            "not an SSH server: {:?}",
            String::from_utf8_lossy(&b[..n])
        ));
    }
    let mut sess = ssh2::Session::new().map_err(|e| e.to_string())?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(5000);
    sess.handshake()
        .map_err(|e| format!("SSH handshake failed: {e}"))?;
    let blob = sess
        .host_key()
        .map(|(k, _)| k.to_vec())
        .ok_or("no host key")?;
    let _ = sess.disconnect(None, "host key read", None);
    Ok(crate::vm::ssh::hostkey::fingerprint(&blob))
}

/// The guest's SSH options once it runs at `ip` with host key `host_key`.
pub fn guest_ssh(o: &XcpngOptions, ip: IpAddr, host_key: &str) -> SshOptions {
    SshOptions {
        host: ip.to_string(),
        port: o.guest_port,
        username: o.guest_user.clone(),
        key_file: o.guest_key_file.clone(),
        key_passphrase: o.guest_key_passphrase.clone(),
        password: o.guest_password.clone(),
        use_agent: false,
        known_hosts: "/dev/null".into(),
        host_key_fingerprint: Some(host_key.to_string()),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: o.xapi.connect_timeout,
        keepalive_interval: Duration::from_secs(4),
    }
}

/// Deploys (or adopts, or attaches to) the VM and starts the agent on it with `start`.
/// On any failure or cancellation what was made is torn down and the error returned.
pub fn deploy<T>(
    o: &XcpngOptions,
    persistent: bool,
    observer: Option<Observer>,
    start: impl FnOnce(&SshOptions) -> Result<T>,
) -> Result<(Deployed, T)> {
    let id = o.deploy_id.clone().unwrap_or_else(new_id);
    let vm_name = o.vm_name.clone().unwrap_or_else(|| format!("bioxen-{id}"));
    let mut p = Progress::new(observer, &id, &vm_name);
    p.start("login", &o.xapi.url);
    let c = super::sessions::session(&o.xapi).map_err(|e| {
        let msg = e.to_string();
        p.failed(&msg);
        e.into_error(&format!("xcpng deploy {id}: XAPI at {}", o.xapi.url))
    })?;
    p.done("");
    let mut run = Run {
        o,
        c,
        p,
        cancel: Arc::new(AtomicBool::new(false)),
        made: Made::default(),
        id,
        vm_name,
        adopted: false,
    };
    let r = run.steps(persistent).and_then(|(key, ip, uuid)| {
        run.check()?;
        run.begin("start the agent", "")?;
        let ssh = guest_ssh(o, ip, &key);
        let agent = start(&ssh)?;
        run.p.done("");
        Ok((key, ip, uuid, agent))
    });
    match r {
        Ok((host_key, ip, uuid, agent)) => {
            let vm = run.made.vm.clone().unwrap_or_default();
            let pool_host = run
                .c
                .call("VM.get_resident_on", &[vm.as_str().into()])
                .and_then(|h| run.c.call("host.get_record", &[h]))
                .map(|h| format!("{} ({})", s(&h["name_label"]), s(&h["address"])))
                .unwrap_or_default();
            let total = run.p.total();
            log::info!(target: "bioxen_vm::xcpng", "deploy {} ({}): VM {uuid} at {ip} ready in {total:.3} s", run.id, run.vm_name);
            Ok((
                Deployed {
                    client: run.c,
                    vm,
                    uuid,
                    ip,
                    pool_host,
                    deploy_id: run.id,
                    vm_name: run.vm_name,
                    owned: run.made.owned,
                    adopted: run.adopted,
                    host_key,
                    timings: run.p.timings,
                    total,
                },
                agent,
            ))
        }
        Err(e) => {
            run.p.failed(&e.to_string());
            let undo = undo(&run.c, &run.made, o);
            match undo {
                Ok(()) => Err(e),
                Err(u) => Err(append(
                    e,
                    &format!("; tearing the deploy down failed too: {u}"),
                )),
            }
        }
    }
}

fn append(e: Error, more: &str) -> Error {
    match e {
        Error::Timeout(m) => Error::Timeout(m + more),
        Error::Cancelled(m) => Error::Cancelled(m + more),
        Error::InvalidArgument(m) => Error::InvalidArgument(m + more),
        Error::Internal(m) => Error::Internal(m + more),
        Error::Original { status, message } => Error::Original {
            status,
            message: message + more,
        },
        other => Error::Original {
            status: other.status(),
            message: other.to_string() + more,
        },
    }
}

/// Undoes a failed deploy: a VM it made is destroyed with its disks; a VM it attached to
/// and started is halted again.
fn undo(c: &Client, made: &Made, o: &XcpngOptions) -> std::result::Result<(), XapiError> {
    let Some(vm) = &made.vm else {
        return Ok(());
    };
    if made.owned {
        log::info!(target: "bioxen_vm::xcpng", "tearing down {vm}");
        teardown::destroy(c, vm, o.task_timeout)
    } else if made.started {
        teardown::halt(c, vm, Some(o.shutdown_timeout), o.task_timeout)
    } else {
        Ok(())
    }
}
