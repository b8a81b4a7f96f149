//! The `basic` VM kind: one persistent mlua `Lua` state (vendored Lua 5.4) per VM.

mod cache;
mod capture;
mod sandbox;
mod stop;
mod values;

pub use cache::MAX_CACHED_CODE;
pub use sandbox::MAX_REP_BYTES;
pub use values::float_text;

use crate::error::{Error, Result};
use crate::vm::{Backend, ExecOutput, ExecRequest, StopReason, Stopper, VmOptions};
use crate::watchdog;
use cache::ChunkCache;
use capture::Capture;
use mlua::chunk::ChunkMode;
use mlua::{ffi, Function, Lua, MultiValue, Value};
use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stop::LuaStopper;

/// Chunk name used in error messages and tracebacks.
const CHUNK_NAME: &str = "=(bioxen_vm)";

/// A `lua_State` pointer owned by the VM's `Lua`.
struct MainState(*mut ffi::lua_State);
// SAFETY: only used by the thread that holds the VM (the `Backend` is `&mut`-accessed).
unsafe impl Send for MainState {}

/// One embedded Lua VM.
pub struct EmbeddedVm {
    // Field order is drop order: the state goes first, then what its C functions point to.
    lua: Lua,
    cache: ChunkCache,
    tostring: Function,
    main: MainState,
    capture: Box<UnsafeCell<Capture>>,
    stopper: Arc<LuaStopper>,
    memory_limit: Option<usize>,
}

// SAFETY: `capture` is only touched by the thread holding `&mut EmbeddedVm` (directly, or
// by Lua running inside `execute`); everything else is `Send`.
unsafe impl Send for EmbeddedVm {}

fn lua_err(e: mlua::Error) -> Error {
    match e {
        mlua::Error::MemoryError(m) => Error::MemoryLimit(m),
        other => Error::Internal(format!("Lua state set-up failed: {other}")),
    }
}

impl EmbeddedVm {
    pub fn new(options: &VmOptions) -> Result<Self> {
        let lua = sandbox::new_state(options.sandbox).map_err(lua_err)?;
        let capture = Box::new(UnsafeCell::new(Capture::new(options.max_output)));
        let stopper = Arc::new(LuaStopper::new());
        let cap_ptr = capture.get();
        let stop_ptr: *const LuaStopper = &*stopper;
        let sb = options.sandbox;
        let mut main = std::ptr::null_mut();
        // SAFETY: `capture` and `stopper` are owned by the returned VM and dropped after `lua`.
        unsafe {
            lua.exec_raw::<()>((), |l| {
                main = l;
                sandbox::install(l, sb, cap_ptr, &*stop_ptr);
            })
        }
        .map_err(lua_err)?;
        let tostring: Function = lua.globals().get("tostring").map_err(lua_err)?;
        if let Some(limit) = options.memory_limit {
            lua.set_memory_limit(limit).map_err(lua_err)?;
        }
        Ok(EmbeddedVm {
            lua,
            cache: ChunkCache::new(options.chunk_cache),
            tostring,
            main: MainState(main),
            capture,
            stopper,
            memory_limit: options.memory_limit,
        })
    }

    fn capture(&mut self) -> &mut Capture {
        self.capture.get_mut()
    }

    fn compile(&mut self, code: &[u8]) -> mlua::Result<Function> {
        if let Some(f) = self.cache.get(code) {
            return Ok(f);
        }
        let f = self
            .lua
            .load(code)
            .set_name(CHUNK_NAME)
            .set_mode(ChunkMode::Text)
            .into_function()?;
        self.cache.insert(code, &f);
        Ok(f)
    }

    fn args(&self, req: &ExecRequest<'_>) -> Result<MultiValue> {
        match req.args {
            None => Ok(MultiValue::new()),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| values::json_to_lua(&self.lua, v))
                .collect::<mlua::Result<MultiValue>>()
                .map_err(|e| match e {
                    mlua::Error::MemoryError(m) => Error::MemoryLimit(m),
                    other => Error::invalid(format!("arguments could not be converted: {other}")),
                }),
            Some(_) => Err(Error::invalid("arguments must be a JSON array")),
        }
    }

    /// Appends the returned values to stdout the way the Lua REPL prints them.
    fn print_values(&mut self, values: &MultiValue) {
        if values.is_empty() {
            return;
        }
        let mut line = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                line.push(b'\t');
            }
            match v {
                Value::Nil => line.extend_from_slice(b"nil"),
                Value::Boolean(b) => line.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Integer(n) => line.extend_from_slice(n.to_string().as_bytes()),
                Value::Number(n) => line.extend_from_slice(float_text(*n).as_bytes()),
                Value::String(s) => line.extend_from_slice(&s.as_bytes()),
                other => match self.tostring.call::<mlua::LuaString>(other.clone()) {
                    Ok(s) => line.extend_from_slice(&s.as_bytes()),
                    Err(e) => line.extend_from_slice(format!("<tostring failed: {e}>").as_bytes()),
                },
            }
        }
        line.push(b'\n');
        self.capture().push(capture::STDOUT, &line);
    }

    fn run(
        &mut self,
        f: &Function,
        args: MultiValue,
        timeout: Option<Duration>,
    ) -> (mlua::Result<MultiValue>, Option<StopReason>) {
        let epoch = self.stopper.begin(self.main.0);
        let ticket = match timeout {
            Some(t) => {
                let target: Arc<dyn Stopper> = self.stopper.clone();
                watchdog::schedule(Instant::now() + t, target, epoch).ok()
            }
            None => None,
        };
        let r = f.call::<MultiValue>(args);
        if let Some(t) = ticket {
            watchdog::cancel(t);
        }
        // SAFETY: this thread just executed the main state, which `self.lua` keeps alive.
        let reason = unsafe { self.stopper.end(self.main.0) };
        (r, reason)
    }
}

/// "5" for whole seconds, else the shortest decimal form ("0.5").
pub fn seconds_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

impl Backend for EmbeddedVm {
    fn execute(&mut self, req: &ExecRequest<'_>, timeout: Option<Duration>) -> Result<ExecOutput> {
        let started = Instant::now();
        self.capture().take();
        let args = self.args(req)?;
        let f = match self.compile(req.code) {
            Ok(f) => f,
            Err(mlua::Error::MemoryError(m)) => return Err(self.memory_error(m)),
            Err(e) => return Ok(self.failed(error_text(&e), started)),
        };
        let (r, reason) = self.run(&f, args, timeout);
        match (r, reason) {
            (Ok(values), _) => {
                self.print_values(&values);
                let values_json = values::values_to_json(&values).to_string();
                let (stdout, stderr, dropped) = self.capture().take();
                Ok(ExecOutput {
                    success: true,
                    return_code: 0,
                    stdout,
                    stderr,
                    values_json,
                    error: None,
                    duration: started.elapsed(),
                    output_dropped: dropped,
                })
            }
            (Err(_), Some(StopReason::Timeout)) => {
                self.capture().take();
                Err(Error::Timeout(format!(
                    "Lua execution timed out after {} seconds",
                    seconds_text(timeout.unwrap_or_default())
                )))
            }
            (Err(_), Some(StopReason::Interrupt)) => {
                self.capture().take();
                Err(Error::Interrupted("Lua execution interrupted".into()))
            }
            (Err(mlua::Error::MemoryError(m)), None) => Err(self.memory_error(m)),
            (Err(e), None) => Ok(self.failed(error_text(&e), started)),
        }
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        self.stopper.clone()
    }

    fn memory_used(&self) -> Option<usize> {
        Some(self.lua.used_memory())
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("lua_version".into(), "Lua 5.4".into());
        m.insert("memory_used".into(), self.lua.used_memory().into());
        m.insert("cached_chunks".into(), self.cache.len().into());
        m
    }
}

impl EmbeddedVm {
    fn memory_error(&mut self, detail: String) -> Error {
        self.capture().take();
        // The garbage that hit the limit is unreachable now: give the memory back.
        let _ = self.lua.gc_collect();
        let _ = self.lua.gc_collect();
        match self.memory_limit {
            Some(limit) => Error::MemoryLimit(format!(
                "Lua memory limit of {limit} bytes exceeded ({detail})"
            )),
            None => Error::MemoryLimit(format!("Lua ran out of memory ({detail})")),
        }
    }

    fn failed(&mut self, message: String, started: Instant) -> ExecOutput {
        let (stdout, mut stderr, dropped) = self.capture().take();
        stderr.extend_from_slice(message.as_bytes());
        stderr.push(b'\n');
        ExecOutput {
            success: false,
            return_code: 1,
            stdout,
            stderr,
            values_json: "[]".into(),
            error: Some(message),
            duration: started.elapsed(),
            output_dropped: dropped,
        }
    }
}

impl Drop for EmbeddedVm {
    fn drop(&mut self) {
        self.cache.clear();
        // Finalizers run by lua_close must not be able to hang the thread that frees the VM.
        // SAFETY: the state is alive and owned by this thread now.
        unsafe { self.stopper.arm_for_close(self.main.0) };
    }
}

/// The text of a Lua error: the message, then its traceback when there is one.
fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        // mlua prefixes "syntax error: "; show Lua's own message, as `lua` does.
        mlua::Error::SyntaxError { message, .. } => message
            .strip_prefix("syntax error: ")
            .unwrap_or(message)
            .to_string(),
        mlua::Error::CallbackError { traceback, cause } => format!("{cause}\n{traceback}"),
        other => other.to_string(),
    }
}
