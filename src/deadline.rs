//! Deadlines made from callers' numbers. Every wait and every execution limit of the
//! library goes through [`Deadline::after`] or [`bounded`], so a timeout of any size
//! (`UINT64_MAX` milliseconds, `Duration::MAX`) gives a deadline or "never", never an
//! overflow.

use parking_lot::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

/// Timeouts this long or longer mean "no limit". A century is past any wait a caller
/// means to end, and `Instant::now() + t` cannot overflow below it on any platform.
pub const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `timeout`, unless it is at or past the [`HORIZON`]: then `None` (no limit).
pub fn bounded(timeout: Option<Duration>) -> Option<Duration> {
    timeout.filter(|t| *t < HORIZON)
}

/// The instant a wait ends, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// A deadline that never passes.
    pub const NEVER: Deadline = Deadline(None);

    /// `timeout` from now; never for `None` or a timeout at or past the horizon.
    pub fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(bounded(timeout).and_then(|t| Instant::now().checked_add(t)))
    }

    /// The instant, `None` for never.
    pub fn instant(self) -> Option<Instant> {
        self.0
    }

    /// Time left (zero once passed); `None` for never.
    pub fn remaining(self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// Waits on `cond` (releasing `guard`) until notified or until the deadline; whether
    /// the deadline has passed.
    pub fn wait<T: ?Sized>(self, cond: &Condvar, guard: &mut MutexGuard<'_, T>) -> bool {
        match self.0 {
            Some(d) => cond.wait_until(guard, d).timed_out(),
            None => {
                cond.wait(guard);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_mean_never_and_small_ones_a_deadline() {
        assert_eq!(Deadline::after(None), Deadline::NEVER);
        assert_eq!(Deadline::after(Some(Duration::MAX)), Deadline::NEVER);
        assert_eq!(
            Deadline::after(Some(Duration::from_millis(u64::MAX))),
            Deadline::NEVER
        );
        assert_eq!(Deadline::after(Some(HORIZON)), Deadline::NEVER);
        let d = Deadline::after(Some(Duration::from_secs(60)));
        assert!(!d.passed());
        assert!(d.remaining().is_some_and(|r| r <= Duration::from_secs(60)));
        let z = Deadline::after(Some(Duration::ZERO));
        assert!(z.passed());
        assert_eq!(z.remaining(), Some(Duration::ZERO));
        assert_eq!(bounded(Some(Duration::MAX)), None);
        assert_eq!(
            bounded(Some(Duration::from_millis(1))),
            Some(Duration::from_millis(1))
        );
    }
}
