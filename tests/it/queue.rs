//! The queue across processes: several `mljm worker` processes and `serve` share one
//! database and run every job exactly once; a worker killed with SIGKILL loses its job to
//! ERROR ("worker lost") within the heartbeat timeout, and the next job still runs.

use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, id, spawn_app_with};

crate::on_both_backends!(two_worker_processes_and_serve_run_thirty_jobs_exactly_once, a_killed_worker_loses_its_job_and_the_next_job_runs);

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(app: &TestApp, log: &Path) -> Worker {
    let child = Command::new(env!("CARGO_BIN_EXE_mljm"))
        .args(["worker", "--workers", "2", "--database-url", &app.db.url, "--data-dir"])
        .arg(&app.data_dir)
        .env("MLJM_WORKER__HEARTBEAT_S", "0.5")
        .env("MLJM_WORKER__LOST_AFTER_S", "3")
        .env("MLJM_WORKER__POLL_S", "0.2")
        .env("MLJM_CONFIG", "/dev/null")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("mljm binary runs");
    Worker(child)
}

fn fast_heartbeat(c: &mut mljm::config::Config) {
    c.worker.heartbeat_s = 0.5;
    c.worker.lost_after_s = 3.0;
}

async fn two_worker_processes_and_serve_run_thirty_jobs_exactly_once(b: Backend) {
    let app = spawn_app_with(b, Options { workers: 1, tweak: fast_heartbeat }).await;
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
        let page: Value = app.get("/api/jobs/?phase=COMPLETED&limit=100").await.json().await.unwrap();
        if page["total"] == 30 {
            break;
        }
        let bad: Value = app.get("/api/jobs/?phase=ERROR").await.json().await.unwrap();
        assert_eq!(bad["total"], 0, "{bad}");
        assert!(Instant::now() < deadline, "only {} of 30 jobs completed", page["total"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    for job_id in &ids {
        assert_eq!(counts.get(job_id.as_str()), Some(&1), "job {job_id} ran {:?} times", counts.get(job_id.as_str()));
    }
    assert_eq!(counts.len(), 30);
    // The work was shared: more than one process claimed jobs.
    let workers: std::collections::HashSet<String> = futures_util::future::join_all(ids.iter().map(|i| async {
        use sea_orm::EntityTrait;
        let row = mljm::db::entities::job::Entity::find_by_id(i.parse::<uuid::Uuid>().unwrap()).one(&app.state.db).await.unwrap().unwrap();
        row.worker_id.unwrap().rsplitn(3, ':').nth(1).unwrap().to_string()
    }))
    .await
    .into_iter()
    .collect();
    assert!(workers.len() >= 2, "every job ran in one process: {workers:?}");
}

async fn a_killed_worker_loses_its_job_and_the_next_job_runs(b: Backend) {
    // The server runs no jobs itself here; only the worker process does.
    let app = spawn_app_with(b, Options { workers: 0, tweak: fast_heartbeat }).await;
    let tmp = app.data_dir.parent().unwrap().to_path_buf();
    let mut worker = start_worker(&app, &tmp.join("w.log"));
    let job = app.create_script("doomed", "echo started; sleep 60").await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "PROCESSING", Duration::from_secs(20)).await;
    let t0 = Instant::now();
    worker.0.kill().unwrap(); // SIGKILL
    worker.0.wait().unwrap();
    let lost = app.wait_phase(&id(&job), "ERROR", Duration::from_secs(15)).await;
    assert!(lost["error"].as_str().unwrap().contains("worker lost"), "{lost}");
    eprintln!("worker lost detected {:.1} s after SIGKILL (lost_after_s = 3)", t0.elapsed().as_secs_f64());
    assert!(app.log(&id(&job)).await.contains("worker lost"));
    let next = app.create_script("survivor", "echo fine").await;
    app.run(&id(&next)).await;
    let _worker = start_worker(&app, &tmp.join("w2.log"));
    app.wait_phase(&id(&next), "COMPLETED", Duration::from_secs(20)).await;
    // The lost job stays lost: nothing re-runs or overwrites it.
    assert_eq!(app.job(&id(&job)).await["phase"], "ERROR");
}
