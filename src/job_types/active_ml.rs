//! ACTIVE_ML: one iteration of the active-learning loop with the original's config keys and
//! file protocol (SPEC §6). Iteration 0 picks the first oracle batch from the pool; iteration
//! k ≥ 1 trains on the labelled spectra and proposes the most uncertain ones. The labellings
//! to create go to `labellings.json`, which the worker inserts when the job completes.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow, bail};
use futures_util::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    job_types::{ConfigError, FieldKind, FormField, JobContext, JobType, Root, parse_config},
    science::{
        active,
        cnn::{self, TrainOptions},
        h5::{SpectraSet, read_spectra, write_spectra},
        selection, tsne,
    },
};

pub struct ActiveMl;

pub const MAX_EPOCHS: u64 = 100_000;

fn d_oracle() -> u64 {
    100
}
fn d_perf() -> u64 {
    10
}
fn d_delta() -> f64 {
    1e-3
}
fn d_patience() -> u64 {
    10
}
fn d_batch() -> u64 {
    64
}
fn d_epochs() -> u64 {
    1000
}
fn d_predict() -> u64 {
    16384
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlConfig {
    pub iteration: u64,
    pub classes: Vec<String>,
    pub candidate_classes: Vec<String>,
    #[serde(default)]
    pub training_data_path: String,
    #[serde(default)]
    pub training_data_to_add_path: String,
    #[serde(default)]
    pub oracle_data_to_add_path: String,
    pub pool_data_path: String,
    #[serde(default = "d_oracle")]
    pub oracle_batch_size: u64,
    #[serde(default = "d_perf")]
    pub perf_est_batch_size: u64,
    #[serde(default)]
    pub show_candidates: bool,
    #[serde(default)]
    pub save_model: bool,
    #[serde(default = "d_delta")]
    pub min_delta_train: f64,
    #[serde(default = "d_patience")]
    pub patience_train: u64,
    #[serde(default = "d_batch")]
    pub batch_size_train: u64,
    #[serde(default = "d_epochs")]
    pub epochs_train: u64,
    #[serde(default = "d_predict")]
    pub batch_size_predict: u64,
    #[serde(default)]
    pub perf_est_list_path: String,
    /// mljm's addition: the seed of weights, shuffling, SMOTE and sampling.
    #[serde(default)]
    pub seed: u64,
}

const PATH_FIELDS: [&str; 5] = [
    "pool_data_path",
    "training_data_path",
    "training_data_to_add_path",
    "oracle_data_to_add_path",
    "perf_est_list_path",
];

impl AlConfig {
    pub fn parse(config: &Value) -> Result<AlConfig, ConfigError> {
        let c: AlConfig = parse_config(config)?;
        if c.classes.len() < 2 {
            return Err(ConfigError::new(
                "classes",
                "at least two class names are needed",
            ));
        }
        let unique: HashSet<&String> = c.classes.iter().collect();
        if unique.len() != c.classes.len() || c.classes.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::new(
                "classes",
                "class names must be non-empty and distinct",
            ));
        }
        if let Some(bad) = c.candidate_classes.iter().find(|n| !c.classes.contains(n)) {
            return Err(ConfigError::new(
                "candidate_classes",
                format!("{bad:?} is not one of the classes {:?}", c.classes),
            ));
        }
        for (field, v) in [
            ("oracle_batch_size", c.oracle_batch_size),
            ("perf_est_batch_size", c.perf_est_batch_size),
            ("batch_size_train", c.batch_size_train),
            ("batch_size_predict", c.batch_size_predict),
            ("epochs_train", c.epochs_train),
        ] {
            if v < 1 {
                return Err(ConfigError::new(
                    field,
                    format!("must be at least 1 (got {v})"),
                ));
            }
        }
        if c.epochs_train > MAX_EPOCHS {
            return Err(ConfigError::new(
                "epochs_train",
                format!("must be from 1 to {MAX_EPOCHS} (got {})", c.epochs_train),
            ));
        }
        if !(c.min_delta_train.is_finite() && c.min_delta_train >= 0.0) {
            return Err(ConfigError::new(
                "min_delta_train",
                "must be a finite number ≥ 0",
            ));
        }
        if c.pool_data_path.trim().is_empty() {
            return Err(ConfigError::new(
                "pool_data_path",
                "must name the pool's HDF5 file",
            ));
        }
        if c.iteration >= 1 {
            for (field, v) in [
                ("training_data_to_add_path", &c.training_data_to_add_path),
                ("oracle_data_to_add_path", &c.oracle_data_to_add_path),
            ] {
                if v.trim().is_empty() {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "is required from iteration 1 on (iteration {})",
                            c.iteration
                        ),
                    ));
                }
            }
        }
        Ok(c)
    }

    fn path(&self, field: &str) -> &str {
        match field {
            "pool_data_path" => &self.pool_data_path,
            "training_data_path" => &self.training_data_path,
            "training_data_to_add_path" => &self.training_data_to_add_path,
            "oracle_data_to_add_path" => &self.oracle_data_to_add_path,
            _ => &self.perf_est_list_path,
        }
    }

    fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }
}

impl JobType for ActiveMl {
    fn name(&self) -> &'static str {
        "ACTIVE_ML"
    }

    fn needs_gpu(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn form(&self) -> Vec<FormField> {
        use FieldKind::*;
        vec![
            FormField::new("iteration", Integer, "0").required(),
            FormField::new("classes", List, "other, single peak, double peak").required(),
            FormField::new("candidate_classes", List, "single peak, double peak")
                .required()
                .help("the classes searched for; performance is estimated on them"),
            FormField::new("pool_data_path", Hdf5File, "")
                .required()
                .help("the pool: a preprocessing result.h5"),
            FormField::new("training_data_path", Hdf5File, ""),
            FormField::new("training_data_to_add_path", Hdf5File, ""),
            FormField::new("oracle_data_to_add_path", Text, ""),
            FormField::new("perf_est_list_path", Text, ""),
            FormField::new("oracle_batch_size", Integer, "100"),
            FormField::new("perf_est_batch_size", Integer, "10"),
            FormField::new("show_candidates", Bool, "false"),
            FormField::new("save_model", Bool, "false"),
            FormField::new("min_delta_train", Number, "0.001"),
            FormField::new("patience_train", Integer, "10"),
            FormField::new("batch_size_train", Integer, "64"),
            FormField::new("epochs_train", Integer, "1000"),
            FormField::new("batch_size_predict", Integer, "16384"),
            FormField::new("seed", Integer, "0"),
        ]
    }

    fn known_keys(&self) -> &'static [&'static str] {
        &[
            "iteration",
            "classes",
            "candidate_classes",
            "training_data_path",
            "training_data_to_add_path",
            "oracle_data_to_add_path",
            "pool_data_path",
            "oracle_batch_size",
            "perf_est_batch_size",
            "show_candidates",
            "save_model",
            "min_delta_train",
            "patience_train",
            "batch_size_train",
            "epochs_train",
            "batch_size_predict",
            "perf_est_list_path",
            "seed",
        ]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        AlConfig::parse(config).map(|_| ())
    }

    fn paths(&self, config: &Value) -> Vec<(&'static str, Root, String)> {
        PATH_FIELDS
            .iter()
            .filter_map(|&f| {
                config
                    .get(f)
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(|p| (f, Root::Files, p.to_string()))
            })
            .collect()
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let cfg = AlConfig::parse(&ctx.config)?;
            let device = cnn::device(&ctx.device)?;
            tokio::task::spawn_blocking(move || run_iteration(&cfg, &ctx, &device)).await?
        }
        .boxed()
    }
}

/// One labelling for the worker to insert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLabelling {
    pub spectrum_filename: String,
    pub spectrum_set: String,
    pub sequence_iteration: i32,
    pub model_prediction: Option<String>,
    /// The prediction's entropy, for the labelling workspace (not a labellings column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
}

/// The answers of the oracle, as the original UI writes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OracleData {
    pub filenames: Vec<String>,
    pub labels: Vec<i64>,
}

fn resolve(ctx: &JobContext, cfg: &AlConfig, field: &str) -> anyhow::Result<Option<PathBuf>> {
    let p = cfg.path(field);
    if p.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(ctx.paths.resolve(Root::Files, field, p)?))
}

/// A spectra file the CNN can use: every flux finite (a NaN would silently poison every
/// prediction), and at least one spectrum.
fn read_set(path: &Path, what: &str) -> anyhow::Result<SpectraSet> {
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

fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    std::fs::write(dir.join(name), bytes).with_context(|| format!("cannot write {name}"))
}

fn same_wave(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0))
}

fn describe_wave(w: &[f64]) -> String {
    match (w.first(), w.last()) {
        (Some(a), Some(b)) => format!("{} points from {a} to {b} Å", w.len()),
        _ => "no points".into(),
    }
}

fn run_iteration(
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
fn training_set(cfg: &AlConfig, ctx: &JobContext, pool: &SpectraSet) -> anyhow::Result<SpectraSet> {
    let to_add_path =
        resolve(ctx, cfg, "training_data_to_add_path")?.context("training_data_to_add_path")?;
    let to_add = read_set(
        &to_add_path,
        "spectra of the oracle answers (training_data_to_add_path)",
    )?;
    let oracle_path =
        resolve(ctx, cfg, "oracle_data_to_add_path")?.context("oracle_data_to_add_path")?;
    let oracle: OracleData =
        serde_json::from_slice(&std::fs::read(&oracle_path).with_context(|| {
            format!("cannot read the oracle answers {}", oracle_path.display())
        })?)
        .with_context(|| {
            format!(
                "{} is not {{\"filenames\": [..], \"labels\": [..]}}",
                oracle_path.display()
            )
        })?;
    if oracle.filenames.len() != oracle.labels.len() {
        bail!(
            "{}: {} filenames but {} labels",
            oracle_path.display(),
            oracle.filenames.len(),
            oracle.labels.len()
        );
    }
    if let Some(l) = oracle
        .labels
        .iter()
        .find(|&&l| l < 0 || l as usize >= cfg.classes.len())
    {
        bail!(
            "{}: label {l} is not a class index (0 to {})",
            oracle_path.display(),
            cfg.classes.len() - 1
        );
    }
    let base = match resolve(ctx, cfg, "training_data_path")? {
        Some(p) => {
            let set = read_set(&p, "training data")?;
            let Some(labels) = &set.labels else {
                bail!("the training data {} has no labels dataset", p.display());
            };
            if labels.len() != set.len() {
                bail!(
                    "the training data {}: {} labels for {} spectra",
                    p.display(),
                    labels.len(),
                    set.len()
                );
            }
            if let Some(i) = labels
                .iter()
                .position(|&l| l < 0 || l as usize >= cfg.classes.len())
            {
                bail!(
                    "the training data {}: label {} of {} is not a class index (0 to {})",
                    p.display(),
                    labels[i],
                    set.filenames[i],
                    cfg.classes.len() - 1
                );
            }
            Some(set)
        }
        None => None,
    };
    for (what, w) in [("the spectra of the oracle answers", &to_add.wave)]
        .into_iter()
        .chain(base.as_ref().map(|b| ("the training data", &b.wave)))
    {
        if !same_wave(w, &pool.wave) {
            bail!(
                "different waves: {what} has {}, the pool {}",
                describe_wave(w),
                describe_wave(&pool.wave)
            );
        }
    }
    let index: HashMap<&String, usize> = to_add
        .filenames
        .iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let mut filenames = Vec::new();
    let mut rows: Vec<f64> = Vec::new();
    let mut labels = Vec::new();
    let mut seen = HashSet::new();
    if let Some(b) = &base {
        for (i, name) in b.filenames.iter().enumerate() {
            if seen.insert(name.clone()) {
                filenames.push(name.clone());
                rows.extend_from_slice(b.row(i));
                labels.push(b.labels.as_ref().map_or(0, |l| l[i]));
            }
        }
    }
    for (name, &label) in oracle.filenames.iter().zip(&oracle.labels) {
        let i = *index.get(name).ok_or_else(|| {
            anyhow!(
                "{name} (an oracle answer) is not in {}",
                to_add_path.display()
            )
        })?;
        if seen.insert(name.clone()) {
            filenames.push(name.clone());
            rows.extend_from_slice(to_add.row(i));
            labels.push(label);
        }
    }
    if filenames.is_empty() {
        bail!(
            "no labelled spectra to train on: the oracle answers and the training data are empty"
        );
    }
    let points = pool.wave.len();
    let fluxes = ndarray::Array2::from_shape_vec((filenames.len(), points), rows)?;
    Ok(SpectraSet {
        filenames,
        wave: pool.wave.clone(),
        fluxes,
        labels: Some(labels),
    })
}

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
