//! The labelling workspace of a finished ACTIVE_ML iteration: its oracle batch,
//! performance-estimation sample and candidates with prediction and entropy, the chain's
//! iterations and estimates. The page's script does the labelling through the JSON API.
//!
//! A survey's candidates run to 100,000s, so they come a page at a time from the table
//! (`/jobs/{id}/workspace/candidates?offset=…`), and each spectrum's preprocessed flux is
//! read from the iteration's `result.h5` when it is shown
//! (`GET /api/labellings/{id}/prepared`), not from one file of every candidate.

use std::path::Path;

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chain::{self, ChainEntry};
use crate::{
    error::ApiError,
    jobs::{model::JobView, pages::download_url, service as jobs},
    labellings::{
        model::{LabellingView, SpectrumSet},
        service as labellings,
    },
    pages::{PageError, html, json_attr},
    science::pool::PoolFile,
    state::AppState,
};

/// Candidates on one page of the workspace.
pub const PAGE: u64 = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/jobs/{job_id}/workspace/candidates",
        web::get().to(candidates_page),
    );
}

#[derive(Template)]
#[template(path = "jobs/workspace.html")]
pub struct Workspace {
    job_id: Uuid,
    iteration: u64,
    /// (key, class name) for the buttons: keys 1–9.
    classes: Vec<(usize, String)>,
    /// The oracle batch and the performance-estimation sample, whole.
    sets: Vec<SetView>,
    candidates: Option<Candidates>,
    oracle_total: usize,
    oracle_labelled: usize,
    chain: Vec<ChainEntry>,
    /// The next iteration, once this one was continued.
    next: Option<Uuid>,
    /// Per class, what the labelled set holds.
    labelled_set: Vec<ClassCount>,
    class_names: Vec<String>,
    data: String,
}

impl askama::filters::HtmlSafe for Workspace {}

struct ClassCount {
    name: String,
    /// Spectra of the class the iteration trained on.
    trained: usize,
    /// Labelled as the class in this iteration's oracle batch so far.
    now: usize,
}

struct SetView {
    id: &'static str,
    title: &'static str,
    items: Vec<Item>,
}

/// One page of the candidates, with what the pager needs.
#[derive(Template)]
#[template(path = "jobs/candidates.html")]
pub struct Candidates {
    job_id: Uuid,
    items: Vec<Item>,
    offset: u64,
    total: u64,
}

impl askama::filters::HtmlSafe for Candidates {}

impl Candidates {
    fn first(&self) -> u64 {
        (self.offset + 1).min(self.total)
    }
    fn last(&self) -> u64 {
        self.offset + self.items.len() as u64
    }
    fn prev(&self) -> Option<u64> {
        (self.offset > 0).then(|| self.offset.saturating_sub(PAGE))
    }
    fn next(&self) -> Option<u64> {
        Some(self.offset + PAGE).filter(|n| *n < self.total)
    }
    fn paged(&self) -> bool {
        self.total > PAGE
    }
    /// The offset of the last page.
    fn end(&self) -> u64 {
        self.total.saturating_sub(1) / PAGE * PAGE
    }
}

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

impl From<LabellingView> for Item {
    fn from(l: LabellingView) -> Item {
        Item {
            id: l.labelling_id,
            entropy: l.entropy,
            filename: l.spectrum_filename,
            set: l.spectrum_set.as_str(),
            prediction: l.model_prediction.unwrap_or_default(),
            label: l.user_label.unwrap_or_default(),
            comment: l.user_comment.unwrap_or_default(),
        }
    }
}

#[derive(Serialize)]
struct Data<'a> {
    job_id: Uuid,
    classes: Vec<&'a str>,
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

async fn candidates(
    state: &AppState,
    job_id: Uuid,
    offset: u64,
) -> Result<Option<Candidates>, ApiError> {
    let (rows, total) =
        labellings::page(&state.db, job_id, SpectrumSet::Candidate, offset, PAGE).await?;
    Ok((total > 0).then(|| Candidates {
        job_id,
        items: rows.into_iter().map(Item::from).collect(),
        offset,
        total,
    }))
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
    let answered = [SpectrumSet::Oracle, SpectrumSet::PerformanceEstimation];
    let list = labellings::list_sets(&state.db, job.job_id, &answered).await?;
    let mut sets: Vec<SetView> = answered
        .into_iter()
        .map(|s| SetView {
            id: s.as_str(),
            title: title(s),
            items: Vec::new(),
        })
        .collect();
    for l in list {
        let item = Item::from(l);
        if let Some(view) = sets.iter_mut().find(|v| v.id == item.set) {
            view.items.push(item);
        }
    }
    sets.retain(|s| !s.items.is_empty());
    let oracle = sets
        .iter()
        .filter(|s| s.id == "ORACLE")
        .flat_map(|s| &s.items);
    let oracle_total = oracle.clone().count();
    let oracle_labelled = oracle
        .clone()
        .filter(|i| !i.label.trim().is_empty())
        .count();
    let chain = chain::chain(state, job.job_id).await?;
    let trained_on = chain
        .iter()
        .find(|e| e.job_id == job.job_id)
        .map(|e| e.training_per_class.clone())
        .unwrap_or_default();
    let labelled_set = class_names
        .iter()
        .enumerate()
        .map(|(k, c)| ClassCount {
            name: c.clone(),
            trained: trained_on.get(k).copied().unwrap_or(0),
            now: oracle.clone().filter(|i| i.label == *c).count(),
        })
        .collect();
    let next = chain
        .iter()
        .position(|e| e.job_id == job.job_id)
        .and_then(|i| chain.get(i + 1))
        .map(|e| e.job_id);
    let has_tsne = dir.join("dim_reduc.json").is_file();
    let data = json_attr(&Data {
        job_id: job.job_id,
        classes: class_names.iter().map(String::as_str).collect(),
        tsne_url: has_tsne.then(|| download_url(&job.dir_path, "dim_reduc.json")),
        perf: chain
            .iter()
            .filter_map(|e| Some((e.iteration, e.perf_estimate?)))
            .collect(),
    });
    let names = class_names.clone();
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
        candidates: candidates(state, job.job_id, 0).await?,
        oracle_total,
        oracle_labelled,
        chain,
        next,
        labelled_set,
        class_names: names,
        data,
    })
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: u64,
}

/// `GET /jobs/{id}/workspace/candidates?offset=N`: one page of the candidates (htmx).
async fn candidates_page(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, PageError> {
    if q.offset > i64::MAX as u64 {
        return Err(
            ApiError::invalid("offset", format!("offset {} is too large", q.offset)).into(),
        );
    }
    jobs::get(&state, *id).await?;
    match candidates(&state, *id, q.offset).await? {
        Some(page) => html(page.render()),
        None => Err(ApiError::NotFound(format!("job {id} has no candidates")).into()),
    }
}

/// A spectrum's preprocessed flux, as its iteration's model saw it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Prepared {
    pub spectrum_filename: String,
    /// Wavelengths (Å).
    pub wave: Vec<f64>,
    /// The scaled flux at each wavelength.
    pub flux: Vec<f64>,
}

/// The preprocessed flux of a labelling's spectrum: its row of the iteration's `result.h5`
/// (which links the pool's fluxes), or, for a labelling that has no row (made before rows
/// were kept, or through the API), the job's `prep_spectra.json`.
pub async fn prepared(state: &AppState, labelling_id: Uuid) -> Result<Prepared, ApiError> {
    let l = labellings::get(&state.db, labelling_id).await?;
    let job = jobs::get(state, l.job_id).await?;
    let dir = state.workers.job_dir(&job.dir_path);
    let name = l.spectrum_filename.clone();
    let not_found = move |why: String| ApiError::NotFound(format!("{name}: {why}"));
    let read = move || match l.result_row {
        Some(row) => from_result(&dir.join("result.h5"), row, &l.spectrum_filename),
        None => from_prep(&dir.join("prep_spectra.json"), &l.spectrum_filename),
    };
    web::block(read)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?
        .map_err(not_found)
}

fn from_result(path: &Path, row: i64, name: &str) -> Result<Prepared, String> {
    let pool = PoolFile::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let row = usize::try_from(row).map_err(|_| format!("row {row}"))?;
    let set = pool
        .select(&[row])
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if set.filenames[0] != name {
        return Err(format!(
            "row {row} of {} is {:?}, not this spectrum",
            path.display(),
            set.filenames[0]
        ));
    }
    Ok(Prepared {
        spectrum_filename: name.to_string(),
        wave: set.wave.to_vec(),
        flux: set.row(0).to_vec(),
    })
}

/// The most of `prep_spectra.json` read for one spectrum (older jobs' files are small).
const PREP_LIMIT: u64 = 64 << 20;

fn from_prep(path: &Path, name: &str) -> Result<Prepared, String> {
    #[derive(Deserialize)]
    struct Prep {
        wave: Vec<f64>,
        spectra: std::collections::HashMap<String, Vec<f64>>,
    }
    let size = std::fs::metadata(path)
        .map_err(|_| format!("no row in result.h5 and no {}", path.display()))?
        .len();
    if size > PREP_LIMIT {
        return Err(format!(
            "{} is too large to read ({size} bytes)",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prep: Prep =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let flux = prep
        .spectra
        .remove(name)
        .ok_or_else(|| format!("not in {}", path.display()))?;
    Ok(Prepared {
        spectrum_filename: name.to_string(),
        wave: prep.wave,
        flux,
    })
}
