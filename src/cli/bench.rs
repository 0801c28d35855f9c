//! `mljm bench-al`: one ACTIVE_ML iteration (a fixed small training set, fixed epochs) on
//! survey-sized demo pools, each run as `mljm run` in a child process so that its wall time,
//! peak memory and bytes written are its own. With `--keras-python`, the original's Keras
//! CNN predicts the same pool beside it. Runs on a GPU host too: it needs only the binary.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::Usage;
use crate::science::{
    Cancel, Progress,
    demo::{self, POOL_WAVE},
    h5::{SpectraSet, write_spectra},
    preprocess::resample::linspace,
    scan::thousands,
};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Pool sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub sizes: Vec<usize>,
    /// Points per spectrum, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "140,600")]
    pub points: Vec<usize>,
    /// Folder for the pools (kept and reused: they take a while to write) and the runs.
    #[arg(long, default_value = "mljm-bench")]
    pub work: PathBuf,
    /// Labelled spectra to train on (the pool's first ones, with their true classes).
    #[arg(long, default_value_t = 350)]
    pub train: usize,
    /// Training epochs (no early stop).
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,
    /// Where the CNN runs: auto, cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Spectra per prediction batch (ACTIVE_ML's batch_size_predict).
    #[arg(long, default_value_t = 16384)]
    pub batch: u64,
    /// A python with tensorflow and h5py (../shared/reference/setup.sh makes one): the
    /// original's Keras CNN then predicts each pool too.
    #[arg(long)]
    pub keras_python: Option<PathBuf>,
    /// Runs of each case; the table shows the median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Also classify each pool with the iteration's model (CLASSIFY, as `mljm run` in a
    /// child): its wall time, spectra/s and peak memory get a table of their own.
    #[arg(long)]
    pub classify: bool,
}

const KERAS_SCRIPT: &str = include_str!("../../benches/keras_pool.py");

/// One iteration's measurements.
struct Measured {
    wall_s: f64,
    peak_rss: u64,
    metrics: Value,
    bytes_written: u64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.sizes.iter().any(|&n| n <= args.train) {
        return Err(Usage(format!(
            "every pool size must exceed --train {} (the labelled spectra come from the pool)",
            args.train
        ))
        .into());
    }
    tokio::task::spawn_blocking(move || bench(&args)).await?
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("cannot create {}", args.work.display()))?;
    let work = std::path::absolute(&args.work)?;
    let exe = std::env::current_exe()?;
    // Each row as soon as it is measured: a long run stopped half-way keeps what it found.
    let mut table = Vec::new();
    table.push(format!(
        "{:>9} {:>6} {:>8} {:>8} {:>9} {:>8} {:>12} {:>10} {:>11} {:>8} {:>12} {:>7}",
        "pool",
        "points",
        "wall s",
        "train s",
        "predict s",
        "write s",
        "predicted/s",
        "peak RSS",
        "written",
        "B/spec",
        "keras/s",
        "ratio"
    ));
    println!("{}", table[0]);
    let mut classified = Vec::new();
    for &points in &args.points {
        for &n in &args.sizes {
            let pool = ensure_pool(&work, n, points)?;
            let case = work.join(format!("case-{n}-{points}"));
            let config = write_case(&case, &pool, points, args)?;
            let mut runs = Vec::new();
            for r in 0..args.runs.max(1) {
                let out = case.join(format!("run-{r}"));
                let _ = std::fs::remove_dir_all(&out);
                runs.push(iteration(&exe, &config, &out, &args.device)?);
            }
            runs.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
            let m = runs.swap_remove(runs.len() / 2);
            let keras = match &args.keras_python {
                Some(py) => Some(keras(py, &pool, &work)?),
                None => None,
            };
            let row = format_row(n, points, &m, keras);
            println!("{row}");
            table.push(row);
            if args.classify {
                let out = case.join("run-0");
                let row = classify_row(&exe, &case, &out, &pool, (n, points), args)?;
                println!("classify: {row}");
                classified.push(row);
            }
        }
    }
    println!("\n{}", table.join("\n"));
    if !classified.is_empty() {
        println!(
            "\n{:>9} {:>6} {:>8} {:>12} {:>10} {:>11}",
            "pool", "points", "wall s", "classified/s", "peak RSS", "candidates"
        );
        for row in &classified {
            println!("{row}");
        }
    }
    Ok(())
}

/// `mljm run CLASSIFY` with the model of the iteration in `iteration` over `pool`: a row of
/// (pool, points, wall s, spectra/s, peak RSS, candidates).
fn classify_row(
    exe: &Path,
    case: &Path,
    iteration: &Path,
    pool: &Path,
    (n, points): (usize, usize),
    args: &BenchArgs,
) -> anyhow::Result<String> {
    let config = case.join("classify.json");
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&json!({
            "model_path": iteration, "pool_data_path": pool, "min_probability": 0.5,
            "batch_size_predict": args.batch
        }))?,
    )?;
    let out = case.join("classified");
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    let child = crate::child::no_inherit(&mut Command::new(exe))
        .args(["run", "CLASSIFY", "--device", &args.device, "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .spawn()
        .context("cannot start mljm run")?;
    let (status, peak_rss) = wait_with_rusage(child.id())?;
    let wall_s = t.elapsed().as_secs_f64();
    if status != 0 {
        bail!(
            "mljm run CLASSIFY failed (status {status}); see {}",
            out.join("log.txt").display()
        );
    }
    let candidates = std::fs::read_to_string(out.join("candidates.csv"))?
        .lines()
        .count()
        .saturating_sub(1);
    Ok(format!(
        "{:>9} {:>6} {:>8.1} {:>12} {:>6} MiB {:>11}",
        thousands(n),
        points,
        wall_s,
        thousands((n as f64 / wall_s) as usize),
        peak_rss >> 20,
        thousands(candidates)
    ))
}

fn format_row(n: usize, points: usize, m: &Measured, keras: Option<f64>) -> String {
    let get = |k: &str| m.metrics[k].as_f64().unwrap_or(f64::NAN);
    let rate = get("pool_spectra") / get("predict_s");
    format!(
        "{:>9} {:>6} {:>8.1} {:>8.1} {:>9.1} {:>8.2} {:>12} {:>6} MiB {:>7} KiB {:>8.1} {:>12} {:>7}",
        thousands(n),
        points,
        m.wall_s,
        get("train_s"),
        get("predict_s"),
        get("write_s"),
        thousands(rate as usize),
        m.peak_rss >> 20,
        m.bytes_written >> 10,
        m.bytes_written as f64 / n as f64,
        keras.map_or("-".into(), |k| thousands(k as usize)),
        keras.map_or("-".into(), |k| format!("{:.2}×", rate / k)),
    )
}

/// `work/pool-N-P/result.h5`, written once (a marker file says it is complete).
fn ensure_pool(work: &Path, n: usize, points: usize) -> anyhow::Result<PathBuf> {
    let dir = work.join(format!("pool-{n}-{points}"));
    let (pool, done) = (dir.join("result.h5"), dir.join("complete"));
    if done.exists() {
        return Ok(pool);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "writing a demo pool of {} spectra × {points} points",
        thousands(n)
    );
    let t = Instant::now();
    demo::write_pool(
        &pool,
        n,
        points,
        1,
        &Cancel::new(),
        &Progress::new(),
        |_, _| Ok(()),
    )?;
    eprintln!("  in {:.1} s", t.elapsed().as_secs_f64());
    std::fs::write(&done, b"")?;
    Ok(pool)
}

/// The iteration-1 config of a case: the pool's first `train` spectra as the training set.
fn write_case(
    case: &Path,
    pool: &Path,
    points: usize,
    args: &BenchArgs,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(case)?;
    let grid = linspace(POOL_WAVE.0, POOL_WAVE.1, points);
    let mut fluxes = ndarray::Array2::zeros((args.train, points));
    let mut filenames = Vec::new();
    let mut labels = Vec::new();
    for i in 0..args.train {
        let mut row = vec![0.0; points];
        let (name, class) = demo::pool_row(1, i, &grid, &mut row);
        fluxes.row_mut(i).assign(&ndarray::ArrayView1::from(&row));
        filenames.push(name);
        labels.push(class as i64);
    }
    let training = case.join("training_data.h5");
    write_spectra(
        &training,
        &SpectraSet {
            filenames,
            wave: grid,
            fluxes,
            labels: Some(labels),
        },
    )
    .and_then(|w| w.finish())
    .map_err(|e| anyhow::anyhow!("{}: {e}", training.display()))?;
    let oracle = case.join("oracle_data.json");
    std::fs::write(&oracle, br#"{"filenames": [], "labels": []}"#)?;
    let config = json!({
        "iteration": 1, "classes": demo::CLASSES, "candidate_classes": ["single peak", "double peak"],
        "pool_data_path": pool, "training_data_path": training,
        "training_data_to_add_path": pool, "oracle_data_to_add_path": oracle,
        "perf_est_list_path": "", "oracle_batch_size": 100, "perf_est_batch_size": 10,
        "show_candidates": false, "save_model": args.classify, "min_delta_train": 0.0,
        "patience_train": args.epochs, "batch_size_train": 64, "epochs_train": args.epochs,
        "batch_size_predict": args.batch, "seed": 0
    });
    let path = case.join("al_config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// `mljm run ACTIVE_ML` in a child: wall time, its peak RSS (from wait4) and what it wrote.
fn iteration(exe: &Path, config: &Path, out: &Path, device: &str) -> anyhow::Result<Measured> {
    let t = Instant::now();
    let child = crate::child::no_inherit(&mut Command::new(exe))
        .args(["run", "ACTIVE_ML", "--device", device, "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .spawn()
        .context("cannot start mljm run")?;
    let (status, peak_rss) = wait_with_rusage(child.id())?;
    let wall_s = t.elapsed().as_secs_f64();
    if status != 0 {
        bail!(
            "mljm run ACTIVE_ML failed (status {status}); see {}",
            out.join("log.txt").display()
        );
    }
    let metrics: Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json"))?)?;
    let bytes_written = std::fs::read_dir(out)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    Ok(Measured {
        wall_s,
        peak_rss,
        metrics,
        bytes_written,
    })
}

/// Waits for `pid`; returns its exit status and peak resident set in bytes.
fn wait_with_rusage(pid: u32) -> anyhow::Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our own child, not yet waited.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage.ru_maxrss as u64 * 1024))
}

/// The Keras CNN's spectra/s on `pool` (the script's last line).
fn keras(python: &Path, pool: &Path, work: &Path) -> anyhow::Result<f64> {
    let script = work.join("keras_pool.py");
    std::fs::File::create(&script)?.write_all(KERAS_SCRIPT.as_bytes())?;
    let out = crate::child::no_inherit(&mut Command::new(python))
        .arg(&script)
        .arg(pool)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    eprintln!("{line}");
    line.rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .with_context(|| {
            format!(
                "the Keras script said {line:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
