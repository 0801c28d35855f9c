//! Page render benchmark (not a timed test): every page of the UI with 10,000 jobs (and their
//! directories) in the database, timed from request to last byte over loopback, which bounds
//! the server-side render time from above. Target: under 50 ms per page.
//! Run: `cargo bench --bench pages` (SQLite; set MLJM_BENCH_DATABASE_URL=postgres://… for
//! PostgreSQL; MLJM_BENCH_RUNS=N requests per page, default 30).

use std::time::{Duration, Instant};

use chrono::Utc;
use mljm::{
    app::Application,
    config::Config,
    jobs::model::{Label, job_dir_path},
    queue::{Phase, job},
};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use uuid::Uuid;

const JOBS: usize = 10_000;

/// The JSON answer to `req`.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

async fn wait_completed(http: &reqwest::Client, base: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let job = json_of(http.get(format!("{base}/api/jobs/{id}"))).await;
        match job["phase"].as_str() {
            Some("COMPLETED") => return,
            Some("ERROR" | "ABORTED") => panic!("job failed: {job}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "job {id} never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_and_run(
    http: &reqwest::Client,
    base: &str,
    job_type: &str,
    config: Value,
) -> Value {
    let body = json!({"type": job_type, "label": job_type.to_lowercase(), "config": config});
    let job = json_of(http.post(format!("{base}/api/jobs/")).json(&body)).await;
    let id = job["job_id"].as_str().expect("job created").to_string();
    http.post(format!("{base}/api/jobs/{id}/process/RUN"))
        .send()
        .await
        .unwrap();
    wait_completed(http, base, &id).await;
    job
}

/// 10,000 finished jobs of every type and phase, with their directories, as a year of use.
async fn many_jobs(db: &sea_orm::DatabaseConnection, files_root: &std::path::Path) {
    let types = ["SCRIPT", "DATA_PREPROCESSING", "ACTIVE_ML", "DIM_REDUCTION"];
    let phases = [
        Phase::Completed,
        Phase::Error,
        Phase::Aborted,
        Phase::Pending,
    ];
    let start = Utc::now() - chrono::Duration::days(365);
    let rows: Vec<job::ActiveModel> = (0..JOBS)
        .map(|i| {
            let id = Uuid::new_v4();
            let label = Label::parse(&format!("run {i}")).unwrap();
            let dir_path = job_dir_path(&label, id);
            std::fs::create_dir_all(files_root.join(dir_path.trim_start_matches('/'))).unwrap();
            let created = start + chrono::Duration::minutes(50 * i as i64);
            let phase = phases[i % phases.len()];
            let ended = (phase != Phase::Pending).then(|| created + chrono::Duration::seconds(90));
            job::ActiveModel {
                job_id: Set(id),
                job_type: Set(types[i % types.len()].to_string()),
                label: Set(label.as_str().to_string()),
                description: Set(Some(format!("benchmark job {i}"))),
                phase: Set(phase),
                dir_path: Set(dir_path),
                config: Set(Some(json!({"command": ["true"]}))),
                error: Set((phase == Phase::Error).then(|| "exit status 1".to_string())),
                parent_job_id: Set(None),
                created_at: Set(created),
                started_at: Set(ended.map(|_| created)),
                ended_at: Set(ended),
                execution_duration: Set(ended.map(|_| 90.0)),
                attempt: Set(1),
                worker_id: Set(None),
                heartbeat_ms: Set(None),
                cluster: Set(None),
                external_id: Set(None),
                node: Set(None),
                exit_code: Set(None),
                created_by: Set(None),
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        job::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await
            .unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("MLJM_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_mljm"))
        .args(["demo", "--n", "2000", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let mut config = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    let pg = match std::env::var("MLJM_BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("mljm_bench_{}", Uuid::new_v4().simple());
            config.database_url = mljm::db::create_database(&admin, &name).await.unwrap();
            Some((admin, name))
        }
        _ => None,
    };
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    config.server.bind = "127.0.0.1:0".into();
    let app = Application::build(config.clone())
        .await
        .expect("server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();

    let prep = create_and_run(
        &http,
        &base,
        "DATA_PREPROCESSING",
        json!({"data_dir_path": "/", "wave_start_point": 6519, "wave_end_point": 6732, "wave_point_count": 140}),
    )
    .await;
    let pool = format!("{}/result.h5", prep["dir_path"].as_str().unwrap());
    let al = create_and_run(
        &http,
        &base,
        "ACTIVE_ML",
        json!({"iteration": 0, "classes": ["other", "single peak", "double peak"],
               "candidate_classes": ["single peak", "double peak"], "pool_data_path": pool}),
    )
    .await;
    many_jobs(&db, &config.files_root()).await;
    let labels = std::fs::read_to_string(data.join("files/labels.csv")).unwrap();
    let spectrum = labels
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();

    let pages = [
        ("jobs list, newest 20", "/".to_string()),
        (
            "jobs list, filtered",
            "/?phase=ERROR&type=ACTIVE_ML".to_string(),
        ),
        ("jobs list, last page", format!("/?offset={}", JOBS)),
        (
            "jobs rows (htmx poll)",
            "/?offset=0&phase=&type=".to_string(),
        ),
        (
            "new preprocessing job",
            "/jobs/new?type=DATA_PREPROCESSING".to_string(),
        ),
        (
            "new active-learning job",
            "/jobs/new?type=ACTIVE_ML".to_string(),
        ),
        (
            "preprocessing job (2,000 spectra)",
            format!("/jobs/{}", prep["job_id"].as_str().unwrap()),
        ),
        (
            "active-learning workspace (100)",
            format!("/jobs/{}", al["job_id"].as_str().unwrap()),
        ),
        (
            "job summary (htmx poll)",
            format!("/jobs/{}", al["job_id"].as_str().unwrap()),
        ),
        ("files: root", "/files".to_string()),
        (
            "files: /JOBS (10,002 folders)",
            "/files?path=/JOBS".to_string(),
        ),
        ("spectrum", format!("/spectra?name={spectrum}")),
        ("not found", format!("/jobs/{}", Uuid::new_v4())),
    ];
    println!("{JOBS} jobs on {backend}; {runs} requests per page, loopback, request to last byte");
    println!(
        "{:<36} {:>10} {:>10} {:>10}",
        "page", "median ms", "max ms", "KiB"
    );
    let mut worst: f64 = 0.0;
    for (name, path) in pages {
        let htmx = name.contains("htmx");
        let mut times = Vec::new();
        let mut size = 0;
        for i in 0..runs + 2 {
            let mut req = http.get(format!("{base}{path}"));
            if htmx {
                req = req.header("HX-Request", "true");
            }
            let t = Instant::now();
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.bytes().await.unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            assert!(
                status.is_success() || name == "not found",
                "{path}: {status}"
            );
            size = body.len();
            if i >= 2 {
                times.push(ms); // two warm-up requests
            }
        }
        let max = times.iter().copied().fold(0.0, f64::max);
        let med = median(times);
        worst = worst.max(med);
        println!(
            "{name:<36} {med:>10.2} {max:>10.2} {:>10.1}",
            size as f64 / 1024.0
        );
    }
    if let Some((admin, name)) = pg {
        let _ = mljm::db::drop_database(&admin, &name).await;
    }
    println!(
        "slowest median {worst:.2} ms: {}",
        if worst < 50.0 {
            "every page under 50 ms"
        } else {
            "ABOVE the 50 ms target"
        }
    );
}
