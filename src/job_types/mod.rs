//! The job types: the contract every type implements ([`JobType`], [`JobContext`],
//! [`ConfigError`], form metadata) and one module per type, each registered once in
//! [`Registry::new`].

pub mod active_ml;
pub mod classify;
mod contract;
pub mod dim_reduction;
pub mod preprocessing;
pub mod script;

use std::sync::Arc;

use serde_json::Value;

pub use contract::{
    ConfigError, FieldKind, FormField, JobContext, JobLog, JobType, Paths, Preset, Root,
    parse_config,
};

/// Why a config cannot run as the type it names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error("unknown job type {name:?}; known types: {known}")]
    UnknownType { name: String, known: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

pub struct Registry {
    types: Vec<Arc<dyn JobType>>,
}

impl Registry {
    /// Every job type mljm knows.
    pub fn new() -> Registry {
        Registry {
            types: vec![
                Arc::new(script::Script),
                Arc::new(preprocessing::Preprocessing),
                Arc::new(active_ml::ActiveMl),
                Arc::new(dim_reduction::DimReduction),
                Arc::new(classify::Classify),
            ],
        }
    }

    /// A registry of exactly these types (tests, and embedders with their own types).
    pub fn with_types(types: Vec<Arc<dyn JobType>>) -> Registry {
        Registry { types }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn JobType>> {
        self.types.iter().find(|t| t.name() == name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.types.iter().map(|t| t.name()).collect()
    }

    /// Validates `config` for `job_type`, naming the field on failure: its values, and each
    /// of its paths, which must stay inside its root (symlinks included) and exist.
    pub fn check(&self, job_type: &str, config: &Value, paths: &Paths) -> Result<(), CheckError> {
        let t = self.get(job_type).ok_or_else(|| self.unknown(job_type))?;
        t.validate(config)?;
        for (field, root, path) in t.paths(config) {
            let real = paths.resolve(root, field, &path)?;
            if !real.exists() {
                return Err(ConfigError::new(
                    field,
                    format!("{path:?}: no such file or directory in the {}", root.name()),
                )
                .into());
            }
        }
        Ok(())
    }

    pub fn unknown(&self, job_type: &str) -> CheckError {
        CheckError::UnknownType {
            name: job_type.to_string(),
            known: self.names().join(", "),
        }
    }

    /// Keys of `config` the type does not read, for one warning line in the job log (keys
    /// every type may carry, such as `target`, are read by the server).
    pub fn unknown_keys(&self, job_type: &str, config: &Value) -> Vec<String> {
        match (self.get(job_type), config.as_object()) {
            (Some(t), Some(obj)) => obj
                .keys()
                .filter(|k| {
                    !t.known_keys().contains(&k.as_str()) && !COMMON_KEYS.contains(&k.as_str())
                })
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Keys any job's config may carry besides its type's own: where it runs (SPEC §8).
pub const COMMON_KEYS: &[&str] = &["target", "array", "array_parallelism", "array_task"];

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_listed() {
        let r = Registry::new();
        let keys = r.unknown_keys(
            "SCRIPT",
            &serde_json::json!({"command": ["a"], "gpu_type": "a100"}),
        );
        assert_eq!(keys, vec!["gpu_type".to_string()]);
    }
}
