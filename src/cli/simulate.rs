//! `mljm simulate-al`: the active-learning loop with an oracle that answers from a label file,
//! scored on a held-out split, so budgets and settings can be compared before expert time is
//! spent, and so we can show that the loop learns. Same science code as ACTIVE_ML.

use std::{collections::HashMap, path::PathBuf, time::Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::{Usage, progress::Reporter};
use crate::science::{
    Cancel, Progress,
    active::{self, Balance, Choices},
    augment::Augment,
    cnn::{self, TrainOptions},
    features::Features,
    h5::{SpectraSet, read_spectra},
    selection::Strategy,
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
    /// Query strategies to compare, comma-separated: entropy (the original's), margin, bald
    /// (Monte-Carlo dropout), balanced (part of each batch for the rare classes).
    #[arg(long, value_delimiter = ',', default_value = "entropy")]
    pub strategy: Vec<Strategy>,
    /// Runs of each strategy, with seeds --seed, --seed + 1, …: each its own held-out split,
    /// first batch and training. The summary gives mean and spread per budget.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Classes a balanced batch reserves places for, comma-separated [default: all but the
    /// first].
    #[arg(long, value_delimiter = ',')]
    pub rare_classes: Option<Vec<String>>,
    /// smote (the original's), class_weights or none.
    #[arg(long, default_value = "smote")]
    pub balance: Balance,
    /// Share of each class of the labelled set held out for early stopping (0: stop on the
    /// training loss, as the original does).
    #[arg(long, default_value_t = 0.0)]
    pub validation_split: f64,
    /// Train on an augmented copy of each labelled spectrum too (a radial-velocity shift and
    /// noise at its own S/N).
    #[arg(long)]
    pub augment: bool,
    /// Largest radial-velocity shift of --augment, km/s.
    #[arg(long, default_value_t = 30.0)]
    pub augment_kms: f64,
    /// What the CNN sees: scaled (the pool's flux, the original's) or lines.
    #[arg(long, default_value = "scaled")]
    pub features: Features,
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
    if !(0.0..0.5).contains(&args.validation_split) {
        return Err(Usage(format!(
            "--validation-split must be in [0, 0.5) (got {})",
            args.validation_split
        ))
        .into());
    }
    if !(0.0..=1000.0).contains(&args.augment_kms) {
        return Err(Usage(format!(
            "--augment-kms must be in [0, 1000] (got {})",
            args.augment_kms
        ))
        .into());
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

/// One run's learning curve: a row per iteration.
struct Point {
    labelled: usize,
    accuracy: f64,
    macro_f1: f64,
    /// (recall, precision) per class.
    per_class: Vec<(f64, f64)>,
    train_s: f64,
    predict_s: f64,
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
    let rare: Vec<usize> = match &args.rare_classes {
        Some(names) => names
            .iter()
            .map(|n| {
                args.classes.iter().position(|c| c == n).with_context(|| {
                    format!(
                        "--rare-classes: {n:?} is not one of --classes {:?}",
                        args.classes
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?,
        None => (1..args.classes.len()).collect(),
    };
    let choices = Choices {
        balance: args.balance,
        validation_split: args.validation_split,
        augment: args.augment.then_some(Augment {
            max_kms: args.augment_kms,
            ..Augment::default()
        }),
        features: args.features,
    };
    let device = cnn::device(&args.device)?;
    std::fs::create_dir_all(&args.out)?;
    let reporter = Reporter::new();
    let classes = &args.classes;
    let mut csv = format!(
        "strategy,seed,iteration,labelled,accuracy,macro_f1,{},train_s,predict_s\n",
        classes
            .iter()
            .map(|c| {
                let c = c.replace([' ', ','], "_");
                format!("recall_{c},precision_{c}")
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    println!(
        "{:>9} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "strategy", "seed", "iteration", "labelled", "accuracy", "macro_f1", "train_s", "predict_s"
    );
    // (strategy, curves of every seed)
    let mut all: Vec<(Strategy, Vec<Vec<Point>>)> = Vec::new();
    for &strategy in &args.strategy {
        let mut curves = Vec::new();
        for k in 0..args.seeds.max(1) {
            let seed = args.seed + k as u64;
            let log = |l: &str| reporter.line(&format!("[{strategy} seed {seed}] {l}"));
            let curve = run_once(
                args, &set, &truth, strategy, &choices, &rare, seed, &device, &log,
            )?;
            for (i, p) in curve.iter().enumerate() {
                let per: Vec<String> = p
                    .per_class
                    .iter()
                    .map(|(r, pr)| format!("{r:.4},{pr:.4}"))
                    .collect();
                csv.push_str(&format!(
                    "{strategy},{seed},{},{},{:.4},{:.4},{},{:.2},{:.2}\n",
                    i + 1,
                    p.labelled,
                    p.accuracy,
                    p.macro_f1,
                    per.join(","),
                    p.train_s,
                    p.predict_s
                ));
            }
            // Written after every run: a long comparison stopped half-way keeps what it found.
            std::fs::write(args.out.join("learning_curve.csv"), &csv)?;
            curves.push(curve);
        }
        all.push((strategy, curves));
    }
    // What was compared, so that summaries of different runs can be told apart.
    let summary = format!(
        "# features {}, balance {}, validation_split {}, augment {}, patience {}, oracle batch {}, first seed {}\n{}",
        choices.features,
        choices.balance,
        choices.validation_split,
        choices.augment.map_or("none".into(), |a| format!(
            "±{} km/s × {}",
            a.max_kms, a.copies
        )),
        args.patience,
        args.oracle_batch,
        args.seed,
        summarise(&all, classes, &rare)
    );
    print!("\n{summary}");
    std::fs::write(args.out.join("summary.txt"), &summary)?;
    eprintln!(
        "learning curves: {}; summary: {}",
        args.out.join("learning_curve.csv").display(),
        args.out.join("summary.txt").display()
    );
    Ok(())
}

/// Mean, standard deviation, minimum and maximum of `v`.
fn spread(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

/// Per strategy and budget: macro-F1 over the seeds (mean ± sd, range) and the rare classes'
/// mean recall.
fn summarise(all: &[(Strategy, Vec<Vec<Point>>)], classes: &[String], rare: &[usize]) -> String {
    let mut out = format!(
        "{:>9} {:>8} {:>6} {:>16} {:>15}  {}\n",
        "strategy",
        "labelled",
        "seeds",
        "macro-F1 mean±sd",
        "range",
        rare.iter()
            .map(|&c| format!("recall {}", classes[c]))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for (strategy, curves) in all {
        let iterations = curves.iter().map(Vec::len).min().unwrap_or(0);
        for i in 0..iterations {
            let f1: Vec<f64> = curves.iter().map(|c| c[i].macro_f1).collect();
            let (mean, sd, min, max) = spread(&f1);
            let recalls: Vec<String> = rare
                .iter()
                .map(|&c| {
                    let r: Vec<f64> = curves
                        .iter()
                        .map(|cv| cv[i].per_class[c].0)
                        .filter(|r| r.is_finite())
                        .collect();
                    let (m, s, _, _) = spread(&r);
                    format!("{m:.3}±{s:.3}")
                })
                .collect();
            out.push_str(&format!(
                "{strategy:>9} {:>8} {:>6} {:>16} {:>15}  {}\n",
                curves[0][i].labelled,
                curves.len(),
                format!("{mean:.3}±{sd:.3}"),
                format!("{min:.3}–{max:.3}"),
                recalls.join("  ")
            ));
        }
    }
    out
}

/// One simulated loop with `seed`: its held-out split, its first batch, its training.
#[allow(clippy::too_many_arguments)]
fn run_once(
    args: &SimulateArgs,
    set: &SpectraSet,
    truth: &[usize],
    strategy: Strategy,
    choices: &Choices,
    rare: &[usize],
    seed: u64,
    device: &candle_core::Device,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<Point>> {
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
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
    // Iteration 0, as ACTIVE_ML: the first oracle batch of the pool.
    let mut labelled: Vec<usize> = pool.drain(..args.oracle_batch).collect();
    let mut curve = Vec::new();
    for iteration in 1..=args.iterations {
        let rows: Vec<Vec<f64>> = labelled.iter().map(|&i| set.row(i).to_vec()).collect();
        let labels: Vec<usize> = labelled.iter().map(|&i| truth[i]).collect();
        let opts = TrainOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            min_delta: args.min_delta,
            patience: args.patience,
            learning_rate: 1e-3,
            seed: seed + iteration as u64,
        };
        let trained = active::fit_with(
            &rows,
            &labels,
            &set.wave,
            args.classes.len(),
            &opts,
            choices,
            device,
            &Cancel::new(),
            &Progress::new(),
            log,
        )?;
        let started = Instant::now();
        let test_rows: Vec<&[f64]> = test.iter().map(|&i| set.row(i)).collect();
        let test_pred = active::predict(&trained.cnn, &test_rows, 256, &Cancel::new())?;
        let pool_rows: Vec<&[f64]> = pool.iter().map(|&i| set.row(i)).collect();
        let pool_pred = active::predict(&trained.cnn, &pool_rows, 256, &Cancel::new())?;
        let test_truth: Vec<usize> = test.iter().map(|&i| truth[i]).collect();
        let (accuracy, macro_f1) =
            active::scores(&test_truth, &test_pred.labels, args.classes.len());
        let point = Point {
            labelled: labelled.len(),
            accuracy,
            macro_f1,
            per_class: active::per_class(&test_truth, &test_pred.labels, args.classes.len()),
            train_s: trained.report.seconds,
            predict_s: 0.0,
        };
        let mut point = point;
        if iteration < args.iterations {
            let picked = active::query(
                strategy,
                &trained.cnn,
                &pool_rows,
                &pool_pred,
                args.oracle_batch,
                rare,
                seed + iteration as u64,
                &Cancel::new(),
            )?;
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
        point.predict_s = started.elapsed().as_secs_f64();
        println!(
            "{strategy:>9} {seed:>5} {iteration:>9} {:>8} {accuracy:>8.4} {macro_f1:>8.4} {:>8.2} {:>9.2}",
            point.labelled, point.train_s, point.predict_s
        );
        curve.push(point);
    }
    Ok(curve)
}
