//! The pages in a real browser (headless chromium over WebDriver) against the real server:
//! jobs made in the form and watched live, the labelling workspace driven by the keyboard,
//! the file browser's upload and download, the spectrum page and error pages. Every page is
//! saved as a screenshot, and no page may fetch anything from another host.

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, mljm, spawn_app},
    on_both_backends,
    webdriver::Browser,
};

on_both_backends!(
    browser;
    a_preprocessing_job_made_in_the_form_turns_completed_without_a_reload,
    an_iteration_is_labelled_with_the_keyboard_and_continued,
    a_file_is_uploaded_in_the_browser_and_downloaded_back,
    the_spectrum_page_plots_and_error_pages_explain,
    a_member_logs_in_labels_a_spectrum_and_logs_out,
);

/// One chromium at a time: on two cores, parallel browsers only make each other time out.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MINUTE: Duration = Duration::from_secs(60);

pub fn shots(b: &Backend, test: &str) -> PathBuf {
    let backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres(_) => "postgres",
    };
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(backend)
        .join(test)
}

/// `mljm demo --n n` into the server's data directory.
fn demo(app: &TestApp, n: usize) {
    let out = mljm([
        "demo",
        "--n",
        &n.to_string(),
        "--seed",
        "3",
        "--data-dir",
        app.data_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The size of the canvas uPlot (or the page) drew inside `css`.
async fn canvas_size(br: &Browser, css: &str) -> (u64, u64) {
    let v = br
        .script(
            "const c = document.querySelector(arguments[0]); return c ? [c.width, c.height] : [0, 0];",
            json!([format!("{css} canvas, canvas{css}")]),
        )
        .await;
    (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0))
}

async fn assert_drawn(br: &Browser, css: &str) {
    let (w, h) = canvas_size(br, css).await;
    assert!(w > 0 && h > 0, "{css}: canvas of {w}×{h}");
}

fn job_id_of(url: &str) -> String {
    let id = url.rsplit('/').next().unwrap_or_default().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "not a job page: {url}");
    id
}

async fn a_preprocessing_job_made_in_the_form_turns_completed_without_a_reload(b: Backend) {
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app(b.clone()).await;
    demo(&app, 120);
    let br = Browser::start(&shots(&b, "preprocessing")).await;
    br.goto(&app.url("/jobs/new?type=DATA_PREPROCESSING")).await;
    br.screenshot("new-job-form").await;
    // A wrong field: the server's message is drawn next to it, and nothing is created.
    let count = br.find("#cfg-wave_point_count").await;
    br.clear(&count).await;
    br.type_into(&count, "1").await;
    br.click(&br.find("button[value=run]").await).await;
    let message = br
        .wait_text(".field-error[data-field=wave_point_count]", MINUTE, |t| {
            !t.is_empty()
        })
        .await;
    assert!(message.contains("from 2 to 100000"), "{message}");
    let beside = br
        .script(
            "const e = document.querySelector('.field-error[data-field=wave_point_count]');
             return e.closest('.field').querySelector('#cfg-wave_point_count') !== null;",
            json!([]),
        )
        .await;
    assert_eq!(beside, true, "the message sits next to its field");
    br.screenshot("new-job-field-error").await;
    let listed: Value = app.get_json("/api/jobs/").await;
    assert_eq!(listed["total"], 0, "a refused form creates nothing");

    let count = br.find("#cfg-wave_point_count").await;
    br.clear(&count).await;
    br.type_into(&count, "140").await;
    let label = br.find("#f-label").await;
    br.clear(&label).await;
    br.type_into(&label, "demo Hα window").await;
    br.click(&br.find("button[value=run]").await).await;
    br.wait_for("#summary", MINUTE).await;
    let id = job_id_of(&br.current_url().await);
    br.script("window.__same_page = true;", json!([])).await;
    br.wait_text("#phase", MINUTE, |t| t == "COMPLETED").await;
    let count = br
        .wait_text("#spectra-count", MINUTE, |t| !t.is_empty())
        .await;
    assert_eq!(count, "120");
    assert_eq!(
        br.script("return window.__same_page === true;", json!([]))
            .await,
        true,
        "the phase changed without a reload"
    );
    assert_drawn(&br, "#prep-plot").await;
    br.screenshot("preprocessing-completed").await;
    br.assert_only_local_requests(&app.address).await;

    br.goto(&app.url("/")).await;
    let badge = br.find(&format!("#job-{id} .badge")).await;
    assert_eq!(br.text(&badge).await, "COMPLETED");
    br.screenshot("jobs-list").await;
    // Delete asks first; then the row goes without a reload, and so does the job.
    br.click(&br.find(&format!("#job-{id} button.danger")).await)
        .await;
    br.accept_alert().await;
    br.wait_text("#jobs", MINUTE, |t| t.contains("No jobs here"))
        .await;
    assert_eq!(app.get(&format!("/api/jobs/{id}")).await.status(), 404);
    br.assert_only_local_requests(&app.address).await;
}

/// Preprocesses the demo survey through the API and returns the result's files-root path.
async fn preprocessed_pool(app: &TestApp) -> String {
    let config = json!({"data_dir_path": "/", "wave_start_point": 6519, "wave_end_point": 6732, "wave_point_count": 140});
    let resp = app.post_job("DATA_PREPROCESSING", &config).await;
    assert_eq!(resp.status(), 201);
    let job: Value = resp.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap();
    app.run(id).await;
    app.wait_phase(id, "COMPLETED", MINUTE).await;
    format!("{}/result.h5", job["dir_path"].as_str().unwrap())
}

async fn set_field(br: &Browser, id: &str, value: &str) {
    let field = br.find(id).await;
    br.clear(&field).await;
    br.type_into(&field, value).await;
}

async fn an_iteration_is_labelled_with_the_keyboard_and_continued(b: Backend) {
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app(b.clone()).await;
    demo(&app, 120);
    let pool = preprocessed_pool(&app).await;
    let br = Browser::start(&shots(&b, "active-learning")).await;
    br.goto(&app.url("/jobs/new?type=ACTIVE_ML")).await;
    set_field(&br, "#cfg-pool_data_path", &pool).await;
    set_field(&br, "#cfg-oracle_batch_size", "6").await;
    set_field(&br, "#cfg-perf_est_batch_size", "3").await;
    set_field(&br, "#cfg-epochs_train", "3").await;
    set_field(&br, "#cfg-seed", "5").await;
    br.screenshot("active-learning-form").await;
    br.click(&br.find("button[value=run]").await).await;
    br.wait_for("#summary", MINUTE).await;
    let first = job_id_of(&br.current_url().await);
    br.wait_text("#phase", MINUTE, |t| t == "COMPLETED").await;
    br.wait_text("#counter", MINUTE, |t| t == "0/6 labelled")
        .await;
    // The first unlabelled spectrum is selected: its FITS flux is drawn.
    br.wait_for("#ws-raw canvas", MINUTE).await;
    assert_drawn(&br, "#ws-raw").await;
    // Its preprocessed flux is read from the iteration's result.h5 when it is shown.
    br.wait_for("#ws-prep canvas", MINUTE).await;
    assert_drawn(&br, "#ws-prep").await;
    br.screenshot("workspace-iteration-0").await;

    // Label with the keys 1–3 (each moves to the next spectrum), undo one, label it again.
    br.keys(&["1", "2", "3", "1", "2", "3"]).await;
    br.wait_text("#counter", MINUTE, |t| t == "6/6 labelled")
        .await;
    br.keys(&["\u{E003}"]).await; // Backspace
    br.wait_text("#counter", MINUTE, |t| t == "5/6 labelled")
        .await;
    assert!(
        br.script(
            "return document.getElementById('continue').disabled;",
            json!([])
        )
        .await
            == true,
        "Continue waits for the whole oracle batch"
    );
    br.keys(&["2"]).await;
    br.wait_text("#counter", MINUTE, |t| t == "6/6 labelled")
        .await;
    br.wait_text("#ws-saved", MINUTE, |t| t == "saved").await;
    br.screenshot("workspace-labelled").await;

    // A comment the API refuses (a control character) is shown under the comment box; the
    // corrected one clears the message and is saved.
    let comment = |text: &str| {
        format!(
            "const c = document.getElementById('ws-comment'); c.value = {};
             c.dispatchEvent(new Event('input'));",
            json!(text)
        )
    };
    br.script(&comment("bell \u{7}"), json!([])).await;
    let refused = br
        .wait_text("#ws-comment-error", MINUTE, |t| !t.is_empty())
        .await;
    assert!(
        refused.contains("user_comment") && refused.contains("control"),
        "{refused}"
    );
    br.screenshot("workspace-comment-refused").await;
    br.script(&comment("two\nlines"), json!([])).await;
    br.wait_text("#ws-comment-error", MINUTE, |t| t.is_empty())
        .await;
    br.wait_text("#ws-saved", MINUTE, |t| t == "saved").await;
    let classes = ["other", "single peak", "double peak"];
    let want = [
        classes[0], classes[1], classes[2], classes[0], classes[1], classes[1],
    ];
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let list: Vec<Value> = app
            .get_json(&format!("/api/labellings/?job_id={first}"))
            .await;
        let labels: Vec<&str> = list
            .iter()
            .filter(|l| l["spectrum_set"] == "ORACLE")
            .map(|l| l["user_label"].as_str().unwrap_or(""))
            .collect();
        if labels == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "saved labels: {labels:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list: Vec<Value> = app
        .get_json(&format!("/api/labellings/?job_id={first}"))
        .await;
    let comments: Vec<&Value> = list.iter().map(|l| &l["user_comment"]).collect();
    assert!(
        comments.contains(&&json!("two\nlines")) && !comments.contains(&&json!("bell \u{7}")),
        "{comments:?}"
    );
    br.assert_only_local_requests(&app.address).await;

    br.click(&br.find("#continue").await).await;
    let deadline = std::time::Instant::now() + MINUTE;
    let next = loop {
        let url = br.current_url().await;
        if !url.ends_with(&first) && url.contains("/jobs/") {
            break job_id_of(&url);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "continue never led on: {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = app.job(&next).await;
    assert_eq!(job["parent_job_id"], first.as_str());
    assert_eq!(job["config"]["iteration"], 1);
    br.wait_text("#phase", Duration::from_secs(180), |t| t == "COMPLETED")
        .await;
    br.wait_text("#counter", MINUTE, |t| t == "0/6 labelled")
        .await;
    let iterations = br
        .script(
            "return document.querySelectorAll('.chain-entry').length;",
            json!([]),
        )
        .await;
    assert_eq!(
        iterations, 2,
        "iteration 1 follows iteration 0 in the chain"
    );
    assert_drawn(&br, "#ws-tsne").await;
    br.wait_for("#ws-raw canvas", MINUTE).await;
    br.screenshot("workspace-iteration-1").await;
    br.assert_only_local_requests(&app.address).await;
}

async fn a_file_is_uploaded_in_the_browser_and_downloaded_back(b: Backend) {
    let _one = ONE_BROWSER.lock().await;
    let app = crate::helpers::spawn_app_with(
        b.clone(),
        crate::helpers::Options {
            tweak: |c| c.files.upload_limit = 1 << 20,
            ..Default::default()
        },
    )
    .await;
    let br = Browser::start(&shots(&b, "files")).await;
    br.goto(&app.url("/files")).await;
    // Names the API refuses (422; ".." is refused by the page, as a URL cannot carry it):
    // the message is drawn next to the name, and nothing is made.
    for bad in ["a%2Fb", ".."] {
        set_field(&br, "#mkdir-name", bad).await;
        br.click(&br.find("#mkdir-form button").await).await;
        let refused = br
            .wait_text("#mkdir-error", MINUTE, |t| t.contains(bad))
            .await;
        assert!(
            refused.contains("not a valid file or directory name"),
            "{refused}"
        );
    }
    br.screenshot("files-bad-folder-name").await;
    let made: Vec<_> = std::fs::read_dir(app.data_dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "JOBS")
        .collect();
    assert!(made.is_empty(), "no folder made: {made:?}");
    set_field(&br, "#mkdir-name", "uploads").await;
    br.click(&br.find("#mkdir-form button").await).await;
    let folder = br.find("a[href='/files?path=/uploads']").await;
    br.screenshot("files-root").await;
    br.click(&folder).await;
    br.wait_for(".file-tools[data-path='/uploads']", MINUTE)
        .await;

    let local = tempfile::tempdir().unwrap();
    let notes = local.path().join("notes α.txt");
    let table = local.path().join("labels.csv");
    std::fs::write(&notes, "Hα emitters to look at again\n").unwrap();
    let csv: String = (0..20_000).map(|i| format!("spec-{i},other\n")).collect();
    std::fs::write(&table, &csv).unwrap();
    let input = br.find("#upload-input").await;
    let paths = format!("{}\n{}", notes.display(), table.display());
    br.type_into(&input, &paths).await;
    br.click(&br.find("#upload-form button").await).await;
    br.wait_text("#uploads", MINUTE, |t| t.matches("uploaded").count() == 2)
        .await;
    br.wait_text("#file-list", MINUTE, |t| {
        t.contains("notes α.txt") && t.contains("labels.csv")
    })
    .await;
    br.screenshot("files-uploaded").await;
    assert_eq!(
        std::fs::read_to_string(app.data_dir.join("files/uploads/labels.csv")).unwrap(),
        csv
    );
    let back = br
        .script_async(
            "const done = arguments[arguments.length - 1];
             const link = Array.from(document.querySelectorAll('#file-list a[download]'))
                 .find((a) => a.textContent === 'notes α.txt');
             fetch(link.href).then((r) => r.text()).then(done, (e) => done('failed: ' + e));",
            json!([]),
        )
        .await;
    assert_eq!(back, "Hα emitters to look at again\n");

    // Past files.upload_limit: the 413 shows at that file; the next file still goes up.
    let big = local.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 3 << 20]).unwrap();
    let small = local.path().join("after.txt");
    std::fs::write(&small, "after the big one\n").unwrap();
    let input = br.find("#upload-input").await;
    br.type_into(&input, &format!("{}\n{}", big.display(), small.display()))
        .await;
    br.click(&br.find("#upload-form button").await).await;
    br.wait_text("#uploads", MINUTE, |t| t.matches("uploaded").count() == 3)
        .await;
    let failed = br
        .script(
            "const li = Array.from(document.querySelectorAll('#uploads li'))
                 .find((li) => li.querySelector('.name').textContent === 'big.bin');
             return [li.className, li.querySelector('.status').textContent];",
            json!([]),
        )
        .await;
    assert_eq!(failed[0], "failed", "{failed}");
    assert!(
        failed[1]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 1048576 bytes (files.upload_limit)"),
        "{failed}"
    );
    br.screenshot("files-upload-too-large").await;
    assert!(!app.data_dir.join("files/uploads/big.bin").exists());
    assert_eq!(
        std::fs::read_to_string(app.data_dir.join("files/uploads/after.txt")).unwrap(),
        "after the big one\n"
    );
    br.assert_only_local_requests(&app.address).await;
}

async fn the_spectrum_page_plots_and_error_pages_explain(b: Backend) {
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app(b.clone()).await;
    demo(&app, 10);
    let labels = std::fs::read_to_string(app.data_dir.join("files/labels.csv")).unwrap();
    let name = labels
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let br = Browser::start(&shots(&b, "spectra")).await;
    br.goto(&app.url("/spectra")).await;
    set_field(&br, "#spectrum-name", &name).await;
    br.click(&br.find(".lookup button").await).await;
    br.wait_for("#spectrum-plot canvas", MINUTE).await;
    assert_drawn(&br, "#spectrum-plot").await;
    let meta = br.text(&br.find("#spectrum-meta").await).await;
    assert!(meta.contains("filename") && meta.contains(&name), "{meta}");
    br.screenshot("spectrum").await;
    assert!(
        br.exists("#queued").await,
        "a page drawn with the database shows the queue"
    );

    br.goto(&app.url("/spectra?name=not-a-spectrum.fits")).await;
    let e = br
        .wait_text(".field-error[data-field=name]", MINUTE, |t| !t.is_empty())
        .await;
    assert!(
        e.contains("spec-"),
        "the message shows the expected pattern: {e}"
    );
    br.screenshot("spectrum-bad-name").await;

    br.goto(&app.url(&format!("/jobs/{}", uuid::Uuid::new_v4())))
        .await;
    assert_eq!(br.text(&br.find("h1").await).await, "Not found (404)");
    assert!(br.exists("#error-message").await);
    // Drawn without the database: no queue count rather than a wrong "0 queued".
    assert!(!br.exists("#queued").await);
    assert!(!br.text(&br.find("header").await).await.contains("queued"));
    br.screenshot("job-not-found").await;
    br.assert_only_local_requests(&app.address).await;
}

fn password_mode(c: &mut mljm::config::Config) {
    c.auth.mode = Some(mljm::config::AuthMode::Password);
}

/// With accounts on: the pages send to the login form and back; the member's job and label
/// carry their name; logout ends the session.
async fn a_member_logs_in_labels_a_spectrum_and_logs_out(b: Backend) {
    let _one = ONE_BROWSER.lock().await;
    let app = crate::helpers::spawn_app_with(
        b.clone(),
        crate::helpers::Options {
            tweak: password_mode,
            ..Default::default()
        },
    )
    .await;
    use mljm::auth::{Role, users};
    users::add(&app.state.db, "bob", Role::Member, "correct horse battery")
        .await
        .unwrap();
    demo(&app, 120);
    let (_, token) = users::create_token(&app.state.db, "bob", "setup", true, None)
        .await
        .unwrap();
    let bob = |req: reqwest::RequestBuilder| req.bearer_auth(&token).send();
    let prep: Value = bob(app.api.post(app.url("/api/jobs/")).json(&json!({
        "type": "DATA_PREPROCESSING", "label": "pool",
        "config": {"data_dir_path": "/", "wave_start_point": 6519, "wave_end_point": 6732,
                   "wave_point_count": 140}})))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let prep_id = prep["job_id"].as_str().unwrap();
    bob(app
        .api
        .post(app.url(&format!("/api/jobs/{prep_id}/process/RUN"))))
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let job: Value = bob(app.api.get(app.url(&format!("/api/jobs/{prep_id}"))))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["phase"] == "COMPLETED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = format!("{}/result.h5", prep["dir_path"].as_str().unwrap());

    let br = Browser::start(&shots(&b, "accounts")).await;
    br.goto(&app.url("/jobs/new?type=ACTIVE_ML")).await;
    br.wait_for("#login", MINUTE).await;
    br.screenshot("login").await;
    set_field(&br, "#username", "bob").await;
    set_field(&br, "#password", "correct horse battery").await;
    br.click(&br.find("#login button").await).await;
    // Back where the login began, logged in.
    br.wait_for("#cfg-pool_data_path", MINUTE).await;
    assert_eq!(br.text(&br.find("#who").await).await, "bob");
    set_field(&br, "#cfg-pool_data_path", &pool).await;
    set_field(&br, "#cfg-oracle_batch_size", "3").await;
    set_field(&br, "#cfg-perf_est_batch_size", "3").await;
    set_field(&br, "#cfg-epochs_train", "2").await;
    br.click(&br.find("button[value=run]").await).await;
    br.wait_for("#summary", MINUTE).await;
    let job = job_id_of(&br.current_url().await);
    br.wait_text("#phase", MINUTE, |t| t == "COMPLETED").await;
    assert_eq!(br.text(&br.find("#job-owner").await).await, "bob");
    br.wait_text("#counter", MINUTE, |t| t == "0/3 labelled")
        .await;
    br.keys(&["1"]).await;
    br.wait_text("#counter", MINUTE, |t| t == "1/3 labelled")
        .await;
    br.wait_text("#ws-saved", MINUTE, |t| t == "saved").await;
    br.screenshot("labelled-as-bob").await;
    let labels: Value = bob(app
        .api
        .get(app.url(&format!("/api/labellings/?job_id={job}"))))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let given: Vec<&Value> = labels
        .as_array()
        .map(|a| a.iter().filter(|l| !l["user_label"].is_null()).collect())
        .unwrap_or_default();
    assert_eq!(given.len(), 1, "{labels}");
    assert_eq!(given[0]["labelled_by"], "bob");

    br.click(&br.find("#logout").await).await;
    br.wait_for("#login", MINUTE).await;
    br.goto(&app.url(&format!("/jobs/{job}"))).await;
    br.wait_for("#login", MINUTE).await;
    br.assert_only_local_requests(&app.address).await;
}
