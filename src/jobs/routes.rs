//! `/api/jobs` handlers: thin adapters from HTTP to `service.rs`.

use actix_multipart::Multipart;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::service::{self, EndTimes, JobEdit, ListQuery, LogPart, NewJob};
use crate::{error::ApiError, queue::Action, state::AppState};

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

async fn create(state: web::Data<AppState>, body: web::Json<NewJob>) -> Result<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create(&state, body.into_inner()).await?))
}

async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state, q.into_inner()).await?))
}

async fn get(state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state, *id).await?))
}

async fn edit(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<JobEdit>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::edit(&state, *id, body.into_inner()).await?))
}

async fn delete(state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse> {
    service::delete(&state, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn process(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse> {
    let (id, action) = path.into_inner();
    let job = match action.as_str() {
        "RUN" => service::run(&state, id).await?,
        "ABORT" => service::abort(&state, id).await?,
        other => {
            return Err(ApiError::invalid(
                "action",
                format!("unknown action {other:?}; RUN or ABORT"),
            ));
        }
    };
    Ok(HttpResponse::Accepted().json(job))
}

async fn end(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    body: web::Json<EndTimes>,
) -> Result<HttpResponse> {
    let (id, phase) = path.into_inner();
    let action = match phase.as_str() {
        "COMPLETE" => Action::Complete,
        "ERROR" => Action::Fail,
        other => {
            return Err(ApiError::invalid(
                "phase",
                format!("unknown end {other:?}; COMPLETE or ERROR"),
            ));
        }
    };
    Ok(HttpResponse::Ok().json(service::end(&state, id, action, body.into_inner()).await?))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    offset: u64,
}

async fn log(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<LogQuery>,
) -> Result<HttpResponse> {
    let bytes = service::log(&state, *id, LogPart::From(q.offset)).await?;
    let next = q.offset + bytes.len() as u64;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Next-Offset", next.to_string()))
        .body(bytes))
}

/// The original's one-call script submission: a `config` JSON part and an `entrypoint` file,
/// streamed to a temporary file and handed to `service::submit`.
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
