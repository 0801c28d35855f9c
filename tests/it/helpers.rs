//! `spawn_app()` starts the real server on port 0 with a temp data dir and a fresh database:
//! SQLite by default, or a uniquely named PostgreSQL database (dropped afterwards) when the
//! test asks for PostgreSQL and `MLJM_TEST_DATABASE_URL` is set.

use std::{path::PathBuf, time::Duration};

use mljm::{app::Application, config::Config};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// The server named by `MLJM_TEST_DATABASE_URL`, which enabled the PostgreSQL variants
    /// when the tests were built (`tests/support/build.rs`).
    pub fn postgres() -> Backend {
        match std::env::var("MLJM_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Backend::Postgres(url),
            _ => panic!(
                "the PostgreSQL tests were built with MLJM_TEST_DATABASE_URL set, but it is unset now"
            ),
        }
    }
}

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL. The PostgreSQL
/// variants (and, after `browser;`, all of them) are ignored — counted as skipped, with the
/// reason — unless the tests were built with what they need (`tests/support/build.rs`).
#[macro_export]
macro_rules! on_both_backends {
    (slurm; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(mljm_slurm_tests), ignore = "SLURM test: start the one-node cluster (bash .ci/slurm) and build the tests with MLJM_REQUIRE_SLURM=1")]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(all(mljm_slurm_tests, mljm_postgres_tests)), ignore = "SLURM test on PostgreSQL: build the tests with MLJM_REQUIRE_SLURM=1 and MLJM_TEST_DATABASE_URL")]
            async fn $name() { super::$name($crate::helpers::Backend::postgres()).await })*
        }
    };
    (slurm_browser; $($name:ident),* $(,)?) => {
        // Pages of the cluster in a browser: what they show comes from SLURM, not the database.
        mod in_the_browser {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(all(mljm_slurm_tests, mljm_browser_tests)), ignore = "SLURM page in the browser: build the tests with MLJM_REQUIRE_SLURM=1 and MLJM_REQUIRE_BROWSER=1")]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
    };
    (browser; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(mljm_browser_tests), ignore = "browser test: build the tests with MLJM_REQUIRE_BROWSER=1 (needs apt-get install chromium chromium-driver)")]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(all(mljm_browser_tests, mljm_postgres_tests)), ignore = "browser test on PostgreSQL: build the tests with MLJM_REQUIRE_BROWSER=1 and MLJM_TEST_DATABASE_URL")]
            async fn $name() { super::$name($crate::helpers::Backend::postgres()).await })*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(mljm_postgres_tests), ignore = "PostgreSQL variant: build the tests with MLJM_TEST_DATABASE_URL set (e.g. postgres://postgres@127.0.0.1:5432/test)")]
            async fn $name() { super::$name($crate::helpers::Backend::postgres()).await })*
        }
    };
}

/// Runs each named `async fn(Backend)` once, on SQLite: for tests whose subject never reaches
/// the database (the file store, the request limits, the OpenAPI document) — a server needs
/// one, and running them again on PostgreSQL would test nothing new.
#[macro_export]
macro_rules! without_the_database {
    ($($name:ident),* $(,)?) => {
        mod once {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await })*
        }
    };
}

pub struct TestDb {
    pub url: String,
    drop: Option<(String, String)>,
}

impl TestDb {
    pub async fn create(backend: &Backend, data_dir: &std::path::Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("mljm.sqlite").display()
                ),
                drop: None,
            },
            Backend::Postgres(admin) => {
                let name = format!("mljm_test_{}", uuid::Uuid::new_v4().simple());
                let url = mljm::db::create_database(admin, &name)
                    .await
                    .expect("PostgreSQL at MLJM_TEST_DATABASE_URL creates a test database");
                TestDb {
                    url,
                    drop: Some((admin.clone(), name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.drop.take() {
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = rt.block_on(mljm::db::drop_database(&admin, &name));
            })
            .join();
        }
    }
}

/// A client of one mljm server's API: what every test needs to create, run and watch jobs.
pub struct Api {
    pub address: String,
    pub api: reqwest::Client,
}

/// An mljm server in this test process; its [`Api`] methods are reached through `Deref`.
pub struct TestApp {
    pub http: Api,
    pub port: u16,
    pub data_dir: PathBuf,
    pub state: mljm::state::AppState,
    pub _tmp: tempfile::TempDir,
    pub db: TestDb,
}

pub struct Options {
    pub workers: usize,
    pub tweak: fn(&mut Config),
    /// `[[clusters]]`, when not empty.
    pub clusters: Vec<mljm::config::ClusterConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 2,
            tweak: |_| {},
            clusters: Vec::new(),
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, opts: Options) -> TestApp {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let db = TestDb::create(&backend, tmp.path()).await;
    let mut config = Config {
        data_dir: data_dir.clone(),
        database_url: db.url.clone(),
        ..Config::default()
    };
    config.server.bind = "127.0.0.1:0".into();
    config.worker.concurrency = opts.workers;
    config.worker.poll_s = 0.2;
    (opts.tweak)(&mut config);
    if !opts.clusters.is_empty() {
        config.clusters = opts.clusters;
    }
    let app = Application::build(config.clone())
        .await
        .expect("app builds");
    let port = app.port();
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        http: Api::new(port),
        port,
        data_dir,
        state,
        _tmp: tmp,
        db,
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.http
    }
}

impl TestApp {
    pub fn job_dir(&self, job: &Value) -> PathBuf {
        self.data_dir
            .join("files")
            .join(job["dir_path"].as_str().unwrap().trim_start_matches('/'))
    }
}

impl Api {
    /// A client of the server on 127.0.0.1:`port`.
    pub fn new(port: u16) -> Api {
        Api {
            address: format!("http://127.0.0.1:{port}"),
            api: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.api
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.api.post(self.url(path)).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.api.get(self.url(path)).send().await.unwrap()
    }

    /// `GET path`, its body parsed as JSON (whatever the status).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path).await.json().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.api.delete(self.url(path)).send().await.unwrap()
    }

    /// `POST /api/jobs/` of a `job_type` job with `config`, whatever the answer.
    pub async fn post_job(&self, job_type: &str, config: &Value) -> reqwest::Response {
        self.post_json(
            "/api/jobs/",
            &json!({"type": job_type, "label": job_type.to_lowercase(), "config": config}),
        )
        .await
    }

    /// Creates a `job_type` job (201 required); returns its JSON.
    pub async fn create(&self, job_type: &str, label: &str, config: Value) -> Value {
        let resp = self
            .post_json(
                "/api/jobs/",
                &json!({"type": job_type, "label": label, "config": config}),
            )
            .await;
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    /// Creates a SCRIPT job running `sh -c script`; returns its JSON.
    pub async fn create_script(&self, label: &str, script: &str) -> Value {
        self.create("SCRIPT", label, json!({"command": ["sh", "-c", script]}))
            .await
    }

    pub async fn job(&self, id: &str) -> Value {
        let resp = self.get(&format!("/api/jobs/{id}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub async fn run(&self, id: &str) -> Value {
        let resp = self.post(&format!("/api/jobs/{id}/process/RUN")).await;
        assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    /// Polls the job until `pred` holds on it, or panics after `within`.
    pub async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.job(id).await;
            if pred(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job never reached the expected state: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_phase(&self, id: &str, phase: &str, within: Duration) -> Value {
        self.wait_for(id, within, |j| j["phase"] == phase).await
    }

    pub async fn log(&self, id: &str) -> String {
        self.get(&format!("/api/jobs/{id}/log"))
            .await
            .text()
            .await
            .unwrap()
    }

    /// The job's log once it contains `needle` (a line may follow its phase change by a moment).
    pub async fn wait_log(&self, id: &str, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let log = self.log(id).await;
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the log never showed {needle:?}: {log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `mljm <args>` as a child process with a fast heartbeat (a lost worker is noticed after 3 s),
/// no config file, and its log in `log`; the caller adds arguments and spawns it.
pub fn mljm_child(args: &[&str], log: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mljm"));
    mljm::child::no_inherit(&mut cmd)
        .args(args)
        .env("MLJM_WORKER__HEARTBEAT_S", "0.5")
        .env("MLJM_WORKER__LOST_AFTER_S", "3")
        .env("MLJM_WORKER__POLL_S", "0.2")
        .env("MLJM_CONFIG", "/dev/null")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}

/// Waits until process `pid` has ended, or panics after `within` naming `what`.
pub async fn wait_process_gone(pid: i32, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while process_alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid {pid} of {what} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the mljm binary with `args`; its output, whatever the exit status.
pub fn mljm<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    mljm::child::no_inherit(&mut std::process::Command::new(env!("CARGO_BIN_EXE_mljm")))
        .args(args)
        .output()
        .unwrap()
}

pub fn id(job: &Value) -> String {
    job["job_id"].as_str().unwrap().to_string()
}

/// Waits until `path` exists (a script signalling it got somewhere).
pub async fn wait_file(path: &std::path::Path, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie ("Z") has exited already.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// The HDF5 type of dataset `name`, as h5py would report its dtype.
pub fn h5_type(file: &hdf5::File, name: &str) -> hdf5::types::TypeDescriptor {
    file.dataset(name)
        .unwrap()
        .dtype()
        .unwrap()
        .to_descriptor()
        .unwrap()
}

#[path = "../support/peak_rss.rs"]
mod peak_rss;
pub use peak_rss::run_peak_rss;
