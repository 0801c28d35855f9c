//! The HDF5 spectra files the original platform reads and writes: `filenames` (variable-length
//! UTF-8), `wave` (f64, points), `fluxes` (f64, n × points) and, in training sets, `labels`
//! (int64). We write `fluxes` and `filenames` in chunks as rows arrive, so memory stays flat.

use std::{path::Path, str::FromStr};

use hdf5::{Dataset, File, types::VarLenUnicode};
use ndarray::{Array2, ArrayView2, s};

/// Bytes of flux rows buffered (and written per HDF5 chunk).
const CHUNK_BYTES: usize = 1 << 20;

/// Rows after which the file is closed and opened again: HDF5 keeps per-file state (the
/// global-heap collections of the variable-length `filenames` above all, ~60 bytes a row)
/// until the file closes, which would grow with the survey. Measured on 600-point rows, peak
/// RSS for 10k / 100k spectra: never reopened 47 / 51 MiB, every 16,384 rows 47 / 50, every
/// 1,024 rows 42 / 43 MiB, at the same speed.
pub(crate) const REOPEN_ROWS: usize = 1024;

/// Appends spectra to a new file; [`SpectraWriter::finish`] closes it.
pub struct SpectraWriter {
    path: std::path::PathBuf,
    rows_since_open: usize,
    /// `None` only for the moment between closing and opening again.
    open: Option<Handles>,
    points: usize,
    rows: usize,
    names: Vec<VarLenUnicode>,
    buffer: Vec<f64>,
    chunk_rows: usize,
}

struct Handles {
    file: File,
    filenames: Dataset,
    fluxes: Dataset,
}

impl SpectraWriter {
    fn handles(&self) -> hdf5::Result<&Handles> {
        self.open
            .as_ref()
            .ok_or_else(|| hdf5::Error::from("the file could not be opened again"))
    }

    pub fn create(path: &Path, wave: &[f64]) -> hdf5::Result<SpectraWriter> {
        let points = wave.len();
        let chunk_rows = (CHUNK_BYTES / (points.max(1) * 8)).clamp(1, 4096);
        let file = File::with_options()
            .with_fapl(|p| p.mdc_config(&small_cache()))
            .create(path)?;
        file.new_dataset::<f64>()
            .shape(points)
            .create("wave")?
            .write(wave)?;
        let fluxes = file
            .new_dataset::<f64>()
            .chunk((chunk_rows, points))
            .shape((0.., points))
            .create("fluxes")?;
        let filenames = file
            .new_dataset::<VarLenUnicode>()
            .chunk(chunk_rows.max(256))
            .shape(0..)
            .create("filenames")?;
        Ok(SpectraWriter {
            path: path.to_path_buf(),
            rows_since_open: 0,
            open: Some(Handles {
                file,
                filenames,
                fluxes,
            }),
            points,
            rows: 0,
            names: Vec::with_capacity(chunk_rows),
            buffer: Vec::with_capacity(chunk_rows * points),
            chunk_rows,
        })
    }

    pub fn push(&mut self, filename: &str, flux: &[f64]) -> hdf5::Result<()> {
        if flux.len() != self.points {
            return Err(format!(
                "a row of {} points in a file of {}",
                flux.len(),
                self.points
            )
            .into());
        }
        let name = VarLenUnicode::from_str(filename)
            .map_err(|e| hdf5::Error::from(format!("file name {filename:?}: {e}")))?;
        self.names.push(name);
        self.buffer.extend_from_slice(flux);
        if self.names.len() >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> hdf5::Result<()> {
        let n = self.names.len();
        if n == 0 {
            return Ok(());
        }
        let (start, end) = (self.rows, self.rows + n);
        let h = self.handles()?;
        h.fluxes.resize((end, self.points))?;
        let block = ArrayView2::from_shape((n, self.points), &self.buffer)
            .map_err(|e| hdf5::Error::from(e.to_string()))?;
        h.fluxes.write_slice(block, s![start..end, ..])?;
        h.filenames.resize(end)?;
        h.filenames.write_slice(&self.names, s![start..end])?;
        self.rows = end;
        self.rows_since_open += n;
        self.names.clear();
        self.buffer.clear();
        if self.rows_since_open >= REOPEN_ROWS {
            self.reopen()?;
        }
        Ok(())
    }

    /// Closes the file and opens it again, which lets HDF5 free what it holds per file.
    fn reopen(&mut self) -> hdf5::Result<()> {
        self.handles()?.file.flush()?;
        // Every handle must go first: a second open of a file still open shares its state.
        self.open = None;
        let file = retry_locked(|| {
            File::with_options()
                .with_fapl(|p| p.mdc_config(&small_cache()))
                .open_rw(&self.path)
        })?;
        self.open = Some(Handles {
            filenames: file.dataset("filenames")?,
            fluxes: file.dataset("fluxes")?,
            file,
        });
        self.rows_since_open = 0;
        Ok(())
    }

    /// Drops `rows` (sorted, unique, all written), moving the later rows up block by block.
    pub fn remove_rows(&mut self, rows: &[u64]) -> hdf5::Result<()> {
        self.flush()?;
        let Some(&first) = rows.first() else {
            return Ok(());
        };
        let mut removed = rows.iter().map(|&r| r as usize).peekable();
        let (mut start, mut dst) = (first as usize, first as usize);
        while start < self.rows {
            let end = (start + self.chunk_rows).min(self.rows);
            let h = self.handles()?;
            let fluxes: Array2<f64> = h.fluxes.read_slice_2d(s![start..end, ..])?;
            let names = h
                .filenames
                .read_slice_1d::<VarLenUnicode, _>(s![start..end])?;
            for i in start..end {
                if removed.next_if_eq(&i).is_none() {
                    self.names.push(names[i - start].clone());
                    self.buffer.extend(fluxes.row(i - start).iter());
                }
            }
            let kept = self.names.len();
            if kept > 0 {
                let block = ArrayView2::from_shape((kept, self.points), &self.buffer)
                    .map_err(|e| hdf5::Error::from(e.to_string()))?;
                let h = self.handles()?;
                h.fluxes.write_slice(block, s![dst..dst + kept, ..])?;
                h.filenames.write_slice(&self.names, s![dst..dst + kept])?;
            }
            dst += kept;
            self.names.clear();
            self.buffer.clear();
            start = end;
        }
        self.rows = dst;
        let h = self.handles()?;
        h.fluxes.resize((dst, self.points))?;
        h.filenames.resize(dst)
    }

    /// An extra one-dimensional dataset (`labels`, `oracle_indexes`, …) beside the spectra.
    pub fn add<T: hdf5::H5Type>(&self, name: &str, values: &[T]) -> hdf5::Result<()> {
        let named = |e: hdf5::Error| hdf5::Error::from(format!("dataset {name}: {e}"));
        let ds = self
            .handles()?
            .file
            .new_dataset::<T>()
            .shape(values.len())
            .create(name)
            .map_err(named)?;
        ds.write(values).map_err(named)
    }

    /// Writes what is buffered and closes the file; returns the number of rows.
    pub fn finish(mut self) -> hdf5::Result<usize> {
        self.flush()?;
        self.handles()?.file.flush()?;
        Ok(self.rows)
    }
}

/// HDF5's metadata cache may grow to 32 MiB as chunks and string-heap blocks accumulate; a
/// small cap keeps a survey-sized file's memory flat (its entries are written out).
pub(crate) fn small_cache() -> hdf5::plist::file_access::MetadataCacheConfig {
    hdf5::plist::file_access::MetadataCacheConfig {
        initial_size: 1 << 20,
        min_size: 1 << 20,
        max_size: 2 << 20,
        ..Default::default()
    }
}

/// A whole spectra file in memory (pools and training sets are read whole).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectraSet {
    pub filenames: Vec<String>,
    pub wave: Vec<f64>,
    pub fluxes: Array2<f64>,
    /// Class indices, in training sets.
    pub labels: Option<Vec<i64>>,
}

/// `open` again while HDF5 answers "unable to lock file", for up to five seconds. A file
/// closed and at once reopened can still be locked for a moment: a child forked elsewhere
/// in the process while it was open holds its descriptor (and so its `flock`) until the
/// child's exec closes it (mljm marks its children's descriptors close-on-exec, but a busy
/// machine can stretch fork-to-exec to milliseconds).
pub fn retry_locked<T>(mut open: impl FnMut() -> hdf5::Result<T>) -> hdf5::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("unable to lock file")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

/// Writes a whole set (and its labels, when it has them) as the original does.
pub fn write_spectra(path: &Path, set: &SpectraSet) -> hdf5::Result<SpectraWriter> {
    let mut w = SpectraWriter::create(path, &set.wave)?;
    for (name, row) in set.filenames.iter().zip(set.fluxes.rows()) {
        w.push(name, row.as_slice().ok_or("fluxes are not contiguous")?)?;
    }
    if let Some(labels) = &set.labels {
        w.add("labels", labels)?;
    }
    Ok(w)
}

impl SpectraSet {
    pub fn len(&self) -> usize {
        self.filenames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filenames.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        self.fluxes.row(i).to_slice().unwrap_or(&[])
    }

    /// The rows at `indexes`, in that order.
    pub fn select(&self, indexes: &[usize]) -> SpectraSet {
        SpectraSet {
            filenames: indexes.iter().map(|&i| self.filenames[i].clone()).collect(),
            wave: self.wave.clone(),
            fluxes: self.fluxes.select(ndarray::Axis(0), indexes),
            labels: self
                .labels
                .as_ref()
                .map(|l| indexes.iter().map(|&i| l[i]).collect()),
        }
    }
}

pub fn read_spectra(path: &Path) -> hdf5::Result<SpectraSet> {
    let file = File::open(path)?;
    let filenames: Vec<String> = file
        .dataset("filenames")?
        .read_raw::<VarLenUnicode>()?
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let wave = file.dataset("wave")?.read_raw::<f64>()?;
    let fluxes = file.dataset("fluxes")?.read_2d::<f64>()?;
    let labels = match file.link_exists("labels") {
        true => Some(file.dataset("labels")?.read_raw::<i64>()?),
        false => None,
    };
    if fluxes.nrows() != filenames.len() || fluxes.ncols() != wave.len() {
        return Err(format!(
            "inconsistent shapes: {} filenames, {} wave points, fluxes {} × {}",
            filenames.len(),
            wave.len(),
            fluxes.nrows(),
            fluxes.ncols()
        )
        .into());
    }
    Ok(SpectraSet {
        filenames,
        wave,
        fluxes,
        labels,
    })
}

/// The first `n` rows of a spectra file and its row count, without reading the rest (a
/// page's sample of a survey-sized `result.h5`).
pub fn read_head(path: &Path, n: usize) -> hdf5::Result<(usize, SpectraSet)> {
    let pool = super::pool::PoolFile::open(path)?;
    let n = n.min(pool.len());
    Ok((
        pool.len(),
        SpectraSet {
            filenames: pool.names(0..n)?,
            fluxes: pool.fluxes(0..n)?,
            wave: pool.wave.clone(),
            labels: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file whose lock another descriptor holds for a moment opens once it is let go; an
    /// error other than a lock is not retried.
    #[test]
    fn an_open_waits_out_a_lock_held_for_a_moment() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.h5");
        drop(File::create(&path).unwrap());
        let holder = std::fs::File::open(&path).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
        let err = File::open_rw(&path).expect_err("locked").to_string();
        assert!(err.contains("unable to lock file"), "{err}");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(holder);
        });
        let started = std::time::Instant::now();
        assert!(retry_locked(|| File::open_rw(&path)).is_ok());
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
        release.join().unwrap();
        let started = std::time::Instant::now();
        assert!(retry_locked(|| File::open(dir.path().join("absent.h5"))).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn spectra_written_in_chunks_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.h5");
        let wave: Vec<f64> = (0..300).map(|i| 4000.0 + i as f64).collect();
        let mut w = SpectraWriter::create(&p, &wave).unwrap();
        for i in 0..1000 {
            w.push(&format!("spec-{i}.fits"), &vec![i as f64; 300])
                .unwrap();
        }
        assert_eq!(w.finish().unwrap(), 1000);
        let set = read_spectra(&p).unwrap();
        assert_eq!(set.filenames.len(), 1000);
        assert_eq!(set.filenames[999], "spec-999.fits");
        assert_eq!(set.wave, wave);
        assert_eq!(set.fluxes[[437, 12]], 437.0);
        assert_eq!(set.labels, None);
        let (total, head) = read_head(&p, 3).unwrap();
        assert_eq!(total, 1000);
        assert_eq!(
            head.filenames,
            ["spec-0.fits", "spec-1.fits", "spec-2.fits"]
        );
        assert_eq!(head.fluxes.row(2).to_vec(), vec![2.0; 300]);
    }

    #[test]
    fn a_file_closed_and_opened_again_while_written_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.h5");
        let mut w = SpectraWriter::create(&p, &[1.0, 2.0]).unwrap();
        let n = 2 * REOPEN_ROWS + 100;
        for i in 0..n {
            w.push(&format!("spec-{i}.fits"), &[i as f64, -(i as f64)])
                .unwrap();
        }
        w.remove_rows(&[3, (n - 1) as u64]).unwrap();
        assert_eq!(w.finish().unwrap(), n - 2);
        let set = read_spectra(&p).unwrap();
        assert_eq!(set.filenames.len(), n - 2);
        assert_eq!(set.filenames[3], "spec-4.fits");
        assert_eq!(set.filenames[n - 3], format!("spec-{}.fits", n - 2));
        assert_eq!(
            set.row(REOPEN_ROWS + 7),
            [(REOPEN_ROWS + 8) as f64, -((REOPEN_ROWS + 8) as f64)]
        );
    }

    #[test]
    fn an_empty_result_is_still_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.h5");
        assert_eq!(
            SpectraWriter::create(&p, &[1.0, 2.0])
                .unwrap()
                .finish()
                .unwrap(),
            0
        );
        let set = read_spectra(&p).unwrap();
        assert_eq!(set.fluxes.dim(), (0, 2));
    }
}
