//! Crash recovery: `mljm serve` killed with SIGKILL in the middle of a SCRIPT job and of a
//! preprocessing run, then started again on the same data dir and database. No job stays
//! PROCESSING, the killed job's processes are gone, every job is still listed, the next runs.

use std::{
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    helpers::{Api, Backend, TestDb, id, mljm_child, process_alive, wait_file, wait_process_gone},
    on_both_backends,
    preprocessing::many_spectra,
};

on_both_backends!(
    serve_killed_during_a_script_job_recovers_on_restart,
    serve_killed_during_preprocessing_recovers_on_restart,
);

/// A `mljm serve` child process on a free port; its [`Api`] methods are reached through
/// `Deref`.
pub struct Serve {
    child: Child,
    http: Api,
}

impl Serve {
    async fn start(data_dir: &Path, db: &TestDb, log: &Path) -> Serve {
        Serve::start_with_config(data_dir, db, log, Path::new("/dev/null")).await
    }

    /// With `config` as its `config.toml`.
    pub async fn start_with_config(
        data_dir: &Path,
        db: &TestDb,
        log: &Path,
        config: &Path,
    ) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = mljm_child(&["serve", "--workers", "2", "--database-url", &db.url], log)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("MLJM_CONFIG", config)
            .spawn()
            .expect("mljm serve starts");
        let serve = Serve {
            child,
            http: Api::new(port),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while serve.api.get(serve.url("/api/jobs/")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "serve never answered: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        serve
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl std::ops::Deref for Serve {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.http
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The job is in one of `phases`.
fn in_phase(phases: &'static [&'static str]) -> impl Fn(&Value) -> bool {
    move |job| phases.iter().any(|p| job["phase"] == *p)
}

async fn serve_killed_during_a_script_job_recovers_on_restart(b: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = TestDb::create(&b, tmp.path()).await;
    let serve = Serve::start(&data, &db, &tmp.path().join("serve1.log")).await;
    let mut before = Vec::new();
    for i in 0..3 {
        let job = serve
            .create(
                "SCRIPT",
                &format!("waiting {i}"),
                json!({"command": ["true"]}),
            )
            .await;
        before.push(id(&job));
    }
    // The script's own child (a grandchild of serve) outlives a SIGKILL of serve unless
    // recovery finds it.
    let script = "sleep 300 & echo $! > grandchild.pid; wait";
    let long = id(&serve.create_script("long", script).await);
    serve.run(&long).await;
    let job = serve
        .wait_phase(&long, "PROCESSING", Duration::from_secs(20))
        .await;
    let pid_file = data
        .join("files")
        .join(job["dir_path"].as_str().unwrap().trim_start_matches('/'))
        .join("grandchild.pid");
    let grandchild: i32 = wait_file(&pid_file, Duration::from_secs(10))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(grandchild), "the grandchild runs");
    serve.kill9();
    // The script's watcher takes its whole process group with the killed server, without
    // waiting for the next start's reaper.
    wait_process_gone(
        grandchild,
        Duration::from_secs(5),
        "the killed server's script",
    )
    .await;

    let t0 = Instant::now();
    let serve = Serve::start(&data, &db, &tmp.path().join("serve2.log")).await;
    let lost = serve
        .wait_phase(&long, "ERROR", Duration::from_secs(30))
        .await;
    assert!(
        lost["error"].as_str().unwrap().contains("worker lost"),
        "{lost}"
    );
    eprintln!(
        "the killed job ended in ERROR {:.1} s after the restart",
        t0.elapsed().as_secs_f64()
    );
    let listed: Value = serve.get_json("/api/jobs/?limit=100").await;
    assert_eq!(
        listed["total"], 4,
        "every job created before the kill is listed"
    );
    for id in &before {
        assert_eq!(serve.job(id).await["phase"], "PENDING");
    }
    serve.run(&before[0]).await;
    serve
        .wait_phase(&before[0], "COMPLETED", Duration::from_secs(20))
        .await;
}

async fn serve_killed_during_preprocessing_recovers_on_restart(b: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    many_spectra(&data.join("spectra"), 10_000);
    let db = TestDb::create(&b, tmp.path()).await;
    let serve = Serve::start(&data, &db, &tmp.path().join("serve1.log")).await;
    let config = json!({"data_dir_path": "/", "wave_start_point": 3800, "wave_end_point": 9000, "wave_point_count": 600});
    let prep = id(&serve.create("DATA_PREPROCESSING", "survey", config).await);
    serve.run(&prep).await;
    let job = serve
        .wait_for(&prep, Duration::from_secs(20), |job| {
            job["phase"] == "PROCESSING" || job["phase"] == "COMPLETED"
        })
        .await;
    assert_eq!(
        job["phase"], "PROCESSING",
        "the kill must land mid-run: {job}"
    );
    serve.kill9();
    let dir = data
        .join("files")
        .join(job["dir_path"].as_str().unwrap().trim_start_matches('/'));
    // The run renames result.h5 into place as its last step: without it, the kill landed
    // before the end and the restarted server has the whole run to do.
    assert!(
        !dir.join("result.h5").exists(),
        "the job finished before the kill: the test proves nothing (use a bigger survey)"
    );

    let serve = Serve::start(&data, &db, &tmp.path().join("serve2.log")).await;
    // Preprocessing is safe to retry: the reaper queues it again and it runs to the end.
    let done = serve
        .wait_for(
            &prep,
            Duration::from_secs(60),
            in_phase(&["COMPLETED", "ERROR"]),
        )
        .await;
    assert_eq!(done["phase"], "COMPLETED", "{done}");
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.matches("wrote 10000 spectra").count() == 1, "{log}");
    let set = mljm::science::h5::read_spectra(&dir.join("result.h5")).unwrap();
    assert_eq!(set.filenames.len(), 10_000);
    let next = id(&serve
        .create("SCRIPT", "next", json!({"command": ["true"]}))
        .await);
    serve.run(&next).await;
    serve
        .wait_phase(&next, "COMPLETED", Duration::from_secs(20))
        .await;
}
