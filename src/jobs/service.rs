//! Job operations shared by the JSON API, the pages and the CLI: create, read, edit, delete,
//! RUN, ABORT, end, list and log. Phase rules come from `queue::Phase::transition`; queue
//! writes are compare-and-set so a late or concurrent writer never overwrites a newer state.
//! (A little over 400 lines: one operation per endpoint, each short; split further they would
//! only scatter the lifecycle.)

use std::io::{Read, Seek, SeekFrom};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait, sea_query::Expr,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::model::{Description, JobPage, JobView, Label, job_dir_path};
use crate::{
    error::ApiError,
    job_types::CheckError,
    queue::{
        Action, Phase, duration_s,
        job::{self, Column as C},
        transition,
    },
    slurm::sweep::{self, Sweep},
    state::AppState,
};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewJob {
    #[serde(rename = "type")]
    #[schema(example = "SCRIPT")]
    pub job_type: String,
    #[schema(min_length = 1, max_length = 50)]
    pub label: String,
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// The job type's configuration (the original's JSON files).
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[serde(default)]
    pub parent_job_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct JobEdit {
    pub label: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Jobs to skip.
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    pub offset: Option<u64>,
    /// Jobs in the page, 1 to 1000 (10 when absent).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    pub phase: Option<String>,
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    /// Only the jobs made from this one: a sweep's tasks, an active-learning chain's next
    /// iteration.
    pub parent: Option<String>,
}

pub const MAX_LIMIT: u64 = 1000;

pub async fn create(state: &AppState, new: NewJob) -> Result<JobView, ApiError> {
    if state.registry.get(&new.job_type).is_none() {
        return Err(state.registry.unknown(&new.job_type).into());
    }
    require_command_if_needed(&new.job_type, new.config.as_ref())?;
    let label = Label::parse(&new.label)?;
    let description = new
        .description
        .as_deref()
        .map(Description::parse)
        .transpose()?
        .map(Description::into_inner);
    let mut new = new;
    if let Some(cfg) = new.config.as_mut() {
        crate::models::resolve_config(state, &new.job_type, cfg).await?;
    }
    let sweep = match &new.config {
        Some(cfg) => check_config(state, &new.job_type, cfg).await?.0,
        None => None,
    };
    if let Some(parent) = new.parent_job_id {
        find(state, parent)
            .await
            .map_err(|_| ApiError::invalid("parent_job_id", format!("no job {parent}")))?;
    }
    let id = Uuid::new_v4();
    let dir_path = job_dir_path(&label, id);
    let dir = state.workers.job_dir(&dir_path);
    std::fs::create_dir_all(&dir)?;
    if let Some(cfg) = &new.config {
        write_config(&dir, cfg)?;
    }
    let row = new_row(
        id,
        &new.job_type,
        &label,
        description.clone(),
        dir_path,
        new.config,
        new.parent_job_id,
    );
    let txn = state.db.begin().await?;
    job::Entity::insert(row).exec(&txn).await?;
    if let Some(sweep) = sweep {
        // Each task is a job of its own (its folder, config, phase and log), made now so that
        // the sweep's page lists them from the start.
        let mut rows = Vec::with_capacity(sweep.tasks.len());
        for task in sweep.tasks {
            let task_id = Uuid::new_v4();
            let task_label = task_label(&label, task.index)?;
            let task_dir = job_dir_path(&task_label, task_id);
            let dir = state.workers.job_dir(&task_dir);
            std::fs::create_dir_all(&dir)?;
            write_config(&dir, &task.config)?;
            rows.push(new_row(
                task_id,
                &new.job_type,
                &task_label,
                description.clone(),
                task_dir,
                Some(task.config),
                Some(id),
            ));
        }
        while !rows.is_empty() {
            let rest = rows.split_off(rows.len().min(200));
            job::Entity::insert_many(rows).exec(&txn).await?;
            rows = rest;
        }
    }
    txn.commit().await?;
    crate::auth::audit(&state.db, "job_create", Some(id.to_string()), None, None).await;
    get(state, id).await
}

/// SCRIPT runs any command, and so does any job with a cluster `target` (its batch script):
/// both need a role in `auth.command_roles` (SPEC §11).
fn require_command_if_needed(job_type: &str, config: Option<&Value>) -> Result<(), ApiError> {
    if job_type == "SCRIPT" {
        crate::auth::require_command("a SCRIPT job")?;
    }
    if config
        .and_then(|c| c.get("target"))
        .is_some_and(|t| !t.is_null())
    {
        crate::auth::require_command("a job with a cluster target")?;
    }
    Ok(())
}

/// A new PENDING job row.
fn new_row(
    id: Uuid,
    job_type: &str,
    label: &Label,
    description: Option<String>,
    dir_path: String,
    config: Option<Value>,
    parent: Option<Uuid>,
) -> job::ActiveModel {
    job::ActiveModel {
        job_id: Set(id),
        job_type: Set(job_type.to_string()),
        label: Set(label.as_str().to_string()),
        description: Set(description),
        phase: Set(Phase::Pending),
        dir_path: Set(dir_path),
        config: Set(config),
        error: Set(None),
        parent_job_id: Set(parent),
        created_at: Set(Utc::now()),
        started_at: Set(None),
        ended_at: Set(None),
        execution_duration: Set(None),
        attempt: Set(0),
        worker_id: Set(None),
        heartbeat_ms: Set(None),
        cluster: Set(None),
        external_id: Set(None),
        node: Set(None),
        exit_code: Set(None),
        created_by: Set(crate::auth::current_user()),
    }
}

/// A sweep task's label: the sweep's, shortened to fit, and ` #INDEX`.
fn task_label(sweep: &Label, index: u32) -> Result<Label, ApiError> {
    let suffix = format!(" #{index}");
    let keep = 50 - suffix.chars().count();
    let base: String = sweep.as_str().chars().take(keep).collect();
    Label::parse(&format!("{}{suffix}", base.trim_end()))
}

/// A config as its type reads it, and its target; a sweep's tasks each (the sweep itself
/// may leave to its parameter sets what its type requires). The sweep and the target.
async fn check_config(
    state: &AppState,
    job_type: &str,
    cfg: &Value,
) -> Result<(Option<Sweep>, Option<crate::slurm::target::Target>), ApiError> {
    let paths = state.workers.paths();
    let sweep = sweep::of_config(cfg).map_err(|e| ApiError::invalid(e.field, e.message))?;
    match &sweep {
        None => state.registry.check(job_type, cfg, &paths)?,
        Some(s) if cfg["array"].is_string() => {
            if job_type != "SCRIPT" {
                return Err(ApiError::invalid(
                    "array",
                    "an index range is for a SCRIPT that reads SLURM_ARRAY_TASK_ID; other \
                     types take a list of parameter sets",
                ));
            }
            state.registry.check(job_type, &s.tasks[0].config, &paths)?;
        }
        Some(s) => {
            for (i, task) in s.tasks.iter().enumerate() {
                state
                    .registry
                    .check(job_type, &task.config, &paths)
                    .map_err(|e| match e {
                        CheckError::Config(c) => ApiError::invalid(
                            format!(
                                "array[{i}]{}{}",
                                if c.field.is_empty() { "" } else { "." },
                                c.field
                            ),
                            c.message,
                        ),
                        other => other.into(),
                    })?;
            }
        }
    }
    let target = check_target(state, cfg).await?;
    Ok((sweep, target))
}

fn write_config(dir: &std::path::Path, cfg: &Value) -> Result<(), ApiError> {
    let text = serde_json::to_vec_pretty(cfg).map_err(anyhow::Error::from)?;
    std::fs::write(dir.join("config.json"), text)?;
    Ok(())
}

async fn find(state: &AppState, id: Uuid) -> Result<job::Model, ApiError> {
    job::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

pub async fn get(state: &AppState, id: Uuid) -> Result<JobView, ApiError> {
    let mut view: JobView = find(state, id).await?.into();
    let dir = state
        .config
        .files_root()
        .join(view.dir_path.trim_start_matches('/'));
    view.metrics = std::fs::read(dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    view.links = super::links::of_log(&dir.join("log.txt"));
    Ok(view)
}

pub async fn edit(state: &AppState, id: Uuid, edit: JobEdit) -> Result<JobView, ApiError> {
    let mut update = job::Entity::update_many().filter(C::JobId.eq(id));
    let mut changed = false;
    if let Some(l) = &edit.label {
        update = update.col_expr(C::Label, Expr::value(Label::parse(l)?.as_str()));
        changed = true;
    }
    if let Some(d) = &edit.description {
        update = update.col_expr(
            C::Description,
            Expr::value(Description::parse(d)?.into_inner()),
        );
        changed = true;
    }
    let job = find(state, id).await?;
    crate::auth::require_owner(job.created_by.as_deref(), "this job")?;
    if changed {
        update.exec(&state.db).await?;
    }
    get(state, id).await
}

pub async fn delete(state: &AppState, id: Uuid, with_models: bool) -> Result<(), ApiError> {
    let job = find(state, id).await?;
    crate::auth::require_owner(job.created_by.as_deref(), "this job")?;
    if job.phase.is_active() {
        return Err(ApiError::Conflict(format!(
            "cannot delete a job in phase {}: ABORT it first",
            job.phase
        )));
    }
    if sweep::is_sweep(job.config.as_ref()) {
        delete_tasks(state, id).await?;
    }
    // A later iteration's result.h5 links this job's (and its training set is built from
    // it): deleting this one would break that one, so the chain goes from its end.
    if let Some(child) = job::Entity::find()
        .filter(C::ParentJobId.eq(id))
        .one(&state.db)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "job {} continues from this one and reads its files: delete that job first",
            child.job_id
        )));
    }
    // Its folder holds a registered model's weights: deleting it is asked for by name.
    let models = crate::models::of_job(&state.db, id).await?;
    if let Some(m) = models.first().filter(|_| !with_models) {
        return Err(ApiError::Conflict(format!(
            "job {id} trained the registered model {:?} ({}): delete with with_models=true to \
             unregister it too, or keep the job",
            m.name, m.model_id
        )));
    }
    let removed = job::Entity::delete_many()
        .filter(C::JobId.eq(id))
        .filter(C::Phase.is_not_in([Phase::Queued, Phase::Processing]))
        .exec(&state.db)
        .await?;
    if removed.rows_affected > 0 && !models.is_empty() {
        crate::models::delete_of_job(&state.db, id).await?;
    }
    if removed.rows_affected == 0 {
        // Another DELETE won (404, as for any job that is gone), or a RUN did (409).
        find(state, id).await?;
        return Err(ApiError::Conflict(
            "the job was started meanwhile: ABORT it first".into(),
        ));
    }
    crate::auth::audit(&state.db, "job_delete", Some(id.to_string()), None, None).await;
    let dir = state.workers.job_dir(&job.dir_path);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(
            "job {id} deleted, but its directory {} stays: {e}",
            dir.display()
        );
    }
    Ok(())
}

/// A sweep's tasks and their folders (none of them active).
async fn delete_tasks(state: &AppState, sweep: Uuid) -> Result<(), ApiError> {
    let tasks = job::Entity::find()
        .filter(C::ParentJobId.eq(sweep))
        .all(&state.db)
        .await?;
    if let Some(t) = tasks.iter().find(|t| t.phase.is_active()) {
        return Err(ApiError::Conflict(format!(
            "task {} of this sweep is {}: ABORT the sweep first",
            t.label, t.phase
        )));
    }
    job::Entity::delete_many()
        .filter(C::ParentJobId.eq(sweep))
        .filter(C::Phase.is_not_in([Phase::Queued, Phase::Processing]))
        .exec(&state.db)
        .await?;
    for t in tasks {
        let _ = std::fs::remove_dir_all(state.workers.job_dir(&t.dir_path));
    }
    Ok(())
}

/// PENDING → QUEUED; wakes the workers. The job's configuration is its folder's
/// `config.json` (SPEC §2, as in the original, where users placed or edited it there): it is
/// read and checked again here, and the job row keeps the config the job runs with.
pub async fn run(state: &AppState, id: Uuid) -> Result<JobView, ApiError> {
    let job = find(state, id).await?;
    if let (Some(parent), Some(index)) = (job.parent_job_id, sweep::task_index(job.config.as_ref()))
    {
        return Err(ApiError::Conflict(format!(
            "this is task {index} of sweep {parent}: it runs with its sweep (RUN the sweep)"
        )));
    }
    crate::auth::require_owner(job.created_by.as_deref(), "this job")?;
    job.phase.transition(Action::Run)?;
    let mut config = folder_config(state, &job)?;
    crate::models::resolve_config(state, &job.job_type, &mut config).await?;
    require_command_if_needed(&job.job_type, Some(&config))?;
    if sweep::is_sweep(job.config.as_ref()) || sweep::is_sweep(Some(&config)) {
        let made = job.config.as_ref();
        let key = |c: Option<&Value>, k: &str| c.and_then(|c| c.get(k)).cloned();
        if ["array", "array_parallelism"]
            .iter()
            .any(|k| key(made, k) != key(Some(&config), k))
        {
            return Err(ApiError::invalid(
                "array",
                "a sweep's tasks are made when it is created: create a new sweep to change \
                 its array",
            ));
        }
    }
    let cluster = check_config(state, &job.job_type, &config)
        .await?
        .1
        .map(|t| t.cluster);
    let won = transition(
        &state.db,
        id,
        Phase::Pending,
        Action::Run,
        None,
        vec![
            (C::Config, Expr::value(config.clone())),
            (C::Cluster, Expr::value(cluster.clone())),
        ],
    )
    .await?;
    if won.is_none() {
        let now = find(state, id).await?;
        return Err(now
            .phase
            .transition(Action::Run)
            .err()
            .map(ApiError::from)
            .unwrap_or_else(|| ApiError::Conflict("the job changed meanwhile; try again".into())));
    }
    crate::auth::audit(&state.db, "job_run", Some(id.to_string()), None, None).await;
    // Answer with the phase this call wrote: a worker may claim the job before we read it back.
    let mut queued = JobView::from(job);
    queued.phase = Phase::Queued;
    queued.config = Some(config);
    match &cluster {
        Some(name) => state.clusters.wake(name),
        None => state.workers.queue.enqueued().await,
    }
    queued.cluster = cluster;
    Ok(queued)
}

/// A config's `target` (SPEC §8): its form, its cluster, and — when the cluster answers —
/// its partition, each a 422 naming the field.
async fn check_target(
    state: &AppState,
    config: &Value,
) -> Result<Option<crate::slurm::target::Target>, ApiError> {
    let Some(target) = crate::slurm::target::of_config(config, &state.config)
        .map_err(|e| ApiError::invalid(e.field, e.message))?
    else {
        return Ok(None);
    };
    if let (Some(p), Some(c)) = (&target.partition, state.clusters.get(&target.cluster))
        && let Ok(info) = state.clusters.info(c).await
        && !info.partitions.iter().any(|q| &q.name == p)
    {
        let known: Vec<&str> = info.partitions.iter().map(|q| q.name.as_str()).collect();
        return Err(ApiError::invalid(
            "target.partition",
            format!(
                "cluster {} has no partition {p:?} (it has {known:?})",
                target.cluster
            ),
        ));
    }
    Ok(Some(target))
}

/// The job folder's `config.json`, or, where the folder has none, the config it was created
/// with (written back, so the folder shows what runs).
fn folder_config(state: &AppState, job: &job::Model) -> Result<Value, ApiError> {
    let dir = state.workers.job_dir(&job.dir_path);
    let path = dir.join("config.json");
    let shown = format!("{}/config.json", job.dir_path);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid("config", format!("{shown} is not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match &job.config {
            Some(cfg) => {
                write_config(&dir, cfg)?;
                Ok(cfg.clone())
            }
            None => Err(ApiError::invalid(
                "config",
                format!(
                    "the job has no config to run: create it with one, or put config.json into \
                     its folder ({shown})"
                ),
            )),
        },
        Err(e) => Err(ApiError::invalid(
            "config",
            format!("cannot read {shown}: {e}"),
        )),
    }
}

/// QUEUED or PROCESSING → ABORTED. A job running in this process is stopped at once; one
/// running elsewhere by its worker's watcher, which sees the row within ~250 ms.
pub async fn abort(state: &AppState, id: Uuid) -> Result<JobView, ApiError> {
    loop {
        let job = find(state, id).await?;
        crate::auth::require_owner(job.created_by.as_deref(), "this job")?;
        job.phase.transition(Action::Abort)?;
        if let (Some(cluster), Some(external)) = (&job.cluster, &job.external_id)
            && crate::slurm::submitted(external)
            && state.clusters.get(cluster).is_some()
            && job.phase.is_active()
        {
            return abort_on_cluster(state, &job, cluster, external).await;
        }
        let ended = Utc::now();
        let duration = duration_s(job.started_at, ended);
        let changes = vec![
            (C::EndedAt, Expr::value(ended)),
            (C::ExecutionDuration, Expr::value(duration)),
        ];
        if transition(&state.db, id, job.phase, Action::Abort, None, changes)
            .await?
            .is_some()
        {
            state.workers.cancel_here(id);
            crate::auth::audit(&state.db, "job_abort", Some(id.to_string()), None, None).await;
            if sweep::is_sweep(job.config.as_ref()) {
                // Not submitted yet: its tasks never will be.
                job::Entity::update_many()
                    .filter(C::ParentJobId.eq(id))
                    .filter(C::Phase.is_in([Phase::Pending, Phase::Queued]))
                    .col_expr(C::Phase, Expr::value(Phase::Aborted))
                    .col_expr(C::EndedAt, Expr::value(ended))
                    .exec(&state.db)
                    .await?;
            }
            return get(state, id).await;
        }
        // Claimed or finished between the read and the write: decide again on the new phase.
    }
}

/// ABORT of a job SLURM has (a sweep: every task): `scancel` now, and the phase stays
/// until SLURM confirms — the cluster's next poll sees CANCELLED and writes ABORTED. A
/// cluster that does not take the scancel is a 502, the job left as it is, rather than a
/// job shown ABORTED that still runs.
async fn abort_on_cluster(
    state: &AppState,
    job: &job::Model,
    cluster: &str,
    external: &str,
) -> Result<JobView, ApiError> {
    let log = state.workers.job_dir(&job.dir_path).join("log.txt");
    let say = |line: String| {
        if let Ok(l) = crate::job_types::JobLog::open(&log) {
            l.line(&line);
        }
    };
    if let Err(e) = state.clusters.cancel(cluster, external).await {
        say(format!(
            "ABORT: scancel {external} on cluster {cluster} failed: {e}"
        ));
        return Err(ApiError::Unavailable(format!(
            "scancel {external} on cluster {cluster} failed (the job is left as it is): {e}"
        )));
    }
    say(format!(
        "ABORT: scancel {external} sent to cluster {cluster}; ABORTED once SLURM confirms"
    ));
    crate::auth::audit(
        &state.db,
        "job_abort",
        Some(job.job_id.to_string()),
        None,
        None,
    )
    .await;
    state.clusters.poll_soon(cluster);
    get(state, job.job_id).await
}

/// The original's upload form: `config` (label, description, command as a string for `sh -c`
/// or a list, env, timeout_s) plus an entrypoint already saved at `staged`. Creates the SCRIPT
/// job, moves the entrypoint into its directory, and runs it.
pub async fn submit(
    state: &AppState,
    form: Value,
    entrypoint: &str,
    staged: &std::path::Path,
) -> Result<JobView, ApiError> {
    let name = crate::storage::file_name(entrypoint)
        .map_err(|e| ApiError::invalid("entrypoint", e.to_string()))?;
    let text = |k: &str| form.get(k).and_then(Value::as_str).map(str::to_string);
    let command = match form.get("command") {
        Some(Value::String(s)) => serde_json::json!(["sh", "-c", s]),
        Some(Value::Array(a)) => Value::Array(a.clone()),
        None => serde_json::json!(["sh", name]),
        Some(_) => {
            return Err(ApiError::invalid(
                "config.command",
                "command must be a string or a list of strings",
            ));
        }
    };
    let mut config = serde_json::json!({ "command": command });
    for key in ["env", "timeout_s"] {
        if let Some(v) = form.get(key) {
            config[key] = v.clone();
        }
    }
    if let Some(target) = task_manager_target(state, &form)? {
        // The ML Task Manager's own keys (dataset_name, model_params, …) stay in the config,
        // where the entrypoint can read them from config.json.
        for (k, v) in form.as_object().into_iter().flatten() {
            if !["label", "description", "command", "env", "timeout_s"].contains(&k.as_str()) {
                config[k] = v.clone();
            }
        }
        config["target"] = target;
    }
    let new = NewJob {
        job_type: "SCRIPT".into(),
        label: text("label")
            .ok_or_else(|| ApiError::invalid("config.label", "label is required"))?,
        description: text("description"),
        config: Some(config),
        parent_job_id: None,
    };
    let job = create(state, new).await?;
    let path = state.workers.job_dir(&job.dir_path).join(&name);
    std::fs::rename(staged, &path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    run(state, job.job_id).await
}

/// The ML Task Manager's placement (SPEC §8): `runner_location` names a cluster, and
/// `clusters.<name>.infra_config` gives its partition (`instance_type`), container image
/// (`image_name`) and `account`. `None` where the form runs here (no runner, or "local").
fn task_manager_target(state: &AppState, form: &Value) -> Result<Option<Value>, ApiError> {
    let runner = match form.get("runner_location") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(r)) if r.is_empty() || r == "local" => return Ok(None),
        Some(Value::String(r)) => r.as_str(),
        Some(_) => {
            return Err(ApiError::invalid(
                "config.runner_location",
                "runner_location is the name of a cluster",
            ));
        }
    };
    if state.config.cluster(runner).is_none() {
        let known: Vec<&str> = state
            .config
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(ApiError::invalid(
            "config.runner_location",
            format!("no cluster {runner:?} in config.toml (it declares {known:?}, and \"local\")"),
        ));
    }
    let infra = form
        .get("clusters")
        .and_then(|c| c.get(runner))
        .and_then(|c| c.get("infra_config"));
    let text = |k: &str| {
        infra
            .and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let mut target = serde_json::json!({ "cluster": runner });
    if let Some(p) = text("instance_type") {
        target["partition"] = p.into();
    }
    if let Some(a) = text("account") {
        target["account"] = a.into();
    }
    if let Some(image) = text("image_name") {
        target["container"] = serde_json::json!({ "image": image });
    }
    Ok(Some(target))
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct EndTimes {
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// An external runner reports the end of a PROCESSING job (the original's `/end/…`).
pub async fn end(
    state: &AppState,
    id: Uuid,
    action: Action,
    times: EndTimes,
) -> Result<JobView, ApiError> {
    if times.ended_at < times.started_at {
        return Err(ApiError::invalid(
            "ended_at",
            "ended_at is before started_at",
        ));
    }
    let job = find(state, id).await?;
    let duration = duration_s(Some(times.started_at), times.ended_at);
    let won = transition(
        &state.db,
        id,
        job.phase,
        action,
        Some(job.attempt),
        vec![
            (C::StartedAt, Expr::value(times.started_at)),
            (C::EndedAt, Expr::value(times.ended_at)),
            (C::ExecutionDuration, Expr::value(duration)),
        ],
    )
    .await?;
    if won.is_none() {
        return Err(ApiError::Conflict(
            "the job changed meanwhile; read it again".into(),
        ));
    }
    get(state, id).await
}

pub async fn list(state: &AppState, q: ListQuery) -> Result<JobPage, ApiError> {
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT} (got {limit})"),
        ));
    }
    // The databases count rows in signed 64-bit integers.
    if offset > i64::MAX as u64 {
        return Err(ApiError::invalid(
            "offset",
            format!("offset must be at most {} (got {offset})", i64::MAX),
        ));
    }
    let mut select = job::Entity::find();
    if let Some(p) = q.phase.as_deref().filter(|p| !p.is_empty()) {
        let phase = Phase::parse(p).ok_or_else(|| {
            ApiError::invalid(
                "phase",
                format!(
                    "unknown phase {p:?}; one of {}",
                    Phase::ALL.map(|p| p.as_str()).join(", ")
                ),
            )
        })?;
        select = select.filter(C::Phase.eq(phase));
    }
    if let Some(t) = q.job_type.as_deref().filter(|t| !t.is_empty()) {
        select = select.filter(C::JobType.eq(t));
    }
    if let Some(p) = q.parent.as_deref().filter(|p| !p.is_empty()) {
        let parent = Uuid::parse_str(p)
            .map_err(|_| ApiError::invalid("parent", format!("{p:?} is not a job id")))?;
        select = select.filter(C::ParentJobId.eq(parent));
    }
    let total = select.clone().count(&state.db).await?;
    let rows = select
        .order_by_desc(C::CreatedAt)
        .order_by_desc(C::JobId)
        .offset(offset)
        .limit(limit)
        .all(&state.db)
        .await?;
    Ok(JobPage {
        total,
        offset,
        limit,
        jobs: rows.into_iter().map(JobView::from).collect(),
    })
}

/// Which part of a job log to read.
pub enum LogPart {
    /// From this byte on (at most 8 MiB per call; `X-Next-Offset` says where to continue).
    From(u64),
    /// The last this-many bytes, for a page that shows the tail.
    Last(u64),
}

/// Part of the job log (empty when the job has not written one yet).
pub async fn log(state: &AppState, id: Uuid, part: LogPart) -> Result<Vec<u8>, ApiError> {
    let job = find(state, id).await?;
    let path = state.workers.job_dir(&job.dir_path).join("log.txt");
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let start = match part {
        LogPart::From(offset) => offset,
        LogPart::Last(n) => f.metadata()?.len().saturating_sub(n),
    };
    f.seek(SeekFrom::Start(start))?;
    let mut out = Vec::new();
    f.take(8 << 20).read_to_end(&mut out)?;
    Ok(out)
}
