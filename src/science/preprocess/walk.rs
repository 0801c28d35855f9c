//! The survey walk: spectrum files in sorted path order, symlinks followed once.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::science::fits::SpectrumError;

/// An entry found by the walk: a candidate file, or something to report as skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    File(PathBuf),
    Bad(PathBuf, String),
}

pub(super) fn is_spectrum_name(name: &std::ffi::OsStr) -> bool {
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
