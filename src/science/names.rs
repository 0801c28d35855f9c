//! Duplicate FILENAMEs among the rows of a preprocessing run, found in constant memory.
//!
//! Every written row appends a 24-byte record (128-bit hash of its FILENAME, row) to an
//! unnamed temporary file, and its display path and FILENAME to a second one. At the end the
//! records are sorted in runs of [`RUN`] and merged, so rows with the same hash come together:
//! the first row of each group keeps the name, every later one is a duplicate. Memory is one
//! run plus a small read buffer per run, whatever the survey's size; the files vanish with the
//! process even if it is killed.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// Records sorted in memory at a time (1.5 MiB).
const RUN: usize = 1 << 16;
const RECORD: usize = 24;

/// A row whose FILENAME an earlier row has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub row: u64,
    pub first_row: u64,
    pub path: String,
    pub filename: String,
}

pub struct NameLog {
    dir: PathBuf,
    keys: BufWriter<File>,
    names: BufWriter<File>,
    rows: u64,
}

fn key(name: &str) -> u128 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let h = |salt: u8| BuildHasherDefault::<DefaultHasher>::default().hash_one((salt, name));
    ((h(1) as u128) << 64) | h(2) as u128
}

fn record(bytes: &[u8]) -> (u128, u64) {
    let (k, r) = bytes.split_at(16);
    (
        u128::from_le_bytes(k.try_into().expect("16 bytes")),
        u64::from_le_bytes(r.try_into().expect("8 bytes")),
    )
}

impl NameLog {
    /// Temporary files in `dir` (the run's output folder, so they count against its disk).
    pub fn new(dir: &Path) -> io::Result<NameLog> {
        Ok(NameLog {
            dir: dir.to_path_buf(),
            keys: BufWriter::new(tempfile::tempfile_in(dir)?),
            names: BufWriter::new(tempfile::tempfile_in(dir)?),
            rows: 0,
        })
    }

    /// Notes the next row's FILENAME and the path it came from.
    pub fn push(&mut self, filename: &str, path: &str) -> io::Result<()> {
        self.keys.write_all(&key(filename).to_le_bytes())?;
        self.keys.write_all(&self.rows.to_le_bytes())?;
        for s in [path, filename] {
            self.names.write_all(&(s.len() as u32).to_le_bytes())?;
            self.names.write_all(s.as_bytes())?;
        }
        self.rows += 1;
        Ok(())
    }

    /// The duplicates among the rows so far, by row. Can be called again after more pushes.
    pub fn duplicates(&mut self) -> io::Result<Vec<Duplicate>> {
        self.keys.flush()?;
        let (mut dups, mut group) = (Vec::new(), None::<(u128, u64)>);
        self.merge_sorted(|(k, row)| match group {
            Some((g, first)) if g == k => dups.push((row, first)),
            _ => group = Some((k, row)),
        })?;
        dups.sort_unstable();
        self.describe(dups)
    }

    /// Calls `each` with every (key, row) in (key, row) order.
    fn merge_sorted(&mut self, mut each: impl FnMut((u128, u64))) -> io::Result<()> {
        let total = self.rows as usize;
        let file = self.keys.get_ref();
        let mut run = Vec::with_capacity(RUN.min(total));
        let mut bytes = vec![0u8; RUN.min(total) * RECORD];
        let sorted = |run: &mut Vec<(u128, u64)>, start: usize, len: usize, bytes: &mut [u8]| {
            file.read_exact_at(&mut bytes[..len * RECORD], (start * RECORD) as u64)?;
            run.clear();
            run.extend(bytes[..len * RECORD].chunks_exact(RECORD).map(record));
            run.sort_unstable();
            io::Result::Ok(())
        };
        if total <= RUN {
            sorted(&mut run, 0, total, &mut bytes)?;
            run.iter().for_each(|&r| each(r));
            return Ok(());
        }
        // Sorted runs to a second file, then a k-way merge reading each run in small blocks.
        let mut runs = BufWriter::new(tempfile::tempfile_in(&self.dir)?);
        let mut readers = Vec::new();
        for start in (0..total).step_by(RUN) {
            let len = RUN.min(total - start);
            sorted(&mut run, start, len, &mut bytes)?;
            for (k, r) in &run {
                runs.write_all(&k.to_le_bytes())?;
                runs.write_all(&r.to_le_bytes())?;
            }
            readers.push(RunReader {
                next: (start * RECORD) as u64,
                left: len,
                block: Vec::new(),
                pos: 0,
            });
        }
        drop((run, bytes));
        let runs = runs.into_inner().map_err(|e| e.into_error())?;
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(rec) = r.next_record(&runs)? {
                heap.push(Reverse((rec, i)));
            }
        }
        while let Some(Reverse((rec, i))) = heap.pop() {
            each(rec);
            if let Some(rec) = readers[i].next_record(&runs)? {
                heap.push(Reverse((rec, i)));
            }
        }
        Ok(())
    }

    /// Paths and FILENAMEs of the duplicate rows (sorted), read back in one pass.
    fn describe(&mut self, dups: Vec<(u64, u64)>) -> io::Result<Vec<Duplicate>> {
        if dups.is_empty() {
            return Ok(Vec::new());
        }
        self.names.flush()?;
        let mut file = self.names.get_ref();
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(file);
        let mut field = || -> io::Result<String> {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len)?;
            let mut s = vec![0u8; u32::from_le_bytes(len) as usize];
            reader.read_exact(&mut s)?;
            Ok(String::from_utf8_lossy(&s).into_owned())
        };
        let mut out = Vec::with_capacity(dups.len());
        let mut row = 0u64;
        for (dup, first_row) in dups {
            while row < dup {
                field()?;
                field()?;
                row += 1;
            }
            let (path, filename) = (field()?, field()?);
            row += 1;
            out.push(Duplicate {
                row: dup,
                first_row,
                path,
                filename,
            });
        }
        // Back to the end for later pushes.
        self.names.get_ref().seek(SeekFrom::End(0))?;
        Ok(out)
    }
}

/// Reads one sorted run in blocks of 256 records.
struct RunReader {
    next: u64,
    left: usize,
    block: Vec<(u128, u64)>,
    pos: usize,
}

impl RunReader {
    fn next_record(&mut self, file: &File) -> io::Result<Option<(u128, u64)>> {
        if self.pos == self.block.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = self.left.min(256);
            let mut bytes = vec![0u8; n * RECORD];
            file.read_exact_at(&mut bytes, self.next)?;
            self.block.clear();
            self.block.extend(bytes.chunks_exact(RECORD).map(record));
            self.next += bytes.len() as u64;
            self.left -= n;
            self.pos = 0;
        }
        self.pos += 1;
        Ok(Some(self.block[self.pos - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_within_and_across_sorted_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = NameLog::new(dir.path()).unwrap();
        let n = 2 * RUN as u64 + 1000;
        // Later rows repeat earlier names: within the first run, across runs, and three times.
        let name = |i: u64| match i {
            5 => "n1".to_string(),
            100_000 => "n70000".to_string(),
            130_000 | 131_000 => "n0".to_string(),
            i => format!("n{i}"),
        };
        for i in 0..n {
            log.push(&name(i), &format!("d/{i}.fits")).unwrap();
            if i == 10 {
                let early = log.duplicates().unwrap();
                assert_eq!(early.len(), 1);
                assert_eq!((early[0].row, early[0].first_row), (5, 1));
            }
        }
        let dups = log.duplicates().unwrap();
        let got: Vec<(u64, u64, &str, &str)> = dups
            .iter()
            .map(|d| (d.row, d.first_row, d.path.as_str(), d.filename.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, 1, "d/5.fits", "n1"),
                (100_000, 70_000, "d/100000.fits", "n70000"),
                (130_000, 0, "d/130000.fits", "n0"),
                (131_000, 0, "d/131000.fits", "n0"),
            ]
        );
    }
}
