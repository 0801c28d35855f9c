//! The Models page: every registered model side by side (its chain and iteration, training
//! set, final loss and epochs, performance estimate), newest first, with links to the job
//! that trained it and to its weights.

use actix_web::{HttpResponse, web};
use askama::Template;

use super::ModelView;
use crate::{
    pages::{Layout, PageError, html},
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/models", web::get().to(models_page));
}

struct Row {
    m: ModelView,
    loss: String,
    epochs: String,
    perf: String,
    classes: String,
    created: String,
}

#[derive(Template)]
#[template(path = "models/list.html")]
struct ModelsPage {
    layout: Layout,
    rows: Vec<Row>,
    total: u64,
    /// More models than the page shows.
    more: bool,
}

/// The newest models a page shows.
const SHOWN: u64 = 200;

async fn models_page(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let page = super::list(&state.db, 0, SHOWN).await?;
    let rows = page
        .models
        .into_iter()
        .map(|m| {
            let num = |k: &str, digits: usize| {
                m.metrics[k]
                    .as_f64()
                    .map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
            };
            Row {
                loss: num("best_loss", 4),
                epochs: num("epochs_run", 0),
                perf: m
                    .perf_estimate
                    .map_or_else(|| "–".to_string(), |p| format!("{:.0} %", p * 100.0)),
                classes: m.classes.join(", "),
                created: m.created_at.format("%Y-%m-%d %H:%M").to_string(),
                m,
            }
        })
        .collect();
    html(
        ModelsPage {
            layout: Layout::new(&state, "models").await,
            more: page.total > SHOWN,
            rows,
            total: page.total,
        }
        .render(),
    )
}
