//! Survey-sized pools, read in chunks and never held whole, and the iteration results that
//! point at a pool's spectra instead of copying them.
//!
//! An iteration's `result.h5` keeps the original's layout (`filenames`, `wave`, `fluxes`, then
//! `labels`, `entropies` and the index lists), but `filenames` and `fluxes` are HDF5 virtual
//! datasets over the pool file they came from: h5py, and this module, read them as if they
//! were stored there. Their source is named relative to the result's folder, so moving the
//! data directory as a whole keeps them readable.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
};

use hdf5::{
    Dataset, File, Hyperslab, Selection, SliceOrIndex, dataset::Layout, types::VarLenUnicode,
};
use ndarray::{Array2, s};

use super::h5::SpectraSet;

/// Rows of a pool read at once, for a given number of points: about 8 MiB of fluxes.
pub fn chunk_rows(points: usize) -> usize {
    ((8 << 20) / (points.max(1) * 8)).clamp(256, 65_536)
}

/// A spectra file opened for reading in pieces.
pub struct PoolFile {
    path: PathBuf,
    filenames: Dataset,
    fluxes: Dataset,
    pub wave: Vec<f64>,
    len: usize,
    // Declared last: the datasets above close before their file.
    _file: File,
}

impl PoolFile {
    /// Opens `path` and checks its shapes, and that every file its virtual datasets read from
    /// is there (HDF5 would silently read zeros and empty names from a missing one).
    pub fn open(path: &Path) -> hdf5::Result<PoolFile> {
        let file = File::open(path)?;
        let filenames = file.dataset("filenames")?;
        let fluxes = file.dataset("fluxes")?;
        let wave = file.dataset("wave")?.read_raw::<f64>()?;
        let len = filenames.shape().first().copied().unwrap_or(0);
        let shape = fluxes.shape();
        if shape.len() != 2 || shape[0] != len || shape[1] != wave.len() {
            return Err(format!(
                "inconsistent shapes: {len} filenames, {} wave points, fluxes {shape:?}",
                wave.len()
            )
            .into());
        }
        check_sources(path, &fluxes, 0)?;
        Ok(PoolFile {
            path: path.to_path_buf(),
            filenames,
            fluxes,
            wave,
            len,
            _file: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn points(&self) -> usize {
        self.wave.len()
    }

    pub fn names(&self, rows: Range<usize>) -> hdf5::Result<Vec<String>> {
        Ok(self
            .filenames
            .read_slice_1d::<VarLenUnicode, _>(s![rows])?
            .iter()
            .map(|n| n.as_str().to_string())
            .collect())
    }

    pub fn fluxes(&self, rows: Range<usize>) -> hdf5::Result<Array2<f64>> {
        self.fluxes.read_slice_2d::<f64, _>(s![rows, ..])
    }

    /// The spectra at `rows` (any order), as a set in that order. Rows close together are
    /// read in one piece, rows far apart alone, so a few rows of a survey read quickly.
    pub fn select(&self, rows: &[usize]) -> hdf5::Result<SpectraSet> {
        let mut fluxes = Array2::zeros((rows.len(), self.points()));
        let mut filenames = vec![String::new(); rows.len()];
        self.blocks(rows, |start, end, picked| {
            let (names, block) = (self.names(start..end)?, self.fluxes(start..end)?);
            for &k in picked {
                filenames[k] = names[rows[k] - start].clone();
                fluxes.row_mut(k).assign(&block.row(rows[k] - start));
            }
            Ok(())
        })?;
        Ok(SpectraSet {
            filenames,
            wave: self.wave.clone(),
            fluxes,
            labels: None,
        })
    }

    /// The names at `rows` (any order), in that order; no flux is read.
    pub fn select_names(&self, rows: &[usize]) -> hdf5::Result<Vec<String>> {
        let mut filenames = vec![String::new(); rows.len()];
        self.blocks(rows, |start, end, picked| {
            let names = self.names(start..end)?;
            for &k in picked {
                filenames[k] = names[rows[k] - start].clone();
            }
            Ok(())
        })?;
        Ok(filenames)
    }

    /// Calls `read(start, end, picked)` for each run of `rows` close together (under 1,024
    /// rows apart), in file order; `picked` are the positions in `rows` that the run holds.
    fn blocks(
        &self,
        rows: &[usize],
        mut read: impl FnMut(usize, usize, &[usize]) -> hdf5::Result<()>,
    ) -> hdf5::Result<()> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.len) {
            return Err(format!("row {r} of a file of {} spectra", self.len).into());
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&k| rows[k]);
        let mut i = 0;
        while i < order.len() {
            let start = rows[order[i]];
            let mut j = i;
            while j + 1 < order.len() && rows[order[j + 1]] < start + 1024 {
                j += 1;
            }
            read(start, rows[order[j]] + 1, &order[i..=j])?;
            i = j + 1;
        }
        Ok(())
    }

    /// Row of each of `wanted` that the file holds (its first, where a name repeats), reading
    /// only the names, chunk by chunk.
    pub fn find(
        &self,
        wanted: &std::collections::HashSet<&str>,
    ) -> hdf5::Result<std::collections::HashMap<String, usize>> {
        let mut found = std::collections::HashMap::new();
        let step = 65_536;
        for start in (0..self.len).step_by(step) {
            let end = (start + step).min(self.len);
            for (i, name) in self.names(start..end)?.into_iter().enumerate() {
                if wanted.contains(name.as_str()) {
                    found.entry(name).or_insert(start + i);
                }
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        Ok(found)
    }
}

/// Refuses a spectrum with a NaN or infinite flux (it would silently poison every
/// prediction), naming the file (`what` says which), the spectrum and its row there.
pub fn refuse_non_finite(
    what: &str,
    path: &Path,
    name: &str,
    row: usize,
    fluxes: &[f64],
) -> anyhow::Result<()> {
    let bad = fluxes.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        anyhow::bail!(
            "the {what} {} has non-finite fluxes: spectrum {name} (row {row}) holds {bad} NaN or infinite values; preprocess it again",
            path.display()
        );
    }
    Ok(())
}

/// The attribute of a linked `fluxes` that names its pool, relative to the file's folder.
const POOL_FILE: &str = "pool_file";

/// Fails, naming the file, when the pool a linked result reads from is missing, or the pool
/// that one reads from, and so on down the chain (HDF5 itself would read zeros and empty
/// names from a missing source).
fn check_sources(path: &Path, fluxes: &Dataset, depth: usize) -> hdf5::Result<()> {
    if fluxes.layout() != Layout::Virtual || depth > 256 {
        return Ok(());
    }
    // A virtual dataset made elsewhere: left to HDF5.
    let Ok(attr) = fluxes.attr(POOL_FILE) else {
        return Ok(());
    };
    let source = attr.read_scalar::<VarLenUnicode>()?;
    let source = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(source.as_str());
    if !source.exists() {
        return Err(format!(
            "{} reads its spectra from {}, which is missing (was it moved or deleted without this file?)",
            path.display(),
            source.display()
        )
        .into());
    }
    let file = File::open(&source)?;
    check_sources(&source, &file.dataset("fluxes")?, depth + 1)
}

/// The path of `to` as seen from directory `from`, both resolved first (symbolic links too,
/// as the system will when it follows the `..`s); paths that do not exist yet are only made
/// absolute.
pub fn relative(from: &Path, to: &Path) -> std::io::Result<PathBuf> {
    let resolve = |p: &Path| p.canonicalize().or_else(|_| std::path::absolute(p));
    let (from, to) = (resolve(from)?, resolve(to)?);
    let (a, b): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out: PathBuf = std::iter::repeat_n("..", a.len() - common).collect();
    out.extend(&b[common..]);
    Ok(out)
}

/// An iteration's `result.h5`: predictions written as the pool is read, spectra linked.
pub struct ResultWriter {
    path: PathBuf,
    file: File,
    extendable: Vec<Dataset>,
    written: usize,
}

impl ResultWriter {
    /// A new file with the pool's `wave` and, given how many rows at most are predicted, one
    /// growing dataset per column (`labels` int64, `entropies` float64) that
    /// [`ResultWriter::push`] appends to.
    pub fn create(
        path: &Path,
        wave: &[f64],
        predictions: Option<usize>,
    ) -> hdf5::Result<ResultWriter> {
        let file = File::create(path)?;
        file.new_dataset::<f64>()
            .shape(wave.len())
            .create("wave")?
            .write(wave)?;
        let mut extendable = Vec::new();
        if let Some(rows) = predictions {
            let chunk = rows.clamp(1, 16_384);
            extendable.push(
                file.new_dataset::<i64>()
                    .chunk(chunk)
                    .shape(0..)
                    .create("labels")?,
            );
            extendable.push(
                file.new_dataset::<f64>()
                    .chunk(chunk)
                    .shape(0..)
                    .create("entropies")?,
            );
        }
        Ok(ResultWriter {
            path: path.to_path_buf(),
            file,
            extendable,
            written: 0,
        })
    }

    /// Appends one chunk's labels and entropies.
    pub fn push(&mut self, labels: &[i64], entropies: &[f64]) -> hdf5::Result<()> {
        let (start, end) = (self.written, self.written + labels.len());
        let [l, e] = self.extendable.as_slice() else {
            return Err("this result file holds no predictions".into());
        };
        l.resize(end)?;
        l.write_slice(labels, s![start..end])?;
        e.resize(end)?;
        e.write_slice(entropies, s![start..end])?;
        self.written = end;
        Ok(())
    }

    /// A one-dimensional dataset written whole (`oracle_indexes`, …).
    pub fn add<T: hdf5::H5Type>(&self, name: &str, values: &[T]) -> hdf5::Result<()> {
        let named = |e: hdf5::Error| hdf5::Error::from(format!("dataset {name}: {e}"));
        self.file
            .new_dataset::<T>()
            .shape(values.len())
            .create(name)
            .map_err(named)?
            .write(values)
            .map_err(named)
    }

    /// `filenames` and `fluxes` as views of the rows `runs` of `pool`, one after another.
    pub fn link(&self, pool: &PoolFile, runs: &[Range<usize>]) -> hdf5::Result<()> {
        self.link_runs(pool, runs.iter().cloned())
    }

    /// `filenames` and `fluxes` as views of every row of `pool`.
    pub fn link_all(&self, pool: &PoolFile) -> hdf5::Result<()> {
        self.link_runs(pool, std::iter::once(0..pool.len()))
    }

    fn link_runs(
        &self,
        pool: &PoolFile,
        runs: impl Iterator<Item = Range<usize>> + Clone,
    ) -> hdf5::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let source = relative(dir, pool.path()).map_err(|e| e.to_string())?;
        let source = source.to_str().ok_or("the pool's path is not UTF-8")?;
        let (n, points) = (pool.len(), pool.points());
        let total: usize = runs.clone().map(|r| r.len()).sum();
        let mut names = self.file.new_dataset::<VarLenUnicode>().shape(total);
        let mut fluxes = self.file.new_dataset::<f64>().shape((total, points));
        let mut at = 0;
        let rows = |r: &Range<usize>| -> Selection {
            Hyperslab::from(vec![
                SliceOrIndex::from(r.clone()),
                SliceOrIndex::from(0..points),
            ])
            .into()
        };
        for r in runs.filter(|r| !r.is_empty()) {
            let dst = at..at + r.len();
            names = names.virtual_map(source, "filenames", n, r.clone(), total, dst.clone());
            fluxes = fluxes.virtual_map(
                source,
                "fluxes",
                (n, points),
                rows(&r),
                (total, points),
                rows(&dst),
            );
            at += r.len();
        }
        names.create("filenames")?;
        let value = VarLenUnicode::from_str(source).map_err(|e| e.to_string())?;
        fluxes
            .create("fluxes")?
            .new_attr::<VarLenUnicode>()
            .create(POOL_FILE)?
            .write_scalar(&value)
    }

    /// Rows of predictions written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    pub fn finish(self) -> hdf5::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::science::h5::{SpectraWriter, read_spectra};

    fn pool(dir: &Path, n: usize) -> PathBuf {
        let p = dir.join("pool").join("result.h5");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut w = SpectraWriter::create(&p, &[1.0, 2.0, 3.0]).unwrap();
        for i in 0..n {
            w.push(&format!("spec-{i}.fits"), &[i as f64, 0.5, -(i as f64)])
                .unwrap();
        }
        w.finish().unwrap();
        p
    }

    #[test]
    fn a_result_reads_the_pools_rows_through_its_links_and_survives_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pool_path = pool(&data, 5000);
        let out = data.join("iteration").join("result.h5");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let p = PoolFile::open(&pool_path).unwrap();
        let mut w = ResultWriter::create(&out, &p.wave, Some(5000)).unwrap();
        w.push(&[1, 2], &[0.5, 0.25]).unwrap();
        w.link(&p, &[0..3, 10..4000, 4999..5000]).unwrap();
        w.finish().unwrap();
        drop(p);

        let moved = dir.path().join("moved");
        std::fs::rename(&data, &moved).unwrap();
        let set = read_spectra(&moved.join("iteration/result.h5")).unwrap();
        assert_eq!(set.len(), 3 + 3990 + 1);
        assert_eq!(set.filenames[2], "spec-2.fits");
        assert_eq!(set.filenames[3], "spec-10.fits");
        assert_eq!(set.row(3993), [4999.0, 0.5, -4999.0]);
        // A chain: the result is the next pool, and links to it.
        let p2 = PoolFile::open(&moved.join("iteration/result.h5")).unwrap();
        assert_eq!(
            p2.select(&[3, 0]).unwrap().filenames,
            ["spec-10.fits", "spec-0.fits"]
        );
    }

    #[test]
    fn a_result_whose_pool_is_gone_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let pool_path = pool(dir.path(), 10);
        let out = dir.path().join("result.h5");
        let p = PoolFile::open(&pool_path).unwrap();
        let w = ResultWriter::create(&out, &p.wave, None).unwrap();
        w.link_all(&p).unwrap();
        w.finish().unwrap();
        drop(p);
        std::fs::remove_file(&pool_path).unwrap();
        let err = PoolFile::open(&out).err().unwrap().to_string();
        assert!(
            err.contains("pool/result.h5") && err.contains("missing"),
            "{err}"
        );
        // And one link further down a chain.
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let pool_path = pool(&a, 10);
        let p = PoolFile::open(&pool_path).unwrap();
        let first = a.join("first.h5");
        let w = ResultWriter::create(&first, &p.wave, None).unwrap();
        w.link_all(&p).unwrap();
        w.finish().unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let p1 = PoolFile::open(&first).unwrap();
        let second = b.join("second.h5");
        let w = ResultWriter::create(&second, &p1.wave, None).unwrap();
        w.link(&p1, &[2..5, 7..7]).unwrap();
        w.finish().unwrap();
        assert_eq!(PoolFile::open(&second).unwrap().len(), 3);
        drop((p, p1));
        std::fs::remove_file(&pool_path).unwrap();
        let err = PoolFile::open(&second).err().unwrap().to_string();
        assert!(
            err.contains("first.h5 reads its spectra from") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        assert_eq!(
            relative(Path::new("/d/JOBS/b"), Path::new("/d/JOBS/a/result.h5")).unwrap(),
            Path::new("../a/result.h5")
        );
        assert_eq!(
            relative(Path::new("/d"), Path::new("/d/x.h5")).unwrap(),
            Path::new("x.h5")
        );
    }
}
