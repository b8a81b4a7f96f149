//! One process-wide watchdog thread that fires deadlines.
//!
//! `schedule` registers "stop this execution at that instant"; `cancel` removes it when the
//! execution ends first. The thread sleeps until the earliest deadline and is only woken
//! when a new deadline is earlier than the one it sleeps towards, so a steady stream of
//! executions with timeouts costs two short critical sections each and no wake-ups.

use crate::vm::{StopReason, Stopper};
use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

struct Entry {
    target: Arc<dyn Stopper>,
    epoch: u64,
}

struct State {
    entries: BTreeMap<(Instant, u64), Entry>,
    next_id: u64,
    /// The instant the thread sleeps towards, `None` while it sleeps without a deadline.
    wake_at: Option<Instant>,
    started: bool,
}

struct Watchdog {
    state: Mutex<State>,
    cond: Condvar,
}

static WATCHDOG: Lazy<Watchdog> = Lazy::new(|| Watchdog {
    state: Mutex::new(State {
        entries: BTreeMap::new(),
        next_id: 0,
        wake_at: None,
        started: false,
    }),
    cond: Condvar::new(),
});

/// A scheduled deadline; pass it to [`cancel`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(Instant, u64);

/// Calls `target.stop(Timeout, Some(epoch))` at `deadline` unless cancelled first.
pub fn schedule(
    deadline: Instant,
    target: Arc<dyn Stopper>,
    epoch: u64,
) -> std::io::Result<Ticket> {
    let w = &*WATCHDOG;
    let mut s = w.state.lock();
    if !s.started {
        std::thread::Builder::new()
            .name("bioxen-vm-watchdog".into())
            .spawn(run)?;
        s.started = true;
    }
    s.next_id += 1;
    let key = (deadline, s.next_id);
    s.entries.insert(key, Entry { target, epoch });
    if s.wake_at.is_none_or(|w| deadline < w) {
        w.cond.notify_one();
    }
    Ok(Ticket(key.0, key.1))
}

/// Removes a deadline that has not fired.
pub fn cancel(t: Ticket) {
    WATCHDOG.state.lock().entries.remove(&(t.0, t.1));
}

fn run() {
    let w = &*WATCHDOG;
    let mut s = w.state.lock();
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = s.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        if !due.is_empty() {
            drop(s);
            for e in due {
                e.target.stop(StopReason::Timeout, Some(e.epoch));
            }
            s = w.state.lock();
            continue;
        }
        match s.entries.keys().next().map(|k| k.0) {
            Some(at) => {
                s.wake_at = Some(at);
                w.cond.wait_until(&mut s, at);
            }
            None => {
                s.wake_at = None;
                w.cond.wait(&mut s);
            }
        }
    }
}
