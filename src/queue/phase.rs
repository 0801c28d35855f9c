//! The phase state machine of SPEC §2: [`Phase::transition`] is the only place it lives, and
//! every phase write derives its new phase from it (see [`super::transition`]).

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
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
            // Queued: a cluster refused the submission.
            (Queued | Processing, Fail) => Ok(Error),
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

/// Seconds from `started` to `ended` (the `execution_duration` field), when it started at all.
pub fn duration_s(started: Option<DateTime<Utc>>, ended: DateTime<Utc>) -> Option<f64> {
    started.map(|s| (ended - s).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
