//! The storage-path normaliser and the entry-name check of the file API: no panic, and no
//! path they accept leaves the root, lexically or through a symlink in the existing tree
//! (`out` and `dangling` lead outside, `inside` stays in).
//!
//! The input is `parent_dir_path`, then optionally U+0001 and an entry name.
#![no_main]

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use libfuzzer_sys::fuzz_target;
use mljm::storage::{PathError, Storage, display, file_name, normalize};

#[global_allocator]
static ALLOC: mljm_fuzz::Bounded = mljm_fuzz::Bounded;

fn storage() -> &'static Storage {
    static STORAGE: OnceLock<Storage> = OnceLock::new();
    STORAGE.get_or_init(|| {
        let scratch = mljm_fuzz::scratch("storage");
        let (root, outside) = (scratch.join("root"), scratch.join("outside"));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(outside.join("c")).unwrap();
        let _ = symlink(&outside, root.join("out"));
        let _ = symlink(root.join("a"), root.join("inside"));
        let _ = symlink("/nonexistent-mljm-fuzz", root.join("dangling"));
        let _ = symlink("../..", root.join("a/up"));
        Storage::open(&root).unwrap()
    })
}

/// The longest existing prefix of `path`, canonicalised, is inside `root`.
fn really_inside(root: &Path, path: &Path) -> bool {
    let mut probe: PathBuf = path.to_path_buf();
    loop {
        if probe.symlink_metadata().is_ok() {
            return probe
                .canonicalize()
                .is_ok_and(|real| real.starts_with(root));
        }
        if !probe.pop() {
            return false;
        }
    }
}

fn a_name(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\0')
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (dir, name) = match input.split_once('\u{1}') {
        Some((d, n)) => (d, Some(n)),
        None => (input, None),
    };
    match normalize(dir) {
        Ok(parts) => {
            assert!(parts.iter().all(|c| a_name(c)), "{dir:?} → {parts:?}");
            assert_eq!(normalize(&display(&parts)), Ok(parts.clone()), "stable");
            // Lexically: never more `..` than components before them.
            let mut depth = 0i64;
            for c in dir.split('/') {
                match c {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                assert!(depth >= 0, "{dir:?} climbs above the root");
            }
        }
        Err(PathError::Escapes(_)) => assert!(!dir.contains('\0')),
        Err(PathError::BadName(_)) => assert!(dir.contains('\0')),
    }
    let storage = storage();
    let root = storage.root();
    if let Ok(path) = storage.dir(dir) {
        assert!(path.starts_with(root), "{dir:?} → {path:?}");
        assert!(
            really_inside(root, &path),
            "{dir:?} → {path:?} leaves the root"
        );
    }
    let Some(name) = name else { return };
    match file_name(name) {
        Ok(n) => {
            assert_eq!(n, name);
            assert!(a_name(name) && !name.chars().any(char::is_control) && name.len() <= 255);
        }
        Err(_) => assert!(storage.entry(dir, name).is_err()),
    }
    if let Ok(path) = storage.entry(dir, name) {
        assert!(path.starts_with(root), "{dir:?}/{name:?} → {path:?}");
        assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(name));
        assert!(
            really_inside(root, &path),
            "{dir:?}/{name:?} → {path:?} leaves the root"
        );
    }
});
