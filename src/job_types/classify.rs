//! CLASSIFY (SPEC §6): a registered model applied to a whole survey, from a preprocessed
//! `result.h5` (`pool_data_path`) or a LAMOST directory (`data_dir_path`), run by
//! [`crate::science::classify`] on a blocking thread. The server turns `model_id` into the
//! model's folder (`model_path`) before the job runs; `mljm run` takes `model_path` itself.

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    job_types::{
        ConfigError, FieldKind, FormField, JobContext, JobType, Paths, Root, parse_config,
    },
    science::{
        classify::{self, Input, Model, Options},
        cnn,
        lamost::{SpectrumName, locate},
    },
};

pub struct Classify;

fn default_min_probability() -> f64 {
    0.5
}

fn default_batch() -> u64 {
    16384
}

#[derive(Debug, Deserialize)]
pub struct ClassifyConfig {
    /// A registered model's id or alias (the server resolves it into `model_path`).
    #[serde(default)]
    pub model_id: Option<String>,
    /// An ACTIVE_ML iteration's folder, or its `model.safetensors`.
    #[serde(default)]
    pub model_path: Option<String>,
    #[serde(default)]
    pub pool_data_path: Option<String>,
    #[serde(default)]
    pub data_dir_path: Option<String>,
    /// Default: the model's own.
    #[serde(default)]
    pub candidate_classes: Option<Vec<String>>,
    #[serde(default = "default_min_probability")]
    pub min_probability: f64,
    #[serde(default = "default_batch")]
    pub batch_size_predict: u64,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

impl ClassifyConfig {
    pub fn parse(config: &Value) -> Result<ClassifyConfig, ConfigError> {
        let c: ClassifyConfig = parse_config(config)?;
        if given(&c.model_id).is_none() && given(&c.model_path).is_none() {
            return Err(ConfigError::new(
                "model_id",
                "name a registered model (model_id: its id or alias), or, for mljm run, an \
                 iteration's folder (model_path)",
            ));
        }
        match (given(&c.pool_data_path), given(&c.data_dir_path)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "data_dir_path",
                    "give either pool_data_path (a preprocessed result.h5) or data_dir_path (a \
                     LAMOST directory), not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "pool_data_path",
                    "give the spectra to classify: pool_data_path (a preprocessed result.h5) or \
                     data_dir_path (a LAMOST directory)",
                ));
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&c.min_probability) {
            return Err(ConfigError::new(
                "min_probability",
                format!("must be from 0 to 1 (got {})", c.min_probability),
            ));
        }
        if !(1..=1_000_000).contains(&c.batch_size_predict) {
            return Err(ConfigError::new(
                "batch_size_predict",
                format!("must be from 1 to 1000000 (got {})", c.batch_size_predict),
            ));
        }
        for (field, v) in [
            ("model_path", &c.model_path),
            ("pool_data_path", &c.pool_data_path),
            ("data_dir_path", &c.data_dir_path),
        ] {
            if v.as_deref().is_some_and(|p| p.contains('\0')) {
                return Err(ConfigError::new(field, "must not contain NUL"));
            }
        }
        Ok(c)
    }
}

impl JobType for Classify {
    fn name(&self) -> &'static str {
        "CLASSIFY"
    }

    fn needs_gpu(&self) -> bool {
        true
    }

    /// Reads its inputs and writes its outputs under `.partial` names: safe to run again.
    fn retry_safe(&self) -> bool {
        true
    }

    fn known_keys(&self) -> &'static [&'static str] {
        &[
            "model_id",
            "model_path",
            "pool_data_path",
            "data_dir_path",
            "candidate_classes",
            "min_probability",
            "batch_size_predict",
        ]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        ClassifyConfig::parse(config).map(|_| ())
    }

    fn form(&self) -> Vec<FormField> {
        use FieldKind::*;
        vec![
            FormField::new("model_id", Text, "best")
                .required()
                .help("a registered model: its id or alias (see Models)"),
            FormField::new("data_dir_path", SpectraDir, "/")
                .help("a LAMOST directory under the spectra root, read on the model's grid"),
            FormField::new("pool_data_path", Hdf5File, "")
                .help("or a preprocessed result.h5 on the model's grid"),
            FormField::new("candidate_classes", List, "")
                .help("default: the model's candidate classes"),
            FormField::new("min_probability", Number, "0.5"),
            FormField::new("batch_size_predict", Integer, "16384"),
        ]
    }

    fn paths(&self, config: &Value) -> Vec<(&'static str, Root, String)> {
        let mut out = Vec::new();
        for (field, root) in [
            ("model_path", Root::Files),
            ("pool_data_path", Root::Files),
            ("data_dir_path", Root::Spectra),
        ] {
            if let Some(p) = config
                .get(field)
                .and_then(Value::as_str)
                .filter(|p| !p.trim().is_empty())
            {
                out.push((field, root, p.to_string()));
            }
        }
        out
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let cfg = ClassifyConfig::parse(&ctx.config)?;
            let device = cnn::device(&ctx.device)?;
            tokio::task::spawn_blocking(move || run(&cfg, &ctx, &device)).await?
        }
        .boxed()
    }
}

fn run(cfg: &ClassifyConfig, ctx: &JobContext, device: &candle_core::Device) -> anyhow::Result<()> {
    let model_path = given(&cfg.model_path).ok_or_else(|| {
        anyhow::anyhow!(
            "model_path: the model {:?} was not resolved to its folder (CLASSIFY with model_id \
             runs on a server; mljm run takes model_path)",
            cfg.model_id
        )
    })?;
    let model_path = ctx.paths.resolve(Root::Files, "model_path", model_path)?;
    let model = Model::load(&model_path, device)?;
    let classes = &model.card.classes;
    let wanted = cfg
        .candidate_classes
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| model.card.candidate_classes.clone());
    let mut candidate_classes = Vec::new();
    for c in &wanted {
        let i = classes.iter().position(|k| k == c).ok_or_else(|| {
            ConfigError::new(
                "candidate_classes",
                format!("{c:?} is not a class of the model (it has {classes:?})"),
            )
        })?;
        candidate_classes.push(i);
    }
    let input = match (given(&cfg.pool_data_path), given(&cfg.data_dir_path)) {
        (Some(p), _) => Input::Pool(ctx.paths.resolve(Root::Files, "pool_data_path", p)?),
        (None, Some(d)) => {
            Input::Directory(ctx.paths.resolve(Root::Spectra, "data_dir_path", d)?)
        }
        (None, None) => unreachable!("checked by ClassifyConfig::parse"),
    };
    ctx.log.line(&format!(
        "model: {} classes {:?} (candidates {:?}), {}; from {}",
        classes.len(),
        classes,
        wanted,
        model.card.describe_grid(),
        model_path.display()
    ));
    // On a server, a pool's candidates get their header columns from the survey's files.
    let spectra_root = match &ctx.paths {
        Paths::Server { spectra, .. } => Some(spectra.clone()),
        Paths::Local { .. } => None,
    };
    let find = move |name: &str| -> Option<std::path::PathBuf> {
        let root = spectra_root.as_ref()?;
        locate(root, &SpectrumName::parse(name).ok()?)
    };
    let opts = Options {
        input,
        candidate_classes,
        min_probability: cfg.min_probability,
        batch: cfg.batch_size_predict as usize,
        locate: Some(&find),
    };
    let log = |line: &str| ctx.log.line(line);
    classify::classify(&model, &opts, &ctx.dir, &ctx.cancel, &ctx.progress, &log).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_input_and_a_model_are_required() {
        let e = ClassifyConfig::parse(&json!({"pool_data_path": "a.h5"})).unwrap_err();
        assert_eq!(e.field, "model_id");
        let e = ClassifyConfig::parse(&json!({"model_id": "best"})).unwrap_err();
        assert_eq!(e.field, "pool_data_path");
        let e = ClassifyConfig::parse(
            &json!({"model_id": "best", "pool_data_path": "a.h5", "data_dir_path": "/"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "data_dir_path");
        let e = ClassifyConfig::parse(
            &json!({"model_id": "best", "pool_data_path": "a.h5", "min_probability": 1.5}),
        )
        .unwrap_err();
        assert_eq!(e.field, "min_probability");
        let c = ClassifyConfig::parse(&json!({"model_path": "it3", "data_dir_path": "/"})).unwrap();
        assert_eq!((c.min_probability, c.batch_size_predict), (0.5, 16384));
    }
}
