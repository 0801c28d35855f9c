//! The labelled set of an iteration: the earlier training data plus the oracle's answers.

use std::collections::HashSet;

use anyhow::{Context, anyhow, bail};

use super::{
    AlConfig, OracleData,
    iteration::{check_finite, describe_wave, open_pool, read_set, resolve, same_wave},
};
use crate::{job_types::JobContext, science::h5::SpectraSet};

/// The labelled set: `training_data_path` plus the oracle's answers, whose fluxes are read
/// (those rows alone) from `training_data_to_add_path`; a filename seen twice keeps its first
/// row. `wave` is the pool's, which both must share.
pub(super) fn training_set(
    cfg: &AlConfig,
    ctx: &JobContext,
    wave: &[f64],
) -> anyhow::Result<SpectraSet> {
    let to_add_path =
        resolve(ctx, cfg, "training_data_to_add_path")?.context("training_data_to_add_path")?;
    let to_add_what = "spectra of the oracle answers (training_data_to_add_path)";
    let to_add = open_pool(&to_add_path, to_add_what)?;
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
        if !same_wave(w, wave) {
            bail!(
                "different waves: {what} has {}, the pool {}",
                describe_wave(w),
                describe_wave(wave)
            );
        }
    }
    let wanted: HashSet<&str> = oracle.filenames.iter().map(String::as_str).collect();
    let read_error = |e: hdf5::Error| {
        anyhow!(
            "cannot read the {to_add_what} {}: {e}",
            to_add_path.display()
        )
    };
    let found = to_add.find(&wanted).map_err(read_error)?;
    let rows: Vec<usize> = oracle
        .filenames
        .iter()
        .map(|name| {
            found.get(name).copied().ok_or_else(|| {
                anyhow!(
                    "{name} (an oracle answer) is not in {}",
                    to_add_path.display()
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let answers = to_add.select(&rows).map_err(read_error)?;
    check_finite(&answers, &rows, to_add_what, &to_add_path)?;
    let mut filenames = Vec::new();
    let mut fluxes: Vec<f64> = Vec::new();
    let mut labels = Vec::new();
    let mut seen = HashSet::new();
    if let Some(b) = &base {
        for (i, name) in b.filenames.iter().enumerate() {
            if seen.insert(name.clone()) {
                filenames.push(name.clone());
                fluxes.extend_from_slice(b.row(i));
                labels.push(b.labels.as_ref().map_or(0, |l| l[i]));
            }
        }
    }
    for (i, (name, &label)) in oracle.filenames.iter().zip(&oracle.labels).enumerate() {
        if seen.insert(name.clone()) {
            filenames.push(name.clone());
            fluxes.extend_from_slice(answers.row(i));
            labels.push(label);
        }
    }
    if filenames.is_empty() {
        bail!(
            "no labelled spectra to train on: the oracle answers and the training data are empty"
        );
    }
    let fluxes = ndarray::Array2::from_shape_vec((filenames.len(), wave.len()), fluxes)?;
    Ok(SpectraSet {
        filenames,
        wave: wave.to_vec(),
        fluxes,
        labels: Some(labels),
    })
}
