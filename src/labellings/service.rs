//! Labelling operations for the API, the pages and the active-learning loop (which inserts a
//! finished iteration's `labellings.json`). A batch insert is one INSERT statement; a batch patch one transaction.

use std::collections::HashSet;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::Deserialize;
use uuid::Uuid;

use super::model::{LabellingPatch, LabellingView, NewLabelling, SpectrumSet};
use crate::{
    db::entities::labelling::{self, Column as C},
    error::ApiError,
    queue::job,
};

async fn require_jobs(db: &impl ConnectionTrait, ids: &HashSet<Uuid>) -> Result<(), ApiError> {
    for id in ids {
        if job::Entity::find_by_id(*id).one(db).await?.is_none() {
            return Err(ApiError::NotFound(format!("no job {id}")));
        }
    }
    Ok(())
}

fn active(new: NewLabelling, set: SpectrumSet, position: i32) -> labelling::ActiveModel {
    let empty_is_none = |v: Option<String>| v.filter(|s| !s.is_empty());
    labelling::ActiveModel {
        labelling_id: Set(Uuid::new_v4()),
        job_id: Set(new.job_id),
        spectrum_filename: Set(new.spectrum_filename),
        spectrum_set: Set(set),
        sequence_iteration: Set(new.sequence_iteration),
        model_prediction: Set(empty_is_none(new.model_prediction)),
        user_label: Set(empty_is_none(new.user_label)),
        user_comment: Set(empty_is_none(new.user_comment)),
        position: Set(position),
        entropy: Set(new.entropy.filter(|e| e.is_finite())),
        result_row: Set(new.result_row.filter(|r| *r >= 0)),
        labelled_by: Set(crate::auth::current_user()),
    }
}

pub async fn create(db: &DatabaseConnection, new: NewLabelling) -> Result<LabellingView, ApiError> {
    let set = new.check()?;
    require_jobs(db, &HashSet::from([new.job_id])).await?;
    let model = active(new, set, 0).insert(db).await?;
    Ok(model)
}

/// The whole list or nothing (one transaction); positions follow the list's order.
pub async fn create_batch(
    db: &DatabaseConnection,
    list: Vec<NewLabelling>,
) -> Result<usize, ApiError> {
    let txn = db.begin().await?;
    let n = insert_batch(&txn, list).await?;
    txn.commit().await?;
    Ok(n)
}

/// INSERTs of up to 1,000 rows; positions follow the list's order.
async fn insert_batch(
    db: &impl ConnectionTrait,
    list: Vec<NewLabelling>,
) -> Result<usize, ApiError> {
    if list.is_empty() {
        return Ok(0);
    }
    let mut models = Vec::with_capacity(list.len());
    for (i, new) in list.iter().enumerate() {
        let set = new.check().map_err(|e| match e {
            ApiError::Invalid { field, message } => ApiError::Invalid {
                field: field.map(|f| format!("[{i}].{f}")),
                message: format!("labelling {i}: {message}"),
            },
            other => other,
        })?;
        models.push(active(new.clone(), set, i as i32));
    }
    require_jobs(db, &list.iter().map(|l| l.job_id).collect()).await?;
    let n = models.len();
    // One statement per 1,000 rows: both databases bound the parameters of one statement
    // (SQLite 32,766, PostgreSQL 65,535; 9 a row), and a survey's candidates run to 100,000s.
    let mut models = models.into_iter().peekable();
    while models.peek().is_some() {
        let part: Vec<_> = models.by_ref().take(1000).collect();
        labelling::Entity::insert_many(part).exec(db).await?;
    }
    Ok(n)
}

/// A job's labellings become exactly `list` (a job run again replaces those of its earlier
/// attempt), in one transaction.
pub async fn replace_for_job(
    db: &DatabaseConnection,
    job_id: Uuid,
    list: Vec<NewLabelling>,
) -> Result<usize, ApiError> {
    let txn = db.begin().await?;
    labelling::Entity::delete_many()
        .filter(C::JobId.eq(job_id))
        .exec(&txn)
        .await?;
    let n = insert_batch(&txn, list).await?;
    txn.commit().await?;
    Ok(n)
}

pub async fn get(db: &DatabaseConnection, id: Uuid) -> Result<LabellingView, ApiError> {
    labelling::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no labelling {id}")))
}

fn apply(model: labelling::Model, patch: &LabellingPatch) -> labelling::ActiveModel {
    let mut a = model.into_active_model();
    let value = |v: &String| if v.is_empty() { None } else { Some(v.clone()) };
    if let Some(v) = &patch.user_label {
        a.user_label = Set(value(v));
        a.labelled_by = Set(crate::auth::current_user());
    }
    if let Some(v) = &patch.user_comment {
        a.user_comment = Set(value(v));
    }
    if let Some(v) = &patch.model_prediction {
        a.model_prediction = Set(value(v));
    }
    a
}

pub async fn patch(
    db: &DatabaseConnection,
    id: Uuid,
    patch: LabellingPatch,
) -> Result<LabellingView, ApiError> {
    patch.check()?;
    let model = labelling::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no labelling {id}")))?;
    crate::auth::audit(db, "labelling_change", Some(id.to_string()), None, None).await;
    Ok(apply(model, &patch).update(db).await?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchPatch {
    pub labelling_ids: Vec<Uuid>,
    pub labellings: Vec<LabellingPatch>,
}

/// All or nothing: 400 when the lists differ in length, 404 when an id is unknown.
pub async fn patch_batch(db: &DatabaseConnection, batch: BatchPatch) -> Result<(), ApiError> {
    if batch.labelling_ids.len() != batch.labellings.len() {
        return Err(ApiError::BadRequest(format!(
            "labelling_ids has {} entries but labellings has {}",
            batch.labelling_ids.len(),
            batch.labellings.len()
        )));
    }
    for p in &batch.labellings {
        p.check()?;
    }
    let txn = db.begin().await?;
    for (id, p) in batch.labelling_ids.iter().zip(&batch.labellings) {
        let model = labelling::Entity::find_by_id(*id)
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no labelling {id}")))?;
        apply(model, p).update(&txn).await?;
    }
    txn.commit().await?;
    crate::auth::audit(
        db,
        "labelling_change",
        Some(format!("{} labellings", batch.labelling_ids.len())),
        None,
        None,
    )
    .await;
    Ok(())
}

/// A job's labellings: ORACLE, then PERFORMANCE_ESTIMATION, then CANDIDATE, each in the job's order.
pub async fn list(db: &impl ConnectionTrait, job_id: Uuid) -> Result<Vec<LabellingView>, ApiError> {
    list_sets(db, job_id, &SpectrumSet::ALL).await
}

/// A job's labellings of `sets` only, in the order of [`list`].
pub async fn list_sets(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    sets: &[SpectrumSet],
) -> Result<Vec<LabellingView>, ApiError> {
    let mut rows = labelling::Entity::find()
        .filter(C::JobId.eq(job_id))
        .filter(C::SpectrumSet.is_in(sets.iter().copied()))
        .all(db)
        .await?;
    rows.sort_by(|a, b| {
        a.spectrum_set
            .rank()
            .cmp(&b.spectrum_set.rank())
            .then(a.position.cmp(&b.position))
            .then(a.labelling_id.cmp(&b.labelling_id))
    });
    Ok(rows)
}

/// One page of a job's labellings of one set, in the job's order, and how many the set holds
/// (a survey's candidates run to 100,000s; the index on (job, set, position) serves both).
pub async fn page(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    set: SpectrumSet,
    offset: u64,
    limit: u64,
) -> Result<(Vec<LabellingView>, u64), ApiError> {
    let of_set = || {
        labelling::Entity::find()
            .filter(C::JobId.eq(job_id))
            .filter(C::SpectrumSet.eq(set))
    };
    let total = of_set().count(db).await?;
    let rows = of_set()
        .order_by_asc(C::Position)
        .order_by_asc(C::LabellingId)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?;
    Ok((rows, total))
}
