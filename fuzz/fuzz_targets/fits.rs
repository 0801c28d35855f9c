//! The FITS reader on any bytes, plain or gzipped: no panic, no allocation past the bound,
//! every spectrum it accepts keeps its promises, and the bounded read of a file (rows 0 and 2
//! only) agrees with decoding the whole file in memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mljm::science::fits::{self, MAX_PIXELS, Read, Spectrum, SpectrumError};

#[global_allocator]
static ALLOC: mljm_fuzz::Bounded = mljm_fuzz::Bounded;

fn promises(s: &Spectrum) {
    let n = s.wave.len();
    assert!((2..=MAX_PIXELS).contains(&n), "{n} pixels");
    assert_eq!(s.flux.len(), n, "one flux per wavelength");
    assert!(s.wave.iter().all(|w| w.is_finite()), "finite wavelengths");
    assert!(
        s.wave.windows(2).all(|w| w[1] > w[0]),
        "increasing wavelengths"
    );
    assert!(
        s.flux.iter().filter(|v| v.is_finite()).count() >= 2,
        "2 finite fluxes"
    );
    assert!(!s.filename.trim().is_empty(), "a FILENAME");
}

fuzz_target!(|data: &[u8]| {
    let in_memory = match data.starts_with(&[0x1f, 0x8b]) {
        true => fits::gunzip(data).and_then(|b| fits::parse_spectrum(&b, Read::WithMetadata)),
        false => fits::parse_spectrum(data, Read::WithMetadata),
    };
    if let Ok(s) = &in_memory {
        promises(s);
    }
    thread_local! {
        static FILE: std::path::PathBuf = mljm_fuzz::scratch("fits").join("spec.fits");
    }
    let from_file = FILE.with(|path| {
        std::fs::write(path, data).expect("the scratch file");
        fits::read_spectrum(path, Read::WithMetadata)
    });
    // Compared as text: a NaN flux pixel is not equal to itself. A header cfitsio cannot read
    // is refused by both, but cfitsio's own words for it may depend on how many bytes of the
    // file it was handed (the bounded read leaves out rows 1, 3 and 4): only those may differ.
    let (a, b) = (format!("{in_memory:?}"), format!("{from_file:?}"));
    let both_unreadable_headers = matches!(
        (&in_memory, &from_file),
        (
            Err(SpectrumError::BadHeader(_)),
            Err(SpectrumError::BadHeader(_))
        )
    );
    assert!(
        a == b || both_unreadable_headers,
        "the bounded read of the file disagrees:\n{a}\n{b}"
    );
});
