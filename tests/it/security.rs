//! SPEC §10 at the HTTP boundary: cross-site state changes, DNS rebinding, body limits,
//! escaping on pages, and the OpenAPI document and docs page.

use serde_json::{Value, json};

use crate::helpers::{Backend, Options, spawn_app, spawn_app_with};

crate::on_both_backends!(
    cross_site_posts_are_refused_and_same_origin_ones_served,
    a_foreign_host_header_is_misdirected,
    every_bound_of_spec_10_holds_at_its_edge,
    pages_escape_user_text_and_htmx_gets_the_partial,
    the_job_page_shows_the_end_of_a_long_log,
);
// Refused by the body limit before any handler runs; a document the server holds.
crate::without_the_database!(
    a_json_body_above_the_limit_is_413,
    the_openapi_document_names_every_endpoint,
);

async fn cross_site_posts_are_refused_and_same_origin_ones_served(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"type": "SCRIPT", "label": "x", "config": {"command": ["true"]}});
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let r = app
            .api
            .post(app.url("/api/jobs/"))
            .header("Origin", origin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{origin}");
    }
    let r = app
        .api
        .post(app.url("/api/jobs/"))
        .header("Sec-Fetch-Site", "cross-site")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let form = reqwest::multipart::Form::new().text("config", "{}");
    let r = app
        .api
        .post(app.url("/api/jobs/submit"))
        .header("Origin", "http://evil.example")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.get("/api/jobs/").await.json::<Value>().await.unwrap()["total"],
        0
    );
    // Same origin (the pages) and no Origin (CLI, curl) are served.
    let r = app
        .api
        .post(app.url("/api/jobs/"))
        .header("Origin", app.address.clone())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(app.post_json("/api/jobs/", &body).await.status(), 201);
    // Reading is allowed from anywhere.
    let r = app
        .api
        .get(app.url("/api/jobs/"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn a_foreign_host_header_is_misdirected(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .api
        .get(app.url("/api/jobs/"))
        .header("Host", format!("rebind.evil.example:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = app
        .api
        .get(app.url("/api/jobs/"))
        .header("Host", format!("localhost:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listed = spawn_app_with(
        Backend::Sqlite,
        Options {
            tweak: |c| c.server.allowed_hosts = vec!["lab.example".into()],
            ..Default::default()
        },
    )
    .await;
    let r = listed
        .api
        .get(listed.url("/"))
        .header("Host", "lab.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn a_json_body_above_the_limit_is_413(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            tweak: |c| c.server.json_limit = 4096,
            ..Default::default()
        },
    )
    .await;
    let body = json!({"type": "SCRIPT", "label": "big", "config": {"command": ["echo", "x".repeat(10_000)]}});
    let r = app.post_json("/api/jobs/", &body).await;
    assert_eq!(r.status(), 413);
}

async fn pages_escape_user_text_and_htmx_gets_the_partial(b: Backend) {
    let app = spawn_app(b).await;
    let job = app.create_script("<script>alert(1)</script>", "true").await;
    let page = app.get("/").await.text().await.unwrap();
    let escaped = |html: &str| {
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    };
    assert!(escaped(&page), "{page}");
    assert!(!page.contains("<script>alert(1)"));
    assert!(page.contains("/static/htmx-2.0.11.min.js") && page.contains("<html"));
    let partial = app
        .api
        .get(app.url("/"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !partial.contains("<html")
            && partial.contains("hx-trigger=\"every 2s")
            && partial.contains("PENDING")
    );
    let id = job["job_id"].as_str().unwrap();
    let show = app.get(&format!("/jobs/{id}")).await.text().await.unwrap();
    assert!(escaped(&show) && show.contains(&format!("/jobs/{id}/log-tail")));
    let htmx = app.get("/static/htmx-2.0.11.min.js").await;
    assert_eq!(htmx.status(), 200);
    assert!(
        htmx.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert!(htmx.text().await.unwrap().len() > 10_000);
}

async fn the_openapi_document_names_every_endpoint(b: Backend) {
    let app = spawn_app(b).await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("/api/jobs/", "post"),
        ("/api/jobs/", "get"),
        ("/api/jobs/submit", "post"),
        ("/api/jobs/{job_id}", "get"),
        ("/api/jobs/{job_id}", "patch"),
        ("/api/jobs/{job_id}", "delete"),
        ("/api/jobs/{job_id}/process/{action}", "post"),
        ("/api/jobs/{job_id}/end/{phase}", "post"),
        ("/api/jobs/{job_id}/log", "get"),
        ("/api/files/", "get"),
        ("/api/files/{filename}/upload", "post"),
        ("/api/files/{filename}/download", "get"),
        ("/api/files/{filename}", "delete"),
        ("/api/files/directories/{dirname}", "post"),
        ("/api/files/directories/{dirname}", "delete"),
        ("/api/jobs/{job_id}/continue", "post"),
        ("/api/jobs/{job_id}/chain", "get"),
        ("/api/spectra/{filename}", "get"),
        ("/api/labellings/", "post"),
        ("/api/labellings/", "get"),
        ("/api/labellings/batch/", "post"),
        ("/api/labellings/batch/", "patch"),
        ("/api/labellings/{labelling_id}", "get"),
        ("/api/labellings/{labelling_id}", "patch"),
    ];
    for (path, method) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from openapi.json"
        );
    }
    let docs = app.get("/api/docs").await.text().await.unwrap();
    assert!(docs.contains("/static/rapidoc-9.3.8.min.js") && docs.contains("/api/openapi.json"));
    assert!(!docs.contains("https://"));
    assert_eq!(app.get("/static/rapidoc-9.3.8.min.js").await.status(), 200);
}

async fn the_job_page_shows_the_end_of_a_long_log(b: Backend) {
    let app = spawn_app(b).await;
    let job = app.create_script("long log", "true").await;
    let id = job["job_id"].as_str().unwrap();
    let mut log = String::new();
    for i in 0..300_000 {
        log.push_str(&format!("line {i} of a long training log\n"));
    }
    assert!(log.len() > 9 << 20);
    std::fs::write(app.job_dir(&job).join("log.txt"), &log).unwrap();
    let tail = app
        .get(&format!("/jobs/{id}/log-tail"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        tail.trim_end()
            .ends_with("line 299999 of a long training log</pre>"),
        "{}",
        &tail[tail.len().saturating_sub(200)..]
    );
    assert!(!tail.contains("line 0 of"));
    assert!(tail.lines().count() <= 200);
}

/// Each bound of SPEC §10 at its edge: the last allowed value is accepted, one past it is a 422
/// whose message names the field and the range (or a 413 for the body size).
async fn every_bound_of_spec_10_holds_at_its_edge(b: Backend) {
    let app = spawn_app_with(
        b,
        Options {
            tweak: |c| c.server.json_limit = 4096,
            ..Default::default()
        },
    )
    .await;
    // The pool the ACTIVE_ML configs name exists: only the bound under test is wrong.
    std::fs::write(app.data_dir.join("files/p.h5"), b"").unwrap();
    let prep = json!({"data_dir_path": "/", "wave_start_point": 6519, "wave_end_point": 6732, "wave_point_count": 140});
    let al = json!({"iteration": 0, "classes": ["a", "b"], "candidate_classes": ["b"], "pool_data_path": "/p.h5"});
    let with = |base: &Value, field: &str, v: Value| {
        let mut c = base.clone();
        c[field] = v;
        c
    };
    // (job type, config allowed, config one past the edge, field, words of the message)
    let cases = [
        (
            "DATA_PREPROCESSING",
            with(&prep, "wave_point_count", json!(2)),
            with(&prep, "wave_point_count", json!(1)),
            "wave_point_count",
            "from 2 to 100000",
        ),
        (
            "DATA_PREPROCESSING",
            with(&prep, "wave_point_count", json!(100_000)),
            with(&prep, "wave_point_count", json!(100_001)),
            "wave_point_count",
            "from 2 to 100000",
        ),
        (
            "DATA_PREPROCESSING",
            with(&prep, "wave_end_point", json!(6519.001)),
            with(&prep, "wave_end_point", json!(6519)),
            "wave_end_point",
            "greater than wave_start_point",
        ),
        (
            "ACTIVE_ML",
            with(&al, "epochs_train", json!(100_000)),
            with(&al, "epochs_train", json!(100_001)),
            "epochs_train",
            "from 1 to 100000",
        ),
        (
            "ACTIVE_ML",
            with(&al, "epochs_train", json!(1)),
            with(&al, "epochs_train", json!(0)),
            "epochs_train",
            "at least 1",
        ),
        (
            "ACTIVE_ML",
            with(&al, "batch_size_train", json!(1)),
            with(&al, "batch_size_train", json!(0)),
            "batch_size_train",
            "at least 1",
        ),
        (
            "ACTIVE_ML",
            with(&al, "batch_size_predict", json!(1)),
            with(&al, "batch_size_predict", json!(0)),
            "batch_size_predict",
            "at least 1",
        ),
        (
            "ACTIVE_ML",
            with(&al, "oracle_batch_size", json!(1)),
            with(&al, "oracle_batch_size", json!(0)),
            "oracle_batch_size",
            "at least 1",
        ),
        (
            "ACTIVE_ML",
            with(&al, "perf_est_batch_size", json!(1)),
            with(&al, "perf_est_batch_size", json!(0)),
            "perf_est_batch_size",
            "at least 1",
        ),
    ];
    for (job_type, allowed, refused, field, words) in cases {
        let ok = app.post_job(job_type, &allowed).await;
        assert_eq!(
            ok.status(),
            201,
            "{job_type} {allowed}: {:?}",
            ok.text().await
        );
        let bad = app.post_job(job_type, &refused).await;
        assert_eq!(bad.status(), 422, "{job_type} {refused}");
        let e: Value = bad.json().await.unwrap();
        assert_eq!(e["field"], format!("config.{field}"), "{e}");
        assert!(e["message"].as_str().unwrap().contains(words), "{e}");
    }
    // Label 1–50 and description ≤ 255 characters, no control characters.
    let job = |label: String, description: String| json!({"type": "SCRIPT", "label": label, "description": description, "config": {"command": ["true"]}});
    for (body, status, field) in [
        (job("é".repeat(50), "é".repeat(255)), 201, None),
        (job("é".repeat(51), String::new()), 422, Some("label")),
        (job("x".into(), "é".repeat(256)), 422, Some("description")),
        (job("a\u{7}b".into(), String::new()), 422, Some("label")),
        (job("x".into(), "nul\0".into()), 422, Some("description")),
    ] {
        let r = app.post_json("/api/jobs/", &body).await;
        assert_eq!(r.status(), status, "{body}");
        if let Some(f) = field {
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["field"], f, "{e}");
        }
    }
    // The JSON body limit (4096 bytes here): just under passes, just over is a 413.
    let padded = |n: usize| json!({"type": "SCRIPT", "label": "edge", "description": "", "config": {"command": ["echo", "x".repeat(n)]}});
    let base = serde_json::to_vec(&padded(0)).unwrap().len();
    let at_limit = padded(4096 - base);
    assert_eq!(serde_json::to_vec(&at_limit).unwrap().len(), 4096);
    assert_eq!(app.post_json("/api/jobs/", &at_limit).await.status(), 201);
    let over = app.post_json("/api/jobs/", &padded(4097 - base)).await;
    assert_eq!(over.status(), 413);
    let e: Value = over.json().await.unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("server.json_limit"),
        "{e}"
    );
}
