//! `mljm run TYPE --config cfg.json --out DIR`: one job in the foreground, without server or
//! database, through the same registry and job code as the workers.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use uuid::Uuid;

use super::{Usage, progress::Reporter};
use crate::{
    job_types::{JobContext, JobLog, Paths, Registry},
    science::{Cancel, Progress},
};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job type: DATA_PREPROCESSING, SCRIPT, …
    pub job_type: String,
    /// The job's JSON config (the original's files work unchanged).
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory (created; result files and log.txt go here).
    #[arg(long)]
    pub out: PathBuf,
    /// Resolve config paths as the server does, against this data directory's `spectra/` and
    /// `files/` roots. Without it, paths are ordinary, relative ones from the config's folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the CNN runs: auto (CUDA when built with it and present), cpu, or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let registry = Registry::new();
    let job_type = registry.get(&args.job_type).ok_or_else(|| {
        Usage(format!(
            "unknown job type {:?}; known types: {}",
            args.job_type,
            registry.names().join(", ")
        ))
    })?;
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| Usage(format!("cannot read {}: {e}", args.config.display())))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Usage(format!("{} is not valid JSON: {e}", args.config.display())))?;
    let paths = match &args.data_dir {
        Some(d) => {
            let paths = Paths::Server {
                spectra: d.join("spectra"),
                files: d.join("files"),
            };
            registry
                .check(&args.job_type, &config, &paths)
                .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
            paths
        }
        None => {
            job_type
                .validate(&config)
                .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
            let base = args
                .config
                .canonicalize()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            Paths::Local { base }
        }
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let reporter = Reporter::new();
    let log = JobLog::open(&args.out.join("log.txt"))?.with_echo(reporter.sink());
    let unknown = registry.unknown_keys(&args.job_type, &config);
    if !unknown.is_empty() {
        log.line(&format!(
            "warning: config keys not used by {}: {}",
            args.job_type,
            unknown.join(", ")
        ));
    }
    let (cancel, progress) = (Cancel::new(), Progress::new());
    let ctx = JobContext {
        job_id: Uuid::new_v4(),
        dir: args.out.canonicalize()?,
        config,
        paths,
        device: args.device.clone(),
        log: log.clone(),
        cancel: cancel.clone(),
        progress: progress.clone(),
    };
    log.line(&format!(
        "{} started (mljm run, output in {})",
        args.job_type,
        args.out.display()
    ));
    let job = tokio::spawn(job_type.run(ctx));
    let on_interrupt = {
        let cancel = cancel.clone();
        let log = log.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                log.line("interrupted: stopping");
                cancel.cancel();
            }
        }
    };
    let interrupt = tokio::spawn(on_interrupt);
    let outcome = reporter.follow(&progress, job).await;
    interrupt.abort();
    let result = match outcome {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(anyhow::anyhow!("the job panicked")),
        Err(e) => Err(anyhow::anyhow!("the job did not finish: {e}")),
    };
    match &result {
        Ok(()) => log.line("COMPLETED"),
        Err(e) => log.line(&format!("ERROR: {e:#}")),
    }
    result
}
