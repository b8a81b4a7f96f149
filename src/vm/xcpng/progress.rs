//! Deploy progress: named steps reported to an optional observer (and always logged at
//! info), which may ask for the deploy to be cancelled.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Called with each event (a JSON object, see [`Event`]); returns `false` to cancel the
/// deploy. Called on the deploying thread.
pub type Observer = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// How often a waiting step reports (so that an observer can cancel while nothing moves).
pub const TICK: Duration = Duration::from_millis(250);

/// What a deploy reports.
pub struct Progress {
    observer: Option<Observer>,
    deploy_id: String,
    vm_name: String,
    step: &'static str,
    step_started: Instant,
    started: Instant,
    last_tick: Instant,
    cancelled: bool,
    last_progress: f64,
    /// (step, seconds) of every finished step.
    pub timings: Vec<(&'static str, f64)>,
}

impl Progress {
    pub fn new(observer: Option<Observer>, deploy_id: &str, vm_name: &str) -> Progress {
        let now = Instant::now();
        Progress {
            observer,
            deploy_id: deploy_id.to_string(),
            vm_name: vm_name.to_string(),
            step: "",
            step_started: now,
            started: now,
            last_tick: now,
            cancelled: false,
            last_progress: -1.0,
            timings: Vec::new(),
        }
    }

    fn emit(&mut self, state: &str, progress: Option<f64>, message: &str) {
        let ev = json!({
            "deploy_id": self.deploy_id,
            "vm_name": self.vm_name,
            "step": self.step,
            "state": state,
            "progress": progress,
            "elapsed": self.step_started.elapsed().as_secs_f64(),
            "message": message,
        });
        if let Some(o) = &self.observer {
            let o = o.clone();
            // The observer is the caller's code: a panic in it is a "cancel".
            let go_on =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| o(&ev))).unwrap_or(false);
            if !go_on && !self.cancelled {
                log::info!(target: "bioxen_vm::xcpng", "deploy {} ({}): cancelled by the progress callback during '{}'", self.deploy_id, self.vm_name, self.step);
                self.cancelled = true;
            }
        }
    }

    /// A step begins.
    pub fn start(&mut self, step: &'static str, message: &str) {
        self.step = step;
        self.step_started = Instant::now();
        self.last_progress = -1.0;
        log::info!(target: "bioxen_vm::xcpng", "deploy {} ({}): {step}{}{message}", self.deploy_id, self.vm_name, if message.is_empty() { "" } else { ": " });
        self.emit("start", None, message);
    }

    /// The current step ended well.
    pub fn done(&mut self, message: &str) {
        let secs = self.step_started.elapsed().as_secs_f64();
        self.timings.push((self.step, secs));
        log::info!(target: "bioxen_vm::xcpng", "deploy {} ({}): {} done in {secs:.3} s{}{message}", self.deploy_id, self.vm_name, self.step, if message.is_empty() { "" } else { ": " });
        self.emit("done", Some(1.0), message);
    }

    /// The current step failed (the deploy is being torn down).
    pub fn failed(&mut self, message: &str) {
        log::info!(target: "bioxen_vm::xcpng", "deploy {} ({}): {} failed: {message}", self.deploy_id, self.vm_name, self.step);
        self.emit("failed", None, message);
    }

    /// XAPI reported task progress (0..1) for the current step: passed on when it
    /// changed, else a [`Progress::tick`].
    pub fn task(&mut self, p: f64) {
        if p == self.last_progress {
            self.tick("");
            return;
        }
        self.last_progress = p;
        log::debug!(target: "bioxen_vm::xcpng", "deploy {}: {} {:.0}%", self.deploy_id, self.step, p * 100.0);
        self.emit("progress", Some(p), "");
    }

    /// A waiting step is still waiting (reported every [`TICK`], not logged); whether the
    /// deploy was cancelled.
    pub fn tick(&mut self, message: &str) -> bool {
        if self.observer.is_some() && self.last_tick.elapsed() >= TICK {
            self.last_tick = Instant::now();
            self.emit("wait", None, message);
        }
        self.cancelled
    }

    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    pub fn step(&self) -> &'static str {
        self.step
    }

    pub fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
