//! What every handler, page and service can reach: the database, the config, the job types,
//! the workers and the storage root. Built by `app`, which wires the domains on top.

use std::{collections::HashMap, sync::Arc};

use futures_util::future::BoxFuture;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    config::Config,
    error::ApiError,
    job_types::Registry,
    queue::{Phase, Queue},
    storage::Storage,
    worker::{SuccessHook, Workers},
};

/// A part of a finished job's page that only some domain above the jobs knows how to draw
/// (the active-learning workspace): `app` registers them, the job page asks each in turn.
pub trait JobSection: Send + Sync {
    /// The section's HTML for job `job_id` (of `job_type`, in `phase`), or `None` when it
    /// has none for such a job.
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        job_id: Uuid,
        job_type: &'a str,
        phase: Phase,
    ) -> BoxFuture<'a, Result<Option<String>, ApiError>>;
}

/// What the domains above the worker add to it: work after a type's success, and sections of
/// the job page.
#[derive(Default)]
pub struct Extensions {
    pub success_hooks: HashMap<&'static str, SuccessHook>,
    pub job_sections: Vec<Arc<dyn JobSection>>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub workers: Workers,
    pub storage: Storage,
    pub job_sections: Arc<Vec<Arc<dyn JobSection>>>,
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
        Ok(AppState {
            db,
            config: Arc::new(config),
            registry,
            workers,
            storage,
            job_sections: Arc::new(extensions.job_sections),
        })
    }
}
