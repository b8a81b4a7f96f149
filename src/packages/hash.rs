//! SHA-256 (through the OpenSSL libssh2 already links) of files and of a rock: the
//! digest of `path NUL sha256(content) LF` over the rock's files sorted by path (command
//! wrappers excluded: they hold the tree's absolute path). The same rock installed in two
//! trees has the same hash; lockfiles pin it and the cache stores rocks under it.

use super::error::{PResult, PkgError};
use std::path::{Path, PathBuf};

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut md = [0u8; 32];
    // SAFETY: reads `data.len()` bytes from `data`, writes 32 bytes into `md`.
    unsafe { openssl_sys::SHA256(data.as_ptr(), data.len(), md.as_mut_ptr()) };
    md
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of the files `files` (relative to `base`).
pub fn rock_hash(base: &Path, files: &[PathBuf]) -> PResult<String> {
    // Sorted as bytes (as the remote side, which sees path strings, sorts them).
    let mut sorted: Vec<(String, &PathBuf)> = files
        .iter()
        .map(|f| (f.to_string_lossy().into_owned(), f))
        .collect();
    sorted.sort();
    sorted.dedup();
    let mut acc = Vec::with_capacity(files.len() * 100);
    for (name, f) in sorted {
        let p = base.join(f);
        let data = std::fs::read(&p).map_err(|e| PkgError::io("cannot read", &p, &e))?;
        acc.extend_from_slice(name.as_bytes());
        acc.push(0);
        acc.extend_from_slice(hex(&sha256(&data)).as_bytes());
        acc.push(b'\n');
    }
    Ok(format!("sha256:{}", hex(&sha256(&acc))))
}

/// Whether `h` looks like a hash this layer writes.
pub fn valid_hash(h: &str) -> bool {
    h.strip_prefix("sha256:").is_some_and(|x| {
        x.len() == 64
            && x.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}
