//! A bounded cache of compiled chunks, keyed by the code bytes, so that running the same
//! code again skips compilation. Least recently used entries are evicted first; code larger
//! than `MAX_CACHED_CODE` is never kept.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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

pub struct ChunkCache {
    /// The chunk found last, checked before hashing: running the same code again (the
    /// common case in a loop) costs one comparison.
    last: Option<(Box<[u8]>, c_int)>,
    map: HashMap<Box<[u8]>, (c_int, u64), BuildHasherDefault<FxHasher>>,
    capacity: usize,
    tick: u64,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            last: None,
            map: HashMap::default(),
            capacity,
            tick: 0,
        }
    }

    /// The compiled chunk (a registry reference) for `code`, if cached.
    pub fn get(&mut self, code: &[u8]) -> Option<c_int> {
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

    /// Whether `code` may be kept.
    pub fn accepts(&self, code: &[u8]) -> bool {
        self.capacity > 0 && code.len() <= MAX_CACHED_CODE
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
        assert!(!ChunkCache::new(0).accepts(b"x"));
    }
}
