//! Science code: plain data in, plain data out, no web or database types. Long work takes a
//! [`Cancel`] flag and reports to a [`Progress`], which the worker and `mljm run` both read.

/// `FromStr` and `Display` for an enum of unit variants by their serde names (the names a
/// config file uses), so that a flag and a config key spell a choice the same way; a wrong
/// name is refused with the `expected` list.
macro_rules! named_choices {
    ($t:ty, $expected:literal) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<$t, String> {
                serde_json::from_value(serde_json::Value::String(s.to_string()))
                    .map_err(|_| format!("{s:?}: expected {}", $expected))
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(s)) => f.pad(&s),
                    _ => Err(std::fmt::Error),
                }
            }
        }
    };
}

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

    /// A choice is spelt the same by a flag, a config key and what mljm prints.
    #[test]
    fn choices_parse_and_print_by_their_config_names() {
        use {active::Balance, demo::Rarity, features::Features, selection::Strategy};
        assert_eq!(
            "class_weights".parse::<Balance>(),
            Ok(Balance::ClassWeights)
        );
        assert_eq!("balanced".parse::<Strategy>(), Ok(Strategy::Balanced));
        assert_eq!("survey".parse::<Rarity>(), Ok(Rarity::Survey));
        assert_eq!("lines".parse::<Features>(), Ok(Features::Lines));
        assert_eq!(Balance::ClassWeights.to_string(), "class_weights");
        assert_eq!(format!("{:>9}|", Strategy::Bald), "     bald|");
        assert_eq!(
            "Lines".parse::<Features>(),
            Err("\"Lines\": expected scaled or lines".to_string())
        );
        let json: Features = serde_json::from_str("\"lines\"").unwrap();
        assert_eq!(json.to_string(), "lines");
    }

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
