//! Interactive sessions: a Lua REPL on a manager's VM, without a terminal.

use super::boundary::{bytes, call, ms_timeout, opt_out, opt_text, out, text};
use super::types::bioxen_vm_bytes;
use crate::error::Error;
use crate::registry;
use crate::session::{OutputCallback, Stream, Streams, Wait};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

/// Output streams, as the output callback names them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum bioxen_vm_stream {
    Stdout = 1,
    Stderr = 2,
}

/// Flags of `bioxen_vm_manager_read_output` (combine with `|`). Without `STDOUT` or
/// `STDERR`, both streams are read, merged in the order the output was produced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum bioxen_vm_read {
    /// Read only what went to stdout (the rest stays buffered).
    Stdout = 1,
    /// Read only what went to stderr (the rest stays buffered).
    Stderr = 2,
    /// Return as soon as there is any output, instead of waiting for the session to be idle.
    AnyOutput = 4,
}

/// Session output callback: `vm_id` (NUL-terminated UTF-8), the stream
/// (`BIOXEN_VM_STREAM_STDOUT` or `_STDERR`), `len` bytes at `data` (not NUL-terminated,
/// may hold any byte), and the `user_data` given when it was installed. Everything passed
/// is valid only during the call. Called on the thread that evaluates the input (a worker
/// of the manager's pool, or a thread inside `bioxen_vm_manager_read_output`), never
/// concurrently for one session; it must not unwind, and must not call functions of the
/// same session, run code on its VM or wait for that VM's jobs (the VM is busy with the
/// evaluation that produced the output, so such a call would wait for itself).
pub type bioxen_vm_output_fn = Option<
    unsafe extern "C" fn(
        vm_id: *const c_char,
        stream: i32,
        data: *const c_char,
        len: usize,
        user_data: *mut c_void,
    ),
>;

fn output_callback(
    vm_id: &str,
    f: bioxen_vm_output_fn,
    user_data: *mut c_void,
) -> Option<OutputCallback> {
    let f = f?;
    let id = CString::new(vm_id).unwrap_or_default();
    let user_data = user_data as usize;
    Some(Arc::new(move |_: &str, stream: Stream, data: &[u8]| {
        if data.is_empty() {
            return;
        }
        // SAFETY: the host installed `f` with `user_data`; the arguments live for the call.
        unsafe {
            f(
                id.as_ptr(),
                stream as i32,
                data.as_ptr().cast(),
                data.len(),
                user_data as *mut c_void,
            )
        }
    }))
}

/// Creates a VM named `vm_id` (options as for `bioxen_vm_manager_create_vm`) with an
/// interactive session, attached when `auto_attach` is true. The session shares the VM's
/// state: what `bioxen_vm_manager_execute` defines, the session sees, and the other way
/// round.
/// Statuses: those of `bioxen_vm_manager_create_vm`.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `options_json` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_create_interactive_vm(
    manager: u64,
    vm_id: *const c_char,
    options_json: *const c_char,
    auto_attach: bool,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let o = opt_text(options_json, "options_json")?;
        registry::manager(manager)?.create_interactive_vm(id, o, auto_attach)?;
        Ok(())
    })
}

/// Attaches the session of `vm_id`, creating it when the VM has none. `callback` (may be
/// NULL) then receives the session's output as it is produced, with `user_data`, until the
/// session is detached or terminated; the library never frees `user_data`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND ("VM 'x' not
/// found"), ATTACH_ERROR (already attached).
///
/// # Safety
/// `vm_id` must be NUL-terminated; `callback` and `user_data` must stay usable while
/// attached.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_attach(
    manager: u64,
    vm_id: *const c_char,
    callback: bioxen_vm_output_fn,
    user_data: *mut c_void,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let cb = output_callback(id, callback, user_data);
        registry::manager(manager)?.attach(id, cb)?;
        Ok(())
    })
}

/// Detaches the session of `vm_id` (its output callback is removed; input still works).
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND ("VM 'x' not
/// found", "No interactive session for VM 'x'"), DETACH_ERROR (not attached).
///
/// # Safety
/// `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_detach(manager: u64, vm_id: *const c_char) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        registry::manager(manager)?.detach(id)
    })
}

/// Writes whether the session of `vm_id` is attached.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_attached` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_is_attached(
    manager: u64,
    vm_id: *const c_char,
    out_attached: *mut bool,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let out_attached = out(out_attached, "out_attached")?;
        *out_attached = registry::manager(manager)?.session(id)?.is_attached();
        Ok(())
    })
}

/// Queues `len` bytes of input for the session of `vm_id` and returns at once (it never
/// waits for evaluation). Each line is evaluated as the standalone `lua` evaluates a typed
/// line: `return <line>` is tried first so a bare expression prints its value, `=expr`
/// works, an incomplete chunk waits for the next lines; a last line without a newline
/// counts as a line. Output (values, `print`, errors with their traceback on stderr) comes
/// back clean through `bioxen_vm_manager_read_output` or the output callback: no echo, no
/// prompt.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND,
/// VM_MANAGER_ERROR (manager shut down). A session terminated meanwhile is SESSION_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `input` must point to `len` bytes (NULL when 0).
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_send_input(
    manager: u64,
    vm_id: *const c_char,
    input: *const c_char,
    len: usize,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let input = bytes(input, len, "input")?;
        registry::manager(manager)?.send_input(id, input)
    })
}

/// Takes the session's buffered output into `*out_output` (free with
/// `bioxen_vm_bytes_free`) and writes to `*out_has_output` whether there was any (false:
/// `*out_output` is empty; bindings return None). With `timeout_ms` > 0 it first waits, up
/// to that long, until all queued input is evaluated (with `BIOXEN_VM_READ_ANY_OUTPUT`:
/// until there is any output); the waiting thread evaluates queued input itself when no
/// worker is at it, so no caller needs to sleep. A timeout never interrupts the session: a
/// line the waiting thread is evaluating when the timeout passes runs to its end first, so
/// the call can return later than `timeout_ms` by up to one line's evaluation time.
/// `flags`: see `bioxen_vm_read`.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, INVALID_ARGUMENT (flags),
/// SESSION_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated; the out-parameters valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_read_output(
    manager: u64,
    vm_id: *const c_char,
    timeout_ms: u64,
    flags: i32,
    out_output: *mut bioxen_vm_bytes,
    out_has_output: *mut bool,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let out_output = out(out_output, "out_output")?;
        let out_has_output = out(out_has_output, "out_has_output")?;
        if flags & !7 != 0 {
            return Err(Error::invalid(format!("unknown read flags {flags:#x}")));
        }
        let streams = match flags & 3 {
            1 => Streams::Only(Stream::Stdout),
            2 => Streams::Only(Stream::Stderr),
            _ => Streams::All,
        };
        let wait = if flags & 4 != 0 {
            Wait::AnyOutput
        } else {
            Wait::Idle
        };
        let session = registry::manager(manager)?.session(id)?;
        // 0: no wait (not "no limit", as elsewhere).
        let timeout = Some(ms_timeout(timeout_ms).unwrap_or(Duration::ZERO));
        let got = session.read(timeout, wait, streams);
        *out_has_output = got.is_some();
        *out_output = bioxen_vm_bytes::from_vec(got.unwrap_or_default());
        Ok(())
    })
}

/// Sends `command` to the session of `vm_id`, waits up to `timeout_ms` (0: no limit) for
/// the session to be idle, and writes everything it printed (stdout and stderr, merged) to
/// `*out_output` (free with `bioxen_vm_bytes_free`). The calling thread evaluates the
/// command itself; as for `bioxen_vm_manager_read_output`, a timeout does not interrupt the
/// line being evaluated, which runs to its end first.
/// Statuses: those of `bioxen_vm_manager_send_input`.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `command` must point to `len` bytes; `out_output` valid
/// for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_execute_interactive_command(
    manager: u64,
    vm_id: *const c_char,
    command: *const c_char,
    len: usize,
    timeout_ms: u64,
    out_output: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let command = bytes(command, len, "command")?;
        let out_output = out(out_output, "out_output")?;
        let output = registry::manager(manager)?.execute_interactive_command(
            id,
            command,
            ms_timeout(timeout_ms),
        )?;
        *out_output = bioxen_vm_bytes::from_vec(output);
        Ok(())
    })
}

/// Interrupts the session's running evaluation: it stops with its error on stderr, the
/// session and the VM's state stay. Input queued behind it, and an incomplete chunk, are
/// discarded (as Ctrl-C in the REPL). Writes whether something was running (NULL allowed).
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated; `out_was_running` NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_interrupt_session(
    manager: u64,
    vm_id: *const c_char,
    out_was_running: *mut bool,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        let was = registry::manager(manager)?.session(id)?.interrupt();
        if let Some(o) = opt_out(out_was_running) {
            *o = was;
        }
        Ok(())
    })
}

/// Ends the session of `vm_id`, also while it evaluates (the evaluation is interrupted and
/// queued input discarded). The VM and its state stay; a new session can be created.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND.
///
/// # Safety
/// `vm_id` must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_terminate_session(
    manager: u64,
    vm_id: *const c_char,
) -> i32 {
    call(|| {
        let id = text(vm_id, "vm_id")?;
        registry::manager(manager)?.terminate_session(id)
    })
}

/// Creates the interactive VM `dst_vm_id` with the options of `src_vm_id` (a fresh state:
/// globals are not copied), attached.
/// Statuses: OK, NULL_POINTER, INVALID_UTF8, INVALID_HANDLE, SESSION_NOT_FOUND ("Source VM
/// 'x' not found"), VM_ALREADY_EXISTS, INVALID_ARGUMENT.
///
/// # Safety
/// Both ids must be NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_clone_session(
    manager: u64,
    src_vm_id: *const c_char,
    dst_vm_id: *const c_char,
) -> i32 {
    call(|| {
        let src = text(src_vm_id, "src_vm_id")?;
        let dst = text(dst_vm_id, "dst_vm_id")?;
        registry::manager(manager)?.clone_session(src, dst)?;
        Ok(())
    })
}

/// Writes the manager's sessions as JSON (free with `bioxen_vm_bytes_free`):
/// `{vm_id: {attached, running, evaluating, idle, last_activity (Unix seconds), executions,
/// queued_lines, incomplete_input, buffered_bytes, dropped_bytes, terminated}}`. `running`
/// is the original library's flag (the session is live and takes input); `evaluating` says
/// that input is being evaluated or queued, `idle` the opposite.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_json` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_manager_list_sessions(
    manager: u64,
    out_json: *mut bioxen_vm_bytes,
) -> i32 {
    call(|| {
        let out_json = out(out_json, "out_json")?;
        let list = registry::manager(manager)?.list_sessions();
        *out_json = bioxen_vm_bytes::from_string(list.to_string());
        Ok(())
    })
}
