//! DATA_PREPROCESSING: every LAMOST spectrum under a directory, resampled onto one wavelength
//! grid (numpy.interp semantics) and min–max scaled to [-1, 1] per spectrum (scikit-learn's
//! `minmax_scale`), streamed into `result.h5` in sorted path order; bad files go to
//! `skipped.json` with their reason.
//!
//! Three stages joined by bounded channels: a walker lists files in batches, rayon reads and
//! resamples a batch on every core, and a writer thread appends it to the HDF5 file while the
//! next batch is computed. Memory holds a few batches, whatever the number of files.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::mpsc::{Receiver, SyncSender, sync_channel},
    time::{Duration, Instant},
};

use rayon::prelude::*;

use super::{
    Cancel, Progress,
    fits::{self, SpectrumError},
    h5::SpectraWriter,
    names::{Duplicate, NameLog},
};

/// Files read per parallel batch: large enough to keep every core busy, small enough that
/// an abort is seen within milliseconds.
const BATCH: usize = 256;

/// `numpy.linspace(start, end, count)`: `i * step + start`, the last point exactly `end`.
pub fn linspace(start: f64, end: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![start];
    }
    let step = (end - start) / (count - 1) as f64;
    let mut grid: Vec<f64> = (0..count).map(|i| i as f64 * step + start).collect();
    if let Some(last) = grid.last_mut() {
        *last = end;
    }
    grid
}

/// `numpy.interp(grid, xp, fp)` for a sorted `grid` and strictly increasing `xp`: linear
/// between samples, the end values outside them, written into `out`.
pub fn interp(grid: &[f64], xp: &[f32], fp: &[f32], out: &mut [f64]) {
    let n = xp.len();
    let (left, right) = (fp[0] as f64, fp[n - 1] as f64);
    let mut j = 0;
    for (x, y) in grid.iter().zip(out.iter_mut()) {
        let x = *x;
        if x < xp[0] as f64 {
            *y = left;
            continue;
        }
        if x > xp[n - 1] as f64 {
            *y = right;
            continue;
        }
        while j + 1 < n && xp[j + 1] as f64 <= x {
            j += 1;
        }
        if j == n - 1 || xp[j] as f64 == x {
            *y = fp[j] as f64;
            continue;
        }
        let (x0, x1, y0, y1) = (
            xp[j] as f64,
            xp[j + 1] as f64,
            fp[j] as f64,
            fp[j + 1] as f64,
        );
        let slope = (y1 - y0) / (x1 - x0);
        *y = slope * (x - x0) + y0;
        if y.is_nan() {
            *y = slope * (x - x1) + y1;
            if y.is_nan() && y0 == y1 {
                *y = y0;
            }
        }
    }
}

/// scikit-learn's `minmax_scale(row, feature_range=(-1, 1))`: a range below 10 ε counts as
/// constant (scale by 1), so a constant spectrum becomes all -1.
pub fn minmax_scale(row: &mut [f64]) {
    let (min, max) = row
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = max - min;
    let range = if range < 10.0 * f64::EPSILON {
        1.0
    } else {
        range
    };
    let scale = 2.0 / range;
    let offset = -1.0 - min * scale;
    for v in row.iter_mut() {
        *v = *v * scale + offset;
    }
}

/// One spectrum resampled and scaled; `dropped` non-finite flux pixels were left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub filename: String,
    pub flux: Vec<f64>,
    pub dropped: usize,
}

/// Drops non-finite flux pixels (with their wavelengths), interpolates onto `grid`, scales.
pub fn resample(spectrum: fits::Spectrum, grid: &[f64]) -> Row {
    let mut flux = vec![0.0; grid.len()];
    let finite = spectrum.flux.iter().filter(|v| v.is_finite()).count();
    let dropped = spectrum.flux.len() - finite;
    if dropped == 0 {
        interp(grid, &spectrum.wave, &spectrum.flux, &mut flux);
    } else {
        let (wave, kept): (Vec<f32>, Vec<f32>) = spectrum
            .wave
            .iter()
            .zip(&spectrum.flux)
            .filter(|(_, f)| f.is_finite())
            .map(|(w, f)| (*w, *f))
            .unzip();
        interp(grid, &wave, &kept, &mut flux);
    }
    minmax_scale(&mut flux);
    Row {
        filename: spectrum.filename,
        flux,
        dropped,
    }
}

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

/// An entry found by the walk: a candidate file, or something to report as skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    File(PathBuf),
    Bad(PathBuf, String),
}

fn is_spectrum_name(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.ends_with(b".fits") || b.ends_with(b".fits.gz")
}

/// Depth-first walk with each directory's entries sorted by name: the order of Python's
/// `sorted(Path(d).rglob(...))`, without holding more than one directory's listing per level.
/// Symlinks are followed; a directory reached twice (a link loop) is walked once.
pub struct SortedWalk {
    /// Per level, the entries left to visit (reverse sorted, popped from the end) and whether
    /// each is a directory, from the listing's d_type: no stat unless it is a symlink.
    stack: Vec<Vec<(PathBuf, bool)>>,
    seen_dirs: HashSet<(u64, u64)>,
    pending: Vec<Found>,
}

impl SortedWalk {
    pub fn new(root: &Path) -> SortedWalk {
        let mut walk = SortedWalk {
            stack: Vec::new(),
            seen_dirs: HashSet::new(),
            pending: Vec::new(),
        };
        walk.enter(root);
        walk
    }

    fn enter(&mut self, dir: &Path) {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(dir) {
            Ok(m) if !self.seen_dirs.insert((m.dev(), m.ino())) => return,
            Err(e) => {
                return self.pending.push(Found::Bad(
                    dir.to_path_buf(),
                    format!("cannot read the directory: {e}"),
                ));
            }
            Ok(_) => {}
        }
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<(PathBuf, bool)> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        let path = e.path();
                        let is_dir = match e.file_type() {
                            Ok(t) if !t.is_symlink() => t.is_dir(),
                            _ => std::fs::metadata(&path).is_ok_and(|m| m.is_dir()),
                        };
                        (path, is_dir)
                    })
                    .collect();
                // Popped from the end: reverse order.
                paths.sort_unstable_by(|a, b| b.0.file_name().cmp(&a.0.file_name()));
                self.stack.push(paths);
            }
            Err(e) => self.pending.push(Found::Bad(
                dir.to_path_buf(),
                format!("cannot read the directory: {e}"),
            )),
        }
    }
}

impl Iterator for SortedWalk {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        loop {
            if let Some(found) = self.pending.pop() {
                return Some(found);
            }
            let top = self.stack.last_mut()?;
            let Some((path, is_dir)) = top.pop() else {
                self.stack.pop();
                continue;
            };
            let named = path.file_name().is_some_and(is_spectrum_name);
            if is_dir {
                self.enter(&path);
                if named {
                    return Some(Found::Bad(path, SpectrumError::Directory.to_string()));
                }
            } else if named {
                return Some(Found::File(path));
            }
        }
    }
}

type Outcome = (PathBuf, Result<Row, String>);

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

    let (found_tx, found_rx) = sync_channel::<Vec<Found>>(2);
    let (rows_tx, rows_rx) = sync_channel::<Vec<Outcome>>(2);
    let written = std::thread::scope(|s| {
        // The total for the progress report, counted while the work has already begun.
        let _ = std::thread::Builder::new()
            .name("prep-count".into())
            .spawn_scoped(s, || {
                let total = SortedWalk::new(&opts.data_dir).count();
                progress.set_total(total as u64);
                log(&format!(
                    "{total} FITS files under {}",
                    opts.data_dir.display()
                ));
            });
        let walker = std::thread::Builder::new()
            .name("prep-walk".into())
            .spawn_scoped(s, || walk(&opts.data_dir, found_tx, cancel));
        let writer = std::thread::Builder::new()
            .name("prep-write".into())
            .spawn_scoped(s, || write(opts, &partial, rows_rx, progress, log));
        let (walker, writer) = match (walker, writer) {
            (Ok(w), Ok(r)) => (w, r),
            (Err(e), _) | (_, Err(e)) => {
                return Err(PreprocessError::Output {
                    path: partial.clone(),
                    message: format!("cannot start a thread: {e}"),
                });
            }
        };
        compute(opts, found_rx, rows_tx, cancel);
        let _ = walker.join();
        match writer.join() {
            Ok(r) => r,
            Err(_) => Err(PreprocessError::Output {
                path: partial.clone(),
                message: "the writer thread panicked".into(),
            }),
        }
    });
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
    opts: &Options,
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
                    let row = read_and_resample(&path, &opts.grid);
                    (path, row)
                }
            })
            .collect();
        if cancel.is_cancelled() || tx.send(rows).is_err() {
            return;
        }
    }
}

fn read_and_resample(path: &Path, grid: &[f64]) -> Result<Row, String> {
    // cfitsio and our checks must not take the run down with them, whatever the file holds.
    std::panic::catch_unwind(|| fits::read_spectrum(path, fits::Read::Data))
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
mod tests {
    use super::*;

    #[test]
    fn linspace_ends_exactly_at_its_end_points() {
        let g = linspace(3800.0, 9000.0, 600);
        assert_eq!((g.len(), g[0], g[599]), (600, 3800.0, 9000.0));
        assert!((g[1] - g[0] - 5200.0 / 599.0).abs() < 1e-9);
    }

    #[test]
    fn interp_takes_end_values_outside_and_is_linear_inside() {
        let (xp, fp) = ([1.0f32, 2.0, 4.0], [10.0f32, 20.0, 0.0]);
        let grid = [0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0];
        let mut out = [0.0; 7];
        interp(&grid, &xp, &fp, &mut out);
        assert_eq!(out, [10.0, 10.0, 15.0, 20.0, 10.0, 0.0, 0.0]);
    }

    #[test]
    fn a_constant_spectrum_scales_to_all_minus_one() {
        let mut row = [5.0, 5.0, 5.0];
        minmax_scale(&mut row);
        assert_eq!(row, [-1.0, -1.0, -1.0]);
        let mut row = [1.0, 2.0, 3.0];
        minmax_scale(&mut row);
        assert_eq!(row, [-1.0, 0.0, 1.0]);
    }

    #[test]
    fn non_finite_flux_pixels_are_dropped_with_their_wavelengths() {
        let s = fits::Spectrum {
            filename: "x".into(),
            metadata: None,
            wave: vec![1.0, 2.0, 3.0, 4.0],
            flux: vec![0.0, f32::NAN, 2.0, f32::INFINITY],
        };
        let row = resample(s, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(row.dropped, 2);
        assert_eq!(row.flux, vec![-1.0, 0.0, 1.0, 1.0]);
        assert!(row.flux.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_walk_is_in_pythons_sorted_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in [
            "a/z.fits",
            "a-b/a.fits",
            "a/b/c.fits.gz",
            "b.fits",
            "notes.txt",
        ] {
            std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
            std::fs::write(d.join(p), b"").unwrap();
        }
        std::fs::create_dir_all(d.join("c.fits")).unwrap();
        std::os::unix::fs::symlink(d, d.join("a/loop")).unwrap();
        let names: Vec<String> = SortedWalk::new(d)
            .map(|f| match f {
                Found::File(p) => p.strip_prefix(d).unwrap().display().to_string(),
                Found::Bad(p, r) => format!("bad {} ({r})", p.strip_prefix(d).unwrap().display()),
            })
            .collect();
        assert_eq!(
            names,
            [
                "a/b/c.fits.gz",
                "a/z.fits",
                "a-b/a.fits",
                "b.fits",
                "bad c.fits (is a directory, not a FITS file)"
            ]
        );
    }

    #[test]
    fn a_later_duplicate_filename_is_skipped_and_the_rows_after_it_move_up() {
        use crate::science::{demo, fits::write_spectrum, h5::read_spectra};
        let dir = tempfile::tempdir().unwrap();
        let spectra: Vec<_> = (0..8).map(|i| demo::synthetic(3, i)).collect();
        let write_all = |data: &Path, skip_dups: bool| {
            std::fs::create_dir_all(data).unwrap();
            for (i, s) in spectra.iter().enumerate() {
                let mut header = s.header.clone();
                // Files 2 and 5 carry the FILENAMEs of files 0 and 3.
                match i {
                    2 | 5 if skip_dups => continue,
                    2 | 5 => header.filename = Some(spectra[i - 2].filename.clone()),
                    _ => {}
                }
                write_spectrum(&data.join(format!("f{i}.fits")), &header, &s.rows).unwrap();
            }
        };
        let run = |data: &Path, out: &Path, strict: bool| {
            std::fs::create_dir_all(out).unwrap();
            let opts = Options {
                data_dir: data.to_path_buf(),
                grid: linspace(4000.0, 8000.0, 50),
                strict,
            };
            preprocess(&opts, out, &Cancel::new(), &Progress::new(), &|_| {})
        };
        let (with, without) = (dir.path().join("with"), dir.path().join("without"));
        write_all(&with, false);
        write_all(&without, true);
        let report = run(&with, &dir.path().join("a"), false).unwrap();
        assert_eq!((report.files, report.spectra, report.skipped), (8, 6, 2));
        run(&without, &dir.path().join("b"), false).unwrap();
        let got = read_spectra(&dir.path().join("a/result.h5")).unwrap();
        let expected = read_spectra(&dir.path().join("b/result.h5")).unwrap();
        let names: Vec<&str> = [0, 1, 3, 4, 6, 7]
            .iter()
            .map(|&i| spectra[i].filename.as_str())
            .collect();
        assert_eq!(got.filenames, names);
        assert_eq!(got, expected, "as if the duplicates had never been there");
        let skipped: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("a/skipped.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(skipped[0]["file"], "f2.fits");
        assert_eq!(skipped[1]["file"], "f5.fits");
        // Rows of the first holders in the final file: f0 is row 0, f3 is row 2.
        assert!(
            skipped[0]["reason"]
                .as_str()
                .unwrap()
                .ends_with("(row 0 of result.h5)")
        );
        assert!(
            skipped[1]["reason"]
                .as_str()
                .unwrap()
                .ends_with("(row 2 of result.h5)")
        );

        // Strict: the first bad file in path order is the duplicate f2, even though the
        // duplicate is only known once a later file (f6, truncated) has failed.
        std::fs::write(with.join("f6.fits"), b"SIMPLE  =").unwrap();
        match run(&with, &dir.path().join("c"), true) {
            Err(PreprocessError::Strict { file, reason }) => {
                assert_eq!(file, "f2.fits");
                assert!(reason.contains("duplicate FILENAME"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(with.join("f6.fits")).unwrap();
        assert!(matches!(
            run(&with, &dir.path().join("d"), true),
            Err(PreprocessError::Strict { file, .. }) if file == "f2.fits"
        ));
        assert!(!dir.path().join("d/result.h5").exists());
    }
}
