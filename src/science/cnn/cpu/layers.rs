//! The layers' forward and backward passes: convolution (k = 3, valid) with bias and ReLU,
//! max-pool 2, dense with bias and ReLU, dropout, softmax.

use rand::rngs::StdRng;
use rayon::prelude::*;

use super::matmul::{Mat, column_sums, matmul, matmul_strided};
use crate::science::cnn::{DENSE, fill_dropout_mask};

/// One convolution: `c_in → c_out`, input rows `l_in` valid of `stride` per spectrum.
#[derive(Clone, Copy, Debug)]
pub(super) struct Conv {
    pub(super) c_in: usize,
    pub(super) c_out: usize,
    pub(super) stride: usize,
    pub(super) l_in: usize,
    /// Max-pool 2 after it.
    pub(super) pool: bool,
}

impl Conv {
    pub(super) fn l_out(&self) -> usize {
        self.l_in - 2
    }

    /// Length of the pooled output.
    pub(super) fn half(&self) -> usize {
        self.l_out() / 2
    }
}

/// `out = relu(x · w + b)` for a dense layer of `n` rows.
pub(super) fn dense_forward(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], n: usize, k: usize) {
    matmul(out, n, k, DENSE, Mat::new(x, k, 1), Mat::new(w, DENSE, 1));
    for row in out[..n * DENSE].chunks_exact_mut(DENSE) {
        row.iter_mut()
            .zip(b)
            .for_each(|(v, b)| *v = (*v + b).max(0.0));
    }
}

/// Backward of a dense layer `z = x · w + b` with `x` (n × k_in): the weight and bias
/// gradients from `dz` (n × k_out), and the input gradient into `dx`.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_backward(
    x: &[f32],
    dz: &[f32],
    w: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    dx: &mut [f32],
    n: usize,
    k_in: usize,
    k_out: usize,
) {
    // As gWᵀ = dzᵀ · x into gW's column-major view: for the flat layer, split by its long
    // side, about 25% faster than gW = xᵀ · dz.
    matmul_strided(
        gw,
        (1, k_out),
        k_out,
        n,
        k_in,
        Mat::new(dz, 1, k_out),
        Mat::new(x, k_in, 1),
    );
    column_sums(dz, k_out, gb);
    matmul(
        dx,
        n,
        k_out,
        k_in,
        Mat::new(dz, k_out, 1),
        Mat::new(w, 1, k_out),
    );
}

/// Inverted dropout when training (mask drawn from `rng` as candle's path draws it), else the
/// activation itself.
pub(super) fn dropout<'a>(
    h: &'a [f32],
    mask: &mut [f32],
    out: &'a mut [f32],
    n: usize,
    rng: Option<&mut StdRng>,
) -> &'a [f32] {
    let len = n * DENSE;
    match rng {
        None => &h[..len],
        Some(rng) => {
            fill_dropout_mask(&mut mask[..len], rng);
            for ((o, h), m) in out[..len].iter_mut().zip(h).zip(&*mask) {
                *o = h * m;
            }
            &out[..len]
        }
    }
}

/// Dense backward through dropout and ReLU: `g ← g · mask · (h > 0)`.
pub(super) fn dense_mask(g: &mut [f32], h: &[f32], mask: &[f32]) {
    for ((g, h), m) in g.iter_mut().zip(h).zip(mask) {
        *g = if *h > 0.0 { *g * m } else { 0.0 };
    }
}

/// Conv backward through ReLU: `g ← g · (h > 0)`.
pub(super) fn relu_mask(g: &mut [f32], h: &[f32]) {
    g.par_chunks_mut(1 << 16)
        .zip(h.par_chunks(1 << 16))
        .for_each(|(g, h)| {
            for (g, h) in g.iter_mut().zip(h) {
                *g = if *h > 0.0 { *g } else { 0.0 };
            }
        });
}

pub(super) fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// `out = relu(conv(x) + b)` for `n` spectra; rows past the valid length are set to zero.
pub(super) fn conv_forward(c: &Conv, w: &[f32], b: &[f32], x: &[f32], out: &mut [f32], n: usize) {
    let rows = n * c.stride;
    matmul(
        out,
        rows - 2,
        3 * c.c_in,
        c.c_out,
        Mat::new(x, c.c_in, 1),
        Mat::new(w, c.c_out, 1),
    );
    let l_out = c.l_out();
    out[..rows * c.c_out]
        .par_chunks_mut(c.stride * c.c_out)
        .for_each(|spectrum| {
            for (t, row) in spectrum.chunks_exact_mut(c.c_out).enumerate() {
                if t < l_out {
                    row.iter_mut()
                        .zip(b)
                        .for_each(|(v, b)| *v = (*v + b).max(0.0));
                } else {
                    row.fill(0.0);
                }
            }
        });
}

/// Max-pool 2 of conv `c`'s output into the compact `(n, half, C)` layout.
pub(super) fn pool_forward(c: &Conv, h: &[f32], out: &mut [f32], n: usize) {
    let (half, ch) = (c.half(), c.c_out);
    out[..n * half * ch]
        .par_chunks_mut(half * ch)
        .zip(h.par_chunks(c.stride * ch))
        .for_each(|(out, h)| {
            for (t, o) in out.chunks_exact_mut(ch).enumerate() {
                let (a, b) = (&h[2 * t * ch..][..ch], &h[(2 * t + 1) * ch..][..ch]);
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = a.max(*b);
                }
            }
        });
}

/// Max-pool and ReLU backward in one pass: the pooled gradient goes to the larger of each
/// pair (the first on a tie) where it is positive; every other row of `dz` becomes zero.
pub(super) fn pool_backward(c: &Conv, h: &[f32], gp: &[f32], dz: &mut [f32], n: usize) {
    let (half, ch) = (c.half(), c.c_out);
    dz[..n * c.stride * ch]
        .par_chunks_mut(c.stride * ch)
        .zip(h.par_chunks(c.stride * ch))
        .zip(gp.par_chunks(half * ch))
        .for_each(|((dz, h), gp)| {
            let (pairs, rest) = dz.split_at_mut(2 * half * ch);
            rest.fill(0.0);
            for ((pair, h), g) in pairs
                .chunks_exact_mut(2 * ch)
                .zip(h.chunks_exact(2 * ch))
                .zip(gp.chunks_exact(ch))
            {
                let (d0, d1) = pair.split_at_mut(ch);
                let (h0, h1) = h.split_at(ch);
                for ((((d0, d1), h0), h1), g) in d0.iter_mut().zip(d1).zip(h0).zip(h1).zip(g) {
                    let first = h0 >= h1;
                    let v = if h0.max(*h1) > 0.0 { *g } else { 0.0 };
                    *d0 = if first { v } else { 0.0 };
                    *d1 = if first { 0.0 } else { v };
                }
            }
        });
}
