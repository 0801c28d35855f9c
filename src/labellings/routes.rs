//! `/api/labellings` handlers (SPEC §5).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    model::{LabellingPatch, NewLabelling},
    service::{self, BatchPatch},
};
use crate::{error::ApiError, state::AppState};

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

async fn create(state: web::Data<AppState>, body: web::Json<NewLabelling>) -> Result<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create(&state.db, body.into_inner()).await?))
}

async fn create_batch(
    state: web::Data<AppState>,
    body: web::Json<Vec<NewLabelling>>,
) -> Result<HttpResponse> {
    service::create_batch(&state.db, body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state.db, labelling_id(&id)?).await?))
}

async fn patch(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<LabellingPatch>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(service::patch(&state.db, labelling_id(&id)?, body.into_inner()).await?))
}

async fn patch_batch(
    state: web::Data<AppState>,
    body: web::Json<BatchPatch>,
) -> Result<HttpResponse> {
    service::patch_batch(&state.db, body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct ByJob {
    job_id: Option<String>,
}

async fn list(state: web::Data<AppState>, q: web::Query<ByJob>) -> Result<HttpResponse> {
    let raw = q.job_id.as_deref().ok_or_else(|| {
        ApiError::invalid("job_id", "job_id is required: /api/labellings/?job_id=…")
    })?;
    let id = Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid("job_id", format!("{raw:?} is not a job id (a UUID)")))?;
    Ok(HttpResponse::Ok().json(service::list(&state.db, id).await?))
}
