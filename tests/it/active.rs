//! ACTIVE_ML, labellings and the chain: the original's configs and h5py files, the error paths
//! of SPEC §6, every status of the labellings table, continue → next iteration, abort.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use mljm::science::h5::{SpectraWriter, read_spectra};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, h5_type, id, mljm, spawn_app, spawn_app_with};

crate::on_both_backends!(
    the_error_paths_of_spec_6_end_in_error_with_their_message,
    every_status_of_the_labellings_table,
    a_labelled_iteration_continues_into_the_next,
    abort_during_training_stops_within_a_second_and_frees_the_gpu_slot,
    abort_during_prediction_stops_within_a_second,
    a_survey_of_candidates_is_paged_and_each_flux_read_on_demand,
);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `mljm run TYPE --config CONFIG --out OUT --device cpu`: (exit status, stderr).
fn mljm_run(job_type: &str, config: &Path, out: &Path) -> (i32, String) {
    let (config, out) = (config.to_str().unwrap(), out.to_str().unwrap());
    let o = mljm([
        "run", job_type, "--device", "cpu", "--config", config, "--out", out,
    ]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn shape(f: &hdf5::File, name: &str) -> Vec<usize> {
    f.dataset(name).unwrap().shape()
}

const F64: TypeDescriptor = TypeDescriptor::Float(FloatSize::U8);
const I64: TypeDescriptor = TypeDescriptor::Integer(IntSize::U8);

#[test]
fn the_originals_iteration_0_config_runs_unchanged() {
    let out = tempfile::tempdir().unwrap();
    let config = fixtures().join("active_ml/al_config_original.json");
    let (code, err) = mljm_run("ACTIVE_ML", &config, out.path());
    assert_eq!(code, 0, "{err}");
    let f = hdf5::File::open(out.path().join("result.h5")).unwrap();
    assert_eq!(h5_type(&f, "filenames"), TypeDescriptor::VarLenUnicode);
    assert_eq!(
        (h5_type(&f, "fluxes"), shape(&f, "fluxes")),
        (F64, vec![26, 600])
    );
    assert_eq!((h5_type(&f, "wave"), shape(&f, "wave")), (F64, vec![600]));
    // oracle_batch_size 100 on a pool of 26: the whole pool, in its order.
    assert_eq!(
        (h5_type(&f, "oracle_indexes"), shape(&f, "oracle_indexes")),
        (I64, vec![26])
    );
    let prep: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("prep_spectra.json")).unwrap())
            .unwrap();
    assert_eq!(prep["wave"].as_array().unwrap().len(), 600);
    assert_eq!(prep["spectra"].as_object().unwrap().len(), 26);
    let next: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("new_config.json")).unwrap())
            .unwrap();
    assert_eq!(next["iteration"], 1);
    assert_eq!(
        next["min_delta_train"], 1e-3,
        "10e-4 is read as the number it is"
    );
    assert!(
        next["pool_data_path"]
            .as_str()
            .unwrap()
            .ends_with("result.h5")
    );
    assert!(
        next["oracle_data_to_add_path"]
            .as_str()
            .unwrap()
            .ends_with("oracle_data.json")
    );
    let labellings: Vec<Value> =
        serde_json::from_slice(&std::fs::read(out.path().join("labellings.json")).unwrap())
            .unwrap();
    assert_eq!(labellings.len(), 26);
    assert!(
        labellings
            .iter()
            .all(|l| l["spectrum_set"] == "ORACLE" && l["sequence_iteration"] == 0)
    );
}

#[test]
fn a_later_iteration_consumes_the_h5py_training_set_and_oracle_answers() {
    let out = tempfile::tempdir().unwrap();
    let fx = fixtures();
    let config = json!({
        "iteration": 1, "classes": ["other", "single peak", "double peak"], "candidate_classes": ["single peak", "double peak"],
        "training_data_path": fx.join("active_ml/training_data.h5"),
        "training_data_to_add_path": fx.join("preprocessing/expected_result.h5"),
        "oracle_data_to_add_path": fx.join("active_ml/oracle_data.json"),
        "pool_data_path": fx.join("preprocessing/expected_result.h5"),
        "oracle_batch_size": 3, "perf_est_batch_size": 2, "show_candidates": true, "save_model": true,
        "epochs_train": 2, "patience_train": 5, "batch_size_train": 8
    });
    let cfg = out.path().join("al.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let dir = out.path().join("it1");
    let (code, err) = mljm_run("ACTIVE_ML", &cfg, &dir);
    assert_eq!(code, 0, "{err}");
    let training = read_spectra(&fx.join("active_ml/training_data.h5")).unwrap();
    let oracle: Value =
        serde_json::from_slice(&std::fs::read(fx.join("active_ml/oracle_data.json")).unwrap())
            .unwrap();
    let n_train = training.len() + oracle["filenames"].as_array().unwrap().len();
    let t = hdf5::File::open(dir.join("training_data.h5")).unwrap();
    assert_eq!(
        (h5_type(&t, "labels"), shape(&t, "labels")),
        (I64, vec![n_train])
    );
    assert_eq!(shape(&t, "fluxes"), vec![n_train, 600]);
    let f = hdf5::File::open(dir.join("result.h5")).unwrap();
    let pool = 26 - n_train;
    assert_eq!(
        shape(&f, "fluxes"),
        vec![pool, 600],
        "the pool without the training spectra"
    );
    assert_eq!(
        (h5_type(&f, "labels"), shape(&f, "labels")),
        (I64, vec![pool])
    );
    assert_eq!(
        (h5_type(&f, "entropies"), shape(&f, "entropies")),
        (F64, vec![pool])
    );
    assert_eq!(shape(&f, "oracle_indexes"), vec![3]);
    assert_eq!(h5_type(&f, "perf_est_indexes"), I64);
    assert_eq!(h5_type(&f, "candidate_indexes"), I64);
    let dim: Value =
        serde_json::from_slice(&std::fs::read(dir.join("dim_reduc.json")).unwrap()).unwrap();
    assert_eq!(dim["x"].as_array().unwrap().len(), n_train);
    assert_eq!(dim["classes"].as_array().unwrap().len(), 3);
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        metrics["loss_per_epoch"].as_array().unwrap().len(),
        metrics["epochs_run"].as_u64().unwrap() as usize
    );
    assert!(dir.join("model.safetensors").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("perf_est_list.json")).unwrap(),
        "[]"
    );
    let next: Value =
        serde_json::from_slice(&std::fs::read(dir.join("new_config.json")).unwrap()).unwrap();
    assert_eq!(next["iteration"], 2);
    assert!(
        next["training_data_path"]
            .as_str()
            .unwrap()
            .ends_with("training_data.h5")
    );
    assert!(
        next["perf_est_list_path"]
            .as_str()
            .unwrap()
            .ends_with("perf_est_list.json")
    );
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(
        log.contains("epoch 1 loss") && log.contains("trained 2 epochs"),
        "{log}"
    );
}

/// Copies the golden preprocessing result into the app's files root as `/pool/result.h5`.
fn pool_into(app: &TestApp) {
    let dir = app.data_dir.join("files/pool");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("preprocessing/expected_result.h5"),
        dir.join("result.h5"),
    )
    .unwrap();
    let fx = app.data_dir.join("files/fx");
    std::fs::create_dir_all(&fx).unwrap();
    for f in ["training_data.h5", "oracle_data.json"] {
        std::fs::copy(fixtures().join("active_ml").join(f), fx.join(f)).unwrap();
    }
}

fn al_config(iteration: u64) -> Value {
    json!({
        "iteration": iteration, "classes": ["other", "single peak", "double peak"], "candidate_classes": ["single peak", "double peak"],
        "training_data_path": "", "training_data_to_add_path": "", "oracle_data_to_add_path": "",
        "pool_data_path": "/pool/result.h5", "oracle_batch_size": 8, "perf_est_batch_size": 2,
        "epochs_train": 2, "patience_train": 5, "batch_size_train": 8
    })
}

async fn create_al(app: &TestApp, config: &Value) -> Value {
    let resp = app.post_job("ACTIVE_ML", config).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

async fn run_to(app: &TestApp, config: &Value, phase: &str) -> Value {
    let job = create_al(app, config).await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), phase, Duration::from_secs(120))
        .await
}

async fn the_error_paths_of_spec_6_end_in_error_with_their_message(b: Backend) {
    let app = spawn_app(b).await;
    pool_into(&app);
    // A pool on another wave grid than the training data.
    let other = app.data_dir.join("files/pool/other-grid.h5");
    let wave: Vec<f64> = (0..500).map(|i| 4000.0 + i as f64).collect();
    let mut w = SpectraWriter::create(&other, &wave).unwrap();
    w.push("spec-1-F1_sp01-001.fits", &[0.0; 500]).unwrap();
    w.finish().unwrap();
    let mut cfg = al_config(1);
    cfg["training_data_path"] = json!("/fx/training_data.h5");
    cfg["training_data_to_add_path"] = json!("/pool/result.h5");
    cfg["oracle_data_to_add_path"] = json!("/fx/oracle_data.json");
    let mut waves = cfg.clone();
    waves["pool_data_path"] = json!("/pool/other-grid.h5");
    let job = run_to(&app, &waves, "ERROR").await;
    assert!(
        job["error"].as_str().unwrap().contains("different waves"),
        "{job}"
    );
    // Every pool spectrum is already labelled.
    let mut exhausted = cfg.clone();
    exhausted["pool_data_path"] = json!("/fx/training_data.h5");
    exhausted["training_data_to_add_path"] = json!("/pool/result.h5");
    let job = run_to(&app, &exhausted, "ERROR").await;
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("All data from pool is in training data"),
        "{job}"
    );
    // From iteration 2 on, the list of earlier estimates is needed.
    let mut second = cfg.clone();
    second["iteration"] = json!(2);
    let job = run_to(&app, &second, "ERROR").await;
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("perf_est_list_path is missing"),
        "{job}"
    );
    // A path out of the files root is refused at create.
    let mut escape = cfg.clone();
    escape["training_data_path"] = json!("/../spectra/x.h5");
    let resp = app.post_job("ACTIVE_ML", &escape).await;
    assert_eq!(resp.status(), 422);
    let mut bad = cfg.clone();
    bad["candidate_classes"] = json!(["emission"]);
    let resp = app.post_job("ACTIVE_ML", &bad).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["field"],
        "config.candidate_classes"
    );
}

async fn every_status_of_the_labellings_table(b: Backend) {
    let app = spawn_app(b).await;
    let job = app.create_script("owner", "true").await;
    let jid = id(&job);
    let new = |name: &str, set: &str| json!({"job_id": jid, "spectrum_filename": name, "spectrum_set": set, "sequence_iteration": 1});
    let resp = app
        .post_json("/api/labellings/", &new("a.fits", "CANDIDATE"))
        .await;
    assert_eq!(resp.status(), 201);
    let one: Value = resp.json().await.unwrap();
    let lid = one["labelling_id"].as_str().unwrap().to_string();
    assert_eq!(one["user_label"], Value::Null);
    let ghost =
        json!({"job_id": uuid::Uuid::new_v4(), "spectrum_filename": "x", "spectrum_set": "ORACLE"});
    assert_eq!(
        app.post_json("/api/labellings/", &ghost).await.status(),
        404
    );
    assert_eq!(
        app.post_json("/api/labellings/", &new("a.fits", "SOMETHING"))
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post_json("/api/labellings/", &json!({"job_id": jid}))
            .await
            .status(),
        422
    );

    assert_eq!(
        app.get(&format!("/api/labellings/{lid}")).await.status(),
        200
    );
    assert_eq!(
        app.get(&format!("/api/labellings/{}", uuid::Uuid::new_v4()))
            .await
            .status(),
        404
    );
    assert_eq!(app.get("/api/labellings/not-a-uuid").await.status(), 422);
    let patch = |id: String, body: Value| {
        let app = &app;
        async move {
            app.api
                .patch(app.url(&format!("/api/labellings/{id}")))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = patch(
        lid.clone(),
        json!({"user_label": "single peak", "user_comment": "clear\nemission"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["user_label"],
        "single peak"
    );
    assert_eq!(
        patch(uuid::Uuid::new_v4().to_string(), json!({"user_label": "x"}))
            .await
            .status(),
        404
    );
    assert_eq!(
        patch(lid.clone(), json!({"user_label": "bad\u{7}label"}))
            .await
            .status(),
        422
    );

    let batch: Vec<Value> = (0..5)
        .map(|i| new(&format!("o{i}.fits"), "ORACLE"))
        .chain([new("p.fits", "PERFORMANCE_ESTIMATION")])
        .collect();
    assert_eq!(
        app.post_json("/api/labellings/batch/", &json!(batch))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.post_json("/api/labellings/batch/", &json!([ghost]))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.post_json("/api/labellings/batch/", &json!([new("x", "NOPE")]))
            .await
            .status(),
        422
    );

    let list: Vec<Value> = app
        .get_json(&format!("/api/labellings/?job_id={jid}"))
        .await;
    let sets: Vec<&str> = list
        .iter()
        .map(|l| l["spectrum_set"].as_str().unwrap())
        .collect();
    assert_eq!(
        sets,
        [
            "ORACLE",
            "ORACLE",
            "ORACLE",
            "ORACLE",
            "ORACLE",
            "PERFORMANCE_ESTIMATION",
            "CANDIDATE"
        ]
    );
    let names: Vec<&str> = list[..5]
        .iter()
        .map(|l| l["spectrum_filename"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["o0.fits", "o1.fits", "o2.fits", "o3.fits", "o4.fits"],
        "in the order given"
    );
    assert_eq!(app.get("/api/labellings/").await.status(), 422);
    assert_eq!(app.get("/api/labellings/?job_id=nope").await.status(), 422);

    let ids: Vec<Value> = list[..2]
        .iter()
        .map(|l| l["labelling_id"].clone())
        .collect();
    let batch_patch = |body: Value| {
        let app = &app;
        async move {
            app.api
                .patch(app.url("/api/labellings/batch/"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let ok = json!({"labelling_ids": ids, "labellings": [{"user_label": "other"}, {"user_label": "double peak"}]});
    assert_eq!(batch_patch(ok).await.status(), 204);
    assert_eq!(
        batch_patch(json!({"labelling_ids": ids, "labellings": [{"user_label": "other"}]}))
            .await
            .status(),
        400
    );
    let unknown = json!({"labelling_ids": [ids[0], uuid::Uuid::new_v4()], "labellings": [{"user_label": "x"}, {"user_label": "y"}]});
    assert_eq!(batch_patch(unknown).await.status(), 404);
    let first: Value = app
        .get_json(&format!("/api/labellings/{}", ids[0].as_str().unwrap()))
        .await;
    assert_eq!(
        first["user_label"], "other",
        "a failed batch changes nothing"
    );
    assert_eq!(
        batch_patch(json!({"labelling_ids": ids, "labellings": [{"user_label": "a\u{0}"}, {}]}))
            .await
            .status(),
        422
    );

    assert_eq!(app.delete(&format!("/api/jobs/{jid}")).await.status(), 204);
    assert_eq!(
        app.get(&format!("/api/labellings/{lid}")).await.status(),
        404,
        "cascade on job delete"
    );
}

fn true_labels() -> HashMap<String, String> {
    let text =
        std::fs::read_to_string(fixtures().join("preprocessing/spectra/labels.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(f, l)| (f.to_string(), l.to_string()))
        .collect()
}

async fn a_labelled_iteration_continues_into_the_next(b: Backend) {
    let app = spawn_app(b).await;
    pool_into(&app);
    let first = run_to(&app, &al_config(0), "COMPLETED").await;
    let jid = id(&first);
    let list: Vec<Value> = app
        .get_json(&format!("/api/labellings/?job_id={jid}"))
        .await;
    assert_eq!(list.len(), 8);
    let resp = app.post(&format!("/api/jobs/{jid}/continue")).await;
    assert_eq!(resp.status(), 409);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("8 of 8 oracle spectra are still unlabelled")
    );

    let truth = true_labels();
    let ids: Vec<Value> = list.iter().map(|l| l["labelling_id"].clone()).collect();
    let labels: Vec<Value> = list
        .iter()
        .map(|l| json!({"user_label": truth[l["spectrum_filename"].as_str().unwrap()]}))
        .collect();
    let resp = app
        .api
        .patch(app.url("/api/labellings/batch/"))
        .json(&json!({"labelling_ids": ids, "labellings": labels}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let resp = app.post(&format!("/api/jobs/{jid}/continue")).await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let next: Value = resp.json().await.unwrap();
    assert_eq!(next["parent_job_id"], jid.as_str());
    assert_eq!(next["config"]["iteration"], 1);
    assert_eq!(
        app.post(&format!("/api/jobs/{jid}/continue"))
            .await
            .status(),
        409,
        "once only"
    );
    let next = app
        .wait_phase(&id(&next), "COMPLETED", Duration::from_secs(120))
        .await;
    let trained = read_spectra(&app.job_dir(&next).join("training_data.h5")).unwrap();
    let mut got = trained.filenames.clone();
    let mut want: Vec<String> = list
        .iter()
        .map(|l| l["spectrum_filename"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "the training set is exactly the labelled spectra"
    );
    let classes = ["other", "single peak", "double peak"];
    for (name, label) in trained.filenames.iter().zip(trained.labels.unwrap()) {
        assert_eq!(classes[label as usize], truth[name]);
    }
    let oracle: Value = serde_json::from_slice(
        &std::fs::read(app.job_dir(&first).join("oracle_data.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(oracle["filenames"].as_array().unwrap().len(), 8);
    let chain: Vec<Value> = app
        .get_json(&format!("/api/jobs/{}/chain", id(&next)))
        .await;
    assert_eq!(chain.len(), 2);
    assert_eq!(
        (
            chain[0]["job_id"].as_str(),
            chain[0]["labelled"].as_u64(),
            chain[0]["iteration"].as_u64()
        ),
        (Some(jid.as_str()), Some(8), Some(0))
    );
    assert_eq!(chain[1]["iteration"], 1);
    assert_eq!(chain[1]["oracle_size"], 8);
    // What the iteration trained on, per class, in the chain and on its workspace.
    let mut counts = [0u64; 3];
    for name in &trained.filenames {
        counts[classes.iter().position(|c| *c == truth[name]).unwrap()] += 1;
    }
    assert_eq!(chain[1]["training_per_class"], json!(counts));
    assert_eq!(
        chain[1]["class_estimates"][0]["class"], "single peak",
        "{}",
        chain[1]
    );
    let page = app
        .get(&format!("/jobs/{}", id(&next)))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Labelled set:"), "{page}");
    let trained_text = counts.map(|c| c.to_string()).join(" · ");
    assert!(
        page.contains(&trained_text),
        "{trained_text} in the chain table"
    );

    // Iteration 1 → 2 without answers (allow_partial): iteration 2 gets the list of earlier
    // estimates that it needs, and a repeated continue is refused.
    let second = id(&next);
    assert_eq!(
        app.post(&format!("/api/jobs/{second}/continue"))
            .await
            .status(),
        409
    );
    let resp = app
        .post(&format!("/api/jobs/{second}/continue?allow_partial=true"))
        .await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let third: Value = resp.json().await.unwrap();
    assert_eq!(third["config"]["iteration"], 2);
    assert!(
        third["config"]["perf_est_list_path"]
            .as_str()
            .unwrap()
            .ends_with("perf_est_list.json")
    );
    app.wait_phase(&id(&third), "COMPLETED", Duration::from_secs(120))
        .await;
    let chain: Vec<Value> = app.get_json(&format!("/api/jobs/{jid}/chain")).await;
    assert_eq!(chain.len(), 3);
    // The chain is deleted from its end: an iteration the next one reads from stays.
    let resp = app.delete(&format!("/api/jobs/{jid}")).await;
    assert_eq!(resp.status(), 409);
    assert!(
        resp.text().await.unwrap().contains(&second),
        "names the next iteration"
    );
    for job in [id(&third), second, jid] {
        assert_eq!(
            app.delete(&format!("/api/jobs/{job}")).await.status(),
            204,
            "{job}"
        );
    }
}

async fn abort_during_training_stops_within_a_second_and_frees_the_gpu_slot(b: Backend) {
    let app = spawn_app_with(
        b,
        crate::helpers::Options {
            workers: 2,
            tweak: |c| c.gpu.slots = 1,
            ..Default::default()
        },
    )
    .await;
    pool_into(&app);
    let mut long = al_config(1);
    long["training_data_path"] = json!("/fx/training_data.h5");
    long["training_data_to_add_path"] = json!("/pool/result.h5");
    long["oracle_data_to_add_path"] = json!("/fx/oracle_data.json");
    long["epochs_train"] = json!(100_000);
    long["patience_train"] = json!(100_000);
    let job = create_al(&app, &long).await;
    let jid = id(&job);
    app.run(&jid).await;
    let waiting = create_al(&app, &al_config(0)).await;
    app.run(&id(&waiting)).await;
    app.wait_log(&jid, "epoch 1 loss", Duration::from_secs(60))
        .await;
    assert_eq!(
        app.job(&id(&waiting)).await["phase"],
        "QUEUED",
        "the second GPU job waits for the slot"
    );
    // Training stops within a second of the ABORT.
    abort_within_a_second(&app, &jid, "training").await;
    app.wait_phase(&id(&waiting), "COMPLETED", Duration::from_secs(60))
        .await;
}

/// ABORTs job `jid` and waits at most a second for it to stop (`what` names the stage).
async fn abort_within_a_second(app: &TestApp, jid: &str, what: &str) {
    let status = app
        .post(&format!("/api/jobs/{jid}/process/ABORT"))
        .await
        .status();
    assert_eq!(status, 202);
    let aborted = Instant::now();
    app.wait_log(jid, "result discarded", Duration::from_secs(1))
        .await;
    eprintln!("{what} stopped {:?} after ABORT", aborted.elapsed());
}

/// Writes a demo pool of `n` 140-point spectra as `/big/pool.h5` with the true classes of its
/// first 30 as oracle answers, and returns an iteration-1 config on it.
fn demo_pool(app: &TestApp, n: usize) -> Value {
    use mljm::science::{Cancel, Progress, demo};
    let dir = app.data_dir.join("files/big");
    std::fs::create_dir_all(&dir).unwrap();
    let mut answers: Vec<(String, usize)> = Vec::new();
    demo::write_pool(
        &dir.join("pool.h5"),
        n,
        140,
        1,
        &Cancel::new(),
        &Progress::new(),
        |name, class| {
            if answers.len() < 30 {
                answers.push((
                    name.to_string(),
                    demo::CLASSES.iter().position(|c| *c == class).unwrap(),
                ));
            }
            Ok(())
        },
    )
    .unwrap();
    let (names, labels): (Vec<String>, Vec<usize>) = answers.into_iter().unzip();
    std::fs::write(
        dir.join("oracle.json"),
        json!({"filenames": names, "labels": labels}).to_string(),
    )
    .unwrap();
    let mut cfg = al_config(1);
    cfg["pool_data_path"] = json!("/big/pool.h5");
    cfg["training_data_to_add_path"] = json!("/big/pool.h5");
    cfg["oracle_data_to_add_path"] = json!("/big/oracle.json");
    cfg["epochs_train"] = json!(1);
    cfg
}

/// A 20,000-spectrum demo pool at 140 points takes far longer to predict here than the test
/// waits: the ABORT right after training lands during prediction.
async fn abort_during_prediction_stops_within_a_second(b: Backend) {
    let app = spawn_app(b).await;
    let cfg = demo_pool(&app, 20_000);
    let job = create_al(&app, &cfg).await;
    let jid = id(&job);
    app.run(&jid).await;
    app.wait_log(&jid, "trained 1 epochs", Duration::from_secs(60))
        .await;
    assert_eq!(
        app.job(&jid).await["phase"],
        "PROCESSING",
        "still predicting"
    );
    abort_within_a_second(&app, &jid, "prediction").await;
    assert_eq!(app.job(&jid).await["phase"], "ABORTED");
    let log = app.log(&jid).await;
    assert!(
        !log.contains("predicted 19,970"),
        "prediction finished before the ABORT: {log}"
    );
}

#[test]
fn dim_reduction_plots_the_h5py_training_set() {
    let out = tempfile::tempdir().unwrap();
    let cfg = out.path().join("dim.json");
    let config = json!({"data_path": fixtures().join("active_ml/training_data.h5"), "classes": ["other", "single peak", "double peak"]});
    std::fs::write(&cfg, config.to_string()).unwrap();
    let dir = out.path().join("dim");
    let (code, err) = mljm_run("DIM_REDUCTION", &cfg, &dir);
    assert_eq!(code, 0, "{err}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join("dim_reduc.json")).unwrap()).unwrap();
    assert_eq!(doc["x"].as_array().unwrap().len(), 12);
    assert_eq!(doc["labels"].as_array().unwrap().len(), 12);
    let png = std::fs::read(dir.join("dim_reduc.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5000);
}

/// The loop learns: on `mljm demo` data, two iterations answered from the label file give a
/// macro-F1 well above chance (a short run for CI; the full run is in the issue notes).
#[test]
fn simulate_al_learns_the_demo_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let run = |args: &[&str]| {
        let o = mljm(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let d = data.to_str().unwrap();
    run(&["demo", "--n", "500", "--seed", "3", "--data-dir", d]);
    let pool = format!("{d}/files/demo");
    run(&[
        "run",
        "DATA_PREPROCESSING",
        "--data-dir",
        d,
        "--config",
        &format!("{d}/files/prep_config.json"),
        "--out",
        &pool,
    ]);
    let out = tmp.path().join("sim");
    let table = run(&[
        "simulate-al",
        "--pool",
        &format!("{pool}/result.h5"),
        "--labels",
        &format!("{d}/files/labels.csv"),
        "--classes",
        "other,single peak,double peak",
        "--iterations",
        "2",
        "--oracle-batch",
        "40",
        "--epochs",
        "40",
        "--patience",
        "10",
        "--device",
        "cpu",
        "--seed",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(out.join("learning_curve.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "strategy,seed,iteration,labelled,accuracy,macro_f1,recall_other,precision_other,\
         recall_single_peak,precision_single_peak,recall_double_peak,precision_double_peak,\
         train_s,predict_s"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[2].starts_with("entropy,1,2,80,"), "{csv}");
    let last: Vec<f64> = lines[2]
        .split(',')
        .skip(2)
        .map(|v| v.parse().unwrap())
        .collect();
    eprintln!("{table}");
    assert!(
        last[2] >= 0.75 && last[3] >= 0.6,
        "accuracy {} macro-F1 {} after 80 labels:\n{csv}",
        last[2],
        last[3]
    );
    // Per-class recall and precision are the held-out split's, between 0 and 1.
    assert!(last[4..10].iter().all(|v| (0.0..=1.0).contains(v)), "{csv}");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(summary.contains("recall single peak"), "{summary}");
    assert!(
        summary.starts_with(
            "# features scaled, balance smote, validation_split 0, augment none, patience 10,"
        ),
        "the summary names what it compared: {summary}"
    );
    assert_eq!(
        summary.lines().count(),
        4,
        "what was compared, a header and two budgets: {summary}"
    );
}

/// Writes `dir/oracle_data.json`: the iteration's oracle spectra, labelled `i % 3`.
fn answer_oracle(dir: &Path) {
    let proposed: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("labellings.json")).unwrap()).unwrap();
    let names: Vec<&Value> = proposed
        .iter()
        .filter(|l| l["spectrum_set"] == "ORACLE")
        .map(|l| &l["spectrum_filename"])
        .collect();
    let labels: Vec<usize> = (0..names.len()).map(|i| i % 3).collect();
    std::fs::write(
        dir.join("oracle_data.json"),
        json!({"filenames": names, "labels": labels}).to_string(),
    )
    .unwrap();
}

/// Iterations 0 → 1 → 2 with `mljm run` under `root`, the first on the golden preprocessing
/// result copied to `root/pool/result.h5`, each later one reading the previous `result.h5`
/// as its pool; returns their folders.
fn run_chain(root: &Path) -> Vec<PathBuf> {
    let mut config = original_config_on_a_pool(root);
    config["oracle_batch_size"] = json!(4);
    let mut dirs = Vec::new();
    for k in 0..3 {
        let dir = root.join(format!("it{k}"));
        let cfg = root.join(format!("al{k}.json"));
        config["epochs_train"] = json!(2);
        std::fs::write(&cfg, config.to_string()).unwrap();
        let (code, err) = mljm_run("ACTIVE_ML", &cfg, &dir);
        assert_eq!(code, 0, "iteration {k}: {err}");
        answer_oracle(&dir);
        config =
            serde_json::from_slice(&std::fs::read(dir.join("new_config.json")).unwrap()).unwrap();
        dirs.push(dir);
    }
    dirs
}

/// The original's iteration-0 config with its pool the golden preprocessing result, copied
/// to `root/pool/result.h5`.
fn original_config_on_a_pool(root: &Path) -> Value {
    let pool = root.join("pool/result.h5");
    std::fs::create_dir_all(pool.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join("preprocessing/expected_result.h5"), &pool).unwrap();
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("active_ml/al_config_original.json")).unwrap(),
    )
    .unwrap();
    config["pool_data_path"] = json!(pool);
    config
}

/// The loop's choices in an ACTIVE_ML config (issue 18): a balanced query, class weights,
/// a validation split and augmentation run, are recorded, and carry into the next
/// iteration's config; an out-of-range choice is refused naming its field.
#[test]
fn an_iteration_runs_with_the_loops_choices_and_passes_them_on() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut config = original_config_on_a_pool(root);
    config["oracle_batch_size"] = json!(9);
    config["epochs_train"] = json!(3);
    config["query_strategy"] = json!("balanced");
    config["balance"] = json!("class_weights");
    config["validation_split"] = json!(0.3);
    config["augment"] = json!({"copies": 1, "max_kms": 20});
    config["features"] = json!("lines");
    let (cfg, it0, it1) = (root.join("al0.json"), root.join("it0"), root.join("it1"));
    std::fs::write(&cfg, config.to_string()).unwrap();
    let (code, err) = mljm_run("ACTIVE_ML", &cfg, &it0);
    assert_eq!(code, 0, "{err}");
    answer_oracle(&it0);
    let next: Value =
        serde_json::from_slice(&std::fs::read(it0.join("new_config.json")).unwrap()).unwrap();
    for key in ["query_strategy", "balance", "validation_split", "features"] {
        assert_eq!(
            next[key], config[key],
            "{key} carries into the next iteration"
        );
    }
    // With its defaults written out.
    assert_eq!(
        next["augment"],
        json!({"copies": 1, "max_kms": 20.0, "noise": true})
    );
    let cfg1 = root.join("al1.json");
    std::fs::write(&cfg1, next.to_string()).unwrap();
    let (code, err) = mljm_run("ACTIVE_ML", &cfg1, &it1);
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(it1.join("log.txt")).unwrap_or(err);
    for said in [
        "held out for early stopping",
        "augmented copies",
        "class weights",
    ] {
        assert!(log.contains(said), "the log says {said:?}: {log}");
    }
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(it1.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["query_strategy"], "balanced");
    assert_eq!(metrics["features"], "lines");
    let per_class: Vec<u64> =
        serde_json::from_value(metrics["training_per_class"].clone()).unwrap();
    assert_eq!(
        per_class,
        vec![3, 3, 3],
        "answer_oracle labels i % 3: {metrics}"
    );
    assert_eq!(
        metrics["validation_loss_per_epoch"]
            .as_array()
            .unwrap()
            .len() as u64,
        metrics["epochs_run"].as_u64().unwrap()
    );
    // The oracle batch is still the configured size.
    let proposed: Vec<Value> =
        serde_json::from_slice(&std::fs::read(it1.join("labellings.json")).unwrap()).unwrap();
    assert_eq!(
        proposed
            .iter()
            .filter(|l| l["spectrum_set"] == "ORACLE")
            .count(),
        9
    );

    for (key, value, field) in [
        ("validation_split", json!(0.7), "validation_split"),
        ("augment", json!({"max_kms": 5000}), "augment.max_kms"),
        ("query_strategy", json!("random"), "query_strategy"),
    ] {
        let mut bad = config.clone();
        bad[key] = value;
        let cfg = root.join("bad.json");
        std::fs::write(&cfg, bad.to_string()).unwrap();
        let (code, err) = mljm_run("ACTIVE_ML", &cfg, &root.join("bad"));
        assert_ne!(code, 0, "{key} refused");
        assert!(err.contains(field), "{key}: the error names {field}: {err}");
    }
}

/// Every result of a chain links to its pool rather than copying it, and reads back (through
/// the chain of links) exactly the pool's spectra, by name; moving the folder keeps it so.
#[test]
fn a_three_iteration_chain_reads_the_pools_spectra_through_its_links() {
    let root = tempfile::tempdir().unwrap();
    let pool = read_spectra(&fixtures().join("preprocessing/expected_result.h5")).unwrap();
    // Pool and iterations in one folder, which then moves, as a data directory would.
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let dirs = run_chain(&data);
    let moved = root.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    for (k, dir) in dirs.iter().enumerate() {
        let result = moved.join(dir.file_name().unwrap()).join("result.h5");
        let set = read_spectra(&result).unwrap();
        // 4 more labelled spectra each iteration after the first.
        assert_eq!(set.len(), 26 - 4 * k, "iteration {k}");
        for (i, name) in set.filenames.iter().enumerate() {
            let j = pool.filenames.iter().position(|n| n == name).unwrap();
            assert_eq!(set.row(i), pool.row(j), "iteration {k}, {name}");
        }
        let f = hdf5::File::open(&result).unwrap();
        assert!(
            f.dataset("fluxes").unwrap().layout() == hdf5::dataset::Layout::Virtual,
            "iteration {k} links its fluxes"
        );
        // The iteration's own data: tens of bytes a spectrum, not the 4.8 kB of its fluxes.
        let size = std::fs::metadata(&result).unwrap().len();
        assert!(size < 20_000, "iteration {k}: result.h5 is {size} bytes");
    }
}

/// h5py opens the last iteration's `result.h5` and reads, through two links, the pool's
/// own fluxes for the names it lists, and the iteration's labels and entropies.
#[test]
#[cfg_attr(
    not(mljm_h5py_tests),
    ignore = "set MLJM_TEST_PYTHON to a python with h5py (as .ci/run does) to run it"
)]
fn h5py_reads_a_chained_result_as_the_pools_spectra() {
    let root = tempfile::tempdir().unwrap();
    let dirs = run_chain(root.path());
    let python = std::env::var("MLJM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as r, h5py.File(sys.argv[2], "r") as p:
    name = lambda n: n.decode() if isinstance(n, bytes) else n
    names = [name(n) for n in r["filenames"][:]]
    pool = {name(n): i for i, n in enumerate(p["filenames"][:])}
    rows = [pool[n] for n in names]
    assert r["fluxes"].shape == (len(names), p["fluxes"].shape[1]), r["fluxes"].shape
    assert np.array_equal(r["fluxes"][:], p["fluxes"][:][rows])
    assert len(r["labels"]) == len(names) and r["entropies"].dtype == np.float64
    print("h5py read", len(names), "spectra")
"#;
    let out = mljm::child::no_inherit(&mut std::process::Command::new(&python))
        .args(["-c", script])
        .arg(dirs[2].join("result.h5"))
        .arg(fixtures().join("preprocessing/expected_result.h5"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("h5py read 18 spectra"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `show_candidates` on a pool whose candidates run past a page, the workspace shows one
/// page of them at a time from the table, the API pages the set, and a spectrum's
/// preprocessed flux is read from the iteration's result.h5 when asked for: the pool's row.
async fn a_survey_of_candidates_is_paged_and_each_flux_read_on_demand(b: Backend) {
    let app = spawn_app(b).await;
    let mut cfg = demo_pool(&app, 2_000);
    cfg["show_candidates"] = json!(true);
    let job = run_to(&app, &cfg, "COMPLETED").await;
    let jid = id(&job);
    let of_set =
        |set: &str, rest: &str| format!("/api/labellings/?job_id={jid}&spectrum_set={set}{rest}");
    let all: Vec<Value> = app.get_json(&of_set("CANDIDATE", "")).await;
    assert!(all.len() > 200, "{} candidates", all.len());
    assert!(
        all.iter()
            .all(|l| l["entropy"].as_f64().is_some_and(|e| e >= 0.0)),
        "every candidate has its entropy"
    );
    let page: Vec<Value> = app
        .get_json(&of_set("CANDIDATE", "&offset=100&limit=50"))
        .await;
    assert_eq!(page, all[100..150].to_vec());
    let oracle: Vec<Value> = app.get_json(&of_set("ORACLE", "")).await;
    assert_eq!(oracle.len(), 8);
    let whole: Vec<Value> = app
        .get_json(&format!("/api/labellings/?job_id={jid}"))
        .await;
    assert_eq!(whole.len(), all.len() + oracle.len() + 2);
    for (query, field) in [
        ("&offset=5", "offset"),
        ("&limit=0&spectrum_set=CANDIDATE", "limit"),
        ("&spectrum_set=ALL", "spectrum_set"),
    ] {
        let resp = app
            .get(&format!("/api/labellings/?job_id={jid}{query}"))
            .await;
        assert_eq!(resp.status(), 422, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["field"], field, "{body}");
    }

    // The job page holds the first 100 candidates and a pager; the next page comes alone.
    let rows = |html: &str| html.matches("data-set=\"CANDIDATE\" data-comment").count();
    let html = app.get(&format!("/jobs/{jid}")).await.text().await.unwrap();
    assert_eq!(rows(&html), 100);
    assert!(
        html.contains(&format!("1–100 of {}", all.len())),
        "pager text"
    );
    assert!(html.contains(all[99]["spectrum_filename"].as_str().unwrap()));
    assert!(!html.contains(&format!(
        ">{}<",
        all[100]["spectrum_filename"].as_str().unwrap()
    )));
    let next = app
        .get(&format!("/jobs/{jid}/workspace/candidates?offset=100"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&next), 100);
    assert!(next.contains(&format!("101–200 of {}", all.len())));
    assert!(next.contains(&format!(
        ">{}<",
        all[100]["spectrum_filename"].as_str().unwrap()
    )));

    // The preprocessed flux of a candidate and of an oracle spectrum: the pool's rows.
    let pool = hdf5::File::open(app.data_dir.join("files/big/pool.h5")).unwrap();
    let names: Vec<String> = pool
        .dataset("filenames")
        .unwrap()
        .read_1d::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|n| n.as_str().to_string())
        .collect();
    let fluxes = pool.dataset("fluxes").unwrap().read_2d::<f64>().unwrap();
    for l in [&all[150], &oracle[3]] {
        let got: Value = app
            .get_json(&format!(
                "/api/labellings/{}/prepared",
                l["labelling_id"].as_str().unwrap()
            ))
            .await;
        let name = l["spectrum_filename"].as_str().unwrap();
        assert_eq!(got["spectrum_filename"], name);
        let row = names.iter().position(|n| n == name).unwrap();
        let flux: Vec<f64> = serde_json::from_value(got["flux"].clone()).unwrap();
        // The JSON parser here reads the last digit to within one ulp.
        let want = fluxes.row(row);
        assert_eq!(flux.len(), want.len());
        assert!(
            flux.iter()
                .zip(want)
                .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0)),
            "{name}: {flux:?} vs {want:?}"
        );
        assert_eq!(got["wave"].as_array().unwrap().len(), 140);
    }
    let missing = app
        .get(&format!(
            "/api/labellings/{}/prepared",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(app.get("/api/labellings/nope/prepared").await.status(), 422);
}
