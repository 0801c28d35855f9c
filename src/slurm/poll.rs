//! A cluster's loop: submit its queued jobs, poll its active ones with one `squeue`, follow
//! their SLURM output into `log.txt`, and write their ends.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::atomic::Ordering,
};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};
use serde_json::Value;

use super::{Cluster, Clusters, batch, sweep, target::Target};
use crate::{
    config::Submit,
    job_types::JobLog,
    queue::{
        Action, Phase, duration_s,
        job::{self, Column as C},
        now_ms, transition,
    },
};

/// At most this much of a job's SLURM output is copied into its log at a time.
const FOLLOW_CHUNK: u64 = 16 << 20;

/// `external_id` while `sbatch` runs (so that two loops never submit one job twice).
pub(super) const SUBMITTING: &str = "-";

/// SLURM's view of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub state: String,
    pub node: String,
    pub reason: String,
    /// The wait status SLURM reports (`exit << 8 | signal`), when it reports one.
    pub status: Option<i32>,
}

impl Seen {
    fn exit_code(&self) -> Option<i32> {
        self.status.map(|s| {
            if s & 0x7f != 0 {
                128 + (s & 0x7f)
            } else {
                s >> 8
            }
        })
    }
}

/// What a SLURM state means for the job's phase.
#[derive(Debug, PartialEq)]
enum Meaning {
    Waiting,
    Running,
    Completed,
    Failed,
    Cancelled,
}

fn meaning(state: &str) -> Option<Meaning> {
    // "CANCELLED by 0" in scontrol's answer.
    Some(match state.split_whitespace().next().unwrap_or_default() {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "PREEMPTED"
        | "SUSPENDED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => Meaning::Waiting,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => Meaning::Running,
        "COMPLETED" => Meaning::Completed,
        "FAILED" | "TIMEOUT" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" => {
            Meaning::Failed
        }
        "CANCELLED" | "REVOKED" => Meaning::Cancelled,
        _ => return None,
    })
}

/// `squeue -h -r -O JobArrayID:|,State:|,NodeList:|,Reason:|,exit_code:` → by job id.
pub fn parse_squeue(out: &str) -> HashMap<String, Seen> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            (f.len() >= 5 && !f[0].is_empty()).then(|| {
                (
                    f[0].to_string(),
                    Seen {
                        state: f[1].to_string(),
                        node: f[2].to_string(),
                        reason: f[3].to_string(),
                        status: f[4].parse().ok(),
                    },
                )
            })
        })
        .collect()
}

/// scontrol's and sacct's `ExitCode=3:0` (exit 3, signal 0) as a wait status.
fn wait_status(e: &str) -> Option<i32> {
    let (code, signal) = e.split_once(':')?;
    Some((code.parse::<i32>().ok()? << 8) | signal.parse::<i32>().ok()?)
}

/// `scontrol show job ID`'s `Key=Value` words.
pub fn parse_scontrol(out: &str) -> Option<Seen> {
    let words: HashMap<&str, &str> = out
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let state = words.get("JobState")?.to_string();
    let status = words.get("ExitCode").and_then(|e| wait_status(e));
    Some(Seen {
        state,
        node: words.get("NodeList").unwrap_or(&"").to_string(),
        reason: words.get("Reason").unwrap_or(&"").to_string(),
        status,
    })
}

impl Clusters {
    fn dir_of(&self, job: &job::Model) -> PathBuf {
        self.files_root.join(job.dir_path.trim_start_matches('/'))
    }

    /// A path of this host's data dir as the cluster sees it: the same, or mapped by
    /// `path_map`, or, where the cluster does not share it, under `{workspace}/data`.
    pub fn remote_path(&self, cluster: &Cluster, local: &Path) -> String {
        let cfg = &cluster.slurm.cfg;
        if !cfg.shared_fs
            && let Ok(rest) = local.strip_prefix(&self.data_dir)
        {
            let mut there = format!("{}/data", cfg.workspace.trim_end_matches('/'));
            if !rest.as_os_str().is_empty() {
                there.push('/');
                there.push_str(&rest.display().to_string());
            }
            return there;
        }
        let local = local.display().to_string();
        for (here, there) in &cluster.slurm.cfg.path_map {
            if let Some(rest) = local.strip_prefix(here.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{there}{rest}");
            }
        }
        local
    }

    /// Submits the cluster's QUEUED jobs that SLURM does not have yet, oldest first.
    pub(super) async fn submit_queued(&self, cluster: &Cluster) -> Result<(), sea_orm::DbErr> {
        let queued = job::Entity::find()
            .filter(C::Cluster.eq(cluster.slurm.name()))
            .filter(C::Phase.eq(Phase::Queued))
            .filter(C::ExternalId.is_null())
            .order_by_asc(C::CreatedAt)
            .limit(100)
            .all(&self.db)
            .await?;
        for job in queued {
            let claimed = job::Entity::update_many()
                .filter(C::JobId.eq(job.job_id))
                .filter(C::Phase.eq(Phase::Queued))
                .filter(C::ExternalId.is_null())
                .col_expr(C::ExternalId, Expr::value(SUBMITTING))
                .exec(&self.db)
                .await?
                .rows_affected
                == 1;
            if !claimed {
                continue;
            }
            let log = JobLog::open(&self.dir_of(&job).join("log.txt")).ok();
            let say = |line: &str| {
                if let Some(l) = &log {
                    l.line(line);
                }
            };
            match self.submit(cluster, &job).await {
                Ok(id) => {
                    say(&format!(
                        "submitted to cluster {} as SLURM job {id}",
                        cluster.slurm.name()
                    ));
                    job::Entity::update_many()
                        .filter(C::JobId.eq(job.job_id))
                        .filter(C::ExternalId.eq(SUBMITTING))
                        .col_expr(C::ExternalId, Expr::value(id.clone()))
                        .exec(&self.db)
                        .await?;
                    if sweep::is_sweep(job.config.as_ref()) {
                        self.queue_tasks(cluster, &job, &id).await?;
                    }
                    // ABORTed while sbatch ran: SLURM must not run it either.
                    let now = job::Entity::find_by_id(job.job_id).one(&self.db).await?;
                    if now.is_none_or(|j| j.phase == Phase::Aborted) {
                        let _ = cluster.slurm.call("scancel", &[id]).await;
                    }
                }
                Err(e) => {
                    say(&format!("ERROR: {e}"));
                    let ended = chrono::Utc::now();
                    transition(
                        &self.db,
                        job.job_id,
                        Phase::Queued,
                        Action::Fail,
                        None,
                        vec![
                            (C::Error, Expr::value(e)),
                            (C::EndedAt, Expr::value(ended)),
                            (C::ExternalId, Expr::value(Option::<String>::None)),
                        ],
                    )
                    .await
                    .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Renders `job.sbatch` into the job directory and hands it to `sbatch --parsable`.
    async fn submit(&self, cluster: &Cluster, job: &job::Model) -> Result<String, String> {
        let cfg = &cluster.slurm.cfg;
        let config = job.config.clone().unwrap_or_default();
        let target: Target =
            serde_json::from_value(config.get("target").cloned().unwrap_or_default())
                .map_err(|e| format!("target: {e}"))?;
        let dir = self.dir_of(job);
        // A SCRIPT runs its own command; the built-in types need mljm there.
        let mljm = if job.job_type == "SCRIPT" {
            String::new()
        } else {
            self.mljm_on(cluster).await?
        };
        let this = batch::Job {
            id: job.job_id,
            job_type: &job.job_type,
            config: &config,
            dir: self.remote_path(cluster, &dir),
            data_dir: self.remote_path(cluster, &self.data_dir),
            mljm: mljm.clone(),
            own_output: !cfg.shared_fs,
        };
        let script = match sweep::of_config(&config).map_err(|e| e.to_string())? {
            None => batch::render(&this, &target, cfg)?,
            Some(s) => {
                let tasks = self.tasks_of(job).await?;
                let jobs = tasks
                    .iter()
                    .map(|(index, t)| {
                        let job = batch::Job {
                            id: t.job_id,
                            job_type: &t.job_type,
                            config: t.config.as_ref().unwrap_or(&Value::Null),
                            dir: self.remote_path(cluster, &self.dir_of(t)),
                            data_dir: this.data_dir.clone(),
                            mljm: mljm.clone(),
                            own_output: this.own_output,
                        };
                        (*index, job)
                    })
                    .collect::<Vec<_>>();
                batch::render_sweep(&this, &jobs, &s.array_spec(), &target, cfg)?
            }
        };
        let path = dir.join("job.sbatch");
        std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
        if !cfg.shared_fs {
            self.stage(cluster, job).await?;
        }
        let out = cluster
            .slurm
            .call(
                "sbatch",
                &["--parsable".into(), self.remote_path(cluster, &path)],
            )
            .await
            .map_err(|e| format!("sbatch refused the job: {e}"))?;
        // `--parsable` prints "ID" or "ID;CLUSTER".
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
            return Err(format!("sbatch answered {out:?}, not a job id"));
        }
        Ok(id)
    }

    /// A sweep's tasks with their indexes, by index.
    async fn tasks_of(&self, sweep: &job::Model) -> Result<Vec<(u32, job::Model)>, String> {
        let mut tasks: Vec<(u32, job::Model)> = job::Entity::find()
            .filter(C::ParentJobId.eq(sweep.job_id))
            .all(&self.db)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|t| Some((sweep::task_index(t.config.as_ref())?, t)))
            .collect();
        tasks.sort_by_key(|(i, _)| *i);
        Ok(tasks)
    }

    /// The sweep is SLURM array `id`: its waiting tasks are queued as `id_INDEX`.
    async fn queue_tasks(
        &self,
        cluster: &Cluster,
        sweep: &job::Model,
        id: &str,
    ) -> Result<(), sea_orm::DbErr> {
        let tasks = self.tasks_of(sweep).await.map_err(sea_orm::DbErr::Custom)?;
        for (index, task) in tasks {
            transition(
                &self.db,
                task.job_id,
                Phase::Pending,
                Action::Run,
                None,
                vec![
                    (C::Cluster, Expr::value(cluster.slurm.name())),
                    (C::ExternalId, Expr::value(format!("{id}_{index}"))),
                ],
            )
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
            if let Ok(log) = JobLog::open(&self.dir_of(&task).join("log.txt")) {
                log.line(&format!("submitted as task {index} of SLURM array {id}"));
            }
        }
        Ok(())
    }

    /// A sweep's phase from its tasks': running once one has started, and when all have
    /// ended COMPLETED, or ERROR naming the failed ones, or ABORTED.
    async fn summarise(&self, cluster: &Cluster, sweep: &job::Model) -> Result<(), String> {
        let tasks = self.tasks_of(sweep).await?;
        let started = tasks
            .iter()
            .any(|(_, t)| t.phase != Phase::Queued && t.phase != Phase::Pending);
        let mut sweep = sweep.clone();
        if started
            && sweep.phase == Phase::Queued
            && !self.started(cluster, &mut sweep, None).await?
        {
            return Ok(());
        }
        if tasks.is_empty()
            || tasks
                .iter()
                .any(|(_, t)| t.phase.is_active() || t.phase == Phase::Pending)
        {
            return Ok(());
        }
        let failed: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| t.phase == Phase::Error)
            .map(|(i, t)| format!("task {i}: {}", t.error.as_deref().unwrap_or("failed")))
            .collect();
        let aborted = tasks
            .iter()
            .filter(|(_, t)| t.phase == Phase::Aborted)
            .count();
        let n = tasks.len();
        let (action, why) = if !failed.is_empty() {
            let mut why = format!("{} of {n} tasks failed: {}", failed.len(), failed[0]);
            if failed.len() > 1 {
                why.push_str(&format!(" (and {} more)", failed.len() - 1));
            }
            (Action::Fail, Some(why))
        } else if aborted > 0 {
            (
                Action::Abort,
                Some(format!("{aborted} of {n} tasks were cancelled")),
            )
        } else {
            (Action::Complete, None)
        };
        self.end(cluster, &sweep, action, why, None).await;
        Ok(())
    }

    /// The mljm binary the cluster runs: `mljm_path`, this binary on a local cluster, or this
    /// binary copied (once per version) into the workspace over SSH.
    async fn mljm_on(&self, cluster: &Cluster) -> Result<String, String> {
        let cfg = &cluster.slurm.cfg;
        if !cfg.mljm_path.is_empty() {
            return Ok(cfg.mljm_path.clone());
        }
        let me = if cfg.local_mljm.is_empty() {
            std::env::current_exe().map_err(|e| format!("cannot find mljm's binary: {e}"))?
        } else {
            PathBuf::from(&cfg.local_mljm)
        };
        if cfg.submit == Submit::Local {
            return Ok(me.display().to_string());
        }
        let there = format!(
            "{}/bin/mljm-{}",
            cfg.workspace.trim_end_matches('/'),
            env!("CARGO_PKG_VERSION")
        );
        let quoted = super::remote::sh_quote(&there);
        if cluster
            .slurm
            .shell(&format!("test -x {quoted}"))
            .await
            .is_err()
        {
            cluster
                .slurm
                .send_file(&me, &there, true)
                .await
                .map_err(|e| e.0)?;
        }
        Ok(there)
    }

    /// One `squeue` for every active job of the cluster; the ones it no longer lists are
    /// asked about alone (`scontrol show job`, then `sacct`).
    pub(super) async fn poll(&self, cluster: &Cluster) -> Result<(), String> {
        let active = job::Entity::find()
            .filter(C::Cluster.eq(cluster.slurm.name()))
            .filter(C::Phase.is_in([Phase::Queued, Phase::Processing]))
            .filter(C::ExternalId.is_not_null())
            .filter(C::ExternalId.ne(SUBMITTING))
            .all(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        // A sweep's own phase follows its tasks' (they are the rows SLURM reports on).
        let (sweeps, active): (Vec<_>, Vec<_>) = active
            .into_iter()
            .partition(|j| sweep::is_sweep(j.config.as_ref()));
        if !active.is_empty() {
            self.poll_jobs(cluster, active).await?;
        }
        for s in sweeps {
            if let Err(e) = self.summarise(cluster, &s).await {
                tracing::warn!("sweep {}: {e}", s.job_id);
            }
        }
        Ok(())
    }

    async fn poll_jobs(&self, cluster: &Cluster, active: Vec<job::Model>) -> Result<(), String> {
        // An array task is `ID_INDEX`: one ID asks about every task of the array.
        let mut ids: Vec<&str> = active
            .iter()
            .filter_map(|j| j.external_id.as_deref())
            .map(|e| e.split('_').next().unwrap_or(e))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        cluster.polls.fetch_add(1, Ordering::Relaxed);
        let out = cluster
            .slurm
            .call(
                "squeue",
                &[
                    "-h".into(),
                    "--states=all".into(),
                    // One row per array task, pending ones included, named `ID_INDEX`.
                    "-r".into(),
                    "-j".into(),
                    ids.join(","),
                    "-O".into(),
                    "JobArrayID:|,State:|,NodeList:|,Reason:|,exit_code:".into(),
                ],
            )
            .await;
        let seen = match out {
            Ok(out) => parse_squeue(&out),
            // Every id asked about is gone from SLURM's memory.
            Err(e) if e.0.contains("Invalid job id") => HashMap::new(),
            Err(e) => return Err(e.0),
        };
        for job in active {
            let id = job.external_id.clone().unwrap_or_default();
            let state = match seen.get(&id) {
                Some(s) => Some(s.clone()),
                None => match self.ask_alone(cluster, &id).await {
                    Ok(s) => s,
                    // The controller did not answer: the job is left as it is until it does.
                    Err(e) => {
                        tracing::warn!("job {}: poll failed: {e}", job.job_id);
                        continue;
                    }
                },
            };
            match state {
                Some(s) => {
                    if let Err(e) = self.apply(cluster, &job, &s).await {
                        tracing::warn!("job {}: {e}", job.job_id);
                    }
                }
                None => {
                    let why = format!(
                        "SLURM no longer knows job {id} on cluster {} (it finished too long \
                         ago and the cluster keeps no accounting)",
                        cluster.slurm.name()
                    );
                    self.end(cluster, &job, Action::Fail, Some(why), None).await;
                }
            }
        }
        Ok(())
    }

    /// A job `squeue` did not list: `scontrol show job`, then `sacct`. `Ok(None)` when SLURM
    /// says it does not know the id; `Err` when the controller did not answer, so that an
    /// outage never ends a job.
    async fn ask_alone(&self, cluster: &Cluster, id: &str) -> Result<Option<Seen>, String> {
        match cluster
            .slurm
            .call("scontrol", &["show".into(), "job".into(), id.into()])
            .await
        {
            Ok(out) => {
                if let Some(s) = parse_scontrol(&out) {
                    return Ok(Some(s));
                }
            }
            Err(e) if e.0.contains("Invalid job id") => {}
            Err(e) => return Err(e.0),
        }
        let Ok(out) = cluster
            .slurm
            .call(
                "sacct",
                &[
                    "-n".into(),
                    "-P".into(),
                    "-X".into(),
                    "-j".into(),
                    id.into(),
                    "-o".into(),
                    "JobID,State,NodeList,Reason,ExitCode".into(),
                ],
            )
            .await
        else {
            // No accounting on this cluster: scontrol's answer was the last word.
            return Ok(None);
        };
        let Some(line) = out.lines().next() else {
            return Ok(None);
        };
        let f: Vec<&str> = line.split('|').collect();
        let status = f.get(4).and_then(|e| wait_status(e));
        Ok(f.get(1).map(|state| Seen {
            state: state.to_string(),
            node: f.get(2).unwrap_or(&"").to_string(),
            reason: f.get(3).unwrap_or(&"").to_string(),
            status,
        }))
    }

    /// QUEUED → PROCESSING for a job SLURM started (on `node`); false where the row had
    /// moved meanwhile.
    async fn started(
        &self,
        cluster: &Cluster,
        job: &mut job::Model,
        node: Option<&str>,
    ) -> Result<bool, String> {
        let now = chrono::Utc::now();
        let mut changes = vec![
            (C::Attempt, Expr::value(job.attempt + 1)),
            (
                C::WorkerId,
                Expr::value(format!("slurm:{}", cluster.slurm.name())),
            ),
            (C::HeartbeatMs, Expr::value(now_ms())),
            (C::StartedAt, Expr::value(now)),
        ];
        if let Some(n) = node {
            changes.push((C::Node, Expr::value(n)));
        }
        let moved = transition(
            &self.db,
            job.job_id,
            Phase::Queued,
            Action::Claim,
            Some(job.attempt),
            changes,
        )
        .await
        .map_err(|e| e.to_string())?;
        if moved.is_none() {
            return Ok(false);
        }
        job.phase = Phase::Processing;
        job.attempt += 1;
        job.started_at = Some(now);
        Ok(true)
    }

    async fn apply(&self, cluster: &Cluster, job: &job::Model, s: &Seen) -> Result<(), String> {
        let Some(m) = meaning(&s.state) else {
            return Err(format!("SLURM state {:?} is not one mljm knows", s.state));
        };
        let mut job = job.clone();
        if m != Meaning::Waiting && job.phase == Phase::Queued && m != Meaning::Cancelled {
            // It started (and may have ended) since the last poll.
            if !self.started(cluster, &mut job, Some(&s.node)).await? {
                return Ok(());
            }
            if let Ok(log) = JobLog::open(&self.dir_of(&job).join("log.txt")) {
                log.line(&format!(
                    "running on {} (SLURM job {})",
                    s.node,
                    job.external_id.as_deref().unwrap_or("?")
                ));
            }
        }
        match m {
            Meaning::Running if !cluster.slurm.cfg.shared_fs => {
                self.follow(cluster, &job).await;
                Ok(())
            }
            Meaning::Waiting | Meaning::Running => Ok(()),
            Meaning::Completed => {
                self.follow(cluster, &job).await;
                self.fetch_back(cluster, &job).await;
                let hook = match self.success_hooks.get(job.job_type.as_str()) {
                    Some(h) => h(self.db.clone(), job.clone(), self.dir_of(&job)).await,
                    None => Ok(()),
                };
                match hook {
                    Ok(()) => {
                        self.end(cluster, &job, Action::Complete, None, s.exit_code())
                            .await
                    }
                    Err(e) => {
                        self.end(cluster, &job, Action::Fail, Some(e), s.exit_code())
                            .await
                    }
                }
                Ok(())
            }
            Meaning::Failed => {
                let code = s.exit_code();
                let mut why = format!("SLURM: {}", s.state);
                if !s.reason.is_empty() && s.reason != "None" {
                    why.push_str(&format!(" ({})", s.reason));
                }
                if let Some(c) = code {
                    why.push_str(&format!(", exit code {c}"));
                }
                self.follow(cluster, &job).await;
                self.fetch_back(cluster, &job).await;
                self.end(cluster, &job, Action::Fail, Some(why), code).await;
                Ok(())
            }
            Meaning::Cancelled => {
                self.follow(cluster, &job).await;
                self.fetch_back(cluster, &job).await;
                self.end(
                    cluster,
                    &job,
                    Action::Abort,
                    Some(format!(
                        "SLURM: {} on cluster {}",
                        s.state,
                        cluster.slurm.name()
                    )),
                    s.exit_code(),
                )
                .await;
                Ok(())
            }
        }
    }

    /// Writes the job's terminal phase (if it is still where it was read).
    async fn end(
        &self,
        cluster: &Cluster,
        job: &job::Model,
        action: Action,
        error: Option<String>,
        exit_code: Option<i32>,
    ) {
        let ended = chrono::Utc::now();
        let written = transition(
            &self.db,
            job.job_id,
            job.phase,
            action,
            None,
            vec![
                (C::EndedAt, Expr::value(ended)),
                (
                    C::ExecutionDuration,
                    Expr::value(duration_s(job.started_at, ended)),
                ),
                (C::Error, Expr::value(error.clone())),
                (C::ExitCode, Expr::value(exit_code)),
            ],
        )
        .await;
        if let Ok(Some(phase)) = written
            && let Ok(log) = JobLog::open(&self.dir_of(job).join("log.txt"))
        {
            log.line(&match error {
                Some(e) if phase != Phase::Aborted => format!("ERROR: {e}"),
                _ => phase.as_str().to_string(),
            });
        }
        if let Ok(mut f) = cluster.followed.lock() {
            f.remove(&job.job_id);
        }
    }

    /// Copies what each running job's SLURM output file gained into its `log.txt`.
    pub(super) async fn follow_logs(&self, cluster: &Cluster) {
        let Ok(active) = job::Entity::find()
            .filter(C::Cluster.eq(cluster.slurm.name()))
            .filter(C::Phase.eq(Phase::Processing))
            .all(&self.db)
            .await
        else {
            return;
        };
        for job in active {
            // A cluster without the data directory is read over SSH at each poll instead.
            if cluster.slurm.cfg.shared_fs {
                self.follow(cluster, &job).await;
            }
        }
    }

    /// The job's `slurm.out` from where it was last read to its end, onto `log.txt`; the
    /// position is kept beside it (`slurm.out.read`), so a restart neither repeats nor skips.
    /// Where the cluster does not share the data directory, the file is read there.
    async fn follow(&self, cluster: &Cluster, job: &job::Model) {
        let dir = self.dir_of(job);
        let from = self.followed_to(cluster, job);
        let new = if cluster.slurm.cfg.shared_fs {
            let Ok(mut f) = std::fs::File::open(dir.join(batch::OUTPUT)) else {
                return;
            };
            let mut new = Vec::new();
            if f.seek(SeekFrom::Start(from)).is_err()
                || f.take(FOLLOW_CHUNK).read_to_end(&mut new).is_err()
            {
                return;
            }
            new
        } else {
            let there = format!("{}/{}", self.remote_path(cluster, &dir), batch::OUTPUT);
            match cluster.slurm.read_from(&there, from, FOLLOW_CHUNK).await {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!("job {}: reading {there}: {e}", job.job_id);
                    return;
                }
            }
        };
        if new.is_empty() {
            return;
        }
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("log.txt"))
            .and_then(|mut log| log.write_all(&new));
        if appended.is_ok() {
            let to = from + new.len() as u64;
            if let Ok(mut map) = cluster.followed.lock() {
                map.insert(job.job_id, to);
            }
            let _ = std::fs::write(dir.join(format!("{}.read", batch::OUTPUT)), to.to_string());
        }
    }

    /// How far the job's SLURM output has been copied into its log.
    fn followed_to(&self, cluster: &Cluster, job: &job::Model) -> u64 {
        let mark = self.dir_of(job).join(format!("{}.read", batch::OUTPUT));
        let Ok(mut map) = cluster.followed.lock() else {
            return 0;
        };
        *map.entry(job.job_id).or_insert_with(|| {
            std::fs::read_to_string(&mark)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        })
    }

    /// A job that ended on a cluster without the data directory: what it wrote there comes
    /// back into its folder (its log was followed already).
    async fn fetch_back(&self, cluster: &Cluster, job: &job::Model) {
        if cluster.slurm.cfg.shared_fs {
            return;
        }
        let dir = self.dir_of(job);
        let there = self.remote_path(cluster, &dir);
        let skip = ["log.txt", batch::OUTPUT, "slurm.out.read"];
        if let Err(e) = cluster.slurm.fetch(&there, &dir, &skip).await
            && let Ok(log) = JobLog::open(&dir.join("log.txt"))
        {
            log.line(&format!(
                "its files could not be copied back from {there}: {e}"
            ));
        }
    }

    /// Before sbatch on a cluster without the data directory: the job's folder (a sweep's
    /// and its tasks') and the inputs its config names go to the same places under
    /// `{workspace}/data`.
    async fn stage(&self, cluster: &Cluster, job: &job::Model) -> Result<(), String> {
        let mut dirs = vec![self.dir_of(job)];
        let mut inputs = (self.inputs)(&job.job_type, job.config.as_ref().unwrap_or(&Value::Null));
        if sweep::is_sweep(job.config.as_ref()) {
            for (_, task) in self.tasks_of(job).await? {
                dirs.push(self.dir_of(&task));
                inputs.extend((self.inputs)(
                    &task.job_type,
                    task.config.as_ref().unwrap_or(&Value::Null),
                ));
            }
        }
        inputs.sort();
        inputs.dedup();
        for local in dirs.iter().chain(&inputs) {
            if !local.starts_with(&self.data_dir) {
                return Err(format!(
                    "{} is outside the data directory, which cluster {} mirrors under {}/data",
                    local.display(),
                    cluster.slurm.name(),
                    cluster.slurm.cfg.workspace
                ));
            }
            cluster
                .slurm
                .send(local, &self.remote_path(cluster, local))
                .await
                .map_err(|e| format!("staging: {e}"))?;
        }
        Ok(())
    }

    /// After a restart: a job caught between `sbatch` and the row's update cannot be told
    /// apart from one SLURM never got; it ends in ERROR saying so.
    pub(super) async fn recover(&self, cluster: &Cluster) {
        let Ok(stuck) = job::Entity::find()
            .filter(C::Cluster.eq(cluster.slurm.name()))
            .filter(C::ExternalId.eq(SUBMITTING))
            .filter(C::Phase.eq(Phase::Queued))
            .all(&self.db)
            .await
        else {
            return;
        };
        for job in stuck {
            let why = format!(
                "mljm stopped while submitting this job to cluster {}: SLURM may hold it as \
                 mljm-{} (squeue -n); run it again",
                cluster.slurm.name(),
                &job.job_id.to_string()[..8]
            );
            self.end(cluster, &job, Action::Fail, Some(why), None).await;
        }
    }

    /// `scancel` of a cluster job (ABORT).
    pub async fn cancel(&self, cluster: &str, external_id: &str) -> Result<(), String> {
        let c = self
            .get(cluster)
            .ok_or_else(|| format!("cluster {cluster:?} is no longer in config.toml"))?;
        if external_id == SUBMITTING {
            return Ok(()); // the submitter cancels it once sbatch answers
        }
        match c.slurm.call("scancel", &[external_id.to_string()]).await {
            Ok(_) => Ok(()),
            // It ended meanwhile: the next poll writes how.
            Err(e)
                if e.0.contains("already completing or completed")
                    || e.0.contains("Invalid job id") =>
            {
                Ok(())
            }
            Err(e) => Err(e.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_scontrol_answers_are_read() {
        let seen = parse_squeue(
            "4|CANCELLED|vm|None|15\n2|FAILED|vm|NonZeroExitCode|768\n3|RUNNING|vm|None|0\n",
        );
        assert_eq!(seen["2"].exit_code(), Some(3));
        assert_eq!(seen["4"].exit_code(), Some(143));
        assert_eq!(meaning(&seen["3"].state), Some(Meaning::Running));
        let s = parse_scontrol("JobId=7 JobName=x\n   JobState=TIMEOUT Reason=TimeLimit Dependency=(null)\n   ExitCode=0:15 NodeList=vm").unwrap();
        assert_eq!(
            (s.state.as_str(), s.reason.as_str(), s.node.as_str()),
            ("TIMEOUT", "TimeLimit", "vm")
        );
        assert_eq!(meaning(&s.state), Some(Meaning::Failed));
        assert_eq!(meaning("CANCELLED by 0"), Some(Meaning::Cancelled));
        assert_eq!(meaning("PREEMPTED"), Some(Meaning::Waiting));
    }
}
