//! CLASSIFY (SPEC §6): a trained model applied to a whole survey, from a preprocessed pool or
//! straight from a LAMOST directory (read, resampled onto the model's own grid and predicted
//! in one streamed pass). Writes `predictions.h5` (filenames, labels, probabilities,
//! entropies) and the candidate catalogue, `candidates.csv` and `candidates.vot` (VOTable 1.4,
//! written by CDS's `votable` crate). Memory is flat in the survey size: predictions go to
//! the HDF5 file a chunk at a time, candidates to a file on disk; every output is written
//! under a `.partial` name and renamed only when the whole pass is done, so a crash or an
//! abort never leaves a half file under a result's name, and a rerun starts cleanly.

mod catalogue;
mod writer;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use catalogue::Candidate;
use catalogue::CandidateLog;
use writer::PredictionsWriter;

use super::{
    Cancel, Progress,
    active::{self, Predictions},
    cnn::{Cnn, CnnError},
    features::Features,
    fits::{self, Metadata},
    names::NameLog,
    pool::{PoolFile, chunk_rows, refuse_non_finite},
    preprocess::{self, Skipped, linspace},
    scan::{pace, thousands},
};

/// What a saved model was trained for, beside its weights.
pub const CARD: &str = "model.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const OUTPUTS: [&str; 4] = [
    "predictions.h5",
    "candidates.csv",
    "candidates.vot",
    "skipped.json",
];

/// `model.json`: what a model needs besides its weights to be used on new spectra.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub classes: Vec<String>,
    #[serde(default)]
    pub candidate_classes: Vec<String>,
    pub wave_start: f64,
    pub wave_end: f64,
    pub wave_count: usize,
    /// Labelled spectra it was trained on (before SMOTE).
    #[serde(default)]
    pub training_size: usize,
    #[serde(default)]
    pub iteration: i64,
    /// What the network sees of a row (scaled, the original's, or lines).
    #[serde(default)]
    pub features: Features,
    /// Final loss, epochs, times (the iteration's `metrics.json`).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl Card {
    pub fn grid(&self) -> Vec<f64> {
        linspace(self.wave_start, self.wave_end, self.wave_count)
    }

    /// Whether `wave` is this model's grid (to the precision of a float's last digits).
    pub fn fits_wave(&self, wave: &[f64]) -> bool {
        let grid = self.grid();
        wave.len() == grid.len()
            && wave
                .iter()
                .zip(&grid)
                .all(|(a, b)| (a - b).abs() <= 1e-9 * a.abs().max(1.0))
    }

    pub fn describe_grid(&self) -> String {
        format!(
            "{} points from {} to {} Å",
            self.wave_count, self.wave_start, self.wave_end
        )
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join(CARD), serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", dir.join(CARD).display()))
    }

    /// `model.json` of an iteration's directory; for an iteration made before it was written,
    /// the classes of its `new_config.json` and the wave of its `training_data.h5`.
    pub fn read(dir: &Path) -> anyhow::Result<Card> {
        let path = dir.join(CARD);
        if let Ok(bytes) = std::fs::read(&path) {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a model card", path.display()));
        }
        let config = dir.join("new_config.json");
        let cfg: serde_json::Value = std::fs::read(&config)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                anyhow!(
                    "{}: neither {CARD} nor new_config.json is there, so the model's classes \
                     are unknown",
                    dir.display()
                )
            })?;
        let strings = |key: &str| -> Vec<String> {
            cfg[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let training = dir.join("training_data.h5");
        let pool = PoolFile::open(&training).map_err(|e| {
            anyhow!(
                "cannot read the model's wave grid from {}: {e}",
                training.display()
            )
        })?;
        let (Some(&start), Some(&end)) = (pool.wave.first(), pool.wave.last()) else {
            bail!("{}: an empty wave grid", training.display());
        };
        Ok(Card {
            classes: strings("classes"),
            candidate_classes: strings("candidate_classes"),
            wave_start: start,
            wave_end: end,
            wave_count: pool.wave.len(),
            training_size: pool.len(),
            iteration: cfg["iteration"].as_i64().map_or(0, |i| i - 1),
            features: serde_json::from_value(cfg["features"].clone()).unwrap_or_default(),
            metrics: serde_json::Value::Null,
        })
    }
}

/// A model ready to predict: its CNN and its card.
pub struct Model {
    pub cnn: Cnn,
    pub card: Card,
}

impl Model {
    /// From an iteration's directory, or its `model.safetensors` (the card read beside it).
    pub fn load(path: &Path, device: &Device) -> anyhow::Result<Model> {
        let (dir, weights) = if path.is_dir() {
            (path.to_path_buf(), path.join(WEIGHTS))
        } else {
            (
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                path.to_path_buf(),
            )
        };
        if !weights.is_file() {
            bail!(
                "{}: no model weights (run the iteration with save_model: true)",
                weights.display()
            );
        }
        let card = Card::read(&dir)?;
        if card.classes.len() < 2 {
            bail!("{}: the model names fewer than 2 classes", dir.display());
        }
        let cnn = Cnn::load(&weights, card.wave_count, card.classes.len(), device)
            .map_err(|e| anyhow!("cannot load {}: {e}", weights.display()))?
            .with_features(card.features);
        Ok(Model { cnn, card })
    }

    /// Probabilities, labels and entropies of preprocessed rows on the model's grid.
    pub fn predict(
        &self,
        rows: &[&[f64]],
        batch: usize,
        cancel: &Cancel,
    ) -> Result<Predictions, CnnError> {
        active::predict(&self.cnn, rows, batch, cancel)
    }

    /// A LAMOST spectrum resampled onto the model's grid, as preprocessing would.
    pub fn prepare(&self, spectrum: fits::Spectrum) -> preprocess::Row {
        preprocess::resample(spectrum, &self.card.grid())
    }
}

/// Where the spectra come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A preprocessed HDF5 file (filenames, wave, fluxes) on the model's grid.
    Pool(PathBuf),
    /// A LAMOST directory, read recursively.
    Directory(PathBuf),
}

/// Finds a spectrum's FITS file by its FILENAME (for the catalogue's header columns when
/// the input is a pool).
pub type Locate = dyn Fn(&str) -> Option<PathBuf> + Sync;

pub struct Options<'a> {
    pub input: Input,
    /// Class indexes whose predictions are candidates.
    pub candidate_classes: Vec<usize>,
    pub min_probability: f64,
    pub batch: usize,
    pub locate: Option<&'a Locate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub spectra: usize,
    pub candidates: usize,
    pub skipped: usize,
    pub seconds: f64,
}

/// Classifies every spectrum of `opts.input` with `model` into `out_dir`.
pub fn classify(
    model: &Model,
    opts: &Options,
    out_dir: &Path,
    cancel: &Cancel,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    for name in OUTPUTS.iter().chain(&["candidates.jsonl"]) {
        remove_if_there(&out_dir.join(name))?;
        remove_if_there(&partial(out_dir, name))?;
    }
    // Whatever stops the run (an error, an abort, a panic) takes its partial files with it.
    let _partials = Partials(
        OUTPUTS
            .iter()
            .chain(&["candidates.jsonl"])
            .map(|n| partial(out_dir, n))
            .chain([out_dir.join("predictions.h5.old")])
            .collect(),
    );
    let classes = &model.card.classes;
    let names =
        NameLog::new(out_dir).map_err(|e| anyhow!("cannot write in {}: {e}", out_dir.display()))?;
    let mut sink = Sink {
        predictions: PredictionsWriter::create(&partial(out_dir, "predictions.h5"), classes)
            .map_err(|e| anyhow!("cannot write predictions.h5: {e}"))?,
        candidates: CandidateLog::create(&partial(out_dir, "candidates.jsonl"))?,
        names,
        opts,
        classes,
        log,
        last_line: Instant::now(),
        started,
    };
    let mut skipped = match &opts.input {
        Input::Pool(path) => {
            from_pool(model, path, &mut sink, cancel, progress)?;
            Vec::new()
        }
        Input::Directory(dir) => from_directory(model, dir, &mut sink, cancel, progress)?,
    };
    if cancel.is_cancelled() {
        return Err(CnnError::Cancelled.into());
    }
    let Sink {
        predictions,
        candidates,
        mut names,
        ..
    } = sink;
    // A FILENAME seen before: the later file in path order loses (SPEC §10).
    let dups = names
        .duplicates()
        .map_err(|e| anyhow!("cannot look for repeated names: {e}"))?;
    for d in &dups {
        let reason = format!("duplicate FILENAME {}: an earlier file has it", d.filename);
        log(&format!("skipped {}: {reason}", d.path));
        skipped.push(Skipped {
            file: d.path.clone(),
            reason,
        });
    }
    skipped.sort_by(|a, b| Path::new(&a.file).cmp(Path::new(&b.file)));
    let removed: Vec<u64> = dups.iter().map(|d| d.row).collect();
    let spectra = predictions.rows() - removed.len();
    if spectra == 0 {
        bail!("no spectrum could be classified");
    }
    predictions
        .remove_rows(&removed, classes)
        .map_err(|e| anyhow!("cannot write predictions.h5: {e}"))?;
    let wanted: Vec<&str> = opts
        .candidate_classes
        .iter()
        .filter_map(|&c| classes.get(c).map(String::as_str))
        .collect();
    let count = candidates.finish(
        &partial(out_dir, "candidates.csv"),
        &partial(out_dir, "candidates.vot"),
        &removed.iter().copied().collect(),
        &format!(
            "Spectra predicted as {} with probability ≥ {}",
            wanted.join(" or "),
            opts.min_probability
        ),
    )?;
    std::fs::write(
        partial(out_dir, "skipped.json"),
        serde_json::to_vec_pretty(&skipped)?,
    )?;
    // predictions.h5, which marks a whole result, comes last.
    for name in OUTPUTS.iter().rev() {
        std::fs::rename(partial(out_dir, name), out_dir.join(name))
            .with_context(|| format!("cannot write {name}"))?;
    }
    let report = Report {
        spectra,
        candidates: count,
        skipped: skipped.len(),
        seconds: started.elapsed().as_secs_f64(),
    };
    log(&format!(
        "classified {} spectra in {:.2} s ({} spectra/s): {} candidates with probability ≥ {}; {} file(s) skipped",
        thousands(report.spectra),
        report.seconds,
        thousands((report.spectra as f64 / report.seconds.max(1e-9)) as usize),
        thousands(report.candidates),
        opts.min_probability,
        report.skipped
    ));
    Ok(report)
}

/// Removes the files it names when dropped (those renamed by then are gone already).
struct Partials(Vec<PathBuf>);

impl Drop for Partials {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn partial(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.partial"))
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Where each chunk's predictions go.
struct Sink<'a> {
    predictions: PredictionsWriter,
    candidates: CandidateLog,
    names: NameLog,
    opts: &'a Options<'a>,
    classes: &'a [String],
    log: &'a (dyn Fn(&str) + Sync),
    last_line: Instant,
    started: Instant,
}

impl Sink<'_> {
    /// One chunk: its names (and the files they came from), their header keys where read,
    /// and the model's answers.
    fn push(
        &mut self,
        names: &[String],
        files: &[String],
        metadata: &[Option<Metadata>],
        p: &Predictions,
        total: usize,
    ) -> anyhow::Result<()> {
        let first_row = self.predictions.rows();
        self.predictions
            .push(names, &p.labels, &p.probabilities, &p.entropies)
            .map_err(|e| anyhow!("cannot write predictions.h5: {e}"))?;
        for (i, name) in names.iter().enumerate() {
            self.names
                .push(name, files.get(i).unwrap_or(name))
                .map_err(|e| anyhow!("the name log: {e}"))?;
            let label = p.labels[i];
            let probability = p.probabilities[i][label] as f64;
            if !self.opts.candidate_classes.contains(&label)
                || probability < self.opts.min_probability
            {
                continue;
            }
            let meta = match metadata.get(i).cloned().flatten() {
                Some(m) => Some(m),
                None => self.opts.locate.and_then(|l| header_of(l, name)),
            };
            self.candidates.push(&Candidate::new(
                (first_row + i) as u64,
                name,
                meta.as_ref(),
                &self.classes[label],
                probability,
                p.entropies[i],
            ))?;
        }
        if self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            (self.log)(&format!(
                "classified {} of {} spectra ({})",
                thousands(self.predictions.rows()),
                thousands(total),
                pace(
                    self.predictions.rows() as u64,
                    total as u64,
                    self.started.elapsed()
                )
            ));
        }
        Ok(())
    }
}

/// The header keys of the spectrum named `name`, where it can be found and read.
fn header_of(locate: &Locate, name: &str) -> Option<Metadata> {
    let path = locate(name)?;
    fits::read_spectrum(&path, fits::Read::WithMetadata)
        .ok()
        .and_then(|s| s.metadata)
}

fn from_pool(
    model: &Model,
    path: &Path,
    sink: &mut Sink,
    cancel: &Cancel,
    progress: &Progress,
) -> anyhow::Result<()> {
    let pool = PoolFile::open(path)
        .map_err(|e| anyhow!("cannot read the pool {}: {e}", path.display()))?;
    if !model.card.fits_wave(&pool.wave) {
        bail!(
            "the pool {} is on another wave grid ({} points from {} to {} Å) than the model ({}): \
             preprocess the survey onto the model's grid, or classify its LAMOST directory \
             (data_dir_path)",
            path.display(),
            pool.wave.len(),
            pool.wave.first().copied().unwrap_or(f64::NAN),
            pool.wave.last().copied().unwrap_or(f64::NAN),
            model.card.describe_grid()
        );
    }
    let n = pool.len();
    (sink.log)(&format!(
        "classifying the {} spectra of {}",
        thousands(n),
        path.display()
    ));
    progress.start_step("classifying", n as u64);
    let chunk = chunk_rows(pool.points());
    std::thread::scope(|threads| -> anyhow::Result<()> {
        type Read = hdf5::Result<(usize, Vec<String>, ndarray::Array2<f64>)>;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Read>(1);
        let pool = &pool;
        threads.spawn(move || {
            for start in (0..n).step_by(chunk) {
                let end = (start + chunk).min(n);
                let read = pool
                    .names(start..end)
                    .and_then(|names| Ok((start, names, pool.fluxes(start..end)?)));
                if tx.send(read).is_err() {
                    break;
                }
            }
        });
        for read in rx {
            if cancel.is_cancelled() {
                return Err(CnnError::Cancelled.into());
            }
            let (start, names, fluxes) =
                read.map_err(|e| anyhow!("cannot read the pool {}: {e}", path.display()))?;
            let mut rows = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let row = fluxes.row(i).to_slice().unwrap_or(&[]);
                refuse_non_finite("pool", path, name, start + i, row)?;
                rows.push(row);
            }
            let p = model.predict(&rows, sink.opts.batch, cancel)?;
            let files: Vec<String> = (start..start + names.len())
                .map(|r| format!("row {r} of the pool"))
                .collect();
            sink.push(&names, &files, &[], &p, n)?;
            progress.advance(names.len() as u64);
        }
        Ok(())
    })
}

fn from_directory(
    model: &Model,
    dir: &Path,
    sink: &mut Sink,
    cancel: &Cancel,
    progress: &Progress,
) -> anyhow::Result<Vec<Skipped>> {
    if !dir.is_dir() {
        bail!(
            "the data directory {} does not exist or is not a directory",
            dir.display()
        );
    }
    let log = sink.log;
    log(&format!(
        "classifying every spectrum under {} on the model's grid ({})",
        dir.display(),
        model.card.describe_grid()
    ));
    progress.start_step("classifying", 0);
    let grid = model.card.grid();
    preprocess::stream(
        dir,
        &grid,
        fits::Read::WithMetadata,
        cancel,
        progress,
        log,
        |rx| -> anyhow::Result<Vec<Skipped>> {
            let mut skipped = Vec::new();
            for batch in rx {
                let files_in_batch = batch.len();
                let mut names = Vec::with_capacity(batch.len());
                let mut files = Vec::with_capacity(batch.len());
                let mut metadata = Vec::with_capacity(batch.len());
                let mut fluxes = Vec::with_capacity(batch.len());
                for (path, row) in batch {
                    let file = path
                        .strip_prefix(dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    match row {
                        Ok(row) => {
                            names.push(row.filename);
                            files.push(file);
                            metadata.push(row.metadata);
                            fluxes.push(row.flux);
                        }
                        Err(reason) => {
                            log(&format!("skipped {file}: {reason}"));
                            skipped.push(Skipped { file, reason });
                        }
                    }
                }
                if !names.is_empty() {
                    let rows: Vec<&[f64]> = fluxes.iter().map(Vec::as_slice).collect();
                    let p = model.predict(&rows, sink.opts.batch, cancel)?;
                    let total = progress.snapshot().2 as usize;
                    sink.push(&names, &files, &metadata, &p, total)?;
                }
                progress.advance(files_in_batch as u64);
            }
            Ok(skipped)
        },
    )
    .map_err(|e| anyhow!(e))?
}

#[cfg(test)]
mod tests;
