//! `/api/files` handlers. Uploads stream to a temporary file beside the target and are
//! renamed into place only when complete and within `files.upload_limit`.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::service::{self, Listing};
use crate::{
    error::{ApiError, Body as Error},
    state::AppState,
};

/// This module's part of the OpenAPI document, from the annotations on its handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, delete, make_dir, remove_dir, download, upload))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/files", "/files/"]).route(web::get().to(list)))
        .service(
            web::resource("/files/directories/{dirname}")
                .route(web::post().to(make_dir))
                .route(web::delete().to(remove_dir)),
        )
        .service(web::resource("/files/{filename}/upload").route(web::post().to(upload)))
        .service(web::resource("/files/{filename}/download").route(web::get().to(download)))
        .service(web::resource("/files/{filename}").route(web::delete().to(delete)));
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Parent {
    /// The directory, from the files root (`/` when absent).
    #[serde(default = "root")]
    #[param(required = false)]
    parent_dir_path: String,
}

fn root() -> String {
    "/".into()
}

/// A directory made.
#[derive(Serialize, utoipa::ToSchema)]
struct Created {
    dirname: String,
    /// From the files root.
    path: String,
}

/// A file stored.
#[derive(Serialize, utoipa::ToSchema)]
struct Uploaded {
    filename: String,
    size: u64,
    parent_dir_path: String,
}

/// The form an upload sends: its first part with a file name is stored.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // streamed by hand in `receive`, never built: it describes the form
struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(get, path = "/api/files/", summary = "List a directory", params(Parent),
    responses((status = 200, description = "the listing", body = Listing),
              (status = 404, description = "no such directory", body = Error)))]
async fn list(state: web::Data<AppState>, q: web::Query<Parent>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state.storage, &q.parent_dir_path)?))
}

#[utoipa::path(delete, path = "/api/files/{filename}", summary = "Delete a file",
    params(("filename" = String, Path), Parent),
    responses((status = 204, description = "deleted"),
              (status = 404, description = "no such file", body = Error)))]
async fn delete(
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<Parent>,
) -> Result<HttpResponse> {
    removal(
        &state,
        &q.parent_dir_path,
        &name,
        "file_delete",
        service::delete_file,
    )
    .await
}

#[utoipa::path(post, path = "/api/files/directories/{dirname}", summary = "Create a directory",
    params(("dirname" = String, Path), Parent),
    responses((status = 201, description = "created", body = Created),
              (status = 409, description = "exists", body = Error)))]
async fn make_dir(
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<Parent>,
) -> Result<HttpResponse> {
    let path = service::make_dir(&state.storage, &q.parent_dir_path, &name)?;
    let dirname = name.into_inner();
    Ok(HttpResponse::Created().json(Created { dirname, path }))
}

#[utoipa::path(delete, path = "/api/files/directories/{dirname}",
    summary = "Delete a directory recursively", params(("dirname" = String, Path), Parent),
    responses((status = 204, description = "deleted"),
              (status = 404, description = "no such directory", body = Error),
              (status = 409, description = "the JOBS directory (delete jobs instead)", body = Error)))]
async fn remove_dir(
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<Parent>,
) -> Result<HttpResponse> {
    removal(
        &state,
        &q.parent_dir_path,
        &name,
        "directory_delete",
        service::remove_dir,
    )
    .await
}

#[utoipa::path(get, path = "/api/files/{filename}/download",
    summary = "Download a file (HTTP Range supported)", params(("filename" = String, Path), Parent),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
              (status = 206, description = "the requested range", content_type = "application/octet-stream"),
              (status = 404, description = "no such file", body = Error),
              (status = 416, description = "the range lies outside the file")))]
async fn download(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<Parent>,
) -> Result<HttpResponse> {
    let path = service::existing_file(&state.storage, &q.parent_dir_path, &name)?;
    let file = actix_files::NamedFile::open_async(&path)
        .await?
        .set_content_disposition(actix_web::http::header::ContentDisposition {
            disposition: actix_web::http::header::DispositionType::Attachment,
            parameters: vec![actix_web::http::header::DispositionParam::Filename(
                name.to_string(),
            )],
        });
    Ok(file.into_response(&req))
}

#[utoipa::path(post, path = "/api/files/{filename}/upload",
    summary = "Upload a file (streamed; files.upload_limit)", params(("filename" = String, Path), Parent),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "stored", body = Uploaded),
              (status = 409, description = "a directory has that name", body = Error),
              (status = 413, description = "larger than the limit", body = Error)))]
async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<Parent>,
    mut form: Multipart,
) -> Result<HttpResponse> {
    let limit = state.config.files.upload_limit;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit + 64 * 1024) {
        return Err(too_large(limit));
    }
    job_rights(&state, &q.parent_dir_path, &name).await?;
    let target = state.storage.entry(&q.parent_dir_path, &name)?;
    if target.is_dir() {
        return Err(ApiError::Conflict(format!("{name} is a directory")));
    }
    let dir = target
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| state.storage.root().to_path_buf());
    tokio::fs::create_dir_all(&dir).await?;
    let tmp = dir.join(format!(".upload-{}", uuid::Uuid::new_v4()));
    let result = receive(&mut form, &tmp, limit).await;
    match result {
        Ok(Some(size)) => {
            tokio::fs::rename(&tmp, &target).await?;
            crate::auth::audit(
                &state.db,
                "file_upload",
                Some(format!(
                    "{}/{name} ({size} bytes)",
                    q.parent_dir_path.trim_end_matches('/')
                )),
                None,
                None,
            )
            .await;
            let parent = crate::storage::normalize(&q.parent_dir_path)?;
            Ok(HttpResponse::Created().json(Uploaded {
                filename: name.into_inner(),
                size,
                parent_dir_path: crate::storage::display(&parent),
            }))
        }
        Ok(None) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(ApiError::invalid("file", "the form has no file part"))
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Deletes `name` in `parent` with `remove` (a file, or a folder and all it holds), with the
/// rights that place needs, into the audit trail.
async fn removal(
    state: &AppState,
    parent: &str,
    name: &str,
    action: &str,
    remove: fn(&crate::storage::Storage, &str, &str) -> Result<()>,
) -> Result<HttpResponse> {
    job_rights(state, parent, name).await?;
    remove(&state.storage, parent, name)?;
    let what = format!("{}/{name}", parent.trim_end_matches('/'));
    crate::auth::audit(&state.db, action, Some(what), None, None).await;
    Ok(HttpResponse::NoContent().finish())
}

/// What lies in a job's folder changes with the job's rights: its owner's or an admin's
/// (SPEC §11). Elsewhere in the files root any member may.
async fn job_rights(state: &AppState, parent: &str, name: &str) -> Result<()> {
    if crate::auth::current().is_none() {
        return Ok(());
    }
    let parts = crate::storage::normalize(&format!("{}/{name}", parent.trim_end_matches('/')))?;
    let [jobs, folder, ..] = parts.as_slice() else {
        return Ok(());
    };
    if jobs != "JOBS" {
        return Ok(());
    }
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let dir = format!("/JOBS/{folder}");
    if let Some(job) = crate::queue::job::Entity::find()
        .filter(crate::queue::job::Column::DirPath.eq(dir.clone()))
        .one(&state.db)
        .await?
    {
        crate::auth::require_owner(
            job.created_by.as_deref(),
            &format!("{dir} (a job's folder)"),
        )?;
    }
    Ok(())
}

pub fn too_large(limit: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "upload larger than the limit of {limit} bytes (files.upload_limit)"
    ))
}

/// Streams the first file part into `tmp`; `None` when the form has none.
async fn receive(form: &mut Multipart, tmp: &std::path::Path, limit: u64) -> Result<Option<u64>> {
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::invalid("file", format!("bad multipart body: {e}")))?;
        if field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .is_none()
        {
            while field.next().await.is_some() {}
            continue;
        }
        return save_field(&mut field, tmp, limit).await.map(Some);
    }
    Ok(None)
}

/// Streams one multipart field to `dest`, refusing it (413) past `limit` bytes. Memory does
/// not grow with the upload. The caller removes `dest` on error.
pub async fn save_field(
    field: &mut actix_multipart::Field,
    dest: &std::path::Path,
    limit: u64,
) -> Result<u64> {
    let name = field.name().unwrap_or("file").to_string();
    let mut out = tokio::fs::File::create(dest).await?;
    let mut size = 0u64;
    while let Some(chunk) = field.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(&name, format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    out.sync_all().await?;
    Ok(size)
}
