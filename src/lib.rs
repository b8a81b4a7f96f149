//! bioxen_vm: many isolated Lua VMs behind one flat, safe C API.
//!
//! - [`ffi`]: the C ABI (`bioxen_vm_*`), the only public surface of the shared library.
//! - [`manager`], [`vm`], [`jobs`]: the Rust API the C ABI calls.
//! - [`vm::embedded`]: the `basic` VM kind (mlua, vendored Lua 5.4) with its sandbox,
//!   output capture and stop machinery; [`watchdog`] fires deadlines for every VM.
//! - [`deadline`]: deadlines from callers' timeouts; [`json`]: strict parsing of callers'
//!   JSON.
//! - [`packages`]: package environments (isolated luarocks trees, lockfiles, the cache
//!   of built rocks, catalogs, profiles, search) for VMs of every kind.
//! - [`xapi`]: the XAPI client of the `xcpng` kind.
//! - [`registry`]: the handle table; [`error`] and [`status`]: the error model; [`log`]:
//!   logging.
#![allow(non_camel_case_types)]

pub mod agent;
pub mod clock;
pub mod cluster;
pub mod deadline;
pub mod error;
pub mod ffi;
pub mod jobs;
pub mod json;
pub mod log;
pub mod manager;
pub mod net;
pub mod packages;
pub mod registry;
pub mod session;
pub mod status;
pub mod vm;
pub mod watchdog;
pub mod xapi;

pub use error::{Error, Result};
pub use status::bioxen_vm_status;
