//! `/api/labellings` handlers (SPEC §5).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    model::{LabellingPatch, LabellingView, NewLabelling},
    service::{self, BatchPatch},
};
use crate::{
    error::{ApiError, Body as Error},
    state::AppState,
};

/// This module's part of the OpenAPI document, from the annotations on its handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, create_batch, get, patch, patch_batch, list))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/labellings/batch/", "/labellings/batch"])
            .route(web::post().to(create_batch))
            .route(web::patch().to(patch_batch)),
    )
    .service(
        web::resource(["/labellings/", "/labellings"])
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/labellings/{labelling_id}")
            .route(web::get().to(get))
            .route(web::patch().to(patch)),
    );
}

type Result<T> = std::result::Result<T, ApiError>;

fn labelling_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::invalid(
            "labelling_id",
            format!("{raw:?} is not a labelling id (a UUID)"),
        )
    })
}

#[utoipa::path(post, path = "/api/labellings/", summary = "Create a labelling",
    request_body = NewLabelling,
    responses((status = 201, description = "created", body = LabellingView),
              (status = 404, description = "no such job", body = Error)))]
async fn create(state: web::Data<AppState>, body: web::Json<NewLabelling>) -> Result<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create(&state.db, body.into_inner()).await?))
}

#[utoipa::path(post, path = "/api/labellings/batch/",
    summary = "Create many labellings in one statement", request_body = Vec<NewLabelling>,
    responses((status = 204, description = "created"),
              (status = 404, description = "no such job", body = Error)))]
async fn create_batch(
    state: web::Data<AppState>,
    body: web::Json<Vec<NewLabelling>>,
) -> Result<HttpResponse> {
    service::create_batch(&state.db, body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/labellings/{labelling_id}", summary = "Read a labelling",
    params(("labelling_id" = Uuid, Path)),
    responses((status = 200, description = "the labelling", body = LabellingView),
              (status = 404, description = "no such labelling", body = Error)))]
async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state.db, labelling_id(&id)?).await?))
}

#[utoipa::path(patch, path = "/api/labellings/{labelling_id}",
    summary = "Label or comment a spectrum", params(("labelling_id" = Uuid, Path)),
    request_body = LabellingPatch,
    responses((status = 200, description = "the labelling", body = LabellingView),
              (status = 404, description = "no such labelling", body = Error)))]
async fn patch(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<LabellingPatch>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(service::patch(&state.db, labelling_id(&id)?, body.into_inner()).await?))
}

#[utoipa::path(patch, path = "/api/labellings/batch/",
    summary = "Patch many labellings, all or nothing", request_body = BatchPatch,
    responses((status = 204, description = "patched"),
              (status = 400, description = "labelling_ids and labellings differ in length", body = Error),
              (status = 404, description = "no such labelling", body = Error)))]
async fn patch_batch(
    state: web::Data<AppState>,
    body: web::Json<BatchPatch>,
) -> Result<HttpResponse> {
    service::patch_batch(&state.db, body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ByJob {
    /// The job whose labellings to list (required; its absence is a 422 that says so).
    #[param(required = true, value_type = Uuid)]
    job_id: Option<String>,
}

#[utoipa::path(get, path = "/api/labellings/",
    summary = "A job's labellings: ORACLE, PERFORMANCE_ESTIMATION, CANDIDATE", params(ByJob),
    responses((status = 200, description = "the labellings", body = Vec<LabellingView>)))]
async fn list(state: web::Data<AppState>, q: web::Query<ByJob>) -> Result<HttpResponse> {
    let raw = q.job_id.as_deref().ok_or_else(|| {
        ApiError::invalid("job_id", "job_id is required: /api/labellings/?job_id=…")
    })?;
    let id = Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid("job_id", format!("{raw:?} is not a job id (a UUID)")))?;
    Ok(HttpResponse::Ok().json(service::list(&state.db, id).await?))
}
