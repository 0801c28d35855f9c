//! Job domain types: the phase state machine, labels and descriptions that cannot be wrong,
//! and the JSON shape of a job.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "QUEUED")]
    Queued,
    #[sea_orm(string_value = "PROCESSING")]
    Processing,
    #[sea_orm(string_value = "COMPLETED")]
    Completed,
    #[sea_orm(string_value = "ERROR")]
    Error,
    #[sea_orm(string_value = "ABORTED")]
    Aborted,
}

/// What someone (a user, a worker, the reaper) asks of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Run,
    Claim,
    Abort,
    Complete,
    Fail,
    Requeue,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cannot {action} a job in phase {phase}")]
pub struct PhaseConflict {
    pub phase: Phase,
    pub action: &'static str,
}

impl From<PhaseConflict> for ApiError {
    fn from(c: PhaseConflict) -> Self {
        ApiError::Conflict(c.to_string())
    }
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Queued,
        Phase::Processing,
        Phase::Completed,
        Phase::Error,
        Phase::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Queued => "QUEUED",
            Phase::Processing => "PROCESSING",
            Phase::Completed => "COMPLETED",
            Phase::Error => "ERROR",
            Phase::Aborted => "ABORTED",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Queued or processing: the job holds (or waits for) a worker.
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Queued | Phase::Processing)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Error | Phase::Aborted)
    }

    /// The only place the state machine lives.
    pub fn transition(self, action: Action) -> Result<Phase, PhaseConflict> {
        use Action::*;
        use Phase::*;
        match (self, action) {
            (Pending, Run) => Ok(Queued),
            (Queued, Claim) => Ok(Processing),
            (Queued | Processing, Abort) => Ok(Aborted),
            (Processing, Complete) => Ok(Completed),
            (Processing, Fail) => Ok(Error),
            (Processing, Requeue) => Ok(Queued),
            (phase, action) => Err(PhaseConflict {
                phase,
                action: action.verb(),
            }),
        }
    }
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Run => "RUN",
            Action::Claim => "start",
            Action::Abort => "ABORT",
            Action::Complete => "COMPLETE",
            Action::Fail => "end with ERROR",
            Action::Requeue => "queue again",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Seconds from `started` to `ended` (the `execution_duration` field), when it started at all.
pub fn duration_s(started: Option<DateTime<Utc>>, ended: DateTime<Utc>) -> Option<f64> {
    started.map(|s| (ended - s).num_milliseconds() as f64 / 1000.0)
}

/// `/JOBS/job_<slug of label>_<uuid>`, relative to the files root.
pub fn job_dir_path(label: &Label, id: Uuid) -> String {
    format!("/JOBS/job_{}_{}", label.slug(), id)
}

/// A job as the API returns it (the original's field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub label: String,
    pub description: Option<String>,
    pub phase: Phase,
    pub dir_path: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub execution_duration: Option<f64>,
    pub error: Option<String>,
    pub parent_job_id: Option<Uuid>,
    pub config: Option<serde_json::Value>,
    /// Training metrics of a job that trained a model (`metrics.json`), on a single job's read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

impl From<crate::db::entities::job::Model> for JobView {
    fn from(m: crate::db::entities::job::Model) -> Self {
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
            metrics: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
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

    #[test]
    fn only_queued_and_processing_jobs_can_be_aborted() {
        for p in Phase::ALL {
            assert_eq!(p.transition(Action::Abort).is_ok(), p.is_active(), "{p}");
        }
    }

    #[test]
    fn run_is_allowed_from_pending_only() {
        for p in Phase::ALL {
            assert_eq!(
                p.transition(Action::Run).is_ok(),
                p == Phase::Pending,
                "{p}"
            );
        }
    }

    #[test]
    fn a_conflict_names_the_phase() {
        let e = Phase::Completed.transition(Action::Abort).unwrap_err();
        assert_eq!(e.to_string(), "cannot ABORT a job in phase COMPLETED");
    }

    #[test]
    fn end_actions_need_a_processing_job() {
        assert_eq!(
            Phase::Processing.transition(Action::Complete),
            Ok(Phase::Completed)
        );
        assert_eq!(Phase::Processing.transition(Action::Fail), Ok(Phase::Error));
        assert!(Phase::Queued.transition(Action::Complete).is_err());
    }
}
