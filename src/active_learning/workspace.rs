//! The labelling workspace of a finished ACTIVE_ML iteration: its oracle batch,
//! performance-estimation sample and candidates with prediction and entropy, the chain's
//! iterations and estimates. The page's script does the labelling through the JSON API.

use std::collections::HashMap;

use askama::Template;
use serde::Serialize;
use uuid::Uuid;

use super::chain::{self, ChainEntry};
use crate::{
    error::ApiError,
    job_types::active_ml::NewLabelling,
    jobs::{model::JobView, pages::download_url},
    labellings::{self, model::SpectrumSet},
    pages::json_attr,
    state::AppState,
};

#[derive(Template)]
#[template(path = "jobs/workspace.html")]
pub struct Workspace {
    job_id: Uuid,
    iteration: u64,
    /// (key, class name) for the buttons: keys 1–9.
    classes: Vec<(usize, String)>,
    sets: Vec<SetView>,
    oracle_total: usize,
    oracle_labelled: usize,
    chain: Vec<ChainEntry>,
    /// The next iteration, once this one was continued.
    next: Option<Uuid>,
    data: String,
}

impl askama::filters::HtmlSafe for Workspace {}

struct SetView {
    id: &'static str,
    title: &'static str,
    items: Vec<Item>,
}

#[derive(Serialize, Clone)]
struct Item {
    id: Uuid,
    filename: String,
    set: &'static str,
    prediction: String,
    entropy: Option<f64>,
    label: String,
    comment: String,
}

impl Item {
    fn entropy_text(&self) -> String {
        self.entropy.map_or_else(String::new, |e| format!("{e:.3}"))
    }
}

#[derive(Serialize)]
struct Data<'a> {
    job_id: Uuid,
    classes: Vec<&'a str>,
    items: Vec<&'a Item>,
    prep_url: String,
    tsne_url: Option<String>,
    perf: Vec<(u64, f64)>,
}

fn title(set: SpectrumSet) -> &'static str {
    match set {
        SpectrumSet::Oracle => "Oracle batch",
        SpectrumSet::PerformanceEstimation => "Performance-estimation sample",
        SpectrumSet::Candidate => "Candidates",
    }
}

/// Entropies by (set, filename) from the job's `labellings.json` (older jobs have none).
fn entropies(dir: &std::path::Path) -> HashMap<(String, String), f64> {
    let proposed: Vec<NewLabelling> = std::fs::read(dir.join("labellings.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    proposed
        .into_iter()
        .filter_map(|p| Some(((p.spectrum_set, p.spectrum_filename), p.entropy?)))
        .collect()
}

pub async fn build(state: &AppState, job: &JobView) -> Result<Workspace, ApiError> {
    let config = job.config.clone().unwrap_or_default();
    let class_names: Vec<String> = config
        .get("classes")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let iteration = config
        .get("iteration")
        .and_then(|i| i.as_u64())
        .unwrap_or(0);
    let dir = state.workers.job_dir(&job.dir_path);
    let entropy = entropies(&dir);
    let list = labellings::service::list(&state.db, job.job_id).await?;
    let mut sets: Vec<SetView> = SpectrumSet::ALL
        .into_iter()
        .map(|s| SetView {
            id: s.as_str(),
            title: title(s),
            items: Vec::new(),
        })
        .collect();
    for l in list {
        let set = l.spectrum_set;
        let item = Item {
            id: l.labelling_id,
            entropy: entropy
                .get(&(set.as_str().to_string(), l.spectrum_filename.clone()))
                .copied(),
            filename: l.spectrum_filename,
            set: set.as_str(),
            prediction: l.model_prediction.unwrap_or_default(),
            label: l.user_label.unwrap_or_default(),
            comment: l.user_comment.unwrap_or_default(),
        };
        if let Some(view) = sets.iter_mut().find(|v| v.id == set.as_str()) {
            view.items.push(item);
        }
    }
    sets.retain(|s| !s.items.is_empty());
    let oracle: Vec<&Item> = sets
        .iter()
        .filter(|s| s.id == "ORACLE")
        .flat_map(|s| &s.items)
        .collect();
    let oracle_total = oracle.len();
    let oracle_labelled = oracle.iter().filter(|i| !i.label.trim().is_empty()).count();
    let chain = chain::chain(state, job.job_id).await?;
    let next = chain
        .iter()
        .position(|e| e.job_id == job.job_id)
        .and_then(|i| chain.get(i + 1))
        .map(|e| e.job_id);
    let has_tsne = dir.join("dim_reduc.json").is_file();
    let data = json_attr(&Data {
        job_id: job.job_id,
        classes: class_names.iter().map(String::as_str).collect(),
        items: sets.iter().flat_map(|s| &s.items).collect(),
        prep_url: download_url(&job.dir_path, "prep_spectra.json"),
        tsne_url: has_tsne.then(|| download_url(&job.dir_path, "dim_reduc.json")),
        perf: chain
            .iter()
            .filter_map(|e| Some((e.iteration, e.perf_estimate?)))
            .collect(),
    });
    Ok(Workspace {
        job_id: job.job_id,
        iteration,
        classes: class_names
            .into_iter()
            .take(9)
            .enumerate()
            .map(|(i, c)| (i + 1, c))
            .collect(),
        sets,
        oracle_total,
        oracle_labelled,
        chain,
        next,
        data,
    })
}
