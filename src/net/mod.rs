//! Networked VMs (the original's `NetworkedLuaVM`): LuaSocket scripts run in a child
//! interpreter, with every input passed as data (one JSON object argument), never pasted
//! into Lua source. Also the original's `validate_port`, `validate_host` and
//! `LuaScriptTemplate`.

pub mod templates;

use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::status::bioxen_vm_status as St;
use crate::vm::{ExecOutput, ExecRequest, Vm, VmKind};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// What a networked VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Accept one client, greet it, read one line.
    Server,
    /// Connect, read the greeting, send one message.
    Client,
    /// Listen, connect to a peer and exchange heartbeats for a while.
    P2p,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "server" => Ok(Mode::Server),
            "client" => Ok(Mode::Client),
            "p2p" => Ok(Mode::P2p),
            other => Err(Error::invalid(format!(
                "unknown network mode '{other}' (known: server, client, p2p)"
            ))),
        }
    }

    fn script(self) -> &'static str {
        match self {
            Mode::Server => include_str!("../agent/net/server.lua"),
            Mode::Client => include_str!("../agent/net/client.lua"),
            Mode::P2p => include_str!("../agent/net/p2p.lua"),
        }
    }

    /// The option keys a mode takes, and their defaults (the original's).
    fn keys(self) -> &'static [&'static str] {
        match self {
            Mode::Server => &["port", "bind", "accept_timeout", "receive_timeout"],
            Mode::Client => &["host", "port", "message", "connect_timeout"],
            Mode::P2p => &[
                "local_port",
                "bind",
                "peer_host",
                "peer_port",
                "run_duration",
                "send_interval",
            ],
        }
    }
}

/// The original's `validate_port`: privileged ports are refused.
pub fn validate_port(port: i64) -> Result<()> {
    if (1024..=65535).contains(&port) {
        Ok(())
    } else {
        Err(Error::invalid("Port must be between 1024 and 65535"))
    }
}

/// The original's `validate_host`: blank hosts are refused.
pub fn validate_host(host: &str) -> Result<()> {
    if host.trim().is_empty() {
        Err(Error::invalid("Host cannot be empty"))
    } else {
        Ok(())
    }
}

fn port_of(map: &Map<String, Value>, key: &str, required: bool) -> Result<Option<i64>> {
    match map.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(Error::invalid(format!("option '{key}' is required"))),
        Some(v) => {
            let p = v
                .as_i64()
                .ok_or_else(|| Error::invalid(format!("option '{key}' must be an integer")))?;
            validate_port(p)?;
            Ok(Some(p))
        }
    }
}

fn host_of(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            validate_host(s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(Error::invalid(format!("option '{key}' must be a string"))),
    }
}

/// Checks options as the original did (ports in 1024–65535, hosts not blank) and fills
/// in its defaults; the object the script receives.
pub fn prepare(mode: Mode, options_json: &str) -> Result<Value> {
    let mut map = crate::vm::options::parse_object(options_json, "network options")?;
    crate::vm::options::reject_unknown(&map, mode.keys(), "network")?;
    for k in ["bind", "message"] {
        if map.get(k).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(Error::invalid(format!("option '{k}' must be a string")));
        }
    }
    for k in [
        "accept_timeout",
        "receive_timeout",
        "connect_timeout",
        "run_duration",
        "send_interval",
    ] {
        if let Some(v) = map.get(k).filter(|v| !v.is_null()) {
            if crate::vm::options::seconds_value(v).is_none() {
                return Err(Error::invalid(format!(
                    "option '{k}' must be a non-negative number of seconds below {:e}",
                    crate::vm::options::MAX_SECONDS
                )));
            }
        }
    }
    match mode {
        Mode::Server => {
            port_of(&map, "port", true)?;
        }
        Mode::Client => {
            if host_of(&map, "host")?.is_none() {
                return Err(Error::invalid("Host cannot be empty"));
            }
            port_of(&map, "port", true)?;
            map.entry("message")
                .or_insert_with(|| "Hello from Lua Client!".into());
        }
        Mode::P2p => {
            port_of(&map, "local_port", true)?;
            let host = host_of(&map, "peer_host")?;
            let port = port_of(&map, "peer_port", false)?;
            if host.is_some() != port.is_some() {
                return Err(Error::invalid(
                    "peer_host and peer_port must be given together",
                ));
            }
            map.entry("run_duration").or_insert_with(|| 30.into());
            map.entry("send_interval").or_insert_with(|| 5.into());
        }
    }
    map.retain(|_, v| !v.is_null());
    Ok(Value::Object(map))
}

/// Only a VM with LuaSocket (created with `networked`, or a `process` VM) can network.
fn check_networked(vm: &Vm, name: &str) -> Result<()> {
    let o = vm.options();
    if o.networked || o.kind == VmKind::Process {
        Ok(())
    } else {
        Err(Error::Original {
            status: St::NetworkingError,
            message: format!("Networked VM '{name}' not found"),
        })
    }
}

/// The code and argument list that run `mode` with `opts`.
fn request_parts(mode: Mode, opts: Value) -> (&'static [u8], Value) {
    (mode.script().as_bytes(), json!([opts]))
}

/// Runs a network mode on a VM and waits for it (the `NetworkedLuaVM` methods).
pub fn run(
    vm: &Vm,
    mode: Mode,
    options_json: &str,
    timeout: Option<Duration>,
) -> Result<ExecOutput> {
    check_networked(vm, vm.name())?;
    let (code, args) = request_parts(mode, prepare(mode, options_json)?);
    let req = ExecRequest {
        code,
        args: Some(&args),
        chunk_name: None,
    };
    vm.execute(&req, timeout)
}

/// Starts a network mode on a manager's VM as a job (the manager's `start_*_vm`).
pub fn start(
    manager: &Manager,
    vm_id: &str,
    mode: Mode,
    options_json: &str,
    timeout: Option<Duration>,
) -> Result<Arc<crate::jobs::Job>> {
    let vm = manager.get(vm_id).map_err(|_| Error::Original {
        status: St::NetworkingError,
        message: format!("Networked VM '{vm_id}' not found"),
    })?;
    check_networked(&vm, vm_id)?;
    let (code, args) = request_parts(mode, prepare(mode, options_json)?);
    manager.execute_async(vm_id, code, Some(args), timeout)
}

/// The original's `setup_p2p_cluster`: creates `vm_count` networked VMs
/// `<cluster_id>_000`… and starts P2P on each, VM i listening on `base_port + i` and
/// connecting to VM (i+1) mod n on 127.0.0.1 (a ring), sending heartbeats every
/// `send_interval` seconds (`None`: the original's 5). Returns the jobs by VM id.
pub fn setup_p2p_cluster(
    manager: &Manager,
    cluster_id: &str,
    vm_count: usize,
    base_port: i64,
    run_duration: f64,
    send_interval: Option<f64>,
    vm_options_json: &str,
) -> Result<Vec<(String, Arc<crate::jobs::Job>)>> {
    if vm_count < 2 {
        return Err(Error::invalid("P2P cluster requires at least 2 VMs"));
    }
    validate_port(base_port)?;
    // The last port, without overflow whatever the count.
    let last = i64::try_from(vm_count - 1)
        .ok()
        .and_then(|n| base_port.checked_add(n))
        .unwrap_or(i64::MAX);
    validate_port(last)?;
    let mut options = crate::vm::options::parse_object(vm_options_json, "VM options")?;
    options.insert("networked".into(), true.into());
    let ids = manager.create_cluster(cluster_id, vm_count, &Value::Object(options).to_string())?;
    let mut jobs = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let mut opts = json!({
            "local_port": base_port + i as i64,
            "peer_host": "127.0.0.1",
            "peer_port": base_port + ((i + 1) % vm_count) as i64,
            "run_duration": run_duration,
        });
        if let Some(s) = send_interval {
            opts["send_interval"] = s.into();
        }
        jobs.push((
            id.clone(),
            start(manager, id, Mode::P2p, &opts.to_string(), None)?,
        ));
    }
    Ok(jobs)
}
