//! Online inference (a benchmark, not a timed test): `POST /api/models/{id}/predict` against a
//! running `serve` with a model the loop registered. A demo survey is written, preprocessed,
//! labelled from its true classes and trained (iteration 1 with `save_model`), all through the
//! API; then:
//! - latency of one spectrum, by name (JSON) and as an uploaded FITS file (multipart), one
//!   request at a time: p50 / p99;
//! - throughput of batches of 100 spectra by name, from 1 and from 4 concurrent clients:
//!   spectra/s and p50 / p99 per request.
//!
//! Run: `cargo bench --bench online` (MLJM_BENCH_SECONDS per throughput case, default 10).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use mljm::{
    app::Application,
    config::Config,
    science::{Cancel, Progress, demo, lamost},
};
use serde_json::{Value, json};

const SURVEY: usize = 2_000;
const REQUESTS: usize = 300;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder) -> Value {
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// Waits for job `id` to complete and returns it.
    async fn finished(&self, id: &str) -> Value {
        loop {
            let job = self.get(&format!("/api/jobs/{id}")).await;
            match job["phase"].as_str() {
                Some("COMPLETED") => return job,
                Some("ERROR" | "ABORTED") => {
                    let log = self.http.get(format!("{}/api/jobs/{id}/log", self.base));
                    let log = log.send().await.unwrap().text().await.unwrap_or_default();
                    panic!("job {id} did not complete: {log}");
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn job(&self, job_type: &str, config: Value) -> Value {
        let job = self
            .post(
                "/api/jobs/",
                &json!({"type": job_type, "label": "online bench", "config": config}),
            )
            .await;
        let id = job["job_id"].as_str().unwrap().to_string();
        self.post(&format!("/api/jobs/{id}/process/RUN"), &Value::Null)
            .await;
        self.finished(&id).await
    }

    /// Answers every labelling of `job` with the survey's true class.
    async fn label_all(&self, job: &str, truth: &HashMap<String, &str>) {
        let list = self.get(&format!("/api/labellings/?job_id={job}")).await;
        let list = list.as_array().expect("labellings");
        let ids: Vec<&Value> = list.iter().map(|l| &l["labelling_id"]).collect();
        let labels: Vec<Value> = list
            .iter()
            .map(|l| json!({"user_label": truth[l["spectrum_filename"].as_str().unwrap()]}))
            .collect();
        let req = self
            .http
            .patch(format!("{}/api/labellings/batch/", self.base))
            .json(&json!({"labelling_ids": ids, "labellings": labels}));
        self.send(req).await;
    }
}

/// Milliseconds of each of `n` calls of `f`, sorted.
async fn latencies<F, Fut>(n: usize, mut f: F) -> Vec<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

fn report(case: &str, ms: &[f64]) {
    println!(
        "{case:<34} n={:<5} p50 {:>7.2} ms  p99 {:>7.2} ms",
        ms.len(),
        percentile(ms, 0.5),
        percentile(ms, 0.99)
    );
}

/// `clients` concurrent clients posting batches of 100 names for `seconds`.
async fn throughput(api: &Api, url: &str, names: &[String], clients: usize, seconds: u64) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url) = (api.http.clone(), url.to_string());
            let names = names.to_vec();
            tokio::spawn(async move {
                let mut ms = Vec::new();
                let mut i = c * 100;
                while Instant::now() < until {
                    let batch: Vec<&String> = names.iter().cycle().skip(i).take(100).collect();
                    let t = Instant::now();
                    let resp = http
                        .post(&url)
                        .json(&json!({ "spectra": batch }))
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let answers: Vec<Value> = resp.json().await.unwrap();
                    assert_eq!(answers.len(), 100);
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    i = (i + 100 * clients) % names.len();
                }
                ms
            })
        })
        .collect();
    let mut ms = Vec::new();
    for t in tasks {
        ms.extend(t.await.unwrap());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    println!(
        "batches of 100 by name, {clients} client{}   {:>6.0} spectra/s  ({} requests in {elapsed:.1} s; p50 {:.1} ms, p99 {:.1} ms)",
        if clients == 1 { " " } else { "s" },
        ms.len() as f64 * 100.0 / elapsed,
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99)
    );
}

#[tokio::main]
async fn main() {
    let seconds = env_or("MLJM_BENCH_SECONDS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: tmp.path().join("data"),
        ..Config::default()
    };
    config.server.bind = "127.0.0.1:0".into();
    let spectra = config.spectra_root();
    let app = Application::build(config).await.expect("server starts");
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}", app.port()),
    };
    tokio::spawn(app.run_until_stopped());

    eprintln!("a demo survey of {SURVEY} spectra, preprocessed, labelled and trained…");
    let labels = demo::write_survey(&spectra, SURVEY, 3, &Cancel::new(), &Progress::new())
        .expect("the demo survey");
    let truth: HashMap<String, &str> = labels.iter().cloned().collect();
    let prep = api
        .job(
            "DATA_PREPROCESSING",
            json!({"data_dir_path": "/", "wave_start_point": 6519, "wave_end_point": 6732,
                   "wave_point_count": 140}),
        )
        .await;
    let pool = format!("{}/result.h5", prep["dir_path"].as_str().unwrap());
    let it0 = api
        .job(
            "ACTIVE_ML",
            json!({"iteration": 0, "classes": demo::CLASSES,
                   "candidate_classes": ["single peak", "double peak"], "pool_data_path": pool,
                   "oracle_batch_size": 200, "perf_est_batch_size": 10, "save_model": true,
                   "epochs_train": 30, "patience_train": 5, "batch_size_train": 32}),
        )
        .await;
    let it0 = it0["job_id"].as_str().unwrap().to_string();
    api.label_all(&it0, &truth).await;
    let next = api
        .post(&format!("/api/jobs/{it0}/continue"), &Value::Null)
        .await;
    api.finished(next["job_id"].as_str().unwrap()).await;
    let models = api.get("/api/models/").await;
    let model = models["models"][0]["model_id"]
        .as_str()
        .expect("iteration 1 registered its model")
        .to_string();
    let url = format!("{}/api/models/{model}/predict", api.base);
    let names: Vec<String> = labels.iter().map(|(n, _)| n.clone()).collect();

    // The first request loads the model: timed on its own.
    let t = Instant::now();
    api.post(
        &format!("/api/models/{model}/predict"),
        &json!({"spectra": [names[0]]}),
    )
    .await;
    println!(
        "first request (loads the model)    {:>7.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let one = |i: usize| {
        let req = api
            .http
            .post(&url)
            .json(&json!({"spectra": [names[i % names.len()]]}));
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await.unwrap();
        }
    };
    report("one spectrum by name", &latencies(REQUESTS, one).await);
    let files: Vec<Vec<u8>> = names[..REQUESTS.min(names.len())]
        .iter()
        .map(|n| {
            let name = lamost::SpectrumName::parse(n).unwrap();
            std::fs::read(lamost::locate(&spectra, &name).unwrap()).unwrap()
        })
        .collect();
    let upload = |i: usize| {
        let part = reqwest::multipart::Part::bytes(files[i % files.len()].clone())
            .file_name(names[i % files.len()].clone());
        let req = api
            .http
            .post(&url)
            .multipart(reqwest::multipart::Form::new().part("file", part));
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await.unwrap();
        }
    };
    report(
        "one spectrum uploaded (FITS)",
        &latencies(REQUESTS, upload).await,
    );
    throughput(&api, &url, &names, 1, seconds).await;
    throughput(&api, &url, &names, 4, seconds).await;
}
