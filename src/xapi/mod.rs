//! A client of XAPI, the management API of XCP-ng and XenServer pools: JSON-RPC over
//! HTTPS (XML-RPC as the fallback), with verified TLS (system roots, a CA file or a pinned
//! certificate fingerprint), transparent recovery where it is safe, and long operations
//! as polled, cancellable tasks. See the README's "XCP-ng VMs" section.
//!
//! - [`config`]: address, credentials, TLS policy, limits.
//! - [`client`]: the session and its calls; [`task`]: `Async.*` tasks and retries.
//! - [`wire`], [`xml`]: the envelopes and XAPI's typing quirks; [`tls`]: verifiers.
//! - [`error`]: what can fail.

pub mod client;
pub mod config;
pub mod error;
pub mod task;
pub mod tls;
pub mod wire;
pub mod xml;

pub use client::Client;
pub use config::{TlsPolicy, XapiConfig};
pub use error::XapiError;
