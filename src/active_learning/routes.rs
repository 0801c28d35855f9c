//! `POST /api/jobs/{id}/continue` and `GET /api/jobs/{id}/chain` (SPEC §6).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::chain::ChainEntry;
use crate::{
    error::{ApiError, Body as Error},
    jobs::{model::JobView, routes::JobId},
    labellings::routes::labelling_id,
    state::AppState,
};

/// This module's part of the OpenAPI document, from the annotations on its handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(continue_job, chain, prepared))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/jobs/{job_id}/continue").route(web::post().to(continue_job)))
        .service(web::resource("/jobs/{job_id}/chain").route(web::get().to(chain)))
        .service(
            web::resource("/labellings/{labelling_id}/prepared").route(web::get().to(prepared)),
        );
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ContinueQuery {
    /// Continue although some oracle spectra are unlabelled (they are left out).
    #[serde(default)]
    allow_partial: bool,
}

#[utoipa::path(post, path = "/api/jobs/{job_id}/continue",
    summary = "Continue a labelled ACTIVE_ML iteration: write oracle_data.json, append the \
               performance estimate, create and run the next iteration",
    params(JobId, ContinueQuery),
    responses((status = 202, description = "the next iteration, queued", body = JobView),
              (status = 404, description = "no such job", body = Error),
              (status = 409, description = "not a COMPLETED ACTIVE_ML job, already continued, \
                                             or oracle spectra unlabelled", body = Error)))]
async fn continue_job(
    state: web::Data<AppState>,
    id: web::Path<JobId>,
    q: web::Query<ContinueQuery>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Accepted()
        .json(super::chain::continue_job(&state, id.job_id, q.allow_partial).await?))
}

#[utoipa::path(get, path = "/api/jobs/{job_id}/chain",
    summary = "The iterations of an active-learning chain, first to last", params(JobId),
    responses((status = 200, description = "the chain", body = Vec<ChainEntry>),
              (status = 404, description = "no such job", body = Error),
              (status = 409, description = "not an ACTIVE_ML job", body = Error)))]
async fn chain(state: web::Data<AppState>, id: web::Path<JobId>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(super::chain::chain(&state, id.job_id).await?))
}

#[utoipa::path(get, path = "/api/labellings/{labelling_id}/prepared",
    summary = "The preprocessed flux of a labelling's spectrum, read from its iteration's \
               result.h5 (what the workspace plots, fetched on demand)",
    params(("labelling_id" = Uuid, Path)),
    responses((status = 200, description = "the spectrum as the model saw it",
               body = super::workspace::Prepared),
              (status = 404, description = "no such labelling, or its flux is not kept",
               body = Error)))]
async fn prepared(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(super::workspace::prepared(&state, labelling_id(&id)?).await?))
}

type Result<T> = std::result::Result<T, ApiError>;
