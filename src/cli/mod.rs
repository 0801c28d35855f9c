//! The command line: `serve`, `worker`, `migrate`, `run`, `demo`, `simulate-al`, `bench-al`,
//! and the `jobs` client.

pub mod accounts;
pub mod bench;
pub mod clusters;
pub mod demo;
pub mod jobs;
pub mod models;
pub mod progress;
pub mod run;
pub mod simulate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    app::{Application, open_state},
    config::{Config, Overrides},
};

#[derive(Parser, Debug)]
#[command(
    name = "mljm",
    version,
    about = "Machine-learning jobs over archives of astronomical spectra"
)]
pub struct Cli {
    /// Configuration file (default: ./config.toml when present); before the subcommand.
    #[arg(long, env = "MLJM_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// HTTP server (API, docs, pages) plus in-process workers.
    Serve(ServerArgs),
    /// Workers only, no HTTP: for extra hosts sharing the database and the data directory.
    Worker(ServerArgs),
    /// Apply database migrations and exit.
    Migrate(ServerArgs),
    /// Talk to a running server.
    Jobs(jobs::JobsArgs),
    /// The model registry of a running server: `list`, `show MODEL`, `predict MODEL FILES…`.
    Models(models::ModelsArgs),
    /// The SLURM clusters of a running server: `list`, `show NAME`.
    Clusters(clusters::ClustersArgs),
    /// Accounts on this host's database: add, list, passwd, remove, role.
    Users(accounts::UsersArgs),
    /// Log in to a server and keep a token for the other commands.
    Login(accounts::LoginArgs),
    /// Your API tokens on a server: create, list, revoke.
    Tokens(accounts::TokensArgs),
    /// Run one job type in the foreground, without server or database.
    Run(run::RunArgs),
    /// Write a synthetic LAMOST survey (with known classes) and ready-made job configs.
    Demo(demo::DemoArgs),
    /// Run the active-learning loop with an oracle that answers from a label file.
    #[command(name = "simulate-al")]
    SimulateAl(simulate::SimulateArgs),
    /// Benchmark one ACTIVE_ML iteration on survey-sized demo pools (time, memory, bytes).
    #[command(name = "bench-al")]
    BenchAl(bench::BenchArgs),
}

/// A mistake in how mljm was called (exit status 2), as opposed to a failure (1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// Data directory [default: ./mljm-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long)]
    pub bind: Option<String>,
    /// postgres://… [default: SQLite file in the data dir]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Jobs run at once in this process; 0 = API only [default: 2]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Job types this process accepts, comma-separated [default: all]
    #[arg(long, value_delimiter = ',')]
    pub accept: Option<Vec<String>>,
}

impl ServerArgs {
    fn overrides(self) -> Overrides {
        Overrides {
            data_dir: self.data_dir,
            database_url: self.database_url,
            bind: self.bind,
            workers: self.workers,
            accept: self.accept,
        }
    }
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(file, &args.overrides())?;
            config.check_exposure()?;
            let app = Application::build(config).await?;
            let state = app.state();
            tracing::info!(
                "mljm serving http://{} (database {}, data {})",
                state
                    .config
                    .server
                    .bind
                    .replace(":0", &format!(":{}", app.port())),
                crate::db::redact(&state.config.database_url()),
                state.config.data_dir.display()
            );
            println!("listening on port {}", app.port());
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Worker(args) => {
            let config = Config::load(file, &args.overrides())?;
            let concurrency = config.worker.concurrency.max(1);
            let state = open_state(config).await?;
            let mut set = state.workers.spawn(concurrency);
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("worker stopping"),
                _ = set.join_next() => anyhow::bail!("a worker loop ended unexpectedly"),
            }
            Ok(())
        }
        Command::Migrate(args) => {
            let config = Config::load(file, &args.overrides())?;
            open_state(config).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Jobs(args) => jobs::run(args).await,
        Command::Models(args) => models::run(args).await,
        Command::Clusters(args) => clusters::run(args).await,
        Command::Users(args) => accounts::users(args, file).await,
        Command::Login(args) => accounts::login(args).await,
        Command::Tokens(args) => accounts::tokens(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Demo(args) => demo::run(args, file).await,
        Command::SimulateAl(args) => simulate::run(args).await,
        Command::BenchAl(args) => bench::run(args).await,
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
