//! The active-learning chain: "continue" turns a labelled ACTIVE_ML iteration into the next
//! one (the file protocol of the original, done by the server), and the chain view lists the
//! iterations with their labelled counts and performance estimates.

use std::path::PathBuf;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    error::ApiError,
    job_types::{
        Root,
        active_ml::{AlConfig, OracleData},
    },
    jobs::{
        model::JobView,
        service::{self, NewJob},
    },
    labellings::{
        model::{LabellingView, SpectrumSet},
        service as labellings,
    },
    queue::{
        Phase,
        job::{self, Column as C},
    },
    state::AppState,
};

fn job_dir(state: &AppState, job: &JobView) -> PathBuf {
    state
        .config
        .files_root()
        .join(job.dir_path.trim_start_matches('/'))
}

fn labelled(l: &LabellingView) -> Option<&str> {
    l.user_label.as_deref().filter(|s| !s.trim().is_empty())
}

/// The sets an iteration's answers come from; not the candidates, which run to 100,000s in
/// every iteration of a survey.
const ANSWERED: [SpectrumSet; 2] = [SpectrumSet::Oracle, SpectrumSet::PerformanceEstimation];

/// Share of the labelled performance-estimation sample whose user label is a candidate class.
fn perf_estimate(list: &[LabellingView], cfg: &AlConfig) -> Option<f64> {
    let answered: Vec<&str> = list
        .iter()
        .filter(|l| l.spectrum_set == SpectrumSet::PerformanceEstimation)
        .filter_map(labelled)
        .collect();
    if answered.is_empty() {
        return None;
    }
    let hits = answered
        .iter()
        .filter(|l| cfg.candidate_classes.iter().any(|c| c == *l))
        .count();
    Some(hits as f64 / answered.len() as f64)
}

fn config_of(job: &JobView) -> Result<AlConfig, ApiError> {
    AlConfig::parse(job.config.as_ref().unwrap_or(&Value::Null)).map_err(ApiError::from)
}

/// POST /api/jobs/{id}/continue: writes `oracle_data.json`, appends the performance estimate
/// to `perf_est_list.json`, creates the next iteration from `new_config.json` and runs it.
pub async fn continue_job(
    state: &AppState,
    id: Uuid,
    allow_partial: bool,
) -> Result<JobView, ApiError> {
    let job = service::get(state, id).await?;
    if job.job_type != "ACTIVE_ML" {
        return Err(ApiError::Conflict(format!(
            "job {id} is a {} job; only ACTIVE_ML iterations continue",
            job.job_type
        )));
    }
    if job.phase != Phase::Completed {
        return Err(ApiError::Conflict(format!(
            "job {id} is {}; an iteration continues once it is COMPLETED",
            job.phase.as_str()
        )));
    }
    let existing = job::Entity::find()
        .filter(C::ParentJobId.eq(id))
        .one(&state.db)
        .await?;
    if let Some(next) = existing {
        return Err(ApiError::Conflict(format!(
            "job {id} was already continued by job {}",
            next.job_id
        )));
    }
    let cfg = config_of(&job)?;
    let list = labellings::list_sets(&state.db, id, &ANSWERED).await?;
    let oracle: Vec<&LabellingView> = list
        .iter()
        .filter(|l| l.spectrum_set == SpectrumSet::Oracle)
        .collect();
    let missing = oracle.iter().filter(|l| labelled(l).is_none()).count();
    if missing > 0 && !allow_partial {
        return Err(ApiError::Conflict(format!(
            "{missing} of {} oracle spectra are still unlabelled; label them, or continue with ?allow_partial=true",
            oracle.len()
        )));
    }
    let mut answers = OracleData {
        filenames: Vec::new(),
        labels: Vec::new(),
    };
    for l in oracle.iter().filter(|l| labelled(l).is_some()) {
        let label = labelled(l).unwrap_or_default();
        let class = cfg.classes.iter().position(|c| c == label).ok_or_else(|| {
            ApiError::invalid(
                "user_label",
                format!(
                    "{}: {label:?} is not one of the classes {:?}",
                    l.spectrum_filename, cfg.classes
                ),
            )
        })?;
        answers.filenames.push(l.spectrum_filename.clone());
        answers.labels.push(class as i64);
    }
    let dir = job_dir(state, &job);
    let write = |name: &str, value: &Value| -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
        std::fs::write(dir.join(name), bytes)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot write {name}: {e}")))
    };
    write(
        "oracle_data.json",
        &serde_json::to_value(&answers).map_err(anyhow::Error::from)?,
    )?;
    // The earlier estimates come from the list this iteration was given, so a repeated
    // continue (after a failed create) does not append the estimate twice.
    let paths = state.workers.paths();
    let mut estimates: Vec<Value> = match cfg.perf_est_list_path.trim() {
        "" => Vec::new(),
        p => paths
            .resolve(Root::Files, "perf_est_list_path", p)
            .ok()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
    };
    if let Some(p) = perf_estimate(&list, &cfg) {
        estimates.push(Value::from(p));
        // The model this iteration registered is known by it from now on.
        crate::models::set_perf_estimate(&state.db, id, p).await?;
        crate::models::tracking::log_estimate(&state.config.tracking, &dir, p).await;
    }
    write("perf_est_list.json", &Value::from(estimates))?;
    let next: Value = std::fs::read(dir.join("new_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::Conflict(format!("job {id} has no readable new_config.json")))?;
    let iteration = next
        .get("iteration")
        .and_then(Value::as_u64)
        .unwrap_or(cfg.iteration + 1);
    let base: String = job.label.chars().take(36).collect();
    let label = format!(
        "{} · iteration {iteration}",
        base.split(" · iteration")
            .next()
            .unwrap_or(&base)
            .trim_end()
    );
    let created = service::create(
        state,
        NewJob {
            job_type: "ACTIVE_ML".into(),
            label: label.chars().take(50).collect(),
            description: job.description.clone(),
            config: Some(next),
            parent_job_id: Some(id),
        },
    )
    .await?;
    service::run(state, created.job_id).await
}

/// One iteration of a chain.
/// How one candidate class fared in an iteration's performance-estimation sample.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClassEstimate {
    pub class: String,
    /// Spectra of the labelled sample the model predicted as this class.
    pub predicted: usize,
    /// Of those, how many the researcher labelled as this class.
    pub confirmed: usize,
    /// confirmed / predicted (null when none was predicted as it).
    pub precision: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChainEntry {
    pub job_id: Uuid,
    pub iteration: u64,
    pub phase: Phase,
    pub label: String,
    pub oracle_size: usize,
    pub labelled: usize,
    pub perf_estimate: Option<f64>,
    /// Per candidate class, from the same labelled sample.
    pub class_estimates: Vec<ClassEstimate>,
    /// The spectra of each class (in the config's order) the iteration trained on; empty
    /// before it finished training (or for an iteration made before mljm recorded it).
    pub training_per_class: Vec<usize>,
}

impl ChainEntry {
    /// "40 · 7 · 3": the training set per class, for the chain table.
    pub fn trained_text(&self) -> String {
        if self.training_per_class.is_empty() {
            return "—".into();
        }
        self.training_per_class
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// "single peak 0.80 (4/5) · double peak — (0/0)", or "—" before any was labelled.
    pub fn estimates_text(&self) -> String {
        if self.class_estimates.iter().all(|c| c.predicted == 0) {
            return "—".into();
        }
        self.class_estimates
            .iter()
            .map(|c| {
                let p = c.precision.map_or("—".to_string(), |p| format!("{p:.2}"));
                format!("{} {p} ({}/{})", c.class, c.confirmed, c.predicted)
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// Per candidate class: the labelled sample's spectra predicted as it and those confirmed.
fn class_estimates(list: &[LabellingView], cfg: &AlConfig) -> Vec<ClassEstimate> {
    cfg.candidate_classes
        .iter()
        .map(|class| {
            let predicted: Vec<&LabellingView> = list
                .iter()
                .filter(|l| l.spectrum_set == SpectrumSet::PerformanceEstimation)
                .filter(|l| labelled(l).is_some())
                .filter(|l| l.model_prediction.as_deref() == Some(class.as_str()))
                .collect();
            let confirmed = predicted
                .iter()
                .filter(|l| labelled(l) == Some(class.as_str()))
                .count();
            ClassEstimate {
                class: class.clone(),
                predicted: predicted.len(),
                confirmed,
                precision: (!predicted.is_empty())
                    .then(|| confirmed as f64 / predicted.len() as f64),
            }
        })
        .collect()
}

/// `training_per_class` of the iteration's `metrics.json`, if it has one.
fn training_per_class(state: &AppState, job: &JobView) -> Vec<usize> {
    let path = job_dir(state, job).join("metrics.json");
    // metrics.json is a few kB; anything much larger is not ours.
    if std::fs::metadata(&path).map_or(true, |m| m.len() > 1 << 20) {
        return Vec::new();
    }
    std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v.get("training_per_class")?.clone()).ok())
        .unwrap_or_default()
}

/// GET /api/jobs/{id}/chain: from the first iteration to the last, whichever member is asked.
pub async fn chain(state: &AppState, id: Uuid) -> Result<Vec<ChainEntry>, ApiError> {
    let mut first = service::get(state, id).await?;
    if first.job_type != "ACTIVE_ML" {
        return Err(ApiError::Conflict(format!(
            "job {id} is a {} job, not an ACTIVE_ML iteration",
            first.job_type
        )));
    }
    let mut guard = 0;
    while let Some(parent) = first.parent_job_id {
        guard += 1;
        match service::get(state, parent).await {
            Ok(p) if guard < 10_000 => first = p,
            _ => break,
        }
    }
    let mut out = Vec::new();
    let mut current = Some(first);
    while let Some(job) = current {
        let list = labellings::list_sets(&state.db, job.job_id, &ANSWERED).await?;
        let cfg = config_of(&job).ok();
        let oracle: Vec<&LabellingView> = list
            .iter()
            .filter(|l| l.spectrum_set == SpectrumSet::Oracle)
            .collect();
        out.push(ChainEntry {
            job_id: job.job_id,
            iteration: cfg.as_ref().map_or(0, |c| c.iteration),
            phase: job.phase,
            label: job.label.clone(),
            oracle_size: oracle.len(),
            labelled: oracle.iter().filter(|l| labelled(l).is_some()).count(),
            perf_estimate: cfg.as_ref().and_then(|c| perf_estimate(&list, c)),
            class_estimates: cfg
                .as_ref()
                .map_or_else(Vec::new, |c| class_estimates(&list, c)),
            training_per_class: training_per_class(state, &job),
        });
        let child = job::Entity::find()
            .filter(C::ParentJobId.eq(job.job_id))
            .order_by_asc(C::CreatedAt)
            .one(&state.db)
            .await?;
        current = child.map(JobView::from);
        if out.len() > 10_000 {
            break;
        }
    }
    Ok(out)
}
