//! `/api/spectra` handlers.

use actix_web::{HttpResponse, web};

use super::service;
use crate::{error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/spectra/{filename}").route(web::get().to(get)));
}

async fn get(
    state: web::Data<AppState>,
    filename: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = service::get(&state.config.spectra_root(), &filename).await?;
    Ok(HttpResponse::Ok().json(view))
}
