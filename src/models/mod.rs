//! The model registry (SPEC §12): every model an ACTIVE_ML iteration saved, registered when
//! the iteration succeeds (classes, wave grid, training-set size, metrics, the chain and the
//! owner), named, aliased and annotated through the API and the Models page, and used by
//! CLASSIFY jobs (`model_id`) and online inference.

pub mod entity;
pub mod online;
pub mod pages;
pub mod routes;
pub mod tracking;

use std::{path::PathBuf, sync::Arc};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    error::ApiError,
    queue::job,
    science::classify::{CARD, Card, WEIGHTS},
    state::{AppState, Extensions},
};
use entity::{Column as C, Entity as Models, Model as Row};

/// Plugs the registry into the worker: a finished iteration's saved model is registered,
/// and the iteration tracked in MLflow when `tracking.mlflow_uri` is set.
pub fn extend(ext: &mut Extensions, config: &crate::config::Config) {
    ext.on_success(
        "ACTIVE_ML",
        Arc::new(|db, job, dir| register(db, job, dir).boxed()),
    );
    tracking::extend(ext, config);
}

/// The wave grid a model reads spectra on.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wave {
    /// Å
    pub start: f64,
    pub end: f64,
    pub count: i32,
}

/// A registered model as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Model)]
pub struct ModelView {
    pub model_id: Uuid,
    pub name: String,
    /// The ACTIVE_ML iteration that trained it.
    pub job_id: Uuid,
    pub iteration: i32,
    /// The first job of its active-learning chain.
    pub chain_id: Uuid,
    pub alias: Option<String>,
    pub notes: Option<String>,
    pub classes: Vec<String>,
    pub candidate_classes: Vec<String>,
    pub wave: Wave,
    /// Labelled spectra it was trained on (before SMOTE).
    pub training_size: i64,
    /// Final (best) loss, epochs run, training time.
    #[schema(value_type = Object)]
    pub metrics: Value,
    /// Share of the iteration's performance-estimation sample the researcher confirmed as a
    /// candidate class (known once the iteration is continued).
    pub perf_estimate: Option<f64>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Row> for ModelView {
    fn from(r: Row) -> ModelView {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        ModelView {
            model_id: r.model_id,
            name: r.name,
            job_id: r.job_id,
            iteration: r.iteration,
            chain_id: r.chain_id,
            alias: r.alias,
            notes: r.notes,
            classes: strings(&r.classes),
            candidate_classes: strings(&r.candidate_classes),
            wave: Wave {
                start: r.wave_start,
                end: r.wave_end,
                count: r.wave_count,
            },
            training_size: r.training_size,
            metrics: r.metrics,
            perf_estimate: r.perf_estimate,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// A page of models, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelPage {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub models: Vec<ModelView>,
}

/// The first job of `job`'s chain (itself when it has no parent).
async fn chain_of(db: &impl ConnectionTrait, job: Uuid) -> Result<Uuid, sea_orm::DbErr> {
    let mut id = job;
    // Chains are tens of iterations; the bound only guards against a cycle made by hand.
    for _ in 0..10_000 {
        let parent: Option<Option<Uuid>> = job::Entity::find_by_id(id)
            .select_only()
            .column(job::Column::ParentJobId)
            .into_tuple()
            .one(db)
            .await?;
        match parent.flatten() {
            Some(p) => id = p,
            None => break,
        }
    }
    Ok(id)
}

/// `<job label> it<k>`, or the label alone when it names the iteration already (as the
/// labels "continue" gives do: "chain · iteration 2").
fn default_name(label: &str, iteration: i64) -> String {
    if label.ends_with(&format!("iteration {iteration}")) {
        label.to_string()
    } else {
        format!("{label} it{iteration}")
    }
}

/// The model an iteration saved (`model.safetensors` and `model.json` in its folder), as a
/// row; a retried attempt replaces the row of the one before.
async fn register(db: DatabaseConnection, job: job::Model, dir: PathBuf) -> Result<(), String> {
    if !dir.join(WEIGHTS).is_file() {
        return Ok(());
    }
    let card = Card::read(&dir).map_err(|e| format!("{CARD}: {e:#}"))?;
    let fail = |e: sea_orm::DbErr| format!("cannot register the model: {e}");
    let chain = chain_of(&db, job.job_id).await.map_err(fail)?;
    let existing = Models::find()
        .filter(C::JobId.eq(job.job_id))
        .one(&db)
        .await
        .map_err(fail)?;
    let row = entity::ActiveModel {
        model_id: Set(existing.as_ref().map_or_else(Uuid::new_v4, |m| m.model_id)),
        name: Set(existing.as_ref().map_or_else(
            || default_name(&job.label, card.iteration),
            |m| m.name.clone(),
        )),
        job_id: Set(job.job_id),
        iteration: Set(card.iteration as i32),
        alias: Set(existing.as_ref().and_then(|m| m.alias.clone())),
        notes: Set(existing.as_ref().and_then(|m| m.notes.clone())),
        chain_id: Set(chain),
        classes: Set(serde_json::json!(card.classes)),
        candidate_classes: Set(serde_json::json!(card.candidate_classes)),
        wave_start: Set(card.wave_start),
        wave_end: Set(card.wave_end),
        wave_count: Set(card.wave_count as i32),
        training_size: Set(card.training_size as i64),
        metrics: Set(card.metrics.clone()),
        perf_estimate: Set(existing.as_ref().and_then(|m| m.perf_estimate)),
        created_by: Set(job.created_by.clone()),
        created_at: Set(Utc::now()),
    };
    match existing {
        Some(_) => row.update(&db).await.map(|_| ()),
        None => Models::insert(row).exec(&db).await.map(|_| ()),
    }
    .map_err(fail)
}

/// A model by its id or its alias.
pub async fn find(db: &impl ConnectionTrait, key: &str) -> Result<Row, ApiError> {
    let found = match Uuid::parse_str(key) {
        Ok(id) => Models::find_by_id(id).one(db).await?,
        Err(_) => Models::find().filter(C::Alias.eq(key)).one(db).await?,
    };
    found.ok_or_else(|| ApiError::NotFound(format!("no model {key:?} (an id or an alias)")))
}

pub const MAX_LIMIT: u64 = 1000;

pub async fn list(db: &DatabaseConnection, offset: u64, limit: u64) -> Result<ModelPage, ApiError> {
    let q = Models::find();
    let total = q.clone().count(db).await?;
    let rows = q
        .order_by_desc(C::CreatedAt)
        .order_by_desc(C::ModelId)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?;
    Ok(ModelPage {
        total,
        offset,
        limit,
        models: rows.into_iter().map(ModelView::from).collect(),
    })
}

/// The models a job's iteration registered (what deleting it would remove).
pub async fn of_job(db: &impl ConnectionTrait, job: Uuid) -> Result<Vec<Row>, sea_orm::DbErr> {
    Models::find().filter(C::JobId.eq(job)).all(db).await
}

pub async fn delete_of_job(db: &impl ConnectionTrait, job: Uuid) -> Result<(), sea_orm::DbErr> {
    Models::delete_many()
        .filter(C::JobId.eq(job))
        .exec(db)
        .await
        .map(|_| ())
}

/// The performance estimate of the iteration `job`, once its sample was labelled.
pub async fn set_perf_estimate(
    db: &impl ConnectionTrait,
    job: Uuid,
    estimate: f64,
) -> Result<(), sea_orm::DbErr> {
    Models::update_many()
        .col_expr(C::PerfEstimate, sea_orm::sea_query::Expr::value(estimate))
        .filter(C::JobId.eq(job))
        .exec(db)
        .await
        .map(|_| ())
}

/// A CLASSIFY config that names a registered model (`model_id`, an id or an alias) is run on
/// that model's folder (`model_path`, under the files root): 422 when there is no such model.
pub async fn resolve_config(
    state: &AppState,
    job_type: &str,
    config: &mut Value,
) -> Result<(), ApiError> {
    if job_type != "CLASSIFY" {
        return Ok(());
    }
    let Some(key) = config.get("model_id").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let invalid = |m: String| ApiError::Invalid {
        message: format!("config.model_id: {m}"),
        field: Some("config.model_id".into()),
    };
    let key = key
        .as_str()
        .ok_or_else(|| invalid("must be a model's id or alias (a string)".into()))?;
    let model = find(&state.db, key).await.map_err(|e| match e {
        ApiError::NotFound(m) => invalid(m),
        other => other,
    })?;
    let job = job::Entity::find_by_id(model.job_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            invalid(format!(
                "the job {} that trained model {key} is gone",
                model.job_id
            ))
        })?;
    config["model_path"] = Value::from(job.dir_path);
    Ok(())
}

/// The folder of the iteration that trained `model` (its weights and card).
pub async fn folder(state: &AppState, model: &Row) -> Result<PathBuf, ApiError> {
    let job = job::Entity::find_by_id(model.job_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "the job {} that trained this model is gone",
                model.job_id
            ))
        })?;
    Ok(state.workers.job_dir(&job.dir_path))
}
