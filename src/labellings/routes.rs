//! `/api/labellings` handlers (SPEC §5).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    model::{LabellingPatch, LabellingView, NewLabelling, SpectrumSet},
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

/// The `{labelling_id}` of a path, or a 422 that names it.
pub fn labelling_id(raw: &str) -> Result<Uuid> {
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
    /// Only this set (a survey's CANDIDATE set runs to 100,000s: page it).
    #[param(value_type = Option<SpectrumSet>)]
    spectrum_set: Option<String>,
    /// With `spectrum_set`: skip this many of the set, in the job's order.
    #[param(maximum = 9223372036854775807_u64)]
    offset: Option<u64>,
    /// With `spectrum_set`: at most this many.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/labellings/",
    summary = "A job's labellings: ORACLE, PERFORMANCE_ESTIMATION, CANDIDATE (or one set, paged)",
    params(ByJob),
    responses((status = 200, description = "the labellings", body = Vec<LabellingView>)))]
async fn list(state: web::Data<AppState>, q: web::Query<ByJob>) -> Result<HttpResponse> {
    let raw = q.job_id.as_deref().ok_or_else(|| {
        ApiError::invalid("job_id", "job_id is required: /api/labellings/?job_id=…")
    })?;
    let id = Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid("job_id", format!("{raw:?} is not a job id (a UUID)")))?;
    let Some(set) = q.spectrum_set.as_deref() else {
        if q.offset.is_some() || q.limit.is_some() {
            let field = if q.offset.is_some() {
                "offset"
            } else {
                "limit"
            };
            return Err(ApiError::invalid(
                field,
                format!("{field} pages one set: give spectrum_set too"),
            ));
        }
        return Ok(HttpResponse::Ok().json(service::list(&state.db, id).await?));
    };
    let set = SpectrumSet::parse(set)?;
    let offset = q.offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        return Err(ApiError::invalid(
            "offset",
            format!("offset must be at most {} (got {offset})", i64::MAX),
        ));
    }
    let limit = q.limit.unwrap_or(u64::MAX);
    if limit == 0 || (q.limit.is_some() && limit > MAX_LIMIT) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be 1 to {MAX_LIMIT} (got {limit})"),
        ));
    }
    let (rows, _) = service::page(&state.db, id, set, offset, limit.min(i64::MAX as u64)).await?;
    Ok(HttpResponse::Ok().json(rows))
}

/// The most labellings one page of a set holds.
const MAX_LIMIT: u64 = 10_000;
