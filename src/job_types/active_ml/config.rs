//! The original's `al_config.json`: its keys, their defaults and bounds.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    job_types::{ConfigError, parse_config},
    science::{
        active::{Balance, Choices},
        augment::Augment,
        features::Features,
        selection::Strategy,
    },
};

pub const MAX_EPOCHS: u64 = 100_000;

fn default_oracle_batch_size() -> u64 {
    100
}
fn default_perf_est_batch_size() -> u64 {
    10
}
fn default_min_delta() -> f64 {
    1e-3
}
fn default_patience() -> u64 {
    10
}
fn default_batch_size_train() -> u64 {
    64
}
fn default_epochs() -> u64 {
    1000
}
fn default_batch_size_predict() -> u64 {
    16384
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlConfig {
    pub iteration: u64,
    pub classes: Vec<String>,
    pub candidate_classes: Vec<String>,
    #[serde(default)]
    pub training_data_path: String,
    #[serde(default)]
    pub training_data_to_add_path: String,
    #[serde(default)]
    pub oracle_data_to_add_path: String,
    pub pool_data_path: String,
    #[serde(default = "default_oracle_batch_size")]
    pub oracle_batch_size: u64,
    #[serde(default = "default_perf_est_batch_size")]
    pub perf_est_batch_size: u64,
    #[serde(default)]
    pub show_candidates: bool,
    #[serde(default)]
    pub save_model: bool,
    #[serde(default = "default_min_delta")]
    pub min_delta_train: f64,
    #[serde(default = "default_patience")]
    pub patience_train: u64,
    #[serde(default = "default_batch_size_train")]
    pub batch_size_train: u64,
    #[serde(default = "default_epochs")]
    pub epochs_train: u64,
    #[serde(default = "default_batch_size_predict")]
    pub batch_size_predict: u64,
    #[serde(default)]
    pub perf_est_list_path: String,
    /// mljm's addition: the seed of weights, shuffling, SMOTE and sampling.
    #[serde(default)]
    pub seed: u64,
    /// mljm's addition: how the oracle batch is chosen (entropy, the original's; margin;
    /// bald; balanced).
    #[serde(default)]
    pub query_strategy: Strategy,
    /// mljm's addition: smote (the original's), class_weights or none.
    #[serde(default)]
    pub balance: Balance,
    /// mljm's addition: share of each class of the training set held out for early stopping
    /// (0, the original's: stop on the training loss).
    #[serde(default)]
    pub validation_split: f64,
    /// mljm's addition: augmented copies of the training spectra, e.g.
    /// `{"copies": 1, "max_kms": 30, "noise": true}` (none, the original's).
    #[serde(default)]
    pub augment: Option<Augment>,
    /// mljm's addition: what the CNN sees of a spectrum: `scaled` (the pool's scaled flux,
    /// the original's) or `lines` (continuum-subtracted, in units of its noise).
    #[serde(default)]
    pub features: Features,
}

impl AlConfig {
    /// The training choices of [`crate::science::active::fit_with`].
    pub fn choices(&self) -> Choices {
        Choices {
            balance: self.balance,
            validation_split: self.validation_split,
            augment: self.augment,
            features: self.features,
        }
    }
}

pub(super) const PATH_FIELDS: [&str; 5] = [
    "pool_data_path",
    "training_data_path",
    "training_data_to_add_path",
    "oracle_data_to_add_path",
    "perf_est_list_path",
];

impl AlConfig {
    pub fn parse(config: &Value) -> Result<AlConfig, ConfigError> {
        let c: AlConfig = parse_config(config)?;
        if c.classes.len() < 2 {
            return Err(ConfigError::new(
                "classes",
                "at least two class names are needed",
            ));
        }
        let unique: HashSet<&String> = c.classes.iter().collect();
        if unique.len() != c.classes.len() || c.classes.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::new(
                "classes",
                "class names must be non-empty and distinct",
            ));
        }
        if let Some(bad) = c.candidate_classes.iter().find(|n| !c.classes.contains(n)) {
            return Err(ConfigError::new(
                "candidate_classes",
                format!("{bad:?} is not one of the classes {:?}", c.classes),
            ));
        }
        for (field, v) in [
            ("oracle_batch_size", c.oracle_batch_size),
            ("perf_est_batch_size", c.perf_est_batch_size),
            ("batch_size_train", c.batch_size_train),
            ("batch_size_predict", c.batch_size_predict),
            ("epochs_train", c.epochs_train),
        ] {
            if v < 1 {
                return Err(ConfigError::new(
                    field,
                    format!("must be at least 1 (got {v})"),
                ));
            }
        }
        if c.epochs_train > MAX_EPOCHS {
            return Err(ConfigError::new(
                "epochs_train",
                format!("must be from 1 to {MAX_EPOCHS} (got {})", c.epochs_train),
            ));
        }
        if !(c.min_delta_train.is_finite() && c.min_delta_train >= 0.0) {
            return Err(ConfigError::new(
                "min_delta_train",
                "must be a finite number ≥ 0",
            ));
        }
        if !(0.0..0.5).contains(&c.validation_split) {
            return Err(ConfigError::new(
                "validation_split",
                format!("must be from 0 to below 0.5 (got {})", c.validation_split),
            ));
        }
        if let Some(a) = &c.augment {
            if !(0.0..=1000.0).contains(&a.max_kms) {
                return Err(ConfigError::new(
                    "augment.max_kms",
                    format!("must be from 0 to 1000 km/s (got {})", a.max_kms),
                ));
            }
            if a.copies > 10 {
                return Err(ConfigError::new(
                    "augment.copies",
                    format!("must be from 0 to 10 (got {})", a.copies),
                ));
            }
        }
        if c.pool_data_path.trim().is_empty() {
            return Err(ConfigError::new(
                "pool_data_path",
                "must name the pool's HDF5 file",
            ));
        }
        if c.iteration >= 1 {
            for (field, v) in [
                ("training_data_to_add_path", &c.training_data_to_add_path),
                ("oracle_data_to_add_path", &c.oracle_data_to_add_path),
            ] {
                if v.trim().is_empty() {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "is required from iteration 1 on (iteration {})",
                            c.iteration
                        ),
                    ));
                }
            }
        }
        Ok(c)
    }

    pub(super) fn path(&self, field: &str) -> &str {
        match field {
            "pool_data_path" => &self.pool_data_path,
            "training_data_path" => &self.training_data_path,
            "training_data_to_add_path" => &self.training_data_to_add_path,
            "oracle_data_to_add_path" => &self.oracle_data_to_add_path,
            _ => &self.perf_est_list_path,
        }
    }

    pub(super) fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }
}
