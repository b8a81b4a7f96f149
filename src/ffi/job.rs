//! Jobs: asynchronous executions.

use super::boundary::{call, ms_timeout, opt_out, out};
use super::types::bioxen_vm_result;
use crate::error::Error;
use crate::registry;
use std::ffi::{c_char, c_void};

/// Waits for the job to finish, up to `timeout_ms` (0 = without limit), and writes its
/// outcome to `*out_result` (free with `bioxen_vm_result_free`). May be called again (and
/// from several threads): each call gets its own copy.
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE, WAIT_TIMEOUT (the job goes on), CANCELLED,
/// and the job's own failure (TIMEOUT, INTERRUPTED, MEMORY_LIMIT, …).
///
/// # Safety
/// `out_result` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_job_wait(
    job: u64,
    timeout_ms: u64,
    out_result: *mut bioxen_vm_result,
) -> i32 {
    call(|| {
        let out_result = out(out_result, "out_result")?;
        let o = registry::job(job)?.wait(ms_timeout(timeout_ms))?;
        *out_result = o.into();
        Ok(())
    })
}

/// Writes the job's status to `*out_status` as a static string (never freed), with the
/// original library's words: "running" (queued or executing), "done", "cancelled".
/// Statuses: OK, NULL_POINTER, INVALID_HANDLE.
///
/// # Safety
/// `out_status` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_job_status(job: u64, out_status: *mut *const c_char) -> i32 {
    call(|| {
        let out_status = out(out_status, "out_status")?;
        let s = registry::job(job)?.status();
        *out_status = match s {
            crate::jobs::JobStatus::Running => c"running".as_ptr(),
            crate::jobs::JobStatus::Done => c"done".as_ptr(),
            crate::jobs::JobStatus::Cancelled => c"cancelled".as_ptr(),
        };
        Ok(())
    })
}

/// Cancels the job: a queued job will not run; a running one is interrupted (its VM keeps
/// its state). Writes to `*out_cancelled` (if not NULL) whether it was cancelled (false when
/// it had already finished).
/// Statuses: OK, INVALID_HANDLE.
///
/// # Safety
/// `out_cancelled` must be NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn bioxen_vm_job_cancel(job: u64, out_cancelled: *mut bool) -> i32 {
    call(|| {
        let c = registry::job(job)?.cancel();
        if let Some(o) = opt_out(out_cancelled) {
            *o = c;
        }
        Ok(())
    })
}

/// Frees a job handle. A job that has not finished goes on (its outcome is discarded);
/// cancel it first to stop it. `job == 0` is a no-op.
/// Statuses: OK, INVALID_HANDLE.
#[no_mangle]
pub extern "C" fn bioxen_vm_job_free(job: u64) -> i32 {
    call(|| {
        if job == 0 {
            return Ok(());
        }
        registry::take_job(job).map(drop)
    })
}

/// Job completion callback: `job` is the handle given to `bioxen_vm_job_on_done`, `status`
/// the job's outcome (OK when it ran, including a Lua error; CANCELLED; or its failure
/// status such as TIMEOUT or INTERRUPTED), `user_data` what was given with the callback.
pub type bioxen_vm_job_callback =
    Option<unsafe extern "C" fn(job: u64, status: i32, user_data: *mut c_void)>;

/// Calls `callback(job, status, user_data)` exactly once when the job finishes: on the
/// thread that finishes it (a library worker thread, or the thread whose
/// `bioxen_vm_job_cancel`, `bioxen_vm_manager_remove_vm`, `bioxen_vm_free` or
/// `bioxen_vm_manager_free` cancels it while queued), or at once on the calling thread,
/// before this function returns, if it has already finished. The callback may call any
/// function of the library, e.g. `bioxen_vm_job_wait(job, 0, &r)` to fetch the result
/// (freeing the job handle inside it is allowed too), and may wait for other jobs, also
/// of the same VM and with `max_workers` 1: on a worker it runs after the job's VM is
/// released (the VM's next job may already run), and while it waits for a job that has
/// not finished the pool may start one extra thread so that job still runs. It may free
/// the job's manager (`bioxen_vm_manager_free` then does not wait for this worker). It
/// must not unwind and should not block for long otherwise (it holds up its worker).
/// Several callbacks may be registered on one job; each is called once. Freeing the job
/// handle before it finishes does not cancel the callback. `user_data` is passed back
/// unchanged and never freed.
/// Statuses: OK, NULL_POINTER (callback), INVALID_HANDLE.
#[no_mangle]
pub extern "C" fn bioxen_vm_job_on_done(
    job: u64,
    callback: bioxen_vm_job_callback,
    user_data: *mut c_void,
) -> i32 {
    call(|| {
        let f = callback.ok_or(Error::NullPointer("callback"))?;
        let j = registry::job(job)?;
        let user_data = user_data as usize;
        j.on_done(Box::new(move |outcome| {
            let status = match outcome {
                Ok(_) => 0,
                Err(e) => e.status() as i32,
            };
            // SAFETY: the caller registered `f` with this `user_data` and promised that it
            // may be called from any thread.
            unsafe { f(job, status, user_data as *mut c_void) };
        }));
        Ok(())
    })
}
