//! The new-job page: a form drawn from the type's config fields (pre-filled with defaults or
//! a preset), or a raw JSON editor; the server's 422 is drawn next to the field it names.
//! (Over 400 lines: form values to config and back, per field kind, is one concept.)

use std::collections::HashMap;

use actix_web::{HttpResponse, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::service::{self, NewJob};
use crate::{
    error::ApiError,
    job_types::{FieldKind, FormField, JobType},
    pages::{Layout, PageError, html_status},
    state::AppState,
};

struct FieldView {
    name: &'static str,
    kind: &'static str,
    value: String,
    required: bool,
    help: &'static str,
    error: Option<String>,
}

struct PresetView {
    id: &'static str,
    title: &'static str,
    active: bool,
}

#[derive(Template)]
#[template(path = "jobs/new.html")]
struct NewJobPage {
    layout: Layout,
    types: Vec<&'static str>,
    job_type: String,
    presets: Vec<PresetView>,
    label: String,
    description: String,
    fields: Vec<FieldView>,
    use_json: bool,
    config_json: String,
    h5_files: Vec<String>,
    /// The clusters of config.toml (none: the form has no "where it runs").
    clusters: Vec<String>,
    /// `target.cluster`, `target.partition`, `target.gpus`, `target.time` as entered.
    target: HashMap<String, String>,
    /// Errors that belong to no form field: type, label, description, the JSON.
    errors: HashMap<String, String>,
}

/// The partitions and GPU types the form offers for one cluster (`/jobs/new/targets`).
#[derive(Template)]
#[template(path = "jobs/targets.html")]
struct TargetChoices {
    cluster: String,
    partitions: Vec<String>,
    gpus: Vec<String>,
    error: Option<String>,
}

/// The form's `target.*` fields.
const TARGET_FIELDS: [&str; 4] = ["cluster", "partition", "gpus", "time"];

impl NewJobPage {
    fn error(&self, field: &str) -> Option<&String> {
        self.errors.get(field)
    }

    fn target_value(&self, field: &str) -> &str {
        self.target.get(field).map_or("", String::as_str)
    }
}

/// The form's cluster fields into the config's `target` (over one the JSON gives).
fn apply_target(config: &mut Value, values: &HashMap<String, String>) {
    let Some(cluster) = values.get("target.cluster").filter(|c| !c.is_empty()) else {
        return;
    };
    let mut target = Map::new();
    target.insert("cluster".into(), cluster.as_str().into());
    for f in &TARGET_FIELDS[1..] {
        if let Some(v) = values
            .get(&format!("target.{f}"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            target.insert((*f).into(), v.into());
        }
    }
    if let Some(obj) = config.as_object_mut() {
        obj.insert("target".into(), Value::Object(target));
    }
}

/// `GET /jobs/new/targets?cluster=NAME`: the cluster's partitions and GPU types as the
/// form's suggestions (one cached `sinfo`), or why the cluster did not answer.
pub async fn target_choices(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let cluster = q.get("target.cluster").cloned().unwrap_or_default();
    let mut page = TargetChoices {
        cluster: cluster.clone(),
        partitions: Vec::new(),
        gpus: Vec::new(),
        error: None,
    };
    if !cluster.is_empty() {
        match crate::clusters::routes::info(&state, &cluster).await {
            Ok(info) => {
                for p in &info.partitions {
                    page.partitions.push(p.name.clone());
                    for g in &p.gpus {
                        let kind = if g.kind.is_empty() {
                            "1".to_string()
                        } else {
                            format!("{}:1", g.kind)
                        };
                        if !page.gpus.contains(&kind) {
                            page.gpus.push(kind);
                        }
                    }
                }
            }
            Err(e) => page.error = Some(e.to_string()),
        }
    }
    crate::pages::html(page.render())
}

#[derive(Deserialize)]
pub struct NewQuery {
    #[serde(rename = "type")]
    job_type: Option<String>,
    preset: Option<String>,
    /// Start from this job's type, label and config (to run it again with changes).
    from: Option<uuid::Uuid>,
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Integer => "integer",
        FieldKind::Number => "number",
        FieldKind::Bool => "bool",
        FieldKind::List => "list",
        FieldKind::Hdf5File => "h5",
        FieldKind::SpectraDir => "dir",
    }
}

/// One field's form text as config JSON: `Ok(None)` leaves the key out (the type's default).
fn field_value(field: &FormField, text: &str) -> Result<Option<Value>, String> {
    let text = text.trim();
    if field.kind == FieldKind::Bool {
        return Ok(Some(Value::Bool(matches!(text, "on" | "true"))));
    }
    if text.is_empty() {
        return match field.required {
            true => Err("required".into()),
            false => Ok(None),
        };
    }
    let value = match field.kind {
        FieldKind::Integer => Value::from(
            text.parse::<u64>()
                .map_err(|_| format!("must be a whole number ≥ 0 (got {text:?})"))?,
        ),
        FieldKind::Number => {
            let v = text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("must be a number (got {text:?})"))?;
            Value::from(v)
        }
        FieldKind::List if text.starts_with('[') => {
            let list: Vec<String> = serde_json::from_str(text)
                .map_err(|e| format!("not a JSON array of strings: {e}"))?;
            Value::from(list)
        }
        FieldKind::List => Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>(),
        ),
        _ => Value::from(text),
    };
    Ok(Some(value))
}

/// The config the fields describe, or each field's complaint.
fn config_from_fields(
    fields: &[FormField],
    values: &HashMap<String, String>,
) -> Result<Value, HashMap<String, String>> {
    let mut config = Map::new();
    let mut errors = HashMap::new();
    for f in fields {
        let text = values
            .get(&format!("cfg.{}", f.name))
            .map_or("", String::as_str);
        match field_value(f, text) {
            Ok(Some(v)) => {
                config.insert(f.name.to_string(), v);
            }
            Ok(None) => {}
            Err(e) => {
                errors.insert(f.name.to_string(), e);
            }
        }
    }
    match errors.is_empty() {
        true => Ok(Value::Object(config)),
        false => Err(errors),
    }
}

/// The form text of a config value: lists comma-separated, or as JSON when an item holds a
/// comma (or is not a string), so that the text reads back as the same list.
fn form_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items)
            if items.iter().all(|i| {
                i.as_str()
                    .is_some_and(|s| !s.contains(',') && s.trim() == s)
            }) =>
        {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
        other => other.to_string(),
    }
}

fn default_values(jt: &dyn JobType, preset: Option<&str>) -> HashMap<String, String> {
    let mut values: HashMap<String, String> = jt
        .form()
        .iter()
        .map(|f| (format!("cfg.{}", f.name), f.default.to_string()))
        .collect();
    let chosen = jt
        .presets()
        .iter()
        .find(|p| Some(p.id) == preset)
        .or(jt.presets().first());
    for (k, v) in chosen.map_or(&[][..], |p| p.values) {
        values.insert(format!("cfg.{k}"), v.to_string());
    }
    values
}

async fn render(
    state: &AppState,
    jt: &dyn JobType,
    values: &HashMap<String, String>,
    preset: Option<&str>,
    errors: HashMap<String, String>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let fields: Vec<FieldView> = jt
        .form()
        .into_iter()
        .map(|f| FieldView {
            name: f.name,
            kind: kind_name(f.kind),
            value: values
                .get(&format!("cfg.{}", f.name))
                .cloned()
                .unwrap_or_default(),
            required: f.required,
            help: f.help,
            error: errors.get(f.name).cloned(),
        })
        .collect();
    let config_json = match values.get("config_json").filter(|s| !s.trim().is_empty()) {
        Some(text) => text.clone(),
        None => {
            let config = config_from_fields(&jt.form(), values).unwrap_or_default();
            serde_json::to_string_pretty(&config).unwrap_or_default()
        }
    };
    // Only a form with an HDF5 field offers files (a type without one skips the query).
    let h5_files = match jt.form().iter().any(|f| f.kind == FieldKind::Hdf5File) {
        true => hdf5_choices(state).await?,
        false => Vec::new(),
    };
    let page = NewJobPage {
        layout: Layout::new(state, "new").await,
        types: state.registry.names(),
        job_type: jt.name().to_string(),
        presets: jt
            .presets()
            .iter()
            .map(|p| PresetView {
                id: p.id,
                title: p.title,
                active: Some(p.id) == preset,
            })
            .collect(),
        label: values.get("label").cloned().unwrap_or_default(),
        description: values.get("description").cloned().unwrap_or_default(),
        fields,
        use_json: values.get("use_json").is_some_and(|v| v == "on") || jt.form().is_empty(),
        config_json,
        h5_files,
        clusters: state
            .clusters
            .all()
            .map(|c| c.slurm.name().to_string())
            .collect(),
        target: TARGET_FIELDS
            .iter()
            .filter_map(|f| {
                let key = format!("target.{f}");
                values.get(&key).map(|v| (f.to_string(), v.clone()))
            })
            .collect(),
        errors,
    };
    html_status(status, page.render())
}

/// HDF5 files to offer as pools and training sets: the outputs of the newest finished
/// preprocessing and active-learning jobs, then those the researcher put outside `/JOBS`.
async fn hdf5_choices(state: &AppState) -> Result<Vec<String>, ApiError> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

    use crate::queue::job::{Column as C, Entity};
    let dirs: Vec<String> = Entity::find()
        .select_only()
        .column(C::DirPath)
        .filter(C::JobType.is_in(["DATA_PREPROCESSING", "ACTIVE_ML"]))
        .filter(C::Phase.eq(crate::queue::Phase::Completed))
        .order_by_desc(C::CreatedAt)
        .limit(100)
        .into_tuple()
        .all(&state.db)
        .await?;
    let storage = state.storage.clone();
    let found = web::block(move || {
        let mut found: Vec<String> = dirs
            .iter()
            .flat_map(|d| [format!("{d}/result.h5"), format!("{d}/training_data.h5")])
            .filter(|p| storage.root().join(p.trim_start_matches('/')).is_file())
            .collect();
        found.extend(crate::files::service::find_by_extension(
            &storage,
            &[".h5", ".hdf5"],
            4,
            100,
        ));
        found
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("listing HDF5 files: {e}")))?;
    Ok(found)
}

fn job_type(
    state: &AppState,
    name: Option<&str>,
) -> Result<std::sync::Arc<dyn JobType>, PageError> {
    let name = name
        .filter(|n| !n.is_empty())
        .unwrap_or("DATA_PREPROCESSING");
    Ok(state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::from(state.registry.unknown(name)))?)
}

pub async fn new_job_page(
    state: web::Data<AppState>,
    q: web::Query<NewQuery>,
) -> Result<HttpResponse, PageError> {
    let source = match q.from {
        Some(id) => Some(service::get(&state, id).await?),
        None => None,
    };
    let type_name = source
        .as_ref()
        .map(|j| j.job_type.as_str())
        .or(q.job_type.as_deref());
    let jt = job_type(&state, type_name)?;
    let mut values = default_values(jt.as_ref(), q.preset.as_deref());
    let label = match &source {
        Some(job) => job.label.clone(),
        None => format!(
            "{} {}",
            jt.name().to_lowercase().replace('_', " "),
            chrono::Utc::now().format("%Y-%m-%d %H:%M")
        ),
    };
    values.insert("label".into(), label);
    if let Some(config) = source.as_ref().and_then(|j| j.config.as_ref()) {
        if let Some(obj) = config.as_object() {
            for (k, v) in obj {
                values.insert(format!("cfg.{k}"), form_text(v));
            }
        }
        for f in TARGET_FIELDS {
            if let Some(v) = config.get("target").and_then(|t| t.get(f)) {
                values.insert(format!("target.{f}"), form_text(v));
            }
        }
        values.insert(
            "config_json".into(),
            serde_json::to_string_pretty(config).unwrap_or_default(),
        );
    }
    render(
        &state,
        jt.as_ref(),
        &values,
        q.preset.as_deref(),
        HashMap::new(),
        StatusCode::OK,
    )
    .await
}

/// Creates (and with `action=run` runs) the job, then shows it; a refusal redraws the form
/// with the entered values and the message next to its field.
pub async fn create_job(
    state: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let values: HashMap<String, String> = form.into_inner().into_iter().collect();
    let jt = job_type(&state, values.get("type").map(String::as_str))?;
    let use_json = values.get("use_json").is_some_and(|v| v == "on") || jt.form().is_empty();
    let config = if use_json {
        let text = values.get("config_json").map_or("", String::as_str);
        serde_json::from_str::<Value>(text).map_err(|e| {
            HashMap::from([("config_json".to_string(), format!("not valid JSON: {e}"))])
        })
    } else {
        config_from_fields(&jt.form(), &values)
    };
    // The API's body limit, for the config the form makes: refused next to the JSON editor.
    let limit = state.config.server.json_limit;
    let too_large = config
        .as_ref()
        .is_ok_and(|c| serde_json::to_vec(c).map_or(0, |b| b.len()) > limit);
    if too_large {
        let field = if use_json { "config_json" } else { "form" };
        let message =
            format!("the config is larger than the limit of {limit} bytes (server.json_limit)");
        let errors = HashMap::from([(field.to_string(), message)]);
        return render(
            &state,
            jt.as_ref(),
            &values,
            None,
            errors,
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
    }
    let created = match config {
        Ok(mut config) => {
            apply_target(&mut config, &values);
            let text = |k: &str| values.get(k).cloned().filter(|s| !s.is_empty());
            let new = NewJob {
                job_type: jt.name().to_string(),
                label: text("label").unwrap_or_default(),
                description: text("description"),
                config: Some(config),
                parent_job_id: None,
            };
            match service::create(&state, new).await {
                Ok(job) if values.get("action").is_some_and(|a| a == "run") => {
                    service::run(&state, job.job_id).await.map(|_| job)
                }
                other => other,
            }
            .map_err(|e| field_errors(e, use_json))
        }
        Err(errors) => Err(Ok(errors)),
    };
    match created {
        Ok(job) => Ok(HttpResponse::SeeOther()
            .insert_header(("Location", format!("/jobs/{}", job.job_id)))
            .finish()),
        Err(Ok(errors)) => {
            render(
                &state,
                jt.as_ref(),
                &values,
                None,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(Err(other)) => Err(other.into()),
    }
}

/// A 422 as a message per form field (`config.X` is field X, or the JSON editor's when that
/// was used); anything else stays an error page.
fn field_errors(e: ApiError, use_json: bool) -> Result<HashMap<String, String>, ApiError> {
    match e {
        ApiError::Invalid { field, message } => {
            let key = match field.as_deref() {
                Some(f) if use_json && f.starts_with("config") => "config_json".to_string(),
                Some(f) => f.strip_prefix("config.").unwrap_or(f).to_string(),
                None => "form".to_string(),
            };
            Ok(HashMap::from([(key, message)]))
        }
        other => Err(other),
    }
}

#[cfg(test)]
mod tests;
