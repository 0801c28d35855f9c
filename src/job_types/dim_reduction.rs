//! DIM_REDUCTION: a 2-D t-SNE of a labelled spectra file (`data_path`, e.g. a training_data.h5)
//! written as `dim_reduc.json` (`{x, y, labels, classes}`) and a PNG scatter plot.

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    job_types::{ConfigError, FieldKind, FormField, JobContext, JobType, Root, parse_config},
    science::{h5::read_spectra, plot, tsne},
};

pub struct DimReduction;

#[derive(Debug, Deserialize)]
pub struct DimConfig {
    pub data_path: String,
    pub classes: Vec<String>,
    #[serde(default)]
    pub seed: u64,
}

impl DimConfig {
    pub fn parse(config: &Value) -> Result<DimConfig, ConfigError> {
        let c: DimConfig = parse_config(config)?;
        if c.data_path.trim().is_empty() {
            return Err(ConfigError::new(
                "data_path",
                "must name an HDF5 file with fluxes and labels",
            ));
        }
        if c.classes.is_empty() {
            return Err(ConfigError::new(
                "classes",
                "at least one class name is needed",
            ));
        }
        Ok(c)
    }
}

impl JobType for DimReduction {
    fn name(&self) -> &'static str {
        "DIM_REDUCTION"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn known_keys(&self) -> &'static [&'static str] {
        &["data_path", "classes", "seed"]
    }

    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        DimConfig::parse(config).map(|_| ())
    }

    fn form(&self) -> Vec<FormField> {
        vec![
            FormField::new("data_path", FieldKind::Hdf5File, "")
                .required()
                .help("an HDF5 file with fluxes and labels, e.g. a training_data.h5"),
            FormField::new(
                "classes",
                FieldKind::List,
                "other, single peak, double peak",
            )
            .required(),
            FormField::new("seed", FieldKind::Integer, "0"),
        ]
    }

    fn paths(&self, config: &Value) -> Vec<(&'static str, Root, String)> {
        config
            .get("data_path")
            .and_then(Value::as_str)
            .map(|p| vec![("data_path", Root::Files, p.to_string())])
            .unwrap_or_default()
    }

    fn run(&self, ctx: JobContext) -> BoxFuture<'static, anyhow::Result<()>> {
        async move {
            let cfg = DimConfig::parse(&ctx.config)?;
            let path = ctx.paths.resolve(Root::Files, "data_path", &cfg.data_path)?;
            tokio::task::spawn_blocking(move || {
                let set = read_spectra(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                let labels: Vec<usize> = match &set.labels {
                    Some(l) => l.iter().map(|&v| v.max(0) as usize).collect(),
                    None => anyhow::bail!("{} has no labels dataset", path.display()),
                };
                if let Some(l) = labels.iter().find(|&&l| l >= cfg.classes.len()) {
                    anyhow::bail!("label {l} in {} has no name in classes {:?}", path.display(), cfg.classes);
                }
                let rows: Vec<Vec<f64>> = (0..set.len()).map(|i| set.row(i).to_vec()).collect();
                ctx.log.line(&format!("t-SNE of {} spectra (perplexity {:.1})", rows.len(), tsne::perplexity(rows.len())));
                let Some(xy) = tsne::embed(&rows, cfg.seed) else {
                    ctx.log.line(&format!("only {} spectra: at least {} are needed for a t-SNE plot; nothing to draw", rows.len(), tsne::MIN_SPECTRA));
                    return Ok(());
                };
                let doc = json!({"x": xy.iter().map(|p| p.0).collect::<Vec<_>>(), "y": xy.iter().map(|p| p.1).collect::<Vec<_>>(), "labels": labels, "classes": cfg.classes});
                std::fs::write(ctx.dir.join("dim_reduc.json"), serde_json::to_vec(&doc)?)?;
                plot::scatter_png(&ctx.dir.join("dim_reduc.png"), "t-SNE of the training set", &xy, &labels, &cfg.classes)?;
                ctx.log.line("wrote dim_reduc.json and dim_reduc.png");
                Ok(())
            })
            .await?
        }
        .boxed()
    }
}
