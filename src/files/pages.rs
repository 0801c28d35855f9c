//! The file browser: one folder's listing with download and delete, new folders, and uploads
//! (the page's script sends each chosen file to the upload API and shows its progress).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::service::{self, Listing};
use crate::{
    pages::{Layout, PageError, html, human_size, is_htmx, url_part},
    state::AppState,
    storage::{display, normalize},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/files", web::get().to(files_page));
}

#[derive(Deserialize)]
pub struct Browse {
    path: Option<String>,
    offset: Option<usize>,
}

/// Entries per page: a folder of 10,000 job directories is read whole but drawn in pages.
const PAGE: usize = 500;

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
    total: usize,
    /// (first shown, last shown) when the folder holds more than a page.
    shown: Option<(usize, usize)>,
    prev: Option<usize>,
    next: Option<usize>,
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

/// A page of a folder read by `list_part` from `offset` (folders first, then files).
fn file_list(listing: Listing, offset: usize) -> FileList {
    let total = listing.total;
    let end = (offset + PAGE).min(total);
    let paged = total > PAGE;
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
        total,
        shown: paged.then_some((offset + 1, end)),
        prev: (offset > 0).then(|| offset.saturating_sub(PAGE)),
        next: (end < total).then_some(end),
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
    let offset = q.offset.unwrap_or(0);
    let listing = web::block(move || service::list_part(&storage, &asked, offset, PAGE))
        .await
        .map_err(|e| crate::error::ApiError::Internal(anyhow::anyhow!("listing: {e}")))??;
    let list = file_list(listing, offset);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    #[test]
    fn a_big_folder_is_drawn_in_pages_folders_first() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(tmp.path()).unwrap();
        for i in 0..700 {
            std::fs::create_dir(storage.root().join(format!("d{i:05}"))).unwrap();
        }
        for i in 0..400 {
            std::fs::write(storage.root().join(format!("f{i:05}")), "x").unwrap();
        }
        let page = |offset| {
            file_list(
                service::list_part(&storage, "/", offset, PAGE).unwrap(),
                offset,
            )
        };
        let first = page(0);
        assert_eq!((first.directories.len(), first.files.len()), (500, 0));
        assert_eq!(
            (first.shown, first.prev, first.next),
            (Some((1, 500)), None, Some(500))
        );
        let second = page(500);
        assert_eq!((second.directories.len(), second.files.len()), (200, 300));
        assert_eq!(second.directories[0].2, "d00500");
        assert_eq!(
            (second.files[0].name.as_str(), second.files[0].size.as_str()),
            ("f00000", "1 B")
        );
        let last = page(1000);
        assert_eq!((last.directories.len(), last.files.len()), (0, 100));
        assert_eq!(last.files[0].name, "f00300");
        assert_eq!((last.shown, last.next), (Some((1001, 1100)), None));
        let whole = service::list(&storage, "/").unwrap();
        assert_eq!(
            (whole.directories.len(), whole.files.len(), whole.total),
            (700, 400, 1100)
        );
    }
}
