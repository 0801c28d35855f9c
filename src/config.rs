//! One typed configuration: defaults < `config.toml` < `MLJM_*` environment < command-line flags.
//! Every key is optional; the repository's `config.toml` documents each one with its default.

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Everything the server keeps: the SQLite file, `files/`, `spectra/`.
    pub data_dir: PathBuf,
    /// Empty: SQLite file `mljm.sqlite` inside the data dir. Or `postgres://…`.
    pub database_url: String,
    pub server: ServerConfig,
    pub files: FilesConfig,
    pub worker: WorkerConfig,
    pub gpu: GpuConfig,
    /// SLURM clusters jobs may target (`[[clusters]]`, SPEC §8).
    pub clusters: Vec<ClusterConfig>,
    /// Accounts (SPEC §11).
    pub auth: AuthConfig,
    /// Experiment tracking (SPEC §12).
    pub tracking: TrackingConfig,
}

/// Optional MLflow tracking of the active-learning iterations (SPEC §12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingConfig {
    /// An MLflow tracking server, e.g. "http://127.0.0.1:5000"; empty: no tracking.
    pub mlflow_uri: String,
    /// The MLflow experiment the runs go to.
    pub experiment: String,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            mlflow_uri: String::new(),
            experiment: "mljm".into(),
        }
    }
}

/// Who may use the server (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No accounts: one user on loopback.
    Off,
    /// mljm's own accounts: sessions for the pages, tokens for the API.
    Password,
    /// A trusted reverse proxy names the user in a header.
    Proxy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Absent: `off` when bound to a loopback address, `password` otherwise.
    pub mode: Option<AuthMode>,
    /// `off` on a non-loopback address only with this (and a warning at every start).
    pub allow_unauthenticated: bool,
    /// Roles that may run arbitrary commands (SCRIPT, the submit form, cluster targets).
    pub command_roles: Vec<String>,
    /// A page session ends after this many hours unused…
    pub session_idle_h: f64,
    /// …and this many hours after it began, whatever.
    pub session_max_h: f64,
    pub proxy: ProxyConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The header the proxy names the user in.
    pub header: String,
    /// Addresses (CIDRs) the header is believed from; from any other it is ignored.
    pub trusted: Vec<String>,
    /// The role of a user the proxy names for the first time.
    pub default_role: String,
}

/// An address or CIDR of `auth.proxy.trusted`.
pub fn parse_net(net: &str) -> Option<ipnet::IpNet> {
    net.parse::<ipnet::IpNet>()
        .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Password => "password",
            AuthMode::Proxy => "proxy",
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: None,
            allow_unauthenticated: false,
            command_roles: vec!["admin".into()],
            session_idle_h: 12.0,
            session_max_h: 7.0 * 24.0,
            proxy: ProxyConfig::default(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            header: "X-Forwarded-User".into(),
            trusted: Vec::new(),
            default_role: "member".into(),
        }
    }
}

/// How mljm reaches a cluster's SLURM commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Submit {
    /// sbatch, squeue, scontrol, sacct, scancel and sinfo on this host.
    Local,
    /// The same commands over one reused OpenSSH connection.
    Ssh,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    pub submit: Submit,
    /// SSH: the login node.
    #[serde(default)]
    pub host: String,
    #[serde(default = "ssh_port")]
    pub port: u16,
    #[serde(default)]
    pub user: String,
    /// SSH: the private key (key authentication only).
    #[serde(default)]
    pub identity_file: String,
    /// SSH: the known_hosts file the host key is checked against (strictly).
    #[serde(default)]
    pub known_hosts: String,
    /// A directory on the cluster for staged job files and mljm's own binary.
    #[serde(default)]
    pub workspace: String,
    /// The data directory is at the same path on the cluster (after `path_map`); otherwise
    /// job inputs are staged to `workspace` and results copied back.
    #[serde(default = "yes")]
    pub shared_fs: bool,
    /// Data-dir path prefixes here → there, e.g. `{"/srv/mljm" = "/scratch/mljm"}`.
    #[serde(default)]
    pub path_map: std::collections::BTreeMap<String, String>,
    /// Defaults for a target that does not say.
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub time: String,
    /// Extra `#SBATCH` lines (without the prefix) and setup lines (`module load cuda`).
    #[serde(default)]
    pub sbatch_lines: Vec<String>,
    #[serde(default)]
    pub setup_lines: Vec<String>,
    /// Seconds between polls of the cluster's jobs (at least 5).
    #[serde(default = "cluster_poll_s")]
    pub poll_s: f64,
    /// The mljm binary on the cluster; empty: this binary, copied into the workspace.
    #[serde(default)]
    pub mljm_path: String,
    /// The mljm binary on this host that is copied there when `mljm_path` is empty; empty:
    /// the running program (set it where mljm runs embedded in another program).
    #[serde(default)]
    pub local_mljm: String,
    /// A directory holding the SLURM commands; empty: found on PATH.
    #[serde(default)]
    pub slurm_bin: String,
}

fn ssh_port() -> u16 {
    22
}

fn yes() -> bool {
    true
}

fn cluster_poll_s() -> f64 {
    30.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    /// Host names accepted besides the bind address and `localhost` (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Largest JSON body, bytes.
    pub json_limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Largest upload, bytes.
    pub upload_limit: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs this process runs at once (`--workers`); 0 = API only.
    pub concurrency: usize,
    /// Job types this process accepts; empty = every registered type.
    pub accept: Vec<String>,
    /// Seconds between heartbeats of a running job.
    pub heartbeat_s: f64,
    /// A PROCESSING job whose heartbeat is older than this is "worker lost".
    pub lost_after_s: f64,
    /// Seconds between queue polls when no wake-up arrives (other processes on SQLite).
    pub poll_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// GPU jobs running at once on this host (when `devices` is empty).
    pub slots: usize,
    /// "auto" | "cpu" | "cuda:N" (when `devices` is empty).
    pub device: String,
    /// Several GPUs: one or more slots per device ("cuda:0", "cuda:1", …); a GPU job holds
    /// its own device while it runs.
    pub devices: Vec<String>,
    /// GPU jobs that may share one of `devices`.
    pub jobs_per_device: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./mljm-data"),
            database_url: String::new(),
            server: ServerConfig::default(),
            files: FilesConfig::default(),
            worker: WorkerConfig::default(),
            gpu: GpuConfig::default(),
            clusters: Vec::new(),
            auth: AuthConfig::default(),
            tracking: TrackingConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            allowed_hosts: Vec::new(),
            json_limit: 1 << 20,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            upload_limit: 4 << 30,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            accept: Vec::new(),
            heartbeat_s: 2.0,
            lost_after_s: 30.0,
            poll_s: 1.0,
        }
    }
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            slots: 1,
            device: "auto".into(),
            devices: Vec::new(),
            jobs_per_device: 1,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub bind: Option<String>,
    pub workers: Option<usize>,
    pub accept: Option<Vec<String>>,
}

/// `MLJM_*` variables that are not configuration keys (read by the CLI client, the tests and
/// the benchmarks).
const NON_CONFIG_VARS: &[&str] = &[
    "MLJM_SERVER",
    "MLJM_TOKEN",
    "MLJM_CONFIG",
    "MLJM_TEST_DATABASE_URL",
    "MLJM_LOG",
    "MLJM_BENCH_SIZES",
    "MLJM_BENCH_RUNS",
    "MLJM_BENCH_DIR",
    "MLJM_REF_PYTHON",
    "MLJM_BENCH_DEVICE",
    "MLJM_BENCH_DATABASE_URL",
    "MLJM_BENCH_CLIENTS",
    "MLJM_BENCH_SECONDS",
    "MLJM_REQUIRE_BROWSER",
    "MLJM_TEST_PYTHON",
    "MLJM_REQUIRE_SLURM",
    "MLJM_TEST_MLFLOW",
    // Set by mljm for the processes of a SCRIPT job (which may call mljm themselves).
    "MLJM_JOB_ID",
    "MLJM_JOB_DIR",
];

/// The flat names of the four flags, and `A__B` for any nested key.
fn env_key(var: &str) -> String {
    match var.to_ascii_lowercase().as_str() {
        "bind" => "server.bind".into(),
        "workers" => "worker.concurrency".into(),
        other => other.replace("__", "."),
    }
}

impl Config {
    /// Loads the layers. `file` is read when it exists; a missing explicit file is an error.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                anyhow::bail!("config file {} does not exist", path.display())
            }
            Some(path) => fig = fig.merge(Toml::file(path)),
            None if Path::new("config.toml").exists() => fig = fig.merge(Toml::file("config.toml")),
            None => {}
        }
        let env = Env::prefixed("MLJM_")
            .filter(|k| {
                !NON_CONFIG_VARS
                    .contains(&format!("MLJM_{}", k.as_str().to_ascii_uppercase()).as_str())
            })
            .map(|k| env_key(k.as_str()).into());
        fig = fig.merge(env);
        let mut flags = serde_json::Map::new();
        if let Some(d) = &overrides.data_dir {
            flags.insert("data_dir".into(), serde_json::json!(d));
        }
        if let Some(u) = &overrides.database_url {
            flags.insert("database_url".into(), serde_json::json!(u));
        }
        if let Some(b) = &overrides.bind {
            flags.insert("server".into(), serde_json::json!({ "bind": b }));
        }
        let mut worker = serde_json::Map::new();
        if let Some(w) = overrides.workers {
            worker.insert("concurrency".into(), w.into());
        }
        if let Some(a) = &overrides.accept {
            worker.insert("accept".into(), serde_json::json!(a));
        }
        if !worker.is_empty() {
            flags.insert("worker".into(), worker.into());
        }
        fig = fig.merge(Serialized::defaults(serde_json::Value::Object(flags)));
        let config: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config.check()?;
        Ok(config)
    }

    /// The accounts mode: as configured, else `off` on a loopback address and `password`
    /// on any other.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.mode.unwrap_or(if self.bound_to_loopback() {
            AuthMode::Off
        } else {
            AuthMode::Password
        })
    }

    /// Whether `server.bind` is a loopback address (or `localhost`).
    pub fn bound_to_loopback(&self) -> bool {
        let host = self
            .server
            .bind
            .rsplit_once(':')
            .map_or(self.server.bind.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// `serve` on a network address without accounts only when the config says so.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if self.auth_mode() == AuthMode::Off && !self.bound_to_loopback() {
            if !self.auth.allow_unauthenticated {
                anyhow::bail!(
                    "refusing to serve {} with auth.mode = \"off\": anyone who reaches that \
                     address could run commands as this user. Use auth.mode = \"password\" \
                     (the default there) or \"proxy\", bind 127.0.0.1, or set \
                     auth.allow_unauthenticated = true if a firewall already keeps strangers out",
                    self.server.bind
                );
            }
            tracing::warn!(
                "serving {} WITHOUT AUTHENTICATION (auth.allow_unauthenticated = true): anyone \
                 who reaches it can run commands as this user",
                self.server.bind
            );
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        let w = &self.worker;
        if !(w.heartbeat_s > 0.0 && w.lost_after_s > w.heartbeat_s && w.poll_s > 0.0) {
            anyhow::bail!(
                "configuration: worker.heartbeat_s ({}) must be > 0 and below worker.lost_after_s ({}); worker.poll_s ({}) > 0",
                w.heartbeat_s,
                w.lost_after_s,
                w.poll_s
            );
        }
        if self.gpu.slots == 0 {
            anyhow::bail!("configuration: gpu.slots must be at least 1");
        }
        if self.gpu.jobs_per_device == 0 {
            anyhow::bail!("configuration: gpu.jobs_per_device must be at least 1");
        }
        for d in std::iter::once(&self.gpu.device).chain(&self.gpu.devices) {
            let cuda = d
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok());
            if !(cuda || d == "cpu" || d == "auto") {
                anyhow::bail!(
                    "configuration: gpu device {d:?} is not \"auto\", \"cpu\" or \"cuda:N\""
                );
            }
        }
        let a = &self.auth;
        for role in a.command_roles.iter().chain([&a.proxy.default_role]) {
            if !["admin", "member", "viewer"].contains(&role.as_str()) {
                anyhow::bail!(
                    "configuration: auth: {role:?} is not a role (admin, member or viewer)"
                );
            }
        }
        for net in &a.proxy.trusted {
            parse_net(net).ok_or_else(|| {
                anyhow::anyhow!("configuration: auth.proxy.trusted: {net:?} is not a CIDR")
            })?;
        }
        if !(a.session_idle_h > 0.0 && a.session_max_h >= a.session_idle_h) {
            anyhow::bail!(
                "configuration: auth.session_idle_h must be > 0 and at most auth.session_max_h"
            );
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.clusters {
            c.check()
                .map_err(|e| anyhow::anyhow!("configuration: cluster {:?}: {e}", c.name))?;
            if !names.insert(&c.name) {
                anyhow::bail!("configuration: two clusters are named {:?}", c.name);
            }
        }
        Ok(())
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn files_root(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    pub fn spectra_root(&self) -> PathBuf {
        self.data_dir.join("spectra")
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("mljm.sqlite").display()
            )
        } else {
            self.database_url.clone()
        }
    }
}

/// Names SLURM and a shell take without quoting: partitions, accounts, GRES types.
pub fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

impl ClusterConfig {
    /// A cluster with every optional key at its default (what an absent key gives).
    pub fn new(name: &str, submit: Submit) -> ClusterConfig {
        ClusterConfig {
            name: name.into(),
            submit,
            host: String::new(),
            port: ssh_port(),
            user: String::new(),
            identity_file: String::new(),
            known_hosts: String::new(),
            workspace: String::new(),
            shared_fs: yes(),
            path_map: Default::default(),
            partition: String::new(),
            account: String::new(),
            time: String::new(),
            sbatch_lines: Vec::new(),
            setup_lines: Vec::new(),
            poll_s: cluster_poll_s(),
            mljm_path: String::new(),
            local_mljm: String::new(),
            slurm_bin: String::new(),
        }
    }

    fn check(&self) -> Result<(), String> {
        if !plain_name(&self.name) {
            return Err("name must be 1–64 letters, digits, '_', '-', '.' or '+'".into());
        }
        if !(self.poll_s.is_finite() && self.poll_s >= 5.0) {
            return Err(format!("poll_s must be at least 5 (got {})", self.poll_s));
        }
        for (key, value) in [("partition", &self.partition), ("account", &self.account)] {
            if !value.is_empty() && !plain_name(value) {
                return Err(format!("{key} {value:?} is not a plain SLURM name"));
            }
        }
        for line in self.sbatch_lines.iter().chain(&self.setup_lines) {
            if line.contains('\n') || line.contains('\0') {
                return Err(format!("sbatch_lines/setup_lines: {line:?} spans lines"));
            }
        }
        if self.submit == Submit::Ssh {
            for (key, value) in [
                ("host", &self.host),
                ("user", &self.user),
                ("identity_file", &self.identity_file),
                ("known_hosts", &self.known_hosts),
                ("workspace", &self.workspace),
            ] {
                if value.trim().is_empty() {
                    return Err(format!("{key} is required for submit = \"ssh\""));
                }
            }
            if self.host.starts_with('-') || self.user.starts_with('-') {
                return Err("host and user must not start with '-'".into());
            }
        }
        if !self.shared_fs && self.workspace.trim().is_empty() {
            return Err("workspace is required when shared_fs = false".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_config_toml_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let parsed: Config = Figment::new()
            .merge(Toml::file(path))
            .extract()
            .expect("config.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn env_names_map_to_nested_keys() {
        assert_eq!(env_key("BIND"), "server.bind");
        assert_eq!(env_key("WORKERS"), "worker.concurrency");
        assert_eq!(env_key("GPU__SLOTS"), "gpu.slots");
        assert_eq!(env_key("DATA_DIR"), "data_dir");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("mljm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nbind = \"127.0.0.1:9\"\n[gpu]\nslots = 3\n",
        )
        .unwrap();
        let o = Overrides {
            bind: Some("127.0.0.1:7".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), &o).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:7");
        assert_eq!(c.gpu.slots, 3);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("mljm-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[gpu]\nslotz = 3\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("slotz"), "{err}");
    }
}
