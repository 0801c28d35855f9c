//! SLURM clusters as an executor (their API and pages are `clusters`) under the jobs and the queue (SPEC §8). A job whose config
//! has a `target` is queued like any other, but this host's workers never claim it: the
//! cluster's loop submits it with `sbatch`, polls all of the cluster's active jobs with one
//! `squeue` per `poll_s`, follows the SLURM output file into the job's `log.txt`, and writes
//! the terminal phase from SLURM's state. The loop reads the job rows each time, so a
//! restarted server picks its cluster jobs up where SLURM has them.

pub mod batch;
mod poll;
pub mod remote;
pub mod sweep;
pub mod target;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use serde::Serialize;
use tokio::{sync::Notify, task::JoinSet};

use crate::{config::Config, worker::SuccessHook};
pub use remote::{Slurm, SlurmError};

/// Every configured cluster, with what its loop needs.
#[derive(Clone)]
pub struct Clusters {
    by_name: Arc<HashMap<String, Arc<Cluster>>>,
    names: Arc<Vec<String>>,
    db: DatabaseConnection,
    files_root: PathBuf,
    data_dir: PathBuf,
    success_hooks: Arc<HashMap<&'static str, SuccessHook>>,
    /// The input files a job's config names (staged where the data dir is not shared).
    inputs: Inputs,
}

/// A job type and config → the files on this host it reads.
pub type Inputs = Arc<dyn Fn(&str, &serde_json::Value) -> Vec<PathBuf> + Send + Sync>;

pub struct Cluster {
    pub slurm: Slurm,
    wake: Notify,
    /// The last `sinfo` answer and when it was read (cached for `poll_s`).
    info: tokio::sync::Mutex<Option<(Instant, Result<Info, String>)>>,
    /// Bytes of each job's SLURM output already copied into its `log.txt`.
    followed: Mutex<HashMap<uuid::Uuid, u64>>,
    /// Calls to `squeue` since the start (for the page and the tests' figures).
    pub polls: std::sync::atomic::AtomicU64,
    /// Poll at the next turn of the loop (set by `poll_soon`).
    poll_now: std::sync::atomic::AtomicBool,
}

/// Whether SLURM has a job with this `external_id` (not one `sbatch` is still answering for).
pub fn submitted(external_id: &str) -> bool {
    external_id != poll::SUBMITTING
}

/// `GET /api/clusters/{name}`: partitions and their GPUs, from one `sinfo`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Info {
    pub name: String,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Partition {
    pub name: String,
    /// SLURM's availability (`up`, `down`, …).
    pub state: String,
    pub default: bool,
    pub nodes: u32,
    /// CPUs in all (allocated, idle and total are in `cpus_*`).
    pub cpus: u32,
    pub cpus_allocated: u32,
    pub cpus_idle: u32,
    pub gpus: Vec<Gpus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Gpus {
    /// The GRES type (`a100`); empty where the cluster declares none.
    #[serde(rename = "type")]
    pub kind: String,
    pub total: u32,
    pub allocated: u32,
    pub free: u32,
}

impl Clusters {
    pub fn new(
        config: &Config,
        db: DatabaseConnection,
        success_hooks: Arc<HashMap<&'static str, SuccessHook>>,
        inputs: Inputs,
    ) -> Clusters {
        let by_name = config
            .clusters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Arc::new(Cluster {
                        slurm: Slurm::new(c.clone()),
                        wake: Notify::new(),
                        info: tokio::sync::Mutex::new(None),
                        followed: Mutex::default(),
                        polls: Default::default(),
                        poll_now: Default::default(),
                    }),
                )
            })
            .collect();
        Clusters {
            by_name: Arc::new(by_name),
            names: Arc::new(config.clusters.iter().map(|c| c.name.clone()).collect()),
            db,
            files_root: config.files_root(),
            data_dir: config.data_dir.clone(),
            success_hooks,
            inputs,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name.get(name)
    }

    /// In `config.toml`'s order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.names.iter().filter_map(|n| self.by_name.get(n))
    }

    /// A job of `name` was queued: submit it now rather than at the next tick.
    pub fn wake(&self, name: &str) {
        if let Some(c) = self.get(name) {
            c.wake.notify_one();
        }
    }

    /// Polls the cluster now rather than at the next `poll_s` (after an ABORT).
    pub fn poll_soon(&self, name: &str) {
        if let Some(c) = self.get(name) {
            c.poll_now.store(true, std::sync::atomic::Ordering::Relaxed);
            c.wake.notify_one();
        }
    }

    /// Closes every SSH master connection (at shutdown; each would outlive mljm by
    /// ControlPersist otherwise).
    pub async fn close(&self) {
        for c in self.all() {
            c.slurm.close().await;
        }
    }

    /// One loop per cluster; they stop when the set is dropped.
    pub fn spawn(&self) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for cluster in self.all() {
            let (me, cluster) = (self.clone(), cluster.clone());
            set.spawn(async move { me.cluster_loop(cluster).await });
        }
        set
    }

    async fn cluster_loop(self, cluster: Arc<Cluster>) {
        let poll_every = Duration::from_secs_f64(cluster.slurm.cfg.poll_s);
        let mut next_poll = Instant::now();
        let mut backoff = poll_every;
        self.recover(&cluster).await;
        loop {
            if let Err(e) = self.submit_queued(&cluster).await {
                tracing::warn!("cluster {}: submitting: {e}", cluster.slurm.name());
            }
            let asked = cluster
                .poll_now
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            if asked || Instant::now() >= next_poll {
                match self.poll(&cluster).await {
                    Ok(()) => {
                        backoff = poll_every;
                        next_poll = Instant::now() + poll_every;
                    }
                    Err(e) => {
                        // A failed poll changes no job; ask again later, less often.
                        tracing::warn!(
                            "cluster {}: poll failed ({e}); next in {:.0} s",
                            cluster.slurm.name(),
                            backoff.as_secs_f64()
                        );
                        next_poll = Instant::now() + backoff;
                        // At most a minute apart (or poll_s), so that the end of an outage is
                        // seen soon after it.
                        backoff = (backoff * 2).min(poll_every.max(Duration::from_secs(60)));
                    }
                }
            }
            self.follow_logs(&cluster).await;
            tokio::select! {
                _ = cluster.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The cluster's partitions and GPUs, from one `sinfo` at most every `poll_s`.
    pub async fn info(&self, cluster: &Cluster) -> Result<Info, String> {
        let mut cached = cluster.info.lock().await;
        let fresh = Duration::from_secs_f64(cluster.slurm.cfg.poll_s);
        if let Some((at, answer)) = cached.as_ref()
            && at.elapsed() < fresh
        {
            return answer.clone();
        }
        let answer = cluster
            .slurm
            .call(
                "sinfo",
                &[
                    "-h".into(),
                    "-a".into(),
                    "-N".into(),
                    "-O".into(),
                    "Partition:|,Available:|,CPUsState:|,Gres:|,GresUsed:|,NodeHost:".into(),
                ],
            )
            .await
            .map_err(|e| e.0)
            .and_then(|out| {
                let mut info = batch::parse_sinfo(&out)?;
                info.name = cluster.slurm.name().to_string();
                Ok(info)
            });
        *cached = Some((Instant::now(), answer.clone()));
        answer
    }
}
