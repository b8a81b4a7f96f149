//! Long operations as XAPI tasks: `Async.<method>` returns a task at once; the task is
//! polled with short `task.get_record` requests (so every HTTP request stays short),
//! its progress handed on, cancelled with `task.cancel` when the caller asks or the
//! deadline passes, and always destroyed once it has settled.
//!
//! Transient pool errors (`TOO_MANY_PENDING_TASKS`, `OTHER_OPERATION_IN_PROGRESS`,
//! `VDI_IN_USE`) mean XAPI did not do the operation: [`retrying`] tries again with a
//! bounded, doubling backoff.

use super::client::Client;
use super::error::XapiError;
use crate::deadline::Deadline;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The XAPI errors that mean "not now, try again".
pub const TRANSIENT: &[&str] = &[
    "TOO_MANY_PENDING_TASKS",
    "OTHER_OPERATION_IN_PROGRESS",
    "VDI_IN_USE",
];

/// What a long operation is told and asked while it runs.
pub struct Watch<'a> {
    /// Whether the caller wants the operation stopped.
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
    /// Progress from 0 to 1 as XAPI reports it, never decreasing; called at every poll.
    pub progress: &'a mut dyn FnMut(f64),
    /// When to give up (cancelling the task).
    pub deadline: Deadline,
    /// What the deadline is, for messages ("boot_timeout (300 s)").
    pub limit: &'a str,
}

/// Sleeps `d` (or until the deadline), waking every 20 ms to see whether `cancelled`.
/// Whether it was cancelled.
pub fn pause(d: Duration, cancelled: &dyn Fn() -> bool, deadline: Deadline) -> bool {
    let end = Instant::now() + d;
    let end = deadline.instant().map_or(end, |dl| dl.min(end));
    loop {
        if cancelled() {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Runs `f` until it succeeds or fails with something that is not transient, at most
/// `client.config().transient_retries` more times, waiting `retry_backoff` doubled each
/// time (at most 5 s), within the deadline and unless cancelled.
pub fn retrying<T>(
    client: &Client,
    what: &str,
    cancelled: &dyn Fn() -> bool,
    deadline: Deadline,
    mut f: impl FnMut() -> Result<T, XapiError>,
) -> Result<T, XapiError> {
    let mut wait = client.config().retry_backoff;
    let mut left = client.config().transient_retries;
    loop {
        match f() {
            Err(e) if e.code().is_some_and(|c| TRANSIENT.contains(&c)) && left > 0 => {
                left -= 1;
                log::info!(target: "bioxen_vm::xapi", "{what}: {e}; trying again in {} ms", wait.as_millis());
                if pause(wait, cancelled, deadline) {
                    return Err(XapiError::Cancelled(format!("{what}: cancelled")));
                }
                if deadline.passed() {
                    return Err(e);
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

fn field<'a>(rec: &'a Value, name: &str) -> &'a Value {
    rec.get(name).unwrap_or(&Value::Null)
}

/// Destroys a settled task (or marks a pending one for XAPI's collection), logging
/// failures: a task left over is collected by XAPI within the hour, and `sweep` finds
/// none of ours.
fn destroy(client: &Client, task: &str) {
    if let Err(e) = client.call("task.destroy", &[Value::from(task)]) {
        if !e.is("HANDLE_INVALID") {
            log::warn!(target: "bioxen_vm::xapi", "task.destroy({task}) failed: {e}");
        }
    }
}

/// Runs `Async.<method>(params)` as a task and returns its result (parsed from XAPI's
/// XML-RPC text). A task that succeeds after a cancel was asked still returns its
/// result: the caller owns what it made.
pub fn run(
    client: &Client,
    method: &str,
    params: &[Value],
    watch: &mut Watch<'_>,
) -> Result<Value, XapiError> {
    let task = match client.call(&format!("Async.{method}"), params)? {
        Value::String(t) => t,
        other => {
            return Err(XapiError::Protocol(format!(
                "Async.{method} returned {other}, not a task"
            )))
        }
    };
    let r = follow(client, method, &task, watch);
    destroy(client, &task);
    r
}

fn follow(
    client: &Client,
    method: &str,
    task: &str,
    watch: &mut Watch<'_>,
) -> Result<Value, XapiError> {
    let poll = client.config().poll_interval;
    let mut cancel_sent: Option<(Instant, &'static str)> = None;
    let mut last: f64 = 0.0;
    let mut failures = 0;
    loop {
        let rec = match client.call("task.get_record", &[Value::from(task)]) {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e @ XapiError::Fault { .. }) => return Err(e),
            Err(e) if failures < 3 => {
                failures += 1;
                log::debug!(target: "bioxen_vm::xapi", "polling {method} ({task}): {e}");
                pause(poll, &|| false, Deadline::NEVER);
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = field(&rec, "status").as_str().unwrap_or("").to_string();
        match status.as_str() {
            "success" => {
                let text = field(&rec, "result").as_str().unwrap_or("");
                return super::xml::parse_value(text).map_err(|e| {
                    XapiError::Protocol(format!("{method}: the task result is not XML-RPC: {e}"))
                });
            }
            "failure" => {
                return Err(super::wire::fault_of_array(field(&rec, "error_info")));
            }
            "cancelled" => {
                return Err(match cancel_sent {
                    Some((_, "deadline")) => XapiError::Timeout(format!(
                        "{method} did not finish within {}",
                        watch.limit
                    )),
                    _ => XapiError::Cancelled(format!("{method} was cancelled")),
                });
            }
            _ => {}
        }
        // Every poll reports (an unchanged value too), so that a caller can cancel while
        // the task makes no progress.
        if let Some(p) = field(&rec, "progress").as_f64() {
            last = last.max(p.clamp(0.0, 1.0));
        }
        (watch.progress)(last);
        match cancel_sent {
            None => {
                let why = if (watch.cancelled)() {
                    Some("cancel")
                } else if watch.deadline.passed() {
                    Some("deadline")
                } else {
                    None
                };
                if let Some(why) = why {
                    log::info!(target: "bioxen_vm::xapi", "cancelling {method} ({task}): {}", if why == "cancel" { "asked to" } else { "past its deadline" });
                    if let Err(e) = client.call("task.cancel", &[Value::from(task)]) {
                        log::debug!(target: "bioxen_vm::xapi", "task.cancel({task}): {e}");
                    }
                    cancel_sent = Some((Instant::now(), why));
                }
            }
            // A task that ignores the cancel for 30 s is left to XAPI (destroyed below,
            // which marks it for collection).
            Some((at, why)) if at.elapsed() > Duration::from_secs(30) => {
                return Err(if why == "deadline" {
                    XapiError::Timeout(format!("{method} did not finish within {}", watch.limit))
                } else {
                    XapiError::Cancelled(format!("{method} was cancelled (the task did not stop)"))
                });
            }
            Some(_) => {}
        }
        let quick = cancel_sent.is_some();
        pause(
            if quick {
                poll.min(Duration::from_millis(50))
            } else {
                poll
            },
            &|| !quick && (watch.cancelled)(),
            if quick {
                Deadline::NEVER
            } else {
                watch.deadline
            },
        );
    }
}
