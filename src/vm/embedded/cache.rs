//! A bounded cache of compiled chunks, keyed by the code bytes, so that running the same
//! code again skips compilation. Least recently used entries are evicted first; code larger
//! than `MAX_CACHED_CODE` is never kept.

use mlua::Function;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
    map: HashMap<Box<[u8]>, (Function, u64), BuildHasherDefault<FxHasher>>,
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

    pub fn get(&mut self, code: &[u8]) -> Option<Function> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(code).map(|(f, used)| {
            *used = tick;
            f.clone()
        })
    }

    pub fn insert(&mut self, code: &[u8], f: &Function) {
        if self.capacity == 0 || code.len() > MAX_CACHED_CODE {
            return;
        }
        if self.map.len() >= self.capacity {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(code.into(), (f.clone(), self.tick));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}
