//! Switches for operations that hit bugs already known and being fixed elsewhere.
//!
//! Each switch is ON (the operation is left out of the generated sequences) by default.
//! Turn one off by setting it to `false` here once its fix is merged, or for a single run
//! with `BIOXEN_FUZZ_RUN_KNOWN=name,name` (or `all`), e.g. to check a fix branch.

/// Known bug (issue 10, class 5), fixed on branch hard-boundary: `timeout_ms` 0 ("no
/// limit") and UINT64_MAX on `bioxen_vm_manager_execute_interactive_command` and
/// `bioxen_vm_manager_broadcast_to_sessions` give PANIC (an `Instant` overflow). While ON,
/// those two functions get only timeouts from 1 ms to an hour.
pub const SKIP_SESSION_TIMEOUT_EXTREMES: bool = true;

/// Known bug (issue 10, class 7), fixed on branch hard-boundary: `bioxen_vm_manager_free`
/// waits its 5 s grace twice when a worker is busy, e.g. when called from a job's on-done
/// callback (which runs on the manager's own worker). While ON, no callback frees a
/// manager.
pub const SKIP_MANAGER_FREE_IN_CALLBACK: bool = true;

/// Known bug (issue 10, class 1), fixed on branch hard-embedded: library functions that
/// loop in C without a stop check (`table.move` over a huge range, `table.insert` with a
/// huge `__len`, a plain `string.find` of a long needle) ignore timeouts and interrupts in
/// a `basic` VM. While ON, no program calls them.
pub const SKIP_C_LIBRARY_LOOPS: bool = true;

/// Known bug (issue 10, class 4), fixed on the lead's branch: code in a `process` VM that
/// writes a protocol frame to the child's real stdout (`io.open("/dev/stdout")`) shifts
/// every later result onto the wrong call. While ON, no program does.
pub const SKIP_PROCESS_FORGERY: bool = true;

/// Known bug (issue 10, class 2; the policy is the lead's notes/output-policy.md), fixed on
/// branch hard-embedded for basic VMs and on the lead's branch for process VMs: stdout,
/// stderr, values and the error message of a result are each to be bounded by the VM's
/// `max_output`; today the printed values, the traceback and the error text are appended
/// past it. While ON, results are not checked against those bounds (the rest of each
/// result is).
pub const SKIP_OUTPUT_BOUNDS: bool = true;

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
