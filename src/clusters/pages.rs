//! The Clusters page: every cluster of config.toml, each one's partitions with their nodes,
//! CPUs and GPUs by type (total / allocated / free). The page itself asks no cluster
//! anything; each cluster's table is fetched by htmx on load (one cached `sinfo`), so a
//! cluster that is slow to answer over SSH never holds up the page.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::{
    pages::{Layout, PageError, html},
    slurm::Info,
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/clusters", web::get().to(clusters_page))
        .route("/clusters/{name}", web::get().to(cluster_part));
}

struct Row {
    name: String,
    submit: String,
    /// Where it is reached: `user@host:port`, or "this host".
    place: String,
}

#[derive(Template)]
#[template(path = "clusters/list.html")]
struct ClustersPage {
    layout: Layout,
    clusters: Vec<Row>,
}

#[derive(Template)]
#[template(path = "clusters/partitions.html")]
struct Partitions {
    name: String,
    info: Result<Info, String>,
}

async fn clusters_page(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let clusters = state
        .clusters
        .all()
        .map(|c| {
            let cfg = &c.slurm.cfg;
            Row {
                name: cfg.name.clone(),
                submit: format!("{:?}", cfg.submit).to_lowercase(),
                place: match cfg.submit {
                    crate::config::Submit::Local => "this host".into(),
                    crate::config::Submit::Ssh => {
                        format!("{}@{}:{}", cfg.user, cfg.host, cfg.port)
                    }
                },
            }
        })
        .collect();
    html(
        ClustersPage {
            layout: Layout::new(&state, "clusters").await,
            clusters,
        }
        .render(),
    )
}

/// One cluster's partitions (the htmx part of the page), or why the cluster did not answer.
async fn cluster_part(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let info = super::routes::info(&state, &name).await;
    if let Err(crate::error::ApiError::NotFound(m)) = &info {
        return Err(crate::error::ApiError::NotFound(m.clone()).into());
    }
    html(
        Partitions {
            name: name.into_inner(),
            info: info.map_err(|e| e.to_string()),
        }
        .render(),
    )
}
