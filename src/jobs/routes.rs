//! `/api/jobs` handlers: thin adapters from HTTP to `service.rs`.

use actix_multipart::Multipart;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    model::Action,
    service::{self, EndTimes, JobEdit, ListQuery, NewJob},
};
use crate::{app::AppState, error::ApiError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/jobs", "/jobs/"])
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/jobs/submit").route(web::post().to(submit)))
    .service(
        web::resource("/jobs/{job_id}")
            .route(web::get().to(get))
            .route(web::patch().to(edit))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/jobs/{job_id}/process/{action}").route(web::post().to(process)))
    .service(web::resource("/jobs/{job_id}/end/{phase}").route(web::post().to(end)))
    .service(web::resource("/jobs/{job_id}/log").route(web::get().to(log)));
}

type Result<T> = std::result::Result<T, ApiError>;

async fn create(state: web::Data<AppState>, body: web::Json<NewJob>) -> Result<HttpResponse> {
    Ok(HttpResponse::Created().json(service::create(&state, body.into_inner()).await?))
}

async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::list(&state, q.into_inner()).await?))
}

async fn get(state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::get(&state, *id).await?))
}

async fn edit(state: web::Data<AppState>, id: web::Path<Uuid>, body: web::Json<JobEdit>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(service::edit(&state, *id, body.into_inner()).await?))
}

async fn delete(state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse> {
    service::delete(&state, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn process(state: web::Data<AppState>, path: web::Path<(Uuid, String)>) -> Result<HttpResponse> {
    let (id, action) = path.into_inner();
    let job = match action.as_str() {
        "RUN" => service::run(&state, id).await?,
        "ABORT" => service::abort(&state, id).await?,
        other => return Err(ApiError::invalid("action", format!("unknown action {other:?}; RUN or ABORT"))),
    };
    Ok(HttpResponse::Accepted().json(job))
}

async fn end(state: web::Data<AppState>, path: web::Path<(Uuid, String)>, body: web::Json<EndTimes>) -> Result<HttpResponse> {
    let (id, phase) = path.into_inner();
    let action = match phase.as_str() {
        "COMPLETE" => Action::Complete,
        "ERROR" => Action::Fail,
        other => return Err(ApiError::invalid("phase", format!("unknown end {other:?}; COMPLETE or ERROR"))),
    };
    Ok(HttpResponse::Ok().json(service::end(&state, id, action, body.into_inner()).await?))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    offset: u64,
}

async fn log(state: web::Data<AppState>, id: web::Path<Uuid>, q: web::Query<LogQuery>) -> Result<HttpResponse> {
    let bytes = service::log(&state, *id, q.offset).await?;
    let next = q.offset + bytes.len() as u64;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Next-Offset", next.to_string()))
        .body(bytes))
}

/// The original's one-call script submission: a `config` JSON part (label, description,
/// command, env?, timeout_s?) and an `entrypoint` file saved into the job directory.
async fn submit(state: web::Data<AppState>, mut form: Multipart) -> Result<HttpResponse> {
    let mut config: Option<Value> = None;
    let mut entrypoint: Option<(String, Vec<u8>)> = None;
    let limit = state.config.files.upload_limit;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| ApiError::invalid("form", format!("bad multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_string);
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid(&name, format!("upload interrupted: {e}")))?;
            let cap = if name == "config" { state.config.server.json_limit as u64 } else { limit };
            if (data.len() + chunk.len()) as u64 > cap {
                return Err(ApiError::TooLarge(format!("form part {name:?} is larger than its limit of {cap} bytes")));
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "config" => {
                config = Some(serde_json::from_slice(&data).map_err(|e| ApiError::invalid("config", format!("not JSON: {e}")))?)
            }
            "entrypoint" => {
                let fname = filename.ok_or_else(|| ApiError::invalid("entrypoint", "the entrypoint part has no file name"))?;
                entrypoint = Some((fname, data));
            }
            other => return Err(ApiError::invalid(other, format!("unexpected form part {other:?}; expected config and entrypoint"))),
        }
    }
    let config = config.ok_or_else(|| ApiError::invalid("config", "the form has no config part"))?;
    let (fname, script) = entrypoint.ok_or_else(|| ApiError::invalid("entrypoint", "the form has no entrypoint part"))?;
    let fname = crate::files::model::file_name(&fname).map_err(|e| ApiError::invalid("entrypoint", e.to_string()))?;
    let text = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
    let command = match config.get("command") {
        Some(Value::String(s)) => json!(["sh", "-c", s]),
        Some(Value::Array(a)) => Value::Array(a.clone()),
        None => json!(["sh", fname]),
        Some(_) => return Err(ApiError::invalid("config.command", "command must be a string or a list of strings")),
    };
    let mut script_config = json!({ "command": command });
    for key in ["env", "timeout_s"] {
        if let Some(v) = config.get(key) {
            script_config[key] = v.clone();
        }
    }
    let new = NewJob {
        job_type: "SCRIPT".into(),
        label: text("label").ok_or_else(|| ApiError::invalid("config.label", "label is required"))?,
        description: text("description"),
        config: Some(script_config),
        parent_job_id: None,
    };
    let job = service::create(&state, new).await?;
    let path = state.runtime.job_dir(&job.dir_path).join(&fname);
    std::fs::write(&path, script)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(HttpResponse::Accepted().json(service::run(&state, job.job_id).await?))
}
