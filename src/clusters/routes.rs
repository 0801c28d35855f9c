//! `GET /api/clusters` and `GET /api/clusters/{name}` (SPEC §8).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::slurm::Info;
use crate::{
    config::Submit,
    error::{ApiError, Body as Error},
    state::AppState,
};

/// This module's part of the OpenAPI document, from the annotations on its handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/clusters", "/clusters/"]).route(web::get().to(list)))
        .service(web::resource("/clusters/{name}").route(web::get().to(show)));
}

/// A cluster as the list shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub name: String,
    pub submit: Submit,
    /// Whether its `sinfo` answered (at most `poll_s` ago).
    pub reachable: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every configured cluster and whether it answers.
pub async fn views(state: &AppState) -> Vec<ClusterView> {
    let mut out = Vec::new();
    for c in state.clusters.all() {
        let answer = state.clusters.info(c).await;
        out.push(ClusterView {
            name: c.slurm.name().to_string(),
            submit: c.slurm.cfg.submit,
            reachable: answer.is_ok(),
            error: answer.err(),
        });
    }
    out
}

/// One cluster's partitions, or 404 / 502 naming the cluster.
pub async fn info(state: &AppState, name: &str) -> Result<Info, ApiError> {
    let c = state
        .clusters
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no cluster {name:?} in config.toml")))?;
    state
        .clusters
        .info(c)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cluster {name}: {e}")))
}

#[utoipa::path(get, path = "/api/clusters/",
    summary = "The SLURM clusters of config.toml, and whether each answers",
    responses((status = 200, description = "the clusters", body = Vec<ClusterView>)))]
async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(views(&state).await)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct Name {
    /// A cluster's name in config.toml.
    name: String,
}

#[utoipa::path(get, path = "/api/clusters/{name}",
    summary = "A cluster's partitions with their nodes, CPUs and GPUs by type (one sinfo, \
               cached for poll_s)",
    params(Name),
    responses((status = 200, description = "the partitions", body = Info),
              (status = 404, description = "no such cluster", body = Error),
              (status = 502, description = "the cluster did not answer", body = Error)))]
async fn show(state: web::Data<AppState>, name: web::Path<Name>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(info(&state, &name.name).await?))
}
