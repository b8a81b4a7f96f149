//! The `ssh` VM kind: a persistent interpreter on another host, reached over SSH with
//! libssh2 (the `ssh2` crate), running the same agent as `process` VMs: an
//! [`AgentVm`](crate::vm::agent_vm::AgentVm) over [`transport::SshTransport`].
//!
//! - [`options`]: the kind's options (typed, secrets never shown).
//! - [`hostkey`], [`auth`]: host-key verification and authentication.
//! - [`conn`]: one connection and its I/O thread; [`pool`]: connections shared by VMs.
//! - [`transport`]: the remote launcher, stops and cleanup.

pub mod auth;
pub mod conn;
mod digest;
pub mod hostkey;
pub mod options;
pub mod pool;
pub mod transport;

pub use options::SshOptions;

use crate::error::{Error, Result};
use crate::vm::agent_vm::{AgentBackend, AgentVm};
use crate::vm::VmOptions;
use std::sync::Arc;

/// An `ssh` VM.
pub type SshVm = AgentBackend<transport::SshTransport>;

/// Connects (or shares a connection) and starts the remote agent.
pub fn new(options: &VmOptions) -> Result<SshVm> {
    let ssh = options
        .ssh
        .clone()
        .ok_or_else(|| Error::invalid("an ssh VM needs the options host and username"))?;
    let transport =
        transport::SshTransport::new(Arc::new(ssh), &options.lua_executable, options.memory_limit)?
            .with_env(options.env.clone());
    let vm = AgentBackend {
        vm: AgentVm::new(transport, "ssh", options)?,
        lua_executable: options.lua_executable.clone(),
    };
    crate::packages::vmenv::check_remote(&vm)?;
    Ok(vm)
}
