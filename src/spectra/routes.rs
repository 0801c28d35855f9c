//! `/api/spectra` handlers.

use actix_web::{HttpResponse, web};

use super::service::{self, SpectrumView};
use crate::{
    error::{ApiError, Body as Error},
    state::AppState,
};

/// This module's part of the OpenAPI document, from the annotations on its handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/spectra/{filename}").route(web::get().to(get)));
}

#[utoipa::path(get, path = "/api/spectra/{filename}",
    summary = "A LAMOST spectrum of the survey: header fields, wave (Å) and flux",
    params(("filename" = String, Path, description = "spec-<LMJD>-<PLANID>_sp<SPID>-<FIBERID>.fits")),
    responses((status = 200, description = "the spectrum", body = SpectrumView),
              (status = 404, description = "no such spectrum", body = Error),
              (status = 422, description = "not a LAMOST spectrum name, or not a readable LAMOST \
                                             spectrum", body = Error)))]
async fn get(
    state: web::Data<AppState>,
    filename: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = service::get(&state.config.spectra_root(), &filename).await?;
    Ok(HttpResponse::Ok().json(view))
}
