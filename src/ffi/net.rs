//! Networked VMs: server, client and P2P modes through LuaSocket, the P2P ring cluster,
//! and the original's `validate_port`, `validate_host` and `LuaScriptTemplate`.

use super::boundary::{call, ms_timeout, opt_text, out, text};
use super::types::{bioxen_vm_bytes, bioxen_vm_result};
use crate::net::{self, Mode};
use crate::registry;
use serde_json::Value;
use std::ffi::c_char;

/// Runs a network mode on a networked VM (created with `"networked": true`, or a
/// `process` VM) and waits for it: the original `NetworkedLuaVM`'s `start_server`,
/// `start_client` and `start_p2p`. `mode` is "server", "client" or "p2p";
/// `options_json` a JSON object passed to the script as data (never pasted into source):
/// - server: `port` (1024–65535), `bind` (default "127.0.0.1"; "*" for every interface),
///   `accept_timeout`, `receive_timeout` (seconds; default none). Accepts one client,
///   greets it, reads one line; prints the original's `Lua Server: …` lines; values
///   `[{"received": line, "client": ip}]`.
/// - client: `host`, `port`, `message` (default "Hello from Lua Client!"),
///   `connect_timeout`. Prints `Lua Client: …` lines.
/// - p2p: `local_port`, `bind`, `peer_host` + `peer_port` (optional, together),
///   `run_duration` (default 30 s, wall clock), `send_interval` (default 5 s). Prints
///   `P2P VM: …` lines; values `[{"sent": n, "received": m}]`.
///
/// `timeout_ms` as for `bioxen_vm_execute`. Blocks; any thread. Writes the outcome to
/// `*out_result` (free with `bioxen_vm_result_free`): a socket failure is a result with
/// `success == false`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT (unknown
/// mode or option, "Port must be between 1024 and 65535", "Host cannot be empty"),
/// NETWORKING_ERROR (the VM is not networked), and those of `bioxen_vm_execute`.
///
/// # Safety
/// `mode` must be NUL-terminated; `options_json` NULL or NUL-terminated; `out_result`
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_net_run(
    vm: u64,
    mode: *const c_char,
    options_json: *const c_char,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        let mode = Mode::parse(text(mode, "mode")?)?;
        let o = opt_text(options_json, "options_json")?;
        let out_result = out(out_result, "out_result")?;
        let vm = registry::vm(vm)?;
        *out_result = net::run(&vm, mode, o, ms_timeout(timeout_ms))?.into();
        Ok(())
    })
}

/// Starts a network mode (as `bioxen_vm_net_run`) on the manager's networked VM `vm_id`
/// as a job on the manager's pool, and writes its handle to `*out_job` (free with
/// `bioxen_vm_job_free`): the original's `start_server_vm`, `start_client_vm` and
/// `start_p2p_vm`. The job is also the VM's latest operation for
/// `bioxen_vm_manager_wait_for_vm`, `_vm_status` and `_cancel_vm`.
/// Statuses: those of `bioxen_vm_net_run` (NETWORKING_ERROR "Networked VM 'x' not found"
/// for an unknown or non-networked id), and of `bioxen_vm_manager_execute_async`.
///
/// # Safety
/// `vm_id` and `mode` must be NUL-terminated; `options_json` NULL or NUL-terminated;
/// `out_job` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_net_start(
    manager: u64,
    vm_id: *const c_char,
    mode: *const c_char,
    options_json: *const c_char,
    timeout_ms: u64,
    out_job: *mut u64,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let mode = Mode::parse(text(mode, "mode")?)?;
        let o = opt_text(options_json, "options_json")?;
        let out_job = out(out_job, "out_job")?;
        let m = registry::manager(manager)?;
        let job = net::start(&m, id, mode, o, ms_timeout(timeout_ms))?;
        *out_job = registry::add_job(job);
        Ok(())
    })
}

/// The original's `setup_p2p_cluster`: creates `vm_count` (≥ 2) networked VMs
/// `<cluster_id>_000`, `_001`, … (with `vm_options_json`, NULL for none, plus
/// `networked`) and starts P2P on each: VM i listens on `base_port + i` (127.0.0.1) and
/// connects to VM (i + 1) mod n, for `run_duration` seconds, with a heartbeat every
/// `send_interval` seconds (0: the original's 5). Writes `{vm_id: job_handle}`
/// as JSON to `*out_jobs_json` (free with `bioxen_vm_bytes_free`; the caller owns and
/// frees each job handle), ready for `bioxen_vm_wait_for_cluster`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT ("P2P
/// cluster requires at least 2 VMs", ports outside 1024–65535), VM_ALREADY_EXISTS, and
/// those of VM creation (LUA_NOT_FOUND, LUA_SOCKET_NOT_FOUND).
///
/// # Safety
/// `cluster_id` must be NUL-terminated; `vm_options_json` NULL or NUL-terminated;
/// `out_jobs_json` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_setup_p2p_cluster(
    manager: u64,
    cluster_id: *const c_char,
    vm_count: usize,
    base_port: i64,
    run_duration: f64,
    send_interval: f64,
    vm_options_json: *const c_char,
    out_jobs_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let id = text(cluster_id, "cluster_id")?;
        let o = opt_text(vm_options_json, "vm_options_json")?;
        let out_jobs_json = out(out_jobs_json, "out_jobs_json")?;
        for (name, v) in [
            ("run_duration", run_duration),
            ("send_interval", send_interval),
        ] {
            if crate::vm::options::seconds_number(v).is_none() {
                return Err(crate::error::Error::invalid(format!(
                    "{name} must be a non-negative number of seconds below {:e}",
                    crate::vm::options::MAX_SECONDS
                )));
            }
        }
        let interval = (send_interval > 0.0).then_some(send_interval);
        let m = registry::manager(manager)?;
        let jobs = net::setup_p2p_cluster(&m, id, vm_count, base_port, run_duration, interval, o)?;
        let mut map = serde_json::Map::new();
        for (vm_id, job) in jobs {
            map.insert(vm_id, registry::add_job(job).into());
        }
        *out_jobs_json = bioxen_vm_bytes::from_string(Value::Object(map).to_string());
        Ok(())
    })
}

/// The original's `validate_port`: OK for 1024–65535, else INVALID_ARGUMENT "Port must be
/// between 1024 and 65535". Any thread.
#[no_mangle]
pub extern "C" fn bioxen_vm_validate_port(port: i64) -> i32 {
    call(|| net::validate_port(port))
}

/// The original's `validate_host`: INVALID_ARGUMENT "Host cannot be empty" for an empty or
/// blank host; OK otherwise (no other check, as the original). Any thread.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT.
///
/// # Safety
/// `host` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_validate_host(host: *const c_char) -> i32 {
    call(|| net::validate_host(text(host, "host")?))
}

/// The original's `LuaScriptTemplate`: writes the Lua source of template `name` with the
/// values of `options_json` to `*out_source` (free with `bioxen_vm_bytes_free`). Every
/// value is a quoted Lua literal in the source, so nothing given can change what the
/// script does; the source is returned, never run. Templates: `simple_echo_server`
/// (`port`, `bind` default "127.0.0.1"), `heartbeat_client` (`host`, `port`, `interval`
/// default 1, `count` default 10), `http_client_template` (`url`, `method` default "GET").
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT (unknown template or
/// option, bad port or host).
///
/// # Safety
/// `name` must be NUL-terminated; `options_json` NULL or NUL-terminated; `out_source`
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_script_template(
    name: *const c_char,
    options_json: *const c_char,
    out_source: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let name = text(name, "name")?;
        let o = opt_text(options_json, "options_json")?;
        let out_source = out(out_source, "out_source")?;
        *out_source = bioxen_vm_bytes::from_string(net::templates::render(name, o)?);
        Ok(())
    })
}
