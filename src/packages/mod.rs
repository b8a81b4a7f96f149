//! Package environments: isolated luarocks trees that VMs of every kind can use.
//!
//! - [`env`]: environments (a directory with one tree, its luarocks configuration, HOME,
//!   working directory and lockfile); [`datadir`]: where named ones live.
//! - [`install`]: install, remove, list, show, under the environment's [`flock`], with the
//!   [`cache`] of built rocks; [`luarocks`] runs luarocks isolated and types its failures.
//! - [`lockfile`]: lock and sync; [`hash`]: what a rock's files hash to.
//! - [`catalog`], [`search`]: catalogs, profiles and ranked search; [`index`]: the
//!   servers' manifests; [`health`]: the health check.
//! - [`paths`]: the module paths VMs get; [`remote`]: environments on SSH hosts.
//! - [`api`]: every operation as JSON in, JSON out (what the C API exposes).

pub mod api;
pub mod cache;
pub mod catalog;
pub mod datadir;
pub mod env;
pub mod error;
pub mod flock;
pub mod hash;
pub mod health;
pub mod http;
pub mod index;
pub mod install;
pub mod lockfile;
pub mod luarocks;
pub mod luaval;
pub mod memo;
pub mod names;
pub mod paths;
pub mod progress;
pub mod remote;
pub mod search;
pub mod servers;
pub mod tree;
pub mod version;
pub mod vmenv;

pub use env::{EnvRef, Environment};
pub use error::{PResult, PkgError};
pub use paths::ModulePaths;
