//! The defects a newcomer and a battery of hostile cases found (issue 13 §4), one test each:
//! the job folder's `config.json` is what RUN runs, input paths are checked at create and at
//! RUN (missing, or out of the files root through a symlink), bad pools and training sets end
//! in an ERROR naming the file, concurrent DELETEs of a finished job, queries that are not
//! UTF-8 and oversized headers.

use std::time::Duration;

use mljm::science::h5::SpectraWriter;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, id, spawn_app};

crate::on_both_backends!(
    run_takes_the_config_json_in_the_job_folder,
    an_input_path_that_is_missing_or_leads_out_is_422_at_create_and_at_run,
    a_pool_or_training_set_the_cnn_cannot_use_ends_in_error_naming_the_file,
    concurrent_deletes_of_a_finished_job_answer_one_204_and_404s,
);

async fn upload(app: &TestApp, name: &str, parent: &str, bytes: &[u8]) -> reqwest::Response {
    let form = Form::new().part(
        "file",
        Part::bytes(bytes.to_vec()).file_name(name.to_string()),
    );
    app.api
        .post(app.url(&format!("/api/files/{name}/upload")))
        .query(&[("parent_dir_path", parent)])
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn created(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

async fn run_takes_the_config_json_in_the_job_folder(b: Backend) {
    let app = spawn_app(b).await;
    // The original's workflow: a job with only a type and a label, its config.json put into
    // the job folder through the file API, then RUN.
    let job = created(
        app.post_json("/api/jobs/", &json!({"type": "SCRIPT", "label": "placed"}))
            .await,
    )
    .await;
    let job_id = id(&job);
    let folder = job["dir_path"].as_str().unwrap();
    let config = json!({"command": ["sh", "-c", "echo ran the placed config"]});
    let resp = upload(&app, "config.json", folder, config.to_string().as_bytes()).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let queued = app.run(&job_id).await;
    assert_eq!(
        queued["config"], config,
        "RUN answers with the config it runs"
    );
    let done = app
        .wait_phase(&job_id, "COMPLETED", Duration::from_secs(20))
        .await;
    assert_eq!(
        done["config"], config,
        "the job shows the config it ran with"
    );
    assert!(app.log(&job_id).await.contains("ran the placed config"));

    // A config.json edited after create wins over the create body.
    let job = app
        .create_script("edited", "echo from the create body")
        .await;
    let edited = json!({"command": ["sh", "-c", "echo from the edited file"]});
    std::fs::write(app.job_dir(&job).join("config.json"), edited.to_string()).unwrap();
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(20))
        .await;
    let log = app.log(&id(&job)).await;
    assert!(
        log.contains("from the edited file") && !log.contains("from the create body"),
        "{log}"
    );

    // A file that is not JSON, or not a valid config, is a 422 naming it; the job stays PENDING.
    let job = app.create_script("broken", "true").await;
    std::fs::write(app.job_dir(&job).join("config.json"), "{not json").unwrap();
    let run = |id: String| {
        let app = &app;
        async move { refused(app.post(&format!("/api/jobs/{id}/process/RUN")).await).await }
    };
    let (field, message) = run(id(&job)).await;
    assert_eq!(field, "config");
    assert!(
        message.contains("config.json is not valid JSON"),
        "{message}"
    );
    std::fs::write(app.job_dir(&job).join("config.json"), r#"{"command": []}"#).unwrap();
    assert_eq!(run(id(&job)).await.0, "config.command");
    assert_eq!(app.job(&id(&job)).await["phase"], "PENDING");

    // Neither a create config nor a file: the 422 says where to put one.
    let bare = created(
        app.post_json("/api/jobs/", &json!({"type": "SCRIPT", "label": "bare"}))
            .await,
    )
    .await;
    let (_, message) = run(id(&bare)).await;
    assert!(
        message.contains("put config.json into its folder"),
        "{message}"
    );
}

fn write_pool(path: &std::path::Path, fluxes: &[Vec<f64>]) {
    let wave: Vec<f64> = (0..fluxes.first().map_or(8, Vec::len))
        .map(|i| 6500.0 + i as f64)
        .collect();
    let mut w = SpectraWriter::create(path, &wave).unwrap();
    for (i, f) in fluxes.iter().enumerate() {
        w.push(&format!("spec-1-F1_sp01-{i:03}.fits"), f).unwrap();
    }
    w.finish().unwrap();
}

fn al_config(pool: &str) -> Value {
    json!({
        "iteration": 0, "classes": ["other", "single peak", "double peak"],
        "candidate_classes": ["single peak"], "training_data_path": "",
        "training_data_to_add_path": "", "oracle_data_to_add_path": "",
        "pool_data_path": pool, "oracle_batch_size": 4, "perf_est_batch_size": 1,
        "epochs_train": 2, "patience_train": 2, "batch_size_train": 4
    })
}

/// The 422's field and message.
async fn refused(resp: reqwest::Response) -> (String, String) {
    assert_eq!(resp.status(), 422, "{:?}", resp.text().await);
    let body: Value = resp.json().await.unwrap();
    (
        body["field"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

async fn an_input_path_that_is_missing_or_leads_out_is_422_at_create_and_at_run(b: Backend) {
    let app = spawn_app(b).await;
    let files = app.data_dir.join("files");
    // A missing pool: the demo's al_config.json in a server that never wrote /demo/result.h5.
    let (field, message) = refused(
        app.post_job("ACTIVE_ML", &al_config("/demo/result.h5"))
            .await,
    )
    .await;
    assert_eq!(field, "config.pool_data_path");
    assert!(
        message.contains("\"/demo/result.h5\": no such file or directory in the files root"),
        "{message}"
    );
    // Every path key of every type is checked the same way.
    let (field, _) = refused(
        app.post_job(
            "DIM_REDUCTION",
            &json!({"data_path": "/nope.h5", "classes": ["a", "b"]}),
        )
        .await,
    )
    .await;
    assert_eq!(field, "config.data_path");
    let (field, message) = refused(
        app.post_job(
            "DATA_PREPROCESSING",
            &json!({"data_dir_path": "/F9999", "wave_start_point": 3800, "wave_end_point": 9000, "wave_point_count": 100}),
        )
        .await,
    )
    .await;
    assert_eq!(field, "config.data_dir_path");
    assert!(message.contains("spectra root"), "{message}");

    // A symlink inside the files root that leads out of it.
    let outside = app.data_dir.parent().unwrap().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    write_pool(&outside.join("pool.h5"), &vec![vec![1.0; 8]; 4]);
    std::os::unix::fs::symlink(&outside, files.join("link")).unwrap();
    let (field, message) =
        refused(app.post_job("ACTIVE_ML", &al_config("/link/pool.h5")).await).await;
    assert_eq!(field, "config.pool_data_path");
    assert!(message.contains("would leave the files root"), "{message}");

    // Accepted while the pool is there; gone (or swapped for a way out) by RUN: a 422 then too.
    std::fs::create_dir_all(files.join("p")).unwrap();
    write_pool(&files.join("p/pool.h5"), &vec![vec![1.0; 8]; 4]);
    let job = created(app.post_job("ACTIVE_ML", &al_config("/p/pool.h5")).await).await;
    std::fs::remove_file(files.join("p/pool.h5")).unwrap();
    let (field, message) = refused(
        app.post(&format!("/api/jobs/{}/process/RUN", id(&job)))
            .await,
    )
    .await;
    assert_eq!(field, "config.pool_data_path");
    assert!(message.contains("/p/pool.h5"), "{message}");
    std::os::unix::fs::symlink(outside.join("pool.h5"), files.join("p/pool.h5")).unwrap();
    let (field, message) = refused(
        app.post(&format!("/api/jobs/{}/process/RUN", id(&job)))
            .await,
    )
    .await;
    assert_eq!(field, "config.pool_data_path");
    assert!(message.contains("would leave the files root"), "{message}");
    assert_eq!(app.job(&id(&job)).await["phase"], "PENDING");
}

async fn a_pool_or_training_set_the_cnn_cannot_use_ends_in_error_naming_the_file(b: Backend) {
    let app = spawn_app(b).await;
    let files = app.data_dir.join("files");
    std::fs::create_dir_all(files.join("bad")).unwrap();
    let run_to_error = |config: Value| {
        let app = &app;
        async move {
            let job = created(app.post_job("ACTIVE_ML", &config).await).await;
            app.run(&id(&job)).await;
            let job = app
                .wait_for(&id(&job), Duration::from_secs(60), |j| {
                    j["phase"] == "ERROR" || j["phase"] == "COMPLETED"
                })
                .await;
            assert_eq!(job["phase"], "ERROR", "{job}");
            job["error"].as_str().unwrap().to_string()
        }
    };
    // An iteration-0 pool with no spectra.
    write_pool(&files.join("bad/empty.h5"), &[]);
    let error = run_to_error(al_config("/bad/empty.h5")).await;
    assert!(
        error.contains("bad/empty.h5") && error.contains("holds no spectra"),
        "{error}"
    );
    // A pool whose fluxes hold NaN.
    let mut fluxes = vec![vec![0.5; 8]; 6];
    fluxes[3][2] = f64::NAN;
    write_pool(&files.join("bad/nan.h5"), &fluxes);
    let error = run_to_error(al_config("/bad/nan.h5")).await;
    assert!(
        error.contains("bad/nan.h5")
            && error.contains("non-finite")
            && error.contains("spec-1-F1_sp01-003.fits"),
        "{error}"
    );
    // A training set whose labels are not class indexes (3 classes; label 74).
    write_pool(&files.join("bad/pool.h5"), &vec![vec![0.5; 8]; 6]);
    let wave: Vec<f64> = (0..8).map(|i| 6500.0 + i as f64).collect();
    let mut w = SpectraWriter::create(&files.join("bad/training.h5"), &wave).unwrap();
    w.push("spec-1-F1_sp01-100.fits", &[0.5; 8]).unwrap();
    w.push("spec-1-F1_sp01-101.fits", &[0.5; 8]).unwrap();
    w.add("labels", &[0i64, 74]).unwrap();
    w.finish().unwrap();
    std::fs::write(
        files.join("bad/oracle.json"),
        json!({"filenames": ["spec-1-F1_sp01-000.fits"], "labels": [1]}).to_string(),
    )
    .unwrap();
    let mut cfg = al_config("/bad/pool.h5");
    cfg["iteration"] = json!(1);
    cfg["training_data_path"] = json!("/bad/training.h5");
    cfg["training_data_to_add_path"] = json!("/bad/pool.h5");
    cfg["oracle_data_to_add_path"] = json!("/bad/oracle.json");
    let error = run_to_error(cfg).await;
    assert!(
        error.contains("bad/training.h5")
            && error.contains("label 74")
            && error.contains("spec-1-F1_sp01-101.fits"),
        "{error}"
    );
}

async fn concurrent_deletes_of_a_finished_job_answer_one_204_and_404s(b: Backend) {
    let app = spawn_app(b).await;
    for round in 0..3 {
        let job = app.create_script(&format!("done {round}"), "true").await;
        app.run(&id(&job)).await;
        app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(20))
            .await;
        let path = format!("/api/jobs/{}", id(&job));
        let answers = futures_util::future::join_all((0..6).map(|_| app.delete(&path))).await;
        let mut codes: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        codes.sort();
        assert_eq!(codes, [204, 404, 404, 404, 404, 404], "round {round}");
    }
}

/// A query parameter that does not decode to UTF-8 is a 422 naming it, and creates nothing
/// (the checks are the server's, not the database's: SQLite only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_is_not_utf8_is_422_and_creates_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let files = app.data_dir.join("files");
    let before: Vec<_> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for path in [
        "/api/files/directories/x?parent_dir_path=%c0%ae%c0%ae",
        "/api/files/directories/x?parent_dir_path=/%ff",
    ] {
        let resp = app.post(path).await;
        assert_eq!(resp.status(), 422, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["field"], "parent_dir_path", "{body}");
    }
    let form = Form::new().part("file", Part::bytes(b"x".to_vec()).file_name("a.txt"));
    let resp = app
        .api
        .post(app.url("/api/files/a.txt/upload?parent_dir_path=%c0%ae"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let after: Vec<_> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing was created");
    // UTF-8 that is percent-encoded is fine.
    let resp = app
        .post("/api/files/directories/%CE%B1?parent_dir_path=%2F")
        .await;
    assert_eq!(resp.status(), 201);
}

/// Headers are bounded: 431 above 32 KiB in all, served below (SQLite only, as above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_431() {
    let app = spawn_app(Backend::Sqlite).await;
    let get = |bytes: usize| {
        app.api
            .get(app.url("/api/jobs/"))
            .header("x-padding", "a".repeat(bytes))
            .send()
    };
    let resp = get(100_000).await.unwrap();
    assert_eq!(resp.status(), 431);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "headers_too_large", "{body}");
    assert_eq!(get(8_000).await.unwrap().status(), 200);
    // Documented for every operation, as schemathesis requires of each status it sees.
    let doc: Value = app.get_json("/api/openapi.json").await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["responses"].get("431").is_some(),
                "{method} {path} does not document 431"
            );
        }
    }
}
