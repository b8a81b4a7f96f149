//! xcpng VMs from C: a deploy with a progress callback, and `sweep`.

use super::boundary::{call, out};
use super::types::bioxen_vm_bytes;
use crate::error::Error;
use crate::registry;
use crate::vm::options::parse_object;
use crate::vm::{Vm, VmKind, VmOptions};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

/// Progress callback of long operations: xcpng deploys (below) and package installs (see
/// `bioxen_vm_packages_install` for their events). `event_json` is a NUL-terminated JSON
/// object that lives only during the call; return 0 to go on, anything else to cancel.
///
/// For a deploy: `deploy_id`, `vm_name`, `step` (one of "login", "find template",
/// "clone" or "copy", "tag", "configure", "provision", "start", "wait for guest metrics",
/// "wait for an IP", "wait for SSH", "start the agent"), `state` ("start", "done",
/// "failed", "progress" with `progress` from 0 to 1 as XAPI reports a task's, or "wait":
/// at least every 250 ms while a step waits), `elapsed` (seconds in the step) and
/// `message`; a cancel tears down everything the deploy made and the deploy fails with
/// CANCELLED. Called on the deploying thread; it must not unwind, and must not free the VM
/// being deployed (there is no handle yet).
pub type bioxen_vm_progress_fn =
    Option<unsafe extern "C" fn(event_json: *const c_char, user_data: *mut c_void) -> i32>;

struct UserData(*mut c_void);
// SAFETY: the pointer is only handed back to the caller's callback, as documented.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

/// Deploys an xcpng VM like `bioxen_vm_new` does for `"vm_type": "xcpng"`, reporting each
/// step to `progress` (NULL: steps are only logged, at info), and writes its handle to
/// `*out_vm`.
///
/// `options_json`: the VM options of `bioxen_vm_new` (`vm_type` may be left out; it must be
/// "xcpng" if given). The xcpng keys: the pool: `xcp_host` or `xapi_url` (a host, host:port
/// or https://host), `xcp_username` or `username`, `xcp_password` or `password`, TLS as
/// for `bioxen_vm_xapi_open` (`tls_fingerprint` | `ca_file` | `insecure`) and its limits
/// (`connect_timeout`, `call_timeout`, `max_calls_in_flight`, `poll_interval`,
/// `transient_retries`, `retry_backoff`); the VM: `template_name` or `template` (name
/// label or UUID) to deploy from, or `vm_uuid` to attach to an existing (persistent) VM;
/// `vm_name` (default "bioxen-<deploy id>"), `deploy_id` (1-64 of [A-Za-z0-9._-]; a deploy
/// whose id already made a VM adopts that VM instead of making another), `vcpus`,
/// `memory_mb`, `network` (name label or UUID; a VIF is added when the template has none on
/// it), `full_copy` (VM.copy instead of VM.clone) and `sr` (for the copy), also accepted
/// inside `vm_config`; the guest: `vm_username` (default "root"), `vm_key_file` and
/// `vm_key_passphrase`, `vm_password`, `guest_public_key` (default: the .pub beside
/// `vm_key_file`), `key_injection` ("xenstore": the public key is written to the VM's
/// xenstore_data vm-data/bioxen/authorized_keys before it starts, the default when a public
/// key is known; "template": the template has it in place), `guest_port` (22),
/// `guest_host_key_fingerprint` ("SHA256:..."; without it the guest's key is accepted only
/// for the VM this call deployed, logged, and pinned for that VM from then on),
/// `expected_ip_cidr` (only an address inside it counts; an explicit range may name
/// loopback addresses), `allow_ipv6` (true), `boot_timeout` (seconds from VM.start to
/// SSH, 300), `task_timeout` (each XAPI task, 600), `shutdown_timeout` (the clean shutdown
/// before a hard one, 60). Passwords are never shown. `persistent` true keeps the VM
/// (halted) when it is freed; otherwise freeing shuts it down (clean, then hard) and
/// destroys it with its disks.
///
/// Every object the deploy makes is tagged in other_config with the deploy id and its
/// owner; any failure or cancellation tears down what was made. Blocks until the agent
/// runs on the guest (bounded by the timeouts above). Any thread; the caller owns the
/// handle and frees it with `bioxen_vm_free` (which blocks while the VM is torn down).
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_ARGUMENT, CANCELLED, TIMEOUT (the
/// message names the step), VM_MANAGER_ERROR (XAPI refused a step: its code and params are
/// in the message; "Template not found: <name>"), XCPNG_CONNECTION_ERROR, VM_CONNECTION_ERROR,
/// LUA_NOT_FOUND.
///
/// # Safety
/// `options_json` must be a NUL-terminated string; `out_vm` must be valid for writes;
/// `user_data` is passed to `progress` unchanged (the library never frees it).
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_xcpng_new(
    options_json: *const c_char,
    progress: bioxen_vm_progress_fn,
    user_data: *mut c_void,
    out_vm: *mut u64,
) -> i32 {
    call(|| {
        let text = super::boundary::text(options_json, "options_json")?;
        let out_vm = out(out_vm, "out_vm")?;
        let mut map = parse_object(text, "VM options")?;
        match map.get("vm_type") {
            None => {
                map.insert("vm_type".into(), "xcpng".into());
            }
            Some(v) if v == "xcpng" => {}
            Some(_) => {
                return Err(Error::invalid(
                    "bioxen_vm_xcpng_new makes xcpng VMs: vm_type must be \"xcpng\"",
                ))
            }
        }
        let options = VmOptions::from_json(&map, &VmOptions::default())?;
        debug_assert_eq!(options.kind, VmKind::Xcpng);
        let vm = Vm::new_xcpng("", options, observer(progress, user_data))?;
        *out_vm = registry::add_vm(vm);
        Ok(())
    })
}

/// The observer that hands events to a C callback.
fn observer(
    progress: bioxen_vm_progress_fn,
    user_data: *mut c_void,
) -> Option<crate::vm::xcpng::Observer> {
    progress.map(|f| {
        let ud = UserData(user_data);
        Arc::new(move |ev: &serde_json::Value| {
            let text = CString::new(ev.to_string().replace('\0', "")).unwrap_or_default();
            let ud = &ud;
            // SAFETY: the caller's callback with its own user data, as documented.
            unsafe { f(text.as_ptr(), ud.0) == 0 }
        }) as crate::vm::xcpng::Observer
    })
}

/// Deploys the xcpng VM `vm_id` of the manager, as `bioxen_vm_manager_create_vm` does
/// with `"vm_type": "xcpng"` (the options of `bioxen_vm_xcpng_new`; the manager's defaults
/// apply), reporting each step to `progress` (NULL: only logged) as `bioxen_vm_xcpng_new`
/// does, so that a deploy can be watched and cancelled. With `interactive`, the VM also
/// gets its interactive session (not attached), as `bioxen_vm_manager_create_interactive_vm`
/// gives (but it is not made persistent: an xcpng VM is only kept on its pool when
/// `persistent` is given). Blocks until the agent runs on the guest. Any thread; the
/// callback runs on the calling thread.
/// Statuses: as `bioxen_vm_xcpng_new`, and INVALID_HANDLE, VM_ALREADY_EXISTS.
///
/// # Safety
/// `vm_id` and `options_json` must be NUL-terminated strings; `user_data` is passed to
/// `progress` unchanged.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_create_xcpng_vm(
    manager: u64,
    vm_id: *const c_char,
    options_json: *const c_char,
    interactive: bool,
    progress: bioxen_vm_progress_fn,
    user_data: *mut c_void,
) -> i32 {
    call(|| {
        let id = super::boundary::text(vm_id, "vm_id")?;
        let o = super::boundary::text(options_json, "options_json")?;
        registry::manager(manager)?.create_xcpng_vm(
            id,
            o,
            interactive,
            observer(progress, user_data),
        )?;
        Ok(())
    })
}

/// Finds the objects this library tagged on the pool of `session` (a handle from
/// `bioxen_vm_xapi_open`) whose owner is gone (made on this machine by a process that no
/// longer runs; with `any_owner`, made by anyone, this process included) and removes them:
/// VMs with their disks (halted hard first), and tagged disks no VM uses. VMs deployed as
/// `persistent` are kept. Writes `{"vms": [uuid...], "vdis": [uuid...], "kept": [uuid...],
/// "errors": [message...]}` to `*out_report` (free with `bioxen_vm_bytes_free`). Blocks
/// while it works. Any thread.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE, VM_MANAGER_ERROR, XCPNG_CONNECTION_ERROR.
///
/// # Safety
/// `out_report` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_xcpng_sweep(
    session: u64,
    any_owner: bool,
    out_report: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let out_report = out(out_report, "out_report")?;
        let c = registry::xapi(session)?;
        let r = crate::vm::xcpng::sweep::sweep(&c, any_owner, Duration::from_secs(600))
            .map_err(|e| e.into_error("sweep"))?;
        *out_report = bioxen_vm_bytes::from_string(r.to_string());
        Ok(())
    })
}
