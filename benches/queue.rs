//! Queue benchmark (not a timed test): dispatch latency RUN → PROCESSING, and throughput of
//! trivial SCRIPT jobs, on SQLite and (when MLJM_TEST_DATABASE_URL is set) PostgreSQL.
//! Run: `cargo bench --bench queue` (add `-- --jobs 300` for a longer throughput run).

use std::time::{Duration, Instant};

use mljm::{app::Application, config::Config};
use serde_json::{Value, json};

async fn server(
    url: Option<String>,
    dir: &std::path::Path,
    workers: usize,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    if let Some(u) = url {
        config.database_url = u;
    }
    config.server.bind = "127.0.0.1:0".into();
    config.worker.concurrency = workers;
    let app = Application::build(config).await.expect("server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    (base, tokio::spawn(app.run_until_stopped()))
}

async fn create_run(http: &reqwest::Client, base: &str, label: &str) -> (String, Instant) {
    let body = json!({"type": "SCRIPT", "label": label, "config": {"command": ["true"]}});
    let job: Value = http
        .post(format!("{base}/api/jobs/"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["job_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let r = http
        .post(format!("{base}/api/jobs/{id}/process/RUN"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    (id, t)
}

async fn phase(http: &reqwest::Client, base: &str, id: &str) -> String {
    let job: Value = http
        .get(format!("{base}/api/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    job["phase"].as_str().unwrap().to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn bench(name: &str, url: Option<String>, jobs: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (base, _server) = server(url, tmp.path(), 4).await;
    let http = reqwest::Client::new();
    // Latency: one job at a time, RUN response → the row reads PROCESSING or later.
    let mut lat = Vec::new();
    for i in 0..30 {
        let (id, t) = create_run(&http, &base, &format!("lat {i}")).await;
        loop {
            let p = phase(&http, &base, &id).await;
            if p != "QUEUED" {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        while phase(&http, &base, &id).await == "PROCESSING" {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Throughput: queue `jobs` trivial jobs, time until all have ended.
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..jobs {
        ids.push(create_run(&http, &base, &format!("tp {i}")).await.0);
    }
    let queued_s = t0.elapsed().as_secs_f64();
    loop {
        let page: Value = http
            .get(format!("{base}/api/jobs/?phase=COMPLETED&limit=1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["total"].as_u64().unwrap() as usize >= jobs + 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_s = t0.elapsed().as_secs_f64();
    println!(
        "{name:<10} dispatch RUN->PROCESSING median {:.1} ms (p90 {:.1} ms, n=30) | {jobs} trivial SCRIPT jobs, 4 workers: {:.1} jobs/s end to end (create+RUN took {:.2} s)",
        median(lat.clone()),
        {
            let mut l = lat.clone();
            l.sort_by(|a, b| a.partial_cmp(b).unwrap());
            l[l.len() * 9 / 10]
        },
        jobs as f64 / total_s,
        queued_s
    );
}

fn main() {
    let jobs = std::env::args()
        .skip_while(|a| a != "--jobs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        bench("sqlite", None, jobs).await;
        match std::env::var("MLJM_TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => {
                let name = format!("mljm_bench_{}", std::process::id());
                let url = mljm::db::create_database(&admin, &name)
                    .await
                    .expect("PostgreSQL");
                bench("postgres", Some(url), jobs).await;
                let _ = mljm::db::drop_database(&admin, &name).await;
            }
            _ => println!("postgres   skipped: set MLJM_TEST_DATABASE_URL"),
        }
    });
}
