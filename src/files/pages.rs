//! The file browser: one folder's listing with download and delete, new folders, and uploads
//! (the page's script sends each chosen file to the upload API and shows its progress).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{
    model::{display, normalize},
    service::{self, Listing},
};
use crate::{
    app::AppState,
    pages::{Layout, PageError, html, human_size, is_htmx, url_part},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/files", web::get().to(files_page));
}

#[derive(Deserialize)]
pub struct Browse {
    path: Option<String>,
}

struct Row {
    name: String,
    size: String,
    modified: String,
    download: String,
    /// The API path of the entry, for DELETE.
    api: String,
}

#[derive(Template)]
#[template(path = "files/listing.html")]
struct FileList {
    path: String,
    path_enc: String,
    directories: Vec<(String, String, String)>,
    files: Vec<Row>,
}

impl askama::filters::HtmlSafe for FileList {}

#[derive(Template)]
#[template(path = "files/browse.html")]
struct FilesPage {
    layout: Layout,
    /// (name, path) from the root down to this folder.
    crumbs: Vec<(String, String)>,
    list: FileList,
    upload_limit: String,
}

fn file_list(listing: Listing) -> FileList {
    let path = listing.parent_dir_path.clone();
    let enc = url_part(&path);
    let child = |name: &str| match path.as_str() {
        "/" => format!("/{name}"),
        p => format!("{p}/{name}"),
    };
    FileList {
        directories: listing
            .directories
            .into_iter()
            .map(|d| {
                let api = format!(
                    "/api/files/directories/{}?parent_dir_path={enc}",
                    url_part(&d.dirname)
                );
                (child(&d.dirname), api, d.dirname)
            })
            .collect(),
        files: listing
            .files
            .into_iter()
            .map(|f| Row {
                download: format!(
                    "/api/files/{}/download?parent_dir_path={enc}",
                    url_part(&f.filename)
                ),
                api: format!("/api/files/{}?parent_dir_path={enc}", url_part(&f.filename)),
                size: human_size(f.size),
                modified: f
                    .modified_at
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                name: f.filename,
            })
            .collect(),
        path_enc: enc.clone(),
        path,
    }
}

async fn files_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<Browse>,
) -> Result<HttpResponse, PageError> {
    let path = q.path.clone().unwrap_or_else(|| "/".into());
    let storage = state.storage.clone();
    let asked = path.clone();
    let listing = web::block(move || service::list(&storage, &asked))
        .await
        .map_err(|e| crate::error::ApiError::Internal(anyhow::anyhow!("listing: {e}")))??;
    let list = file_list(listing);
    if is_htmx(&req) {
        return html(list.render());
    }
    let parts = normalize(&path).map_err(crate::error::ApiError::from)?;
    let mut crumbs = vec![("files".to_string(), "/".to_string())];
    for (i, part) in parts.iter().enumerate() {
        crumbs.push((part.clone(), display(&parts[..=i])));
    }
    html(
        FilesPage {
            layout: Layout::new(&state, "files").await,
            crumbs,
            list,
            upload_limit: human_size(state.config.files.upload_limit),
        }
        .render(),
    )
}
