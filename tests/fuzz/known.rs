//! Switches that leave out of the generated sequences an operation that hits a known bug,
//! so that a long run can look past a bug already reported while it is being fixed.
//!
//! Every switch is OFF: the bugs they were made for (issue 10: session timeouts of 0 and
//! UINT64_MAX, freeing a manager from its own job's callback, C library loops in the basic
//! sandbox, forged protocol frames in process VMs, output past `max_output`) are fixed, and
//! the default run exercises all of it. To skip one while a new bug is open, set it to
//! `true` here; `BIOXEN_FUZZ_RUN_KNOWN=name,name` (or `all`) runs it anyway for one run.

/// `timeout_ms` 0 and UINT64_MAX on `bioxen_vm_manager_execute_interactive_command` and
/// `bioxen_vm_manager_broadcast_to_sessions`.
pub const SKIP_SESSION_TIMEOUT_EXTREMES: bool = false;

/// `bioxen_vm_manager_free` called from a job's on-done callback.
pub const SKIP_MANAGER_FREE_IN_CALLBACK: bool = false;

/// Library functions that loop in C (`table.move` over a huge range, `table.insert` with a
/// huge `__len`, a plain `string.find` of a long needle) under a timeout or an interrupt.
pub const SKIP_C_LIBRARY_LOOPS: bool = false;

/// Code in a `process` VM that writes a protocol frame to the child's real stdout.
pub const SKIP_PROCESS_FORGERY: bool = false;

/// Checking stdout, stderr, values and the error message of every result against the VM's
/// `max_output`.
pub const SKIP_OUTPUT_BOUNDS: bool = false;

/// The switches in force for this run.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    pub session_timeout_extremes: bool,
    pub manager_free_in_callback: bool,
    pub c_library_loops: bool,
    pub process_forgery: bool,
    pub output_bounds: bool,
}

impl Known {
    pub fn from_env() -> Known {
        let run = std::env::var("BIOXEN_FUZZ_RUN_KNOWN").unwrap_or_default();
        let runs = |name: &str| {
            run.split(',')
                .any(|n| n.trim() == name || n.trim() == "all")
        };
        Known {
            session_timeout_extremes: SKIP_SESSION_TIMEOUT_EXTREMES
                && !runs("session-timeout-extremes"),
            manager_free_in_callback: SKIP_MANAGER_FREE_IN_CALLBACK
                && !runs("manager-free-in-callback"),
            c_library_loops: SKIP_C_LIBRARY_LOOPS && !runs("c-library-loops"),
            process_forgery: SKIP_PROCESS_FORGERY && !runs("process-forgery"),
            output_bounds: SKIP_OUTPUT_BOUNDS && !runs("output-bounds"),
        }
    }
}
