//! A bounded cache of compiled chunks, keyed by the code bytes, so that running the same
//! code again skips compilation. Least recently used entries are evicted first; code larger
//! than `MAX_CACHED_CODE` is never kept.

use mlua::Function;
use std::collections::HashMap;

/// Largest code (bytes) the cache keeps.
pub const MAX_CACHED_CODE: usize = 64 << 10;

pub struct ChunkCache {
    map: HashMap<Box<[u8]>, (Function, u64)>,
    capacity: usize,
    tick: u64,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            map: HashMap::new(),
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
