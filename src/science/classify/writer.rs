//! `predictions.h5`: `filenames` (variable-length UTF-8), `labels` (int64), `probabilities`
//! (float64, n × classes), `entropies` (float64) and `classes` (the class names), appended a
//! block at a time. Like [`crate::science::h5::SpectraWriter`], the file is closed and opened
//! again every few blocks so HDF5's per-file state (the string heap) does not grow.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use hdf5::{Dataset, File, types::VarLenUnicode};
use ndarray::{Array2, ArrayView2, s};

use crate::science::h5::{REOPEN_ROWS, retry_locked, small_cache};

const BLOCK: usize = 4096;

pub struct PredictionsWriter {
    path: PathBuf,
    classes: usize,
    open: Option<Handles>,
    rows: usize,
    rows_since_open: usize,
    names: Vec<VarLenUnicode>,
    labels: Vec<i64>,
    probabilities: Vec<f64>,
    entropies: Vec<f64>,
}

struct Handles {
    file: File,
    filenames: Dataset,
    labels: Dataset,
    probabilities: Dataset,
    entropies: Dataset,
}

impl Handles {
    fn open(file: File) -> hdf5::Result<Handles> {
        Ok(Handles {
            filenames: file.dataset("filenames")?,
            labels: file.dataset("labels")?,
            probabilities: file.dataset("probabilities")?,
            entropies: file.dataset("entropies")?,
            file,
        })
    }
}

impl PredictionsWriter {
    pub fn create(path: &Path, class_names: &[String]) -> hdf5::Result<PredictionsWriter> {
        let classes = class_names.len();
        let file = File::with_options()
            .with_fapl(|p| p.mdc_config(&small_cache()))
            .create(path)?;
        file.new_dataset::<VarLenUnicode>()
            .chunk(BLOCK)
            .shape(0..)
            .create("filenames")?;
        file.new_dataset::<i64>()
            .chunk(BLOCK)
            .shape(0..)
            .create("labels")?;
        file.new_dataset::<f64>()
            .chunk((BLOCK, classes))
            .shape((0.., classes))
            .create("probabilities")?;
        file.new_dataset::<f64>()
            .chunk(BLOCK)
            .shape(0..)
            .create("entropies")?;
        let names = class_names
            .iter()
            .map(|c| VarLenUnicode::from_str(c).map_err(|e| hdf5::Error::from(e.to_string())))
            .collect::<hdf5::Result<Vec<_>>>()?;
        file.new_dataset::<VarLenUnicode>()
            .shape(classes)
            .create("classes")?
            .write(&names)?;
        Ok(PredictionsWriter {
            path: path.to_path_buf(),
            classes,
            open: Some(Handles::open(file)?),
            rows: 0,
            rows_since_open: 0,
            names: Vec::with_capacity(BLOCK),
            labels: Vec::with_capacity(BLOCK),
            probabilities: Vec::with_capacity(BLOCK * classes),
            entropies: Vec::with_capacity(BLOCK),
        })
    }

    /// Rows pushed so far (written or buffered).
    pub fn rows(&self) -> usize {
        self.rows + self.names.len()
    }

    pub fn push(
        &mut self,
        names: &[String],
        labels: &[usize],
        probabilities: &[Vec<f32>],
        entropies: &[f64],
    ) -> hdf5::Result<()> {
        for (i, name) in names.iter().enumerate() {
            if probabilities[i].len() != self.classes {
                return Err("a probability row of the wrong length".into());
            }
            self.names.push(
                VarLenUnicode::from_str(name)
                    .map_err(|e| hdf5::Error::from(format!("file name {name:?}: {e}")))?,
            );
            self.labels.push(labels[i] as i64);
            self.probabilities
                .extend(probabilities[i].iter().map(|&p| p as f64));
            self.entropies.push(entropies[i]);
            if self.names.len() == BLOCK {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn handles(&self) -> hdf5::Result<&Handles> {
        self.open
            .as_ref()
            .ok_or_else(|| hdf5::Error::from("the file could not be opened again"))
    }

    fn flush(&mut self) -> hdf5::Result<()> {
        let n = self.names.len();
        if n == 0 {
            return Ok(());
        }
        let (start, end) = (self.rows, self.rows + n);
        let h = self.handles()?;
        h.filenames.resize(end)?;
        h.filenames.write_slice(&self.names, s![start..end])?;
        h.labels.resize(end)?;
        h.labels.write_slice(&self.labels, s![start..end])?;
        h.entropies.resize(end)?;
        h.entropies.write_slice(&self.entropies, s![start..end])?;
        h.probabilities.resize((end, self.classes))?;
        let block = ArrayView2::from_shape((n, self.classes), &self.probabilities)
            .map_err(|e| hdf5::Error::from(e.to_string()))?;
        h.probabilities.write_slice(block, s![start..end, ..])?;
        self.rows = end;
        self.rows_since_open += n;
        self.names.clear();
        self.labels.clear();
        self.probabilities.clear();
        self.entropies.clear();
        if self.rows_since_open >= REOPEN_ROWS {
            self.handles()?.file.flush()?;
            self.open = None;
            let file = retry_locked(|| {
                File::with_options()
                    .with_fapl(|p| p.mdc_config(&small_cache()))
                    .open_rw(&self.path)
            })?;
            self.open = Some(Handles::open(file)?);
            self.rows_since_open = 0;
        }
        Ok(())
    }

    /// Writes what is buffered and closes the file.
    pub fn finish(mut self) -> hdf5::Result<()> {
        self.flush()?;
        self.handles()?.file.flush()
    }

    /// Drops `rows` (sorted): the file is copied without them, a block at a time.
    pub fn remove_rows(mut self, removed: &[u64], class_names: &[String]) -> hdf5::Result<()> {
        self.flush()?;
        if removed.is_empty() {
            return self.finish();
        }
        let total = self.rows;
        self.open = None;
        let old = self.path.with_extension("old");
        std::fs::rename(&self.path, &old).map_err(|e| hdf5::Error::from(e.to_string()))?;
        let mut out = PredictionsWriter::create(&self.path, class_names)?;
        let h = Handles::open(retry_locked(|| File::open(&old))?)?;
        let mut skip = removed.iter().map(|&r| r as usize).peekable();
        for start in (0..total).step_by(BLOCK) {
            let end = (start + BLOCK).min(total);
            let names = h
                .filenames
                .read_slice_1d::<VarLenUnicode, _>(s![start..end])?;
            let labels = h.labels.read_slice_1d::<i64, _>(s![start..end])?;
            let probs: Array2<f64> = h.probabilities.read_slice_2d(s![start..end, ..])?;
            let entropies = h.entropies.read_slice_1d::<f64, _>(s![start..end])?;
            for i in start..end {
                if skip.next_if_eq(&i).is_some() {
                    continue;
                }
                let k = i - start;
                out.names.push(names[k].clone());
                out.labels.push(labels[k]);
                out.probabilities.extend(probs.row(k).iter());
                out.entropies.push(entropies[k]);
                if out.names.len() == BLOCK {
                    out.flush()?;
                }
            }
        }
        drop(h);
        let _ = std::fs::remove_file(&old);
        out.finish()
    }
}
