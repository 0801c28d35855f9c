//! Cluster jobs against the real one-node SLURM cluster that `.ci/slurm` starts (SPEC §8):
//! partitions and GRES from sinfo, targets checked at create, a SCRIPT that completes with
//! its output in the live log, one that exits 3, and an ABORT that SLURM shows CANCELLED.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, id, spawn_app_with};

crate::on_both_backends!(slurm; a_script_runs_on_the_cluster_and_ends_as_slurm_says, over_ssh);

/// The cluster is one for the whole test binary: its tests take turns.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MINUTE: Duration = Duration::from_secs(60);

async fn cluster_app(b: Backend) -> TestApp {
    spawn_app_with(
        b,
        Options {
            tweak: |c| {
                c.clusters = vec![mljm::config::ClusterConfig {
                    poll_s: 5.0,
                    mljm_path: env!("CARGO_BIN_EXE_mljm").into(),
                    ..mljm::config::ClusterConfig::new("test", mljm::config::Submit::Local)
                }]
            },
            ..Default::default()
        },
    )
    .await
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

fn scontrol_state(external: &str) -> String {
    let out = std::process::Command::new("scontrol")
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
    let _one = ONE_CLUSTER.lock().await;
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
    let ok = script(
        &app,
        "echo hello from the node; sleep 6; echo done",
        json!({"gpus": "testgpu:1"}),
    )
    .await;
    let running = app.wait_phase(&id(&ok), "PROCESSING", MINUTE).await;
    assert_eq!(running["cluster"], "test");
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
            let ok = std::process::Command::new("ssh-keygen")
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
        let child = std::process::Command::new("/usr/sbin/sshd")
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

/// The clusters the next SSH app is built with (the tweak is a plain fn; tests take turns).
static SSH_CLUSTERS: std::sync::Mutex<Vec<mljm::config::ClusterConfig>> =
    std::sync::Mutex::new(Vec::new());

/// Over SSH (a loopback sshd): strict host keys, key authentication, sbatch through the
/// one reused connection.
async fn over_ssh(b: Backend) {
    let _one = ONE_CLUSTER.lock().await;
    let sshd = Sshd::start();
    let clusters = vec![
        sshd.cluster("ssh", "client", "known_hosts"),
        sshd.cluster("unknown-host", "client", "empty_known_hosts"),
        sshd.cluster("wrong-key", "stranger", "known_hosts"),
    ];
    let app = {
        SSH_CLUSTERS.lock().unwrap().clone_from(&clusters);
        spawn_app_with(
            b,
            Options {
                tweak: |c| c.clusters = SSH_CLUSTERS.lock().unwrap().clone(),
                ..Default::default()
            },
        )
        .await
    };
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
    let list: Vec<Value> = app.get_json("/api/clusters").await;
    let reachable: Vec<(&str, bool)> = list
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["reachable"] == true))
        .collect();
    assert_eq!(
        reachable,
        [("ssh", true), ("unknown-host", false), ("wrong-key", false)]
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
    app.state.clusters.close().await;
    let socket = format!("mljm-ssh-{}", std::process::id());
    assert!(
        std::process::Command::new("pgrep")
            .args(["-f", &socket])
            .output()
            .unwrap()
            .stdout
            .is_empty(),
        "the SSH master connection is closed"
    );
}
