//! Science code: plain data in, plain data out, no web or database types. Long work takes a
//! [`Cancel`] flag and reports to a [`Progress`], which the worker and `mljm run` both read.

pub mod active;
pub mod augment;
pub mod classify;
pub mod cnn;
pub mod demo;
pub mod features;
pub mod fits;
pub mod h5;
pub mod lamost;
pub mod names;
pub mod plot;
pub mod pool;
pub mod preprocess;
pub mod scan;
pub mod selection;
pub mod smote;
pub mod tsne;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

/// A stop flag checked in every compute loop (set by ABORT).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Done/total counters and the name of the current step.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<ProgressInner>);

#[derive(Debug, Default)]
struct ProgressInner {
    done: AtomicU64,
    total: AtomicU64,
    /// The step's name and when it began.
    step: Mutex<(String, Option<Instant>)>,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn start_step(&self, step: &str, total: u64) {
        if let Ok(mut s) = self.0.step.lock() {
            *s = (step.to_string(), Some(Instant::now()));
        }
        self.0.total.store(total, Ordering::Relaxed);
        self.0.done.store(0, Ordering::Relaxed);
    }

    /// The total, when it is known only after the step began (counted alongside).
    pub fn set_total(&self, total: u64) {
        self.0.total.store(total, Ordering::Relaxed);
    }

    pub fn advance(&self, n: u64) {
        self.0.done.fetch_add(n, Ordering::Relaxed);
    }

    /// "41,000/s, about 71 s left" for the current step, once a second of it has passed
    /// and something is done.
    pub fn pace(&self) -> Option<String> {
        let started = self.0.step.lock().ok()?.1?;
        let (_, done, total) = self.snapshot();
        let elapsed = started.elapsed();
        if elapsed.as_secs_f64() < 1.0 || done == 0 {
            return None;
        }
        Some(scan::pace(done, total, elapsed))
    }

    /// (step, done, total)
    pub fn snapshot(&self) -> (String, u64, u64) {
        let step = self.0.step.lock().map(|s| s.0.clone()).unwrap_or_default();
        (
            step,
            self.0.done.load(Ordering::Relaxed),
            self.0.total.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_sees_the_cancellation() {
        let c = Cancel::new();
        let seen = c.clone();
        c.cancel();
        assert!(seen.is_cancelled());
    }

    #[test]
    fn progress_counts_within_a_step() {
        let p = Progress::new();
        p.start_step("read", 10);
        p.advance(3);
        assert_eq!(p.snapshot(), ("read".to_string(), 3, 10));
    }
}
