//! Writing a LAMOST-style spectrum (the demo survey and the tests' corpus).

use std::path::Path;

/// Header values of a synthetic or test spectrum, written as LAMOST DR2 writes them.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub filename: Option<String>,
    pub strings: Vec<(&'static str, String)>,
    pub numbers: Vec<(&'static str, f64)>,
    pub integers: Vec<(&'static str, i64)>,
}

/// Writes a (rows, pixels) float32 primary image with the header; overwrites `path`.
/// Used by `mljm demo` and by the tests' bad-file corpus.
pub fn write_spectrum(
    path: &Path,
    header: &Header,
    rows: &[Vec<f32>],
) -> Result<(), fitsio::errors::Error> {
    use fitsio::{
        FitsFile,
        images::{ImageDescription, ImageType},
    };
    let pixels = rows.first().map_or(0, |r| r.len());
    let dims = [rows.len(), pixels];
    let desc = ImageDescription {
        data_type: ImageType::Float,
        dimensions: &dims,
    };
    let _ = std::fs::remove_file(path);
    let mut f = FitsFile::create(path).with_custom_primary(&desc).open()?;
    let hdu = f.primary_hdu()?;
    if let Some(name) = &header.filename {
        hdu.write_key(&mut f, "FILENAME", name.as_str())?;
    }
    for (k, v) in &header.integers {
        hdu.write_key(&mut f, k, *v)?;
    }
    for (k, v) in &header.strings {
        hdu.write_key(&mut f, k, v.as_str())?;
    }
    for (k, v) in &header.numbers {
        hdu.write_key(&mut f, k, *v)?;
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    hdu.write_image(&mut f, &flat)?;
    Ok(())
}
