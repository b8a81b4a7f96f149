//! Files parsed once and kept while their size and modification time hold (catalogs,
//! directory servers' manifests), so repeated searches and installs do not parse them
//! again.

use super::error::{PResult, PkgError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

type Stamp = (u64, Option<SystemTime>);
type Entries<T> = HashMap<PathBuf, (Stamp, Arc<T>)>;

/// A memo of parsed files.
pub struct Memo<T> {
    entries: Mutex<Option<Entries<T>>>,
}

/// Most files kept (the memo is emptied when full).
const MAX_ENTRIES: usize = 256;

impl<T> Memo<T> {
    pub const fn new() -> Self {
        Memo {
            entries: Mutex::new(None),
        }
    }

    /// The parsed `path`: kept, or `parse(bytes)` now. `Ok(None)` when there is no file.
    pub fn get(
        &self,
        path: &Path,
        parse: impl FnOnce(&[u8]) -> PResult<T>,
    ) -> PResult<Option<Arc<T>>> {
        let md = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PkgError::io("cannot read", path, &e)),
        };
        let stamp = (md.len(), md.modified().ok());
        if let Some((s, v)) = self.entries.lock().as_ref().and_then(|m| m.get(path)) {
            if *s == stamp {
                return Ok(Some(v.clone()));
            }
        }
        let bytes = std::fs::read(path).map_err(|e| PkgError::io("cannot read", path, &e))?;
        let v = Arc::new(parse(&bytes)?);
        let mut g = self.entries.lock();
        let m = g.get_or_insert_with(HashMap::new);
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(path.to_path_buf(), (stamp, v.clone()));
        Ok(Some(v))
    }
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self::new()
    }
}
