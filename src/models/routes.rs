//! `/api/models` (SPEC §12): the registry, the weights, online inference.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Deserialize;

use super::{
    MAX_LIMIT, ModelPage, ModelView,
    entity::{self, Column as C, Entity as Models},
    find, folder,
    online::{Online, Prediction},
};
use crate::{
    error::{ApiError, Body as Error},
    science::{
        classify::WEIGHTS,
        fits::{self, MAX_FILE_BYTES, Read},
        lamost::{SpectrumName, locate},
    },
    state::AppState,
};

type Result<T> = std::result::Result<T, ApiError>;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, edit, delete, weights, predict))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/models", "/models/"]).route(web::get().to(list)))
        .service(
            web::resource("/models/{model_id}")
                .route(web::get().to(show))
                .route(web::patch().to(edit))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/models/{model_id}/weights").route(web::get().to(weights)))
        .service(web::resource("/models/{model_id}/predict").route(web::post().to(predict)));
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Models to skip.
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
    /// Models in the page, 1 to 1000 (50 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct ModelKey {
    /// The model's id, or its alias.
    model_id: String,
}

#[utoipa::path(get, path = "/api/models/", summary = "Registered models, newest first",
    params(Page),
    responses((status = 200, description = "a page of models", body = ModelPage)))]
async fn list(state: web::Data<AppState>, q: web::Query<Page>) -> Result<HttpResponse> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        return Err(ApiError::invalid("offset", "too large"));
    }
    Ok(HttpResponse::Ok().json(super::list(&state.db, offset, limit).await?))
}

#[utoipa::path(get, path = "/api/models/{model_id}", summary = "A registered model",
    params(ModelKey),
    responses((status = 200, description = "the model", body = ModelView),
              (status = 404, description = "no such model", body = Error)))]
async fn show(state: web::Data<AppState>, key: web::Path<ModelKey>) -> Result<HttpResponse> {
    let row = find(&state.db, &key.model_id).await?;
    Ok(HttpResponse::Ok().json(ModelView::from(row)))
}

/// What PATCH may change; absent fields stay, `null` clears an alias or notes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ModelEdit)]
pub struct ModelEdit {
    #[schema(min_length = 1, max_length = 50)]
    pub name: Option<String>,
    /// Unique among the models: letters, digits, `-`, `_` and `.`, 1 to 64 of them, and not a
    /// model id (e.g. `best`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 64)]
    pub alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub notes: Option<Option<String>>,
}

/// A field that is present (`Some(None)` for null) or absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `min` to `max` characters, no control characters (SPEC §10), not only spaces.
fn text(field: &str, s: &str, min: usize, max: usize) -> Result<String> {
    let n = s.chars().count();
    if n < min || n > max || (min > 0 && s.trim().is_empty()) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be {min} to {max} characters (got {n})"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(s.to_string())
}

fn check_alias(alias: &str) -> Result<()> {
    let ok = !alias.is_empty()
        && alias.len() <= 64
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && uuid::Uuid::parse_str(alias).is_err();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "alias",
            format!(
                "{:?}: an alias is 1 to 64 letters, digits, '-', '_' or '.', and not an id",
                alias.chars().take(80).collect::<String>()
            ),
        ))
    }
}

#[utoipa::path(patch, path = "/api/models/{model_id}",
    summary = "Rename a model, give it an alias (unique, e.g. best) or notes",
    params(ModelKey), request_body = ModelEdit,
    responses((status = 200, description = "the model as changed", body = ModelView),
              (status = 403, description = "not the model's owner", body = Error),
              (status = 404, description = "no such model", body = Error),
              (status = 409, description = "another model has that alias", body = Error)))]
async fn edit(
    state: web::Data<AppState>,
    key: web::Path<ModelKey>,
    body: web::Json<ModelEdit>,
) -> Result<HttpResponse> {
    let row = find(&state.db, &key.model_id).await?;
    crate::auth::require_owner(row.created_by.as_deref(), "this model")?;
    let body = body.into_inner();
    let id = row.model_id;
    let mut change: entity::ActiveModel = row.into();
    if let Some(name) = &body.name {
        change.name = Set(text("name", name, 1, 50)?);
    }
    if let Some(notes) = &body.notes {
        change.notes = Set(notes
            .as_deref()
            .map(|n| text("notes", n, 0, 255))
            .transpose()?);
    }
    if let Some(alias) = &body.alias {
        if let Some(a) = alias {
            check_alias(a)?;
            let taken = Models::find()
                .filter(C::Alias.eq(a.as_str()))
                .filter(C::ModelId.ne(id))
                .one(&state.db)
                .await?;
            if let Some(other) = taken {
                return Err(ApiError::Conflict(format!(
                    "the alias {a:?} is taken by model {:?} ({}): clear it there first",
                    other.name, other.model_id
                )));
            }
        }
        change.alias = Set(alias.clone());
    }
    let saved = change.update(&state.db).await.map_err(|e| {
        // Two PATCHes racing for one alias: the unique index decides.
        if e.to_string().to_lowercase().contains("unique") {
            ApiError::Conflict("that alias was just taken by another model".into())
        } else {
            e.into()
        }
    })?;
    crate::auth::audit(&state.db, "model_edit", Some(id.to_string()), None, None).await;
    Ok(HttpResponse::Ok().json(ModelView::from(saved)))
}

#[utoipa::path(delete, path = "/api/models/{model_id}",
    summary = "Unregister a model (its weights stay in the job's folder)",
    params(ModelKey),
    responses((status = 204, description = "unregistered"),
              (status = 403, description = "not the model's owner", body = Error),
              (status = 404, description = "no such model", body = Error)))]
async fn delete(
    state: web::Data<AppState>,
    online: web::Data<Online>,
    key: web::Path<ModelKey>,
) -> Result<HttpResponse> {
    let row = find(&state.db, &key.model_id).await?;
    crate::auth::require_owner(row.created_by.as_deref(), "this model")?;
    Models::delete_by_id(row.model_id).exec(&state.db).await?;
    online.forget(row.model_id);
    crate::auth::audit(
        &state.db,
        "model_delete",
        Some(row.model_id.to_string()),
        None,
        None,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/models/{model_id}/weights",
    summary = "The model's weights (safetensors)",
    params(ModelKey),
    responses((status = 200, description = "model.safetensors", content_type = "application/octet-stream"),
              (status = 404, description = "no such model, or its weights are gone", body = Error)))]
async fn weights(
    req: HttpRequest,
    state: web::Data<AppState>,
    key: web::Path<ModelKey>,
) -> Result<HttpResponse> {
    let row = find(&state.db, &key.model_id).await?;
    let path = folder(&state, &row).await?.join(WEIGHTS);
    let file = actix_files::NamedFile::open_async(&path)
        .await
        .map_err(|_| ApiError::NotFound(format!("the weights of model {} are gone", row.model_id)))?
        .set_content_type(mime_guess::mime::APPLICATION_OCTET_STREAM)
        .set_content_disposition(actix_web::http::header::ContentDisposition {
            disposition: actix_web::http::header::DispositionType::Attachment,
            parameters: vec![actix_web::http::header::DispositionParam::Filename(
                format!("{}.safetensors", row.model_id),
            )],
        });
    Ok(file.into_response(&req))
}

/// JSON form of a prediction request: spectra of the survey, by FILENAME.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = PredictRequest)]
pub struct PredictNames {
    /// LAMOST names (`spec-<LMJD>-<PLANID>_sp<SPID>-<FIBERID>.fits`), 1 to 1000.
    #[schema(min_items = 1, max_items = 1000)]
    pub spectra: Vec<String>,
}

/// The multipart form: one or more FITS files (each part with a filename).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // read by hand in `from_files`, never built: it describes the form
struct PredictForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Spectra one request may hold.
const MAX_SPECTRA: usize = 1000;

#[utoipa::path(post, path = "/api/models/{model_id}/predict",
    summary = "Class probabilities and entropy of spectra: LAMOST FITS files (multipart), or \
               spectra of the survey by name (JSON)",
    params(ModelKey),
    request_body(content(
        (PredictNames = "application/json"),
        (PredictForm = "multipart/form-data"))),
    responses((status = 200, description = "one answer per spectrum, in the request's order", body = Vec<Prediction>),
              (status = 404, description = "no such model, or a named spectrum is not in the survey", body = Error),
              (status = 413, description = "a file over the size of a LAMOST spectrum", body = Error),
              (status = 415, description = "neither JSON nor multipart", body = Error),
              (status = 422, description = "a file that is not a LAMOST spectrum (its reason), or a bad name", body = Error)))]
async fn predict(
    req: HttpRequest,
    state: web::Data<AppState>,
    online: web::Data<Online>,
    key: web::Path<ModelKey>,
    body: web::Payload,
) -> Result<HttpResponse> {
    let row = find(&state.db, &key.model_id).await?;
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let spectra = if content_type.starts_with("multipart/form-data") {
        from_files(Multipart::new(req.headers(), body)).await?
    } else if content_type.starts_with("application/json") {
        let bytes = read_json_body(body, state.config.server.json_limit).await?;
        let names: PredictNames = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid("spectra", format!("not a request: {e}")))?;
        from_names(&state, names).await?
    } else {
        return Err(ApiError::UnsupportedMediaType(
            "send LAMOST FITS files as multipart/form-data, or {\"spectra\": [names]} as \
             application/json"
                .into(),
        ));
    };
    let dir = folder(&state, &row).await?;
    let model = online
        .get(row.model_id, &dir)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("model {}: {e}", row.model_id)))?;
    let grid = model.card.grid();
    let (names, rows): (Vec<String>, Vec<Vec<f64>>) = spectra
        .into_iter()
        .map(|s| {
            let row = crate::science::preprocess::resample(s, &grid);
            (row.filename, row.flux)
        })
        .unzip();
    let answer = model
        .predict(names, rows)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    Ok(HttpResponse::Ok().json(answer))
}

async fn read_json_body(mut body: web::Payload, limit: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid("spectra", format!("the body was cut: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "JSON bodies are at most {limit} bytes (server.json_limit)"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Every file part of the form, read (each at most a LAMOST spectrum's size) and checked.
async fn from_files(mut form: Multipart) -> Result<Vec<fits::Spectrum>> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::invalid("file", format!("bad multipart body: {e}")))?;
        let Some(name) = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(String::from)
        else {
            while field.next().await.is_some() {}
            continue;
        };
        if out.len() + bad.len() >= MAX_SPECTRA {
            return Err(ApiError::TooLarge(format!(
                "at most {MAX_SPECTRA} spectra in one request"
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::invalid(&name, format!("upload interrupted: {e}")))?;
            if (bytes.len() + chunk.len()) as u64 > MAX_FILE_BYTES {
                return Err(ApiError::TooLarge(format!(
                    "{name}: over {MAX_FILE_BYTES} bytes; a LAMOST spectrum is smaller"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(|| {
                let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
                    fits::gunzip(&bytes)?
                } else {
                    bytes
                };
                fits::parse_spectrum(&plain, Read::Data)
            })
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the reader failed: {e}")))?;
        match parsed {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(e)) => bad.push(format!("{name}: {e}")),
            Err(_) => bad.push(format!("{name}: the reader failed on this file")),
        }
    }
    if !bad.is_empty() {
        return Err(ApiError::invalid("file", bad.join("; ")));
    }
    if out.is_empty() {
        return Err(ApiError::invalid(
            "file",
            "no file in the form: send each spectrum as a part with a filename",
        ));
    }
    Ok(out)
}

/// The named spectra, read from the spectra root.
async fn from_names(state: &AppState, req: PredictNames) -> Result<Vec<fits::Spectrum>> {
    if req.spectra.is_empty() || req.spectra.len() > MAX_SPECTRA {
        return Err(ApiError::invalid(
            "spectra",
            format!("1 to {MAX_SPECTRA} names (got {})", req.spectra.len()),
        ));
    }
    let root = state.config.spectra_root();
    let mut paths = Vec::with_capacity(req.spectra.len());
    for (i, n) in req.spectra.iter().enumerate() {
        let name = SpectrumName::parse(n)
            .map_err(|e| ApiError::invalid(format!("spectra[{i}]"), e.to_string()))?;
        let path = locate(&root, &name).ok_or_else(|| {
            ApiError::NotFound(format!(
                "no spectrum {} in spectra/{}/",
                name.as_str(),
                name.plan_id()
            ))
        })?;
        paths.push((name.as_str().to_string(), path));
    }
    let read = tokio::task::spawn_blocking(move || {
        paths
            .into_iter()
            .map(|(name, p)| {
                fits::read_spectrum(&p, Read::Data).map_err(|e| format!("{name}: {e}"))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("the reader failed: {e}")))?;
    let bad: Vec<String> = read
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::invalid("spectra", bad.join("; ")));
    }
    Ok(read.into_iter().filter_map(|r| r.ok()).collect())
}
