//! Scripts from files: the original's `execute_file` and `execute_temp_script`, for every
//! VM kind. The host reads the file and runs its text in the VM's persistent state under
//! the chunk name `@<path>` (so messages name the file, as `lua <path>` does).
//!
//! What the host reads is bounded: a file larger than [`script_cap`] is refused before
//! anything is read, reading stops at the cap if the file grows meanwhile, and the call's
//! deadline covers the reading as well as the execution.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::{timeout_message, ExecOutput, ExecRequest, Vm, VmOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The largest script file any VM runs (64 MiB), whatever its limits.
pub const MAX_SCRIPT_BYTES: u64 = 64 << 20;

/// Bytes read between two looks at the deadline.
const READ_STEP: u64 = 1 << 20;

/// The most bytes of script a VM takes from a file: its `memory_limit` (a script larger
/// than the memory the VM may use cannot be compiled in it), and never more than
/// [`MAX_SCRIPT_BYTES`].
pub fn script_cap(options: &VmOptions) -> u64 {
    options
        .memory_limit
        .map_or(MAX_SCRIPT_BYTES, |m| (m as u64).min(MAX_SCRIPT_BYTES))
}

/// `len`: the size, or `None` when only "more than the cap" is known (the file grew, or
/// reported no size, and reading stopped at the cap).
fn too_large(what: &str, len: Option<u64>, cap: u64) -> Error {
    let size = len.map_or_else(|| format!("more than {cap}"), |n| n.to_string());
    Error::invalid(format!(
        "{what} is too large: {size} bytes (a script may have at most {cap} bytes: the VM's \
         memory_limit, and never more than {MAX_SCRIPT_BYTES})"
    ))
}

/// Drops a leading UTF-8 byte order mark and a first line starting with `#` (a `#!`
/// line), keeping its newline so line numbers stay right, as `lua <file>` does.
fn script_text(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    if bytes.first() == Some(&b'#') {
        let end = bytes
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(bytes.len());
        bytes.drain(..end);
    }
    bytes
}

/// The script at `path`, with the original's errors: at most `cap` bytes, read before
/// `deadline` (else TIMEOUT with the message of `timeout`).
fn read_script(
    path: &Path,
    cap: u64,
    deadline: Deadline,
    timeout: Option<Duration>,
) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let unreadable =
        |e: std::io::Error| Error::invalid(format!("Lua script {shown} cannot be read: {e}"));
    // Opened before it is looked at (the file checked is the file read), without blocking:
    // a FIFO in the script's place must not hang the call (regular files ignore the flag).
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::FileNotFound(format!(
                "Lua script not found: {shown}"
            )))
        }
        Err(e) => return Err(unreadable(e)),
        Ok(f) => f,
    };
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "Lua script path is not a file: {shown}"
        )));
    }
    let what = format!("Lua script {shown}");
    if meta.len() > cap {
        return Err(too_large(&what, Some(meta.len()), cap));
    }
    // One byte past the cap tells a file that grew since it was looked at.
    let mut reader = file.take(cap + 1);
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    loop {
        if deadline.passed() {
            return Err(Error::Timeout(timeout_message(timeout)));
        }
        match reader.by_ref().take(READ_STEP).read_to_end(&mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(unreadable(e)),
        }
    }
    if bytes.len() as u64 > cap {
        return Err(too_large(&what, None, cap));
    }
    Ok(script_text(bytes))
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A temporary script file, removed when dropped (whatever happened in between).
struct TempScript(PathBuf);

impl Drop for TempScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn generation_error(e: impl std::fmt::Display) -> Error {
    Error::Original {
        status: St::ScriptGenerationError,
        message: format!("Failed to create/execute temporary script: {e}"),
    }
}

/// Writes `code` to a new file `bioxen_vm-<pid>-<n>.lua` (mode 0600) in the system temp
/// directory.
fn write_temp(code: &[u8]) -> Result<TempScript> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    loop {
        let path = dir.join(format!(
            "bioxen_vm-{}-{}.lua",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let script = TempScript(path);
                f.write_all(code).map_err(generation_error)?;
                return Ok(script);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(generation_error(e)),
        }
    }
}

impl Vm {
    /// Runs the Lua script at `path` in this VM (its globals persist, as for `execute`).
    /// Errors: FILE_NOT_FOUND ("Lua script not found: …"), INVALID_ARGUMENT for a path
    /// that is not a readable file or a file larger than [`script_cap`]; then as
    /// `execute`. An empty file is a valid script. `timeout` (else the VM's default)
    /// covers reading the file and running it.
    pub fn execute_file(
        &self,
        path: &Path,
        timeout: Option<Duration>,
        tag: u64,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<ExecOutput> {
        let timeout = timeout.or(self.options().timeout);
        let deadline = Deadline::after(timeout);
        let code = read_script(path, script_cap(self.options()), deadline, timeout)?;
        let name = format!("@{}", path.display());
        let req = ExecRequest {
            code: &code,
            args: None,
            chunk_name: Some(name.as_bytes()),
        };
        let left = match deadline.remaining() {
            Some(Duration::ZERO) => return Err(Error::Timeout(timeout_message(timeout))),
            left => left,
        };
        // A timeout names the call's limit, not what was left of it after reading.
        self.run_request(&req, left, tag, cancel)
            .map_err(|e| match e {
                Error::Timeout(m) => {
                    Error::Timeout(m.replacen(&timeout_message(left), &timeout_message(timeout), 1))
                }
                e => e,
            })
    }

    /// The original's `execute_temp_script`: writes `code` to a temporary `.lua` file,
    /// runs it as [`Vm::execute_file`] does and removes the file, also when anything
    /// failed. A file that cannot be written is SCRIPT_GENERATION_ERROR ("Failed to
    /// create/execute temporary script: …"); empty code is allowed.
    pub fn execute_temp_script(
        &self,
        code: &[u8],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput> {
        let cap = script_cap(self.options());
        if code.len() as u64 > cap {
            return Err(too_large("code", Some(code.len() as u64), cap));
        }
        let script = write_temp(code)?;
        self.execute_file(&script.0, timeout, 0, None)
    }
}

#[cfg(test)]
mod tests {
    use super::script_text;

    #[test]
    fn shebang_and_bom_are_dropped_keeping_line_numbers() {
        assert_eq!(
            script_text(b"#!/usr/bin/lua\nprint(1)".to_vec()),
            b"\nprint(1)"
        );
        assert_eq!(script_text(b"\xEF\xBB\xBF# c\nx".to_vec()), b"\nx");
        assert_eq!(script_text(b"#".to_vec()), b"");
        assert_eq!(script_text(b"print('#')".to_vec()), b"print('#')");
    }
}
