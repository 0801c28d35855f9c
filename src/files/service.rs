//! File operations on the storage root, shared by the API and the pages.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::storage::{Storage, display, normalize};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEntry {
    pub filename: String,
    pub size: u64,
    pub modified_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirEntry {
    pub dirname: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Listing {
    pub parent_dir_path: String,
    pub total: usize,
    pub file_count: usize,
    pub directory_count: usize,
    pub files: Vec<FileEntry>,
    pub directories: Vec<DirEntry>,
}

fn not_found(what: &str, parent: &str) -> ApiError {
    ApiError::NotFound(format!("{what} not found in {parent}"))
}

pub fn list(storage: &Storage, parent_dir_path: &str) -> Result<Listing, ApiError> {
    list_part(storage, parent_dir_path, 0, usize::MAX)
}

/// A folder's entries, folders first and then files, each in name order; only the `limit`
/// entries from `offset` on are in the listing (and only their files are stat'ed), while the
/// counts are the folder's. The file browser draws a 10,000-job `/JOBS` this way.
pub fn list_part(
    storage: &Storage,
    parent_dir_path: &str,
    offset: usize,
    limit: usize,
) -> Result<Listing, ApiError> {
    let dir = storage.dir(parent_dir_path)?;
    let shown = display(&normalize(parent_dir_path)?);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(ApiError::NotFound(format!("no directory {shown}")));
        }
        Err(e) => return Err(e.into()),
    };
    // The entry's own type (a symlink is not followed), from readdir: no stat per entry.
    let (mut file_names, mut dir_names) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".upload-") {
            continue;
        }
        match entry.file_type()?.is_dir() {
            true => dir_names.push(name),
            false => file_names.push(name),
        }
    }
    dir_names.sort();
    file_names.sort();
    let (file_count, directory_count) = (file_names.len(), dir_names.len());
    let end = offset.saturating_add(limit);
    let directories = dir_names
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|dirname| DirEntry { dirname })
        .collect();
    let files = file_names
        .into_iter()
        .skip(offset.saturating_sub(directory_count))
        .take(end.saturating_sub(directory_count.max(offset)))
        .map(|filename| {
            let meta = std::fs::symlink_metadata(dir.join(&filename))?;
            Ok(FileEntry {
                modified_at: meta.modified().ok().map(DateTime::<Utc>::from),
                size: meta.len(),
                filename,
            })
        })
        .collect::<Result<Vec<_>, std::io::Error>>()?;
    Ok(Listing {
        parent_dir_path: shown,
        total: file_count + directory_count,
        file_count,
        directory_count,
        files,
        directories,
    })
}

pub fn delete_file(
    storage: &Storage,
    parent_dir_path: &str,
    filename: &str,
) -> Result<(), ApiError> {
    let path = storage.entry(parent_dir_path, filename)?;
    match path.symlink_metadata() {
        Err(_) => Err(not_found(&format!("file {filename}"), parent_dir_path)),
        Ok(m) if m.is_dir() => Err(ApiError::invalid(
            "filename",
            format!("{filename} is a directory; delete it as a directory"),
        )),
        Ok(_) => Ok(std::fs::remove_file(path)?),
    }
}

pub fn make_dir(
    storage: &Storage,
    parent_dir_path: &str,
    dirname: &str,
) -> Result<String, ApiError> {
    let path = storage.entry(parent_dir_path, dirname)?;
    if path.symlink_metadata().is_ok() {
        return Err(ApiError::Conflict(format!(
            "{dirname} already exists in {parent_dir_path}"
        )));
    }
    std::fs::create_dir_all(&path)?;
    Ok(display(&normalize(&format!(
        "{parent_dir_path}/{dirname}"
    ))?))
}

/// Recursive; symlinks inside are removed as links, never followed.
pub fn remove_dir(storage: &Storage, parent_dir_path: &str, dirname: &str) -> Result<(), ApiError> {
    let path = storage.entry(parent_dir_path, dirname)?;
    if normalize(&format!("{parent_dir_path}/{dirname}"))? == ["JOBS"] {
        return Err(ApiError::Conflict(
            "/JOBS holds the job directories; delete jobs instead".into(),
        ));
    }
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => Ok(std::fs::remove_dir_all(path)?),
        Ok(_) => Err(ApiError::invalid(
            "dirname",
            format!("{dirname} is not a directory"),
        )),
        Err(_) => Err(not_found(&format!("directory {dirname}"), parent_dir_path)),
    }
}

/// Size of a file for Range checks and listings, or 404.
pub fn existing_file(
    storage: &Storage,
    parent_dir_path: &str,
    filename: &str,
) -> Result<std::path::PathBuf, ApiError> {
    let path = storage.entry(parent_dir_path, filename)?;
    if Path::new(&path).is_file() {
        Ok(path)
    } else {
        Err(not_found(&format!("file {filename}"), parent_dir_path))
    }
}

/// Paths (as the files root shows them) of files ending in one of `extensions`, newest first,
/// at most `limit` and at most `depth` folders deep: what a form offers to pick from. `/JOBS`
/// is left out (thousands of job folders; the jobs table knows their outputs).
pub fn find_by_extension(
    storage: &Storage,
    extensions: &[&str],
    depth: usize,
    limit: usize,
) -> Vec<String> {
    let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
    let mut stack = vec![(storage.root().to_path_buf(), String::new(), 0)];
    let mut visited = 0;
    while let Some((dir, shown, level)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > 20_000 {
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            let path = format!("{shown}/{name}");
            if meta.is_dir() && !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                if level + 1 < depth && !(level == 0 && name == "JOBS") {
                    stack.push((entry.path(), path, level + 1));
                }
            } else if meta.is_file() && extensions.iter().any(|e| name.ends_with(e)) {
                found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), path));
            }
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().take(limit).map(|(_, p)| p).collect()
}
