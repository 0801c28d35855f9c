//! Draws a [`Progress`] on stderr while work runs: an indicatif bar on a terminal, plain
//! lines (start, every ten seconds, finish) otherwise, so logs of batch runs stay readable.

use std::{
    io::IsTerminal,
    sync::Arc,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::science::Progress;

/// Prints one line to stderr without tearing the bar.
#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    pub fn new() -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
            let style = ProgressStyle::with_template(
                "{msg:>16} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Reporter { bar }
    }

    pub fn line(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// A line sink for job logs.
    pub fn sink(&self) -> Arc<dyn Fn(&str) + Send + Sync> {
        let me = self.clone();
        Arc::new(move |msg: &str| me.line(msg))
    }

    /// Redraws from `progress` until `done` resolves.
    pub async fn follow<T>(
        &self,
        progress: &Progress,
        done: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(done);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let (mut last_line, mut step_started) = (Instant::now(), Instant::now());
        let mut last_step = String::new();
        loop {
            tokio::select! {
                out = &mut done => {
                    self.draw(progress, &mut last_step, &mut step_started, true);
                    if let Some(bar) = &self.bar { bar.finish_and_clear(); }
                    return out;
                }
                _ = tick.tick() => {
                    let plain_due = last_line.elapsed() >= Duration::from_secs(10);
                    if self.draw(progress, &mut last_step, &mut step_started, plain_due) {
                        last_line = Instant::now();
                    }
                }
            }
        }
    }

    /// Returns whether a plain line was printed.
    fn draw(
        &self,
        progress: &Progress,
        last_step: &mut String,
        step_started: &mut Instant,
        plain_due: bool,
    ) -> bool {
        let (step, done, total) = progress.snapshot();
        if *last_step != step {
            *step_started = Instant::now();
        }
        if let Some(bar) = &self.bar {
            if *last_step != step {
                bar.reset();
                bar.set_message(step.clone());
                *last_step = step;
            }
            bar.set_length(total);
            bar.set_position(done);
            return false;
        }
        if step.is_empty() || (!plain_due && *last_step == step) {
            return false;
        }
        *last_step = step.clone();
        let rate = done as f64 / step_started.elapsed().as_secs_f64().max(1e-3);
        let left = match (rate > 0.0, total > done) {
            (true, true) => format!(", about {:.0} s left", (total - done) as f64 / rate),
            _ => String::new(),
        };
        eprintln!("{step}: {done}/{total} ({rate:.0}/s{left})");
        true
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}
