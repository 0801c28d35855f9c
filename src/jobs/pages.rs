//! Server-rendered job pages. One URL per view: htmx requests (`HX-Request`) get the partial,
//! others the full page. askama escapes all user text.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::{
    model::{JobPage, JobView},
    service::{self, ListQuery, LogPart, NewJob},
};
use crate::{
    error::ApiError,
    files::service::Listing,
    pages::{Layout, PageError, Rendered, html, human_size, is_htmx, json_attr, url_part},
    queue::Phase,
    science::preprocess::Skipped,
    state::AppState,
};

/// A part of a finished job's page that only a domain above the jobs knows how to draw (the
/// active-learning workspace). `app` registers them as [`JobSections`]; the job page asks each
/// in turn.
pub trait JobSection: Send + Sync {
    /// The section's HTML for `job`, or `None` when it has none for such a job.
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        job: &'a JobView,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>>;
}

/// The sections every job page asks, in order (app data).
#[derive(Clone, Default)]
pub struct JobSections(pub Vec<Arc<dyn JobSection>>);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(jobs_page))
        .route("/jobs/new", web::get().to(super::form::new_job_page))
        .route("/jobs/new", web::post().to(super::form::create_job))
        .route(
            "/jobs/new/targets",
            web::get().to(super::form::target_choices),
        )
        .route("/jobs/{job_id}", web::get().to(job_page))
        .route("/jobs/{job_id}/results", web::get().to(results_partial))
        .route("/jobs/{job_id}/log-tail", web::get().to(log_tail))
        .route("/jobs/{job_id}/rerun", web::post().to(rerun));
}

#[derive(Template)]
#[template(path = "jobs/list.html")]
struct JobsList<'a> {
    layout: Layout,
    rows: JobRows<'a>,
    phases: &'a [Phase],
    types: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "jobs/rows.html")]
struct JobRows<'a> {
    page: &'a JobPage,
    /// Jobs waiting in the queue: an htmx poll swaps the header's count out of band.
    queued: Option<u64>,
    phase: String,
    job_type: String,
    /// Only the tasks of this sweep (or jobs made from this job), when set.
    parent: String,
    next_offset: Option<u64>,
    prev_offset: Option<u64>,
}

#[derive(Template)]
#[template(path = "jobs/show.html")]
struct JobShow<'a> {
    layout: Layout,
    summary: JobSummary<'a>,
    results: Results,
    log: LogTail,
}

/// The end of the job's log; polled while the job can still write to it.
#[derive(Template)]
#[template(path = "jobs/log.html")]
struct LogTail {
    job_id: Uuid,
    active: bool,
    log: String,
}

#[derive(Template)]
#[template(path = "jobs/summary.html")]
struct JobSummary<'a> {
    job: &'a JobView,
    /// (step, done, total, percent, pace) while the job runs in this process.
    progress: Option<(String, u64, u64, u64, String)>,
    /// The GPU slot's device, while the job holds one in this process.
    gpu: Option<String>,
}

/// What a finished job produced, drawn by type.
#[derive(Template)]
#[template(path = "jobs/results.html")]
struct Results {
    job_id: Uuid,
    phase: Phase,
    files: Vec<FileLink>,
    preprocessing: Option<PrepResults>,
    plot_png: Option<String>,
    /// Sections other domains draw for this job (the active-learning workspace).
    sections: Vec<Rendered>,
}

// Sub-templates drawn inside a page are our own escaped HTML: askama must not escape them again.
impl askama::filters::HtmlSafe for JobRows<'_> {}
impl askama::filters::HtmlSafe for JobSummary<'_> {}
impl askama::filters::HtmlSafe for Results {}
impl askama::filters::HtmlSafe for LogTail {}

struct FileLink {
    name: String,
    size: String,
    url: String,
}

struct PrepResults {
    spectra: usize,
    skipped: Vec<Skipped>,
    skipped_total: usize,
    /// `{wave, spectra: [{filename, flux}]}` of the first rows, for the plot.
    sample: String,
}

async fn jobs_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let q = ListQuery {
        limit: Some(q.limit.unwrap_or(20)),
        ..q.into_inner()
    };
    let phase = q.phase.clone().unwrap_or_default();
    let job_type = q.job_type.clone().unwrap_or_default();
    let parent = q.parent.clone().unwrap_or_default();
    let page = service::list(&state, q).await?;
    let layout = Layout::new(&state, "jobs").await;
    let rows = JobRows {
        queued: layout.queued.filter(|_| is_htmx(&req)),
        next_offset: Some(page.offset + page.limit).filter(|n| *n < page.total),
        prev_offset: (page.offset > 0).then(|| page.offset.saturating_sub(page.limit)),
        page: &page,
        phase,
        job_type,
        parent,
    };
    if is_htmx(&req) {
        return html(rows.render());
    }
    html(
        JobsList {
            layout,
            rows,
            phases: &Phase::ALL,
            types: state.registry.names(),
        }
        .render(),
    )
}

fn summary<'a>(state: &AppState, job: &'a JobView) -> JobSummary<'a> {
    let progress = state
        .workers
        .progress(job.job_id)
        .map(|(step, done, total, pace)| {
            let percent = (done * 100).checked_div(total).unwrap_or(0).min(100);
            (step, done, total, percent, pace.unwrap_or_default())
        });
    let gpu = state.workers.gpu.device_of(job.job_id);
    JobSummary { job, progress, gpu }
}

async fn job_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    sections: web::Data<JobSections>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, PageError> {
    let job = service::get(&state, *id).await?;
    if is_htmx(&req) {
        return html(summary(&state, &job).render());
    }
    let log = log_tail_of(&state, &job).await?;
    let results = results(&state, &sections, &job).await?;
    html(
        JobShow {
            layout: Layout::new(&state, "jobs").await,
            summary: summary(&state, &job),
            results,
            log,
        }
        .render(),
    )
}

/// The results section alone, fetched again when the job's phase changes.
async fn results_partial(
    state: web::Data<AppState>,
    sections: web::Data<JobSections>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, PageError> {
    let job = service::get(&state, *id).await?;
    html(results(&state, &sections, &job).await?.render())
}

async fn results(
    state: &AppState,
    sections: &JobSections,
    job: &JobView,
) -> Result<Results, ApiError> {
    let listing = {
        let storage = state.storage.clone();
        let dir = job.dir_path.clone();
        web::block(move || crate::files::service::list(&storage, &dir))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("listing: {e}")))?
    };
    let listing = match listing {
        Ok(l) => Some(l),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let has = |name: &str| {
        listing
            .as_ref()
            .is_some_and(|l| l.files.iter().any(|f| f.filename == name))
    };
    let dir = state.workers.job_dir(&job.dir_path);
    let done = job.phase == Phase::Completed;
    let preprocessing = match job.job_type.as_str() {
        "DATA_PREPROCESSING" if done && has("result.h5") => Some(
            web::block(move || prep_results(&dir))
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading result.h5: {e}")))??,
        ),
        _ => None,
    };
    let plot_png = listing.as_ref().and_then(|l| {
        l.files
            .iter()
            .find(|f| f.filename.ends_with(".png"))
            .map(|f| download_url(&job.dir_path, &f.filename))
    });
    let mut drawn = Vec::new();
    for section in &sections.0 {
        if let Some(html) = section.render(state, job).await? {
            drawn.push(Rendered(html));
        }
    }
    Ok(Results {
        job_id: job.job_id,
        phase: job.phase,
        files: listing.map_or_else(Vec::new, |l| file_links(&job.dir_path, l)),
        preprocessing,
        plot_png,
        sections: drawn,
    })
}

pub fn download_url(dir_path: &str, filename: &str) -> String {
    format!(
        "/api/files/{}/download?parent_dir_path={}",
        url_part(filename),
        url_part(dir_path)
    )
}

fn file_links(dir_path: &str, listing: Listing) -> Vec<FileLink> {
    listing
        .files
        .into_iter()
        .map(|f| FileLink {
            url: download_url(dir_path, &f.filename),
            size: human_size(f.size),
            name: f.filename,
        })
        .collect()
}

/// How many spectra, which files were skipped and why, and the first rows to plot.
fn prep_results(dir: &std::path::Path) -> Result<PrepResults, ApiError> {
    const SHOWN_SKIPPED: usize = 200;
    const PLOTTED: usize = 5;
    let (spectra, head) = crate::science::h5::read_head(&dir.join("result.h5"), PLOTTED)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("result.h5: {e}")))?;
    let mut skipped: Vec<Skipped> = std::fs::read(dir.join("skipped.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let skipped_total = skipped.len();
    skipped.truncate(SHOWN_SKIPPED);
    let rows: Vec<serde_json::Value> = head
        .filenames
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({"filename": name, "flux": head.row(i)}))
        .collect();
    Ok(PrepResults {
        spectra,
        skipped,
        skipped_total,
        sample: json_attr(&serde_json::json!({"wave": head.wave, "spectra": rows})),
    })
}

async fn log_tail_of(state: &AppState, job: &JobView) -> Result<LogTail, ApiError> {
    let bytes = service::log(state, job.job_id, LogPart::Last(TAIL_BYTES)).await?;
    Ok(LogTail {
        job_id: job.job_id,
        active: !job.phase.is_terminal(),
        log: tail(&bytes),
    })
}

async fn log_tail(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, PageError> {
    let job = service::get(&state, *id).await?;
    html(log_tail_of(&state, &job).await?.render())
}

/// Runs the job's configuration again as a new job, and shows it.
async fn rerun(state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, PageError> {
    let job = service::get(&state, *id).await?;
    let new = service::create(
        &state,
        NewJob {
            job_type: job.job_type,
            label: job.label,
            description: job.description,
            config: job.config,
            // A chain has one next iteration per job: a rerun stands alone.
            parent_job_id: None,
        },
    )
    .await?;
    service::run(&state, new.job_id).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", format!("/jobs/{}", new.job_id)))
        .finish())
}

/// Enough bytes for 200 ordinary lines; a page never reads a long log from its start.
const TAIL_BYTES: u64 = 64 * 1024;

/// The last 200 lines, which is what a person watching a job reads.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}
