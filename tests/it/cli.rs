//! The `mljm jobs` client against a real server: the seed's curl workflows as one-liners.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app};

crate::on_both_backends!(the_jobs_client_creates_runs_lists_shows_and_tails);

async fn mljm(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = mljm::child::no_inherit_async(&mut tokio::process::Command::new(env!(
        "CARGO_BIN_EXE_mljm"
    )))
    .args(["jobs", "--server", &app.address])
    .args(args)
    .output()
    .await
    .expect("mljm runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_jobs_client_creates_runs_lists_shows_and_tails(b: Backend) {
    let app = spawn_app(b).await;
    let cfg = app.data_dir.parent().unwrap().join("hello.json");
    std::fs::write(
        &cfg,
        r#"{"command": ["sh", "-c", "echo hello from the cli"]}"#,
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let (code, out, err) = mljm(
        &app,
        &[
            "--json", "create", "--type", "SCRIPT", "--label", "cli job", "--config", &cfg, "--run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let job: Value = serde_json::from_str(&out).unwrap();
    let id = job["job_id"].as_str().unwrap().to_string();
    assert_eq!(job["phase"], "QUEUED");
    app.wait_phase(&id, "COMPLETED", Duration::from_secs(10))
        .await;

    let (code, out, _) = mljm(&app, &["list"]).await;
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("JOB_ID"));
    assert!(
        out.contains(&id) && out.contains("COMPLETED") && out.contains("cli job"),
        "{out}"
    );
    let (code, out, _) = mljm(&app, &["show", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("phase:       COMPLETED"), "{out}");
    let (code, out, _) = mljm(&app, &["log", &id, "--follow"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("hello from the cli"), "{out}");
    // Errors: the server's message on stderr, exit status 1; bad usage is 2.
    let (code, _, err) = mljm(&app, &["abort", &id]).await;
    assert_eq!(code, 1);
    assert!(err.contains("409") && err.contains("COMPLETED"), "{err}");
    let (code, _, err) = mljm(&app, &["show", "00000000-0000-0000-0000-000000000000"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    assert_eq!(mljm(&app, &["frobnicate"]).await.0, 2);
}

/// With no server at the address, the client says that nothing answers there, why, and how
/// to point it elsewhere (no database: runs once).
#[tokio::test]
async fn the_jobs_client_says_when_nothing_answers() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let out = mljm::child::no_inherit_async(&mut tokio::process::Command::new(env!(
        "CARGO_BIN_EXE_mljm"
    )))
    .args(["jobs", "--server", &server, "list"])
    .output()
    .await
    .expect("mljm runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("nothing answers at {server}")),
        "{err}"
    );
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("--server"), "{err}");
}
