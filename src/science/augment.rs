//! Light augmentation that respects the physics, for a small labelled set: each labelled
//! spectrum is also seen at a slightly different radial velocity (its grid shifted by the
//! Doppler factor, so a line moves by λ·v/c, not by a fixed number of pixels) and with noise
//! added at its own S/N, then min-max scaled again as preprocessing leaves a spectrum. The
//! label is kept: neither a few tens of km/s nor the spectrum's own noise level changes what
//! an H-alpha profile is.

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::preprocess::resample::minmax_scale;

/// The speed of light, km/s.
const C_KMS: f64 = 299_792.458;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Augmented copies of each labelled spectrum.
    #[serde(default = "default_copies")]
    pub copies: usize,
    /// Radial velocities drawn uniformly in ±`max_kms`.
    #[serde(default = "default_max_kms")]
    pub max_kms: f64,
    /// Add Gaussian noise at the spectrum's own noise level (so its S/N drops by √2).
    #[serde(default = "default_noise")]
    pub noise: bool,
}

fn default_copies() -> usize {
    1
}
fn default_max_kms() -> f64 {
    30.0
}
fn default_noise() -> bool {
    true
}

impl Default for Augment {
    fn default() -> Augment {
        Augment {
            copies: default_copies(),
            max_kms: default_max_kms(),
            noise: default_noise(),
        }
    }
}

/// `row` on `grid` as seen at radial velocity `v_kms`: f′(λ) = f(λ / (1 + v/c)), linearly
/// interpolated, the end values held beyond the grid.
pub fn shift(row: &[f64], grid: &[f64], v_kms: f64) -> Vec<f64> {
    let factor = 1.0 + v_kms / C_KMS;
    grid.iter()
        .map(|&w| {
            let src = w / factor;
            let j = grid.partition_point(|&g| g <= src);
            if j == 0 {
                row[0]
            } else if j >= grid.len() {
                row[grid.len() - 1]
            } else {
                let (a, b) = (grid[j - 1], grid[j]);
                let t = (src - a) / (b - a);
                row[j - 1] + t * (row[j] - row[j - 1])
            }
        })
        .collect()
}

/// The noise level of a spectrum from its own pixels: the median absolute deviation of the
/// differences of neighbouring pixels (which removes the smooth continuum), scaled to a
/// Gaussian σ (difference of two draws: σ√2; MAD = 0.6745 σ).
pub fn noise_sigma(row: &[f64]) -> f64 {
    let mut d: Vec<f64> = row.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    if d.is_empty() {
        return 0.0;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    *m / (0.6745 * std::f64::consts::SQRT_2)
}

/// `copies` augmented copies of every row (the rows themselves are not included), with
/// their labels and the velocities they were shifted by; deterministic for `seed`.
pub fn augment(
    rows: &[Vec<f64>],
    labels: &[usize],
    grid: &[f64],
    opts: &Augment,
    seed: u64,
) -> (Vec<Vec<f64>>, Vec<usize>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut out, mut out_labels, mut velocities) = (Vec::new(), Vec::new(), Vec::new());
    if grid.len() < 2 || opts.copies == 0 {
        return (out, out_labels, velocities);
    }
    for _ in 0..opts.copies {
        for (row, &label) in rows.iter().zip(labels) {
            let v = if opts.max_kms > 0.0 {
                rng.random_range(-opts.max_kms..=opts.max_kms)
            } else {
                0.0
            };
            let mut s = shift(row, grid, v);
            if opts.noise {
                let sigma = noise_sigma(row);
                for x in &mut s {
                    *x += sigma * rng.sample::<f64, _>(StandardNormal);
                }
            }
            minmax_scale(&mut s);
            out.push(s);
            out_labels.push(label);
            velocities.push(v);
        }
    }
    (out, out_labels, velocities)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::science::preprocess::resample::linspace;

    fn line(grid: &[f64], centre: f64) -> Vec<f64> {
        grid.iter()
            .map(|&w| (-0.5 * ((w - centre) / 2.0).powi(2)).exp())
            .collect()
    }

    /// The centre of a single emission line: the flux-weighted mean wavelength above half
    /// the peak.
    fn centre(row: &[f64], grid: &[f64]) -> f64 {
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let min = row.iter().cloned().fold(f64::MAX, f64::min);
        let half = min + (max - min) / 2.0;
        let (mut s, mut w) = (0.0, 0.0);
        for (&f, &g) in row.iter().zip(grid) {
            if f > half {
                s += (f - half) * g;
                w += f - half;
            }
        }
        s / w
    }

    #[test]
    fn a_shift_moves_a_line_by_its_doppler_offset() {
        let grid = linspace(6519.0, 6732.0, 2000);
        let row = line(&grid, 6562.8);
        let moved = shift(&row, &grid, 100.0);
        let expected = 6562.8 * 100.0 / C_KMS;
        let got = centre(&moved, &grid) - centre(&row, &grid);
        assert!(
            (got - expected).abs() < 0.02,
            "{got} Å, expected {expected}"
        );
        assert_eq!(shift(&row, &grid, 0.0), row);
    }

    #[test]
    fn the_noise_level_is_read_from_the_spectrum() {
        let mut rng = StdRng::seed_from_u64(1);
        let grid = linspace(6519.0, 6732.0, 4000);
        let row: Vec<f64> = line(&grid, 6600.0)
            .iter()
            .map(|v| v + 0.05 * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let sigma = noise_sigma(&row);
        assert!((sigma - 0.05).abs() < 0.005, "{sigma}");
    }

    #[test]
    fn augmentation_keeps_labels_and_velocities_in_bounds() {
        let grid = linspace(6519.0, 6732.0, 600);
        let rows: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let mut r = line(&grid, 6540.0 + i as f64 * 5.0);
                minmax_scale(&mut r);
                r
            })
            .collect();
        let labels: Vec<usize> = (0..20).map(|i| i % 3).collect();
        let opts = Augment {
            copies: 3,
            max_kms: 40.0,
            noise: false,
        };
        let (out, out_labels, v) = augment(&rows, &labels, &grid, &opts, 7);
        assert_eq!(out.len(), 60);
        assert_eq!(
            out_labels,
            [labels.clone(), labels.clone(), labels].concat()
        );
        assert!(v.iter().all(|v| v.abs() <= 40.0), "{v:?}");
        assert!(v.iter().any(|v| v.abs() > 20.0), "the draws span the range");
        // Each copy's line sits where its velocity puts it (within a quarter of a pixel; the
        // largest shifts are 2.5 pixels).
        let step = grid[1] - grid[0];
        for (k, copy) in out.iter().enumerate() {
            let original = &rows[k % 20];
            let moved = centre(copy, &grid) - centre(original, &grid);
            let expected = centre(original, &grid) * v[k] / C_KMS;
            assert!(
                (moved - expected).abs() < 0.25 * step,
                "copy {k}: {moved} vs {expected}"
            );
            let (lo, hi) = copy
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            assert!(
                (lo + 1.0).abs() < 1e-9 && (hi - 1.0).abs() < 1e-9,
                "scaled as preprocessed"
            );
        }
        // Seeded: the same seed, the same copies; with noise the copies differ from the rows.
        assert_eq!(augment(&rows, &out_labels[..20], &grid, &opts, 7).0, out);
        let noisy = augment(&rows, &out_labels[..20], &grid, &Augment::default(), 7).0;
        assert!(noisy.iter().zip(&rows).all(|(a, b)| a != b));
    }
}
