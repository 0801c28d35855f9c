//! In-process workers: claim a job from the queue, run it through the job-type contract on
//! its own task, heartbeat while it runs, stop it when its row leaves PROCESSING (ABORT), and
//! write its terminal phase. A reaper ends jobs whose worker died. GPU jobs hold a semaphore
//! slot.

pub mod gpu;
mod reaper;

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

pub use reaper::kill_job_processes;

use futures_util::future::BoxFuture;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::{
    config::Config,
    job_types::{JobContext, JobLog, Paths, Registry},
    queue::{
        Action, Phase, Queue, TransitionError, duration_s,
        job::{self, Column as C},
        now_ms, transition, update_if,
    },
    science::{Cancel, Progress},
};

/// Work a job type needs done after its job succeeded and before the job is COMPLETED, with
/// the database (ACTIVE_ML stores the labellings it proposed); an error fails the job. The
/// domains above the worker register them by type name (see `app::extensions`).
pub type SuccessHook = Arc<
    dyn Fn(DatabaseConnection, job::Model, PathBuf) -> BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// The workers of this process and what they share: the queue, the job types, the roots,
/// the GPU slots, the timings and the progress of the jobs they run.
#[derive(Clone)]
pub struct Workers {
    pub queue: Queue,
    pub registry: Arc<Registry>,
    pub files_root: PathBuf,
    pub spectra_root: PathBuf,
    pub device: String,
    pub gpu: Arc<gpu::GpuSlots>,
    pub worker_id: String,
    pub heartbeat: Duration,
    pub lost_after: Duration,
    pub poll: Duration,
    pub accept: Vec<&'static str>,
    /// By job type: what runs after a job of that type succeeded.
    pub success_hooks: Arc<HashMap<&'static str, SuccessHook>>,
    /// Progress of the jobs running in this process, for their pages.
    /// The jobs running in this process: their progress, for their pages, and their cancel
    /// switch, for an ABORT made here.
    pub live: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, (Progress, Cancel)>>>,
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Completed,
    Failed(String),
    /// The row left PROCESSING under us (ABORT, or the reaper): nothing was written.
    Superseded,
}

impl Workers {
    pub fn new(
        config: &Config,
        queue: Queue,
        registry: Arc<Registry>,
        success_hooks: HashMap<&'static str, SuccessHook>,
    ) -> anyhow::Result<Workers> {
        let mut accept = Vec::new();
        for name in &config.worker.accept {
            match registry.names().into_iter().find(|n| n == name) {
                Some(n) => accept.push(n),
                None => anyhow::bail!(
                    "worker.accept names unknown job type {name:?}; known: {}",
                    registry.names().join(", ")
                ),
            }
        }
        if accept.is_empty() {
            accept = registry.names();
        }
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        Ok(Workers {
            queue,
            registry,
            files_root: config.files_root(),
            spectra_root: config.spectra_root(),
            device: config.gpu.device.clone(),
            gpu: gpu::GpuSlots::new(&config.gpu),
            worker_id: format!(
                "{}:{}:{}",
                host.trim(),
                std::process::id(),
                &Uuid::new_v4().to_string()[..8]
            ),
            heartbeat: Duration::from_secs_f64(config.worker.heartbeat_s),
            lost_after: Duration::from_secs_f64(config.worker.lost_after_s),
            poll: Duration::from_secs_f64(config.worker.poll_s),
            accept,
            success_hooks: Arc::new(success_hooks),
            live: Arc::default(),
        })
    }

    fn db(&self) -> &DatabaseConnection {
        self.queue.db()
    }

    /// Starts `concurrency` worker loops and the reaper; they stop when the set is dropped.
    pub fn spawn(&self, concurrency: usize) -> JoinSet<()> {
        let mut set = JoinSet::new();
        self.queue.spawn_listener();
        let rt = self.clone();
        set.spawn(async move { rt.reaper_loop().await });
        if concurrency > 0 {
            tracing::info!(
                "worker {} runs up to {concurrency} jobs at once, accepting {} ({} GPU slot(s))",
                self.worker_id,
                self.accept.join(", "),
                self.gpu.available()
            );
        }
        for _ in 0..concurrency {
            let rt = self.clone();
            set.spawn(async move { rt.worker_loop().await });
        }
        set
    }

    async fn worker_loop(self) {
        loop {
            let woken = self.queue.wake().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.claim_next().await {
                Ok(Some((job, permit))) => {
                    self.run_one(job).await;
                    drop(permit);
                    // A finished job frees a slot that a waiting GPU job may need.
                    self.queue.wake().notify_waiters();
                }
                Ok(None) => {
                    let _ = tokio::time::timeout(self.poll, woken).await;
                }
                Err(e) => {
                    tracing::error!("claiming a job failed: {e}");
                    tokio::time::sleep(self.poll).await;
                }
            }
        }
    }

    /// Claims the next job this worker may run now; a GPU job only with a free GPU slot.
    pub async fn claim_next(
        &self,
    ) -> Result<Option<(job::Model, Option<gpu::Lease>)>, sea_orm::DbErr> {
        let permit = self.gpu.try_acquire();
        let types: Vec<&str> = self
            .accept
            .iter()
            .copied()
            .filter(|t| permit.is_some() || !self.registry.get(t).is_some_and(|jt| jt.needs_gpu()))
            .collect();
        let Some(job) = self.queue.claim(&types, &self.worker_id).await? else {
            return Ok(None);
        };
        let needs_gpu = self
            .registry
            .get(&job.job_type)
            .is_some_and(|jt| jt.needs_gpu());
        let mut lease = permit.filter(|_| needs_gpu);
        if let Some(l) = &mut lease {
            l.bind(job.job_id);
        }
        Ok(Some((job, lease)))
    }

    /// (step, done, total, pace) of a job running in this process.
    pub fn progress(&self, id: Uuid) -> Option<(String, u64, u64, Option<String>)> {
        let live = self.live.lock().ok()?;
        live.get(&id).map(|(progress, _)| {
            let (step, done, total) = progress.snapshot();
            (step, done, total, progress.pace())
        })
    }

    /// Stops job `id` at once when it runs in this process; its row has left PROCESSING (an
    /// ABORT made here). Elsewhere the job's own watcher sees the row within ~250 ms.
    pub fn cancel_here(&self, id: Uuid) {
        if let Some((_, cancel)) = self.live.lock().ok().and_then(|l| l.get(&id).cloned()) {
            cancel.cancel();
        }
    }

    pub fn job_dir(&self, dir_path: &str) -> PathBuf {
        self.files_root.join(dir_path.trim_start_matches('/'))
    }

    /// How the configs of the jobs this server runs name their files (SPEC §6).
    pub fn paths(&self) -> Paths {
        Paths::Server {
            spectra: self.spectra_root.clone(),
            files: self.files_root.clone(),
        }
    }

    /// Runs a claimed job to its end and writes its terminal phase (unless superseded).
    pub async fn run_one(&self, job: job::Model) -> Outcome {
        let dir = self.job_dir(&job.dir_path);
        let log =
            match std::fs::create_dir_all(&dir).and_then(|_| JobLog::open(&dir.join("log.txt"))) {
                Ok(log) => log,
                Err(e) => {
                    return self
                        .finish(
                            &job,
                            Err(format!(
                                "cannot open the job directory {}: {e}",
                                dir.display()
                            )),
                            None,
                        )
                        .await;
                }
            };
        log.line(&format!(
            "{} job {} started (attempt {}) on worker {}",
            job.job_type, job.job_id, job.attempt, self.worker_id
        ));
        let config = job.config.clone().unwrap_or(serde_json::Value::Null);
        let unknown = self.registry.unknown_keys(&job.job_type, &config);
        if !unknown.is_empty() {
            log.line(&format!(
                "warning: config keys not used by {}: {}",
                job.job_type,
                unknown.join(", ")
            ));
        }
        let result = match self.registry.get(&job.job_type) {
            None => Err(format!("this worker has no job type {:?}", job.job_type)),
            Some(jt) => match jt.validate(&config) {
                Err(e) => Err(format!("invalid config: {e}")),
                Ok(()) => {
                    let cancel = Cancel::new();
                    let job_dir = dir.clone();
                    let progress = Progress::new();
                    if let Ok(mut live) = self.live.lock() {
                        live.insert(job.job_id, (progress.clone(), cancel.clone()));
                    }
                    let ctx = JobContext {
                        job_id: job.job_id,
                        dir,
                        config,
                        paths: self.paths(),
                        // A GPU job runs on the device of its slot.
                        device: self
                            .gpu
                            .device_of(job.job_id)
                            .unwrap_or_else(|| self.device.clone()),
                        log: log.clone(),
                        cancel: cancel.clone(),
                        progress,
                    };
                    let watcher =
                        tokio::spawn(self.clone().watch(job.job_id, job.attempt, cancel.clone()));
                    // A panic in the job ends up here as a JoinError, not in the worker.
                    let joined = tokio::spawn(jt.run(ctx)).await;
                    watcher.abort();
                    if let Ok(mut live) = self.live.lock() {
                        live.remove(&job.job_id);
                    }
                    match joined {
                        Ok(Ok(())) => match self.success_hooks.get(job.job_type.as_str()) {
                            Some(hook) => hook(self.db().clone(), job.clone(), job_dir).await,
                            None => Ok(()),
                        },
                        Ok(Err(e)) => Err(format!("{e:#}")),
                        Err(j) if j.is_panic() => Err(format!(
                            "the job panicked: {}",
                            panic_message(j.into_panic())
                        )),
                        Err(j) => Err(format!("the job was cancelled: {j}")),
                    }
                }
            },
        };
        self.finish(&job, result, Some(&log)).await
    }

    async fn finish(
        &self,
        job: &job::Model,
        result: Result<(), String>,
        log: Option<&JobLog>,
    ) -> Outcome {
        let ended = chrono::Utc::now();
        let duration = duration_s(job.started_at, ended);
        let (action, error) = match &result {
            Ok(()) => (Action::Complete, None),
            Err(e) => (Action::Fail, Some(e.clone())),
        };
        let written = transition(
            self.db(),
            job.job_id,
            Phase::Processing,
            action,
            Some(job.attempt),
            vec![
                (C::EndedAt, Expr::value(ended)),
                (C::ExecutionDuration, Expr::value(duration)),
                (C::Error, Expr::value(error.clone())),
            ],
        )
        .await;
        let outcome = match written {
            Ok(Some(_)) => match result {
                Ok(()) => Outcome::Completed,
                Err(e) => Outcome::Failed(e),
            },
            Ok(None) => Outcome::Superseded,
            Err(e) => {
                tracing::error!("job {}: cannot record its end: {e}", job.job_id);
                Outcome::Failed(format!("cannot record the end: {e}"))
            }
        };
        if let Some(log) = log {
            match &outcome {
                Outcome::Completed => log.line("COMPLETED"),
                Outcome::Failed(e) => log.line(&format!("ERROR: {e}")),
                Outcome::Superseded => log.line(
                    "stopped: the job left PROCESSING (aborted, or taken over); result discarded",
                ),
            }
        }
        outcome
    }

    /// Heartbeats every `heartbeat`, and cancels the job within ~250 ms of its row leaving
    /// PROCESSING for this attempt (an ABORT made in another process, or the reaper).
    async fn watch(self, id: Uuid, attempt: i32, cancel: Cancel) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_beat = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            if last_beat.elapsed() >= self.heartbeat {
                last_beat = tokio::time::Instant::now();
                let beat = update_if(
                    self.db(),
                    id,
                    Phase::Processing,
                    Some(attempt),
                    vec![(C::HeartbeatMs, Expr::value(now_ms()))],
                )
                .await;
                if let Err(e) = beat {
                    tracing::warn!("job {id}: heartbeat failed: {e}");
                }
            }
            let row: Result<Option<(String, i32)>, _> = job::Entity::find_by_id(id)
                .select_only()
                .column(C::Phase)
                .column(C::Attempt)
                .into_tuple()
                .one(self.db())
                .await;
            match row {
                Ok(Some((phase, a))) if phase == Phase::Processing.as_str() && a == attempt => {}
                Ok(_) => {
                    cancel.cancel();
                    return;
                }
                Err(e) => tracing::warn!("job {id}: cannot read its phase: {e}"),
            }
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
