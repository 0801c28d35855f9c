//! DATA_PREPROCESSING: the original's `prep_config.json`, checked against SPEC §10's bounds,
//! run by [`crate::science::preprocess`] on a blocking thread.

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    job_types::{
        ConfigError, FieldKind, FormField, JobContext, JobType, Preset, Root, parse_config,
    },
    science::preprocess::{self, Options, PreprocessError},
};

pub struct Preprocessing;

pub const MAX_POINTS: f64 = 100_000.0;

#[derive(Debug, Deserialize)]
pub struct PrepConfig {
    pub data_dir_path: String,
    pub wave_start_point: f64,
    pub wave_end_point: f64,
    /// A number in the original's files (`600`, sometimes `600.0`); a whole one is required.
    pub wave_point_count: f64,
    #[serde(default)]
    pub strict: bool,
}

impl PrepConfig {
    pub fn parse(config: &Value) -> Result<PrepConfig, ConfigError> {
        let c: PrepConfig = parse_config(config)?;
        let n = c.wave_point_count;
        if !(n.fract() == 0.0 && (2.0..=MAX_POINTS).contains(&n)) {
            return Err(ConfigError::new(
                "wave_point_count",
                format!("must be a whole number from 2 to {MAX_POINTS} (got {n})"),
            ));
        }
        for (field, v) in [
            ("wave_start_point", c.wave_start_point),
            ("wave_end_point", c.wave_end_point),
        ] {
            if !v.is_finite() {
                return Err(ConfigError::new(
                    field,
                    format!("must be a finite wavelength in Å (got {v})"),
                ));
            }
        }
        if c.wave_start_point >= c.wave_end_point {
            return Err(ConfigError::new(
                "wave_end_point",
                format!(
                    "must be greater than wave_start_point ({} ≥ {})",
                    c.wave_start_point, c.wave_end_point
                ),
            ));
        }
        if c.data_dir_path.contains('\0') {
            return Err(ConfigError::new("data_dir_path", "must not contain NUL"));
        }
        Ok(c)
    }

    pub fn grid(&self) -> Vec<f64> {
        preprocess::linspace(
            self.wave_start_point,
            self.wave_end_point,
            self.wave_point_count as usize,
        )
    }
}

impl JobType for Preprocessing {
    fn name(&self) -> &'static str {
        "DATA_PREPROCESSING"
    }

    /// Reads its input and rewrites its outputs from scratch: safe to run again.
    fn retry_safe(&self) -> bool {
        true
    }

    fn known_keys(&self) -> &'static [&'static str] {
        &[
            "data_dir_path",
            "wave_start_point",
            "wave_end_point",
            "wave_point_count",
            "strict",
        ]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        PrepConfig::parse(config).map(|_| ())
    }

    fn form(&self) -> Vec<FormField> {
        use FieldKind::*;
        vec![
            FormField::new("data_dir_path", SpectraDir, "/")
                .required()
                .help("under the spectra root: / is the whole survey, /F5000 one plan"),
            FormField::new("wave_start_point", Number, "6519")
                .required()
                .help("Å"),
            FormField::new("wave_end_point", Number, "6732")
                .required()
                .help("Å"),
            FormField::new("wave_point_count", Integer, "140")
                .required()
                .help("points of the common grid (2–100,000)"),
            FormField::new("strict", Bool, "false").help("fail on the first bad file"),
        ]
    }

    fn presets(&self) -> &'static [Preset] {
        &[
            Preset {
                id: "halpha",
                title: "Hα window: 6519–6732 Å, 140 points (Škoda et al. 2020)",
                values: &[
                    ("wave_start_point", "6519"),
                    ("wave_end_point", "6732"),
                    ("wave_point_count", "140"),
                ],
            },
            Preset {
                id: "full",
                title: "Full LAMOST range: 3800–9000 Å, 600 points",
                values: &[
                    ("wave_start_point", "3800"),
                    ("wave_end_point", "9000"),
                    ("wave_point_count", "600"),
                ],
            },
        ]
    }

    fn paths(&self, config: &Value) -> Vec<(&'static str, Root, String)> {
        match config.get("data_dir_path").and_then(Value::as_str) {
            Some(p) => vec![("data_dir_path", Root::Spectra, p.to_string())],
            None => Vec::new(),
        }
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>> {
        run(ctx).boxed()
    }
}

async fn run(ctx: JobContext) -> anyhow::Result<()> {
    let cfg = PrepConfig::parse(&ctx.config)?;
    let data_dir = ctx
        .paths
        .resolve(Root::Spectra, "data_dir_path", &cfg.data_dir_path)?;
    let opts = Options {
        data_dir,
        grid: cfg.grid(),
        strict: cfg.strict,
    };
    let joined = tokio::task::spawn_blocking(move || {
        let log = |line: &str| ctx.log.line(line);
        preprocess::preprocess(&opts, &ctx.dir, &ctx.cancel, &ctx.progress, &log)
    })
    .await?;
    match joined {
        Ok(_) => Ok(()),
        Err(e @ PreprocessError::Cancelled) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(key: &str, v: Value) -> Value {
        let mut c = json!({"data_dir_path": "spectra", "wave_start_point": 3800, "wave_end_point": 9000, "wave_point_count": 600});
        c[key] = v;
        c
    }

    #[test]
    fn the_originals_config_is_accepted() {
        let c = PrepConfig::parse(&with("strict", json!(false))).unwrap();
        assert_eq!((c.grid().len(), c.strict), (600, false));
        assert!(PrepConfig::parse(&with("wave_point_count", json!(600.0))).is_ok());
    }

    #[test]
    fn wave_point_count_is_bounded_at_both_edges() {
        for ok in [2, 100_000] {
            assert!(
                PrepConfig::parse(&with("wave_point_count", json!(ok))).is_ok(),
                "{ok}"
            );
        }
        for bad in [json!(1), json!(100_001), json!(2.5), json!(-3)] {
            let e = PrepConfig::parse(&with("wave_point_count", bad.clone())).unwrap_err();
            assert_eq!(e.field, "wave_point_count", "{bad}");
            assert!(e.message.contains("from 2 to 100000"), "{e}");
        }
    }

    #[test]
    fn the_wave_range_must_be_finite_and_increasing() {
        let e = PrepConfig::parse(&with("wave_end_point", json!(3800))).unwrap_err();
        assert_eq!(e.field, "wave_end_point");
        let e = PrepConfig::parse(&with("wave_start_point", json!("x"))).unwrap_err();
        assert_eq!(e.field, "wave_start_point");
        assert!(PrepConfig::parse(&with("wave_end_point", json!(3800.001))).is_ok());
    }
}
