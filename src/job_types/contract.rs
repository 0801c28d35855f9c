//! The job-type contract: each type declares its config keys and form, validates a config and
//! runs with a [`JobContext`]. It knows nothing of HTTP or the database: the worker runs any
//! type through [`JobType`] alone, and `mljm run` does the same without a server.

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::science::{Cancel, Progress};

/// A config field that is missing, ill-typed or out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserializes a config into a type's struct, naming the offending field on failure.
pub fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, ConfigError> {
    if !config.is_object() {
        return Err(ConfigError::new("", "the config must be a JSON object"));
    }
    serde_path_to_error::deserialize(config).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        // serde reports a missing field at the parent; name the field itself.
        let field = match (path.as_str(), inner.split('`').nth(1)) {
            (".", Some(name)) if inner.starts_with("missing field") => name.to_string(),
            (p, Some(name)) if inner.starts_with("missing field") => format!("{p}.{name}"),
            _ => path,
        };
        ConfigError::new(
            field,
            inner
                .split(" at line ")
                .next()
                .unwrap_or(&inner)
                .to_string(),
        )
    })
}

/// The job's log file, `log.txt` in its directory, written as the job runs.
#[derive(Clone)]
pub struct JobLog {
    file: Arc<Mutex<std::fs::File>>,
    /// Also shows each line elsewhere (`mljm run` prints them on stderr).
    echo: Option<Echo>,
}

/// Where a job's log lines are shown besides its file.
type Echo = Arc<dyn Fn(&str) + Send + Sync>;

impl JobLog {
    pub fn open(path: &std::path::Path) -> std::io::Result<JobLog> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JobLog {
            file: Arc::new(Mutex::new(f)),
            echo: None,
        })
    }

    pub fn with_echo(mut self, echo: Echo) -> JobLog {
        self.echo = Some(echo);
        self
    }

    /// Raw bytes, as a child process produced them.
    pub fn write_bytes(&self, bytes: &[u8]) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(bytes);
        }
        if let Some(echo) = &self.echo {
            echo(String::from_utf8_lossy(bytes).trim_end_matches('\n'));
        }
    }

    /// One line from mljm itself, marked so it stands out from the job's own output.
    pub fn line(&self, msg: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S");
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(format!("[mljm {now}] {msg}\n").as_bytes());
        }
        if let Some(echo) = &self.echo {
            echo(msg);
        }
    }
}

/// Which root a path in a job config is taken from, for jobs the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The LAMOST tree (`data_dir_path`): the administrator's, read-only; symlinks followed.
    Spectra,
    /// The user storage (`pool_data_path`, …): symlinks may not lead out of it.
    Files,
}

impl Root {
    pub fn name(self) -> &'static str {
        match self {
            Root::Spectra => "spectra root",
            Root::Files => "files root",
        }
    }
}

/// How the paths in a job config become filesystem paths.
#[derive(Debug, Clone)]
pub enum Paths {
    /// Jobs run by the server: `/` is the root the field names (SPEC §6).
    Server { spectra: PathBuf, files: PathBuf },
    /// `mljm run`: ordinary paths, relative ones from the config file's folder.
    Local { base: PathBuf },
}

impl Paths {
    /// How a config refers to `path` (the inverse of [`Paths::resolve`]): `/JOBS/…` in the
    /// server, the path itself for `mljm run`.
    pub fn unresolve(&self, root: Root, path: &std::path::Path) -> String {
        let base = match (self, root) {
            (Paths::Local { .. }, _) => return path.display().to_string(),
            (Paths::Server { spectra, .. }, Root::Spectra) => spectra,
            (Paths::Server { files, .. }, Root::Files) => files,
        };
        let base = base.canonicalize().unwrap_or_else(|_| base.clone());
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        match path.strip_prefix(&base) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => path.display().to_string(),
        }
    }

    pub fn resolve(&self, root: Root, field: &str, path: &str) -> Result<PathBuf, ConfigError> {
        match self {
            Paths::Local { base } => Ok(base.join(path)),
            Paths::Server { spectra, files } => {
                let parts = within_root(root, field, path)?;
                match root {
                    Root::Spectra => Ok(parts.iter().fold(spectra.clone(), |p, c| p.join(c))),
                    Root::Files => crate::storage::Storage::open(files)
                        .map_err(|e| {
                            ConfigError::new(field, format!("the files root cannot be opened: {e}"))
                        })?
                        .dir(path)
                        .map_err(|_| {
                            ConfigError::new(field, format!("{path:?} would leave the files root"))
                        }),
                }
            }
        }
    }
}

/// The components of `path` below its root, refused when `..` would climb above it.
fn within_root(root: Root, field: &str, path: &str) -> Result<Vec<String>, ConfigError> {
    crate::storage::normalize(path)
        .map_err(|_| ConfigError::new(field, format!("{path:?} would leave the {}", root.name())))
}

/// What a running job gets.
pub struct JobContext {
    pub job_id: Uuid,
    /// The job directory (working directory, outputs).
    pub dir: PathBuf,
    pub config: Value,
    pub paths: Paths,
    /// `gpu.device`: "auto", "cpu" or "cuda:N".
    pub device: String,
    pub log: JobLog,
    pub cancel: Cancel,
    pub progress: Progress,
}

/// How the new-job page draws one config field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Integer,
    Number,
    Bool,
    /// Comma-separated in the form, a JSON array of strings in the config.
    List,
    /// A path under the files root, offered from the HDF5 files there.
    Hdf5File,
    /// A path under the spectra root.
    SpectraDir,
}

/// One config field of a type's form, with the default the form starts from.
#[derive(Debug, Clone)]
pub struct FormField {
    pub name: &'static str,
    pub kind: FieldKind,
    pub default: &'static str,
    pub required: bool,
    pub help: &'static str,
}

impl FormField {
    pub const fn new(name: &'static str, kind: FieldKind, default: &'static str) -> FormField {
        FormField {
            name,
            kind,
            default,
            required: false,
            help: "",
        }
    }

    pub const fn required(mut self) -> FormField {
        self.required = true;
        self
    }

    pub const fn help(mut self, help: &'static str) -> FormField {
        self.help = help;
        self
    }
}

/// A named set of form values (the preprocessing grids of SPEC §7).
#[derive(Debug, Clone)]
pub struct Preset {
    pub id: &'static str,
    pub title: &'static str,
    pub values: &'static [(&'static str, &'static str)],
}

pub trait JobType: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Holds a GPU slot while running; waits QUEUED for one.
    fn needs_gpu(&self) -> bool {
        false
    }
    /// May run again from the start when its worker died.
    fn retry_safe(&self) -> bool {
        false
    }
    /// Top-level config keys the type reads; others are named in one warning line.
    fn known_keys(&self) -> &'static [&'static str];
    /// Checked at create and again at RUN.
    fn validate(&self, config: &Value) -> Result<(), ConfigError>;
    /// The config's paths as (field, root, value), checked to stay inside their roots.
    fn paths(&self, _config: &Value) -> Vec<(&'static str, Root, String)> {
        Vec::new()
    }
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>>;
    /// The fields of the new-job form, in order; a type without them gets the JSON editor only.
    fn form(&self) -> Vec<FormField> {
        Vec::new()
    }
    /// Ready-made values for the form; the first is its default.
    fn presets(&self) -> &'static [Preset] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Cfg {
        command: Vec<String>,
        timeout_s: Option<f64>,
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = parse_config::<Cfg>(&serde_json::json!({})).unwrap_err();
        assert_eq!(e.field, "command");
    }

    #[test]
    fn an_ill_typed_field_is_named() {
        let e = parse_config::<Cfg>(&serde_json::json!({"command": ["a"], "timeout_s": "x"}))
            .unwrap_err();
        assert_eq!(e.field, "timeout_s");
        let e = parse_config::<Cfg>(&serde_json::json!({"command": "ls"})).unwrap_err();
        assert_eq!(e.field, "command");
    }

    #[test]
    fn a_server_path_may_not_climb_out_of_its_root() {
        let paths = Paths::Server {
            spectra: "/data/spectra".into(),
            files: std::env::temp_dir(),
        };
        assert_eq!(
            paths
                .resolve(Root::Spectra, "data_dir_path", "/F5000")
                .unwrap(),
            PathBuf::from("/data/spectra/F5000")
        );
        assert_eq!(
            paths.resolve(Root::Spectra, "data_dir_path", "/").unwrap(),
            PathBuf::from("/data/spectra")
        );
        let e = paths
            .resolve(Root::Spectra, "data_dir_path", "/F5000/../../etc")
            .unwrap_err();
        assert_eq!(e.field, "data_dir_path");
        assert!(e.message.contains("would leave the spectra root"), "{e}");
        let local = Paths::Local {
            base: "/home/me/run".into(),
        };
        assert_eq!(
            local.resolve(Root::Spectra, "d", "../spectra").unwrap(),
            PathBuf::from("/home/me/run/../spectra")
        );
    }
}
