//! Taking a VM down in Xen Orchestra's order: hard shutdown unless halted, collect the
//! VM's own disks (not CDs, not disks another VM uses), `VM.destroy` (which removes the
//! VBDs and VIFs), then `VDI.destroy` each disk (`VDI_IN_USE` retried, `HANDLE_INVALID`
//! meaning already gone). Failures are returned, not swallowed.

use crate::deadline::Deadline;
use crate::xapi::{task, Client, XapiError};
use serde_json::Value;
use std::time::Duration;

/// The other_config key every object the library makes carries: the deploy id.
pub const TAG_ID: &str = "bioxen_vm:deploy_id";
/// Who made it: `<machine>/<pid>/<process start>`, for `sweep`.
pub const TAG_OWNER: &str = "bioxen_vm:owner";
/// Set on a VM that is kept when its owner frees it (`persistent`): `sweep` leaves it.
pub const TAG_PERSISTENT: &str = "bioxen_vm:persistent";

fn never() -> bool {
    false
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Runs an XAPI task to its end (not cancellable: teardown runs to completion), with
/// transient errors retried.
fn run(c: &Client, method: &str, vm: &str, limit: Duration) -> Result<Value, XapiError> {
    let deadline = Deadline::after(Some(limit));
    let text = format!("{} s", crate::vm::seconds_text(limit));
    task::retrying(c, method, &never, deadline, || {
        task::run(
            c,
            method,
            &[Value::from(vm)],
            &mut task::Watch {
                cancelled: &never,
                progress: &mut |_| {},
                deadline,
                limit: &text,
            },
        )
    })
}

/// The VM's power state, or `None` when it no longer exists.
pub fn power_state(c: &Client, vm: &str) -> Result<Option<String>, XapiError> {
    match c.call("VM.get_power_state", &[Value::from(vm)]) {
        Ok(v) => Ok(Some(s(&v))),
        Err(e) if e.is("HANDLE_INVALID") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Halts the VM: a clean shutdown bounded by `clean` first when given (a guest without
/// tools refuses it, or never finishes), then a hard one.
pub fn halt(
    c: &Client,
    vm: &str,
    clean: Option<Duration>,
    task_timeout: Duration,
) -> Result<(), XapiError> {
    let Some(state) = power_state(c, vm)? else {
        return Ok(());
    };
    if state == "Halted" {
        return Ok(());
    }
    if let (Some(limit), "Running") = (clean, state.as_str()) {
        match run(c, "VM.clean_shutdown", vm, limit) {
            Ok(_) => return Ok(()),
            Err(e) => {
                log::info!(target: "bioxen_vm::xcpng", "clean shutdown of {vm} did not work ({e}); shutting it down hard")
            }
        }
        if power_state(c, vm)?.is_none_or(|s| s == "Halted") {
            return Ok(());
        }
    }
    match run(c, "VM.hard_shutdown", vm, task_timeout) {
        Ok(_) => Ok(()),
        // Halted meanwhile (a clean shutdown that finished late).
        Err(e) if e.is("VM_BAD_POWER_STATE") => match power_state(c, vm)? {
            None => Ok(()),
            Some(s) if s == "Halted" => Ok(()),
            Some(_) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The disks only this VM uses.
fn own_disks(c: &Client, vm: &str, vbds: &[Value]) -> Result<Vec<String>, XapiError> {
    let mut out = Vec::new();
    for vbd in vbds {
        let rec = match c.call("VBD.get_record", std::slice::from_ref(vbd)) {
            Ok(r) => r,
            Err(e) if e.is("HANDLE_INVALID") => continue,
            Err(e) => return Err(e),
        };
        let vdi = s(&rec["VDI"]);
        if rec["type"] != "Disk" || vdi.is_empty() || vdi == "OpaqueRef:NULL" {
            continue;
        }
        let users = c.call("VDI.get_VBDs", &[Value::from(vdi.clone())])?;
        let mut shared = false;
        for other in users.as_array().cloned().unwrap_or_default() {
            if other == *vbd {
                continue;
            }
            match c.call("VBD.get_VM", &[other]) {
                Ok(v) if s(&v) != vm => shared = true,
                _ => {}
            }
        }
        if !shared {
            out.push(vdi);
        }
    }
    Ok(out)
}

/// Destroys a VDI, retrying `VDI_IN_USE`; gone already is fine.
pub fn destroy_vdi(c: &Client, vdi: &str) -> Result<(), XapiError> {
    let deadline = Deadline::after(Some(Duration::from_secs(120)));
    match task::retrying(c, "VDI.destroy", &never, deadline, || {
        c.call("VDI.destroy", &[Value::from(vdi)])
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.is("HANDLE_INVALID") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Halts (hard) and destroys the VM with its own disks and snapshots.
pub fn destroy(c: &Client, vm: &str, task_timeout: Duration) -> Result<(), XapiError> {
    let rec = match c.call("VM.get_record", &[Value::from(vm)]) {
        Ok(r) => r,
        Err(e) if e.is("HANDLE_INVALID") => return Ok(()),
        Err(e) => return Err(e),
    };
    halt(c, vm, None, task_timeout)?;
    let vbds = rec["VBDs"].as_array().cloned().unwrap_or_default();
    let disks = own_disks(c, vm, &vbds)?;
    for snap in rec["snapshots"].as_array().cloned().unwrap_or_default() {
        destroy(c, &s(&snap), task_timeout)?;
    }
    let deadline = Deadline::after(Some(task_timeout));
    match task::retrying(c, "VM.destroy", &never, deadline, || {
        c.call("VM.destroy", &[Value::from(vm)])
    }) {
        Ok(_) => {}
        Err(e) if e.is("HANDLE_INVALID") => {}
        Err(e) => return Err(e),
    }
    let mut failed = Vec::new();
    for d in &disks {
        if let Err(e) = destroy_vdi(c, d) {
            failed.push(format!("{d}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(XapiError::Protocol(format!(
            "the VM was destroyed but not all of its disks: {}",
            failed.join("; ")
        )))
    }
}
