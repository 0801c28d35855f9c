//! The REST conversation of SPEC §2, on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, id, process_alive, spawn_app, wait_file};

crate::on_both_backends!(
    a_script_job_goes_from_pending_to_completed_with_its_log,
    every_404_409_and_422_of_the_jobs_table,
    abort_of_a_running_sleep_ends_it_within_two_seconds,
    jobs_are_listed_newest_first_with_pagination_and_filters,
    a_failing_script_ends_in_error_with_its_exit_status,
    a_timed_out_script_ends_in_error,
    config_validation_names_the_field,
    submit_creates_and_runs_an_uploaded_entrypoint,
    unknown_config_keys_are_named_in_one_warning_line,
    an_external_runner_can_end_a_processing_job,
    deleting_a_job_deletes_its_labellings,
    the_new_job_form_creates_runs_and_copies_a_job,
    run_links_in_the_log_are_listed_and_linked,
);

async fn a_script_job_goes_from_pending_to_completed_with_its_log(b: Backend) {
    let app = spawn_app(b).await;
    // The script waits for a file from the test, so PROCESSING is observable.
    let job = app
        .create_script(
            "Hα run #1",
            "echo hello out; echo hello err >&2; while [ ! -f go ]; do sleep 0.02; done; echo done",
        )
        .await;
    assert_eq!(job["phase"], "PENDING");
    assert_eq!(job["type"], "SCRIPT");
    let dir_path = job["dir_path"].as_str().unwrap();
    assert_eq!(dir_path, format!("/JOBS/job_h__run__1_{}", id(&job)));
    let dir = app.job_dir(&job);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["command"][0], "sh");

    let queued = app.run(&id(&job)).await;
    assert_eq!(queued["phase"], "QUEUED");
    let running = app
        .wait_phase(&id(&job), "PROCESSING", Duration::from_secs(10))
        .await;
    assert!(running["started_at"].is_string());
    std::fs::write(dir.join("go"), "").unwrap();
    let done = app
        .wait_phase(&id(&job), "COMPLETED", Duration::from_secs(10))
        .await;
    assert!(done["ended_at"].is_string());
    assert!(done["execution_duration"].as_f64().unwrap() >= 0.0);
    assert!(done["error"].is_null());

    let log = app.log(&id(&job)).await;
    assert!(
        log.contains("hello out") && log.contains("hello err") && log.contains("done"),
        "{log}"
    );
    let tail = app
        .get(&format!("/api/jobs/{}/log?offset=6", id(&job)))
        .await;
    let next: usize = tail.headers()["x-next-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(next, log.len());
    assert_eq!(tail.text().await.unwrap(), log[6..]);
}

async fn every_404_409_and_422_of_the_jobs_table(b: Backend) {
    let app = spawn_app(b).await;
    let missing = uuid::Uuid::new_v4();
    let times = json!({"started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:00Z"});
    // 404 for a job that does not exist, on every route.
    assert_eq!(app.get(&format!("/api/jobs/{missing}")).await.status(), 404);
    assert_eq!(
        app.api
            .patch(app.url(&format!("/api/jobs/{missing}")))
            .json(&json!({"label": "x"}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.delete(&format!("/api/jobs/{missing}")).await.status(),
        404
    );
    assert_eq!(
        app.post(&format!("/api/jobs/{missing}/process/RUN"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.post(&format!("/api/jobs/{missing}/process/ABORT"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.post_json(&format!("/api/jobs/{missing}/end/COMPLETE"), &times)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get(&format!("/api/jobs/{missing}/log")).await.status(),
        404
    );
    // 422 for a malformed id.
    let bad = app.get("/api/jobs/not-a-uuid").await;
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.unwrap()["code"], "invalid_input");

    // 422: RUN without a config.
    let bare = app
        .post_json("/api/jobs/", &json!({"type": "SCRIPT", "label": "bare"}))
        .await;
    assert_eq!(bare.status(), 201);
    let bare: Value = bare.json().await.unwrap();
    let r = app
        .post(&format!("/api/jobs/{}/process/RUN", id(&bare)))
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "config");
    // 409: ABORT and end of a PENDING job, naming the phase.
    let r = app
        .post(&format!("/api/jobs/{}/process/ABORT", id(&bare)))
        .await;
    assert_eq!(r.status(), 409);
    assert!(
        r.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("PENDING")
    );
    assert_eq!(
        app.post_json(&format!("/api/jobs/{}/end/COMPLETE", id(&bare)), &times)
            .await
            .status(),
        409
    );
    // 422: unknown action.
    assert_eq!(
        app.post(&format!("/api/jobs/{}/process/PAUSE", id(&bare)))
            .await
            .status(),
        422
    );

    // 409: RUN twice; DELETE of a queued/processing job; 409 after completion for ABORT.
    let job = app.create_script("sleeper", "sleep 30").await;
    app.run(&id(&job)).await;
    assert_eq!(
        app.post(&format!("/api/jobs/{}/process/RUN", id(&job)))
            .await
            .status(),
        409
    );
    app.wait_phase(&id(&job), "PROCESSING", Duration::from_secs(10))
        .await;
    let del = app.delete(&format!("/api/jobs/{}", id(&job))).await;
    assert_eq!(del.status(), 409);
    assert_eq!(
        app.post(&format!("/api/jobs/{}/process/ABORT", id(&job)))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.post(&format!("/api/jobs/{}/process/ABORT", id(&job)))
            .await
            .status(),
        409
    );
    assert_eq!(
        app.post(&format!("/api/jobs/{}/process/RUN", id(&job)))
            .await
            .status(),
        409
    );
    // DELETE of an ended job removes row and directory.
    let dir = app.job_dir(&job);
    assert!(dir.exists());
    assert_eq!(
        app.delete(&format!("/api/jobs/{}", id(&job)))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.get(&format!("/api/jobs/{}", id(&job))).await.status(),
        404
    );
    assert!(!dir.exists());

    // PATCH edits label and description, validating both.
    let r = app
        .api
        .patch(app.url(&format!("/api/jobs/{}", id(&bare))))
        .json(&json!({"label": "renamed", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["label"], "renamed");
    let r = app
        .api
        .patch(app.url(&format!("/api/jobs/{}", id(&bare))))
        .json(&json!({"label": "x".repeat(51)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // 422 for bad list parameters.
    assert_eq!(app.get("/api/jobs/?limit=0").await.status(), 422);
    assert_eq!(app.get("/api/jobs/?phase=SLEEPING").await.status(), 422);
    assert_eq!(app.get("/api/jobs/?offset=-1").await.status(), 422);
    // Past what the databases count in (found by schemathesis: it panicked the worker thread).
    let r = app.get("/api/jobs/?offset=9223372036854775808").await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "offset");
    assert_eq!(
        app.get("/api/jobs/?offset=9223372036854775807")
            .await
            .status(),
        200
    );
    // 422 for an end with times the wrong way round.
    let r = app
        .post_json(
            &format!("/api/jobs/{}/end/ERROR", id(&bare)),
            &json!({"started_at": "2026-01-02T00:00:00Z", "ended_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status(), 422);
}

async fn abort_of_a_running_sleep_ends_it_within_two_seconds(b: Backend) {
    let app = spawn_app(b).await;
    let job = app
        .create_script("long sleep", "echo $$ > pid; exec sleep 120")
        .await;
    app.run(&id(&job)).await;
    let pid: i32 = wait_file(&app.job_dir(&job).join("pid"), Duration::from_secs(10))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(pid));
    let t0 = Instant::now();
    let r = app
        .post(&format!("/api/jobs/{}/process/ABORT", id(&job)))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["phase"], "ABORTED");
    while process_alive(pid) {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "sleep {pid} still alive 2 s after ABORT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The worker's late write does not overwrite ABORTED (it logs that it discarded its
    // result, its last step), and the worker is free again.
    app.wait_log(&id(&job), "result discarded", Duration::from_secs(10))
        .await;
    let after = app.job(&id(&job)).await;
    assert_eq!(after["phase"], "ABORTED");
    let next = app.create_script("after abort", "true").await;
    app.run(&id(&next)).await;
    app.wait_phase(&id(&next), "COMPLETED", Duration::from_secs(10))
        .await;
}

async fn jobs_are_listed_newest_first_with_pagination_and_filters(b: Backend) {
    let app = crate::helpers::spawn_app_with(
        b,
        crate::helpers::Options {
            workers: 0,
            ..Default::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id(&app.create_script(&format!("job {i}"), "true").await));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let page: Value = app.get_json("/api/jobs/?offset=0&limit=2").await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    let got: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
    let page: Value = app.get_json("/api/jobs/?offset=4&limit=2").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["job_id"], ids[0].as_str());
    let default: Value = app.get_json("/api/jobs/").await;
    assert_eq!(default["limit"], 10);
    assert_eq!(default["offset"], 0);
    // Filters: one job queued (no workers run here).
    app.run(&ids[2]).await;
    let queued: Value = app.get_json("/api/jobs/?phase=QUEUED").await;
    assert_eq!(queued["total"], 1);
    assert_eq!(queued["jobs"][0]["job_id"], ids[2].as_str());
    let none: Value = app.get_json("/api/jobs/?type=ACTIVE_ML").await;
    assert_eq!(none["total"], 0);
    let scripts: Value = app.get_json("/api/jobs/?type=SCRIPT&limit=100").await;
    assert_eq!(scripts["total"], 5);
}

async fn a_failing_script_ends_in_error_with_its_exit_status(b: Backend) {
    let app = spawn_app(b).await;
    let job = app
        .create_script("fails", "echo about to fail >&2; exit 3")
        .await;
    app.run(&id(&job)).await;
    let done = app
        .wait_phase(&id(&job), "ERROR", Duration::from_secs(10))
        .await;
    assert!(
        done["error"].as_str().unwrap().contains("status 3"),
        "{done}"
    );
    let log = app.log(&id(&job)).await;
    assert!(
        log.contains("about to fail") && log.contains("status 3"),
        "{log}"
    );
    // A program that does not exist is an ERROR with the reason, not a lost job.
    let r = app.post_json("/api/jobs/", &json!({"type": "SCRIPT", "label": "missing", "config": {"command": ["/no/such/program"]}})).await;
    let job: Value = r.json().await.unwrap();
    app.run(&id(&job)).await;
    let done = app
        .wait_phase(&id(&job), "ERROR", Duration::from_secs(10))
        .await;
    assert!(
        done["error"].as_str().unwrap().contains("/no/such/program"),
        "{done}"
    );
}

async fn a_timed_out_script_ends_in_error(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.post_json("/api/jobs/", &json!({"type": "SCRIPT", "label": "slow", "config": {"command": ["sleep", "30"], "timeout_s": 0.5}})).await;
    let job: Value = r.json().await.unwrap();
    app.run(&id(&job)).await;
    let done = app
        .wait_phase(&id(&job), "ERROR", Duration::from_secs(10))
        .await;
    assert!(
        done["error"].as_str().unwrap().contains("timed out"),
        "{done}"
    );
}

async fn config_validation_names_the_field(b: Backend) {
    let app = spawn_app(b).await;
    let cases = [
        (json!({"type": "NOPE", "label": "x", "config": {}}), "type"),
        (
            json!({"type": "SCRIPT", "label": "x", "config": {}}),
            "config.command",
        ),
        (
            json!({"type": "SCRIPT", "label": "x", "config": {"command": "ls -l"}}),
            "config.command",
        ),
        (
            json!({"type": "SCRIPT", "label": "x", "config": {"command": []}}),
            "config.command",
        ),
        (
            json!({"type": "SCRIPT", "label": "x", "config": {"command": ["ls"], "timeout_s": "soon"}}),
            "config.timeout_s",
        ),
        (
            json!({"type": "SCRIPT", "label": "x", "config": {"command": ["ls"], "env": {"A": 1}}}),
            "config.env.A",
        ),
        (
            json!({"type": "SCRIPT", "label": "", "config": {"command": ["ls"]}}),
            "label",
        ),
        (json!({"type": "SCRIPT", "label": "a\u{0}b"}), "label"),
        (
            json!({"type": "SCRIPT", "label": "ok", "description": "x".repeat(256)}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let r = app.post_json("/api/jobs/", &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["field"], field, "{body} -> {err}");
    }
    // A body that is not a job at all.
    let r = app
        .post_json("/api/jobs/", &json!({"label": "no type"}))
        .await;
    assert_eq!(r.status(), 422);
    assert!(
        r.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("type")
    );
    assert_eq!(
        app.get("/api/jobs/").await.json::<Value>().await.unwrap()["total"],
        0
    );
}

async fn submit_creates_and_runs_an_uploaded_entrypoint(b: Backend) {
    let app = spawn_app(b).await;
    let form = reqwest::multipart::Form::new()
        .text(
            "config",
            json!({"label": "uploaded", "description": "from a form", "command": "./run.sh world"})
                .to_string(),
        )
        .part(
            "entrypoint",
            reqwest::multipart::Part::bytes(b"#!/bin/sh\necho hello $1\n".to_vec())
                .file_name("run.sh"),
        );
    let r = app
        .api
        .post(app.url("/api/jobs/submit"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["phase"], "QUEUED");
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(10))
        .await;
    assert!(app.log(&id(&job)).await.contains("hello world"));
    assert!(app.job_dir(&job).join("run.sh").exists());
    // An entrypoint named to escape the job directory is refused.
    let form = reqwest::multipart::Form::new()
        .text(
            "config",
            json!({"label": "evil", "command": "true"}).to_string(),
        )
        .part(
            "entrypoint",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("../../escape.sh"),
        );
    let r = app
        .api
        .post(app.url("/api/jobs/submit"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

async fn unknown_config_keys_are_named_in_one_warning_line(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.post_json("/api/jobs/", &json!({"type": "SCRIPT", "label": "extra", "config": {"command": ["true"], "partition": "gpu", "nodes": 2}})).await;
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(10))
        .await;
    let log = app.log(&id(&job)).await;
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("warning: config keys"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("partition") && warnings[0].contains("nodes"));
}

async fn an_external_runner_can_end_a_processing_job(b: Backend) {
    let app = spawn_app(b).await;
    let job = app.create_script("external", "sleep 30").await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "PROCESSING", Duration::from_secs(10))
        .await;
    let times = json!({"started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:30Z"});
    let r = app
        .post_json(&format!("/api/jobs/{}/end/COMPLETE", id(&job)), &times)
        .await;
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["phase"], "COMPLETED");
    assert_eq!(done["execution_duration"], 90.0);
    // The local worker notices and stops its process (its last log line says it discarded
    // its own result); the recorded end stays.
    app.wait_log(&id(&job), "result discarded", Duration::from_secs(10))
        .await;
    assert_eq!(app.job(&id(&job)).await["phase"], "COMPLETED");
}

async fn deleting_a_job_deletes_its_labellings(b: Backend) {
    let app = spawn_app(b).await;
    let job = app.create_script("with labels", "true").await;
    let job_id: uuid::Uuid = id(&job).parse().unwrap();
    let db = &app.state.db;
    let count = || async {
        use sea_orm::ConnectionTrait;
        let stmt = sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM labellings",
        );
        db.query_one_raw(stmt)
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
    };
    for i in 0..3 {
        use sea_orm::ConnectionTrait;
        let sql = "INSERT INTO labellings (labelling_id, job_id, spectrum_filename, spectrum_set, sequence_iteration) VALUES ($1, $2, $3, 'ORACLE', 0)";
        let values = [
            uuid::Uuid::new_v4().into(),
            job_id.into(),
            format!("spec-56000-F5000_sp01-00{i}.fits").into(),
        ];
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .unwrap();
    }
    assert_eq!(count().await, 3);
    assert_eq!(
        app.delete(&format!("/api/jobs/{job_id}")).await.status(),
        204
    );
    assert_eq!(count().await, 0, "labellings must cascade with their job");
}

/// The page form (no script needed): create and run, then "Copy and edit" fills the form with
/// the job's config so that it reads back unchanged, commas inside arguments included.
async fn the_new_job_form_creates_runs_and_copies_a_job(b: Backend) {
    let app = crate::helpers::spawn_app_with(
        b,
        crate::helpers::Options {
            tweak: |c| c.server.json_limit = 8192,
            ..Default::default()
        },
    )
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = [
        ("type", "SCRIPT"),
        ("label", "form job"),
        ("description", ""),
        ("cfg.command", r#"["sh", "-c", "echo a, b"]"#),
        ("cfg.timeout_s", ""),
        ("action", "run"),
    ];
    let resp = no_redirects
        .post(app.url("/jobs/new"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let job_id = location.trim_start_matches("/jobs/").to_string();
    app.wait_phase(&job_id, "COMPLETED", Duration::from_secs(20))
        .await;
    app.wait_log(&job_id, "a, b", Duration::from_secs(5)).await;
    assert_eq!(
        app.job(&job_id).await["config"],
        json!({"command": ["sh", "-c", "echo a, b"]})
    );

    let copy = app
        .get(&format!("/jobs/new?from={job_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(copy.contains(r#"value="form job""#), "the label is copied");
    assert!(
        copy.contains("[&#34;sh&#34;,&#34;-c&#34;,&#34;echo a, b&#34;]")
            || copy.contains("[&quot;sh&quot;,&quot;-c&quot;,&quot;echo a, b&quot;]"),
        "the command is copied as a list that reads back the same"
    );
    // Only "Create": the job waits in PENDING.
    let created = no_redirects
        .post(app.url("/jobs/new"))
        .form(&[
            ("type", "SCRIPT"),
            ("label", "later"),
            ("cfg.command", "true"),
            ("action", "create"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let later = created.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/jobs/")
        .to_string();
    assert_eq!(app.job(&later).await["phase"], "PENDING");

    // A config past server.json_limit: 413, drawn next to the JSON editor, nothing created.
    let total = async || app.get("/api/jobs").await.json::<Value>().await.unwrap()["total"].clone();
    let jobs_before = total().await;
    let long = format!(
        r#"{{"command": ["sh", "-c", "echo {}"]}}"#,
        "x".repeat(9000)
    );
    let resp = no_redirects
        .post(app.url("/jobs/new"))
        .form(&[
            ("type", "SCRIPT"),
            ("label", "too long"),
            ("use_json", "on"),
            ("config_json", long.as_str()),
            ("action", "run"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let page = resp.text().await.unwrap();
    let next_to_editor = page
        .split(r#"<p class="field-error" data-field="config_json">"#)
        .nth(1)
        .unwrap_or_else(|| panic!("no message at the JSON editor: {page}"));
    assert!(
        next_to_editor
            .starts_with("the config is larger than the limit of 8192 bytes (server.json_limit)"),
        "{next_to_editor}"
    );
    assert!(page.contains("xxxxxxxx"), "what was typed is kept");
    // A form too large to read at all is a page that names the limit.
    let resp = no_redirects
        .post(app.url("/jobs/new"))
        .form(&[
            ("type", "SCRIPT"),
            ("config_json", "x".repeat(200_000).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("server.json_limit"));
    assert_eq!(total().await, jobs_before);
}

/// A Weights & Biases and an MLflow run printed in the log are `links` of the job and links
/// on its page; a plain URL is neither.
async fn run_links_in_the_log_are_listed_and_linked(b: Backend) {
    let app = spawn_app(b).await;
    let job = app
        .create_script(
            "tracked",
            "echo 'wandb: 🚀 View run at https://wandb.ai/ondrejov/lamost/runs/3kx9q2ab'; \
             echo 'see https://example.org/docs'; \
             echo '🏃 View run owl at: http://127.0.0.1:5000/#/experiments/1/runs/9f1c2e'",
        )
        .await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(30))
        .await;
    let done = app.job(&id(&job)).await;
    assert_eq!(
        done["links"],
        json!([
            {"kind": "wandb", "url": "https://wandb.ai/ondrejov/lamost/runs/3kx9q2ab"},
            {"kind": "mlflow", "url": "http://127.0.0.1:5000/#/experiments/1/runs/9f1c2e"},
        ])
    );
    let page = app
        .get(&format!("/jobs/{}", id(&job)))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"href="https://wandb.ai/ondrejov/lamost/runs/3kx9q2ab""#)
            && page.contains("MLflow run"),
        "{page}"
    );
    // (The page shows the config, so the plain URL is there as text, but not as a link.)
    assert!(!page.contains(r#"href="https://example.org"#));
}
