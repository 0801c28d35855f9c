//! The queue is the `jobs` table: RUN sets QUEUED, a worker claims the oldest QUEUED job of a
//! type it accepts with a compare-and-set on (phase, attempt), so every job runs exactly once
//! however many processes share the database. Workers are woken in-process by a `Notify` and,
//! across processes on PostgreSQL, by LISTEN/NOTIFY; a slow poll covers SQLite. Every phase
//! write — RUN, ABORT, claim, finish, the reaper, `end/…` — goes through [`transition`].
//!
//! Why not apalis (evaluated at 1.0): apalis-sqlite creates its own table `Jobs`, which in
//! SQLite (case-insensitive names) collides with SPEC §2's `jobs` in the same file; its idle
//! workers wake on the heartbeat timer (30 s by default) unless a stream strategy is wired per
//! backend; and its own lock/retry/orphan state would be a second truth beside the job row,
//! which must hold the phase, the attempt number and the heartbeat anyway (SPEC §2). Claiming
//! on the row itself is one UPDATE on either backend.

pub mod job;
pub mod phase;

use std::sync::Arc;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, SimpleExpr},
};
use tokio::sync::Notify;
use uuid::Uuid;

use job::Column as C;
pub use phase::{Action, Phase, PhaseConflict, duration_s};

pub const CHANNEL: &str = "mljm_jobs";

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A phase write that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The state machine does not allow the action in the phase the caller read.
    #[error(transparent)]
    Conflict(#[from] PhaseConflict),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Applies `action` to job `id`, which the caller read in phase `from`: the new phase is
/// `from.transition(action)`, written with `changes` only if the row is still in `from` (and,
/// when given, still at `attempt`). `Ok(Some(new phase))` when this caller won the race,
/// `Ok(None)` when the row had moved on meanwhile.
pub async fn transition(
    db: &DatabaseConnection,
    id: Uuid,
    from: Phase,
    action: Action,
    attempt: Option<i32>,
    mut changes: Vec<(C, SimpleExpr)>,
) -> Result<Option<Phase>, TransitionError> {
    let to = from.transition(action)?;
    changes.push((C::Phase, Expr::value(to.as_str())));
    Ok(update_if(db, id, from, attempt, changes)
        .await?
        .then_some(to))
}

/// Sets `changes` on job `id` only while it is in phase `from` (and, when given, at
/// `attempt`); never a phase (that is [`transition`]'s). Returns whether the row matched.
pub async fn update_if(
    db: &DatabaseConnection,
    id: Uuid,
    from: Phase,
    attempt: Option<i32>,
    changes: Vec<(C, SimpleExpr)>,
) -> Result<bool, DbErr> {
    let mut update = job::Entity::update_many()
        .filter(C::JobId.eq(id))
        .filter(C::Phase.eq(from));
    if let Some(a) = attempt {
        update = update.filter(C::Attempt.eq(a));
    }
    for (col, value) in changes {
        update = update.col_expr(col, value);
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

#[derive(Clone)]
pub struct Queue {
    db: DatabaseConnection,
    wake: Arc<Notify>,
}

impl Queue {
    pub fn new(db: DatabaseConnection) -> Queue {
        Queue {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Tells workers here and in other processes that a job became claimable.
    pub async fn enqueued(&self) {
        self.wake.notify_waiters();
        if crate::db::is_postgres(&self.db)
            && let Err(e) = self
                .db
                .execute_unprepared(&format!("NOTIFY {CHANNEL}"))
                .await
        {
            tracing::warn!(
                "NOTIFY failed (workers elsewhere will see the job at their next poll): {e}"
            );
        }
    }

    /// On PostgreSQL, forwards NOTIFYs from other processes to this process' workers.
    pub fn spawn_listener(&self) {
        if !crate::db::is_postgres(&self.db) {
            return;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen(CHANNEL).await?;
                    loop {
                        l.recv().await?;
                        wake.notify_waiters();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                if let Err(e) = listener.await {
                    tracing::warn!("LISTEN {CHANNEL} lost ({e}); retrying in 1 s");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }

    /// Claims the oldest QUEUED job whose type is in `types`. `None` when there is none.
    pub async fn claim(
        &self,
        types: &[&str],
        worker_id: &str,
    ) -> Result<Option<job::Model>, DbErr> {
        if types.is_empty() {
            return Ok(None);
        }
        loop {
            let candidates: Vec<(Uuid, i32)> = job::Entity::find()
                .select_only()
                .column(C::JobId)
                .column(C::Attempt)
                .filter(C::Phase.eq(Phase::Queued))
                .filter(C::Cluster.is_null())
                .filter(C::JobType.is_in(types.iter().copied()))
                .order_by_asc(C::CreatedAt)
                .order_by_asc(C::JobId)
                .limit(8)
                .into_tuple()
                .all(&self.db)
                .await?;
            if candidates.is_empty() {
                return Ok(None);
            }
            for (id, attempt) in candidates {
                let now = chrono::Utc::now();
                let won = transition(
                    &self.db,
                    id,
                    Phase::Queued,
                    Action::Claim,
                    Some(attempt),
                    vec![
                        (C::Attempt, Expr::value(attempt + 1)),
                        (C::WorkerId, Expr::value(worker_id)),
                        (C::HeartbeatMs, Expr::value(now.timestamp_millis())),
                        (C::StartedAt, Expr::value(now)),
                    ],
                )
                .await;
                match won {
                    Ok(Some(_)) => return job::Entity::find_by_id(id).one(&self.db).await,
                    Ok(None) => {}
                    Err(TransitionError::Db(e)) => return Err(e),
                    Err(TransitionError::Conflict(c)) => return Err(DbErr::Custom(c.to_string())),
                }
            }
            // Every candidate was taken by another worker meanwhile: look again.
        }
    }
}
