//! The model registry, CLASSIFY and online inference (SPEC §6 CLASSIFY, §12), on a demo survey
//! the test writes: an active-learning chain with `save_model` registers a model per trained
//! iteration; CLASSIFY over the survey from its LAMOST directory and from its preprocessed
//! `result.h5` agree exactly; online inference answers as CLASSIFY did.

use std::{collections::HashMap, path::Path, time::Duration};

use mljm::science::{Cancel, Progress, demo};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, id, spawn_app};

crate::on_both_backends!(a_chain_registers_its_models_and_classify_publishes_the_candidates);

const CLASSES: [&str; 3] = ["other", "single peak", "double peak"];
const CANDIDATES: [&str; 2] = ["single peak", "double peak"];

async fn run_job(app: &TestApp, job_type: &str, label: &str, config: Value) -> Value {
    let job = app.create(job_type, label, config).await;
    app.run(&id(&job)).await;
    let done = app
        .wait_for(&id(&job), Duration::from_secs(300), |j| {
            ["COMPLETED", "ERROR", "ABORTED"].contains(&j["phase"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(
        done["phase"],
        "COMPLETED",
        "{job_type}: {}",
        app.log(&id(&job)).await
    );
    done
}

/// A demo survey of `n` spectra under the app's spectra root, preprocessed by a server job
/// onto the H-alpha grid: the true classes, and the pool's path for job configs.
async fn survey_and_pool(
    app: &TestApp,
    n: usize,
    seed: u64,
) -> (Vec<(String, &'static str)>, String) {
    let spectra = app.data_dir.join("spectra");
    let labels = demo::write_survey(&spectra, n, seed, &Cancel::new(), &Progress::new()).unwrap();
    let prep = run_job(
        app,
        "DATA_PREPROCESSING",
        "survey",
        json!({"data_dir_path": "/", "wave_start_point": 6519, "wave_end_point": 6732, "wave_point_count": 140}),
    )
    .await;
    (
        labels,
        format!("{}/result.h5", prep["dir_path"].as_str().unwrap()),
    )
}

/// Answers every labelling of `job` from the survey's true classes.
async fn label_all(app: &TestApp, job: &str, truth: &HashMap<String, &str>) {
    let list: Vec<Value> = app
        .get_json(&format!("/api/labellings/?job_id={job}"))
        .await;
    assert!(!list.is_empty());
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
}

async fn continue_from(app: &TestApp, job: &str) -> Value {
    let resp = app.post(&format!("/api/jobs/{job}/continue")).await;
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    let next: Value = resp.json().await.unwrap();
    let done = app
        .wait_for(&id(&next), Duration::from_secs(300), |j| {
            ["COMPLETED", "ERROR"].contains(&j["phase"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(done["phase"], "COMPLETED", "{}", app.log(&id(&next)).await);
    done
}

struct Predictions {
    filenames: Vec<String>,
    labels: Vec<i64>,
    probabilities: ndarray::Array2<f64>,
    entropies: Vec<f64>,
}

fn read_predictions(path: &Path) -> Predictions {
    let f = hdf5::File::open(path).unwrap();
    let names: Vec<hdf5::types::VarLenUnicode> =
        f.dataset("filenames").unwrap().read_raw().unwrap();
    Predictions {
        filenames: names.iter().map(|n| n.as_str().to_string()).collect(),
        labels: f.dataset("labels").unwrap().read_raw().unwrap(),
        probabilities: f.dataset("probabilities").unwrap().read_2d().unwrap(),
        entropies: f.dataset("entropies").unwrap().read_raw().unwrap(),
    }
}

/// The catalogue's rows as (column → value) maps.
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "filename",
            "designation",
            "ra",
            "dec",
            "observed_at",
            "class",
            "probability",
            "entropy"
        ]
    );
    r.records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Share of `predicted` (names) whose true class is a candidate class.
fn precision(predicted: &[&str], truth: &HashMap<String, &str>) -> f64 {
    let hits = predicted
        .iter()
        .filter(|n| CANDIDATES.contains(&truth[**n]))
        .count();
    hits as f64 / predicted.len().max(1) as f64
}

async fn a_chain_registers_its_models_and_classify_publishes_the_candidates(b: Backend) {
    let app = spawn_app(b).await;
    let spectra = app.data_dir.join("spectra");
    let (labels, pool) = survey_and_pool(&app, 1500, 7).await;
    let truth: HashMap<String, &str> = labels.iter().cloned().collect();
    let it0 = run_job(
        &app,
        "ACTIVE_ML",
        "chain",
        json!({"iteration": 0, "classes": CLASSES, "candidate_classes": CANDIDATES,
               "pool_data_path": pool, "oracle_batch_size": 60, "perf_est_batch_size": 10,
               "save_model": true, "epochs_train": 60, "patience_train": 8, "batch_size_train": 32}),
    )
    .await;
    assert!(
        app.get_json::<Value>("/api/models/").await["models"]
            .as_array()
            .unwrap()
            .is_empty(),
        "iteration 0 trains nothing"
    );
    label_all(&app, &id(&it0), &truth).await;
    let it1 = continue_from(&app, &id(&it0)).await;
    label_all(&app, &id(&it1), &truth).await;
    let it2 = continue_from(&app, &id(&it1)).await;

    // One model per trained iteration, newest first, with what it was trained for.
    let page: Value = app.get_json("/api/models/").await;
    assert_eq!(page["total"], 2, "{page}");
    let models = page["models"].as_array().unwrap();
    let (m2, m1) = (&models[0], &models[1]);
    assert_eq!(
        (m2["job_id"].as_str(), m2["iteration"].as_i64()),
        (Some(id(&it2).as_str()), Some(2))
    );
    assert_eq!(
        (m1["job_id"].as_str(), m1["iteration"].as_i64()),
        (Some(id(&it1).as_str()), Some(1))
    );
    assert_eq!(m1["training_size"], 60);
    assert_eq!(m2["training_size"], 120);
    for m in [m1, m2] {
        assert_eq!(m["chain_id"], id(&it0).as_str());
        assert_eq!(m["classes"], json!(CLASSES));
        assert_eq!(m["candidate_classes"], json!(CANDIDATES));
        assert_eq!(
            m["wave"],
            json!({"start": 6519.0, "end": 6732.0, "count": 140})
        );
        assert!(m["metrics"]["best_loss"].as_f64().unwrap() >= 0.0, "{m}");
        assert!(m["metrics"]["epochs_run"].as_u64().unwrap() >= 1, "{m}");
    }
    assert_eq!(m2["name"], "chain · iteration 2");
    // Iteration 1 was continued after its sample was labelled: its estimate is known.
    let p1 = m1["perf_estimate"]
        .as_f64()
        .expect("iteration 1's estimate");
    assert!((0.0..=1.0).contains(&p1));
    assert!(m2["perf_estimate"].is_null(), "not continued yet");

    // Name, alias, notes; a taken alias is a 409, an unknown model a 404.
    let m2_id = m2["model_id"].as_str().unwrap().to_string();
    let m1_id = m1["model_id"].as_str().unwrap().to_string();
    let patch = |model: String, body: Value| {
        let req = app
            .api
            .patch(app.url(&format!("/api/models/{model}")))
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let resp = patch(
        m2_id.clone(),
        json!({"alias": "best", "name": "Hα it2", "notes": "first survey run"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(
        (changed["alias"].as_str(), changed["name"].as_str()),
        (Some("best"), Some("Hα it2"))
    );
    let resp = patch(m1_id.clone(), json!({"alias": "best"})).await;
    assert_eq!(resp.status(), 409);
    assert!(
        resp.text().await.unwrap().contains(&m2_id),
        "names the holder"
    );
    assert_eq!(
        patch(m1_id.clone(), json!({"name": ""})).await.status(),
        422
    );
    assert_eq!(
        patch(m1_id.clone(), json!({"notes": "a\u{0}b"}))
            .await
            .status(),
        422
    );
    assert_eq!(
        patch(m1_id.clone(), json!({"alias": "no spaces"}))
            .await
            .status(),
        422
    );
    let best: Value = app.get_json("/api/models/best").await;
    assert_eq!(best["model_id"], m2_id.as_str());
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/api/models/{unknown}")).await.status(),
        404
    );
    assert_eq!(
        patch(unknown.to_string(), json!({"name": "x"}))
            .await
            .status(),
        404
    );
    let weights = app.get("/api/models/best/weights").await;
    assert_eq!(weights.status(), 200);
    assert_eq!(
        weights.bytes().await.unwrap().as_ref(),
        std::fs::read(app.job_dir(&it2).join("model.safetensors")).unwrap()
    );

    // A model that is not registered is named at create.
    let resp = app
        .post_job(
            "CLASSIFY",
            &json!({"model_id": "nope", "data_dir_path": "/"}),
        )
        .await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "config.model_id", "{body}");

    // CLASSIFY from the LAMOST directory and from the preprocessed pool: the same answers.
    let from_dir = run_job(
        &app,
        "CLASSIFY",
        "classify dir",
        json!({"model_id": "best", "data_dir_path": "/", "min_probability": 0.5}),
    )
    .await;
    let from_pool = run_job(
        &app,
        "CLASSIFY",
        "classify pool",
        json!({"model_id": "best", "pool_data_path": pool, "min_probability": 0.5}),
    )
    .await;
    let (d, p) = (app.job_dir(&from_dir), app.job_dir(&from_pool));
    let (pd, pp) = (
        read_predictions(&d.join("predictions.h5")),
        read_predictions(&p.join("predictions.h5")),
    );
    assert_eq!(pd.filenames.len(), 1500);
    assert_eq!(pd.filenames, pp.filenames);
    assert_eq!(pd.labels, pp.labels);
    assert_eq!(pd.probabilities, pp.probabilities, "exactly the same");
    assert_eq!(pd.entropies, pp.entropies);
    assert_eq!(pd.probabilities.ncols(), 3);
    let csv_dir = std::fs::read(d.join("candidates.csv")).unwrap();
    assert_eq!(
        csv_dir,
        std::fs::read(p.join("candidates.csv")).unwrap(),
        "the same catalogue, header columns included"
    );
    for name in ["candidates.vot", "skipped.json"] {
        assert!(d.join(name).is_file() && p.join(name).is_file(), "{name}");
    }
    assert!(
        !std::fs::read_dir(&d).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "no partial file stays"
    );

    // The catalogue: every spectrum predicted as a candidate class with p ≥ 0.5, with its
    // FITS header values, and as precise as the model is on spectra it never saw.
    let rows = read_csv(&d.join("candidates.csv"));
    let expected: usize = (0..pd.filenames.len())
        .filter(|&i| {
            let l = pd.labels[i] as usize;
            CANDIDATES.contains(&CLASSES[l]) && pd.probabilities[[i, l]] >= 0.5
        })
        .count();
    assert_eq!(rows.len(), expected);
    assert!(rows.len() > 30, "{} candidates", rows.len());
    for r in &rows {
        assert!(r["designation"].starts_with("LAMOST J"), "{r:?}");
        let ra: f64 = r["ra"].parse().unwrap();
        assert!((0.0..360.0).contains(&ra), "{r:?}");
        assert!(!r["observed_at"].is_empty());
        assert!(CANDIDATES.contains(&r["class"].as_str()));
        assert!(r["probability"].parse::<f64>().unwrap() >= 0.5);
    }
    let catalogue: Vec<&str> = rows.iter().map(|r| r["filename"].as_str()).collect();
    let precision_catalogue = precision(&catalogue, &truth);
    // The test split: the spectra the model was not trained on, asked online.
    let trained = mljm::science::h5::read_spectra(&app.job_dir(&it2).join("training_data.h5"))
        .unwrap()
        .filenames;
    let held_out: Vec<&str> = labels
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !trained.iter().any(|t| t == n))
        .collect();
    let mut test_candidates = Vec::new();
    for chunk in held_out.chunks(500) {
        let resp = app
            .post_json("/api/models/best/predict", &json!({"spectra": chunk}))
            .await;
        assert_eq!(resp.status(), 200);
        let answers: Vec<Value> = resp.json().await.unwrap();
        assert_eq!(answers.len(), chunk.len());
        for a in answers {
            let label = a["label"].as_str().unwrap();
            let k = CLASSES.iter().position(|c| *c == label).unwrap();
            if CANDIDATES.contains(&label) && a["probabilities"][k].as_f64().unwrap() >= 0.5 {
                test_candidates.push(a["filename"].as_str().unwrap().to_string());
            }
        }
    }
    let test: Vec<&str> = test_candidates.iter().map(String::as_str).collect();
    let precision_test = precision(&test, &truth);
    assert!(
        (precision_catalogue - precision_test).abs() <= 0.05,
        "catalogue precision {precision_catalogue:.3}, test split {precision_test:.3} ({} of {} held out)",
        test.len(),
        held_out.len()
    );

    // Online inference: the same probabilities as CLASSIFY, by name and as uploaded files.
    let row_of = |name: &str| pd.filenames.iter().position(|n| n == name).unwrap();
    let names: Vec<&str> = pd.filenames.iter().take(5).map(String::as_str).collect();
    let by_name: Vec<Value> = app
        .post_json("/api/models/best/predict", &json!({"spectra": names}))
        .await
        .json()
        .await
        .unwrap();
    let survey = mljm::science::lamost::SpectrumName::parse(names[0]).unwrap();
    let file = mljm::science::lamost::locate(&spectra, &survey).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(&file).unwrap()).file_name("upload.fits"),
    );
    let uploaded: Vec<Value> = app
        .api
        .post(app.url(&format!("/api/models/{m2_id}/predict")))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for a in by_name.iter().chain(&uploaded) {
        let i = row_of(a["filename"].as_str().unwrap());
        assert_eq!(a["label"], CLASSES[pd.labels[i] as usize]);
        for k in 0..3 {
            let got = a["probabilities"][k].as_f64().unwrap();
            assert!((got - pd.probabilities[[i, k]]).abs() < 1e-6, "{a}");
        }
        assert!((a["entropy"].as_f64().unwrap() - pd.entropies[i]).abs() < 1e-6);
    }
    assert_eq!(uploaded.len(), 1);
    // Concurrent requests, batched together, each get their own answer.
    let asks = pd.filenames.iter().take(24).map(|n| {
        let body = json!({"spectra": [n]});
        let req = app
            .api
            .post(app.url("/api/models/best/predict"))
            .json(&body);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<Vec<Value>>()
                .await
                .unwrap()
        }
    });
    for (n, answer) in pd
        .filenames
        .iter()
        .zip(futures_util::future::join_all(asks).await)
    {
        assert_eq!(answer[0]["filename"], n.as_str());
    }
    // Refusals: unknown model, a file that is not a spectrum (its reason), unknown names.
    let resp = app
        .post_json(
            &format!("/api/models/{unknown}/predict"),
            &json!({"spectra": names}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let bad = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"not a FITS file at all".to_vec()).file_name("bad.fits"),
    );
    let resp = app
        .api
        .post(app.url("/api/models/best/predict"))
        .multipart(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("bad.fits") && message.contains("FITS"),
        "{message}"
    );
    let resp = app
        .post_json(
            "/api/models/best/predict",
            &json!({"spectra": ["spec-55859-F9999_sp01-001.fits"]}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = app
        .post_json(
            "/api/models/best/predict",
            &json!({"spectra": ["../etc/passwd"]}),
        )
        .await;
    assert_eq!(resp.status(), 422);
    let resp = app
        .api
        .post(app.url("/api/models/best/predict"))
        .body("x")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    // The Models page compares them.
    let page = app.get("/models").await.text().await.unwrap();
    assert!(
        page.contains("Hα it2")
            && page.contains("chain · iteration 1")
            && page.contains("first survey run")
    );

    // Deleting the job of a registered model is asked for by name.
    let resp = app.delete(&format!("/api/jobs/{}", id(&it2))).await;
    assert_eq!(resp.status(), 409);
    assert!(resp.text().await.unwrap().contains(&m2_id));
    let resp = app
        .delete(&format!("/api/jobs/{}?with_models=true", id(&it2)))
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(app.get(&format!("/api/models/{m2_id}")).await.status(), 404);
    assert_eq!(app.get_json::<Value>("/api/models/").await["total"], 1);
    // Unregistering keeps the weights in the job's folder.
    assert_eq!(
        app.delete(&format!("/api/models/{m1_id}")).await.status(),
        204
    );
    assert!(app.job_dir(&it1).join("model.safetensors").is_file());
    assert_eq!(
        app.delete(&format!("/api/models/{m1_id}")).await.status(),
        404
    );
}

/// `mljm run TYPE` on `config` (written to `dir/NAME.json`) into `out`, which must succeed.
fn mljm_run(dir: &Path, job_type: &str, config: Value, out: &Path) {
    let cfg = dir.join(format!("{}.json", job_type.to_lowercase()));
    std::fs::write(&cfg, config.to_string()).unwrap();
    let o = crate::helpers::mljm([
        "run".as_ref(),
        job_type.as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        o.status.success(),
        "mljm run {job_type}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Without a server: preprocess a demo survey, train one iteration on its first spectra's
/// true classes with `save_model`, and classify the survey's directory with `model_path`.
/// Returns the CLASSIFY output folder.
fn classify_without_a_server(root: &Path) -> std::path::PathBuf {
    let survey = root.join("spectra");
    let labels = demo::write_survey(&survey, 300, 11, &Cancel::new(), &Progress::new()).unwrap();
    let prep = root.join("prep");
    mljm_run(
        root,
        "DATA_PREPROCESSING",
        json!({"data_dir_path": survey, "wave_start_point": 6519, "wave_end_point": 6732, "wave_point_count": 140}),
        &prep,
    );
    let pool = prep.join("result.h5");
    let (names, classes): (Vec<&str>, Vec<usize>) = labels
        .iter()
        .take(60)
        .map(|(n, c)| (n.as_str(), CLASSES.iter().position(|k| k == c).unwrap()))
        .unzip();
    std::fs::write(
        root.join("oracle.json"),
        json!({"filenames": names, "labels": classes}).to_string(),
    )
    .unwrap();
    let it1 = root.join("it1");
    mljm_run(
        root,
        "ACTIVE_ML",
        json!({"iteration": 1, "classes": CLASSES, "candidate_classes": CANDIDATES,
               "pool_data_path": pool, "training_data_to_add_path": pool,
               "oracle_data_to_add_path": root.join("oracle.json"), "save_model": true,
               "epochs_train": 30, "patience_train": 5, "batch_size_train": 32}),
        &it1,
    );
    let out = root.join("classified");
    mljm_run(
        root,
        "CLASSIFY",
        json!({"model_path": it1, "data_dir_path": survey, "min_probability": 0.0}),
        &out,
    );
    out
}

/// The catalogue opens in astropy as a VOTable with the columns, units and types TOPCAT and
/// Aladin need (and one row per CSV row); h5py reads predictions.h5 with its dtypes.
#[test]
#[cfg_attr(
    not(mljm_h5py_tests),
    ignore = "set MLJM_TEST_PYTHON to a python with h5py and astropy (as .ci/run does) to run it"
)]
fn the_catalogue_opens_in_astropy_with_its_columns_units_and_types() {
    let root = tempfile::tempdir().unwrap();
    let out = classify_without_a_server(root.path());
    let rows = read_csv(&out.join("candidates.csv"));
    assert!(!rows.is_empty());
    let python = std::env::var("MLJM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys, h5py, numpy as np
from astropy.io.votable import parse
vot = parse(sys.argv[1], verify="exception")
t = vot.get_first_table()
fields = {f.name: {"datatype": f.datatype, "unit": str(f.unit) if f.unit is not None else None, "ucd": f.ucd} for f in t.fields}
a = t.to_table()
with h5py.File(sys.argv[2], "r") as p:
    dtypes = {k: str(p[k].dtype) for k in ("labels", "probabilities", "entropies")}
    shape = p["probabilities"].shape
    first = p["filenames"][0]
print(json.dumps({"fields": fields, "rows": len(a), "ra0": float(a["ra"][0]), "file0": str(a["filename"][0]),
                  "dtypes": dtypes, "shape": shape, "h5name": first.decode() if isinstance(first, bytes) else first}))
"#;
    let o = mljm::child::no_inherit(&mut std::process::Command::new(&python))
        .args(["-c", script])
        .arg(out.join("candidates.vot"))
        .arg(out.join("predictions.h5"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let got: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["rows"], rows.len());
    let f = &got["fields"];
    let names: Vec<&str> = [
        "filename",
        "designation",
        "ra",
        "dec",
        "observed_at",
        "class",
        "probability",
        "entropy",
    ]
    .to_vec();
    assert_eq!(f.as_object().unwrap().len(), names.len(), "{f}");
    for n in names {
        assert!(f.get(n).is_some(), "{n}: {f}");
    }
    assert_eq!(
        f["ra"],
        json!({"datatype": "double", "unit": "deg", "ucd": "pos.eq.ra;meta.main"})
    );
    assert_eq!(f["dec"]["unit"], "deg");
    assert_eq!(f["probability"]["datatype"], "double");
    assert_eq!(f["filename"]["datatype"], "unicodeChar");
    assert_eq!(got["file0"], rows[0]["filename"].as_str());
    assert!((got["ra0"].as_f64().unwrap() - rows[0]["ra"].parse::<f64>().unwrap()).abs() < 1e-9);
    assert_eq!(
        got["dtypes"],
        json!({"labels": "int64", "probabilities": "float64", "entropies": "float64"})
    );
    assert_eq!(got["shape"], json!([300, 3]));
}

static MLFLOW_URI: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A child started in a process group of its own, killed with the whole group when dropped.
struct KillGroup(std::process::Child);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test started; no memory is involved.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// A real `mlflow server` on a loopback port: each iteration is a run under the chain's parent
/// run, with its params, loss per epoch and the model as an artifact, checked through MLflow's
/// REST API; with the server stopped, the next iteration still completes and says why it was
/// not tracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mljm_mlflow_tests),
    ignore = "set MLJM_TEST_MLFLOW to an mlflow executable (pip install mlflow; .ci/run does) to run it"
)]
async fn mlflow_tracks_each_iteration_and_a_stopped_server_fails_no_job() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mlflow = std::env::var("MLJM_TEST_MLFLOW").unwrap_or_else(|_| "mlflow".into());
    let log = std::fs::File::create(tmp.path().join("mlflow.log")).unwrap();
    use std::os::unix::process::CommandExt;
    let server = mljm::child::no_inherit(&mut std::process::Command::new(&mlflow))
        .process_group(0)
        .args(["server", "--host", "127.0.0.1", "--workers", "1", "--port"])
        .arg(port.to_string())
        .arg("--backend-store-uri")
        .arg(format!(
            "sqlite:///{}",
            tmp.path().join("mlflow.db").display()
        ))
        .arg("--artifacts-destination")
        .arg(tmp.path().join("artifacts"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("mlflow server starts");
    // The server and its workers go together, whatever ends the test.
    let server = KillGroup(server);
    let uri = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while http.get(format!("{uri}/health")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mlflow server did not start: {}",
            std::fs::read_to_string(tmp.path().join("mlflow.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    MLFLOW_URI.set(uri.clone()).unwrap();
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        crate::helpers::Options {
            tweak: |c| c.tracking.mlflow_uri = MLFLOW_URI.get().unwrap().clone(),
            ..Default::default()
        },
    )
    .await;
    let (labels, pool) = survey_and_pool(&app, 200, 3).await;
    let truth: HashMap<String, &str> = labels.iter().cloned().collect();
    let it0 = run_job(
        &app,
        "ACTIVE_ML",
        "tracked",
        json!({"iteration": 0, "classes": CLASSES, "candidate_classes": CANDIDATES,
               "pool_data_path": pool, "oracle_batch_size": 30, "perf_est_batch_size": 5,
               "save_model": true, "epochs_train": 6, "patience_train": 50, "batch_size_train": 16}),
    )
    .await;
    label_all(&app, &id(&it0), &truth).await;
    let it1 = continue_from(&app, &id(&it0)).await;
    let log1 = app.log(&id(&it1)).await;
    assert!(log1.contains("MLflow: View run"), "{log1}");

    let api = |path: &str| format!("{uri}/api/2.0/mlflow/{path}");
    let exp: Value = http
        .get(api("experiments/get-by-name?experiment_name=mljm"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exp_id = exp["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let runs: Value = http
        .post(api("runs/search"))
        .json(&json!({"experiment_ids": [exp_id], "max_results": 100}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        3,
        "the chain's parent run and one per iteration: {runs:?}"
    );
    let tag = |r: &Value, key: &str| -> Option<String> {
        r["data"]["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str().map(String::from))
    };
    let run_of = |job: &Value| {
        runs.iter()
            .find(|r| tag(r, "mljm.job_id").as_deref() == Some(id(job).as_str()))
            .unwrap_or_else(|| panic!("no run for {}", id(job)))
            .clone()
    };
    let (r0, r1) = (run_of(&it0), run_of(&it1));
    let parent = runs
        .iter()
        .find(|r| tag(r, "mljm.chain_id").is_some())
        .expect("the chain's parent run");
    let parent_id = parent["info"]["run_id"].as_str().unwrap();
    for r in [&r0, &r1] {
        assert_eq!(tag(r, "mlflow.parentRunId").as_deref(), Some(parent_id));
        assert_eq!(r["info"]["status"], "FINISHED");
    }
    let run1 = r1["info"]["run_id"].as_str().unwrap().to_string();
    let params = r1["data"]["params"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["key"] == "oracle_batch_size" && p["value"] == "30"),
        "{params:?}"
    );
    let history: Value = http
        .get(api(&format!(
            "metrics/get-history?run_id={run1}&metric_key=loss"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["metrics"].as_array().unwrap().len(), 6, "{history}");
    let listed: Value = http
        .get(api(&format!("artifacts/list?run_id={run1}&path=model")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let weights = std::fs::metadata(app.job_dir(&it1).join("model.safetensors"))
        .unwrap()
        .len();
    assert!(
        listed["files"].as_array().unwrap().iter().any(|f| {
            f["path"] == "model/model.safetensors" && f["file_size"].as_u64() == Some(weights)
        }),
        "{listed}"
    );

    // The tracking server goes away: the next iteration completes, and its log says so.
    drop(server);
    label_all(&app, &id(&it1), &truth).await;
    let it2 = continue_from(&app, &id(&it1)).await;
    let log2 = app.log(&id(&it2)).await;
    assert!(
        log2.contains("MLflow tracking at") && log2.contains("failed"),
        "{log2}"
    );
    // The estimate of iteration 1 was logged to its run before the server went.
    let _ = it2;
}
