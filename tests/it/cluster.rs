//! Cluster jobs against the real one-node SLURM cluster that `.ci/slurm` starts (SPEC §8):
//! partitions and GRES from sinfo, targets checked at create, a SCRIPT that completes with
//! its output in the live log, one that exits 3, one that outlives its time, an ABORT that
//! SLURM shows CANCELLED, preprocessing on the node, one squeue per poll for 50 jobs, and
//! jobs that outlive a controller outage and a restart of `mljm serve`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, Options, TestApp, TestDb, id, spawn_app_with},
    preprocessing::{assert_same_result, copy_dir, fixture, prep_config},
    recovery::Serve,
};

crate::on_both_backends!(
    slurm;
    a_script_runs_on_the_cluster_and_ends_as_slurm_says,
    over_ssh,
    preprocessing_on_the_node_matches_local_and_overtime_is_timeout,
    fifty_active_jobs_take_one_squeue_per_poll,
    jobs_outlive_a_controller_outage_and_a_restart_of_serve,
    a_sweep_is_one_sbatch_and_its_tasks_end_on_their_own,
);

crate::on_both_backends!(slurm_browser; the_clusters_page_shows_partitions_and_gpus);

/// The cluster is one for the whole test binary: tests that stop its controller or count
/// SSH masters have it alone (write), the others share it (read).
static ONE_CLUSTER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const MINUTE: Duration = Duration::from_secs(60);

/// The local test cluster, polled every 5 s, running this build's mljm on the node.
fn test_cluster() -> mljm::config::ClusterConfig {
    mljm::config::ClusterConfig {
        poll_s: 5.0,
        mljm_path: env!("CARGO_BIN_EXE_mljm").into(),
        ..mljm::config::ClusterConfig::new("test", mljm::config::Submit::Local)
    }
}

async fn cluster_app_with(b: Backend, cluster: mljm::config::ClusterConfig) -> TestApp {
    spawn_app_with(
        b,
        Options {
            clusters: vec![cluster],
            ..Default::default()
        },
    )
    .await
}

async fn cluster_app(b: Backend) -> TestApp {
    cluster_app_with(b, test_cluster()).await
}

async fn script(app: &TestApp, command: &str, extra: Value) -> Value {
    let mut target = json!({"cluster": "test", "partition": "debug"});
    if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
        t.extend(e.clone());
    }
    let resp = app
        .post_job(
            "SCRIPT",
            &json!({"command": ["sh", "-c", command], "target": target}),
        )
        .await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let job: Value = resp.json().await.unwrap();
    app.run(&id(&job)).await;
    job
}

/// `n` SCRIPT jobs of `sh -c command` on the test cluster, run; their ids.
async fn run_scripts(api: &crate::helpers::Api, n: usize, command: &str) -> Vec<String> {
    let mut jobs = Vec::new();
    for i in 0..n {
        let job = api
            .create(
                "SCRIPT",
                &format!("script {i}"),
                json!({"command": ["sh", "-c", command], "target": {"cluster": "test"}}),
            )
            .await;
        api.run(&id(&job)).await;
        jobs.push(id(&job));
    }
    jobs
}

/// `mljm ARGS --server <the app>`, its stdin empty; the output whatever the status.
async fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_mljm"));
    mljm::child::no_inherit_async(&mut c)
        .args(args)
        .arg("--server")
        .arg(format!("http://127.0.0.1:{}", app.port))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

/// `scontrol show job`'s `Key=Value` words.
fn scontrol_words(external: &str) -> std::collections::HashMap<String, String> {
    let out = mljm::child::no_inherit(&mut std::process::Command::new("scontrol"))
        .args(["show", "job", external])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Seconds between two of SLURM's `2026-12-05T06:45:18` times.
fn slurm_seconds(from: &str, to: &str) -> i64 {
    let t = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap();
    (t(to) - t(from)).num_seconds()
}

fn scontrol_state(external: &str) -> String {
    let out = mljm::child::no_inherit(&mut std::process::Command::new("scontrol"))
        .args(["show", "job", external])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or_default()
        .to_string()
}

async fn a_script_runs_on_the_cluster_and_ends_as_slurm_says(b: Backend) {
    let _shared = ONE_CLUSTER.read().await;
    let app = cluster_app(b).await;

    // The cluster as sinfo sees it: the debug partition with the test GRES.
    let list: Vec<Value> = app.get_json("/api/clusters").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["reachable"], true, "{list:?}");
    let info: Value = app.get_json("/api/clusters/test").await;
    let debug = &info["partitions"][0];
    assert_eq!(debug["name"], "debug");
    assert_eq!(debug["default"], true);
    assert_eq!(debug["gpus"][0]["type"], "testgpu", "{info}");
    assert_eq!(debug["gpus"][0]["total"], 2);
    assert_eq!(app.get("/api/clusters/nope").await.status(), 404);
    // The same from the command line.
    let out = cli(&app, &["clusters", "show", "test"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        table.contains("debug*") && table.contains("testgpu 2/"),
        "{table}"
    );
    let out = cli(&app, &["clusters", "list"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("answers"),
        "{out:?}"
    );
    let config = app.data_dir.join("true.json");
    std::fs::write(&config, r#"{"command": ["true"]}"#).unwrap();
    let out = cli(
        &app,
        &[
            "jobs",
            "create",
            "--type",
            "SCRIPT",
            "--label",
            "from the shell",
            "--cluster",
            "test",
            "--partition",
            "nope",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no partition \"nope\""),
        "{out:?}"
    );

    // Targets are checked at create, naming the field.
    for (target, field) in [
        (json!({"cluster": "elsewhere"}), "target.cluster"),
        (
            json!({"cluster": "test", "partition": "gpu"}),
            "target.partition",
        ),
        (json!({"cluster": "test", "gpus": "a100:0"}), "target.gpus"),
        (json!({"cluster": "test", "time": "1h"}), "target.time"),
        (json!({"cluster": "test", "queue": "x"}), "target"),
    ] {
        let resp = app
            .post_job("SCRIPT", &json!({"command": ["true"], "target": target}))
            .await;
        assert_eq!(resp.status(), 422, "{target}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{target}: {body}"
        );
    }

    // QUEUED → PROCESSING → COMPLETED, with the output in the live log.
    let asked = std::time::Instant::now();
    let ok = script(
        &app,
        "echo hello from the node; sleep 6; echo done",
        json!({"gpus": "testgpu:1"}),
    )
    .await;
    let running = app.wait_phase(&id(&ok), "PROCESSING", MINUTE).await;
    let seen = asked.elapsed();
    assert_eq!(running["cluster"], "test");
    let slurm = scontrol_words(running["external_id"].as_str().unwrap());
    eprintln!(
        "submit to RUNNING: SLURM {} s (SubmitTime {} → StartTime {}); mljm showed \
         PROCESSING {:.1} s after RUN (poll_s 5)",
        slurm_seconds(&slurm["SubmitTime"], &slurm["StartTime"]),
        slurm["SubmitTime"],
        slurm["StartTime"],
        seen.as_secs_f64()
    );
    assert!(
        running["external_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{running}"
    );
    assert!(
        running["node"].as_str().is_some_and(|s| !s.is_empty()),
        "{running}"
    );
    app.wait_log(&id(&ok), "hello from the node", MINUTE).await;
    let done = app.wait_phase(&id(&ok), "COMPLETED", MINUTE).await;
    assert_eq!(done["exit_code"], 0);
    let log = app.log(&id(&ok)).await;
    assert!(
        log.contains("submitted to cluster test as SLURM job") && log.contains("done"),
        "{log}"
    );
    let sbatch = std::fs::read_to_string(app.job_dir(&done).join("job.sbatch")).unwrap();
    assert!(
        sbatch.contains("#SBATCH --partition=debug")
            && sbatch.contains("#SBATCH --gres=gpu:testgpu:1"),
        "{sbatch}"
    );

    // The ML Task Manager's upload form, as it wrote it, runs on the cluster it names; its
    // own keys stay in the config, and its image is the container the batch script runs.
    let task_manager = |image: &str| {
        json!({"label": "task manager", "command": "sh train.sh",
               "runner_location": "test", "dataset_name": "lamost-dr2",
               "model_params": {"epochs": 3},
               "clusters": {"test": {"infra_config": {"instance_type": "debug",
                                                      "image_name": image}}}})
    };
    let submit = |config: Value| {
        let form = reqwest::multipart::Form::new()
            .text("config", config.to_string())
            .part(
                "entrypoint",
                reqwest::multipart::Part::bytes(
                    b"#!/bin/sh\necho training on $(hostname) with $(grep -c lamost-dr2 config.json) dataset\n"
                        .to_vec(),
                )
                .file_name("train.sh"),
            );
        app.api
            .post(app.url("/api/jobs/submit"))
            .multipart(form)
            .send()
    };
    let resp = submit(task_manager("")).await.unwrap();
    assert_eq!(resp.status(), 202);
    let tm: Value = resp.json().await.unwrap();
    assert_eq!(tm["cluster"], "test", "{tm}");
    assert_eq!(tm["config"]["model_params"]["epochs"], 3);
    assert_eq!(tm["config"]["target"]["partition"], "debug");
    app.wait_phase(&id(&tm), "COMPLETED", MINUTE).await;
    assert!(
        app.log(&id(&tm)).await.contains("with 1 dataset"),
        "{}",
        app.log(&id(&tm)).await
    );
    let resp = submit(task_manager("/images/lamost.sif")).await.unwrap();
    assert_eq!(resp.status(), 202);
    let boxed: Value = resp.json().await.unwrap();
    // The test cluster has no apptainer: the script says so and the job fails, but it was
    // asked to run in the image.
    app.wait_phase(&id(&boxed), "ERROR", MINUTE).await;
    let sbatch = std::fs::read_to_string(app.job_dir(&boxed).join("job.sbatch")).unwrap();
    assert!(
        sbatch.contains("exec apptainer exec /images/lamost.sif sh -c 'sh train.sh'"),
        "{sbatch}"
    );
    let mut elsewhere = task_manager("");
    elsewhere["runner_location"] = json!("hpc-nowhere");
    let resp = submit(elsewhere).await.unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "config.runner_location", "{body}");

    // An exit status of 3 is ERROR with SLURM's state and the code.
    let bad = script(&app, "echo failing; exit 3", json!({})).await;
    let failed = app.wait_phase(&id(&bad), "ERROR", MINUTE).await;
    assert_eq!(failed["exit_code"], 3, "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("FAILED") && error.contains("exit code 3"),
        "{error}"
    );

    // ABORT of a running job: ABORTED here, CANCELLED there.
    let long = script(&app, "sleep 300", json!({})).await;
    let running = app.wait_phase(&id(&long), "PROCESSING", MINUTE).await;
    let external = running["external_id"].as_str().unwrap().to_string();
    let resp = app
        .post(&format!("/api/jobs/{}/process/ABORT", id(&long)))
        .await;
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    app.wait_phase(&id(&long), "ABORTED", MINUTE).await;
    let deadline = std::time::Instant::now() + MINUTE;
    while !scontrol_state(&external).starts_with("CANCELLED") {
        assert!(
            std::time::Instant::now() < deadline,
            "SLURM says {}",
            scontrol_state(&external)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A finished cluster job is deleted as any other.
    assert_eq!(
        app.delete(&format!("/api/jobs/{}", id(&ok))).await.status(),
        204
    );
}

/// A loopback sshd on a free port with a host key and a client key made here; stopped on drop.
struct Sshd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keygen = |name: &str| {
            let ok = mljm::child::no_inherit(&mut std::process::Command::new("ssh-keygen"))
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(name))
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen {name}");
        };
        keygen("host");
        keygen("client");
        keygen("stranger");
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = mljm::child::no_inherit(&mut std::process::Command::new("/usr/sbin/sshd"))
            .args([
                "-D",
                "-e",
                "-p",
                &port.to_string(),
                "-o",
                "ListenAddress=127.0.0.1",
            ])
            .arg("-h")
            .arg(d.join("host"))
            .arg("-o")
            .arg(format!(
                "AuthorizedKeysFile={}",
                d.join("authorized_keys").display()
            ))
            .args(["-o", "StrictModes=no", "-o", "PasswordAuthentication=no"])
            .arg("-o")
            .arg(format!("PidFile={}", d.join("sshd.pid").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let host = std::fs::read_to_string(d.join("host.pub")).unwrap();
        let host = host
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host}\n"),
        )
        .unwrap();
        std::fs::write(d.join("empty_known_hosts"), "").unwrap();
        Sshd { child, dir, port }
    }

    fn cluster(&self, name: &str, key: &str, known: &str) -> mljm::config::ClusterConfig {
        let d = self.dir.path();
        mljm::config::ClusterConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            identity_file: d.join(key).display().to_string(),
            known_hosts: d.join(known).display().to_string(),
            workspace: d.join("workspace").display().to_string(),
            poll_s: 5.0,
            ..mljm::config::ClusterConfig::new(name, mljm::config::Submit::Ssh)
        }
    }
}

/// Over SSH (a loopback sshd): strict host keys, key authentication, sbatch through the
/// one reused connection.
async fn over_ssh(b: Backend) {
    let _alone = ONE_CLUSTER.write().await;
    let sshd = Sshd::start();
    let clusters = vec![
        sshd.cluster("ssh", "client", "known_hosts"),
        sshd.cluster("unknown-host", "client", "empty_known_hosts"),
        sshd.cluster("wrong-key", "stranger", "known_hosts"),
        mljm::config::ClusterConfig {
            shared_fs: false,
            workspace: sshd.dir.path().join("staged-ws").display().to_string(),
            // This test program is not mljm: the server copies the real one there.
            local_mljm: env!("CARGO_BIN_EXE_mljm").into(),
            ..sshd.cluster("staged", "client", "known_hosts")
        },
    ];
    let app = spawn_app_with(
        b,
        Options {
            clusters,
            ..Default::default()
        },
    )
    .await;
    // An unknown host key and a refused key are clear errors at once, not hung jobs.
    let resp = app.get("/api/clusters/unknown-host").await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("host key") && text.contains("refused"),
        "{text}"
    );
    let resp = app.get("/api/clusters/wrong-key").await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("stranger") && text.contains("refused"),
        "{text}"
    );
    // `mljm clusters show` says so at once.
    let out = cli(&app, &["clusters", "show", "wrong-key"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("502") && said.contains("refused"),
        "{out:?}"
    );
    let list: Vec<Value> = app.get_json("/api/clusters").await;
    let reachable: Vec<(&str, bool)> = list
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["reachable"] == true))
        .collect();
    assert_eq!(
        reachable,
        [
            ("ssh", true),
            ("unknown-host", false),
            ("wrong-key", false),
            ("staged", true)
        ]
    );

    // A SCRIPT submitted with sbatch over the SSH connection completes, its output followed.
    let resp = app
        .post_job(
            "SCRIPT",
            &json!({"command": ["sh", "-c", "echo over ssh on $(hostname)"], "target": {"cluster": "ssh"}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let job: Value = resp.json().await.unwrap();
    app.run(&id(&job)).await;
    let done = app.wait_phase(&id(&job), "COMPLETED", MINUTE).await;
    assert_eq!(done["cluster"], "ssh");
    app.wait_log(&id(&job), "over ssh on", MINUTE).await;

    // A cluster without the data directory (shared_fs = false): the job's folder goes to
    // the workspace, its output is read from there, and what it wrote comes back.
    let ws = sshd.dir.path().join("staged-ws");
    let staged = app
        .create(
            "SCRIPT",
            "staged",
            json!({"command": ["sh", "-c",
                   "echo staged in $(pwd); cat input.txt; echo result > out.txt"],
                   "target": {"cluster": "staged"}}),
        )
        .await;
    std::fs::write(
        app.job_dir(&staged).join("input.txt"),
        "an input placed in the folder\n",
    )
    .unwrap();
    app.run(&id(&staged)).await;
    let done = app.wait_phase(&id(&staged), "COMPLETED", 2 * MINUTE).await;
    let log = app.log(&id(&staged)).await;
    assert!(
        log.contains(&format!("staged in {}/data/files/JOBS/", ws.display()))
            && log.contains("an input placed in the folder"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(app.job_dir(&done).join("out.txt")).unwrap(),
        "result\n"
    );
    // A built-in type: its input folder staged, mljm itself copied into the workspace (the
    // cluster has none), and its result.h5 back here.
    copy_dir(&fixture().join("spectra"), &app.data_dir.join("spectra"));
    let mut config = prep_config("/");
    config["target"] = json!({"cluster": "staged"});
    let prep = app
        .create("DATA_PREPROCESSING", "staged prep", config)
        .await;
    app.run(&id(&prep)).await;
    let done = app
        .wait_for(&id(&prep), 3 * MINUTE, |j| {
            j["phase"] != "QUEUED" && j["phase"] != "PROCESSING"
        })
        .await;
    let log = app.log(&id(&prep)).await;
    assert_eq!(done["phase"], "COMPLETED", "{done}\n{log}");
    assert!(log.contains("wrote 26 spectra to result.h5"), "{log}");
    let spectra = mljm::science::h5::read_spectra(&app.job_dir(&done).join("result.h5")).unwrap();
    let local = tempfile::tempdir().unwrap();
    let out = crate::helpers::mljm([
        "run",
        "DATA_PREPROCESSING",
        "--data-dir",
        app.data_dir.to_str().unwrap(),
        "--config",
        app.job_dir(&done).join("config.json").to_str().unwrap(),
        "--out",
        local.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        spectra,
        mljm::science::h5::read_spectra(&local.path().join("result.h5")).unwrap(),
        "the staged run wrote what a local one writes"
    );
    assert!(
        ws.join(format!("bin/mljm-{}", env!("CARGO_PKG_VERSION")))
            .exists()
    );
    app.state.clusters.close().await;
    let socket = format!("mljm-ssh-{}", std::process::id());
    assert!(
        mljm::child::no_inherit(&mut std::process::Command::new("pgrep"))
            .args(["-f", &socket])
            .output()
            .unwrap()
            .stdout
            .is_empty(),
        "the SSH master connection is closed"
    );
}

/// DATA_PREPROCESSING run by `mljm run` on the node writes the `result.h5` a local run does;
/// a SCRIPT that outlives its one-minute `time` ends in ERROR with SLURM's TIMEOUT.
async fn preprocessing_on_the_node_matches_local_and_overtime_is_timeout(b: Backend) {
    let _shared = ONE_CLUSTER.read().await;
    let app = cluster_app(b).await;
    // SLURM checks time limits every 30 s or so: this one ends a minute or two from now.
    let late = script(&app, "echo started; sleep 600", json!({"time": "1"})).await;

    copy_dir(&fixture().join("spectra"), &app.data_dir.join("spectra"));
    let mut there = prep_config("/");
    there["target"] = json!({"cluster": "test", "cpus": 2});
    let remote = app.create("DATA_PREPROCESSING", "on the node", there).await;
    let local = app
        .create("DATA_PREPROCESSING", "here", prep_config("/"))
        .await;
    app.run(&id(&remote)).await;
    app.run(&id(&local)).await;
    let remote = app.wait_phase(&id(&remote), "COMPLETED", 2 * MINUTE).await;
    let local = app.wait_phase(&id(&local), "COMPLETED", MINUTE).await;
    assert_eq!(remote["cluster"], "test");
    assert!(local["cluster"].is_null(), "{local}");
    let (ours, theirs) = (
        app.job_dir(&local).join("result.h5"),
        app.job_dir(&remote).join("result.h5"),
    );
    assert_same_result(&ours, &theirs, 0.0);
    let (a, b) = (
        mljm::science::h5::read_spectra(&ours).unwrap(),
        mljm::science::h5::read_spectra(&theirs).unwrap(),
    );
    assert_eq!(a, b, "the same file, row for row");
    let log = app.log(&id(&remote)).await;
    assert!(log.contains("wrote 26 spectra to result.h5"), "{log}");
    let sbatch = std::fs::read_to_string(app.job_dir(&remote).join("job.sbatch")).unwrap();
    assert!(
        sbatch.contains("#SBATCH --cpus-per-task=2")
            && sbatch.contains(" run DATA_PREPROCESSING --config"),
        "{sbatch}"
    );

    let timed_out = app.wait_phase(&id(&late), "ERROR", 4 * MINUTE).await;
    let error = timed_out["error"].as_str().unwrap();
    assert!(error.contains("TIMEOUT"), "{error}");
    assert!(app.log(&id(&late)).await.contains("started"));
}

/// A directory of wrappers for the SLURM commands that log each call (time, program,
/// arguments) to `calls.log` beside them, then run the real one.
fn counting_wrappers() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    for program in ["sbatch", "squeue", "scontrol", "sacct", "scancel", "sinfo"] {
        let real = ["/usr/bin", "/usr/local/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(program))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{program} is not installed"));
        let path = dir.path().join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$(date +%s.%N) {program} $*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// The test cluster with its SLURM commands behind `counting_wrappers`.
async fn counted_cluster_app(b: Backend) -> (TestApp, tempfile::TempDir) {
    let wrappers = counting_wrappers();
    let app = cluster_app_with(
        b,
        mljm::config::ClusterConfig {
            slurm_bin: wrappers.path().display().to_string(),
            ..test_cluster()
        },
    )
    .await;
    (app, wrappers)
}

/// `(seconds, program, arguments)` of every call the wrappers logged.
fn calls(dir: &std::path::Path) -> Vec<(f64, String, String)> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            Some((
                w.next()?.parse().ok()?,
                w.next()?.to_string(),
                w.next().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// With 50 active jobs on the cluster, each poll is one `squeue` naming all of them, at most
/// one per `poll_s`; all 50 complete.
async fn fifty_active_jobs_take_one_squeue_per_poll(b: Backend) {
    let _shared = ONE_CLUSTER.read().await;
    let (app, wrappers) = counted_cluster_app(b).await;
    let jobs = run_scripts(&app, 50, "sleep 4; echo task $MLJM_JOB_ID").await;
    for job in &jobs {
        app.wait_phase(job, "COMPLETED", 4 * MINUTE).await;
    }
    let calls = calls(wrappers.path());
    let sbatches = calls.iter().filter(|c| c.1 == "sbatch").count();
    assert_eq!(sbatches, 50, "one sbatch per job");
    let squeues: Vec<&(f64, String, String)> = calls.iter().filter(|c| c.1 == "squeue").collect();
    assert!(!squeues.is_empty());
    // One squeue per interval (5 s; a little slack for the clock of `date`).
    for pair in squeues.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 4.5,
            "two squeue calls {:.2} s apart",
            pair[1].0 - pair[0].0
        );
    }
    // Once all 50 were submitted, the next poll asked about all 50 at once.
    let last_sbatch = calls
        .iter()
        .filter(|c| c.1 == "sbatch")
        .map(|c| c.0)
        .fold(0.0, f64::max);
    let ids = |args: &str| {
        args.split_whitespace()
            .skip_while(|w| *w != "-j")
            .nth(1)
            .map_or(0, |list| list.split(',').count())
    };
    let widest = squeues.iter().map(|c| ids(&c.2)).max().unwrap();
    let after = squeues.iter().find(|c| c.0 > last_sbatch).unwrap();
    assert!(
        ids(&after.2) >= 40 && widest == 50,
        "the first poll after the last submission named {} jobs; the widest {widest}",
        ids(&after.2)
    );
    // Nothing was asked job by job: squeue keeps finished jobs for MinJobAge.
    let alone = calls.iter().filter(|c| c.1 == "scontrol" || c.1 == "sacct");
    assert_eq!(alone.count(), 0, "{calls:?}");
    eprintln!(
        "50 jobs: {} squeue calls over {:.0} s, the widest naming {widest} jobs",
        squeues.len(),
        squeues.last().unwrap().0 - squeues[0].0
    );
}

/// slurmctld stopped until dropped; started again (and answering) on drop, even after a
/// failed assertion.
struct ControllerDown;

impl ControllerDown {
    fn stop() -> ControllerDown {
        let ok = mljm::child::no_inherit(&mut std::process::Command::new("pkill"))
            .args(["-x", "slurmctld"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "slurmctld was running");
        let deadline = std::time::Instant::now() + MINUTE;
        while slurm_answers() {
            assert!(std::time::Instant::now() < deadline, "slurmctld stays up");
            std::thread::sleep(Duration::from_millis(200));
        }
        ControllerDown
    }
}

fn slurm_answers() -> bool {
    mljm::child::no_inherit(&mut std::process::Command::new("squeue"))
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for ControllerDown {
    fn drop(&mut self) {
        // The daemon keeps none of this test's streams (cargo's output pipe stays closable).
        let _ = mljm::child::no_inherit(&mut std::process::Command::new("slurmctld"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + MINUTE;
        while !slurm_answers() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Two running cluster jobs; slurmctld stopped for a minute, and `mljm serve` killed and
/// started again in it: no job fails, both complete once the controller is back, their
/// output followed into the log without a line lost or repeated.
async fn jobs_outlive_a_controller_outage_and_a_restart_of_serve(b: Backend) {
    let _alone = ONE_CLUSTER.write().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = TestDb::create(&b, tmp.path()).await;
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[clusters]]\nname = \"test\"\nsubmit = \"local\"\npoll_s = 5\nmljm_path = {:?}\n",
            env!("CARGO_BIN_EXE_mljm")
        ),
    )
    .unwrap();
    let serve = Serve::start_with_config(&data, &db, &tmp.path().join("serve1.log"), &config).await;
    let jobs = run_scripts(&serve, 2, "echo begun; sleep 75; echo ended").await;
    for job in &jobs {
        serve.wait_phase(job, "PROCESSING", MINUTE).await;
    }
    let down = ControllerDown::stop();
    let stopped = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    serve.kill9();
    let serve = Serve::start_with_config(&data, &db, &tmp.path().join("serve2.log"), &config).await;
    while stopped.elapsed() < MINUTE {
        for job in &jobs {
            assert_eq!(serve.job(job).await["phase"], "PROCESSING");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    drop(down);
    for job in &jobs {
        let done = serve.wait_phase(job, "COMPLETED", 2 * MINUTE).await;
        assert_eq!(done["exit_code"], 0, "{done}");
        let log = serve.log(job).await;
        assert_eq!(log.matches("begun").count(), 1, "{log}");
        assert_eq!(log.matches("ended").count(), 1, "{log}");
    }
    let log = std::fs::read_to_string(tmp.path().join("serve2.log")).unwrap();
    assert!(log.contains("poll failed"), "the outage was seen: {log}");
}

/// A sweep's tasks (`GET /api/jobs?parent=`), by index.
async fn tasks(app: &TestApp, sweep: &Value) -> Vec<Value> {
    let page: Value = app
        .get_json(&format!("/api/jobs?parent={}&limit=1000", id(sweep)))
        .await;
    let mut tasks = page["jobs"].as_array().cloned().unwrap_or_default();
    tasks.sort_by_key(|t| t["config"]["array_task"].as_u64());
    tasks
}

/// A 20-task sweep with `%4` is one sbatch, never runs more than 4 tasks at once, and each
/// task ends COMPLETED with its own log; a list of parameter sets with one failing set ends
/// in ERROR naming it; ABORT of a sweep cancels every task; a 500-task sweep is timed.
async fn a_sweep_is_one_sbatch_and_its_tasks_end_on_their_own(b: Backend) {
    let _shared = ONE_CLUSTER.read().await;
    let (app, wrappers) = counted_cluster_app(b).await;
    // A sweep is checked at create: it needs a cluster, and its sets name their fields.
    for (config, field) in [
        (json!({"command": ["true"], "array": "0-3"}), "array"),
        (
            json!({"command": ["true"], "array": "0-3%0", "target": {"cluster": "test"}}),
            "array",
        ),
        (
            json!({"array": [{"command": ["true"]}, {"command": "x"}],
                   "target": {"cluster": "test"}}),
            "array[1].command",
        ),
    ] {
        let resp = app.post_job("SCRIPT", &config).await;
        assert_eq!(resp.status(), 422, "{config}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["field"], field, "{body}");
    }

    let sweep = app
        .create(
            "SCRIPT",
            "twenty",
            json!({"command": ["sh", "-c",
                   "echo start $SLURM_ARRAY_TASK_ID $(date +%s%N); sleep 2; \
                    echo end $SLURM_ARRAY_TASK_ID $(date +%s%N)"],
                   "array": "0-19", "array_parallelism": 4,
                   "target": {"cluster": "test"}}),
        )
        .await;
    let made = tasks(&app, &sweep).await;
    assert_eq!(made.len(), 20);
    assert!(made.iter().all(|t| t["phase"] == "PENDING"));
    // A task runs with its sweep, not alone.
    let alone = app
        .post(&format!("/api/jobs/{}/process/RUN", id(&made[0])))
        .await;
    assert_eq!(alone.status(), 409);
    app.run(&id(&sweep)).await;
    let done = app.wait_phase(&id(&sweep), "COMPLETED", 4 * MINUTE).await;
    let external = done["external_id"].as_str().unwrap().to_string();
    let script = std::fs::read_to_string(app.job_dir(&done).join("job.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-19%4"), "{script}");
    let calls = calls(wrappers.path());
    assert_eq!(
        calls.iter().filter(|c| c.1 == "sbatch").count(),
        1,
        "one sbatch for the sweep"
    );
    let mut spans = Vec::new();
    for (i, task) in tasks(&app, &sweep).await.iter().enumerate() {
        assert_eq!(task["phase"], "COMPLETED", "{task}");
        assert_eq!(task["exit_code"], 0, "{task}");
        assert_eq!(task["external_id"], format!("{external}_{i}"));
        let log = app.log(&id(task)).await;
        let at = |word: &str| -> u128 {
            let line = log
                .lines()
                .find(|l| l.contains(&format!("{word} {i} ")))
                .unwrap_or_else(|| panic!("task {i} has no {word:?} line: {log}"));
            line.rsplit(' ').next().unwrap().trim().parse().unwrap()
        };
        spans.push((at("start"), at("end")));
        assert_eq!(
            log.matches("start ").count(),
            1,
            "only its own output: {log}"
        );
    }
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert!(
        (2..=4).contains(&most),
        "{most} tasks ran at once (cap 4): {spans:?}"
    );

    // Parameter sets: each task its own env; one exits 3 and the sweep says which.
    let mixed = app
        .create(
            "SCRIPT",
            "mixed",
            json!({"command": ["sh", "-c", "echo code $CODE; exit $CODE"],
                   "env": {"CODE": "0"}, "array": [{}, {"env": {"CODE": "3"}}],
                   "target": {"cluster": "test"}}),
        )
        .await;
    app.run(&id(&mixed)).await;
    let failed = app.wait_phase(&id(&mixed), "ERROR", 2 * MINUTE).await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.starts_with("1 of 2 tasks failed: task 1"), "{error}");
    let pair = tasks(&app, &mixed).await;
    assert_eq!(pair[0]["phase"], "COMPLETED");
    assert_eq!(pair[1]["phase"], "ERROR");
    assert_eq!(pair[1]["exit_code"], 3);
    assert!(app.log(&id(&pair[1])).await.contains("code 3"));

    // ABORT of the sweep: every task ABORTED, and SLURM cancels them.
    let long = app
        .create(
            "SCRIPT",
            "long",
            json!({"command": ["sleep", "600"], "array": "0-5%2",
                   "target": {"cluster": "test"}}),
        )
        .await;
    app.run(&id(&long)).await;
    let running = app.wait_phase(&id(&long), "PROCESSING", 2 * MINUTE).await;
    let array = running["external_id"].as_str().unwrap().to_string();
    let resp = app
        .post(&format!("/api/jobs/{}/process/ABORT", id(&long)))
        .await;
    assert_eq!(resp.status(), 202);
    // ABORTED once SLURM confirms, within a poll or two.
    app.wait_phase(&id(&long), "ABORTED", MINUTE).await;
    let ended = tasks(&app, &long).await;
    assert!(ended.iter().all(|t| t["phase"] == "ABORTED"), "{ended:?}");
    let deadline = std::time::Instant::now() + MINUTE;
    while !scontrol_state(&format!("{array}_0")).starts_with("CANCELLED") {
        assert!(std::time::Instant::now() < deadline, "SLURM did not cancel");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Deleting the sweep deletes its tasks.
    assert_eq!(
        app.delete(&format!("/api/jobs/{}", id(&long)))
            .await
            .status(),
        204
    );
    assert!(tasks(&app, &long).await.is_empty());

    // 500 tasks: made at create, submitted by one sbatch.
    let started = std::time::Instant::now();
    let big = app
        .create(
            "SCRIPT",
            "five hundred",
            json!({"command": ["true"], "array": "0-499%50",
                   "target": {"cluster": "test"}}),
        )
        .await;
    let created = started.elapsed();
    app.run(&id(&big)).await;
    let submitted = app
        .wait_for(&id(&big), MINUTE, |j| {
            j["external_id"].as_str().is_some_and(|e| e != "-")
        })
        .await;
    let answered = started.elapsed();
    // Every task queued as ID_INDEX (task rows moved in one pass after sbatch answers).
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let all = tasks(&app, &big).await;
        assert_eq!(all.len(), 500);
        if all.iter().all(|t| t["phase"] != "PENDING") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tasks never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued = started.elapsed();
    app.post(&format!("/api/jobs/{}/process/ABORT", id(&big)))
        .await;
    eprintln!(
        "500-task sweep: created (rows and folders) in {:.2} s; sbatch answered {:.2} s and \
         every task queued {:.2} s after create began; array {}",
        created.as_secs_f64(),
        answered.as_secs_f64(),
        queued.as_secs_f64(),
        submitted["external_id"]
    );
}

/// The Clusters page in the browser: the test cluster's partition with its GRES by type.
async fn the_clusters_page_shows_partitions_and_gpus(b: Backend) {
    let _shared = ONE_CLUSTER.read().await;
    let _one = crate::browser::ONE_BROWSER.lock().await;
    let app = cluster_app(b.clone()).await;
    let br = crate::webdriver::Browser::start(&crate::browser::shots(&b, "clusters")).await;
    br.goto(&app.url("/")).await;
    br.click(&br.find("nav a[href='/clusters']").await).await;
    let table = br
        .wait_text("table.partitions[data-cluster=test]", MINUTE, |t| {
            t.contains("debug")
        })
        .await;
    assert!(table.contains("default"), "{table}");
    let gpu = br
        .text(&br.find("table.partitions .gpu[data-type=testgpu]").await)
        .await;
    assert!(
        gpu.starts_with("testgpu: 2 / ") && gpu.ends_with("free"),
        "{gpu}"
    );
    br.screenshot("clusters").await;

    // The new-job form offers the cluster's partitions and GPU types, and the job runs there.
    br.goto(&app.url("/jobs/new?type=SCRIPT")).await;
    br.click(&br.find("#target-cluster option[value=test]").await)
        .await;
    br.wait_for("#partitions option[value=debug]", MINUTE).await;
    assert!(br.exists("#gpu-types option[value='testgpu:1']").await);
    let fill = |css: &'static str, text: &'static str| {
        let br = &br;
        async move {
            let field = br.find(css).await;
            br.clear(&field).await;
            br.type_into(&field, text).await;
        }
    };
    fill("#f-label", "from the form").await;
    fill("#cfg-command", "sh, -c, echo ran on $(hostname)").await;
    fill("#target-partition", "debug").await;
    fill("#target-gpus", "testgpu:1").await;
    br.screenshot("new-job-on-the-cluster").await;
    br.click(&br.find("button[value=run]").await).await;
    br.wait_for("#summary", MINUTE).await;
    br.wait_text("#phase", 2 * MINUTE, |t| t == "COMPLETED")
        .await;
    let url = br.current_url().await;
    let job = app.job(url.rsplit('/').next().unwrap()).await;
    assert_eq!(job["cluster"], "test", "{job}");
    assert_eq!(job["config"]["target"]["gpus"], "testgpu:1", "{job}");
    let placed = br.text(&br.find("#job-cluster").await).await;
    assert!(
        placed.starts_with("test · SLURM job ") && placed.contains(" on "),
        "{placed}"
    );
    br.screenshot("cluster-job-completed").await;
    br.assert_only_local_requests(&app.address).await;
}
