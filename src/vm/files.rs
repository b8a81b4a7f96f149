//! Scripts from files: the original's `execute_file` and `execute_temp_script`, for every
//! VM kind. The host reads the file and runs its text in the VM's persistent state under
//! the chunk name `@<path>` (so messages name the file, as `lua <path>` does).

use crate::error::{Error, Result};
use crate::status::bioxen_vm_status as St;
use crate::vm::{ExecOutput, ExecRequest, Vm};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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

/// The script at `path`, with the original's errors.
fn read_script(path: &Path) -> Result<Vec<u8>> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::FileNotFound(format!(
                "Lua script not found: {shown}"
            )))
        }
        Err(e) => {
            return Err(Error::invalid(format!(
                "Lua script {shown} cannot be read: {e}"
            )))
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::invalid(format!(
                "Lua script path is not a file: {shown}"
            )))
        }
        Ok(_) => {}
    }
    std::fs::read(path)
        .map(script_text)
        .map_err(|e| Error::invalid(format!("Lua script {shown} cannot be read: {e}")))
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
    /// that is not a readable file; then as `execute`. An empty file is a valid script.
    pub fn execute_file(
        &self,
        path: &Path,
        timeout: Option<Duration>,
        tag: u64,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<ExecOutput> {
        let code = read_script(path)?;
        let name = format!("@{}", path.display());
        let req = ExecRequest {
            code: &code,
            args: None,
            chunk_name: Some(name.as_bytes()),
        };
        self.run_request(&req, timeout, tag, cancel)
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
