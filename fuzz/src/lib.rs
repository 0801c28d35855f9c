//! What every fuzz target shares: an allocator that turns any single allocation above
//! [`LIMIT`] into a crash, so "a header never makes it allocate what it claims" is checked on
//! every input, not only on the ones that happen to exhaust memory.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::Write,
    path::PathBuf,
};

/// The largest allocation any input may cause: a whole file is at most
/// `mljm::science::fits::MAX_FILE_BYTES` (64 MiB), and a growing buffer may double past it once.
pub const LIMIT: usize = 160 << 20;

/// The system allocator, aborting (a crash libFuzzer reports with its input) above [`LIMIT`].
pub struct Bounded;

fn check(size: usize) {
    if size > LIMIT {
        // Stderr is unbuffered: no allocation on the way out.
        let _ = writeln!(
            std::io::stderr(),
            "allocation of {size} bytes exceeds the fuzzing bound of {LIMIT}"
        );
        std::process::abort();
    }
}

// SAFETY: every call is passed to `System` unchanged; `check` only reads the size.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A directory of this process's own under the temporary directory, made once.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mljm-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}
