//! Stopping running Lua code from another thread, at no cost while nothing is to be stopped.
//!
//! No hook is set while code runs normally. To stop it, [`LuaStopper::stop`] (called by the
//! watchdog when a deadline passes, or by `interrupt` from any thread) sets a reason flag
//! and arms a count hook with `lua_sethook` on every Lua thread that is executing right
//! now: the main state and every coroutine resumed through the sandbox's `coroutine`
//! functions (which record themselves here while they run). `lua_sethook` is the call the
//! standalone `lua` makes from its SIGINT handler; Lua documents it as safe to call
//! asynchronously.
//!
//! The hook raises an error on every instruction until the host call returns, so `pcall`
//! cannot swallow it. A hook left on a coroutine after the call ended removes itself the
//! next time it fires (the reason flag is clear by then).
//!
//! Each Lua thread finds its stopper through the thread's `lua_getextraspace` slot, which
//! Lua copies from the main thread into every thread it creates.
//!
//! No hook fires inside a single C call. The library functions that loop in C are
//! replaced by copies that read `reason` themselves (stop.h and the C files next to it),
//! and the host reads it while it converts results (values.rs).

use crate::vm::{StopReason, Stopper};
use mlua::ffi;
use parking_lot::Mutex;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// A `lua_State` pointer that is only dereferenced while its VM is executing.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatePtr(*mut ffi::lua_State);
// SAFETY: the pointer is only used (with `lua_sethook`) while the state is in the running
// list, i.e. while the owning thread executes it and keeps it alive.
unsafe impl Send for StatePtr {}

/// What `stop()` may touch, under the mutex.
struct Shared {
    /// Coroutines being resumed right now (the main state is armed separately).
    coroutines: Vec<StatePtr>,
    /// Set (under this mutex) before the state is closed: `stop()` leaves it alone after.
    closed: bool,
}

/// The stop handle of one embedded VM. `#[repr(C)]` with `reason` first: the stoppable
/// library functions (stop.h) read that byte through the pointer in the extra space.
///
/// The executing thread starts and ends executions without taking the mutex (it owns
/// `epoch` and `active`); `stop()` takes it, so that it never arms a state that is being
/// closed. A stop that races with the end of an execution may leave the hook armed on an
/// idle state, or the reason set: the next execution clears the reason first, and a hook
/// that fires with no reason set removes itself.
#[repr(C)]
pub struct LuaStopper {
    /// 0 while nothing is to be stopped, else a `StopReason` as u8. Read by the hook and by
    /// the pattern matcher.
    reason: AtomicU8,
    /// An execution runs on the main state.
    active: AtomicBool,
    /// Number of the current (or last) execution; deadlines name the one they belong to.
    epoch: AtomicU64,
    main: AtomicPtr<ffi::lua_State>,
    /// Length of `shared.coroutines`, readable without the mutex.
    tracked: AtomicUsize,
    shared: Mutex<Shared>,
}

const TIMEOUT_MESSAGE: &[u8] = b"bioxen_vm: execution timed out\0";
const INTERRUPT_MESSAGE: &[u8] = b"bioxen_vm: execution interrupted\0";

impl LuaStopper {
    pub fn new() -> Self {
        LuaStopper {
            reason: AtomicU8::new(0),
            active: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            main: AtomicPtr::new(std::ptr::null_mut()),
            tracked: AtomicUsize::new(0),
            shared: Mutex::new(Shared {
                coroutines: Vec::new(),
                closed: false,
            }),
        }
    }

    /// Makes `main` find this stopper. Call once, before any coroutine exists.
    ///
    /// # Safety
    /// `main` must be a valid main thread that `self` outlives.
    pub unsafe fn attach(&self, main: *mut ffi::lua_State) {
        *(ffi::lua_getextraspace(main) as *mut *const LuaStopper) = self as *const LuaStopper;
        self.main.store(main, Release);
    }

    /// An execution starts on the main state; returns its epoch. Executing thread only.
    pub fn begin(&self) -> u64 {
        let epoch = self.epoch.load(Relaxed) + 1;
        self.epoch.store(epoch, Relaxed);
        self.reason.store(0, Relaxed);
        self.active.store(true, Release);
        epoch
    }

    /// The execution has returned to the host. Returns why it was stopped, if it was, and
    /// disarms the main state's hook.
    ///
    /// # Safety
    /// Must be called on the thread that executed, with the state alive.
    pub unsafe fn end(&self) -> Option<StopReason> {
        self.active.store(false, Release);
        if self.tracked.load(Relaxed) != 0 {
            // Resumes always leave (they run under lua_pcall); never keep a stale pointer.
            let mut shared = self.shared.lock();
            shared.coroutines.clear();
            self.tracked.store(0, Relaxed);
        }
        let reason = self.reason.load(Acquire);
        self.reason.store(0, Relaxed);
        ffi::lua_sethook(self.main.load(Relaxed), None, 0, 0);
        match reason {
            1 => Some(StopReason::Timeout),
            2 => Some(StopReason::Interrupt),
            _ => None,
        }
    }

    /// Arms the stop for good before the state is closed, so that finalizers run by
    /// `lua_close` (and coroutines they resume) cannot loop forever; after this, `stop()`
    /// never touches the state again.
    ///
    /// # Safety
    /// The state must be alive and not executing on another thread.
    pub unsafe fn arm_for_close(&self) {
        let mut shared = self.shared.lock();
        shared.closed = true;
        shared.coroutines.clear();
        self.reason.store(StopReason::Interrupt as u8, SeqCst);
        self.active.store(true, SeqCst);
        ffi::lua_sethook(
            self.main.load(Relaxed),
            Some(stop_hook),
            ffi::LUA_MASKCOUNT,
            1,
        );
    }

    fn enter(&self, co: *mut ffi::lua_State) {
        let mut shared = self.shared.lock();
        if self.active.load(Acquire) {
            shared.coroutines.push(StatePtr(co));
            self.tracked.store(shared.coroutines.len(), Relaxed);
            if self.reason.load(SeqCst) != 0 {
                // SAFETY: `co` is being resumed by the calling thread, so it is alive.
                unsafe { ffi::lua_sethook(co, Some(stop_hook), ffi::LUA_MASKCOUNT, 1) };
            }
        }
    }

    /// Arms the hook again on every running thread while a stop is pending (after code
    /// replaced it).
    fn rearm(&self) {
        let shared = self.shared.lock();
        if shared.closed || !self.active.load(Acquire) || self.reason.load(SeqCst) == 0 {
            return;
        }
        // SAFETY: as in `stop`: not closed, and the listed coroutines are being resumed.
        unsafe { arm(self.main.load(Acquire), &shared.coroutines) };
    }

    fn leave(&self, co: *mut ffi::lua_State) {
        let mut shared = self.shared.lock();
        if let Some(i) = shared.coroutines.iter().rposition(|s| s.0 == co) {
            shared.coroutines.remove(i);
            self.tracked.store(shared.coroutines.len(), Relaxed);
        }
    }
}

impl Stopper for LuaStopper {
    fn stop(&self, reason: StopReason, epoch: Option<u64>) -> bool {
        let shared = self.shared.lock();
        if shared.closed
            || !self.active.load(Acquire)
            || epoch.is_some_and(|e| e != self.epoch.load(Acquire))
        {
            return false;
        }
        // The first reason wins: a deadline that fires after an interrupt stays an interrupt.
        let _ = self
            .reason
            .compare_exchange(0, reason as u8, SeqCst, SeqCst);
        // SAFETY: the state is not closed (checked under the mutex that `arm_for_close`
        // takes before closing), and the coroutines listed are being resumed, so alive.
        unsafe { arm(self.main.load(Acquire), &shared.coroutines) };
        true
    }
}

/// Sets the stop hook on `main` and on `coroutines`.
///
/// # Safety
/// The states must be alive.
unsafe fn arm(main: *mut ffi::lua_State, coroutines: &[StatePtr]) {
    ffi::lua_sethook(main, Some(stop_hook), ffi::LUA_MASKCOUNT, 1);
    for s in coroutines {
        ffi::lua_sethook(s.0, Some(stop_hook), ffi::LUA_MASKCOUNT, 1);
    }
}

unsafe fn stopper_of(l: *mut ffi::lua_State) -> *const LuaStopper {
    *(ffi::lua_getextraspace(l) as *const *const LuaStopper)
}

/// Whether a stop is pending for the VM that `l` belongs to.
///
/// # Safety
/// `l` must be a thread of a state set up by [`LuaStopper::attach`].
pub(super) unsafe fn stop_pending(l: *mut ffi::lua_State) -> bool {
    let s = stopper_of(l);
    !s.is_null() && (*s).reason.load(SeqCst) != 0
}

/// The count hook: raises the stop error while a reason is set, else removes itself.
unsafe extern "C-unwind" fn stop_hook(l: *mut ffi::lua_State, _ar: *mut ffi::lua_Debug) {
    let s = stopper_of(l);
    if s.is_null() {
        ffi::lua_sethook(l, None, 0, 0);
        return;
    }
    let mut reason = (*s).reason.load(SeqCst);
    if reason == 0 {
        ffi::lua_sethook(l, None, 0, 0);
        // A stop may have armed this thread between the load and the disarm: look again.
        reason = (*s).reason.load(SeqCst);
        if reason == 0 {
            return;
        }
        ffi::lua_sethook(l, Some(stop_hook), ffi::LUA_MASKCOUNT, 1);
    }
    raise(l, reason)
}

/// Raises the stop error for `reason`.
unsafe fn raise(l: *mut ffi::lua_State, reason: u8) -> ! {
    let msg = if reason == StopReason::Timeout as u8 {
        TIMEOUT_MESSAGE
    } else {
        INTERRUPT_MESSAGE
    };
    ffi::lua_pushstring(l, msg.as_ptr().cast());
    ffi::lua_error(l)
}

/// `debug.sethook` replacement (trusted VMs): upvalue 1 is the original. Setting or
/// clearing a hook replaces the stop's own, on any thread; so when a stop is pending after
/// the original returns, its hook is armed again on every running thread and the stop
/// error raised.
pub unsafe extern "C-unwind" fn guarded_sethook(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, 0);
    let s = stopper_of(l);
    if !s.is_null() {
        let reason = (*s).reason.load(SeqCst);
        if reason != 0 {
            (*s).rearm();
            raise(l, reason);
        }
    }
    0
}

/// `coroutine.resume` / `coroutine.close` replacement: upvalue 1 is the original function.
/// Records the coroutine as running (so a stop reaches it) for the duration of the call.
pub unsafe extern "C-unwind" fn tracked_thread_call(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TTHREAD);
    let co = ffi::lua_tothread(l, 1);
    let s = stopper_of(l);
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    if !s.is_null() {
        (*s).enter(co);
    }
    let status = ffi::lua_pcall(l, n, ffi::LUA_MULTRET, 0);
    if !s.is_null() {
        (*s).leave(co);
    }
    if status != ffi::LUA_OK {
        ffi::lua_error(l);
    }
    ffi::lua_gettop(l)
}

/// `coroutine.wrap` replacement: upvalue 1 is `coroutine.create`, upvalue 2 the tracked
/// `coroutine.resume`. Behaves as Lua 5.4's `wrap`, including the position prefix added
/// to string errors.
pub unsafe extern "C-unwind" fn tracked_wrap(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 1, ffi::LUA_TFUNCTION);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_pushvalue(l, 1);
    ffi::lua_call(l, 1, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
    ffi::lua_pushcclosure(l, wrapped_call, 2);
    1
}

unsafe extern "C-unwind" fn wrapped_call(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2)); // resume
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1)); // the coroutine
    ffi::lua_rotate(l, 1, 2);
    ffi::lua_call(l, n + 1, ffi::LUA_MULTRET);
    if ffi::lua_toboolean(l, 1) != 0 {
        ffi::lua_remove(l, 1);
        return ffi::lua_gettop(l);
    }
    ffi::lua_settop(l, 2);
    if ffi::lua_type(l, 2) == ffi::LUA_TSTRING {
        ffi::luaL_where(l, 1);
        ffi::lua_insert(l, -2);
        ffi::lua_concat(l, 2);
    }
    ffi::lua_error(l)
}

/// `xpcall` replacement: upvalue 1 is the original. The message handler is wrapped so that
/// it is skipped while a stop is pending: Lua runs a handler with hooks off when the error
/// comes from the stop hook itself, so a looping handler could not be stopped otherwise.
/// Yields through `xpcall` keep working (`lua_callk`).
pub unsafe extern "C-unwind" fn guarded_xpcall(l: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(l, 2, ffi::LUA_TFUNCTION);
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, 2);
    ffi::lua_pushcclosure(l, guarded_handler, 1);
    ffi::lua_replace(l, 2);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_callk(l, n, ffi::LUA_MULTRET, 0, Some(all_results));
    all_results(l, ffi::LUA_OK, 0)
}

unsafe extern "C-unwind" fn all_results(
    l: *mut ffi::lua_State,
    _status: c_int,
    _ctx: ffi::lua_KContext,
) -> c_int {
    ffi::lua_gettop(l)
}

unsafe extern "C-unwind" fn guarded_handler(l: *mut ffi::lua_State) -> c_int {
    if stop_pending(l) {
        ffi::lua_settop(l, 1);
        return 1;
    }
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, 1);
    1
}
