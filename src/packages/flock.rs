//! The per-environment lock: `flock(2)` on `<env>/.lock`. Each holder opens the file
//! itself, so the lock excludes other threads of this process as well as other
//! processes (luarocks 3.8 has no lock of its own and loses manifest entries when
//! installs overlap). Waiting is bounded: the blocking `flock` runs on a helper thread
//! and the caller waits for it with its deadline; a lock taken after the caller gave up is
//! released at once.

use super::error::{PResult, PkgError};
use crate::deadline::Deadline;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;

/// A held lock; released when dropped (closing the descriptor releases it).
#[derive(Debug)]
pub struct EnvLock {
    _file: File,
}

fn open(path: &Path) -> PResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| PkgError::io("cannot open the environment lock", path, &e))
}

fn flock(f: &File, op: i32) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor `f` owns.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Takes the lock at `path` (exclusive, or shared for readers), waiting until `deadline`.
pub fn lock(path: &Path, exclusive: bool, deadline: Deadline) -> PResult<EnvLock> {
    let f = open(path)?;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // Free now: no thread needed.
    if flock(&f, op | libc::LOCK_NB).is_ok() {
        return Ok(EnvLock { _file: f });
    }
    let (tx, rx) = mpsc::channel();
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("bioxen-env-lock".into())
        .spawn(move || {
            let r = flock(&f, op).map(|()| f);
            // When the caller gave up, the send fails and the lock is dropped here.
            let _ = tx.send(r);
        })
        .map_err(|e| PkgError::internal(format!("cannot start a thread: {e}")))?;
    let got = match deadline.remaining() {
        None => rx.recv().map_err(|_| None),
        Some(left) => rx.recv_timeout(left).map_err(Some),
    };
    match got {
        Ok(Ok(file)) => Ok(EnvLock { _file: file }),
        Ok(Err(e)) => Err(PkgError::internal(format!("cannot lock {shown}: {e}"))),
        Err(_) => Err(PkgError::timeout(format!(
            "the environment is busy: another install holds {shown}"
        ))),
    }
}
