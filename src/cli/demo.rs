//! `mljm demo`: a synthetic LAMOST survey under `spectra/` with its labels and ready-made job
//! configs under `files/`, so a newcomer can preprocess (and label) within a minute.

use std::path::Path;

use clap::Args;
use serde_json::json;

use super::{Usage, progress::Reporter};
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
    /// Write a survey-sized pool straight away instead of FITS files: `files/pool/result.h5`
    /// as preprocessing would leave it (H-alpha window 6519–6732 Å), and its labels.
    #[arg(long)]
    pub pool_only: bool,
    /// Points per spectrum of a `--pool-only` pool.
    #[arg(long, default_value_t = 140, requires = "pool_only")]
    pub points: usize,
    /// `easy` (30 % emission stars, clean spectra) or `survey`: a survey's rarity (3 %
    /// single-peak, 2 % double-peak H-alpha) with radial velocities, low S/N, cosmic rays,
    /// telluric bands and nebular lines, preprocessed over the whole 3700–9100 Å range.
    #[arg(long, default_value = "easy", conflicts_with = "pool_only")]
    pub rarity: demo::Rarity,
}

/// `--pool-only`: `files/pool/result.h5` and `files/pool/labels.csv`.
async fn pool_only(args: DemoArgs, config: Config) -> anyhow::Result<()> {
    if args.points < 16 {
        return Err(Usage(format!(
            "--points {}: the CNN needs at least 16 points a spectrum",
            args.points
        ))
        .into());
    }
    let dir = config.files_root().join("pool");
    std::fs::create_dir_all(&dir)?;
    let (path, csv) = (dir.join("result.h5"), dir.join("labels.csv"));
    let (n, points, seed) = (args.n, args.points, args.seed);
    let reporter = Reporter::new();
    let progress = Progress::new();
    let work = {
        let (path, csv, progress) = (path.clone(), csv.clone(), progress.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
            out.write_all(b"filename,label\n")?;
            demo::write_pool(
                &path,
                n,
                points,
                seed,
                &Cancel::new(),
                &progress,
                |name, label| writeln!(out, "{name},{label}"),
            )?;
            out.flush()?;
            Ok(())
        })
    };
    reporter.follow(&progress, work).await??;
    let d = config.data_dir.display();
    println!(
        "wrote a pool of {n} spectra × {points} points to {} (seed {seed}), labels in {}",
        path.display(),
        csv.display()
    );
    println!(
        "name it as pool_data_path (/pool/result.h5) of an ACTIVE_ML config run with --data-dir {d}"
    );
    println!("(mljm bench-al makes and times such pools itself)");
    Ok(())
}

pub async fn run(args: DemoArgs, config_file: Option<&Path>) -> anyhow::Result<()> {
    let overrides = crate::config::Overrides {
        data_dir: args.data_dir.clone(),
        ..Default::default()
    };
    let config = Config::load(config_file, &overrides)?;
    if args.pool_only {
        return pool_only(args, config).await;
    }
    let (spectra, files) = (config.spectra_root(), config.files_root());
    std::fs::create_dir_all(&spectra)?;
    std::fs::create_dir_all(&files)?;
    let (n, seed, rarity) = (args.n, args.seed, args.rarity);
    let reporter = Reporter::new();
    let progress = Progress::new();
    let work = {
        let (spectra, progress) = (spectra.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            demo::write_survey_at(&spectra, n, seed, rarity, &Cancel::new(), &progress)
        })
    };
    let labels = reporter.follow(&progress, work).await??;

    let mut csv = String::from("filename,label\n");
    for (name, label) in &labels {
        csv.push_str(&format!("{name},{label}\n"));
    }
    std::fs::write(files.join("labels.csv"), csv)?;
    // The classes differ in the H-alpha profile, which a whole-range grid (3800–9000 Å in 600
    // points, 8.7 Å apart) barely resolves: the easy demo resamples a 500 Å window around it.
    // The survey-rarity demo keeps the whole range, as a survey's preprocessing would, at 3 Å
    // (the nuisances sit across it: tellurics redwards, nebular lines beside H-alpha).
    let prep = match rarity {
        demo::Rarity::Easy => {
            json!({"data_dir_path": "/", "wave_start_point": 6300, "wave_end_point": 6800, "wave_point_count": 600})
        }
        demo::Rarity::Survey => {
            json!({"data_dir_path": "/", "wave_start_point": 3700, "wave_end_point": 9100, "wave_point_count": 1800})
        }
    };
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
        "wrote {n} spectra under {} ({}), seed {seed}, {rarity} rarity",
        spectra.display(),
        counts.join(", "),
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
