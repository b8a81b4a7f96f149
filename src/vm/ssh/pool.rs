//! Shared connections: VMs on the same host, port, user, credentials and host-key check
//! share one authenticated connection, with a new one opened when a connection carries
//! [`MAX_CHANNELS`] VMs or the server refuses another channel (OpenSSH's `MaxSessions`,
//! default 10, counts every channel; one is kept free for the short commands that stop a
//! VM's processes). Connections are held weakly: the last VM to go closes its connection.

use super::conn::Connection;
use super::digest::sha256;
use super::options::SshOptions;
use crate::error::Result;
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// VM channels on one connection (sshd's default `MaxSessions` is 10).
pub const MAX_CHANNELS: usize = 9;

/// What must be equal for two VMs to share a connection. Secrets enter only as a digest.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    host: String,
    port: u16,
    user: String,
    credentials: [u8; 32],
    host_check: String,
}

fn key(o: &SshOptions) -> Key {
    let mut cred = Vec::new();
    for part in [
        o.key_file.as_deref().unwrap_or(""),
        o.key_passphrase.as_ref().map_or("", |s| s.expose()),
        o.password.as_ref().map_or("", |s| s.expose()),
        if o.use_agent { "agent" } else { "" },
    ] {
        cred.extend_from_slice(&(part.len() as u64).to_le_bytes());
        cred.extend_from_slice(part.as_bytes());
    }
    Key {
        host: o.host.clone(),
        port: o.port,
        user: o.username.clone(),
        credentials: sha256(&cred),
        host_check: format!(
            "{:?}|{}|{}",
            o.host_key_policy,
            o.known_hosts,
            o.host_key_fingerprint.as_deref().unwrap_or("")
        ),
    }
}

struct Entry {
    conn: Weak<Connection>,
    /// The server refused a channel on it: use it for no new VM.
    full: bool,
}

static POOL: Lazy<Mutex<HashMap<Key, Vec<Entry>>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// A connection with room for one more VM channel: a shared one, else a new one.
pub fn connection(o: &SshOptions) -> Result<Arc<Connection>> {
    let k = key(o);
    {
        let mut pool = POOL.lock();
        let list = pool.entry(k.clone()).or_default();
        list.retain(|e| e.conn.upgrade().is_some_and(|c| c.dead().is_none()));
        for e in list.iter() {
            if e.full {
                continue;
            }
            if let Some(c) = e.conn.upgrade() {
                if c.channels() < MAX_CHANNELS {
                    return Ok(c);
                }
            }
        }
    }
    // Connecting takes a while: not under the pool's lock.
    let c = Connection::open(o)?;
    POOL.lock().entry(k).or_default().push(Entry {
        conn: Arc::downgrade(&c),
        full: false,
    });
    Ok(c)
}

/// The server refused a channel on `conn`: no new VM goes there.
pub fn mark_full(o: &SshOptions, conn: &Arc<Connection>) {
    if let Some(list) = POOL.lock().get_mut(&key(o)) {
        for e in list.iter_mut() {
            if e.conn.upgrade().is_some_and(|c| Arc::ptr_eq(&c, conn)) {
                e.full = true;
            }
        }
    }
}

/// Live connections to the host of `o` (for `info` and tests).
pub fn connections_to(o: &SshOptions) -> usize {
    POOL.lock().get(&key(o)).map_or(0, |l| {
        l.iter().filter(|e| e.conn.upgrade().is_some()).count()
    })
}
