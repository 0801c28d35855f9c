//! The reaper: a job whose heartbeat stopped (its worker died) ends in ERROR, or is queued
//! again when its type is safe to retry, and the processes it left behind are killed.

use super::*;

impl Workers {
    /// Ends (or re-queues, for retry-safe types) PROCESSING jobs whose heartbeat is stale.
    /// Runs once at start (recovery) and then every third of `lost_after`.
    pub(super) async fn reaper_loop(self) {
        loop {
            match self.reap().await {
                Ok(n) if n > 0 => tracing::warn!("reaper: {n} job(s) had lost their worker"),
                Ok(_) => {}
                Err(e) => tracing::error!("reaper failed: {e}"),
            }
            tokio::time::sleep(self.lost_after / 3).await;
        }
    }

    pub async fn reap(&self) -> Result<usize, TransitionError> {
        let cutoff = now_ms() - self.lost_after.as_millis() as i64;
        let stale = job::Entity::find()
            .filter(C::Phase.eq(Phase::Processing))
            // A cluster job is SLURM's to end (its cluster's poll), never "worker lost".
            .filter(C::Cluster.is_null())
            .filter(C::HeartbeatMs.lt(cutoff))
            .all(self.db())
            .await?;
        let mut reaped = 0;
        for job in stale {
            let retry = self
                .registry
                .get(&job.job_type)
                .is_some_and(|jt| jt.retry_safe());
            let lost_for = (now_ms() - job.heartbeat_ms.unwrap_or_default()) as f64 / 1000.0;
            let reason = format!(
                "worker lost: {} sent no heartbeat for {lost_for:.0} s",
                job.worker_id.as_deref().unwrap_or("?")
            );
            let (action, changes) = if retry {
                (
                    Action::Requeue,
                    vec![(C::WorkerId, Expr::value(Option::<String>::None))],
                )
            } else {
                let ended = chrono::Utc::now();
                let duration = duration_s(job.started_at, ended);
                (
                    Action::Fail,
                    vec![
                        (C::Error, Expr::value(reason.clone())),
                        (C::EndedAt, Expr::value(ended)),
                        (C::ExecutionDuration, Expr::value(duration)),
                    ],
                )
            };
            let moved = transition(
                self.db(),
                job.job_id,
                Phase::Processing,
                action,
                Some(job.attempt),
                changes,
            )
            .await?;
            if moved.is_some() {
                reaped += 1;
                let killed = kill_job_processes(job.job_id);
                if killed > 0 {
                    tracing::warn!("job {}: killed {killed} process(es) it left", job.job_id);
                }
                if let Ok(log) = JobLog::open(&self.job_dir(&job.dir_path).join("log.txt")) {
                    log.line(&if retry {
                        format!("{reason}; queued again")
                    } else {
                        format!("ERROR: {reason}")
                    });
                }
                if retry {
                    self.queue.enqueued().await;
                }
            }
        }
        Ok(reaped)
    }
}

/// Kills the processes on this host that a job started (they carry `MLJM_JOB_ID=<id>` in their
/// environment, grandchildren included), so that a job whose worker died — even by SIGKILL,
/// which leaves its process group behind — does not run on. Returns how many were killed.
pub fn kill_job_processes(job_id: Uuid) -> usize {
    let marker = format!("MLJM_JOB_ID={job_id}");
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            // SAFETY: kill(2) with a pid read from /proc; at worst the process is already gone.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}
