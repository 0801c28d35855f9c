//! `mljm models list|show|predict`: the model registry of a running server, and online
//! inference on FITS files or on spectra of the survey by name.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{
    Usage,
    jobs::{Client, ServerOpts},
};
use crate::models::{ModelPage, ModelView, online::Prediction};

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub opts: ServerOpts,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Registered models, newest first.
    List {
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// One model in full (by id or alias).
    Show { model: String },
    /// Class probabilities of LAMOST FITS files, or (with --name) of spectra of the survey.
    Predict {
        /// The model's id or alias.
        model: String,
        /// FITS files (.fits or .fits.gz), or with --name the spectra's FILENAMEs.
        #[arg(required = true)]
        spectra: Vec<String>,
        /// The arguments are names of spectra under the server's spectra root.
        #[arg(long)]
        name: bool,
    },
}

fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.opts.server);
    let json_out = args.opts.json;
    match args.command {
        ModelsCommand::List { offset, limit } => {
            let url = c.url(&format!("/models/?offset={offset}&limit={limit}"));
            let page: ModelPage = c.send(c.http.get(url)).await?.json().await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<24}  {:<8}  {:>4}  {:>8}  {:>8}  {:>6}  CLASSES",
                "MODEL", "NAME", "ALIAS", "IT", "TRAINING", "LOSS", "PERF"
            );
            for m in &page.models {
                print_row(m);
            }
            if page.models.is_empty() {
                eprintln!(
                    "no registered models: an ACTIVE_ML iteration with save_model: true registers one"
                );
            } else if page.total > offset + page.models.len() as u64 {
                eprintln!(
                    "{} of {} shown (--offset, --limit)",
                    page.models.len(),
                    page.total
                );
            }
        }
        ModelsCommand::Show { model } => {
            let url = c.url(&format!("/models/{}", segment(&model)));
            let m: Value = c.send(c.http.get(url)).await?.json().await?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        ModelsCommand::Predict {
            model,
            spectra,
            name,
        } => {
            let url = c.url(&format!("/models/{}/predict", segment(&model)));
            let req = if name {
                c.http.post(url).json(&json!({ "spectra": spectra }))
            } else {
                let mut form = reqwest::multipart::Form::new();
                for f in &spectra {
                    let path = PathBuf::from(f);
                    let bytes =
                        std::fs::read(&path).map_err(|e| Usage(format!("cannot read {f}: {e}")))?;
                    let file_name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| f.clone());
                    form = form.part(
                        "file",
                        reqwest::multipart::Part::bytes(bytes).file_name(file_name),
                    );
                }
                c.http.post(url).multipart(form)
            };
            let answers: Vec<Prediction> = c.send(req).await?.json().await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&answers)?);
                return Ok(());
            }
            let shown: ModelView = c
                .send(c.http.get(c.url(&format!("/models/{}", segment(&model)))))
                .await?
                .json()
                .await?;
            println!(
                "{:<40}  {:<16}  {:>7}  PROBABILITIES ({})",
                "FILENAME",
                "LABEL",
                "ENTROPY",
                shown.classes.join(", ")
            );
            for a in answers {
                let p: Vec<String> = a.probabilities.iter().map(|p| format!("{p:.4}")).collect();
                println!(
                    "{:<40}  {:<16}  {:>7.4}  {}",
                    a.filename,
                    a.label,
                    a.entropy,
                    p.join(" ")
                );
            }
        }
    }
    Ok(())
}

fn print_row(m: &ModelView) {
    println!(
        "{:<36}  {:<24}  {:<8}  {:>4}  {:>8}  {:>8}  {:>6}  {}",
        m.model_id,
        m.name.chars().take(24).collect::<String>(),
        m.alias.as_deref().unwrap_or("-"),
        m.iteration,
        m.training_size,
        m.metrics["best_loss"]
            .as_f64()
            .map_or("-".into(), |l| format!("{l:.4}")),
        m.perf_estimate
            .map_or("-".into(), |p| format!("{:.0}%", p * 100.0)),
        m.classes.join(", ")
    );
}
