//! What every handler, page and service can reach: the database, the config, the job types,
//! the workers and the storage root. Built by `app`, which wires the domains on top.

use std::{collections::HashMap, sync::Arc};

use sea_orm::DatabaseConnection;

use crate::{
    config::Config,
    job_types::Registry,
    queue::Queue,
    slurm::Clusters,
    storage::Storage,
    worker::{SuccessHook, Workers},
};

/// What the domains above the worker add to it: work after a type's success.
#[derive(Default)]
pub struct Extensions {
    pub success_hooks: HashMap<&'static str, SuccessHook>,
}

impl Extensions {
    /// Adds `hook` to the work after a `job_type` job's success, after what is there already
    /// (each runs only when the one before it succeeded).
    pub fn on_success(&mut self, job_type: &'static str, hook: SuccessHook) {
        let combined: SuccessHook = match self.success_hooks.remove(job_type) {
            None => hook,
            Some(first) => Arc::new(move |db, job, dir| {
                let (first, then) = (first.clone(), hook.clone());
                Box::pin(async move {
                    first(db.clone(), job.clone(), dir.clone()).await?;
                    then(db, job, dir).await
                })
            }),
        };
        self.success_hooks.insert(job_type, combined);
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub workers: Workers,
    pub storage: Storage,
    /// The SLURM clusters of `config.toml` and their loops' state.
    pub clusters: Clusters,
    /// Failed logins per account and address (SPEC §11).
    pub limiter: Arc<crate::auth::Limiter>,
}

impl AppState {
    /// Creates the data dir layout, connects, migrates.
    pub async fn open(config: Config, extensions: Extensions) -> anyhow::Result<AppState> {
        for dir in [
            config.data_dir.clone(),
            config.files_root().join("JOBS"),
            config.spectra_root(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let db = crate::db::connect(&config.database_url()).await?;
        let registry = Arc::new(Registry::new());
        let workers = Workers::new(
            &config,
            Queue::new(db.clone()),
            registry.clone(),
            extensions.success_hooks,
        )?;
        let storage = Storage::open(&config.files_root())?;
        let (types, paths) = (registry.clone(), workers.paths());
        let inputs: crate::slurm::Inputs = Arc::new(move |job_type, config| {
            types.get(job_type).map_or_else(Vec::new, |t| {
                t.paths(config)
                    .into_iter()
                    .filter_map(|(field, root, path)| paths.resolve(root, field, &path).ok())
                    .collect()
            })
        });
        let clusters = Clusters::new(&config, db.clone(), workers.success_hooks.clone(), inputs);
        Ok(AppState {
            db,
            config: Arc::new(config),
            registry,
            workers,
            storage,
            clusters,
            limiter: Arc::default(),
        })
    }
}
