//! `sweep`: finds the objects this library tagged on a pool whose owner is gone (a
//! process that crashed or was killed before it could tear its VM down) and removes them:
//! VMs (with their disks, in the teardown order) and disks left without a VM. A VM tagged
//! persistent is kept. "Gone" means: made on this machine by a process that no longer runs
//! (its pid is free or belongs to a later process); objects made on other machines are
//! only removed with `any_owner`.

use super::teardown::{self, TAG_ID, TAG_OWNER, TAG_PERSISTENT};
use crate::xapi::{Client, XapiError};
use serde_json::{json, Value};
use std::time::Duration;

fn this_machine() -> String {
    let o = super::deploy::owner();
    o.split('/').next().unwrap_or_default().to_string()
}

/// Whether the owner tag names a process that is gone (on this machine); always with
/// `any_owner`.
pub fn owner_gone(owner: &str, any_owner: bool) -> bool {
    if any_owner {
        return true;
    }
    let parts: Vec<&str> = owner.split('/').collect();
    let [machine, pid, start] = parts.as_slice() else {
        return false;
    };
    if *machine != this_machine() {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    super::deploy::start_time(pid) != Some(start)
}

/// Removes what is left of dead owners; a report `{"vms": [uuid...], "vdis": [uuid...],
/// "kept": [uuid...], "errors": [...]}`.
pub fn sweep(c: &Client, any_owner: bool, task_timeout: Duration) -> Result<Value, XapiError> {
    let mut vms_done = Vec::new();
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    let vms = c.call("VM.get_all_records", &[])?;
    for (r, v) in vms.as_object().cloned().unwrap_or_default() {
        let oc = &v["other_config"];
        if oc.get(TAG_ID).is_none() {
            continue;
        }
        let uuid = v["uuid"].as_str().unwrap_or_default().to_string();
        if oc.get(TAG_PERSISTENT) == Some(&Value::from("true")) {
            kept.push(uuid);
            continue;
        }
        let owner = oc.get(TAG_OWNER).and_then(Value::as_str).unwrap_or("");
        // This very process's VMs are alive unless any_owner says otherwise.
        if !owner_gone(owner, any_owner) {
            continue;
        }
        match teardown::destroy(c, &r, task_timeout) {
            Ok(()) => vms_done.push(uuid),
            Err(e) => errors.push(format!("VM {uuid}: {e}")),
        }
    }
    let mut vdis_done = Vec::new();
    let vdis = c.call("VDI.get_all_records", &[])?;
    for (r, v) in vdis.as_object().cloned().unwrap_or_default() {
        let oc = &v["other_config"];
        if oc.get(TAG_ID).is_none() {
            continue;
        }
        let owner = oc.get(TAG_OWNER).and_then(Value::as_str).unwrap_or("");
        let unused = v["VBDs"].as_array().is_none_or(|b| b.is_empty());
        if !unused || !owner_gone(owner, any_owner) {
            continue;
        }
        match teardown::destroy_vdi(c, &r) {
            Ok(()) => vdis_done.push(v["uuid"].clone()),
            Err(e) => errors.push(format!("VDI {}: {e}", v["uuid"])),
        }
    }
    Ok(json!({"vms": vms_done, "vdis": vdis_done, "kept": kept, "errors": errors}))
}
