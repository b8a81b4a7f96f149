//! A bounded cache of compiled chunks, keyed by the code bytes, so that running the same
//! code again skips compilation. Least recently used entries are evicted first; code larger
//! than `MAX_CACHED_CODE` is never kept.
//!
//! Code is admitted on its second run: a doorkeeper (a small direct-mapped table of code
//! hashes) remembers what ran once. A stream of code that never repeats (generated code with
//! values pasted in) then neither evicts the chunks that do repeat nor pays for keeping
//! chunks it will never run again; code that repeats compiles twice instead of once.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::os::raw::c_int;

/// A fast multiplicative hash (the one rustc uses). The keys are the VM owner's own code and
/// the cache is small and bounded, so collision flooding could only slow the owner's own VM.
#[derive(Default)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        let tail = rest
            .iter()
            .enumerate()
            .fold(0u64, |t, (i, b)| t | u64::from(*b) << (8 * i));
        self.add(tail ^ (rest.len() as u64) << 56);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Largest code (bytes) the cache keeps.
pub const MAX_CACHED_CODE: usize = 64 << 10;

/// Slots of the doorkeeper (a power of two): hashes of code that ran once and was not kept.
const DOORKEEPER_SLOTS: usize = 256;

pub struct ChunkCache {
    /// The chunk found last, checked before hashing: running the same code again (the
    /// common case in a loop) costs one comparison.
    last: Option<(Box<[u8]>, c_int)>,
    map: HashMap<Box<[u8]>, (c_int, u64), BuildHasherDefault<FxHasher>>,
    capacity: usize,
    tick: u64,
    /// Hash of code seen once, per slot (0: empty); allocated on first use.
    seen: Vec<u64>,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            last: None,
            map: HashMap::default(),
            capacity,
            tick: 0,
            seen: Vec::new(),
        }
    }

    /// The compiled chunk (a registry reference) for `code`, if cached.
    pub fn get(&mut self, code: &[u8]) -> Option<c_int> {
        if code.len() > MAX_CACHED_CODE {
            // Never kept; and hashing it would take as long as the code is (while a
            // deadline cannot stop it).
            return None;
        }
        self.tick += 1;
        if let Some((c, chunk)) = &self.last {
            if **c == *code {
                // The map's recency of this entry is left as is: eviction never picks `last`.
                return Some(*chunk);
            }
        }
        let tick = self.tick;
        let found = self.map.get_mut(code).map(|(f, used)| {
            *used = tick;
            *f
        });
        if let Some(chunk) = found {
            // Hits through `last` did not refresh its entry: do it as `last` moves on.
            if let Some((old, _)) = self.last.take() {
                if let Some((_, used)) = self.map.get_mut(&old) {
                    *used = tick;
                }
            }
            self.last = Some((code.into(), chunk));
        }
        found
    }

    /// Whether `code`, just compiled after a miss, is to be kept: on its second run (as far
    /// as the doorkeeper remembers), when the cache is on and the code not too large.
    pub fn admits(&mut self, code: &[u8]) -> bool {
        if self.capacity == 0 || code.len() > MAX_CACHED_CODE {
            return false;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; DOORKEEPER_SLOTS];
        }
        let hash = BuildHasherDefault::<FxHasher>::default().hash_one(code) | 1;
        let slot = &mut self.seen[(hash >> 32) as usize & (DOORKEEPER_SLOTS - 1)];
        if *slot == hash {
            *slot = 0;
            true
        } else {
            *slot = hash;
            false
        }
    }

    /// Keeps `chunk` for `code`; returns the chunk evicted to make room, which the caller
    /// must release.
    pub fn insert(&mut self, code: &[u8], chunk: c_int) -> Option<c_int> {
        let mut evicted = None;
        if self.map.len() >= self.capacity {
            let last = self.last.as_ref().map(|(k, _)| k);
            if let Some(oldest) = self
                .map
                .iter()
                .filter(|(k, _)| Some(*k) != last)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                evicted = self.map.remove(&oldest).map(|(c, _)| c);
            }
        }
        self.map.insert(code.into(), (chunk, self.tick));
        evicted
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkCache;

    #[test]
    fn least_recently_used_is_evicted_and_last_never_is() {
        let mut c = ChunkCache::new(2);
        assert!(!c.admits(b"a") && c.admits(b"a"));
        assert_eq!(c.insert(b"a", 1), None);
        assert_eq!(c.insert(b"b", 2), None);
        assert_eq!(c.get(b"a"), Some(1));
        // "b" is the least recently used.
        assert_eq!(c.insert(b"c", 3), Some(2));
        assert_eq!(c.get(b"b"), None);
        // Repeated hits on "c" go through `last`; "a" must still be the one evicted.
        assert_eq!(c.get(b"c"), Some(3));
        assert_eq!(c.get(b"c"), Some(3));
        assert_eq!(c.insert(b"d", 4), Some(1));
        assert_eq!(c.get(b"c"), Some(3));
        assert_eq!(c.get(b"d"), Some(4));
        let mut off = ChunkCache::new(0);
        assert!(!off.admits(b"x") && !off.admits(b"x"));
    }

    #[test]
    fn code_is_admitted_on_its_second_run() {
        let mut c = ChunkCache::new(4);
        let big = vec![b' '; super::MAX_CACHED_CODE + 1];
        assert!(!c.admits(&big) && !c.admits(&big));
        assert!(!c.admits(b"x = 1"));
        // Code running once in between (up to the doorkeeper's memory) does not make it
        // forget, unless it lands on the same slot.
        let others: Vec<Vec<u8>> = (0..8).map(|i| format!("y = {i}").into_bytes()).collect();
        for o in &others {
            assert!(!c.admits(o));
        }
        assert!(c.admits(b"x = 1"));
        // Admitted once: the next miss of the same code starts counting again.
        assert!(!c.admits(b"x = 1"));
    }
}
