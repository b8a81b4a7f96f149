//! Every call runs under a watch: its deadline is its own budget (its timeout, or what the
//! call may take) plus what it may have to wait behind, plus a margin. A monitor thread
//! checks the calls in flight and fails the case with the call (and the sequence) that
//! overran; the call itself may never return, so the case cannot wait for it.
//!
//! What a call may wait behind is kept in a ledger: each execution that occupies a VM
//! (a call, a queued job, queued session input) and each job callback (which holds up a
//! worker) is an entry with its own budget, from when it is known until it is over. A call
//! that waits for a VM is allowed its own budget plus the budgets of every entry on that VM
//! that existed during its wait.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What occupies or holds up a VM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A standalone VM (its handle).
    Vm(u64),
    /// A manager's VM (manager handle, id).
    Managed(u64, u8),
    /// A job callback running on a worker.
    Callback,
}

/// What a call waits behind, besides its own budget.
#[derive(Clone, Debug)]
pub enum Behind {
    Nothing,
    /// Everything on this VM.
    Vm(Key),
    /// Job callbacks only (calls that may run them inline: frees, cancels).
    Callbacks,
    /// Every entry of the case (waits for a job, which waits for its VM and a worker).
    All,
    /// Twice the longest entry on this VM: a call documented to wait
    /// past its timeout by at most one evaluation, which may itself wait for the VM.
    Longest(Key),
}

struct Call {
    case: u64,
    what: String,
    start: Instant,
    budget: Duration,
    margin: Duration,
    behind: Behind,
    /// Budgets of the entries this call may have waited behind.
    extra: Duration,
    /// The case's failure sink.
    sink: Arc<Sink>,
}

struct Entry {
    case: u64,
    key: Key,
    budget: Duration,
    since: Instant,
}

#[derive(Default)]
struct State {
    calls: HashMap<u64, Call>,
    entries: HashMap<u64, Entry>,
}

/// Where a case's failures go (the first one is the one reported).
#[derive(Default)]
pub struct Sink {
    pub failures: Mutex<Vec<String>>,
    /// Set when a call overran: the case stops waiting for its threads.
    pub hung: std::sync::atomic::AtomicBool,
}

/// `BIOXEN_FUZZ_IGNORE`: failures whose text holds one of these comma-separated pieces are
/// dropped (to look past a bug already reported while it is being fixed).
static IGNORE: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    std::env::var("BIOXEN_FUZZ_IGNORE")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
});

/// How many failures `BIOXEN_FUZZ_IGNORE` dropped.
pub static IGNORED: AtomicU64 = AtomicU64::new(0);

impl Sink {
    pub fn fail(&self, msg: String) {
        if IGNORE.iter().any(|i| msg.contains(i.as_str())) {
            IGNORED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut f = self.failures.lock();
        if f.len() < 20 {
            f.push(msg);
        }
    }
}

pub struct Monitor {
    state: Mutex<State>,
    next: AtomicU64,
    /// Largest overshoot seen past the own budget of a call that waited behind nothing,
    /// and that call (a statistic).
    pub worst: Mutex<(Duration, String)>,
}

static MONITOR: OnceLock<&'static Monitor> = OnceLock::new();

fn applies(behind: &Behind, key: &Key) -> bool {
    match behind {
        Behind::Nothing => false,
        // A callback holds up a worker, never a VM.
        Behind::Vm(k) | Behind::Longest(k) => k == key,
        Behind::Callbacks => *key == Key::Callback,
        Behind::All => true,
    }
}

/// What an entry of `budget` adds to a call's allowance, given what it was allowed so far.
fn add(behind: &Behind, extra: Duration, budget: Duration) -> Duration {
    match behind {
        Behind::Longest(_) => extra.max(2 * budget),
        _ => extra + budget,
    }
}

impl Monitor {
    /// The process's monitor (started on first use).
    pub fn get() -> &'static Monitor {
        MONITOR.get_or_init(|| {
            let m: &'static Monitor = Box::leak(Box::new(Monitor {
                state: Mutex::new(State::default()),
                next: AtomicU64::new(1),
                worst: Mutex::new((Duration::ZERO, String::new())),
            }));
            std::thread::Builder::new()
                .name("fuzz-monitor".into())
                .spawn(move || m.run())
                .expect("monitor thread");
            m
        })
    }

    fn run(&self) {
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            let mut s = self.state.lock();
            let mut overran = Vec::new();
            for (id, c) in &s.calls {
                let allowed = c.budget + c.extra + c.margin;
                let elapsed = now - c.start;
                if elapsed > allowed {
                    overran.push(*id);
                }
            }
            for id in overran {
                if let Some(c) = s.calls.remove(&id) {
                    let elapsed = now - c.start;
                    c.sink.fail(format!(
                        "HANG: {} has not returned after {:?}; allowed {:?} (own budget {:?} \
                         + {:?} behind other work on its VM + margin {:?})",
                        c.what,
                        elapsed,
                        c.budget + c.extra + c.margin,
                        c.budget,
                        c.extra,
                        c.margin
                    ));
                    c.sink.hung.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Adds a ledger entry; every call in flight that waits behind `key` may wait for it
    /// (but the call `own`, whose own work the entry is).
    pub fn occupy(&self, case: u64, key: Key, budget: Duration, own: Option<&Watch>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let own = own.map(|w| w.id);
        let mut s = self.state.lock();
        for (cid, c) in s.calls.iter_mut() {
            if c.case == case && applies(&c.behind, &key) && Some(*cid) != own {
                c.extra = add(&c.behind, c.extra, budget);
            }
        }
        s.entries.insert(
            id,
            Entry {
                case,
                key,
                budget,
                since: Instant::now(),
            },
        );
        id
    }

    pub fn release(&self, entry: u64) {
        self.state.lock().entries.remove(&entry);
    }

    /// Releases the entries of `case` on `key` made before `before` (a session's input
    /// seen to be done).
    pub fn release_before(&self, case: u64, key: &Key, before: Instant) {
        self.state
            .lock()
            .entries
            .retain(|_, e| !(e.case == case && e.key == *key && e.since < before));
    }

    /// Drops everything the case left (after its end).
    pub fn forget_case(&self, case: u64) {
        let mut s = self.state.lock();
        s.entries.retain(|_, e| e.case != case);
        s.calls.retain(|_, c| c.case != case);
    }

    /// Starts watching a call; the guard ends the watch.
    #[allow(clippy::too_many_arguments)]
    pub fn watch(
        &'static self,
        case: u64,
        sink: &Arc<Sink>,
        what: String,
        budget: Duration,
        behind: Behind,
        margin: Duration,
    ) -> Watch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state.lock();
        let extra = s
            .entries
            .values()
            .filter(|e| e.case == case && applies(&behind, &e.key))
            .fold(Duration::ZERO, |x, e| add(&behind, x, e.budget));
        s.calls.insert(
            id,
            Call {
                case,
                what,
                start: Instant::now(),
                budget,
                margin,
                behind,
                extra,
                sink: sink.clone(),
            },
        );
        Watch {
            monitor: self,
            id,
            start: Instant::now(),
            budget,
        }
    }
}

pub struct Watch {
    monitor: &'static Monitor,
    id: u64,
    start: Instant,
    budget: Duration,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let over = self.start.elapsed().saturating_sub(self.budget);
        let call = self.monitor.state.lock().calls.remove(&self.id);
        // Only a call that waited behind nothing says how late the library itself was.
        if let Some(c) = call.filter(|c| c.extra.is_zero()) {
            let mut w = self.monitor.worst.lock();
            if over > w.0 {
                *w = (over, c.what);
            }
        }
    }
}
