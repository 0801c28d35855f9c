//! What the CNN sees of a spectrum. The pool holds spectra min–max scaled to [-1, 1]
//! (the original's format), where a cosmic ray or a steep continuum squeezes a weak
//! emission line into a few thousandths of the range. [`Features::Lines`] shows the CNN the
//! spectrum's lines instead: the flux less a running median (the pseudo-continuum), in units
//! of the spectrum's own robust noise, compressed beyond a few units (asinh). Both are
//! invariant to the pool's per-spectrum scaling, so the same transform serves training,
//! prediction and a catalogue.

use serde::{Deserialize, Serialize};

/// The CNN's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Features {
    /// The pool's scaled flux, as the original.
    #[default]
    Scaled,
    /// Continuum-subtracted flux in units of the spectrum's noise (see the module).
    Lines,
}

named_choices!(Features, "scaled or lines");

/// Half-width of the running median, in points: wide against a line, narrow against the
/// continuum's bends (at a survey grid's 3 Å a point, 16 points either side is ±48 Å).
pub const HALF_WINDOW: usize = 16;
/// Medians are taken every this many points and interpolated between.
const STRIDE: usize = 4;
/// Contrasts are compressed as asinh(z / SOFT): linear within a few noise units, logarithmic
/// beyond, so a cosmic ray no longer sets the input's scale and a strong double peak keeps
/// its central dip (a hard clip would flatten it into a single plateau).
pub const SOFT: f64 = 3.0;

fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f64::total_cmp).1
}

impl Features {
    /// `row` as the CNN sees it, in place.
    pub fn apply(self, row: &mut [f64]) {
        if self == Features::Lines {
            lines(row)
        }
    }
}

/// See [`Features::Lines`].
pub fn lines(row: &mut [f64]) {
    let n = row.len();
    if n < 2 {
        return;
    }
    let mut buf = Vec::with_capacity(2 * HALF_WINDOW + 1);
    // The running median at every STRIDE-th point (and the last), interpolated between.
    let knots: Vec<usize> = (0..n)
        .step_by(STRIDE)
        .chain(std::iter::once(n - 1))
        .collect();
    let at: Vec<f64> = knots
        .iter()
        .map(|&k| {
            buf.clear();
            buf.extend_from_slice(
                &row[k.saturating_sub(HALF_WINDOW)..(k + HALF_WINDOW + 1).min(n)],
            );
            median(&mut buf)
        })
        .collect();
    let mut residual = vec![0.0; n];
    for (w, pair) in knots.windows(2).zip(at.windows(2)) {
        let (a, b) = (w[0], w[1]);
        for (i, r) in residual.iter_mut().enumerate().take(b + 1).skip(a) {
            let t = if b > a {
                (i - a) as f64 / (b - a) as f64
            } else {
                0.0
            };
            *r = row[i] - (pair[0] + t * (pair[1] - pair[0]));
        }
    }
    // Robust noise: 1.4826 × the median absolute residual.
    let mut abs: Vec<f64> = residual.iter().map(|r| r.abs()).collect();
    let sigma = (1.4826 * median(&mut abs)).max(1e-9);
    for (v, r) in row.iter_mut().zip(&residual) {
        *v = (r / sigma / SOFT).asinh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_invariant_to_the_pools_scaling_and_flatten_the_continuum() {
        let n = 600;
        let base: Vec<f64> = (0..n)
            .map(|i| {
                let x = i as f64;
                0.5 + x / 300.0 + 0.01 * ((x * 1.7).sin()) + (-(x - 300.0).powi(2) / 8.0).exp()
            })
            .collect();
        let mut a = base.clone();
        let mut b: Vec<f64> = base.iter().map(|v| 3.0 * v - 7.0).collect();
        lines(&mut a);
        lines(&mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
        // The line stands out; the sloping continuum is gone.
        assert!(a[300] > 10.0 * a[100].abs().max(a[500].abs()), "{a:?}");
        // A double peak keeps its dip however strong it is.
        let mut strong: Vec<f64> = (0..600)
            .map(|i| {
                let x = i as f64;
                let g = |c: f64| 1e4 * (-(x - c).powi(2) / 4.0).exp();
                1.0 + 0.01 * (x * 1.3).sin() + g(297.0) + g(303.0)
            })
            .collect();
        lines(&mut strong);
        assert!(strong[300] < strong[297] - 0.1 && strong[300] < strong[303] - 0.1);
    }
}
