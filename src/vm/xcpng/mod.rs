//! The `xcpng` VM kind: a VM deployed on an XCP-ng (or XenServer) pool from a template
//! through XAPI ([`crate::xapi`]), then used exactly as an `ssh` VM: the agent runs on the
//! guest over SSH ([`crate::vm::ssh`]), so executions, sessions, clusters, jobs, interrupts
//! and reconnects behave as they do there.
//!
//! - [`options`]: the kind's options; [`deploy`]: the deploy steps and their undo;
//!   [`progress`]: the progress observer; [`guest_ip`]: which address of the guest to use.
//! - [`teardown`]: halting and destroying in Xen Orchestra's order; [`sweep`]: removing
//!   what crashed processes left behind; [`sessions`]: one XAPI session per pool.

pub mod deploy;
pub mod guest_ip;
pub mod options;
pub mod progress;
pub mod sessions;
pub mod sweep;
pub mod teardown;

pub use options::XcpngOptions;
pub use progress::Observer;

use crate::error::{Error, Result};
use crate::vm::ssh::SshVm;
use crate::vm::{Backend, ExecOutput, ExecRequest, ReplStep, Stopper, VmKind, VmOptions};
use deploy::Deployed;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How many xcpng VMs one cluster call deploys at once (their XAPI calls share the pool's
/// session and its bound on calls in flight).
pub const PARALLEL_DEPLOYS: usize = 8;

/// An `xcpng` VM: the deployed VM on the pool and the ssh VM on its guest.
pub struct XcpngVm {
    /// Dropped first when the VM goes (the agent stops before the VM is shut down).
    ssh: Option<SshVm>,
    deployed: Deployed,
    options: XcpngOptions,
    persistent: bool,
}

/// Deploys the VM (see [`deploy::deploy`]) and starts the agent on it.
pub fn new(options: &VmOptions, observer: Option<Observer>) -> Result<XcpngVm> {
    let x = options
        .xcpng
        .clone()
        .ok_or_else(|| Error::invalid("an xcpng VM needs its options (xcp_host, ...)"))?;
    let (deployed, ssh) = deploy::deploy(&x, options.persistent, observer, |guest| {
        let mut vo = options.clone();
        vo.kind = VmKind::Ssh;
        vo.xcpng = None;
        vo.ssh = Some(guest.clone());
        crate::vm::ssh::new(&vo)
    })?;
    Ok(XcpngVm {
        ssh: Some(ssh),
        deployed,
        options: x,
        persistent: options.persistent,
    })
}

impl XcpngVm {
    fn ssh(&mut self) -> Result<&mut SshVm> {
        self.ssh
            .as_mut()
            .ok_or_else(|| Error::Internal("the xcpng VM has no guest connection".into()))
    }

    /// The deploy's facts.
    pub fn deployed(&self) -> &Deployed {
        &self.deployed
    }
}

impl Backend for XcpngVm {
    fn execute(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExecOutput> {
        self.ssh()?.execute(req, timeout, cancel)
    }

    fn execute_into(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        out: &mut ExecOutput,
    ) -> Result<()> {
        self.ssh()?.execute_into(req, timeout, cancel, out)
    }

    fn repl_eval(
        &mut self,
        chunk: &[u8],
        first_line: bool,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ReplStep> {
        self.ssh()?.repl_eval(chunk, first_line, timeout, cancel)
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        match &self.ssh {
            Some(s) => s.stopper(),
            None => Arc::new(NoStop),
        }
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.ssh.as_ref().map(|s| s.info()).unwrap_or_default();
        let d = &self.deployed;
        m.extend(self.options.to_json());
        m.insert("vm_type".into(), "xcpng".into());
        m.insert("vm_uuid".into(), d.uuid.clone().into());
        m.insert("vm_ip".into(), d.ip.to_string().into());
        m.insert("pool_host".into(), d.pool_host.clone().into());
        m.insert("deploy_id".into(), d.deploy_id.clone().into());
        m.insert("xcp_vm_name".into(), d.vm_name.clone().into());
        m.insert("adopted".into(), d.adopted.into());
        m.insert(
            "guest_host_key_fingerprint".into(),
            d.host_key.clone().into(),
        );
        m.insert("xapi_url".into(), d.client.base().into());
        let mut t = serde_json::Map::new();
        for (step, secs) in &d.timings {
            t.insert((*step).into(), (*secs).into());
        }
        m.insert("deploy_timings".into(), t.into());
        m.insert("deploy_seconds".into(), d.total.into());
        m
    }
}

struct NoStop;

impl Stopper for NoStop {
    fn stop(&self, _: crate::vm::StopReason, _: Option<u64>) -> bool {
        false
    }
}

impl Drop for XcpngVm {
    fn drop(&mut self) {
        drop(self.ssh.take());
        let d = &self.deployed;
        let o = &self.options;
        let keep = self.persistent || !d.owned;
        let r = if keep {
            teardown::halt(&d.client, &d.vm, Some(o.shutdown_timeout), o.task_timeout)
        } else {
            teardown::halt(&d.client, &d.vm, Some(o.shutdown_timeout), o.task_timeout)
                .and_then(|()| teardown::destroy(&d.client, &d.vm, o.task_timeout))
        };
        match r {
            Ok(()) if keep => {
                log::info!(target: "bioxen_vm::xcpng", "VM {} ({}) halted and kept (persistent); attach to it again with vm_uuid", d.uuid, d.vm_name)
            }
            Ok(()) => {
                log::info!(target: "bioxen_vm::xcpng", "VM {} ({}) destroyed with its disks", d.uuid, d.vm_name)
            }
            Err(e) => {
                log::error!(target: "bioxen_vm::xcpng", "tearing down VM {} ({}) failed: {e}; bioxen_vm_xcpng_sweep removes what is left", d.uuid, d.vm_name)
            }
        }
    }
}
