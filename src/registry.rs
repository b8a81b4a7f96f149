//! The process-wide handle table: `u64` handles for VMs, managers, jobs and XAPI sessions.
//!
//! A handle is `kind << 56 | serial`: serials come from one counter and are never reused,
//! so a freed handle stays invalid forever and a handle of one kind is never accepted as
//! another. 0 is never a handle. The table is sharded so that threads working on
//! different objects rarely touch the same lock, and a lock is only held to look up,
//! insert or remove, never while Lua runs.

use crate::error::{Error, Result};
use crate::jobs::Job;
use crate::manager::Manager;
use crate::vm::Vm;
use once_cell::sync::Lazy;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Vm = 1,
    Manager = 2,
    Job = 3,
    Xapi = 4,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Vm => "VM",
            Kind::Manager => "manager",
            Kind::Job => "job",
            Kind::Xapi => "XAPI session",
        }
    }
}

#[derive(Clone)]
enum Object {
    Vm(Arc<Vm>),
    Manager(Arc<Manager>),
    Job(Arc<Job>),
    Xapi(Arc<crate::xapi::Client>),
}

/// Handles are distinct integers: mixing their bits is all the hashing they need.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = RwLock<HashMap<u64, Object, BuildHasherDefault<IdHasher>>>;
const SHARDS: usize = 16;
const SERIAL_MASK: u64 = (1 << 56) - 1;

static TABLE: Lazy<Vec<Shard>> = Lazy::new(|| (0..SHARDS).map(|_| Shard::default()).collect());
static NEXT: AtomicU64 = AtomicU64::new(1);

fn shard(h: u64) -> &'static Shard {
    &TABLE[(h & SERIAL_MASK) as usize % SHARDS]
}

fn insert(kind: Kind, o: Object) -> u64 {
    let h = ((kind as u64) << 56) | (NEXT.fetch_add(1, Relaxed) & SERIAL_MASK);
    shard(h).write().insert(h, o);
    h
}

fn invalid(kind: Kind, h: u64) -> Error {
    Error::InvalidHandle(format!(
        "{h:#x} is not a live {} handle (0, freed, or of another kind)",
        kind.noun()
    ))
}

fn get(kind: Kind, h: u64) -> Result<Object> {
    if h >> 56 != kind as u64 {
        return Err(invalid(kind, h));
    }
    shard(h)
        .read()
        .get(&h)
        .cloned()
        .ok_or_else(|| invalid(kind, h))
}

fn remove(kind: Kind, h: u64) -> Result<Object> {
    if h >> 56 != kind as u64 {
        return Err(invalid(kind, h));
    }
    shard(h).write().remove(&h).ok_or_else(|| invalid(kind, h))
}

pub fn add_vm(vm: Arc<Vm>) -> u64 {
    insert(Kind::Vm, Object::Vm(vm))
}

pub fn add_manager(m: Arc<Manager>) -> u64 {
    insert(Kind::Manager, Object::Manager(m))
}

pub fn add_job(j: Arc<Job>) -> u64 {
    insert(Kind::Job, Object::Job(j))
}

pub fn add_xapi(c: Arc<crate::xapi::Client>) -> u64 {
    insert(Kind::Xapi, Object::Xapi(c))
}

macro_rules! accessors {
    ($get:ident, $take:ident, $kind:ident, $ty:ty) => {
        pub fn $get(h: u64) -> Result<Arc<$ty>> {
            match get(Kind::$kind, h)? {
                Object::$kind(x) => Ok(x),
                _ => Err(invalid(Kind::$kind, h)),
            }
        }
        pub fn $take(h: u64) -> Result<Arc<$ty>> {
            match remove(Kind::$kind, h)? {
                Object::$kind(x) => Ok(x),
                _ => Err(invalid(Kind::$kind, h)),
            }
        }
    };
}

accessors!(vm, take_vm, Vm, Vm);
accessors!(manager, take_manager, Manager, Manager);
accessors!(job, take_job, Job, Job);
accessors!(xapi, take_xapi, Xapi, crate::xapi::Client);
