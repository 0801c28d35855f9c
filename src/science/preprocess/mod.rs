//! DATA_PREPROCESSING: every LAMOST spectrum under a directory, resampled onto one wavelength
//! grid (numpy.interp semantics) and min–max scaled to [-1, 1] per spectrum (scikit-learn's
//! `minmax_scale`), streamed into `result.h5` in sorted path order; bad files go to
//! `skipped.json` with their reason.
//!
//! Three stages joined by bounded channels: a walker lists files in batches, rayon reads and
//! resamples a batch on every core, and a writer thread appends it to the HDF5 file while the
//! next batch is computed. Memory holds a few batches, whatever the number of files.

pub mod resample;
mod walk;

pub use resample::{Row, interp, linspace, minmax_scale, resample};
pub use walk::{Found, SortedWalk};

use std::{
    path::{Path, PathBuf},
    sync::mpsc::{Receiver, SyncSender, sync_channel},
    time::{Duration, Instant},
};

use rayon::prelude::*;

use super::{
    Cancel, Progress, fits,
    h5::SpectraWriter,
    names::{Duplicate, NameLog},
};

/// Files read per parallel batch: large enough to keep every core busy, small enough that
/// an abort is seen within milliseconds.
const BATCH: usize = 256;

/// A file that was not used, and why (`file` relative to the data directory).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub grid: Vec<f64>,
    /// Any bad file fails the run.
    pub strict: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub files: usize,
    pub spectra: usize,
    pub skipped: usize,
    pub dropped_pixels: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("the data directory {0} does not exist or is not a directory")]
    NoDataDir(PathBuf),
    #[error("no .fits or .fits.gz files under {0}")]
    NoFiles(PathBuf),
    #[error("{file}: {reason} (strict: true stops at the first bad file)")]
    Strict { file: String, reason: String },
    #[error("cancelled")]
    Cancelled,
    #[error("cannot write {path}: {message}")]
    Output { path: PathBuf, message: String },
}

/// A file and what became of it: a resampled row, or why it was skipped.
pub type Outcome = (PathBuf, Result<Row, String>);

/// Preprocesses `opts.data_dir` into `out_dir/result.h5` and `out_dir/skipped.json`. The HDF5
/// file appears under its name only when complete; an error or cancellation leaves none.
pub fn preprocess(
    opts: &Options,
    out_dir: &Path,
    cancel: &Cancel,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Report, PreprocessError> {
    let started = Instant::now();
    if !opts.data_dir.is_dir() {
        return Err(PreprocessError::NoDataDir(opts.data_dir.clone()));
    }
    progress.start_step("preprocessing", 0);
    log(&format!(
        "preprocessing {} onto a grid of {} points",
        opts.data_dir.display(),
        opts.grid.len()
    ));
    let result = out_dir.join("result.h5");
    let partial = out_dir.join("result.h5.partial");
    let _ = std::fs::remove_file(&result);
    let cleanup = RemoveOnDrop(partial.clone());

    let written = stream(
        &opts.data_dir,
        &opts.grid,
        fits::Read::Data,
        cancel,
        progress,
        log,
        |rows| write(opts, &partial, rows, progress, log),
    )
    .map_err(|message| PreprocessError::Output {
        path: partial.clone(),
        message,
    })
    .and_then(|w| w);
    if cancel.is_cancelled() {
        return Err(PreprocessError::Cancelled);
    }
    let written = written?;
    if written.files == 0 {
        return Err(PreprocessError::NoFiles(opts.data_dir.clone()));
    }
    let skipped_json = serde_json::to_vec_pretty(&written.skipped).unwrap_or_default();
    let output = |path: &Path, e: std::io::Error| PreprocessError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::write(out_dir.join("skipped.json"), skipped_json)
        .map_err(|e| output(&out_dir.join("skipped.json"), e))?;
    std::fs::rename(&partial, &result).map_err(|e| output(&result, e))?;
    std::mem::forget(cleanup);
    let report = Report {
        files: written.files,
        spectra: written.spectra,
        skipped: written.skipped.len(),
        dropped_pixels: written.dropped_pixels,
        seconds: started.elapsed().as_secs_f64(),
    };
    log(&format!(
        "wrote {} spectra to result.h5 in {:.2} s ({:.0} spectra/s); {} file(s) skipped; {} non-finite flux pixel(s) dropped from {} file(s)",
        report.spectra,
        report.seconds,
        report.files as f64 / report.seconds.max(1e-9),
        report.skipped,
        report.dropped_pixels,
        written.files_with_drops
    ));
    Ok(report)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every FITS file under `data_dir`, read (with its header keys when `read` asks) and
/// resampled onto `grid` on every core, handed to `consume` (on a thread of its own) in
/// batches, in sorted path order. Memory holds a few batches, whatever the number of files.
/// The total goes to `progress` as soon as it is counted. `Err` only when a thread cannot
/// start or `consume` panicked.
pub fn stream<T: Send>(
    data_dir: &Path,
    grid: &[f64],
    read: fits::Read,
    cancel: &Cancel,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
    consume: impl FnOnce(Receiver<Vec<Outcome>>) -> T + Send,
) -> Result<T, String> {
    let (found_tx, found_rx) = sync_channel::<Vec<Found>>(2);
    let (rows_tx, rows_rx) = sync_channel::<Vec<Outcome>>(2);
    std::thread::scope(|s| {
        // The total for the progress report, counted while the work has already begun.
        let _ = std::thread::Builder::new()
            .name("prep-count".into())
            .spawn_scoped(s, || {
                let total = SortedWalk::new(data_dir).count();
                progress.set_total(total as u64);
                log(&format!("{total} FITS files under {}", data_dir.display()));
            });
        let walker = std::thread::Builder::new()
            .name("prep-walk".into())
            .spawn_scoped(s, || walk(data_dir, found_tx, cancel));
        let consumer = std::thread::Builder::new()
            .name("prep-write".into())
            .spawn_scoped(s, || consume(rows_rx));
        let (walker, consumer) = match (walker, consumer) {
            (Ok(w), Ok(c)) => (w, c),
            (Err(e), _) | (_, Err(e)) => return Err(format!("cannot start a thread: {e}")),
        };
        compute(grid, read, found_rx, rows_tx, cancel);
        let _ = walker.join();
        consumer
            .join()
            .map_err(|_| "the writer thread panicked".to_string())
    })
}

fn walk(root: &Path, tx: SyncSender<Vec<Found>>, cancel: &Cancel) {
    let mut batch = Vec::with_capacity(BATCH);
    for found in SortedWalk::new(root) {
        batch.push(found);
        if batch.len() == BATCH
            && (cancel.is_cancelled()
                || tx
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_err())
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
}

fn compute(
    grid: &[f64],
    read: fits::Read,
    rx: Receiver<Vec<Found>>,
    tx: SyncSender<Vec<Outcome>>,
    cancel: &Cancel,
) {
    for batch in rx {
        if cancel.is_cancelled() {
            return;
        }
        let rows: Vec<Outcome> = batch
            .into_par_iter()
            .map(|found| match found {
                Found::Bad(path, reason) => (path, Err(reason)),
                Found::File(_) if cancel.is_cancelled() => {
                    (PathBuf::new(), Err("cancelled".into()))
                }
                Found::File(path) => {
                    let row = read_and_resample(&path, grid, read);
                    (path, row)
                }
            })
            .collect();
        if cancel.is_cancelled() || tx.send(rows).is_err() {
            return;
        }
    }
}

fn read_and_resample(path: &Path, grid: &[f64], read: fits::Read) -> Result<Row, String> {
    // cfitsio and our checks must not take the run down with them, whatever the file holds.
    std::panic::catch_unwind(|| fits::read_spectrum(path, read))
        .map_err(|_| "the reader failed on this file (internal error)".to_string())?
        .map(|s| resample(s, grid))
        .map_err(|e| e.to_string())
}

/// Files whose dropped non-finite pixels get a log line of their own; a survey with a bad
/// detector column would otherwise write one line per spectrum.
const DROP_LINES: usize = 1000;

struct Written {
    files: usize,
    spectra: usize,
    skipped: Vec<Skipped>,
    dropped_pixels: u64,
    files_with_drops: usize,
}

fn write(
    opts: &Options,
    partial: &Path,
    rx: Receiver<Vec<Outcome>>,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Written, PreprocessError> {
    let h5_err = |e: hdf5::Error| PreprocessError::Output {
        path: partial.to_path_buf(),
        message: e.to_string(),
    };
    let mut out = SpectraWriter::create(partial, &opts.grid).map_err(h5_err)?;
    let dir = partial.parent().unwrap_or(Path::new("."));
    let log_err = |e: std::io::Error| PreprocessError::Output {
        path: dir.to_path_buf(),
        message: format!("the duplicate-name log: {e}"),
    };
    // Duplicate FILENAMEs are found at the end (or at a strict run's first bad file) from a
    // log on disk, so memory does not grow with the survey.
    let mut names = NameLog::new(dir).map_err(log_err)?;
    let mut written = Written {
        files: 0,
        spectra: 0,
        skipped: Vec::new(),
        dropped_pixels: 0,
        files_with_drops: 0,
    };
    let (mut done, started) = (0usize, Instant::now());
    let mut last_line = started;
    for batch in rx {
        for (path, row) in batch {
            // The path as the user sees it, only for files that are reported.
            let file = || {
                path.strip_prefix(&opts.data_dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned()
            };
            match row {
                Ok(row) => {
                    if row.dropped > 0 {
                        written.files_with_drops += 1;
                        match written.files_with_drops {
                            n if n <= DROP_LINES => log(&format!(
                                "{}: {} non-finite flux pixel(s) dropped",
                                file(),
                                row.dropped
                            )),
                            n if n == DROP_LINES + 1 => log(&format!(
                                "more files with non-finite flux pixels: the first {DROP_LINES} are named above, the rest counted in the total"
                            )),
                            _ => {}
                        }
                    }
                    written.dropped_pixels += row.dropped as u64;
                    out.push(&row.filename, &row.flux).map_err(h5_err)?;
                    names.push(&row.filename, &file()).map_err(log_err)?;
                    written.spectra += 1;
                }
                Err(reason) if opts.strict => {
                    // A duplicate among the earlier rows is the first bad file.
                    let dups = names.duplicates().map_err(log_err)?;
                    let (file, reason) = match dups.first() {
                        Some(d) => (d.path.clone(), duplicate_reason(d, &dups)),
                        None => (file(), reason),
                    };
                    return Err(PreprocessError::Strict { file, reason });
                }
                Err(reason) => {
                    let file = file();
                    log(&format!("skipped {file}: {reason}"));
                    written.skipped.push(Skipped { file, reason });
                }
            }
            done += 1;
            progress.advance(1);
        }
        if last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64();
            log(&format!(
                "{done}/{} files, {rate:.0} files/s",
                progress.snapshot().2
            ));
        }
    }
    let dups = names.duplicates().map_err(log_err)?;
    if let Some(d) = dups.first().filter(|_| opts.strict) {
        return Err(PreprocessError::Strict {
            file: d.path.clone(),
            reason: duplicate_reason(d, &dups),
        });
    }
    if !dups.is_empty() {
        let rows: Vec<u64> = dups.iter().map(|d| d.row).collect();
        out.remove_rows(&rows).map_err(h5_err)?;
        for d in &dups {
            let reason = duplicate_reason(d, &dups);
            log(&format!("skipped {}: {reason}", d.path));
            written.skipped.push(Skipped {
                file: d.path.clone(),
                reason,
            });
        }
        written.spectra -= dups.len();
        // In the walk's order, as if each had been found in turn.
        written
            .skipped
            .sort_by(|a, b| Path::new(&a.file).cmp(Path::new(&b.file)));
    }
    out.finish().map_err(h5_err)?;
    written.files = done;
    Ok(written)
}

/// Why a duplicate is skipped, naming the row the first file has in the final `result.h5`.
fn duplicate_reason(d: &Duplicate, all: &[Duplicate]) -> String {
    let before = all.partition_point(|o| o.row < d.first_row) as u64;
    format!(
        "duplicate FILENAME {}: an earlier file has it (row {} of result.h5)",
        d.filename,
        d.first_row - before
    )
}

#[cfg(test)]
mod tests;
