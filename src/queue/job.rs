//! The `jobs` table: the job row is the queue (phase, attempt, worker, heartbeat).

use sea_orm::entity::prelude::*;

use super::Phase;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: Uuid,
    #[sea_orm(column_name = "type")]
    pub job_type: String,
    pub label: String,
    pub description: Option<String>,
    pub phase: Phase,
    pub dir_path: String,
    pub config: Option<Json>,
    pub error: Option<String>,
    pub parent_job_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    pub execution_duration: Option<f64>,
    /// Incremented by every claim; writes from an older attempt are refused.
    pub attempt: i32,
    pub worker_id: Option<String>,
    pub heartbeat_ms: Option<i64>,
    /// The SLURM cluster the job runs on (none: this host's workers run it).
    pub cluster: Option<String>,
    /// SLURM's job id once submitted (`ID_TASK` for an array task).
    pub external_id: Option<String>,
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    /// The user who made it (SPEC §11); none without accounts.
    pub created_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
