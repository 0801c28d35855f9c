//! Job domain types: the phase state machine, labels and descriptions that cannot be wrong,
//! and the JSON shape of a job.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    error::ApiError,
    job_types::{CheckError, ConfigError},
    queue::{Phase, PhaseConflict, TransitionError},
};

impl From<PhaseConflict> for ApiError {
    fn from(c: PhaseConflict) -> Self {
        ApiError::Conflict(c.to_string())
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        let field = format!("config.{}", e.field);
        ApiError::Invalid {
            message: format!("{field}: {}", e.message),
            field: Some(field),
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::UnknownType { .. } => ApiError::invalid("type", e.to_string()),
            CheckError::Config(c) => c.into(),
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::Conflict(c) => c.into(),
            TransitionError::Db(d) => d.into(),
        }
    }
}

fn reject_control(field: &str, s: &str) -> Result<(), ApiError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(ApiError::invalid(
            field,
            format!(
                "{field} must not contain control characters (found U+{:04X})",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// 1–50 characters, no control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Label(String);

impl Label {
    pub fn parse(s: &str) -> Result<Label, ApiError> {
        let n = s.chars().count();
        if n == 0 || n > 50 || s.trim().is_empty() {
            return Err(ApiError::invalid(
                "label",
                format!("label must be 1 to 50 characters (got {n})"),
            ));
        }
        reject_control("label", s)?;
        Ok(Label(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Lowercase, every non-alphanumeric character replaced by `_`.
    pub fn slug(&self) -> String {
        self.0
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// At most 255 characters, no control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Description(String);

impl Description {
    pub fn parse(s: &str) -> Result<Description, ApiError> {
        let n = s.chars().count();
        if n > 255 {
            return Err(ApiError::invalid(
                "description",
                format!("description must be at most 255 characters (got {n})"),
            ));
        }
        reject_control("description", s)?;
        Ok(Description(s.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// `/JOBS/job_<slug of label>_<uuid>`, relative to the files root.
pub fn job_dir_path(label: &Label, id: Uuid) -> String {
    format!("/JOBS/job_{}_{}", label.slug(), id)
}

/// A job as the API returns it (the original's field names).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    pub job_id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    #[schema(min_length = 1, max_length = 50)]
    pub label: String,
    #[schema(max_length = 255)]
    pub description: Option<String>,
    pub phase: Phase,
    pub dir_path: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub execution_duration: Option<f64>,
    pub error: Option<String>,
    pub parent_job_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// The SLURM cluster the job runs on (absent: this host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// SLURM's job id on that cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The node SLURM ran it on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The exit code SLURM reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Who made it (with accounts on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Training metrics of a job that trained a model (`metrics.json`), on a single job's read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// Weights & Biases and MLflow runs its log names, on a single job's read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<super::links::RunLink>,
}

impl JobView {
    /// The index of a sweep's task (SPEC §8).
    pub fn task_index(&self) -> Option<u32> {
        crate::slurm::sweep::task_index(self.config.as_ref())
            .filter(|_| self.parent_job_id.is_some())
    }

    /// Whether the current user may run, abort or delete it (the page hides what they may not).
    pub fn may_change(&self) -> bool {
        crate::auth::may_change(self.created_by.as_deref())
    }

    pub fn is_sweep(&self) -> bool {
        crate::slurm::sweep::is_sweep(self.config.as_ref())
    }
}

impl From<crate::queue::job::Model> for JobView {
    fn from(m: crate::queue::job::Model) -> Self {
        JobView {
            job_id: m.job_id,
            job_type: m.job_type,
            label: m.label,
            description: m.description,
            phase: m.phase,
            dir_path: m.dir_path,
            created_at: m.created_at,
            started_at: m.started_at,
            ended_at: m.ended_at,
            execution_duration: m.execution_duration,
            error: m.error,
            parent_job_id: m.parent_job_id,
            config: m.config,
            cluster: m.cluster,
            external_id: m.external_id,
            node: m.node,
            exit_code: m.exit_code,
            created_by: m.created_by,
            metrics: None,
            links: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub jobs: Vec<JobView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_51_character_label_is_rejected() {
        assert!(Label::parse(&"a".repeat(50)).is_ok());
        assert!(Label::parse(&"a".repeat(51)).is_err());
    }

    #[test]
    fn an_empty_label_is_rejected() {
        assert!(Label::parse("").is_err());
        assert!(Label::parse("   ").is_err());
    }

    #[test]
    fn a_label_with_nul_is_rejected() {
        assert!(Label::parse("a\0b").is_err());
        assert!(Description::parse("line\nbreak").is_err());
    }

    #[test]
    fn a_256_character_description_is_rejected() {
        assert!(Description::parse(&"é".repeat(255)).is_ok());
        assert!(Description::parse(&"é".repeat(256)).is_err());
    }

    #[test]
    fn the_slug_is_lowercase_with_underscores() {
        assert_eq!(Label::parse("Hα Run #2").unwrap().slug(), "h__run__2");
    }
}
