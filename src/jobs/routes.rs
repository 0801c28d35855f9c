//! `/api/jobs` handlers: thin adapters from HTTP to `service.rs`.

use actix_multipart::Multipart;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    model::{JobPage, JobView},
    service::{self, EndTimes, JobEdit, ListQuery, LogPart, NewJob},
};
use crate::{
    error::{ApiError, Body as Error},
    queue::Action,
    state::AppState,
};

/// This module's part of the OpenAPI document, from the annotations on its handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, submit, get, edit, delete, process, end, log))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/jobs", "/jobs/"])
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/jobs/submit").route(web::post().to(submit)))
    .service(
        web::resource("/jobs/{job_id}")
            .route(web::get().to(get))
            .route(web::patch().to(edit))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/jobs/{job_id}/process/{action}").route(web::post().to(process)))
    .service(web::resource("/jobs/{job_id}/end/{phase}").route(web::post().to(end)))
    .service(web::resource("/jobs/{job_id}/log").route(web::get().to(log)));
}

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(post, path = "/api/jobs/", summary = "Create a job (PENDING)", request_body = NewJob,
    responses((status = 201, description = "created", body = JobView),
              (status = 422, description = "invalid input; `field` names it", body = Error)))]
async fn create(state: web::Data<AppState>, body: web::Json<NewJob>) -> Result<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create(&state, body.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/jobs/", summary = "List jobs, newest first", params(ListQuery),
    responses((status = 200, description = "a page of jobs", body = JobPage),
              (status = 422, description = "invalid query; `field` names it", body = Error)))]
async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state, q.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/jobs/{job_id}", summary = "Read a job", params(JobId),
    responses((status = 200, description = "the job", body = JobView),
              (status = 404, description = "no such job", body = Error)))]
async fn get(state: web::Data<AppState>, id: web::Path<JobId>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state, id.job_id).await?))
}

#[utoipa::path(patch, path = "/api/jobs/{job_id}", summary = "Edit label or description",
    params(JobId), request_body = JobEdit,
    responses((status = 200, description = "the job", body = JobView),
              (status = 404, description = "no such job", body = Error)))]
async fn edit(
    state: web::Data<AppState>,
    id: web::Path<JobId>,
    body: web::Json<JobEdit>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::edit(&state, id.job_id, body.into_inner()).await?))
}

/// `DELETE /api/jobs/{job_id}?with_models=true`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Also unregister the models the job trained (without it, such a job is a 409).
    #[serde(default)]
    with_models: bool,
}

#[utoipa::path(delete, path = "/api/jobs/{job_id}", summary = "Delete a job and its directory",
    params(JobId, DeleteQuery),
    responses((status = 204, description = "deleted"),
              (status = 404, description = "no such job", body = Error),
              (status = 409, description = "not allowed in the job's phase, or it trained a \
                                            registered model (with_models=true deletes that too)",
               body = Error)))]
async fn delete(
    state: web::Data<AppState>,
    id: web::Path<JobId>,
    q: web::Query<DeleteQuery>,
) -> Result<HttpResponse> {
    service::delete(&state, id.job_id, q.with_models).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/jobs/{job_id}/process/{action}",
    summary = "RUN (PENDING → QUEUED) or ABORT (QUEUED/PROCESSING → ABORTED; a job SLURM \
               runs is ABORTED when SLURM confirms, within one poll)",
    params(ProcessPath),
    responses((status = 202, description = "accepted", body = JobView),
              (status = 404, description = "no such job", body = Error),
              (status = 409, description = "not allowed in the job's phase", body = Error),
              (status = 422, description = "RUN: the job's config.json cannot run", body = Error),
              (status = 502, description = "ABORT: the cluster did not take scancel", body = Error)))]
async fn process(state: web::Data<AppState>, path: web::Path<ProcessPath>) -> Result<HttpResponse> {
    let id = path.job_id;
    let job = match path.action {
        ProcessAction::Run => service::run(&state, id).await?,
        ProcessAction::Abort => service::abort(&state, id).await?,
    };
    Ok(HttpResponse::Accepted().json(job))
}

#[utoipa::path(post, path = "/api/jobs/{job_id}/end/{phase}",
    summary = "An external runner ends a PROCESSING job",
    params(EndPath), request_body = EndTimes,
    responses((status = 200, description = "ended", body = JobView),
              (status = 404, description = "no such job", body = Error),
              (status = 409, description = "not allowed in the job's phase", body = Error)))]
async fn end(
    state: web::Data<AppState>,
    path: web::Path<EndPath>,
    body: web::Json<EndTimes>,
) -> Result<HttpResponse> {
    let action = match path.phase {
        EndPhase::Complete => Action::Complete,
        EndPhase::Error => Action::Fail,
    };
    let job = service::end(&state, path.job_id, action, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(job))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// Byte offset to read from.
    #[serde(default)]
    offset: u64,
}

#[utoipa::path(get, path = "/api/jobs/{job_id}/log",
    summary = "The job log from byte `offset`; header X-Next-Offset gives the offset to poll next",
    params(JobId, LogQuery),
    responses((status = 200, description = "log text", content_type = "text/plain", body = String,
               headers(("X-Next-Offset" = u64, description = "the offset to poll next"))),
              (status = 404, description = "no such job", body = Error)))]
async fn log(
    state: web::Data<AppState>,
    id: web::Path<JobId>,
    q: web::Query<LogQuery>,
) -> Result<HttpResponse> {
    let bytes = service::log(&state, id.job_id, LogPart::From(q.offset)).await?;
    let next = q.offset + bytes.len() as u64;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Next-Offset", next.to_string()))
        .body(bytes))
}

/// The original's one-call script submission: a `config` JSON part and an `entrypoint` file,
/// streamed to a temporary file and handed to `service::submit`.
#[utoipa::path(post, path = "/api/jobs/submit",
    summary = "Create and run a SCRIPT job from a config part and an entrypoint file",
    request_body(content = SubmitForm, content_type = "multipart/form-data"),
    responses((status = 202, description = "queued", body = JobView),
              (status = 422, description = "invalid input; `field` names it", body = Error)))]
async fn submit(state: web::Data<AppState>, mut form: Multipart) -> Result<HttpResponse> {
    let staging = state
        .workers
        .job_dir("/JOBS")
        .join(format!(".upload-{}", Uuid::new_v4()));
    let result = read_submit_form(&state, &mut form, &staging).await;
    let job = match result {
        Ok((config, name)) => service::submit(&state, config, &name, &staging).await,
        Err(e) => Err(e),
    };
    if job.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    Ok(HttpResponse::Accepted().json(job?))
}

/// The `config` JSON and the entrypoint's file name; the entrypoint itself goes to `staging`.
async fn read_submit_form(
    state: &AppState,
    form: &mut Multipart,
    staging: &std::path::Path,
) -> Result<(Value, String)> {
    let mut config: Option<Value> = None;
    let mut entrypoint: Option<String> = None;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::invalid("form", format!("bad multipart body: {e}")))?;
        match field.name().unwrap_or_default() {
            "config" => {
                let limit = state.config.server.json_limit;
                let mut data = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| {
                        ApiError::invalid("config", format!("upload interrupted: {e}"))
                    })?;
                    if data.len() + chunk.len() > limit {
                        return Err(ApiError::TooLarge(format!(
                            "the config part is larger than server.json_limit ({limit} bytes)"
                        )));
                    }
                    data.extend_from_slice(&chunk);
                }
                config = Some(
                    serde_json::from_slice(&data)
                        .map_err(|e| ApiError::invalid("config", format!("not JSON: {e}")))?,
                );
            }
            "entrypoint" => {
                let name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(str::to_string);
                let name = name.ok_or_else(|| {
                    ApiError::invalid("entrypoint", "the entrypoint part has no file name")
                })?;
                crate::files::routes::save_field(
                    &mut field,
                    staging,
                    state.config.files.upload_limit,
                )
                .await?;
                entrypoint = Some(name);
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unexpected form part {other:?}; expected config and entrypoint"),
                ));
            }
        }
    }
    let config =
        config.ok_or_else(|| ApiError::invalid("config", "the form has no config part"))?;
    let name = entrypoint
        .ok_or_else(|| ApiError::invalid("entrypoint", "the form has no entrypoint part"))?;
    Ok((config, name))
}

/// `{job_id}`, for every `/api/jobs/{job_id}/…` handler.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct JobId {
    /// The job's id.
    pub(crate) job_id: Uuid,
}

/// `{job_id}/process/{action}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct ProcessPath {
    job_id: Uuid,
    #[param(inline)]
    action: ProcessAction,
}

#[derive(Deserialize, utoipa::ToSchema)]
enum ProcessAction {
    #[serde(rename = "RUN")]
    Run,
    #[serde(rename = "ABORT")]
    Abort,
}

/// `{job_id}/end/{phase}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct EndPath {
    job_id: Uuid,
    #[param(inline)]
    phase: EndPhase,
}

#[derive(Deserialize, utoipa::ToSchema)]
enum EndPhase {
    #[serde(rename = "COMPLETE")]
    Complete,
    #[serde(rename = "ERROR")]
    Error,
}

/// The form `POST /api/jobs/submit` reads, part by part, in `read_submit_form`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // streamed by hand, never built: it describes the form to the document
struct SubmitForm {
    /// JSON: label, description, command, env, timeout_s.
    config: String,
    /// The script to run.
    #[schema(value_type = String, format = Binary)]
    entrypoint: Vec<u8>,
}
