//! `mljm demo`: a synthetic LAMOST survey under `spectra/` with its labels and ready-made job
//! configs under `files/`, so a newcomer can preprocess (and label) within a minute.

use std::path::Path;

use clap::Args;
use serde_json::json;

use super::progress::Reporter;
use crate::{
    config::Config,
    science::{Cancel, Progress, demo},
};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of spectra.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Data directory [default: ./mljm-data, or data_dir of config.toml]
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Random seed: the same seed writes the same survey.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub async fn run(args: DemoArgs, config_file: Option<&Path>) -> anyhow::Result<()> {
    let overrides = crate::config::Overrides {
        data_dir: args.data_dir.clone(),
        ..Default::default()
    };
    let config = Config::load(config_file, &overrides)?;
    let (spectra, files) = (config.spectra_root(), config.files_root());
    std::fs::create_dir_all(&spectra)?;
    std::fs::create_dir_all(&files)?;
    let (n, seed) = (args.n, args.seed);
    let reporter = Reporter::new();
    let progress = Progress::new();
    let work = {
        let (spectra, progress) = (spectra.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            demo::write_survey(&spectra, n, seed, &Cancel::new(), &progress)
        })
    };
    let labels = reporter.follow(&progress, work).await??;

    let mut csv = String::from("filename,label\n");
    for (name, label) in &labels {
        csv.push_str(&format!("{name},{label}\n"));
    }
    std::fs::write(files.join("labels.csv"), csv)?;
    let prep = json!({"data_dir_path": "/", "wave_start_point": 3800, "wave_end_point": 9000, "wave_point_count": 600});
    std::fs::write(
        files.join("prep_config.json"),
        serde_json::to_string_pretty(&prep)? + "\n",
    )?;
    let counts: Vec<String> = demo::CLASSES
        .iter()
        .map(|c| format!("{} {c}", labels.iter().filter(|(_, l)| l == c).count()))
        .collect();
    let data_dir = config.data_dir.display();
    println!(
        "wrote {n} spectra under {} ({}), seed {seed}",
        spectra.display(),
        counts.join(", ")
    );
    println!("labels: {}", files.join("labels.csv").display());
    println!("preprocess them:");
    println!(
        "  mljm run DATA_PREPROCESSING --data-dir {data_dir} --config {} --out prep",
        files.join("prep_config.json").display()
    );
    println!("or in the server (mljm serve --data-dir {data_dir}):");
    println!(
        "  mljm jobs create --type DATA_PREPROCESSING --label demo --config {} --run",
        files.join("prep_config.json").display()
    );
    Ok(())
}
