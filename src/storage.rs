//! Paths inside a storage root. A path is normalised lexically (`.`/`..` resolved, `/` is
//! the root); one that would climb above the root is refused, and so is one whose existing
//! part resolves (through symlinks) outside the root. The files domain and the job types'
//! config paths both go through here, the one place that keeps a path inside its root.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PathError {
    #[error("{0:?} would leave the storage root")]
    Escapes(String),
    #[error("{0:?} is not a valid file or directory name")]
    BadName(String),
}

/// One path component: not empty, `.` or `..`, without `/`, control characters (NUL
/// included: they cannot go into a download's headers) or a still-encoded separator (the
/// router leaves `%2F` encoded, and a name like `..%2Fx` is an attack, not a file).
pub fn file_name(name: &str) -> Result<String, PathError> {
    let lower = name.to_ascii_lowercase();
    let encoded_separator = lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00");
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.chars().any(char::is_control)
        || name.len() > 255
        || encoded_separator
    {
        return Err(PathError::BadName(name.to_string()));
    }
    Ok(name.to_string())
}

/// The components of a directory path below the root, `..` resolved lexically.
pub fn normalize(path: &str) -> Result<Vec<String>, PathError> {
    if path.contains('\0') {
        return Err(PathError::BadName(path.to_string()));
    }
    let mut parts: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes(path.to_string()));
                }
            }
            other => parts.push(other.to_string()),
        }
    }
    Ok(parts)
}

/// `/a/b` form of normalised components.
pub fn display(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Creates the root if needed; the root itself is canonicalised once.
    pub fn open(root: &Path) -> std::io::Result<Storage> {
        std::fs::create_dir_all(root)?;
        Ok(Storage {
            root: root.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory `parent_dir_path`, checked to stay inside the root (it need not exist).
    pub fn dir(&self, parent_dir_path: &str) -> Result<PathBuf, PathError> {
        let parts = normalize(parent_dir_path)?;
        let path = parts.iter().fold(self.root.clone(), |p, c| p.join(c));
        self.check_existing_prefix(&path, parent_dir_path)?;
        Ok(path)
    }

    /// The entry `name` in `parent_dir_path`. A symlink entry must resolve inside the root.
    pub fn entry(&self, parent_dir_path: &str, name: &str) -> Result<PathBuf, PathError> {
        let name = file_name(name)?;
        let path = self.dir(parent_dir_path)?.join(name);
        self.check_existing_prefix(&path, parent_dir_path)?;
        Ok(path)
    }

    /// Canonicalises the longest existing prefix of `path` and requires it inside the root.
    fn check_existing_prefix(&self, path: &Path, shown: &str) -> Result<(), PathError> {
        let mut probe = path.to_path_buf();
        loop {
            if probe.symlink_metadata().is_ok() {
                return match probe.canonicalize() {
                    Ok(real) if real.starts_with(&self.root) => Ok(()),
                    // A dangling symlink: refuse it rather than write through it.
                    _ => Err(PathError::Escapes(shown.to_string())),
                };
            }
            if !probe.pop() {
                return Err(PathError::Escapes(shown.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_above_the_root_is_refused() {
        assert!(normalize("/..").is_err());
        assert!(normalize("/a/../../b").is_err());
        assert_eq!(normalize("/a/../b").unwrap(), vec!["b"]);
    }

    #[test]
    fn names_with_slashes_dots_or_control_characters_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc/passwd",
            "a\0b",
            "\u{97}c\u{6}",
            "tab\there",
        ] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
        assert!(file_name("..hidden").is_ok());
        assert!(file_name("notes α.txt").is_ok());
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let tmp = std::env::temp_dir().join(format!("mljm-storage-{}", uuid::Uuid::new_v4()));
        let outside = tmp.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let s = Storage::open(&tmp.join("root")).unwrap();
        std::os::unix::fs::symlink(&outside, s.root().join("link")).unwrap();
        assert!(s.dir("/link").is_err());
        assert!(s.entry("/", "link").is_err());
        assert!(s.entry("/link", "x").is_err());
        assert!(s.dir("/fine/new").is_ok());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
