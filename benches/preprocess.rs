//! Preprocessing throughput: `mljm run DATA_PREPROCESSING` on `mljm demo` surveys of 10,000 and
//! 100,000 spectra, beside `cat` of the same bytes and, when `MLJM_REF_PYTHON` names the
//! reference venv's python, the original pipeline (`../shared/reference/ref_preprocess.py`).
//! Medians of several runs; peak RSS of each run from wait4.
//!
//!     cargo bench --bench preprocess
//!     MLJM_BENCH_SIZES=10000 MLJM_BENCH_RUNS=5 MLJM_REF_PYTHON=/var/tmp/mljm-ref-venv/bin/python cargo bench --bench preprocess
//!
//! Surveys are written once under `MLJM_BENCH_DIR` (default /var/tmp/mljm-bench) and reused.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

#[path = "../tests/support/peak_rss.rs"]
mod peak_rss;

/// Runs `cmd`, returning (wall seconds, peak RSS in MiB); panics on failure.
fn measure(cmd: &mut Command) -> (f64, f64) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let (code, wall, rss) = peak_rss::run_peak_rss(cmd, log.path());
    if code != 0 {
        let err = std::fs::read_to_string(log.path()).unwrap_or_default();
        panic!("{cmd:?} failed ({code}): {err}");
    }
    (wall, rss)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn survey(root: &Path, n: usize) -> PathBuf {
    let data = root.join(format!("demo-{n}"));
    let done = data.join("files/labels.csv");
    if !done.exists() {
        eprintln!("writing {n} demo spectra under {} (once)", data.display());
        let (s, _) = measure(
            Command::new(env!("CARGO_BIN_EXE_mljm"))
                .args(["demo", "--seed", "11", "--n", &n.to_string(), "--data-dir"])
                .arg(&data),
        );
        eprintln!("  {s:.1} s");
    }
    data
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let sizes: Vec<usize> = env_or("MLJM_BENCH_SIZES", "10000,100000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = env_or("MLJM_BENCH_RUNS", "3").parse().unwrap_or(3).max(1);
    let root = PathBuf::from(env_or("MLJM_BENCH_DIR", "/var/tmp/mljm-bench"));
    let reference = std::env::var("MLJM_REF_PYTHON").ok();
    let ref_script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/ref_preprocess.py");
    let out = tempfile::tempdir().expect("temp dir");
    println!(
        "{:>8} {:>9} {:>12} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "spectra", "mljm s", "spectra/s", "peak MiB", "cat s", "cat -P2 s", "python s", "speed-up"
    );
    for n in sizes {
        let data = survey(&root, n);
        let spectra = data.join("spectra");
        let cat = |parallel: &str| {
            let script = format!(
                "find '{}' -name '*.fits' -print0 | xargs -0 -P {parallel} -n 1000 cat > /dev/null",
                spectra.display()
            );
            median(
                (0..runs)
                    .map(|_| measure(Command::new("sh").args(["-c", &script])).0)
                    .collect(),
            )
        };
        let (cat1, cat2) = (cat("1"), cat("2"));
        // The original's whole-range grid, for both pipelines.
        let config = serde_json::json!({"data_dir_path": spectra, "wave_start_point": 3800, "wave_end_point": 9000, "wave_point_count": 600});
        let cfg = out.path().join("prep.json");
        std::fs::write(&cfg, config.to_string()).expect("writes");
        let mut walls = Vec::new();
        let mut peak: f64 = 0.0;
        for i in 0..runs {
            let dir = out.path().join(format!("run-{n}-{i}"));
            let (wall, rss) = measure(
                Command::new(env!("CARGO_BIN_EXE_mljm"))
                    .args(["run", "DATA_PREPROCESSING", "--config"])
                    .arg(&cfg)
                    .arg("--out")
                    .arg(&dir),
            );
            let _ = std::fs::remove_dir_all(&dir);
            walls.push(wall);
            peak = peak.max(rss);
        }
        let ours = median(walls);
        let (python, ratio) = match &reference {
            Some(py) if ref_script.exists() => {
                let ref_runs = if n > 20_000 { 1 } else { runs };
                let t = median(
                    (0..ref_runs)
                        .map(|_| {
                            measure(Command::new(py).arg(&ref_script).arg(&cfg).arg(out.path())).0
                        })
                        .collect(),
                );
                (format!("{t:.2}"), format!("{:.1}x", t / ours))
            }
            _ => ("-".into(), "-".into()),
        };
        println!(
            "{n:>8} {ours:>9.3} {:>12.0} {peak:>10.1} {cat1:>9.3} {cat2:>9.3} {python:>10} {ratio:>9}",
            n as f64 / ours
        );
    }
}
