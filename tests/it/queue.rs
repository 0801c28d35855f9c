//! The queue across processes: several `mljm worker` processes and `serve` share one
//! database and run every job exactly once; a worker killed with SIGKILL loses its job to
//! ERROR ("worker lost") within the heartbeat timeout, and the next job still runs.

use std::{
    collections::HashMap,
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{
    Backend, Options, TestApp, id, mljm_child, spawn_app_with, wait_file, wait_process_gone,
};

crate::on_both_backends!(
    two_worker_processes_and_serve_run_thirty_jobs_exactly_once,
    a_killed_worker_loses_its_job_and_the_next_job_runs,
    a_gpu_job_waits_queued_for_a_free_slot,
    a_panicking_job_ends_in_error_with_the_panic_message,
    each_gpu_job_holds_a_device_of_its_own_and_frees_it_when_it_fails,
);

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(app: &TestApp, log: &Path) -> Worker {
    let child = mljm_child(
        &["worker", "--workers", "2", "--database-url", &app.db.url],
        log,
    )
    .arg("--data-dir")
    .arg(&app.data_dir)
    .spawn()
    .expect("mljm binary runs");
    Worker(child)
}

fn fast_heartbeat(c: &mut mljm::config::Config) {
    c.worker.heartbeat_s = 0.5;
    c.worker.lost_after_s = 3.0;
}

async fn two_worker_processes_and_serve_run_thirty_jobs_exactly_once(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            workers: 1,
            tweak: fast_heartbeat,
            ..Default::default()
        },
    )
    .await;
    let tmp = app.data_dir.parent().unwrap().to_path_buf();
    let _w1 = start_worker(&app, &tmp.join("w1.log"));
    let _w2 = start_worker(&app, &tmp.join("w2.log"));
    let runs = tmp.join("runs.txt");
    let mut ids = Vec::new();
    for i in 0..30 {
        let script = format!("echo $MLJM_JOB_ID >> {}; sleep 0.2", runs.display());
        let job = app.create_script(&format!("job {i}"), &script).await;
        app.run(&id(&job)).await;
        ids.push(id(&job));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page: Value = app.get_json("/api/jobs/?phase=COMPLETED&limit=100").await;
        if page["total"] == 30 {
            break;
        }
        let bad: Value = app.get_json("/api/jobs/?phase=ERROR").await;
        assert_eq!(bad["total"], 0, "{bad}");
        assert!(
            Instant::now() < deadline,
            "only {} of 30 jobs completed",
            page["total"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    for job_id in &ids {
        assert_eq!(
            counts.get(job_id.as_str()),
            Some(&1),
            "job {job_id} ran {:?} times",
            counts.get(job_id.as_str())
        );
    }
    assert_eq!(counts.len(), 30);
    // The work was shared: more than one process claimed jobs.
    let workers: std::collections::HashSet<String> =
        futures_util::future::join_all(ids.iter().map(|i| async {
            use sea_orm::EntityTrait;
            let row = mljm::queue::job::Entity::find_by_id(i.parse::<uuid::Uuid>().unwrap())
                .one(&app.state.db)
                .await
                .unwrap()
                .unwrap();
            row.worker_id
                .unwrap()
                .rsplit(':')
                .nth(1)
                .unwrap()
                .to_string()
        }))
        .await
        .into_iter()
        .collect();
    assert!(
        workers.len() >= 2,
        "every job ran in one process: {workers:?}"
    );
}

async fn a_killed_worker_loses_its_job_and_the_next_job_runs(b: Backend) {
    // The server runs no jobs itself here; only the worker process does.
    let app = spawn_app_with(
        b,
        Options {
            workers: 0,
            tweak: fast_heartbeat,
            ..Default::default()
        },
    )
    .await;
    let tmp = app.data_dir.parent().unwrap().to_path_buf();
    let mut worker = start_worker(&app, &tmp.join("w.log"));
    let job = app
        .create_script("doomed", "sleep 300 & echo $! > grandchild.pid; wait")
        .await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "PROCESSING", Duration::from_secs(20))
        .await;
    let grandchild: i32 = wait_file(
        &app.job_dir(&job).join("grandchild.pid"),
        Duration::from_secs(10),
    )
    .await
    .trim()
    .parse()
    .unwrap();
    let t0 = Instant::now();
    worker.0.kill().unwrap(); // SIGKILL
    worker.0.wait().unwrap();
    let lost = app
        .wait_phase(&id(&job), "ERROR", Duration::from_secs(15))
        .await;
    assert!(
        lost["error"].as_str().unwrap().contains("worker lost"),
        "{lost}"
    );
    eprintln!(
        "worker lost detected {:.1} s after SIGKILL (lost_after_s = 3)",
        t0.elapsed().as_secs_f64()
    );
    app.wait_log(&id(&job), "worker lost", Duration::from_secs(5))
        .await;
    // The reaper (here the server's, on the same host) kills what the job left running.
    wait_process_gone(grandchild, Duration::from_secs(5), "the lost job").await;
    let next = app.create_script("survivor", "echo fine").await;
    app.run(&id(&next)).await;
    let _worker = start_worker(&app, &tmp.join("w2.log"));
    app.wait_phase(&id(&next), "COMPLETED", Duration::from_secs(20))
        .await;
    // The lost job stays lost: nothing re-runs or overwrites it.
    assert_eq!(app.job(&id(&job)).await["phase"], "ERROR");
}

/// A GPU job type for the semaphore tests; `PANIC` in its config makes it panic.
struct GpuProbe;

impl mljm::job_types::JobType for GpuProbe {
    fn name(&self) -> &'static str {
        "GPU_PROBE"
    }
    fn needs_gpu(&self) -> bool {
        true
    }
    fn known_keys(&self) -> &'static [&'static str] {
        &["panic", "sleep_ms", "fail"]
    }
    fn validate(&self, _: &Value) -> Result<(), mljm::job_types::ConfigError> {
        Ok(())
    }
    fn run(
        &self,
        ctx: mljm::job_types::JobContext,
    ) -> futures_util::future::BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            ctx.log.line(&format!("device {}", ctx.device));
            if ctx.config["panic"] == true {
                panic!("probe exploded");
            }
            if let Some(ms) = ctx.config["sleep_ms"].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            anyhow::ensure!(ctx.config["fail"] != true, "probe failed");
            Ok(())
        })
    }
}

/// The server's state with a registry that also knows GPU_PROBE, and its workers.
fn with_probe(app: &TestApp) -> (mljm::state::AppState, mljm::worker::Workers) {
    with_probe_on(app, app.state.config.gpu.clone())
}

/// [`with_probe`] with other GPU settings.
fn with_probe_on(
    app: &TestApp,
    gpu: mljm::config::GpuConfig,
) -> (mljm::state::AppState, mljm::worker::Workers) {
    use std::sync::Arc;
    let mut config = (*app.state.config).clone();
    config.gpu = gpu;
    let registry = Arc::new(mljm::job_types::Registry::with_types(vec![
        Arc::new(GpuProbe),
        Arc::new(mljm::job_types::script::Script),
    ]));
    let workers = mljm::worker::Workers::new(
        &config,
        mljm::queue::Queue::new(app.state.db.clone()),
        registry.clone(),
        mljm::app::extensions(&mljm::config::Config::default()).success_hooks,
    )
    .unwrap();
    let state = mljm::state::AppState {
        registry,
        workers: workers.clone(),
        ..app.state.clone()
    };
    (state, workers)
}

async fn queue_job(state: &mljm::state::AppState, job_type: &str, config: Value) -> uuid::Uuid {
    let new = mljm::jobs::service::NewJob {
        job_type: job_type.into(),
        label: job_type.into(),
        description: None,
        config: Some(config),
        parent_job_id: None,
    };
    let job = mljm::jobs::service::create(state, new).await.unwrap();
    mljm::jobs::service::run(state, job.job_id).await.unwrap();
    job.job_id
}

async fn a_gpu_job_waits_queued_for_a_free_slot(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            workers: 0,
            ..Default::default()
        },
    )
    .await;
    let (state, rt) = with_probe(&app);
    assert_eq!(state.config.gpu.slots, 1);
    let first = queue_job(&state, "GPU_PROBE", serde_json::json!({})).await;
    let second = queue_job(&state, "GPU_PROBE", serde_json::json!({})).await;
    let cpu = queue_job(&state, "SCRIPT", serde_json::json!({"command": ["true"]})).await;
    let (job, permit) = rt
        .claim_next()
        .await
        .unwrap()
        .expect("the first GPU job is claimed");
    assert_eq!(job.job_id, first);
    assert!(permit.is_some(), "a GPU job holds a slot");
    // The only slot is taken: the next GPU job stays QUEUED, the CPU job goes ahead.
    let (job, permit_cpu) = rt
        .claim_next()
        .await
        .unwrap()
        .expect("the CPU job is claimed");
    assert_eq!(job.job_id, cpu);
    assert!(permit_cpu.is_none());
    assert!(rt.claim_next().await.unwrap().is_none());
    assert_eq!(app.job(&second.to_string()).await["phase"], "QUEUED");
    drop(permit);
    let (job, permit) = rt
        .claim_next()
        .await
        .unwrap()
        .expect("the slot is free again");
    assert_eq!(job.job_id, second);
    assert!(permit.is_some());
    assert_eq!(rt.run_one(job).await, mljm::worker::Outcome::Completed);
}

async fn a_panicking_job_ends_in_error_with_the_panic_message(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            workers: 0,
            ..Default::default()
        },
    )
    .await;
    let (state, rt) = with_probe(&app);
    let id = queue_job(&state, "GPU_PROBE", serde_json::json!({"panic": true})).await;
    let (job, _permit) = rt.claim_next().await.unwrap().unwrap();
    let outcome = rt.run_one(job).await;
    assert!(
        matches!(&outcome, mljm::worker::Outcome::Failed(m) if m.contains("probe exploded")),
        "{outcome:?}"
    );
    let job = app.job(&id.to_string()).await;
    assert_eq!(job["phase"], "ERROR");
    assert!(job["error"].as_str().unwrap().contains("probe exploded"));
    assert!(app.log(&id.to_string()).await.contains("probe exploded"));
}

/// Two devices: two GPU jobs run at once, each on its own device (its page and log say
/// which); a third waits. A failing job frees its device for the waiting one.
async fn each_gpu_job_holds_a_device_of_its_own_and_frees_it_when_it_fails(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            workers: 0,
            ..Default::default()
        },
    )
    .await;
    let gpu = mljm::config::GpuConfig {
        devices: vec!["cuda:0".into(), "cuda:1".into()],
        ..Default::default()
    };
    let (state, rt) = with_probe_on(&app, gpu);
    let long = queue_job(&state, "GPU_PROBE", serde_json::json!({"sleep_ms": 4000})).await;
    let failing = queue_job(
        &state,
        "GPU_PROBE",
        serde_json::json!({"sleep_ms": 500, "fail": true}),
    )
    .await;
    let waiting = queue_job(&state, "GPU_PROBE", serde_json::json!({})).await;
    let _loops = rt.spawn(3);
    let (long, failing, waiting) = (long.to_string(), failing.to_string(), waiting.to_string());
    let device = |log: String| {
        log.lines()
            .find_map(|l| l.split("device ").nth(1).map(str::to_string))
    };
    let long_on = device(app.wait_log(&long, "device", Duration::from_secs(10)).await).unwrap();
    let failing_on = device(
        app.wait_log(&failing, "device", Duration::from_secs(10))
            .await,
    )
    .unwrap();
    assert_ne!(long_on, failing_on, "two jobs, two devices");
    let held = rt.gpu.holders();
    assert!(held.iter().all(|(_, jobs)| jobs.len() == 1), "{held:?}");
    assert_eq!(
        app.job(&waiting).await["phase"],
        "QUEUED",
        "no third device"
    );
    assert_eq!(
        rt.gpu.device_of(long.parse().unwrap()),
        Some(long_on.clone())
    );

    app.wait_phase(&failing, "ERROR", Duration::from_secs(10))
        .await;
    app.wait_phase(&waiting, "COMPLETED", Duration::from_secs(10))
        .await;
    assert_eq!(
        device(app.log(&waiting).await).unwrap(),
        failing_on,
        "the failed job's device went to the waiting job while the long one kept its own"
    );
    app.wait_phase(&long, "COMPLETED", Duration::from_secs(10))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.gpu.available() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rt.gpu.available(),
        2,
        "every slot free again: {:?}",
        rt.gpu.holders()
    );
}
