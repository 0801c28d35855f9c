//! ACTIVE_ML: one iteration of the active-learning loop with the original's config keys and
//! file protocol (SPEC §6). Iteration 0 picks the first oracle batch from the pool; iteration
//! k ≥ 1 trains on the labelled spectra and proposes the most uncertain ones. The labellings
//! to create go to `labellings.json`, which the worker inserts when the job completes.

mod config;
mod iteration;
mod training;

use futures_util::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use config::PATH_FIELDS;
pub use config::{AlConfig, MAX_EPOCHS};
use iteration::run_iteration;

use crate::{
    job_types::{ConfigError, FieldKind, FormField, JobContext, JobType, Root},
    science::cnn,
};

pub struct ActiveMl;

impl JobType for ActiveMl {
    fn name(&self) -> &'static str {
        "ACTIVE_ML"
    }

    fn needs_gpu(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn form(&self) -> Vec<FormField> {
        use FieldKind::*;
        vec![
            FormField::new("iteration", Integer, "0").required(),
            FormField::new("classes", List, "other, single peak, double peak").required(),
            FormField::new("candidate_classes", List, "single peak, double peak")
                .required()
                .help("the classes searched for; performance is estimated on them"),
            FormField::new("pool_data_path", Hdf5File, "")
                .required()
                .help("the pool: a preprocessing result.h5"),
            FormField::new("training_data_path", Hdf5File, ""),
            FormField::new("training_data_to_add_path", Hdf5File, ""),
            FormField::new("oracle_data_to_add_path", Text, ""),
            FormField::new("perf_est_list_path", Text, ""),
            FormField::new("oracle_batch_size", Integer, "100"),
            FormField::new("perf_est_batch_size", Integer, "10"),
            FormField::new("show_candidates", Bool, "false"),
            FormField::new("save_model", Bool, "false"),
            FormField::new("min_delta_train", Number, "0.001"),
            FormField::new("patience_train", Integer, "10"),
            FormField::new("batch_size_train", Integer, "64"),
            FormField::new("epochs_train", Integer, "1000"),
            FormField::new("batch_size_predict", Integer, "16384"),
            FormField::new("seed", Integer, "0"),
            FormField::new("query_strategy", Text, "entropy")
                .help("entropy (the original's), margin, bald or balanced"),
            FormField::new("balance", Text, "smote")
                .help("smote (the original's), class_weights or none"),
            FormField::new("validation_split", Number, "0").help(
                "share of each class held out for early stopping; 0 stops on the training loss",
            ),
        ]
    }

    fn known_keys(&self) -> &'static [&'static str] {
        &[
            "iteration",
            "classes",
            "candidate_classes",
            "training_data_path",
            "training_data_to_add_path",
            "oracle_data_to_add_path",
            "pool_data_path",
            "oracle_batch_size",
            "perf_est_batch_size",
            "show_candidates",
            "save_model",
            "min_delta_train",
            "patience_train",
            "batch_size_train",
            "epochs_train",
            "batch_size_predict",
            "perf_est_list_path",
            "seed",
            "query_strategy",
            "balance",
            "validation_split",
            "augment",
        ]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        AlConfig::parse(config).map(|_| ())
    }

    fn paths(&self, config: &Value) -> Vec<(&'static str, Root, String)> {
        PATH_FIELDS
            .iter()
            .filter_map(|&f| {
                config
                    .get(f)
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(|p| (f, Root::Files, p.to_string()))
            })
            .collect()
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let cfg = AlConfig::parse(&ctx.config)?;
            let device = cnn::device(&ctx.device)?;
            tokio::task::spawn_blocking(move || run_iteration(&cfg, &ctx, &device)).await?
        }
        .boxed()
    }
}

/// One labelling for the worker to insert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLabelling {
    pub spectrum_filename: String,
    pub spectrum_set: String,
    pub sequence_iteration: i32,
    pub model_prediction: Option<String>,
    /// The prediction's entropy, for the labelling workspace (not a labellings column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// The spectrum's row in this iteration's `result.h5`, where the workspace reads its
    /// preprocessed flux (not a file of every candidate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_row: Option<u64>,
}

/// The answers of the oracle, as the original UI writes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OracleData {
    pub filenames: Vec<String>,
    pub labels: Vec<i64>,
}
