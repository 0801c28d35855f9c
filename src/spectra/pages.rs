//! The spectrum page: look a spectrum up by file name, plot its flux, list its FITS metadata.

use actix_web::{HttpResponse, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;

use crate::{
    error::ApiError,
    pages::{Layout, PageError, html_status, json_attr},
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/spectra", web::get().to(spectrum_page));
}

#[derive(Deserialize)]
pub struct Lookup {
    name: Option<String>,
}

#[derive(Template)]
#[template(path = "spectra/show.html")]
struct SpectrumPage {
    layout: Layout,
    name: String,
    error: Option<String>,
    /// (header field, value) in the API's order.
    metadata: Vec<(String, String)>,
    /// `{wave, flux}` for the plot.
    plot: Option<String>,
}

/// The header fields in the order of SPEC §4 (and of the API's answer).
const FIELDS: [&str; 21] = [
    "targetname",
    "observed_at",
    "type",
    "subtype",
    "ra",
    "dec",
    "magtype",
    "mag_1",
    "mag_2",
    "mag_3",
    "mag_4",
    "mag_5",
    "mag_6",
    "mag_7",
    "sn_u",
    "sn_g",
    "sn_r",
    "sn_i",
    "sn_z",
    "z",
    "z_err",
];

/// Metadata as (field, text) rows in the SPEC's order; absent values are left out.
fn metadata_rows(view: &super::service::SpectrumView) -> Vec<(String, String)> {
    let mut rows = vec![("filename".to_string(), view.filename.clone())];
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&view.metadata) {
        let mut fields: Vec<(String, serde_json::Value)> =
            map.into_iter().filter(|(_, v)| !v.is_null()).collect();
        fields.sort_by_key(|(k, _)| FIELDS.iter().position(|f| f == k).unwrap_or(FIELDS.len()));
        rows.extend(fields.into_iter().map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k, text)
        }));
    }
    rows.push(("pixels".to_string(), view.flux.len().to_string()));
    rows
}

async fn spectrum_page(
    state: web::Data<AppState>,
    q: web::Query<Lookup>,
) -> Result<HttpResponse, PageError> {
    let name = q.name.clone().unwrap_or_default().trim().to_string();
    let mut page = SpectrumPage {
        layout: Layout::new(&state, "spectra").await,
        name: name.clone(),
        error: None,
        metadata: Vec::new(),
        plot: None,
    };
    if name.is_empty() {
        return html_status(StatusCode::OK, page.render());
    }
    let status = match super::service::get(&state.config.spectra_root(), &name).await {
        Ok(view) => {
            page.metadata = metadata_rows(&view);
            page.plot = Some(json_attr(&serde_json::json!({
                "wave": view.wave,
                "flux": view.flux,
            })));
            StatusCode::OK
        }
        Err(e @ (ApiError::NotFound(_) | ApiError::Invalid { .. })) => {
            page.error = Some(e.to_string());
            actix_web::ResponseError::status_code(&e)
        }
        Err(e) => return Err(e.into()),
    };
    html_status(status, page.render())
}
