//! One iteration: read the pool, train on the labelled set (from iteration 1 on), predict,
//! choose the oracle batch and the performance-estimation sample, write the files.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};

use super::{AlConfig, NewLabelling, training::training_set};
use crate::{
    job_types::{JobContext, Root},
    science::{
        active,
        classify::{self, Card},
        cnn::TrainOptions,
        cnn::TrainReport,
        h5::{SpectraSet, read_spectra, write_spectra},
        pool::{PoolFile, ResultWriter, chunk_rows, refuse_non_finite},
        scan::{self, Pick, ScanOptions, thousands},
        tsne,
    },
};

pub(super) fn resolve(
    ctx: &JobContext,
    cfg: &AlConfig,
    field: &str,
) -> anyhow::Result<Option<PathBuf>> {
    let p = cfg.path(field);
    if p.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(ctx.paths.resolve(Root::Files, field, p)?))
}

/// A spectra file the CNN can use: every flux finite (a NaN would silently poison every
/// prediction), and at least one spectrum.
pub(super) fn read_set(path: &Path, what: &str) -> anyhow::Result<SpectraSet> {
    let set = read_spectra(path)
        .map_err(|e| anyhow!("cannot read the {what} {}: {e}", path.display()))?;
    if set.is_empty() {
        bail!("the {what} {} holds no spectra", path.display());
    }
    check_finite(&set, &(0..set.len()).collect::<Vec<_>>(), what, path)?;
    Ok(set)
}

/// Refuses a set with a NaN or infinite flux, naming the file, the spectrum and its row
/// there (`rows[i]` for the set's row `i`).
pub(super) fn check_finite(
    set: &SpectraSet,
    rows: &[usize],
    what: &str,
    path: &Path,
) -> anyhow::Result<()> {
    (0..set.len())
        .try_for_each(|i| refuse_non_finite(what, path, &set.filenames[i], rows[i], set.row(i)))
}

pub(super) fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    std::fs::write(dir.join(name), bytes).with_context(|| format!("cannot write {name}"))
}

pub(super) fn same_wave(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0))
}

pub(super) fn describe_wave(w: &[f64]) -> String {
    match (w.first(), w.last()) {
        (Some(a), Some(b)) => format!("{} points from {a} to {b} Å", w.len()),
        _ => "no points".into(),
    }
}

/// Opens a pool (or any spectra file read in pieces), naming `what` in its errors.
pub(super) fn open_pool(path: &Path, what: &str) -> anyhow::Result<PoolFile> {
    let pool = PoolFile::open(path)
        .map_err(|e| anyhow!("cannot read the {what} {}: {e}", path.display()))?;
    if pool.is_empty() {
        bail!("the {what} {} holds no spectra", path.display());
    }
    Ok(pool)
}

pub(super) fn run_iteration(
    cfg: &AlConfig,
    ctx: &JobContext,
    device: &candle_core::Device,
) -> anyhow::Result<()> {
    let log = |line: &str| ctx.log.line(line);
    let pool_path = resolve(ctx, cfg, "pool_data_path")?.context("pool_data_path")?;
    let pool = open_pool(&pool_path, "pool")?;
    log(&format!(
        "iteration {}: pool of {} spectra ({}) from {}",
        cfg.iteration,
        thousands(pool.len()),
        describe_wave(&pool.wave),
        pool_path.display()
    ));
    if cfg.iteration == 0 {
        return first_iteration(cfg, ctx, &pool);
    }
    let training = training_set(cfg, ctx, &pool.wave)?;
    let earlier: Vec<Value> = match resolve(ctx, cfg, "perf_est_list_path")? {
        Some(p) => serde_json::from_slice(
            &std::fs::read(&p)
                .with_context(|| format!("cannot read the perf_est list {}", p.display()))?,
        )
        .with_context(|| format!("{} is not a JSON list", p.display()))?,
        None if cfg.iteration >= 2 => bail!(
            "perf_est_list_path is missing: from iteration 2 on it must name the perf_est_list.json of the previous iteration (this is iteration {})",
            cfg.iteration
        ),
        None => Vec::new(),
    };

    let labels: Vec<usize> = training
        .labels
        .iter()
        .flatten()
        .map(|&l| l as usize)
        .collect();
    let rows: Vec<Vec<f64>> = (0..training.len())
        .map(|i| training.row(i).to_vec())
        .collect();
    let opts = TrainOptions {
        epochs: cfg.epochs_train as usize,
        batch_size: cfg.batch_size_train as usize,
        min_delta: cfg.min_delta_train,
        patience: cfg.patience_train as usize,
        learning_rate: 1e-3,
        seed: cfg.seed,
    };
    let trained = active::fit_with(
        &rows,
        &labels,
        &training.wave,
        cfg.classes.len(),
        &opts,
        &cfg.choices(),
        device,
        &ctx.cancel,
        &ctx.progress,
        &log,
    )?;

    let dir = &ctx.dir;
    let result_path = dir.join("result.h5");
    let mut result = ResultWriter::create(&result_path, &pool.wave, Some(pool.len()))
        .map_err(|e| anyhow!("result.h5: {e}"))?;
    let exclude: HashSet<String> = training.filenames.iter().cloned().collect();
    let scan_opts = ScanOptions {
        batch: cfg.batch_size_predict as usize,
        chunk_rows: chunk_rows(pool.points()).max(cfg.batch_size_predict as usize),
        oracle_size: cfg.oracle_batch_size as usize,
        candidate_classes: cfg
            .candidate_classes
            .iter()
            .filter_map(|c| cfg.class_index(c))
            .collect(),
        keep_candidates: cfg.show_candidates,
        sample: cfg.perf_est_batch_size as usize,
        seed: cfg.seed,
        strategy: cfg.query_strategy,
    };
    ctx.progress.start_step("predicting", pool.len() as u64);
    let started = std::time::Instant::now();
    let mut write_s = 0.0;
    let scan = scan::scan(
        &trained.cnn,
        &pool,
        &exclude,
        &scan_opts,
        &ctx.cancel,
        &ctx.progress,
        &log,
        |labels, entropies| {
            let t = std::time::Instant::now();
            result.push(labels, entropies)?;
            write_s += t.elapsed().as_secs_f64();
            Ok(())
        },
    )?;
    if scan.predicted == 0 {
        bail!("All data from pool is in training data");
    }
    let predict_s = started.elapsed().as_secs_f64() - write_s;
    log(&format!(
        "predicted {} spectra in {predict_s:.2} s ({}/s)",
        thousands(scan.predicted),
        thousands((scan.predicted as f64 / predict_s.max(1e-9)) as usize)
    ));

    let perf_est = &scan.sample;
    log(&format!(
        "oracle batch {}, {} candidates, performance-estimation sample {}",
        scan.oracle.len(),
        thousands(scan.candidate_count),
        perf_est.len()
    ));

    let t = std::time::Instant::now();
    let to_i64 = |v: &[Pick]| v.iter().map(|p| p.index as i64).collect::<Vec<i64>>();
    result.add("oracle_indexes", &to_i64(&scan.oracle))?;
    result.add("perf_est_indexes", &to_i64(perf_est))?;
    if cfg.show_candidates {
        result.add("candidate_indexes", &to_i64(&scan.candidates))?;
    }
    result.link(&pool, &scan.runs)?;
    result.finish()?;
    write_spectra(&dir.join("training_data.h5"), &training)
        .and_then(|w| w.finish())
        .map_err(|e| anyhow!("training_data.h5: {e}"))?;

    let mut shown: Vec<(&str, Pick)> = scan.oracle.iter().map(|&p| ("ORACLE", p)).collect();
    shown.extend(perf_est.iter().map(|&p| ("PERFORMANCE_ESTIMATION", p)));
    if cfg.show_candidates {
        shown.extend(scan.candidates.iter().map(|&p| ("CANDIDATE", p)));
    }
    let rows_shown = scan.rows(shown.iter().map(|(_, p)| p.index));
    let unreadable = |e| anyhow!("cannot read the pool {}: {e}", pool_path.display());
    let shown_names = pool.select_names(&rows_shown).map_err(unreadable)?;
    // prep_spectra.json keeps its format for scripts, but a survey's candidates run to
    // 100,000s: past the first PREP_CANDIDATES the workspace reads each from result.h5.
    let in_prep = rows_shown
        .len()
        .min(scan.oracle.len() + perf_est.len() + PREP_CANDIDATES);
    if in_prep < rows_shown.len() {
        log(&format!(
            "prep_spectra.json holds the first {} of {} candidates; all are in result.h5 \
             (candidate_indexes)",
            thousands(PREP_CANDIDATES),
            thousands(scan.candidates.len())
        ));
    }
    let prep = pool.select(&rows_shown[..in_prep]).map_err(unreadable)?;
    write_prep_spectra(dir, &prep)?;
    match tsne::embed(&rows, cfg.seed) {
        Some(xy) => write_json(
            dir,
            "dim_reduc.json",
            &json!({"x": xy.iter().map(|p| p.0).collect::<Vec<_>>(), "y": xy.iter().map(|p| p.1).collect::<Vec<_>>(), "labels": labels, "classes": cfg.classes}),
        )?,
        None => log(&format!(
            "t-SNE skipped: {} training spectra (at least {} are needed)",
            rows.len(),
            tsne::MIN_SPECTRA
        )),
    }
    write_json(dir, "perf_est_list.json", &earlier)?;
    if cfg.save_model {
        trained.cnn.save(&dir.join(classify::WEIGHTS))?;
        model_card(cfg, &pool.wave, rows.len(), &trained.report).write(dir)?;
    }
    write_next_config(cfg, ctx, true)?;

    let iteration = cfg.iteration as i32;
    let labellings: Vec<NewLabelling> = shown
        .iter()
        .zip(&shown_names)
        .map(|((set, p), name)| NewLabelling {
            spectrum_filename: name.clone(),
            spectrum_set: set.to_string(),
            sequence_iteration: iteration,
            model_prediction: cfg.classes.get(p.label).cloned(),
            entropy: Some(p.entropy),
            result_row: Some(p.index as u64),
        })
        .collect();
    write_json(dir, "labellings.json", &labellings)?;
    write_s += t.elapsed().as_secs_f64();
    let written = std::fs::metadata(&result_path).map_or(0, |m| m.len());
    write_json(
        dir,
        "metrics.json",
        &json!({"loss_per_epoch": trained.report.loss_per_epoch, "epochs_run": trained.report.epochs_run, "best_epoch": trained.report.best_epoch,
                "best_loss": trained.report.best_loss, "stopped_early": trained.report.stopped_early, "train_s": trained.report.seconds,
                "predict_s": predict_s, "write_s": write_s, "training_spectra": rows.len(),
                "training_per_class": (0..cfg.classes.len()).map(|c| labels.iter().filter(|&&l| l == c).count()).collect::<Vec<_>>(),
                "validation_loss_per_epoch": trained.report.val_loss_per_epoch, "query_strategy": cfg.query_strategy, "features": cfg.features,
                "pool_spectra": scan.predicted,
                "result_bytes": written}),
    )
}

/// `model.json`: what the saved model is for, so CLASSIFY and the registry can use it alone.
fn model_card(cfg: &AlConfig, wave: &[f64], training: usize, report: &TrainReport) -> Card {
    Card {
        classes: cfg.classes.clone(),
        candidate_classes: cfg.candidate_classes.clone(),
        wave_start: wave.first().copied().unwrap_or(0.0),
        wave_end: wave.last().copied().unwrap_or(0.0),
        wave_count: wave.len(),
        training_size: training,
        iteration: cfg.iteration as i64,
        features: cfg.features,
        metrics: json!({"best_loss": report.best_loss, "best_epoch": report.best_epoch,
                        "epochs_run": report.epochs_run, "stopped_early": report.stopped_early,
                        "train_s": report.seconds}),
    }
}

/// Iteration 0: the oracle batch is the pool's first spectra; nothing else is read.
fn first_iteration(cfg: &AlConfig, ctx: &JobContext, pool: &PoolFile) -> anyhow::Result<()> {
    let oracle: Vec<usize> = (0..pool.len().min(cfg.oracle_batch_size as usize)).collect();
    let result = ResultWriter::create(&ctx.dir.join("result.h5"), &pool.wave, None)
        .map_err(|e| anyhow!("result.h5: {e}"))?;
    result.add(
        "oracle_indexes",
        &oracle.iter().map(|&i| i as i64).collect::<Vec<_>>(),
    )?;
    result.link_all(pool)?;
    result.finish()?;
    let shown = pool
        .select(&oracle)
        .map_err(|e| anyhow!("cannot read the pool {}: {e}", pool.path().display()))?;
    // The rest of the pool is read, and checked alike, from iteration 1 on.
    check_finite(&shown, &oracle, "pool", pool.path())?;
    write_prep_spectra(&ctx.dir, &shown)?;
    write_next_config(cfg, ctx, false)?;
    let labellings: Vec<NewLabelling> = shown
        .filenames
        .iter()
        .zip(&oracle)
        .map(|(name, &row)| NewLabelling {
            spectrum_filename: name.clone(),
            spectrum_set: "ORACLE".into(),
            sequence_iteration: 0,
            model_prediction: None,
            entropy: None,
            result_row: Some(row as u64),
        })
        .collect();
    ctx.log.line(&format!(
        "oracle batch: the first {} spectra of the pool",
        oracle.len()
    ));
    write_json(&ctx.dir, "labellings.json", &labellings)
}

/// The most candidates `prep_spectra.json` holds (about 15 MB of JSON at 140 points).
const PREP_CANDIDATES: usize = 10_000;

/// `prep_spectra.json`: the wave and the fluxes of the spectra the workspace shows.
fn write_prep_spectra(dir: &Path, shown: &SpectraSet) -> anyhow::Result<()> {
    let spectra: serde_json::Map<String, Value> = (0..shown.len())
        .map(|i| (shown.filenames[i].clone(), json!(shown.row(i))))
        .collect();
    write_json(
        dir,
        "prep_spectra.json",
        &json!({"wave": shown.wave, "spectra": spectra}),
    )
}

/// `new_config.json`: the next iteration reads this job's files.
fn write_next_config(cfg: &AlConfig, ctx: &JobContext, trained: bool) -> anyhow::Result<()> {
    let here = |name: &str| ctx.paths.unresolve(Root::Files, &ctx.dir.join(name));
    let mut next = cfg.clone();
    next.iteration += 1;
    next.pool_data_path = here("result.h5");
    next.training_data_to_add_path = here("result.h5");
    next.oracle_data_to_add_path = here("oracle_data.json");
    if trained {
        next.training_data_path = here("training_data.h5");
        next.perf_est_list_path = here("perf_est_list.json");
    }
    write_json(&ctx.dir, "new_config.json", &next)
}
