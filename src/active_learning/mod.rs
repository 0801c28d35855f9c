//! The active-learning loop around ACTIVE_ML jobs: the labelling workspace of a finished
//! iteration, "continue" to the next one, and the chain of iterations. It stores the
//! labellings a finished iteration proposed, through the worker's success hook.

pub mod chain;
pub mod routes;
pub mod workspace;

use std::{path::PathBuf, sync::Arc};

use futures_util::{FutureExt, future::BoxFuture};
use sea_orm::DatabaseConnection;

use crate::{
    error::ApiError,
    job_types::active_ml::NewLabelling as Proposed,
    jobs::{model::JobView, pages::JobSection},
    labellings::{model::NewLabelling, service},
    queue::{Phase, job},
    state::{AppState, Extensions},
};

/// Plugs the loop into the worker: the labellings of a finished iteration.
pub fn extend(ext: &mut Extensions) {
    ext.on_success(
        "ACTIVE_ML",
        Arc::new(|db, job, dir| import_labellings(db, job, dir).boxed()),
    );
}

/// The loop's part of the job page: the labelling workspace.
pub fn job_section() -> Arc<dyn JobSection> {
    Arc::new(WorkspaceSection)
}

/// An iteration leaves the spectra it proposes for labelling in `labellings.json`; they
/// become rows before the job is COMPLETED (replacing those of an earlier attempt).
async fn import_labellings(
    db: DatabaseConnection,
    job: job::Model,
    dir: PathBuf,
) -> Result<(), String> {
    let path = dir.join("labellings.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let proposed: Vec<Proposed> =
        serde_json::from_slice(&bytes).map_err(|e| format!("labellings.json: {e}"))?;
    let list = proposed
        .into_iter()
        .map(|p| NewLabelling {
            job_id: job.job_id,
            spectrum_filename: p.spectrum_filename,
            spectrum_set: p.spectrum_set,
            sequence_iteration: p.sequence_iteration,
            model_prediction: p.model_prediction,
            user_label: None,
            user_comment: None,
            entropy: p.entropy,
            result_row: p.result_row.and_then(|r| i64::try_from(r).ok()),
        })
        .collect();
    service::replace_for_job(&db, job.job_id, list)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create the labellings: {e}"))
}

/// The labelling workspace under a COMPLETED ACTIVE_ML job's results.
struct WorkspaceSection;

impl JobSection for WorkspaceSection {
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        job: &'a JobView,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        async move {
            if job.job_type != "ACTIVE_ML" || job.phase != Phase::Completed {
                return Ok(None);
            }
            let workspace = workspace::build(state, job).await?;
            let html = askama::Template::render(&workspace)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("template: {e}")))?;
            Ok(Some(html))
        }
        .boxed()
    }
}
