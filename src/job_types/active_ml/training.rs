//! The labelled set of an iteration: the earlier training data plus the oracle's answers.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, anyhow, bail};

use super::{
    AlConfig, OracleData,
    iteration::{describe_wave, read_set, resolve, same_wave},
};
use crate::{job_types::JobContext, science::h5::SpectraSet};

pub(super) fn training_set(
    cfg: &AlConfig,
    ctx: &JobContext,
    pool: &SpectraSet,
) -> anyhow::Result<SpectraSet> {
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
