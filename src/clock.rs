//! Execution durations. A TSC-based clock (quanta: it calibrates the TSC against the OS
//! clock once and falls back to the OS clock where the TSC cannot be trusted): a reading is
//! about 10 ns here against 23 ns for `std::time::Instant`, and every execution takes two.

use once_cell::sync::Lazy;
use std::time::Duration;

static CLOCK: Lazy<quanta::Clock> = Lazy::new(quanta::Clock::new);

/// A raw reading; only differences of readings mean anything.
#[derive(Clone, Copy, Debug)]
pub struct Stamp(u64);

/// Calibrates the clock now (about 0.7 ms, once per process) instead of in an execution.
pub fn warm_up() {
    Lazy::force(&CLOCK);
}

pub fn now() -> Stamp {
    Stamp(CLOCK.raw())
}

/// Time since `start`.
pub fn since(start: Stamp) -> Duration {
    CLOCK.delta(start.0, CLOCK.raw())
}
