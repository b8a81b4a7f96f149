//! Logging through the `log` crate.
//!
//! Off unless asked for: `BIOXEN_VM_LOG` (env_logger filter syntax, e.g. `debug` or
//! `bioxen_vm::vm=trace`) or `PYLUA_DEBUG=true` (same as `BIOXEN_VM_LOG=bioxen_vm=debug`)
//! turn on records to stderr; a host may instead install a callback that receives every
//! record up to a level, on whatever thread logs it. Nothing is ever written to stdout.
//! Code and session input are logged at trace level only (debug for a VM in `debug_mode`).

use log::{LevelFilter, Log, Metadata, Record};
use once_cell::sync::{Lazy, OnceCell};
use parking_lot::RwLock;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};

/// C log callback: `level` 1 = error … 5 = trace; `target` and `message` are NUL-terminated
/// UTF-8 valid only during the call.
pub type LogFn = unsafe extern "C" fn(
    level: i32,
    target: *const c_char,
    message: *const c_char,
    user_data: *mut c_void,
);

struct Callback {
    f: LogFn,
    user_data: usize,
    max: LevelFilter,
}

static CALLBACK: RwLock<Option<Callback>> = RwLock::new(None);
static ENV: Lazy<Option<env_logger::Logger>> = Lazy::new(env_logger_from_env);
static INSTALLED: OnceCell<bool> = OnceCell::new();

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

fn env_logger_from_env() -> Option<env_logger::Logger> {
    let filter = match std::env::var("BIOXEN_VM_LOG") {
        Ok(f) if !f.trim().is_empty() => f,
        _ => match std::env::var("PYLUA_DEBUG") {
            Ok(v)
                if matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on"
                ) =>
            {
                "bioxen_vm=debug".to_string()
            }
            _ => return None,
        },
    };
    let logger = env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Stderr)
        .build();
    Some(logger)
}

struct Logger;

impl Logger {
    fn env_max() -> LevelFilter {
        ENV.as_ref().map(|l| l.filter()).unwrap_or(LevelFilter::Off)
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        if let Some(cb) = CALLBACK.read().as_ref() {
            return m.level() <= cb.max;
        }
        ENV.as_ref().is_some_and(|l| l.enabled(m))
    }

    fn log(&self, r: &Record) {
        // Copy the callback out: it is never called with the lock held, so it may log or
        // replace itself.
        let cb = CALLBACK.read().as_ref().map(|c| (c.f, c.user_data, c.max));
        match cb {
            Some((f, user_data, max)) => {
                if r.level() > max || IN_CALLBACK.with(|c| c.get()) {
                    return;
                }
                let target = c_text(r.target());
                let message = c_text(&r.args().to_string());
                IN_CALLBACK.with(|c| c.set(true));
                // SAFETY: the host installed `f` with this `user_data` and promised it may be
                // called from any thread.
                unsafe {
                    f(
                        r.level() as i32,
                        target.as_ptr(),
                        message.as_ptr(),
                        user_data as *mut c_void,
                    )
                };
                IN_CALLBACK.with(|c| c.set(false));
            }
            None => {
                if let Some(l) = ENV.as_ref() {
                    if l.matches(r) {
                        l.log(r);
                    }
                }
            }
        }
    }

    fn flush(&self) {}
}

fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Installs the library's logger once (if the process has no other logger).
pub fn init() {
    INSTALLED.get_or_init(|| {
        let ok = log::set_logger(&Logger).is_ok();
        if ok {
            log::set_max_level(Logger::env_max());
        }
        ok
    });
}

/// Installs (or with `None` removes) the host's callback, receiving records up to `max`.
pub fn set_callback(f: Option<LogFn>, user_data: *mut c_void, max: LevelFilter) {
    init();
    *CALLBACK.write() = f.map(|f| Callback {
        f,
        user_data: user_data as usize,
        max,
    });
    let level = if f.is_some() { max } else { Logger::env_max() };
    log::set_max_level(level);
}

/// Maps the C level number (0 = off, 1 = error … 5 = trace).
pub fn level_filter(level: i32) -> Option<LevelFilter> {
    Some(match level {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        5 => LevelFilter::Trace,
        _ => return None,
    })
}
