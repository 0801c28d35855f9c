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
        cnn::TrainOptions,
        h5::{SpectraSet, read_spectra, write_spectra},
        selection, tsne,
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
    if let Some(i) = (0..set.len()).find(|&i| set.row(i).iter().any(|v| !v.is_finite())) {
        let bad = set.row(i).iter().filter(|v| !v.is_finite()).count();
        bail!(
            "the {what} {} has non-finite fluxes: spectrum {} (row {i}) holds {bad} NaN or infinite values; preprocess it again",
            path.display(),
            set.filenames[i]
        );
    }
    Ok(set)
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

pub(super) fn run_iteration(
    cfg: &AlConfig,
    ctx: &JobContext,
    device: &candle_core::Device,
) -> anyhow::Result<()> {
    let log = |line: &str| ctx.log.line(line);
    let pool_path = resolve(ctx, cfg, "pool_data_path")?.context("pool_data_path")?;
    let pool = read_set(&pool_path, "pool")?;
    log(&format!(
        "iteration {}: pool of {} spectra ({}) from {}",
        cfg.iteration,
        pool.len(),
        describe_wave(&pool.wave),
        pool_path.display()
    ));
    if cfg.iteration == 0 {
        return first_iteration(cfg, ctx, &pool);
    }
    let training = training_set(cfg, ctx, &pool)?;
    let train_names: HashSet<&String> = training.filenames.iter().collect();
    let mut seen = HashSet::new();
    let remaining: Vec<usize> = (0..pool.len())
        .filter(|&i| !train_names.contains(&pool.filenames[i]) && seen.insert(&pool.filenames[i]))
        .collect();
    if remaining.is_empty() {
        bail!("All data from pool is in training data");
    }
    let mut pool = pool.select(&remaining);
    // A pool that is an earlier iteration's result.h5 carries that model's predicted labels;
    // this iteration writes its own.
    pool.labels = None;
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
    let trained = active::fit(
        &rows,
        &labels,
        cfg.classes.len(),
        &opts,
        device,
        &ctx.cancel,
        &ctx.progress,
        &log,
    )?;
    let refs: Vec<&[f64]> = (0..pool.len()).map(|i| pool.row(i)).collect();
    ctx.progress.start_step("predicting", pool.len() as u64);
    let started = std::time::Instant::now();
    let pred = active::predict(
        &trained.cnn,
        &refs,
        cfg.batch_size_predict as usize,
        &ctx.cancel,
    )?;
    ctx.progress.advance(pool.len() as u64);
    let predict_s = started.elapsed().as_secs_f64();
    log(&format!(
        "predicted {} spectra in {predict_s:.2} s",
        pool.len()
    ));

    let candidate_classes: Vec<usize> = cfg
        .candidate_classes
        .iter()
        .filter_map(|c| cfg.class_index(c))
        .collect();
    let oracle = selection::oracle_batch(&pred.entropies, cfg.oracle_batch_size as usize);
    let candidates = selection::candidates(&pred.labels, &candidate_classes);
    let perf_est =
        selection::perf_est_sample(&candidates, cfg.perf_est_batch_size as usize, cfg.seed);
    log(&format!(
        "oracle batch {}, {} candidates, performance-estimation sample {}",
        oracle.len(),
        candidates.len(),
        perf_est.len()
    ));

    let dir = &ctx.dir;
    let to_i64 = |v: &[usize]| v.iter().map(|&i| i as i64).collect::<Vec<i64>>();
    let result =
        write_spectra(&dir.join("result.h5"), &pool).map_err(|e| anyhow!("result.h5: {e}"))?;
    result.add("labels", &to_i64(&pred.labels))?;
    result.add("entropies", &pred.entropies)?;
    result.add("oracle_indexes", &to_i64(&oracle))?;
    result.add("perf_est_indexes", &to_i64(&perf_est))?;
    if cfg.show_candidates {
        result.add("candidate_indexes", &to_i64(&candidates))?;
    }
    result.finish()?;
    write_spectra(&dir.join("training_data.h5"), &training)
        .and_then(|w| w.finish())
        .map_err(|e| anyhow!("training_data.h5: {e}"))?;

    let mut shown: Vec<usize> = oracle.iter().chain(&perf_est).copied().collect();
    if cfg.show_candidates {
        shown.extend(&candidates);
    }
    write_prep_spectra(dir, &pool, &shown)?;
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
    write_json(
        dir,
        "metrics.json",
        &json!({"loss_per_epoch": trained.report.loss_per_epoch, "epochs_run": trained.report.epochs_run, "best_epoch": trained.report.best_epoch,
                "best_loss": trained.report.best_loss, "stopped_early": trained.report.stopped_early, "train_s": trained.report.seconds,
                "predict_s": predict_s, "training_spectra": rows.len(), "pool_spectra": pool.len()}),
    )?;
    if cfg.save_model {
        trained.cnn.save(&dir.join("model.safetensors"))?;
    }
    write_next_config(cfg, ctx, true)?;

    let class_name = |i: usize| cfg.classes.get(pred.labels[i]).cloned();
    let iteration = cfg.iteration as i32;
    let mut labellings: Vec<NewLabelling> = Vec::new();
    let mut add = |set: &str, idx: &[usize]| {
        labellings.extend(idx.iter().map(|&i| NewLabelling {
            spectrum_filename: pool.filenames[i].clone(),
            spectrum_set: set.to_string(),
            sequence_iteration: iteration,
            model_prediction: class_name(i),
            entropy: pred.entropies.get(i).copied(),
        }))
    };
    add("ORACLE", &oracle);
    add("PERFORMANCE_ESTIMATION", &perf_est);
    if cfg.show_candidates {
        add("CANDIDATE", &candidates);
    }
    write_json(dir, "labellings.json", &labellings)
}

fn first_iteration(cfg: &AlConfig, ctx: &JobContext, pool: &SpectraSet) -> anyhow::Result<()> {
    let oracle: Vec<usize> = (0..pool.len().min(cfg.oracle_batch_size as usize)).collect();
    let result =
        write_spectra(&ctx.dir.join("result.h5"), pool).map_err(|e| anyhow!("result.h5: {e}"))?;
    result.add(
        "oracle_indexes",
        &oracle.iter().map(|&i| i as i64).collect::<Vec<_>>(),
    )?;
    result.finish()?;
    write_prep_spectra(&ctx.dir, pool, &oracle)?;
    write_next_config(cfg, ctx, false)?;
    let labellings: Vec<NewLabelling> = oracle
        .iter()
        .map(|&i| NewLabelling {
            spectrum_filename: pool.filenames[i].clone(),
            spectrum_set: "ORACLE".into(),
            sequence_iteration: 0,
            model_prediction: None,
            entropy: None,
        })
        .collect();
    ctx.log.line(&format!(
        "oracle batch: the first {} spectra of the pool",
        oracle.len()
    ));
    write_json(&ctx.dir, "labellings.json", &labellings)
}

/// The labelled set: `training_data_path` plus the oracle's answers, whose fluxes come from
/// `training_data_to_add_path`; a filename seen twice keeps its first row.
fn write_prep_spectra(dir: &Path, set: &SpectraSet, shown: &[usize]) -> anyhow::Result<()> {
    let spectra: serde_json::Map<String, Value> = shown
        .iter()
        .map(|&i| (set.filenames[i].clone(), json!(set.row(i))))
        .collect();
    write_json(
        dir,
        "prep_spectra.json",
        &json!({"wave": set.wave, "spectra": spectra}),
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
