//! The `models` table (migration m0006).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "models")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: Uuid,
    pub name: String,
    /// The ACTIVE_ML iteration that trained it; its folder holds `model.safetensors`.
    pub job_id: Uuid,
    pub iteration: i32,
    /// The first job of its active-learning chain.
    pub chain_id: Uuid,
    pub alias: Option<String>,
    pub notes: Option<String>,
    /// Class names, in the order of the model's outputs.
    pub classes: Json,
    pub candidate_classes: Json,
    pub wave_start: f64,
    pub wave_end: f64,
    pub wave_count: i32,
    pub training_size: i64,
    pub metrics: Json,
    pub perf_estimate: Option<f64>,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
