//! A synthetic LAMOST DR2-format survey with three H-alpha classes, for `mljm demo` and the
//! tests: black-body continua with Balmer and Ca absorption, an H-alpha absorption ("other"),
//! emission ("single peak") or double-peaked emission ("double peak"), and Gaussian noise at a
//! random S/N. The model is that of the reference `gen_lamost.py`; each spectrum has its own
//! seeded generator, so the survey is the same for a seed whatever the thread count.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::{
    Cancel, Progress,
    fits::{Header, write_spectrum},
    h5::SpectraWriter,
    preprocess::resample::{linspace, minmax_scale},
};

pub const CLASSES: [&str; 3] = ["other", "single peak", "double peak"];
const HALPHA: f64 = 6562.8;
pub const PIXELS: usize = 3909;
/// The speed of light, km/s.
const C_KMS: f64 = 299_792.458;

/// How rare the emission classes are, and how hard the survey is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rarity {
    /// The easy test bed: 18 % single-peak and 12 % double-peak H-alpha, at rest, S/N 5–100.
    #[default]
    Easy,
    /// A survey's rarity: 3 % single-peak and 2 % double-peak, weaker lines, radial
    /// velocities of ±150 km/s, S/N 3–60, cosmic rays, telluric bands, and nebular [N II] and
    /// [S II] lines over a fifth of the spectra (which are not H-alpha emission stars).
    Survey,
}

impl Rarity {
    /// The classes' shares, in the order of [`CLASSES`].
    pub fn shares(self) -> [f64; 3] {
        match self {
            Rarity::Easy => [0.7, 0.18, 0.12],
            Rarity::Survey => [0.95, 0.03, 0.02],
        }
    }
}

named_choices!(Rarity, "easy or survey");

/// The survey's nuisances for one spectrum (only at [`Rarity::Survey`]).
struct Nuisance {
    /// Doppler factor 1 + v/c applied to every stellar line.
    doppler: f64,
    /// Emission lines too narrow and too weak to classify a star: (centre, amplitude).
    nebular: Vec<(f64, f64)>,
    /// Telluric absorption bands: (start, end, depth).
    telluric: Vec<(f64, f64, f64)>,
    /// Cosmic-ray hits: (pixel, amplitude in units of the local flux).
    cosmics: Vec<(usize, f64)>,
    /// Emission amplitude factor (survey stars' lines are weaker on average).
    line_scale: f64,
    snr: Option<f64>,
}

impl Nuisance {
    fn none() -> Nuisance {
        Nuisance {
            doppler: 1.0,
            nebular: Vec::new(),
            telluric: Vec::new(),
            cosmics: Vec::new(),
            line_scale: 1.0,
            snr: None,
        }
    }

    /// Drawn from its own generator, so that an easy survey's spectra stay what they were.
    fn draw(seed: u64, i: usize, rarity: Rarity, pixels: usize) -> Nuisance {
        if rarity == Rarity::Easy {
            return Nuisance::none();
        }
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ i as u64);
        let v = rng.random_range(-150.0..150.0);
        let nebular = if rng.random::<f64>() < 0.2 {
            let amp = rng.random_range(0.1..1.0);
            // [N II] 6548/6583 (3:1) and [S II] 6716/6731.
            vec![
                (6548.0, amp / 3.0),
                (6583.4, amp),
                (6716.4, amp * rng.random_range(0.2..0.6)),
                (6730.8, amp * rng.random_range(0.2..0.6)),
            ]
        } else {
            Vec::new()
        };
        let mut telluric = Vec::new();
        for (start, end, max) in [
            (6867.0, 6884.0, 0.5),
            (7160.0, 7340.0, 0.15),
            (7594.0, 7621.0, 0.7),
            (8130.0, 8350.0, 0.2),
        ] {
            telluric.push((start, end, max * rng.random::<f64>()));
        }
        let hits = rng.random_range(0..4);
        let cosmics = (0..hits)
            .map(|_| (rng.random_range(0..pixels), rng.random_range(1.0..15.0)))
            .collect();
        // Log-uniform S/N: most survey spectra are faint.
        let snr = (rng.random_range(3f64.ln()..60f64.ln())).exp();
        Nuisance {
            doppler: 1.0 + v / C_KMS,
            nebular,
            telluric,
            cosmics,
            line_scale: rng.random_range(0.3..1.0),
            snr: Some(snr),
        }
    }
}

/// One synthetic spectrum: where it goes under the spectra root, its header and data rows.
pub struct Synthetic {
    pub relative_path: PathBuf,
    pub filename: String,
    pub class: usize,
    pub header: Header,
    pub rows: Vec<Vec<f32>>,
}

fn gauss(w: f64, centre: f64, width: f64) -> f64 {
    (-0.5 * ((w - centre) / width).powi(2)).exp()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// The class a uniform draw `u` in [0, 1) falls in, by the classes' `shares`.
fn class_of(u: f64, shares: [f64; 3]) -> usize {
    if u < shares[0] {
        0
    } else if u < shares[0] + shares[1] {
        1
    } else {
        2
    }
}

/// The `i`-th spectrum of the (easy) survey made with `seed`.
pub fn synthetic(seed: u64, i: usize) -> Synthetic {
    synthetic_at(seed, i, Rarity::Easy)
}

/// The `i`-th spectrum of the survey made with `seed` at `rarity`.
pub fn synthetic_at(seed: u64, i: usize, rarity: Rarity) -> Synthetic {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64);
    let class = class_of(rng.random(), rarity.shares());
    let nuisance = Nuisance::draw(seed, i, rarity, PIXELS);
    let (z, halpha) = (nuisance.doppler, HALPHA * nuisance.doppler);
    let wave: Vec<f64> = (0..PIXELS)
        .map(|p| 10f64.powf(3.5682 + 1e-4 * p as f64))
        .collect();
    let temp = rng.random_range(3500.0..12000.0);
    let mut cont: Vec<f64> = wave
        .iter()
        .map(|&w| (w / 5500.0).powi(-3) / ((1.4388e8 / (w * temp)).exp() - 1.0))
        .collect();
    let norm = rng.random_range(50.0..2000.0) / median(&cont);
    cont.iter_mut().for_each(|c| *c *= norm);
    let mut flux = cont.clone();
    for (line, depth) in [(4861.3, 0.3), (4340.5, 0.25), (3933.7, 0.2), (5892.9, 0.15)] {
        let (d, width) = (
            depth * rng.random_range(0.2..1.0),
            rng.random_range(2.0..8.0),
        );
        flux.iter_mut()
            .zip(&wave)
            .for_each(|(f, &w)| *f *= 1.0 - d * gauss(w, line * z, width));
    }
    let near: Vec<f64> = wave
        .iter()
        .zip(&cont)
        .filter(|(w, _)| **w > 6500.0 && **w < 6620.0)
        .map(|(_, c)| *c)
        .collect();
    let peak = median(&near);
    let scale = nuisance.line_scale;
    match class {
        0 => {
            let (d, width) = (0.4 * rng.random::<f64>(), rng.random_range(3.0..10.0));
            flux.iter_mut()
                .zip(&wave)
                .for_each(|(f, &w)| *f *= 1.0 - d * gauss(w, halpha, width));
        }
        1 => {
            let (amp, width) = (
                peak * rng.random_range(0.5..4.0) * scale,
                rng.random_range(2.0..6.0),
            );
            flux.iter_mut()
                .zip(&wave)
                .for_each(|(f, &w)| *f += amp * gauss(w, halpha, width));
        }
        _ => {
            let (sep, width, amp) = (
                rng.random_range(4.0..12.0),
                rng.random_range(2.0..4.0),
                peak * rng.random_range(0.5..3.0) * scale,
            );
            let ratio = rng.random_range(0.6..1.2);
            flux.iter_mut().zip(&wave).for_each(|(f, &w)| {
                *f += amp * gauss(w, halpha - sep / 2.0, width)
                    + amp * ratio * gauss(w, halpha + sep / 2.0, width);
            });
        }
    }
    // Nebular lines (at the nebula's own velocity, near rest), tellurics (in the observer's
    // frame), then the noise, then cosmic rays on top of it all.
    for &(centre, amp) in &nuisance.nebular {
        flux.iter_mut()
            .zip(&wave)
            .for_each(|(f, &w)| *f += amp * peak * gauss(w, centre, 1.2));
    }
    for &(start, end, depth) in &nuisance.telluric {
        flux.iter_mut()
            .zip(&wave)
            .filter(|(_, w)| (start..end).contains(*w))
            .for_each(|(f, &w)| {
                // A band's depth is deepest at its head (its start) and fades redwards.
                *f *= 1.0 - depth * (1.0 - (w - start) / (end - start)).sqrt();
            });
    }
    let snr = rng.random_range(5.0..100.0);
    let snr = nuisance.snr.unwrap_or(snr);
    let mut ivar = vec![0f32; PIXELS];
    for (f, iv) in flux.iter_mut().zip(ivar.iter_mut()) {
        let sigma = f.abs() / snr + 1e-3;
        let noise: f64 = rng.sample(StandardNormal);
        *f += noise * sigma;
        *iv = (1.0 / (sigma * sigma)) as f32;
    }
    for &(p, amp) in &nuisance.cosmics {
        flux[p] += amp * flux[p].abs().max(peak);
    }

    let lmjd = 56000 + rng.random_range(0..900i64);
    let plan = format!("F{}", 5000 + i / 250);
    let (spid, fiber) = (1 + (i / 250) % 16, 1 + i % 250);
    let filename = format!("spec-{lmjd}-{plan}_sp{spid:02}-{fiber:03}.fits");
    let mut header = Header {
        filename: Some(filename.clone()),
        ..Default::default()
    };
    header.integers.extend([
        ("OBSID", 100_000 + i as i64),
        ("LMJD", lmjd),
        ("SPID", spid as i64),
        ("FIBERID", fiber as i64),
    ]);
    let desig = format!(
        "LAMOST J{:06.3}+{:05.2}",
        rng.random_range(0.0..24.0),
        rng.random_range(0.0..60.0)
    );
    let date = format!("2013-10-{:02}T{:02}:{:02}:00", 1 + i % 28, i % 24, i % 60);
    let subclass = ["G5", "A0", "K3", "F0", "M0"][i % 5].to_string();
    header.strings.extend([
        ("DESIG", desig),
        ("DATE-OBS", date),
        ("PLANID", plan.clone()),
        ("CLASS", "STAR".to_string()),
        ("SUBCLASS", subclass),
        ("MAGTYPE", "ugrizjh".to_string()),
    ]);
    header.numbers.extend([
        ("RA", rng.random_range(0.0..360.0)),
        ("DEC", rng.random_range(-10.0..60.0)),
    ]);
    for key in ["MAG1", "MAG2", "MAG3", "MAG4", "MAG5", "MAG6", "MAG7"] {
        header.numbers.push((key, rng.random_range(12.0..18.0)));
    }
    for (key, f) in [
        ("SN_U", 0.3),
        ("SN_G", 0.7),
        ("SN_R", 1.0),
        ("SN_I", 1.1),
        ("SN_Z", 0.8),
    ] {
        header.numbers.push((key, snr * f));
    }
    let z: f64 = rng.sample::<f64, _>(StandardNormal) * 1e-4;
    let z_err: f64 = (rng.sample::<f64, _>(StandardNormal) * 1e-5).abs();
    header.numbers.extend([("Z", z), ("Z_ERR", z_err)]);

    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let rows = vec![
        to32(&flux),
        ivar,
        to32(&wave),
        vec![0.0; PIXELS],
        vec![0.0; PIXELS],
    ];
    Synthetic {
        relative_path: PathBuf::from(&plan).join(&filename),
        filename,
        class,
        header,
        rows,
    }
}

/// Writes `n` spectra under `spectra_root` and returns (filename, class label) in index order.
pub fn write_survey(
    spectra_root: &Path,
    n: usize,
    seed: u64,
    cancel: &Cancel,
    progress: &Progress,
) -> anyhow::Result<Vec<(String, &'static str)>> {
    write_survey_at(spectra_root, n, seed, Rarity::Easy, cancel, progress)
}

/// [`write_survey`] at `rarity`.
pub fn write_survey_at(
    spectra_root: &Path,
    n: usize,
    seed: u64,
    rarity: Rarity,
    cancel: &Cancel,
    progress: &Progress,
) -> anyhow::Result<Vec<(String, &'static str)>> {
    progress.start_step("writing spectra", n as u64);
    (0..n)
        .into_par_iter()
        .map(|i| {
            anyhow::ensure!(!cancel.is_cancelled(), "cancelled");
            let s = synthetic_at(seed, i, rarity);
            let path = spectra_root.join(&s.relative_path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_spectrum(&path, &s.header, &s.rows)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            progress.advance(1);
            Ok((s.filename, CLASSES[s.class]))
        })
        .collect()
}

/// The H-alpha window of Škoda et al. (2020), which a survey-sized demo pool covers.
pub const POOL_WAVE: (f64, f64) = (6519.0, 6732.0);

/// The `i`-th spectrum of a demo pool made with `seed`, straight onto `grid` and min-max
/// scaled as preprocessing leaves it: the survey's H-alpha classes, continuum slope and noise,
/// without the FITS round trip (a few microseconds a spectrum). Returns its name and class.
pub fn pool_row(seed: u64, i: usize, grid: &[f64], out: &mut [f64]) -> (String, usize) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ i as u64);
    let class = class_of(rng.random(), Rarity::Easy.shares());
    let slope = rng.random_range(-0.3..0.3) / 200.0;
    let (d, width) = (0.4 * rng.random::<f64>(), rng.random_range(3.0..10.0));
    let (amp, sep, ratio) = (
        rng.random_range(0.5..4.0),
        rng.random_range(4.0..12.0),
        rng.random_range(0.6..1.2),
    );
    let narrow = rng.random_range(2.0..6.0);
    let snr = rng.random_range(5.0..100.0);
    for (f, &w) in out.iter_mut().zip(grid) {
        let cont = 1.0 + slope * (w - HALPHA);
        let line = match class {
            0 => -d * gauss(w, HALPHA, width),
            1 => amp * gauss(w, HALPHA, narrow),
            _ => {
                0.75 * amp
                    * (gauss(w, HALPHA - sep / 2.0, narrow / 1.5)
                        + ratio * gauss(w, HALPHA + sep / 2.0, narrow / 1.5))
            }
        };
        let clean = cont * (1.0 + line);
        let noise: f64 = rng.sample(StandardNormal);
        *f = clean + noise * clean.abs() / snr;
    }
    minmax_scale(out);
    let lmjd = 56000 + (i as u64 ^ seed) % 900;
    let plan = format!("F{}", 5000 + i / 250);
    let (spid, fiber) = (1 + (i / 250) % 16, 1 + i % 250);
    (
        format!("spec-{lmjd}-{plan}_sp{spid:02}-{fiber:03}.fits"),
        class,
    )
}

/// Writes a demo pool of `n` spectra at `points` points over [`POOL_WAVE`] to `path` (the
/// layout of a preprocessing `result.h5`), in flat memory; calls `label` with each name and
/// class, in order.
pub fn write_pool(
    path: &Path,
    n: usize,
    points: usize,
    seed: u64,
    cancel: &Cancel,
    progress: &Progress,
    mut label: impl FnMut(&str, &'static str) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let grid = linspace(POOL_WAVE.0, POOL_WAVE.1, points);
    let mut writer = SpectraWriter::create(path, &grid)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    progress.start_step("writing the pool", n as u64);
    let block = 65_536;
    for start in (0..n).step_by(block) {
        anyhow::ensure!(!cancel.is_cancelled(), "cancelled");
        let end = (start + block).min(n);
        let mut fluxes = vec![0.0; (end - start) * points];
        let names: Vec<(String, usize)> = fluxes
            .par_chunks_mut(points.max(1))
            .enumerate()
            .map(|(k, row)| pool_row(seed, start + k, &grid, row))
            .collect();
        for (k, (name, class)) in names.iter().enumerate() {
            writer
                .push(name, &fluxes[k * points..(k + 1) * points])
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            label(name, CLASSES[*class])?;
        }
        progress.advance((end - start) as u64);
    }
    writer
        .finish()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::science::fits::{Read, read_spectrum};

    #[test]
    fn a_demo_pool_reads_back_scaled_with_unique_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pool.h5");
        let mut classes = Vec::new();
        write_pool(
            &p,
            1000,
            140,
            3,
            &Cancel::new(),
            &Progress::new(),
            |_, c| {
                classes.push(c);
                Ok(())
            },
        )
        .unwrap();
        let set = crate::science::h5::read_spectra(&p).unwrap();
        assert_eq!(set.fluxes.dim(), (1000, 140));
        assert_eq!((set.wave[0], set.wave[139]), POOL_WAVE);
        let unique: std::collections::HashSet<_> = set.filenames.iter().collect();
        assert_eq!(unique.len(), 1000);
        let row = set.row(17);
        let (lo, hi) = row
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(
            (lo + 1.0).abs() < 1e-12 && (hi - 1.0).abs() < 1e-12,
            "{lo} … {hi}"
        );
        let emission = classes.iter().filter(|c| **c != "other").count();
        assert!(
            (200..400).contains(&emission),
            "{emission} of 1000 with emission"
        );
        let mut again = vec![0.0; 140];
        let grid = linspace(POOL_WAVE.0, POOL_WAVE.1, 140);
        assert_eq!(pool_row(3, 17, &grid, &mut again).0, set.filenames[17]);
        assert_eq!(again, row);
    }

    #[test]
    fn a_seed_makes_the_same_survey_and_every_spectrum_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let labels = write_survey(dir.path(), 30, 7, &Cancel::new(), &Progress::new()).unwrap();
        assert_eq!(labels.len(), 30);
        assert_eq!(synthetic(7, 3).rows, synthetic(7, 3).rows);
        assert_ne!(synthetic(7, 3).rows[0], synthetic(8, 3).rows[0]);
        let s = synthetic(7, 3);
        let read = read_spectrum(&dir.path().join(&s.relative_path), Read::WithMetadata).unwrap();
        assert_eq!(read.filename, s.filename);
        assert_eq!(read.flux, s.rows[0]);
        assert_eq!(read.metadata.unwrap().class.as_deref(), Some("STAR"));
    }
}
