//! Optional MLflow tracking (SPEC §12, `tracking.mlflow_uri`): each ACTIVE_ML iteration is an
//! MLflow run — its config as params, loss per epoch, epochs and times as metrics, the
//! performance estimate once known, `model.safetensors` and `model.json` as artifacts — under
//! one parent run per active-learning chain, through MLflow's REST API. A tracking server
//! that does not answer is a line in the job log, never a failed job.

use std::{path::Path, sync::Arc, time::Duration};

use futures_util::FutureExt;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use crate::{
    config::{Config, TrackingConfig},
    job_types::JobLog,
    queue::job,
    science::classify::WEIGHTS,
    state::Extensions,
};

/// The run of an iteration, in its folder (for the estimate that comes later).
const RUN_FILE: &str = "mlflow_run.json";
/// The chain's parent run, in the folder of the chain's first iteration.
const PARENT_FILE: &str = "mlflow_parent.json";

/// Tracks every finished iteration when `tracking.mlflow_uri` is set.
pub fn extend(ext: &mut Extensions, config: &Config) {
    if config.tracking.mlflow_uri.trim().is_empty() {
        return;
    }
    let ctx = Arc::new((config.tracking.clone(), config.files_root()));
    ext.on_success(
        "ACTIVE_ML",
        Arc::new(move |db, job, dir| {
            let ctx = ctx.clone();
            async move {
                track(&ctx.0, &ctx.1, &db, &job, &dir).await;
                Ok(())
            }
            .boxed()
        }),
    );
}

struct Mlflow {
    http: reqwest::Client,
    base: String,
}

impl Mlflow {
    fn new(uri: &str) -> Mlflow {
        Mlflow {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base: uri.trim_end_matches('/').to_string(),
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
        let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!(
                "{what}: {status} {}",
                body["message"].as_str().unwrap_or("")
            ));
        }
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.call(self.http.post(url).json(&body), path).await
    }

    /// The experiment's id, made on first use.
    async fn experiment(&self, name: &str) -> Result<String, String> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        let found = self
            .http
            .get(url)
            .query(&[("experiment_name", name)])
            .send()
            .await
            .map_err(|e| format!("experiments/get-by-name: {e}"))?;
        if found.status().is_success() {
            let body: Value = found.json().await.map_err(|e| e.to_string())?;
            if let Some(id) = body["experiment"]["experiment_id"].as_str() {
                return Ok(id.to_string());
            }
        }
        let made = self
            .post("experiments/create", json!({ "name": name }))
            .await?;
        made["experiment_id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| "experiments/create: no experiment_id".into())
    }

    /// A new run; (run id, artifact URI).
    async fn run(
        &self,
        experiment: &str,
        name: &str,
        tags: Vec<(&str, String)>,
    ) -> Result<(String, String), String> {
        let tags: Vec<Value> = tags
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let made = self
            .post(
                "runs/create",
                json!({"experiment_id": experiment, "run_name": name, "start_time": now_ms(), "tags": tags}),
            )
            .await?;
        let info = &made["run"]["info"];
        match (info["run_id"].as_str(), info["artifact_uri"].as_str()) {
            (Some(id), Some(uri)) => Ok((id.to_string(), uri.to_string())),
            _ => Err("runs/create: no run_id".into()),
        }
    }

    /// Uploads `file` as `path` among the run's artifacts (the server must serve artifacts:
    /// `mlflow server`'s default).
    async fn artifact(&self, artifact_uri: &str, path: &str, file: &Path) -> Result<(), String> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(format!(
                "the run's artifacts go to {artifact_uri}, which mljm cannot write over REST \
                 (run mlflow server with --serve-artifacts)"
            ));
        };
        let rest = rest.trim_start_matches('/');
        // mlflow-artifacts://host:port/… names the server itself.
        let rest = match rest.split_once("/api/") {
            Some(_) => rest.to_string(),
            None if artifact_uri.starts_with("mlflow-artifacts://") => rest
                .split_once('/')
                .map_or(String::new(), |(_, r)| r.to_string()),
            None => rest.to_string(),
        };
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{rest}/{path}",
            self.base
        );
        self.call(self.http.put(url).body(bytes), "artifact upload")
            .await
            .map(|_| ())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Flattens a config into MLflow params (strings of at most 6,000 characters).
fn params(config: &Value) -> Vec<Value> {
    config
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"key": k, "value": text.chars().take(6000).collect::<String>()})
        })
        .collect()
}

async fn track(
    cfg: &TrackingConfig,
    files: &Path,
    db: &DatabaseConnection,
    job: &job::Model,
    dir: &Path,
) {
    let log = JobLog::open(&dir.join("log.txt")).ok();
    let say = |line: &str| {
        if let Some(l) = &log {
            l.line(line);
        }
    };
    match record(cfg, files, db, job, dir).await {
        Ok(url) => say(&format!("MLflow: View run {} at: {url}", job.label)),
        Err(e) => say(&format!(
            "MLflow tracking at {} failed, the job is not affected: {e}",
            cfg.mlflow_uri
        )),
    }
}

/// Records the iteration in `dir` as a run; returns the run's page.
async fn record(
    cfg: &TrackingConfig,
    files: &Path,
    db: &DatabaseConnection,
    job: &job::Model,
    dir: &Path,
) -> Result<String, String> {
    let m = Mlflow::new(&cfg.mlflow_uri);
    let experiment = m.experiment(&cfg.experiment).await?;
    let chain = super::chain_of(db, job.job_id)
        .await
        .map_err(|e| e.to_string())?;
    let parent = parent_run(&m, files, db, &experiment, chain).await?;
    let config = job.config.clone().unwrap_or(Value::Null);
    let iteration = config["iteration"].as_i64().unwrap_or(0);
    let (run_id, artifacts) = m
        .run(
            &experiment,
            &format!("{} it{iteration}", job.label),
            vec![
                ("mlflow.parentRunId", parent),
                ("mljm.job_id", job.job_id.to_string()),
                ("mljm.iteration", iteration.to_string()),
            ],
        )
        .await?;
    tokio::fs::write(
        dir.join(RUN_FILE),
        json!({"experiment_id": experiment, "run_id": run_id}).to_string(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let metrics: Value = tokio::fs::read(dir.join("metrics.json"))
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let t = now_ms();
    let mut points: Vec<Value> = metrics["loss_per_epoch"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| {
            Some(json!({"key": "loss", "value": v.as_f64()?, "timestamp": t, "step": i + 1}))
        })
        .collect();
    for key in [
        "epochs_run",
        "best_epoch",
        "best_loss",
        "train_s",
        "predict_s",
        "write_s",
        "training_spectra",
        "pool_spectra",
    ] {
        if let Some(v) = metrics[key].as_f64() {
            points.push(json!({"key": key, "value": v, "timestamp": t, "step": 0}));
        }
    }
    for batch in points.chunks(1000) {
        m.post(
            "runs/log-batch",
            json!({"run_id": run_id, "metrics": batch}),
        )
        .await?;
    }
    for batch in params(&config).chunks(100) {
        m.post("runs/log-batch", json!({"run_id": run_id, "params": batch}))
            .await?;
    }
    for name in [WEIGHTS, crate::science::classify::CARD] {
        let file = dir.join(name);
        if file.is_file() {
            m.artifact(&artifacts, &format!("model/{name}"), &file)
                .await?;
        }
    }
    m.post(
        "runs/update",
        json!({"run_id": run_id, "status": "FINISHED", "end_time": now_ms()}),
    )
    .await?;
    Ok(format!(
        "{}/#/experiments/{experiment}/runs/{run_id}",
        m.base
    ))
}

/// The chain's parent run, made with its first iteration and remembered in its folder.
async fn parent_run(
    m: &Mlflow,
    files: &Path,
    db: &DatabaseConnection,
    experiment: &str,
    chain: uuid::Uuid,
) -> Result<String, String> {
    use sea_orm::EntityTrait;
    let root = job::Entity::find_by_id(chain)
        .one(db)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the chain's first job is gone")?;
    let file = files
        .join(root.dir_path.trim_start_matches('/'))
        .join(PARENT_FILE);
    let known = tokio::fs::read(&file)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["experiment_id"] == experiment);
    if let Some(id) = known.as_ref().and_then(|v| v["run_id"].as_str()) {
        return Ok(id.to_string());
    }
    let (id, _) = m
        .run(
            experiment,
            &format!("{} (chain)", root.label),
            vec![("mljm.chain_id", chain.to_string())],
        )
        .await?;
    tokio::fs::write(
        &file,
        json!({"experiment_id": experiment, "run_id": id}).to_string(),
    )
    .await
    .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(id)
}

/// Logs an iteration's performance estimate to its run, when it was tracked.
pub async fn log_estimate(cfg: &TrackingConfig, dir: &Path, estimate: f64) {
    if cfg.mlflow_uri.trim().is_empty() {
        return;
    }
    let Some(run) = std::fs::read(dir.join(RUN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return;
    };
    let m = Mlflow::new(&cfg.mlflow_uri);
    let sent = m
        .post(
            "runs/log-metric",
            json!({"run_id": run["run_id"], "key": "perf_estimate", "value": estimate,
                   "timestamp": now_ms(), "step": 0}),
        )
        .await;
    if let (Err(e), Ok(log)) = (sent, JobLog::open(&dir.join("log.txt"))) {
        log.line(&format!(
            "MLflow: the performance estimate was not recorded: {e}"
        ));
    }
}
