//! The agent's bytecode per interpreter: the first agent started on an interpreter (a
//! binary on this machine, or an interpreter on an SSH host) is asked for its own chunk
//! (`string.dump`, a `code` request), and later agents on the same interpreter are sent
//! that instead of the source, so they start without compiling it (about a millisecond
//! per VM). The key names the interpreter as its transport knows it; an interpreter that
//! changed under the same key refuses the bytecode at load (Lua checks the chunk's
//! header), and the host then forgets it and sends the source.

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries kept at most (the cache is cleared when it is full).
const MAX_ENTRIES: usize = 256;

/// What is known about an interpreter's bytecode.
#[derive(Clone)]
pub enum Entry {
    /// Its agent's chunk.
    Code(Arc<Vec<u8>>),
    /// Its agent gave none (no `debug`, a failed dump): send the source.
    None,
}

static CACHE: Lazy<Mutex<HashMap<String, Entry>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// What the cache holds for `key`.
pub fn get(key: &str) -> Option<Entry> {
    CACHE.lock().get(key).cloned()
}

/// Records what the agent on `key` gave.
pub fn put(key: String, entry: Entry) {
    let mut c = CACHE.lock();
    if c.len() >= MAX_ENTRIES && !c.contains_key(&key) {
        c.clear();
    }
    c.insert(key, entry);
}

/// Forgets `key` (its interpreter refused the bytecode).
pub fn forget(key: &str) {
    CACHE.lock().remove(key);
}

/// The keys the cache holds (for tests and diagnostics).
pub fn keys() -> Vec<String> {
    CACHE.lock().keys().cloned().collect()
}
