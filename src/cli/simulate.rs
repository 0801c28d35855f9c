//! `mljm simulate-al`: the active-learning loop with an oracle that answers from a label file,
//! scored on a held-out split, so budgets and settings can be compared before expert time is
//! spent, and so we can show that the loop learns. Same science code as ACTIVE_ML.

use std::{collections::HashMap, path::PathBuf, time::Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::{Usage, progress::Reporter};
use crate::science::{
    Cancel, Progress, active,
    cnn::{self, TrainOptions},
    h5::read_spectra,
    selection,
};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Preprocessed spectra (a DATA_PREPROCESSING result.h5).
    #[arg(long)]
    pub pool: PathBuf,
    /// CSV with the columns filename,label (mljm demo writes files/labels.csv).
    #[arg(long)]
    pub labels: PathBuf,
    /// Class names, comma-separated, in the model's order.
    #[arg(long, value_delimiter = ',', required = true)]
    pub classes: Vec<String>,
    /// Training rounds after the first oracle batch.
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Labels asked of the oracle per iteration.
    #[arg(long, default_value_t = 50)]
    pub oracle_batch: usize,
    /// Share of the spectra held out for scoring.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub min_delta: f64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.test_fraction) {
        return Err(Usage(format!(
            "--test-fraction must be in [0, 1) (got {})",
            args.test_fraction
        ))
        .into());
    }
    if args.oracle_batch == 0 || args.iterations == 0 {
        return Err(Usage("--oracle-batch and --iterations must be at least 1".into()).into());
    }
    tokio::task::spawn_blocking(move || simulate(&args)).await?
}

fn read_labels(args: &SimulateArgs) -> anyhow::Result<HashMap<String, usize>> {
    let text = std::fs::read_to_string(&args.labels)
        .with_context(|| format!("cannot read {}", args.labels.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (file, label) = line.split_once(',').with_context(|| {
            format!(
                "{}:{}: expected filename,label",
                args.labels.display(),
                n + 1
            )
        })?;
        let label = label.trim().trim_matches('"');
        let class = args
            .classes
            .iter()
            .position(|c| c == label)
            .with_context(|| {
                format!(
                    "{}:{}: {label:?} is not one of --classes {:?}",
                    args.labels.display(),
                    n + 1,
                    args.classes
                )
            })?;
        out.insert(file.trim().to_string(), class);
    }
    Ok(out)
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let set = read_spectra(&args.pool)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.pool.display()))?;
    let truth_by_name = read_labels(args)?;
    let truth: Vec<usize> = set
        .filenames
        .iter()
        .map(|f| {
            truth_by_name
                .get(f)
                .copied()
                .with_context(|| format!("{f} has no label in {}", args.labels.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(args.seed));
    let n_test = (set.len() as f64 * args.test_fraction).round() as usize;
    let test: Vec<usize> = order[..n_test].to_vec();
    let mut pool: Vec<usize> = order[n_test..].to_vec();
    pool.sort_unstable();
    if pool.len() <= args.oracle_batch {
        bail!(
            "the pool ({} spectra after the held-out split) must be larger than one oracle batch ({})",
            pool.len(),
            args.oracle_batch
        );
    }
    let device = cnn::device(&args.device)?;
    std::fs::create_dir_all(&args.out)?;
    let reporter = Reporter::new();
    let log = |l: &str| reporter.line(l);
    // Iteration 0, as ACTIVE_ML: the first oracle batch of the pool.
    let mut labelled: Vec<usize> = pool.drain(..args.oracle_batch).collect();
    let mut csv = String::from("iteration,labelled,accuracy,macro_f1,train_s,predict_s\n");
    println!(
        "{:>9} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "iteration", "labelled", "accuracy", "macro_f1", "train_s", "predict_s"
    );
    for iteration in 1..=args.iterations {
        let rows: Vec<Vec<f64>> = labelled.iter().map(|&i| set.row(i).to_vec()).collect();
        let labels: Vec<usize> = labelled.iter().map(|&i| truth[i]).collect();
        let opts = TrainOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            min_delta: args.min_delta,
            patience: args.patience,
            learning_rate: 1e-3,
            seed: args.seed + iteration as u64,
        };
        let trained = active::fit(
            &rows,
            &labels,
            args.classes.len(),
            &opts,
            &device,
            &Cancel::new(),
            &Progress::new(),
            &log,
        )?;
        let started = Instant::now();
        let test_rows: Vec<&[f64]> = test.iter().map(|&i| set.row(i)).collect();
        let test_pred = active::predict(&trained.cnn, &test_rows, 256, &Cancel::new())?;
        let pool_rows: Vec<&[f64]> = pool.iter().map(|&i| set.row(i)).collect();
        let pool_pred = active::predict(&trained.cnn, &pool_rows, 256, &Cancel::new())?;
        let predict_s = started.elapsed().as_secs_f64();
        let test_truth: Vec<usize> = test.iter().map(|&i| truth[i]).collect();
        let (accuracy, macro_f1) =
            active::scores(&test_truth, &test_pred.labels, args.classes.len());
        let line = format!(
            "{iteration},{},{accuracy:.4},{macro_f1:.4},{:.2},{predict_s:.2}",
            labelled.len(),
            trained.report.seconds
        );
        println!(
            "{iteration:>9} {:>8} {accuracy:>8.4} {macro_f1:>8.4} {:>8.2} {predict_s:>9.2}",
            labelled.len(),
            trained.report.seconds
        );
        csv.push_str(&line);
        csv.push('\n');
        if iteration < args.iterations {
            let picked = selection::oracle_batch(&pool_pred.entropies, args.oracle_batch);
            let mut taken: Vec<usize> = picked.iter().map(|&j| pool[j]).collect();
            let picked: std::collections::HashSet<usize> = picked.into_iter().collect();
            pool = pool
                .into_iter()
                .enumerate()
                .filter(|(j, _)| !picked.contains(j))
                .map(|(_, i)| i)
                .collect();
            labelled.append(&mut taken);
        }
    }
    std::fs::write(args.out.join("learning_curve.csv"), csv)?;
    eprintln!(
        "learning curve: {}",
        args.out.join("learning_curve.csv").display()
    );
    Ok(())
}
