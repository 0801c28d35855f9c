//! Vendored static assets (htmx, RapiDoc, CSS), embedded in the binary.

use actix_web::{HttpResponse, web};

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Assets;

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    match Assets::get(&path) {
        Some(file) => HttpResponse::Ok()
            .content_type(
                mime_guess::from_path(path.as_str())
                    .first_or_octet_stream()
                    .as_ref(),
            )
            .insert_header(("Cache-Control", "public, max-age=86400"))
            .body(file.data.into_owned()),
        None => HttpResponse::NotFound().body("no such asset"),
    }
}
