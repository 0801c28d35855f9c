//! `POST /api/jobs/{id}/continue` and `GET /api/jobs/{id}/chain` (SPEC §6).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/jobs/{job_id}/continue").route(web::post().to(continue_job)))
        .service(web::resource("/jobs/{job_id}/chain").route(web::get().to(chain)));
}

#[derive(Deserialize)]
struct ContinueQuery {
    #[serde(default)]
    allow_partial: bool,
}

async fn continue_job(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<ContinueQuery>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Accepted()
        .json(super::chain::continue_job(&state, *id, q.allow_partial).await?))
}

async fn chain(state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(super::chain::chain(&state, *id).await?))
}

type Result<T> = std::result::Result<T, ApiError>;
