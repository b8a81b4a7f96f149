//! The `basic` VM kind: one persistent Lua 5.4 state (vendored, created and owned through
//! mlua) per VM. Chunks are compiled once into a bounded cache and run on the raw stack
//! (`call.rs`); the sandbox, output capture and stop machinery live in their own files.
//!
//! An execution's stop window (its deadline and interrupts) covers compiling, running and
//! converting the results; what it hands back is bounded by `max_output` per item
//! (stdout, stderr, the values' JSON, the error message).

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
use call::{Compiled, Ended, ErrorInfo, ErrorText, Slots};
use capture::{copy_into, Capture, KEEP_CAPACITY, STDERR};
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
    /// Registry slot of the message handler.
    handler_ref: c_int,
    values_json: Vec<u8>,
    main: MainState,
    capture: Box<UnsafeCell<Capture>>,
    error_info: Box<UnsafeCell<ErrorInfo>>,
    stopper: Arc<LuaStopper>,
    memory_limit: Option<usize>,
    /// What `require` searches when the VM uses a package environment (the state points
    /// to it; kept for the state's life).
    _modules: Option<Box<UnsafeCell<require::Modules>>>,
    max_output: usize,
}

// SAFETY: `capture`, `error_info` and the state are only touched by the thread holding
// `&mut EmbeddedVm` (directly, or by Lua running inside `execute`); everything else is
// `Send`.
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

/// A compiled chunk (and whether to release it after its call), or a syntax error.
type Chunk = std::result::Result<(c_int, bool), ErrorText>;

/// What interactive input came to inside its stop window.
enum ReplRun {
    Incomplete,
    Ended(Ended),
}

impl EmbeddedVm {
    pub fn new(options: &VmOptions) -> Result<Self> {
        // The duration clock calibrates once per process: here, not in an execution.
        clock::warm_up();
        let lua = sandbox::new_state(options.sandbox).map_err(setup_error)?;
        let capture = Box::new(UnsafeCell::new(Capture::new(options.max_output)));
        let error_info = Box::new(UnsafeCell::new(ErrorInfo {
            max: options.max_output,
            full_len: 0,
        }));
        let stopper = Arc::new(LuaStopper::new());
        let cap_ptr = capture.get();
        let info_ptr = error_info.get();
        let stop_ptr: *const LuaStopper = &*stopper;
        let sb = options.sandbox;
        let modules = crate::packages::vmenv::for_embedded(options)?
            .map(|(env, paths)| Box::new(UnsafeCell::new(require::Modules::new(env, &paths))));
        let mod_ptr = modules.as_ref().map(|m| m.get());
        let mut main = std::ptr::null_mut();
        let mut tostring_ref = 0;
        let mut handler_ref = 0;
        // SAFETY: `capture`, `error_info` and `stopper` are owned by the returned VM and
        // dropped after `lua`.
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
                handler_ref = call::register_handler(l, info_ptr);
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
            handler_ref,
            values_json: Vec::new(),
            main: MainState(main),
            capture,
            error_info,
            stopper,
            memory_limit: options.memory_limit,
            _modules: modules,
            max_output: options.max_output,
        })
    }

    fn capture(&mut self) -> &mut Capture {
        self.capture.get_mut()
    }

    /// The compiled chunk for `code` and whether it must be released after the call
    /// (when the cache does not keep it).
    fn chunk(&mut self, code: &[u8]) -> Result<Chunk> {
        if let Some(c) = self.cache.get(code) {
            return Ok(Ok((c, false)));
        }
        let compiled = call::compile(&self.lua, code, call::CHUNK_NAME, self.max_output);
        Ok(self
            .compiled(compiled)?
            .map(|c| (c, keep(&self.main, &mut self.cache, code, c))))
    }

    /// A compiled chunk, a syntax error message, or the error compiling raised.
    fn compiled(
        &mut self,
        r: mlua::Result<Compiled>,
    ) -> Result<std::result::Result<c_int, ErrorText>> {
        match r {
            Ok(Compiled::Chunk(c)) => Ok(Ok(c)),
            Ok(Compiled::SyntaxError { message, .. }) => Ok(Err(message)),
            Ok(Compiled::OutOfMemory) => Err(self.memory_error("not enough memory".into())),
            Err(mlua::Error::MemoryError(m)) => Err(self.memory_error(m)),
            Err(e) => Err(Error::Internal(format!("compiling failed: {e}"))),
        }
    }

    /// `code` compiled under `name`, released after its call.
    fn named_chunk(&mut self, code: &[u8], name: &[u8]) -> Result<Chunk> {
        let name = std::ffi::CString::new(name)
            .map_err(|_| Error::invalid("a chunk name cannot contain NUL"))?;
        let compiled = call::compile(&self.lua, code, &name, self.max_output);
        Ok(self.compiled(compiled)?.map(|c| (c, true)))
    }

    /// Runs `f` inside the execution's stop window: a deadline when `timeout` is set, and
    /// interrupts. Returns what `f` returned (nothing when `cancel` was already set) and
    /// why the window was stopped, if it was.
    fn stop_window<T>(
        &mut self,
        timeout: Option<Duration>,
        cancel: Option<&AtomicBool>,
        f: impl FnOnce(&mut Self) -> T,
    ) -> (Option<T>, Option<StopReason>) {
        let epoch = self.stopper.begin();
        if cancel.is_some_and(|c| c.load(SeqCst)) {
            // SAFETY: the main state, owned by this thread; nothing ran.
            unsafe { self.stopper.end() };
            return (None, Some(StopReason::Interrupt));
        }
        let ticket = timeout.and_then(|t| {
            let target: Arc<dyn Stopper> = self.stopper.clone();
            watchdog::schedule(Instant::now() + t, target, epoch).ok()
        });
        let r = f(self);
        if let Some(t) = ticket {
            watchdog::cancel(t);
        }
        // SAFETY: this thread just executed the main state, which `self.lua` keeps alive.
        let reason = unsafe { self.stopper.end() };
        (Some(r), reason)
    }

    /// Calls a compiled chunk (releasing it afterwards when `release` is set).
    fn call_chunk(
        &mut self,
        chunk: c_int,
        release: bool,
        args: Option<&serde_json::Value>,
    ) -> Ended {
        let slots = Slots {
            tostring_ref: self.tostring_ref,
            handler_ref: self.handler_ref,
            info: self.error_info.get(),
            capture: self.capture.get(),
        };
        // SAFETY: the main state, used only by this thread while it holds the VM; the
        // pointers in `slots` are owned by the VM.
        let ended = unsafe { call::call(self.main.0, chunk, args, &slots, &mut self.values_json) };
        if release {
            // SAFETY: the main state, idle again, owned by this thread.
            unsafe { call::release(self.main.0, chunk) };
        }
        ended
    }

    /// Compiles (or finds) and calls `req`'s code: what happened inside the stop window.
    fn compile_and_call(&mut self, req: &ExecRequest<'_>) -> Result<Ended> {
        let compiled = match req.chunk_name {
            None => self.chunk(req.code)?,
            // A named chunk (a file) is compiled for this call only: the cache holds code
            // under the default name.
            Some(name) => self.named_chunk(req.code, name)?,
        };
        Ok(match compiled {
            Ok((chunk, release)) => self.call_chunk(chunk, release, req.args),
            Err(syntax) => Ended::Failed(syntax),
        })
    }

    /// Fills `out` with the outcome of a stop window. A stop that arrived while the code
    /// ran decides the outcome, even if the chunk then returned: a `pcall` in tail position
    /// can swallow the stop error with no instruction left to run for the hook.
    #[inline(always)]
    fn finish(
        &mut self,
        ran: Option<Result<Ended>>,
        reason: Option<StopReason>,
        timeout: Option<Duration>,
        started: clock::Stamp,
        out: &mut ExecOutput,
    ) -> Result<()> {
        if let (Some(Ok(Ended::Returned)), None) = (&ran, reason) {
            let cap = self.capture.get_mut();
            out.success = true;
            out.return_code = 0;
            copy_into(&mut out.stdout, &cap.stdout);
            copy_into(&mut out.stderr, &cap.stderr);
            copy_into(&mut out.values_json, &self.values_json);
            out.error = None;
            out.output_dropped = cap.dropped;
            out.duration = clock::since(started);
            self.reset_buffers();
            return Ok(());
        }
        self.finish_otherwise(ran, reason, timeout, started, out)
    }

    /// `finish` for every outcome but a plain return.
    #[cold]
    #[inline(never)]
    fn finish_otherwise(
        &mut self,
        ran: Option<Result<Ended>>,
        reason: Option<StopReason>,
        timeout: Option<Duration>,
        started: clock::Stamp,
        out: &mut ExecOutput,
    ) -> Result<()> {
        let r = match (ran, reason) {
            (_, Some(StopReason::Timeout)) => {
                self.reset_buffers();
                return Err(Error::Timeout(crate::vm::timeout_message(timeout)));
            }
            (_, Some(StopReason::Interrupt)) | (None, None) => {
                self.reset_buffers();
                return Err(Error::Interrupted(crate::vm::INTERRUPTED_MESSAGE.into()));
            }
            (Some(r), None) => r,
        };
        match r {
            Err(e) => {
                self.reset_buffers();
                Err(e)
            }
            // Handled by `finish`.
            Ok(Ended::Returned) => Ok(()),
            Ok(Ended::TooLarge(over)) => {
                let line = crate::vm::values_too_large_message(self.max_output);
                let message = ErrorText::new(&line, self.max_output);
                self.capture().dropped += over.max(1);
                self.failed(message, started, out);
                Ok(())
            }
            Ok(Ended::OutOfMemory) => Err(self.memory_error("not enough memory".into())),
            Ok(Ended::Failed(message)) => {
                self.failed(message, started, out);
                Ok(())
            }
        }
    }

    /// Gives back large buffers once an execution's outcome is out (the next execution
    /// empties the small ones), so an idle VM holds no output.
    fn reset_buffers(&mut self) {
        let cap = self.capture.get_mut();
        if cap.stdout.capacity() > KEEP_CAPACITY || cap.stderr.capacity() > KEEP_CAPACITY {
            cap.clear();
        }
        if self.values_json.capacity() > KEEP_CAPACITY {
            self.values_json = Vec::new();
        }
    }

    /// `finish` into a new result.
    fn finish_new(
        &mut self,
        ran: Option<Result<Ended>>,
        reason: Option<StopReason>,
        timeout: Option<Duration>,
        started: clock::Stamp,
    ) -> Result<ExecOutput> {
        let mut out = ExecOutput::default();
        self.finish(ran, reason, timeout, started, &mut out)?;
        Ok(out)
    }

    /// Compiles interactive input (never cached: typed lines rarely repeat).
    fn compile_repl(&mut self, code: &[u8]) -> Result<Compiled> {
        match call::compile(&self.lua, code, call::REPL_CHUNK_NAME, self.max_output) {
            Ok(c) => Ok(c),
            Err(mlua::Error::MemoryError(m)) => Err(self.memory_error(m)),
            Err(e) => Err(Error::Internal(format!("compiling failed: {e}"))),
        }
    }

    /// Interactive input as `lua` evaluates it, inside the stop window: a first line is
    /// tried as `return <line>;`. Repeated input reuses its compiled chunk, or the
    /// knowledge that it is not an expression.
    fn repl_run(&mut self, chunk: &[u8], first_line: bool) -> Result<ReplRun> {
        // (Only short lines are remembered: no need to hash a long one.)
        let known_not_expr = chunk.len() <= MAX_CACHED_CODE && self.not_expr.contains(chunk);
        if first_line && !known_not_expr {
            if let Some(c) = self.repl_expr.get(chunk) {
                return Ok(ReplRun::Ended(self.call_chunk(c, false, None)));
            }
            let body = chunk.strip_prefix(b"=").unwrap_or(chunk);
            let mut with_return = Vec::with_capacity(body.len() + 8);
            with_return.extend_from_slice(b"return ");
            with_return.extend_from_slice(body);
            with_return.push(b';');
            match self.compile_repl(&with_return)? {
                Compiled::Chunk(c) => {
                    let release = keep(&self.main, &mut self.repl_expr, chunk, c);
                    return Ok(ReplRun::Ended(self.call_chunk(c, release, None)));
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
            return Ok(ReplRun::Ended(self.call_chunk(c, false, None)));
        }
        Ok(match self.compile_repl(chunk)? {
            Compiled::Chunk(c) => {
                let release = keep(&self.main, &mut self.repl_stmt, chunk, c);
                ReplRun::Ended(self.call_chunk(c, release, None))
            }
            Compiled::SyntaxError { at_eof: true, .. } => ReplRun::Incomplete,
            Compiled::SyntaxError { message, .. } => ReplRun::Ended(Ended::Failed(message)),
            Compiled::OutOfMemory => {
                return Err(self.memory_error("not enough memory".into()));
            }
        })
    }

    fn memory_error(&mut self, detail: String) -> Error {
        self.reset_buffers();
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
    /// (at most `max_output` bytes) follow what the code wrote to stderr, within the
    /// stderr cap; what is cut from either is counted as dropped.
    fn failed(&mut self, message: ErrorText, started: clock::Stamp, out: &mut ExecOutput) {
        let cap = self.capture.get_mut();
        let before = cap.dropped;
        cap.push(STDERR, message.text.as_bytes());
        cap.push(STDERR, b"\n");
        // The stderr copy and error_message each miss the bytes cut from the message.
        cap.dropped += 2 * message.cut;
        out.success = false;
        out.return_code = 1;
        copy_into(&mut out.stdout, &cap.stdout);
        copy_into(&mut out.stderr, &cap.stderr);
        copy_into(&mut out.values_json, b"[]");
        out.error = Some(message.text);
        out.output_dropped = cap.dropped;
        debug_assert!(out.output_dropped >= before);
        out.duration = clock::since(started);
        self.reset_buffers();
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
        let (ran, reason) = self.stop_window(timeout, cancel, |vm| vm.compile_and_call(req));
        self.finish(ran, reason, timeout, started, out)
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
        let (ran, reason) = self.stop_window(timeout, cancel, |vm| vm.repl_run(chunk, first_line));
        let ran = match ran {
            Some(Ok(ReplRun::Incomplete)) if reason.is_none() => return Ok(ReplStep::Incomplete),
            Some(Ok(ReplRun::Incomplete)) => Some(Ok(Ended::Returned)),
            Some(Ok(ReplRun::Ended(e))) => Some(Ok(e)),
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        self.finish_new(ran, reason, timeout, started)
            .map(ReplStep::Ran)
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
