//! Load run (a benchmark, not a timed test): 8 concurrent clients create, list and read jobs
//! against `serve` for 30 s, on SQLite and (with MLJM_BENCH_DATABASE_URL=postgres://…) on
//! PostgreSQL. Reports requests/s, p50/p99 latency per request kind, and errors (expected: 0).
//! Run: `cargo bench --bench load` (MLJM_BENCH_SECONDS and MLJM_BENCH_CLIENTS to change it).

use std::time::{Duration, Instant};

use mljm::{app::Application, config::Config};
use serde_json::{Value, json};

#[derive(Default)]
struct Tally {
    /// (kind, milliseconds) of every request that succeeded.
    ok: Vec<(&'static str, f64)>,
    errors: Vec<String>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn timed(
    tally: &mut Tally,
    kind: &'static str,
    req: reqwest::RequestBuilder,
    expect: u16,
) -> Option<Value> {
    let t = Instant::now();
    match req.send().await {
        Ok(resp) if resp.status().as_u16() == expect => {
            let body = resp.json::<Value>().await.ok();
            tally.ok.push((kind, t.elapsed().as_secs_f64() * 1000.0));
            body
        }
        Ok(resp) => {
            tally.errors.push(format!("{kind}: {}", resp.status()));
            None
        }
        Err(e) => {
            tally.errors.push(format!("{kind}: {e}"));
            None
        }
    }
}

/// One client: create a job, list the newest page, read the job back, until `until`.
async fn client(base: String, n: usize, until: Instant) -> Tally {
    let http = reqwest::Client::new();
    let mut tally = Tally::default();
    let mut i = 0;
    while Instant::now() < until {
        let body = json!({"type": "SCRIPT", "label": format!("load {n}-{i}"), "config": {"command": ["true"]}});
        let created = timed(
            &mut tally,
            "create",
            http.post(format!("{base}/api/jobs/")).json(&body),
            201,
        )
        .await;
        timed(
            &mut tally,
            "list",
            http.get(format!("{base}/api/jobs/?limit=20")),
            200,
        )
        .await;
        if let Some(id) = created.as_ref().and_then(|j| j["job_id"].as_str()) {
            timed(
                &mut tally,
                "read",
                http.get(format!("{base}/api/jobs/{id}")),
                200,
            )
            .await;
        }
        i += 1;
    }
    tally
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(backend: &str, database_url: Option<String>, clients: usize, seconds: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: tmp.path().join("data"),
        ..Config::default()
    };
    if let Some(url) = database_url {
        config.database_url = url;
    }
    config.server.bind = "127.0.0.1:0".into();
    config.worker.concurrency = 0;
    let app = Application::build(config).await.expect("server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|n| tokio::spawn(client(base.clone(), n, until)))
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let tally = t.await.unwrap();
        all.ok.extend(tally.ok);
        all.errors.extend(tally.errors);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let total = all.ok.len() + all.errors.len();
    println!(
        "{backend:<10} {clients} clients, {elapsed:.0} s: {total} requests, {:.0} requests/s, {} errors",
        total as f64 / elapsed,
        all.errors.len()
    );
    for kind in ["create", "list", "read", "all"] {
        let mut ms: Vec<f64> = all
            .ok
            .iter()
            .filter(|(k, _)| kind == "all" || *k == kind)
            .map(|(_, ms)| *ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{:<10} {kind:<6} n={:<7} p50 {:>7.2} ms  p99 {:>7.2} ms",
            "",
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99)
        );
    }
    if let Some(first) = all.errors.first() {
        println!("{:<10} first error: {first}", "");
    }
}

#[tokio::main]
async fn main() {
    let clients = env_or("MLJM_BENCH_CLIENTS", 8);
    let seconds = env_or("MLJM_BENCH_SECONDS", 30);
    run("SQLite", None, clients, seconds).await;
    match std::env::var("MLJM_BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("mljm_load_{}", uuid::Uuid::new_v4().simple());
            let url = mljm::db::create_database(&admin, &name).await.unwrap();
            run("PostgreSQL", Some(url), clients, seconds).await;
            let _ = mljm::db::drop_database(&admin, &name).await;
        }
        _ => println!("PostgreSQL skipped: set MLJM_BENCH_DATABASE_URL=postgres://…"),
    }
}
