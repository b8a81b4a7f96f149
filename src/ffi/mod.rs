//! The C ABI. Each function checks its arguments, looks up handles and calls the Rust API;
//! no logic lives here. Every body runs inside [`boundary::call`].

pub mod boundary;
mod cluster;
mod files;
mod general;
mod job;
mod manager;
mod net;
mod packages;
mod result_buffer;
mod session;
pub mod types;
mod vm;
mod xapi;
mod xcpng;

pub use cluster::*;
pub use files::*;
pub use general::*;
pub use job::*;
pub use manager::*;
pub use net::*;
pub use packages::*;
pub use result_buffer::*;
pub use session::*;
pub use types::{bioxen_vm_bytes, bioxen_vm_result};
pub use vm::*;
pub use xapi::*;
pub use xcpng::*;
