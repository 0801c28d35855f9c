//! The active-learning CNN on this machine's CPU (or GPU with --features cuda): seconds per
//! training epoch for 1,000 × 600 spectra at batch 64 (median of the epochs after the first)
//! and prediction spectra/s on 10,000, beside the original's Keras model when
//! `MLJM_REF_PYTHON` names the reference venv's python (../shared/reference/tf_cnn_bench.py).
//!
//!     cargo bench --bench cnn
//!     MLJM_REF_PYTHON=/var/tmp/mljm-ref-venv/bin/python MLJM_BENCH_RUNS=5 cargo bench --bench cnn

use std::{path::Path, process::Command, time::Instant};

use mljm::science::{
    Cancel, Progress,
    cnn::{self, Cnn, TrainOptions},
};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

/// As in the mljm binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn random_rows(n: usize, points: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..points)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect()
        })
        .collect()
}

fn main() {
    let epochs: usize = std::env::var("MLJM_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
        .max(2);
    let device = cnn::device(&std::env::var("MLJM_BENCH_DEVICE").unwrap_or_else(|_| "auto".into()))
        .expect("device");
    let (n, points) = (1000, 600);
    let rows = random_rows(n, points, 0);
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let model = Cnn::new(points, 3, &device, 0).expect("model");
    let opts = TrainOptions {
        epochs,
        batch_size: 64,
        min_delta: 0.0,
        patience: usize::MAX,
        learning_rate: 1e-3,
        seed: 0,
    };
    let mut times = Vec::new();
    cnn::train(
        &model,
        &refs,
        &labels,
        &opts,
        &Cancel::new(),
        &Progress::new(),
        |e| {
            eprintln!("epoch {}: {:.2} s, loss {:.4}", e.epoch, e.seconds, e.loss);
            times.push(e.seconds)
        },
    )
    .expect("training");
    let epoch_s = median(times[1..].to_vec());
    let pool = random_rows(10_000, points, 1);
    let pool_refs: Vec<&[f64]> = pool.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let batch = if device.is_cpu() { 256 } else { 4096 };
    model
        .predict(&pool_refs, batch, &Cancel::new())
        .expect("prediction");
    let predict_rate = 10_000.0 / started.elapsed().as_secs_f64();
    println!(
        "device {device:?}: {epoch_s:.2} s/epoch (1000 × 600, batch 64), predict {predict_rate:.0} spectra/s (10,000, batch {batch})"
    );

    if let Ok(py) = std::env::var("MLJM_REF_PYTHON") {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/tf_cnn_bench.py");
        match Command::new(py).arg(&script).args(["1000", "600"]).output() {
            Ok(o) if o.status.success() => {
                let out = String::from_utf8_lossy(&o.stdout);
                let tf_epochs: Vec<f64> = out
                    .lines()
                    .filter(|l| l.starts_with("epoch"))
                    .filter_map(|l| l.split(": ").nth(1)?.split('s').next()?.parse().ok())
                    .collect();
                let tf_predict: Option<f64> = out
                    .lines()
                    .find(|l| l.starts_with("predict"))
                    .and_then(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok());
                let tf_epoch = median(tf_epochs[1..].to_vec());
                println!(
                    "keras (TensorFlow, same CPU): {tf_epoch:.2} s/epoch, predict {:.0} spectra/s",
                    tf_predict.unwrap_or(f64::NAN)
                );
                println!(
                    "ratio mljm/keras: epoch {:.2}x the time, prediction {:.2}x the rate",
                    epoch_s / tf_epoch,
                    predict_rate / tf_predict.unwrap_or(f64::NAN)
                );
            }
            Ok(o) => eprintln!(
                "tf_cnn_bench.py failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run {}: {e}", script.display()),
        }
    }
}
