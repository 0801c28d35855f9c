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
    // The classes differ in the H-alpha profile, which a whole-range grid (3800–9000 Å in 600
    // points, 8.7 Å apart) barely resolves: the demo resamples a 500 Å window around it.
    let prep = json!({"data_dir_path": "/", "wave_start_point": 6300, "wave_end_point": 6800, "wave_point_count": 600});
    std::fs::write(
        files.join("prep_config.json"),
        serde_json::to_string_pretty(&prep)? + "\n",
    )?;
    // The original's iteration-0 format; its pool is where the commands below put the result.
    // Patience 20 rather than 10: on these classes training can sit for a dozen epochs on a
    // plateau (single and double peaks not yet told apart) before it drops.
    let al = json!({
        "iteration": 0, "training_data_path": "", "pool_data_path": "/demo/result.h5",
        "training_data_to_add_path": "", "oracle_data_to_add_path": "",
        "classes": demo::CLASSES, "candidate_classes": ["single peak", "double peak"],
        "oracle_batch_size": 50, "perf_est_batch_size": 10, "show_candidates": false, "save_model": false,
        "min_delta_train": 1e-3, "patience_train": 20, "batch_size_train": 64, "epochs_train": 1000,
        "batch_size_predict": 16384, "perf_est_list_path": ""
    });
    std::fs::write(
        files.join("al_config.json"),
        serde_json::to_string_pretty(&al)? + "\n",
    )?;
    let counts: Vec<String> = demo::CLASSES
        .iter()
        .map(|c| format!("{} {c}", labels.iter().filter(|(_, l)| l == c).count()))
        .collect();
    let d = config.data_dir.display();
    println!(
        "wrote {n} spectra under {} ({}), seed {seed}",
        spectra.display(),
        counts.join(", ")
    );
    println!(
        "labels: {d}/files/labels.csv; job configs: {d}/files/prep_config.json, {d}/files/al_config.json"
    );
    println!("preprocess into files/demo/ (the pool that al_config.json names):");
    println!(
        "  mljm run DATA_PREPROCESSING --data-dir {d} --config {d}/files/prep_config.json --out {d}/files/demo"
    );
    println!(
        "first active-learning iteration (in the server, point pool_data_path at the preprocessing job's folder, /JOBS/job_…/result.h5):"
    );
    println!(
        "  mljm run ACTIVE_ML --data-dir {d} --config {d}/files/al_config.json --out {d}/files/al-0"
    );
    println!("the whole loop, answered from the labels:");
    println!(
        "  mljm simulate-al --pool {d}/files/demo/result.h5 --labels {d}/files/labels.csv --classes '{}' --iterations 3 --oracle-batch 50 --patience 20 --out simulation",
        demo::CLASSES.join(",")
    );
    Ok(())
}
