//! The `basic` VM kind: one persistent mlua `Lua` state (vendored Lua 5.4) per VM.

mod cache;
mod call;
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
use call::call_chunk;
use capture::{exact_copy, Capture};
use mlua::chunk::ChunkMode;
use mlua::{ffi, Function, Lua, MultiValue};
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
    /// Registry slot of the original `tostring` (used to print returned values).
    tostring_ref: std::os::raw::c_int,
    values_json: Vec<u8>,
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
        let mut tostring_ref = 0;
        // SAFETY: `capture` and `stopper` are owned by the returned VM and dropped after `lua`.
        unsafe {
            lua.exec_raw::<()>((), |l| {
                main = l;
                sandbox::install(l, sb, cap_ptr, &*stop_ptr);
                ffi::lua_getglobal(l, c"tostring".as_ptr());
                tostring_ref = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
            })
        }
        .map_err(lua_err)?;
        if let Some(limit) = options.memory_limit {
            lua.set_memory_limit(limit).map_err(lua_err)?;
        }
        Ok(EmbeddedVm {
            lua,
            cache: ChunkCache::new(options.chunk_cache),
            tostring_ref,
            values_json: Vec::new(),
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

    /// Runs `f` under the stop machinery (and a deadline when `timeout` is set).
    fn run(
        &mut self,
        f: &Function,
        args: MultiValue,
        timeout: Option<Duration>,
    ) -> (mlua::Result<()>, Option<StopReason>) {
        let epoch = self.stopper.begin(self.main.0);
        let ticket = match timeout {
            Some(t) => {
                let target: Arc<dyn Stopper> = self.stopper.clone();
                watchdog::schedule(Instant::now() + t, target, epoch).ok()
            }
            None => None,
        };
        self.values_json.clear();
        let stdout = &mut self.capture.get_mut().stdout;
        let r = call_chunk(
            &self.lua,
            f,
            args,
            self.tostring_ref,
            stdout,
            &mut self.values_json,
        );
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
        self.capture().clear();
        let args = self.args(req)?;
        let f = match self.compile(req.code) {
            Ok(f) => f,
            Err(mlua::Error::MemoryError(m)) => return Err(self.memory_error(m)),
            Err(e) => return Ok(self.failed(error_text(&e), started)),
        };
        let (r, reason) = self.run(&f, args, timeout);
        match (r, reason) {
            (Ok(()), _) => {
                let cap = self.capture.get_mut();
                Ok(ExecOutput {
                    success: true,
                    return_code: 0,
                    stdout: exact_copy(&cap.stdout),
                    stderr: exact_copy(&cap.stderr),
                    values_json: String::from_utf8(exact_copy(&self.values_json))
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    error: None,
                    duration: started.elapsed(),
                    output_dropped: cap.dropped,
                })
            }
            (_, Some(StopReason::Timeout)) => Err(Error::Timeout(format!(
                "Lua execution timed out after {} seconds",
                seconds_text(timeout.unwrap_or_default())
            ))),
            (_, Some(StopReason::Interrupt)) => {
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
        self.capture().clear();
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
        let cap = self.capture.get_mut();
        let mut stderr = Vec::with_capacity(cap.stderr.len() + message.len() + 2);
        stderr.extend_from_slice(&cap.stderr);
        stderr.extend_from_slice(message.as_bytes());
        stderr.push(b'\n');
        let dropped = cap.dropped;
        ExecOutput {
            success: false,
            return_code: 1,
            stdout: exact_copy(&cap.stdout),
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
