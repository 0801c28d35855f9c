//! Server-rendered job pages. One URL per view: htmx requests (`HX-Request`) get the partial,
//! others the full page. askama escapes all user text.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use uuid::Uuid;

use super::{
    model::{JobPage, JobView, Phase},
    service::{self, ListQuery, LogPart},
};
use crate::{app::AppState, error::ApiError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(jobs_page))
        .route("/jobs/{job_id}", web::get().to(job_page))
        .route("/jobs/{job_id}/log-tail", web::get().to(log_tail));
}

#[derive(Template)]
#[template(path = "jobs/list.html")]
struct JobsList<'a> {
    page: &'a JobPage,
    phases: &'a [Phase],
    phase: String,
    job_type: String,
    types: Vec<&'static str>,
    next_offset: Option<u64>,
    prev_offset: Option<u64>,
}

#[derive(Template)]
#[template(path = "jobs/rows.html")]
struct JobRows<'a> {
    page: &'a JobPage,
    phase: String,
    job_type: String,
    next_offset: Option<u64>,
    prev_offset: Option<u64>,
}

#[derive(Template)]
#[template(path = "jobs/show.html")]
struct JobShow<'a> {
    job: &'a JobView,
    log: String,
}

#[derive(Template)]
#[template(path = "jobs/summary.html")]
struct JobSummary<'a> {
    job: &'a JobView,
}

fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request")
}

fn html(body: Result<String, askama::Error>) -> Result<HttpResponse, ApiError> {
    let body = body.map_err(|e| ApiError::Internal(anyhow::anyhow!("template: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

async fn jobs_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = ListQuery {
        limit: Some(q.limit.unwrap_or(20)),
        ..q.into_inner()
    };
    let phase = q.phase.clone().unwrap_or_default();
    let job_type = q.job_type.clone().unwrap_or_default();
    let page = service::list(&state, q).await?;
    let next_offset = Some(page.offset + page.limit).filter(|n| *n < page.total);
    let prev_offset = (page.offset > 0).then(|| page.offset.saturating_sub(page.limit));
    if is_htmx(&req) {
        return html(
            JobRows {
                page: &page,
                phase,
                job_type,
                next_offset,
                prev_offset,
            }
            .render(),
        );
    }
    html(
        JobsList {
            page: &page,
            phases: &Phase::ALL,
            phase,
            job_type,
            types: state.registry.names(),
            next_offset,
            prev_offset,
        }
        .render(),
    )
}

async fn job_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let job = service::get(&state, *id).await?;
    if is_htmx(&req) {
        return html(JobSummary { job: &job }.render());
    }
    let log = tail(&service::log(&state, *id, LogPart::Last(TAIL_BYTES)).await?);
    html(JobShow { job: &job, log }.render())
}

async fn log_tail(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let log = tail(&service::log(&state, *id, LogPart::Last(TAIL_BYTES)).await?);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(log))
}

/// Enough bytes for 200 ordinary lines; a page never reads a long log from its start.
const TAIL_BYTES: u64 = 64 * 1024;

/// The last 200 lines, which is what a person watching a job reads.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}
