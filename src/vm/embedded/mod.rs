//! The `basic` VM kind: one persistent Lua 5.4 state (vendored, created and owned through
//! mlua) per VM. Chunks are compiled once into a bounded cache and run on the raw stack
//! (`call.rs`); the sandbox, output capture and stop machinery live in their own files.

mod cache;
mod call;
pub(crate) mod capture;
mod require;
mod sandbox;
mod stop;
mod values;

use crate::clock;
use crate::error::{Error, Result};
use crate::vm::{Backend, ExecOutput, ExecRequest, ReplStep, StopReason, Stopper, VmOptions};
use crate::watchdog;
use cache::{ChunkCache, MAX_CACHED_CODE};
use call::{Compiled, Ended};
use capture::{copy_into, Capture};
use mlua::{ffi, Lua};
use std::cell::UnsafeCell;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stop::LuaStopper;

/// The main thread of the VM's state.
struct MainState(*mut ffi::lua_State);
// SAFETY: only used by the thread that holds the VM (the `Backend` is `&mut`-accessed under
// the VM's lock).
unsafe impl Send for MainState {}

/// One embedded Lua VM.
pub struct EmbeddedVm {
    // Field order is drop order: the state goes first, then what its C functions point to.
    lua: Lua,
    cache: ChunkCache,
    /// Interactive lines that compiled as `return <line>;`, keyed by the line.
    repl_expr: ChunkCache,
    /// Interactive chunks that compiled as they are, keyed by the chunk.
    repl_stmt: ChunkCache,
    /// Lines known not to compile as `return <line>;` (so the first try is skipped).
    not_expr: std::collections::HashSet<Box<[u8]>>,
    /// Registry slot of the original `tostring` (used to print returned values).
    tostring_ref: c_int,
    values_json: Vec<u8>,
    main: MainState,
    capture: Box<UnsafeCell<Capture>>,
    stopper: Arc<LuaStopper>,
    memory_limit: Option<usize>,
    /// What `require` searches when the VM uses a package environment (the state points
    /// to it; kept for the state's life).
    _modules: Option<Box<UnsafeCell<require::Modules>>>,
}

// SAFETY: `capture` and the state are only touched by the thread holding `&mut EmbeddedVm`
// (directly, or by Lua running inside `execute`); everything else is `Send`.
unsafe impl Send for EmbeddedVm {}

fn setup_error(e: mlua::Error) -> Error {
    match e {
        mlua::Error::MemoryError(m) => Error::MemoryLimit(m),
        other => Error::Internal(format!("Lua state set-up failed: {other}")),
    }
}

/// Most lines remembered as "not an expression" (the set is emptied when full).
const NOT_EXPR_CAPACITY: usize = 256;

/// Keeps the compiled `chunk` under `key` when `cache` takes it (releasing what it evicts);
/// returns whether the caller must release `chunk` after running it.
fn keep(main: &MainState, cache: &mut ChunkCache, key: &[u8], chunk: c_int) -> bool {
    if !cache.admits(key) {
        return true;
    }
    if let Some(old) = cache.insert(key, chunk) {
        // SAFETY: the main state, idle, owned by the thread holding the VM.
        unsafe { call::release(main.0, old) };
    }
    false
}

impl EmbeddedVm {
    pub fn new(options: &VmOptions) -> Result<Self> {
        // The duration clock calibrates once per process: here, not in an execution.
        clock::warm_up();
        let lua = sandbox::new_state(options.sandbox).map_err(setup_error)?;
        let capture = Box::new(UnsafeCell::new(Capture::new(options.max_output)));
        let stopper = Arc::new(LuaStopper::new());
        let cap_ptr = capture.get();
        let stop_ptr: *const LuaStopper = &*stopper;
        let sb = options.sandbox;
        let modules = crate::packages::vmenv::for_embedded(options)?
            .map(|(env, paths)| Box::new(UnsafeCell::new(require::Modules::new(env, &paths))));
        let mod_ptr = modules.as_ref().map(|m| m.get());
        let mut main = std::ptr::null_mut();
        let mut tostring_ref = 0;
        // SAFETY: `capture` and `stopper` are owned by the returned VM and dropped after `lua`.
        unsafe {
            lua.exec_raw::<()>((), |l| {
                main = l;
                sandbox::install(l, sb, cap_ptr, &*stop_ptr);
                if let Some(m) = mod_ptr {
                    ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_GLOBALS);
                    require::install(l, ffi::lua_gettop(l), sb, m);
                    ffi::lua_pop(l, 1);
                }
                ffi::lua_getglobal(l, c"tostring".as_ptr());
                tostring_ref = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
            })
        }
        .map_err(setup_error)?;
        if let Some(limit) = options.memory_limit {
            lua.set_memory_limit(limit).map_err(setup_error)?;
        }
        Ok(EmbeddedVm {
            lua,
            cache: ChunkCache::new(options.chunk_cache),
            repl_expr: ChunkCache::new(options.chunk_cache),
            repl_stmt: ChunkCache::new(options.chunk_cache),
            not_expr: Default::default(),
            tostring_ref,
            values_json: Vec::new(),
            main: MainState(main),
            capture,
            stopper,
            memory_limit: options.memory_limit,
            _modules: modules,
        })
    }

    fn capture(&mut self) -> &mut Capture {
        self.capture.get_mut()
    }

    /// The compiled chunk for `code` and whether it must be released after the call
    /// (when the cache does not keep it).
    fn chunk(&mut self, code: &[u8]) -> Result<std::result::Result<(c_int, bool), String>> {
        if let Some(c) = self.cache.get(code) {
            return Ok(Ok((c, false)));
        }
        let compiled = call::compile(&self.lua, code, call::CHUNK_NAME);
        Ok(self
            .compiled(compiled)?
            .map(|c| (c, keep(&self.main, &mut self.cache, code, c))))
    }

    /// A compiled chunk, a syntax error message, or the error compiling raised.
    fn compiled(
        &mut self,
        r: mlua::Result<Compiled>,
    ) -> Result<std::result::Result<c_int, String>> {
        match r {
            Ok(Compiled::Chunk(c)) => Ok(Ok(c)),
            Ok(Compiled::SyntaxError(m)) => Ok(Err(m)),
            Ok(Compiled::OutOfMemory) => Err(self.memory_error("not enough memory".into())),
            Err(mlua::Error::MemoryError(m)) => Err(self.memory_error(m)),
            Err(e) => Err(Error::Internal(format!("compiling failed: {e}"))),
        }
    }

    /// `code` compiled under `name`, released after its call.
    fn named_chunk(
        &mut self,
        code: &[u8],
        name: &[u8],
    ) -> Result<std::result::Result<(c_int, bool), String>> {
        let name = std::ffi::CString::new(name)
            .map_err(|_| Error::invalid("a chunk name cannot contain NUL"))?;
        let compiled = call::compile(&self.lua, code, &name);
        Ok(self.compiled(compiled)?.map(|c| (c, true)))
    }

    /// Runs `chunk` under the stop machinery (and a deadline when `timeout` is set).
    fn run(
        &mut self,
        chunk: c_int,
        args: Option<&serde_json::Value>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> (Ended, Option<StopReason>) {
        let epoch = self.stopper.begin();
        if cancel.is_some_and(|c| c.load(SeqCst)) {
            // SAFETY: the main state, owned by this thread; nothing ran.
            unsafe { self.stopper.end() };
            return (Ended::Returned, Some(StopReason::Interrupt));
        }
        let ticket = timeout.and_then(|t| {
            let target: Arc<dyn Stopper> = self.stopper.clone();
            watchdog::schedule(Instant::now() + t, target, epoch).ok()
        });
        self.values_json.clear();
        let stdout = &mut self.capture.get_mut().stdout;
        // SAFETY: the main state, used only by this thread while it holds the VM.
        let ended = unsafe {
            call::call(
                self.main.0,
                chunk,
                args,
                self.tostring_ref,
                stdout,
                &mut self.values_json,
            )
        };
        if let Some(t) = ticket {
            watchdog::cancel(t);
        }
        // SAFETY: this thread just executed the main state, which `self.lua` keeps alive.
        let reason = unsafe { self.stopper.end() };
        (ended, reason)
    }

    /// Compiles interactive input (never cached: typed lines rarely repeat).
    fn compile_repl(&mut self, code: &[u8]) -> Result<Compiled> {
        match call::compile(&self.lua, code, call::REPL_CHUNK_NAME) {
            Ok(c) => Ok(c),
            Err(mlua::Error::MemoryError(m)) => Err(self.memory_error(m)),
            Err(e) => Err(Error::Internal(format!("compiling failed: {e}"))),
        }
    }

    /// Runs a compiled chunk and fills `out` with its outcome, reusing `out`'s buffers
    /// (releasing the chunk afterwards when `release` is set).
    #[allow(clippy::too_many_arguments)]
    fn run_chunk(
        &mut self,
        chunk: c_int,
        release: bool,
        args: Option<&serde_json::Value>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        started: clock::Stamp,
        out: &mut ExecOutput,
    ) -> Result<()> {
        let (ended, reason) = self.run(chunk, args, timeout, cancel);
        if release {
            // SAFETY: the main state, idle again, owned by this thread.
            unsafe { call::release(self.main.0, chunk) };
        }
        // A stop that arrived while the code ran decides the outcome, even if the chunk then
        // returned: a `pcall` in tail position can swallow the stop error with no instruction
        // left to run for the hook.
        match (ended, reason) {
            (_, Some(StopReason::Timeout)) => {
                self.capture().clear();
                Err(Error::Timeout(crate::vm::timeout_message(timeout)))
            }
            (_, Some(StopReason::Interrupt)) => {
                self.capture().clear();
                Err(Error::Interrupted(crate::vm::INTERRUPTED_MESSAGE.into()))
            }
            (Ended::Returned, None) => {
                let cap = self.capture.get_mut();
                out.success = true;
                out.return_code = 0;
                copy_into(&mut out.stdout, &cap.stdout);
                copy_into(&mut out.stderr, &cap.stderr);
                copy_into(&mut out.values_json, &self.values_json);
                out.error = None;
                out.output_dropped = cap.dropped;
                out.duration = clock::since(started);
                Ok(())
            }
            (Ended::OutOfMemory, None) => Err(self.memory_error("not enough memory".into())),
            (Ended::Failed(message), None) => {
                self.failed(message, started, out);
                Ok(())
            }
        }
    }

    /// `run_chunk` into a new result.
    #[allow(clippy::too_many_arguments)]
    fn run_chunk_new(
        &mut self,
        chunk: c_int,
        release: bool,
        args: Option<&serde_json::Value>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        started: clock::Stamp,
    ) -> Result<ExecOutput> {
        let mut out = ExecOutput::default();
        self.run_chunk(chunk, release, args, timeout, cancel, started, &mut out)?;
        Ok(out)
    }

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

    /// Fills `out` with a Lua error (syntax or runtime): the message and its traceback
    /// follow what the code wrote to stderr.
    fn failed(&mut self, message: String, started: clock::Stamp, out: &mut ExecOutput) {
        let cap = self.capture.get_mut();
        out.success = false;
        out.return_code = 1;
        copy_into(&mut out.stdout, &cap.stdout);
        out.stderr.clear();
        out.stderr
            .reserve_exact(cap.stderr.len() + message.len() + 2);
        out.stderr.extend_from_slice(&cap.stderr);
        out.stderr.extend_from_slice(message.as_bytes());
        out.stderr.push(b'\n');
        copy_into(&mut out.values_json, b"[]");
        out.error = Some(message);
        out.output_dropped = cap.dropped;
        out.duration = clock::since(started);
    }

    /// `failed` into a new result.
    fn failed_new(&mut self, message: String, started: clock::Stamp) -> ExecOutput {
        let mut out = ExecOutput::default();
        self.failed(message, started, &mut out);
        out
    }
}

impl Backend for EmbeddedVm {
    fn execute(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ExecOutput> {
        let mut out = ExecOutput::default();
        self.execute_into(req, timeout, cancel, &mut out)?;
        Ok(out)
    }

    fn execute_into(
        &mut self,
        req: &ExecRequest<'_>,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        out: &mut ExecOutput,
    ) -> Result<()> {
        let started = clock::now();
        self.capture().clear();
        let compiled = match req.chunk_name {
            None => self.chunk(req.code)?,
            // A named chunk (a file) is compiled for this call only: the cache holds code
            // under the default name.
            Some(name) => self.named_chunk(req.code, name)?,
        };
        match compiled {
            Ok((chunk, release)) => {
                self.run_chunk(chunk, release, req.args, timeout, cancel, started, out)
            }
            Err(syntax) => {
                self.failed(syntax, started, out);
                Ok(())
            }
        }
    }

    fn repl_eval(
        &mut self,
        chunk: &[u8],
        first_line: bool,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
    ) -> Result<ReplStep> {
        let started = clock::now();
        self.capture().clear();
        // As `lua` does: a first line is tried as `return <line>;`. Repeated input reuses
        // its compiled chunk, or the knowledge that it is not an expression.
        if first_line && !self.not_expr.contains(chunk) {
            if let Some(c) = self.repl_expr.get(chunk) {
                return self
                    .run_chunk_new(c, false, None, timeout, cancel, started)
                    .map(ReplStep::Ran);
            }
            let body = chunk.strip_prefix(b"=").unwrap_or(chunk);
            let mut with_return = Vec::with_capacity(body.len() + 8);
            with_return.extend_from_slice(b"return ");
            with_return.extend_from_slice(body);
            with_return.push(b';');
            match self.compile_repl(&with_return)? {
                Compiled::Chunk(c) => {
                    let release = keep(&self.main, &mut self.repl_expr, chunk, c);
                    return self
                        .run_chunk_new(c, release, None, timeout, cancel, started)
                        .map(ReplStep::Ran);
                }
                _ => {
                    if self.not_expr.len() >= NOT_EXPR_CAPACITY {
                        self.not_expr.clear();
                    }
                    if chunk.len() <= MAX_CACHED_CODE {
                        self.not_expr.insert(chunk.into());
                    }
                }
            }
        }
        if let Some(c) = self.repl_stmt.get(chunk) {
            return self
                .run_chunk_new(c, false, None, timeout, cancel, started)
                .map(ReplStep::Ran);
        }
        match self.compile_repl(chunk)? {
            Compiled::Chunk(c) => {
                let release = keep(&self.main, &mut self.repl_stmt, chunk, c);
                self.run_chunk_new(c, release, None, timeout, cancel, started)
                    .map(ReplStep::Ran)
            }
            Compiled::SyntaxError(m) if m.ends_with("<eof>") => Ok(ReplStep::Incomplete),
            Compiled::SyntaxError(m) => Ok(ReplStep::Ran(self.failed_new(m, started))),
            Compiled::OutOfMemory => Err(self.memory_error("not enough memory".into())),
        }
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        self.stopper.clone()
    }

    fn info(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("lua_version".into(), "Lua 5.4".into());
        m.insert("memory_used".into(), self.lua.used_memory().into());
        m.insert("cached_chunks".into(), self.cache.len().into());
        m
    }
}

impl Drop for EmbeddedVm {
    fn drop(&mut self) {
        // Finalizers run by lua_close (and coroutines they resume) must not be able to hang
        // the thread that frees the VM.
        // SAFETY: the state is alive and owned by this thread now.
        unsafe { self.stopper.arm_for_close() };
    }
}
