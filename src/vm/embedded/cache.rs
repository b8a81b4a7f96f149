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
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ (rest.len() as u64) << 56);
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
    map: HashMap<Box<[u8]>, (c_int, u64), BuildHasherDefault<FxHasher>>,
    capacity: usize,
    tick: u64,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            map: HashMap::default(),
            capacity,
            tick: 0,
        }
    }

    /// The compiled chunk (a registry reference) for `code`, if cached.
    pub fn get(&mut self, code: &[u8]) -> Option<c_int> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(code).map(|(f, used)| {
            *used = tick;
            *f
        })
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
            if let Some(oldest) = self
                .map
                .iter()
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
