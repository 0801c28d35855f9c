//! One spectrum onto the grid: numpy.interp and scikit-learn minmax_scale semantics.

use crate::science::fits;

/// `numpy.linspace(start, end, count)`: `i * step + start`, the last point exactly `end`.
pub fn linspace(start: f64, end: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![start];
    }
    let step = (end - start) / (count - 1) as f64;
    let mut grid: Vec<f64> = (0..count).map(|i| i as f64 * step + start).collect();
    if let Some(last) = grid.last_mut() {
        *last = end;
    }
    grid
}

/// `numpy.interp(grid, xp, fp)` for a sorted `grid` and strictly increasing `xp`: linear
/// between samples, the end values outside them, written into `out`.
pub fn interp(grid: &[f64], xp: &[f32], fp: &[f32], out: &mut [f64]) {
    let n = xp.len();
    let (left, right) = (fp[0] as f64, fp[n - 1] as f64);
    let mut j = 0;
    for (x, y) in grid.iter().zip(out.iter_mut()) {
        let x = *x;
        if x < xp[0] as f64 {
            *y = left;
            continue;
        }
        if x > xp[n - 1] as f64 {
            *y = right;
            continue;
        }
        while j + 1 < n && xp[j + 1] as f64 <= x {
            j += 1;
        }
        if j == n - 1 || xp[j] as f64 == x {
            *y = fp[j] as f64;
            continue;
        }
        let (x0, x1, y0, y1) = (
            xp[j] as f64,
            xp[j + 1] as f64,
            fp[j] as f64,
            fp[j + 1] as f64,
        );
        let slope = (y1 - y0) / (x1 - x0);
        *y = slope * (x - x0) + y0;
        if y.is_nan() {
            *y = slope * (x - x1) + y1;
            if y.is_nan() && y0 == y1 {
                *y = y0;
            }
        }
    }
}

/// scikit-learn's `minmax_scale(row, feature_range=(-1, 1))`: a range below 10 ε counts as
/// constant (scale by 1), so a constant spectrum becomes all -1.
pub fn minmax_scale(row: &mut [f64]) {
    let (min, max) = row
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = max - min;
    let range = if range < 10.0 * f64::EPSILON {
        1.0
    } else {
        range
    };
    let scale = 2.0 / range;
    let offset = -1.0 - min * scale;
    for v in row.iter_mut() {
        *v = *v * scale + offset;
    }
}

/// One spectrum resampled and scaled; `dropped` non-finite flux pixels were left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub filename: String,
    pub flux: Vec<f64>,
    pub dropped: usize,
    /// The header keys, when the file was read with them.
    pub metadata: Option<fits::Metadata>,
}

/// Drops non-finite flux pixels (with their wavelengths), interpolates onto `grid`, scales.
pub fn resample(spectrum: fits::Spectrum, grid: &[f64]) -> Row {
    let mut flux = vec![0.0; grid.len()];
    let finite = spectrum.flux.iter().filter(|v| v.is_finite()).count();
    let dropped = spectrum.flux.len() - finite;
    if dropped == 0 {
        interp(grid, &spectrum.wave, &spectrum.flux, &mut flux);
    } else {
        let (wave, kept): (Vec<f32>, Vec<f32>) = spectrum
            .wave
            .iter()
            .zip(&spectrum.flux)
            .filter(|(_, f)| f.is_finite())
            .map(|(w, f)| (*w, *f))
            .unzip();
        interp(grid, &wave, &kept, &mut flux);
    }
    minmax_scale(&mut flux);
    Row {
        filename: spectrum.filename,
        flux,
        dropped,
        metadata: spectrum.metadata,
    }
}
