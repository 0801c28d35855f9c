//! LAMOST DR spectra: one FITS file (`.fits` or `.fits.gz`) into header metadata, wavelength
//! and flux, through cfitsio. Every way a file can be wrong is a [`SpectrumError`] in words a
//! researcher can act on; nothing here panics, hangs, or allocates what a header claims.
//!
//! The file is read into memory with a bounded read (gunzipped with a bounded inflate) and
//! handed to cfitsio as a memory file, so the size a header promises is checked against the
//! bytes that exist before any data buffer is allocated, and cfitsio's extended file-name
//! syntax (`file.fits[1]`, `!file`) never applies to survey file names.

mod cfitsio;
mod write;

use cfitsio::MemFits;
pub use write::{Header, write_spectrum};

use std::{io::Read as _, path::Path};

/// A LAMOST low-resolution spectrum is ~80 KB (5 × ~3909 float32). Anything past this is not one.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Pixels per row we accept (LAMOST has ~3909).
pub const MAX_PIXELS: usize = 1_000_000;
/// Rows of the primary HDU: flux, inverse variance, wavelength, andmask, ormask.
pub const ROWS: usize = 5;
const FLUX_ROW: usize = 0;
const WAVE_ROW: usize = 2;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpectrumError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("the file name is not valid UTF-8")]
    NonUtf8Name,
    #[error("is a directory, not a FITS file")]
    Directory,
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("the file is {0} bytes; a LAMOST spectrum is under {MAX_FILE_BYTES} bytes")]
    TooBig(u64),
    #[error(
        "the file inflates to more than {MAX_FILE_BYTES} bytes; a LAMOST spectrum is under {MAX_FILE_BYTES} bytes"
    )]
    InflatesTooBig,
    #[error("not a FITS file: it does not start with the keyword SIMPLE")]
    NotFits,
    #[error("not a valid gzip file: {0}")]
    BadGzip(String),
    #[error(
        "truncated: the header promises {promised} bytes up to the end of the data, the file has {actual}"
    )]
    Truncated { promised: u64, actual: u64 },
    #[error("the FITS header cannot be read: {0}")]
    BadHeader(String),
    #[error(
        "data has shape {0}, expected ({ROWS}, N): rows flux, inverse variance, wavelength, andmask, ormask"
    )]
    Shape(String),
    #[error("data has {pixels} pixels per row; a LAMOST spectrum has between 2 and {MAX_PIXELS}")]
    Pixels { pixels: usize },
    #[error("data are {0} (BITPIX = {1}); expected 32-bit float (BITPIX = -32)")]
    DataType(&'static str, i32),
    #[error("no FILENAME keyword in the primary header")]
    MissingFilename,
    #[error("the FILENAME keyword is empty")]
    EmptyFilename,
    #[error("wavelength (data row 2) is not finite at pixel {pixel}")]
    WaveNotFinite { pixel: usize },
    #[error(
        "wavelengths (data row 2) are not strictly increasing: pixel {pixel} is {next} Å after {prev} Å"
    )]
    WaveNotIncreasing { pixel: usize, prev: f32, next: f32 },
    #[error("only {finite} of {pixels} flux pixels are finite; at least 2 are needed")]
    TooFewFlux { finite: usize, pixels: usize },
    #[error("cfitsio error {status} ({text}) while reading the data")]
    Data { status: i32, text: String },
}

/// What `GET /api/spectra/{filename}` shows next to the data; absent keys are `None`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Metadata {
    pub targetname: Option<String>,
    pub observed_at: Option<String>,
    #[serde(rename = "type")]
    pub class: Option<String>,
    pub subtype: Option<String>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub magtype: Option<String>,
    pub mag_1: Option<f64>,
    pub mag_2: Option<f64>,
    pub mag_3: Option<f64>,
    pub mag_4: Option<f64>,
    pub mag_5: Option<f64>,
    pub mag_6: Option<f64>,
    pub mag_7: Option<f64>,
    pub sn_u: Option<f64>,
    pub sn_g: Option<f64>,
    pub sn_r: Option<f64>,
    pub sn_i: Option<f64>,
    pub sn_z: Option<f64>,
    pub z: Option<f64>,
    pub z_err: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// The FILENAME keyword (the spectrum's identity in every output).
    pub filename: String,
    /// Present when read with [`Read::WithMetadata`].
    pub metadata: Option<Metadata>,
    /// Å, finite and strictly increasing.
    pub wave: Vec<f32>,
    /// May hold non-finite pixels (at least 2 are finite).
    pub flux: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Read {
    /// FILENAME, wave and flux: what preprocessing needs.
    Data,
    /// Also the header keys of [`Metadata`].
    WithMetadata,
}

/// Reads and checks one LAMOST spectrum.
pub fn read_spectrum(path: &Path, what: Read) -> Result<Spectrum, SpectrumError> {
    let (bytes, file_len) = read_bytes(path)?;
    parse_prefix(&bytes, file_len, what)
}

/// Bytes read first: the header of a LAMOST spectrum and the start of its data.
const FIRST_READ: usize = 16 << 10;

/// The bytes a spectrum needs and the length of the whole (gunzipped) file. A plain file is
/// read up to the end of data row 2 (flux and wavelength are rows 0 and 2 of 5), about 60% of
/// it; a gzipped one is inflated whole. Never more than [`MAX_FILE_BYTES`].
pub fn read_bytes(path: &Path) -> Result<(Vec<u8>, u64), SpectrumError> {
    let io = |e: std::io::Error| SpectrumError::Io(e.to_string());
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(SpectrumError::Directory);
    }
    let len = meta.len();
    if len > MAX_FILE_BYTES {
        return Err(SpectrumError::TooBig(len));
    }
    // Read into spare capacity: no zero-fill of bytes about to be overwritten.
    let mut buf = Vec::with_capacity((len as usize).min(FIRST_READ));
    read_up_to(&mut file, &mut buf, len.min(FIRST_READ as u64))?;
    if buf.starts_with(&[0x1f, 0x8b]) {
        file.take(MAX_FILE_BYTES)
            .read_to_end(&mut buf)
            .map_err(io)?;
        let out = gunzip(&buf)?;
        let n = out.len() as u64;
        return Ok((out, n));
    }
    let Some(h) = header_len(&buf).filter(|&h| h < len) else {
        read_up_to(&mut file, &mut buf, len)?;
        return Ok((buf, len));
    };
    // The data are 5 equal rows, then padding of less than 2880 bytes, so each row is between
    // `row_min` and `row_max` bytes. Rows 0 and 2 are read; the bytes of row 1 stay zero.
    let data = len - h;
    let (row_min, row_max) = (data.saturating_sub(2879) / 5, data.div_ceil(5));
    let (row0_end, row2_start, row2_end) =
        (h + row_max, h + 2 * row_min, (h + 3 * row_max).min(len));
    buf.reserve_exact((row2_end as usize).saturating_sub(buf.len()));
    read_up_to(&mut file, &mut buf, row0_end.min(len))?;
    if row2_start > buf.len() as u64 {
        buf.resize(row2_start as usize, 0);
    }
    let from = buf.len();
    buf.resize(row2_end.max(from as u64) as usize, 0);
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf[from..], from as u64).map_err(io)?;
    Ok((buf, len))
}

/// Inflates a gzipped spectrum, never past [`MAX_FILE_BYTES`] whatever the stream claims.
pub fn gunzip(gz: &[u8]) -> Result<Vec<u8>, SpectrumError> {
    // Reserved, not touched: memory grows with the bytes inflated, and the buffer is never
    // copied to grow, so a stream that inflates past the limit costs 64 MiB, not twice that.
    let mut out = Vec::with_capacity(MAX_FILE_BYTES as usize + 1);
    flate2::read::MultiGzDecoder::new(gz)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| SpectrumError::BadGzip(e.to_string()))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(SpectrumError::InflatesTooBig);
    }
    Ok(out)
}

/// Reads until `buf` holds `total` bytes; a file shorter than its size said changed under us.
fn read_up_to(
    file: &mut std::fs::File,
    buf: &mut Vec<u8>,
    total: u64,
) -> Result<(), SpectrumError> {
    let missing = total.saturating_sub(buf.len() as u64);
    let got = file
        .take(missing)
        .read_to_end(buf)
        .map_err(|e| SpectrumError::Io(e.to_string()))?;
    if (got as u64) < missing {
        return Err(SpectrumError::Io(
            "the file shrank while it was read".into(),
        ));
    }
    Ok(())
}

/// The header's length in bytes (through the END card, padded to 2880), if `bytes` hold it.
fn header_len(bytes: &[u8]) -> Option<u64> {
    let end = bytes.chunks_exact(80).position(is_end_card)?;
    Some(((end as u64 + 1) * 80).div_ceil(2880) * 2880)
}

/// Checks and decodes a LAMOST spectrum held in memory (the FITS bytes, not gzipped).
pub fn parse_spectrum(bytes: &[u8], what: Read) -> Result<Spectrum, SpectrumError> {
    parse_prefix(bytes, bytes.len() as u64, what)
}

/// As [`parse_spectrum`], from the first bytes of a file of `file_len` bytes; they must reach
/// the end of data row 2.
fn parse_prefix(bytes: &[u8], file_len: u64, what: Read) -> Result<Spectrum, SpectrumError> {
    if bytes.is_empty() {
        return Err(SpectrumError::Empty);
    }
    if !bytes.starts_with(b"SIMPLE") {
        return Err(SpectrumError::NotFits);
    }
    header_text(bytes)?;
    let mut fits = MemFits::open(bytes)?;
    let (bitpix, shape) = fits.image_layout()?;
    if shape.len() != 2 || shape[0] != ROWS {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        return Err(SpectrumError::Shape(format!("({})", dims.join(", "))));
    }
    let pixels = shape[1];
    if !(2..=MAX_PIXELS).contains(&pixels) {
        return Err(SpectrumError::Pixels { pixels });
    }
    match bitpix {
        -32 | -64 => {}
        8 => return Err(SpectrumError::DataType("8-bit integers", bitpix)),
        16 => return Err(SpectrumError::DataType("16-bit integers", bitpix)),
        32 => return Err(SpectrumError::DataType("32-bit integers", bitpix)),
        64 => return Err(SpectrumError::DataType("64-bit integers", bitpix)),
        other => return Err(SpectrumError::DataType("of an unknown type", other)),
    }
    let (data_start, promised) =
        fits.data_span((ROWS * pixels) as u64, bitpix.unsigned_abs() as u64 / 8)?;
    if promised > file_len {
        return Err(SpectrumError::Truncated {
            promised,
            actual: file_len,
        });
    }
    let filename = match fits.key_string("FILENAME")? {
        None => return Err(SpectrumError::MissingFilename),
        Some(s) if s.trim().is_empty() => return Err(SpectrumError::EmptyFilename),
        Some(s) => s.trim().to_string(),
    };
    // Unscaled big-endian float32, the LAMOST case, decodes straight from our bytes; anything
    // else (float64, BSCALE/BZERO) goes through cfitsio's conversions.
    let direct = bitpix == -32 && !has_scaling(&bytes[..(data_start as usize).min(bytes.len())]);
    let row = |fits: &mut MemFits, row: usize| match direct {
        true => be_f32_row(bytes, data_start as usize + row * pixels * 4, pixels).ok_or(
            SpectrumError::Truncated {
                promised,
                actual: bytes.len() as u64,
            },
        ),
        false => fits.read_row(row, pixels),
    };
    let flux = row(&mut fits, FLUX_ROW)?;
    let wave = row(&mut fits, WAVE_ROW)?;
    check_wave(&wave)?;
    let finite = flux.iter().fold(0, |n, v| n + v.is_finite() as usize);
    if finite < 2 {
        return Err(SpectrumError::TooFewFlux { finite, pixels });
    }
    let metadata = match what {
        Read::Data => None,
        Read::WithMetadata => Some(fits.metadata()?),
    };
    Ok(Spectrum {
        filename,
        metadata,
        wave,
        flux,
    })
}

/// The card that ends a header: `END` and blanks.
fn is_end_card(card: &[u8]) -> bool {
    card.starts_with(b"END") && card[3..].iter().all(|&b| b == b' ')
}

/// The header's cards up to END hold text: keywords printable ASCII, and no control
/// characters anywhere. Such cards are refused here, naming the card, before cfitsio sees
/// them: its reason for one (a fuzzer's find, a binary keyword) was not the same in two reads
/// of the same header.
fn header_text(bytes: &[u8]) -> Result<(), SpectrumError> {
    for (i, card) in bytes.chunks(80).enumerate() {
        if is_end_card(card) {
            return Ok(());
        }
        let keyword = &card[..card.len().min(8)];
        let bad = if keyword.iter().any(|b| !(0x20..=0x7e).contains(b)) {
            "its keyword holds a byte that is not printable ASCII"
        } else if card.iter().any(|&b| b < 0x20 || b == 0x7f) {
            "it holds a control character"
        } else {
            continue;
        };
        return Err(SpectrumError::BadHeader(format!(
            "header card {} (bytes {}–{}): {bad}",
            i + 1,
            i * 80,
            i * 80 + card.len() - 1
        )));
    }
    Ok(())
}

fn check_wave(wave: &[f32]) -> Result<(), SpectrumError> {
    // One branch-free pass (it vectorises); the slow search below only names the culprit.
    let finite = wave.iter().fold(true, |ok, w| ok & w.is_finite());
    let increasing = wave
        .iter()
        .zip(&wave[1..])
        .fold(true, |ok, (a, b)| ok & (b > a));
    if finite && increasing {
        return Ok(());
    }
    if let Some(pixel) = wave.iter().position(|w| !w.is_finite()) {
        return Err(SpectrumError::WaveNotFinite { pixel });
    }
    match wave.windows(2).position(|w| w[1] <= w[0]) {
        Some(i) => Err(SpectrumError::WaveNotIncreasing {
            pixel: i + 1,
            prev: wave[i],
            next: wave[i + 1],
        }),
        None => Ok(()),
    }
}

/// Whether the header (the bytes before the data) scales the data values.
fn has_scaling(header: &[u8]) -> bool {
    header
        .chunks_exact(80)
        .any(|card| card.starts_with(b"BSCALE  ") || card.starts_with(b"BZERO   "))
}

/// `pixels` big-endian float32 values at byte `offset`, if the bytes hold them.
fn be_f32_row(bytes: &[u8], offset: usize, pixels: usize) -> Option<Vec<f32>> {
    let raw = bytes.get(offset..offset.checked_add(pixels.checked_mul(4)?)?)?;
    let mut row = vec![0u32; pixels];
    for (v, b) in row.iter_mut().zip(raw.chunks_exact(4)) {
        *v = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    }
    // A plain loop over u32 that the compiler turns into vector byte shuffles.
    Some(
        row.into_iter()
            .map(|v| f32::from_bits(u32::from_be(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
