//! The CNN's training step and prediction on the CPU, written out by hand: candle's autograd
//! allocates and zero-fills a tensor for every node and gradient and runs ReLU, bias and
//! pooling backward as several passes each, which cost more than the matrix products
//! themselves (../shared/notes/candle-cpu.md). Here every buffer is allocated once per
//! training run, bias + ReLU and pool + ReLU-mask are single fused passes, and each layer is
//! one to three `gemm` calls.
//!
//! Activations are channels-last `(B, S, C)` with a fixed row stride `S` per spectrum. A k=3
//! "valid" convolution needs no im2col copy: output row `r` is input rows `r..r+3`, which are
//! contiguous, so the im2col matrix is the input itself read with a row stride of `C_in`
//! (overlapping rows), across the whole batch at once. The last two rows of each spectrum
//! then hold junk that straddles two spectra; they are set to zero after the product, so they
//! add nothing to the weight gradients and serve as the zero padding of the input gradient,
//! which is the full correlation of the output gradient with the flipped kernel — again one
//! product over an overlapping view.
//!
//! [`tests`] check logits and every gradient against candle's autograd of `Cnn::forward`.

use gemm::{Parallelism, gemm};
use rand::rngs::StdRng;
use rayon::prelude::*;

use super::{
    BETA1, BETA2, CONV_CHANNELS, Cnn, DENSE, adam_factors, conv_lengths, fill_dropout_mask,
};

/// A read-only matrix operand inside a slice: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Mat { data, rs, cs }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Raw pointers handed to the threads of one product; each thread writes its own block.
#[derive(Clone, Copy)]
struct Shared(*mut f32, *const f32, *const f32);
// SAFETY: the blocks written through `.0` by different threads are disjoint (see `matmul`),
// and `.1`, `.2` are only read while the borrows they come from are alive.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// `dst (m × n, row-major) = a (m × k) · b (k × n)`, split over the rayon threads into blocks
/// of rows or of columns, whichever dimension is longer (gemm's own threading splits poorly
/// for the long-k and short-m products of backward: measured 95-230 GFLOP/s against 190-310
/// when split here).
fn matmul(dst: &mut [f32], m: usize, k: usize, n: usize, a: Mat, b: Mat) {
    matmul_strided(dst, (n, 1), m, k, n, a, b)
}

/// [`matmul`] with `dst (i, j)` at `dst[i·rs + j·cs]`.
fn matmul_strided(
    dst: &mut [f32],
    (drs, dcs): (usize, usize),
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
) {
    let dst_fits = m == 0 || n == 0 || (m - 1) * drs + (n - 1) * dcs < dst.len();
    assert!(
        dst_fits && a.fits(m, k) && b.fits(k, n),
        "matmul operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            (0..n).for_each(|j| dst[i * drs + j * dcs] = 0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let shared = Shared(dst.as_mut_ptr(), a.data.as_ptr(), b.data.as_ptr());
    let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        let s = shared;
        // SAFETY: `fits` checked every element the product reads; rows × cols is inside dst
        // (m × n), and blocks given to different threads do not overlap.
        unsafe {
            gemm(
                rows.len(),
                cols.len(),
                k,
                s.0.add(rows.start * drs + cols.start * dcs),
                dcs as isize,
                drs as isize,
                false,
                s.1.add(rows.start * a.rs),
                a.cs as isize,
                a.rs as isize,
                s.2.add(cols.start * b.cs),
                b.cs as isize,
                b.rs as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if threads == 1 || m * n * k < 1 << 20 {
        block(0..m, 0..n);
    } else if m >= n {
        let per = m.div_ceil(threads);
        (0..threads)
            .into_par_iter()
            .for_each(|t| block((t * per).min(m)..((t + 1) * per).min(m), 0..n));
    } else {
        let per = n.div_ceil(threads);
        (0..threads)
            .into_par_iter()
            .for_each(|t| block(0..m, (t * per).min(n)..((t + 1) * per).min(n)));
    }
}

/// Column sums of a (rows × n) matrix into `out`.
fn column_sums(x: &[f32], n: usize, out: &mut [f32]) {
    let rows_per = (x.len() / n)
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let sums = x
        .par_chunks(rows_per * n)
        .map(|block| {
            let mut s = vec![0.0f32; n];
            for row in block.chunks_exact(n) {
                s.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            s
        })
        .reduce(
            || vec![0.0f32; n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    out.copy_from_slice(&sums);
}

/// One convolution: `c_in → c_out`, input rows `l_in` valid of `stride` per spectrum.
#[derive(Clone, Copy, Debug)]
struct Conv {
    c_in: usize,
    c_out: usize,
    stride: usize,
    l_in: usize,
    /// Max-pool 2 after it.
    pool: bool,
}

impl Conv {
    fn l_out(&self) -> usize {
        self.l_in - 2
    }

    /// Length of the pooled output.
    fn half(&self) -> usize {
        self.l_out() / 2
    }
}

/// Zero rows in front of every gradient buffer: the input-gradient product reads two rows
/// before the first.
const PAD: usize = 2 * CONV_CHANNELS[5];

/// The network's weights as plain vectors, in the order of `Cnn::params`.
pub(super) struct CpuNet {
    points: usize,
    classes: usize,
    convs: Vec<Conv>,
    flat: usize,
    pub(super) w: Vec<Vec<f32>>,
    pub(super) b: Vec<Vec<f32>>,
}

/// Buffers for batches of up to `cap` spectra.
pub(super) struct Work {
    cap: usize,
    /// Conv inputs and outputs: x, h1, h2, p1, h3, h4, p2, h5, h6, p3 (= the flat vector).
    act: Vec<Vec<f32>>,
    h7: Vec<f32>,
    d7: Vec<f32>,
    h8: Vec<f32>,
    d8: Vec<f32>,
    mask7: Vec<f32>,
    mask8: Vec<f32>,
    logits: Vec<f32>,
    /// Training only: gradients and scratch.
    grad: Option<Grads>,
}

struct Grads {
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
    /// Two padded ping-pong buffers for conv output gradients.
    pa: Vec<f32>,
    pb: Vec<f32>,
    /// Gradient of a pooled (compact) activation.
    compact: Vec<f32>,
    dl: Vec<f32>,
    dd8: Vec<f32>,
    dd7: Vec<f32>,
    wflip: Vec<f32>,
}

/// Index in `Work::act` of conv `i`'s input and output.
const CONV_IN: [usize; 6] = [0, 1, 3, 4, 6, 7];
const CONV_OUT: [usize; 6] = [1, 2, 4, 5, 7, 8];

impl CpuNet {
    pub(super) fn from_cnn(cnn: &Cnn) -> candle_core::Result<CpuNet> {
        let lengths = conv_lengths(cnn.points);
        let mut convs = Vec::new();
        let (mut c_in, mut stride, mut l_in) = (1, cnn.points, cnn.points);
        for (i, &c_out) in CONV_CHANNELS.iter().enumerate() {
            let pool = i % 2 == 1;
            convs.push(Conv {
                c_in,
                c_out,
                stride,
                l_in,
                pool,
            });
            debug_assert_eq!(l_in - 2, lengths[i]);
            c_in = c_out;
            l_in -= 2;
            if pool {
                l_in /= 2;
                stride = l_in;
            }
        }
        let mut w = Vec::new();
        let mut b = Vec::new();
        for (_, wv, bv) in &cnn.params {
            w.push(wv.as_tensor().flatten_all()?.to_vec1::<f32>()?);
            b.push(bv.as_tensor().to_vec1::<f32>()?);
        }
        Ok(CpuNet {
            points: cnn.points,
            classes: cnn.classes,
            flat: l_in * CONV_CHANNELS[5],
            convs,
            w,
            b,
        })
    }

    /// Writes the weights back into the candle variables.
    pub(super) fn store(&self, cnn: &Cnn) -> candle_core::Result<()> {
        for ((_, wv, bv), (w, b)) in cnn.params.iter().zip(self.w.iter().zip(&self.b)) {
            wv.set(&candle_core::Tensor::from_slice(
                w,
                wv.shape(),
                wv.device(),
            )?)?;
            bv.set(&candle_core::Tensor::from_slice(
                b,
                bv.shape(),
                bv.device(),
            )?)?;
        }
        Ok(())
    }

    pub(super) fn work(&self, cap: usize, training: bool) -> Work {
        let mut act = vec![vec![0.0; cap * self.points]];
        for c in &self.convs {
            act.push(vec![0.0; cap * c.stride * c.c_out]);
            if c.pool {
                act.push(vec![0.0; cap * c.half() * c.c_out]);
            }
        }
        let padded = self
            .convs
            .iter()
            .map(|c| cap * c.stride * c.c_out.max(c.c_in))
            .max()
            .unwrap_or(0)
            + PAD;
        let compact = self
            .convs
            .iter()
            .filter(|c| c.pool)
            .map(|c| cap * c.half() * c.c_out)
            .max()
            .unwrap_or(0);
        let grad = training.then(|| Grads {
            w: self.w.iter().map(|w| vec![0.0; w.len()]).collect(),
            b: self.b.iter().map(|b| vec![0.0; b.len()]).collect(),
            pa: vec![0.0; padded],
            pb: vec![0.0; padded],
            compact: vec![0.0; compact.max(cap * self.flat)],
            dl: vec![0.0; cap * self.classes],
            dd8: vec![0.0; cap * DENSE],
            dd7: vec![0.0; cap * DENSE],
            wflip: vec![0.0; 3 * CONV_CHANNELS[5] * CONV_CHANNELS[4]],
        });
        Work {
            cap,
            act,
            h7: vec![0.0; cap * DENSE],
            d7: vec![0.0; cap * DENSE],
            h8: vec![0.0; cap * DENSE],
            d8: vec![0.0; cap * DENSE],
            mask7: vec![0.0; cap * DENSE],
            mask8: vec![0.0; cap * DENSE],
            logits: vec![0.0; cap * self.classes],
            grad,
        }
    }

    /// Loads a batch of spectra into the work buffers.
    pub(super) fn load(&self, work: &mut Work, rows: &[&[f64]]) {
        assert!(rows.len() <= work.cap, "batch larger than the work buffers");
        for (dst, row) in work.act[0].chunks_exact_mut(self.points).zip(rows) {
            dst.iter_mut().zip(*row).for_each(|(d, &v)| *d = v as f32);
        }
    }

    /// Forward pass over the first `n` loaded spectra; dropout masks from `rng` when training.
    /// Leaves the logits in `work.logits`.
    pub(super) fn forward(&self, work: &mut Work, n: usize, mut rng: Option<&mut StdRng>) {
        assert!(n <= work.cap, "batch larger than the work buffers");
        for (i, c) in self.convs.iter().enumerate() {
            let (before, after) = work.act.split_at_mut(CONV_OUT[i]);
            conv_forward(
                c,
                &self.w[i],
                &self.b[i],
                &before[CONV_IN[i]],
                &mut after[0],
                n,
            );
            if c.pool {
                let (before, after) = work.act.split_at_mut(CONV_OUT[i] + 1);
                pool_forward(c, &before[CONV_OUT[i]], &mut after[0], n);
            }
        }
        let flat = &work.act[9][..n * self.flat];
        dense_forward(flat, &self.w[6], &self.b[6], &mut work.h7, n, self.flat);
        let d7 = dropout(
            &work.h7,
            &mut work.mask7,
            &mut work.d7,
            n,
            rng.as_deref_mut(),
        );
        dense_forward(d7, &self.w[7], &self.b[7], &mut work.h8, n, DENSE);
        let d8 = dropout(&work.h8, &mut work.mask8, &mut work.d8, n, rng);
        let k = self.classes;
        matmul(
            &mut work.logits,
            n,
            DENSE,
            k,
            Mat::new(d8, DENSE, 1),
            Mat::new(&self.w[8], k, 1),
        );
        for row in work.logits[..n * k].chunks_exact_mut(k) {
            row.iter_mut().zip(&self.b[8]).for_each(|(v, b)| *v += b);
        }
    }

    /// Softmax probabilities of the last forward pass, one row per spectrum.
    pub(super) fn probabilities(&self, work: &Work, n: usize) -> Vec<Vec<f32>> {
        work.logits[..n * self.classes]
            .chunks_exact(self.classes)
            .map(|row| {
                let mut p = row.to_vec();
                softmax(&mut p);
                p
            })
            .collect()
    }

    /// One training step's forward and backward pass over the `labels.len()` loaded spectra:
    /// returns the mean cross-entropy and leaves the gradients in `work`.
    pub(super) fn gradients(&self, work: &mut Work, labels: &[usize], rng: &mut StdRng) -> f32 {
        let n = labels.len();
        self.forward(work, n, Some(rng));
        let k = self.classes;
        let Work {
            act,
            h7,
            d7,
            h8,
            d8,
            mask7,
            mask8,
            logits,
            grad,
            ..
        } = work;
        let g = grad.as_mut().expect("work buffers made for training");
        // Cross-entropy on the logits: d loss / d logits = (softmax − onehot) / n.
        let mut loss = 0.0f64;
        let dl = &mut g.dl[..n * k];
        dl.copy_from_slice(&logits[..n * k]);
        for (row, &y) in dl.chunks_exact_mut(k).zip(labels) {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            loss += (sum.ln() + max - row[y]) as f64;
            softmax(row);
            row[y] -= 1.0;
            row.iter_mut().for_each(|v| *v /= n as f32);
        }
        // Output layer, then the two dense layers through dropout and ReLU.
        let dl = &g.dl[..n * k];
        dense_backward(
            d8,
            dl,
            &self.w[8],
            &mut g.w[8],
            &mut g.b[8],
            &mut g.dd8,
            n,
            DENSE,
            k,
        );
        dense_mask(&mut g.dd8[..n * DENSE], h8, mask8);
        let dz8 = &g.dd8[..n * DENSE];
        dense_backward(
            d7,
            dz8,
            &self.w[7],
            &mut g.w[7],
            &mut g.b[7],
            &mut g.dd7,
            n,
            DENSE,
            DENSE,
        );
        dense_mask(&mut g.dd7[..n * DENSE], h7, mask7);
        let (dz7, flat) = (&g.dd7[..n * DENSE], &act[9][..n * self.flat]);
        let compact = &mut g.compact;
        dense_backward(
            flat,
            dz7,
            &self.w[6],
            &mut g.w[6],
            &mut g.b[6],
            compact,
            n,
            self.flat,
            DENSE,
        );
        // Convolutions, last to first. `pa` holds the current layer's output gradient (ReLU
        // applied), `pb` receives its input gradient.
        for i in (0..self.convs.len()).rev() {
            let c = &self.convs[i];
            if c.pool {
                pool_backward(c, &act[CONV_OUT[i]], &g.compact, &mut g.pa[PAD..], n);
            } else {
                relu_mask(
                    &mut g.pa[PAD..PAD + n * c.stride * c.c_out],
                    &act[CONV_OUT[i]],
                );
            }
            let x = &act[CONV_IN[i]];
            let rows = n * c.stride;
            let dz = &g.pa[PAD..PAD + rows * c.c_out];
            matmul(
                &mut g.w[i],
                3 * c.c_in,
                rows - 2,
                c.c_out,
                Mat::new(x, 1, c.c_in),
                Mat::new(dz, c.c_out, 1),
            );
            column_sums(dz, c.c_out, &mut g.b[i]);
            if i == 0 {
                break;
            }
            // Input gradient: the overlapping view of the padded output gradient times the
            // kernel with its taps reversed and transposed: wflip[(2−t)·C_out + o][j] = w[t·C_in + j][o].
            let block = c.c_in * c.c_out;
            let wflip = &mut g.wflip[..3 * block];
            for t in 0..3 {
                let (src, dst) = (
                    &self.w[i][t * block..][..block],
                    &mut wflip[(2 - t) * block..],
                );
                transpose(src, c.c_in, c.c_out, &mut dst[..block]);
            }
            let dzp = &g.pa[PAD - 2 * c.c_out..PAD + rows * c.c_out];
            let into_compact = self.convs[i - 1].pool;
            let dx = if into_compact {
                &mut g.compact[..]
            } else {
                &mut g.pb[PAD..]
            };
            matmul(
                dx,
                rows,
                3 * c.c_out,
                c.c_in,
                Mat::new(dzp, c.c_out, 1),
                Mat::new(wflip, c.c_in, 1),
            );
            // A pooled input's gradient is already compact: conv inputs after a pool have
            // a row stride equal to their length. Otherwise it is the next layer's `pa`.
            if !into_compact {
                std::mem::swap(&mut g.pa, &mut g.pb);
            }
        }
        (loss / n as f64) as f32
    }
}

/// `out = relu(x · w + b)` for a dense layer of `n` rows.
fn dense_forward(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], n: usize, k: usize) {
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
fn dense_backward(
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
fn dropout<'a>(
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
fn dense_mask(g: &mut [f32], h: &[f32], mask: &[f32]) {
    for ((g, h), m) in g.iter_mut().zip(h).zip(mask) {
        *g = if *h > 0.0 { *g * m } else { 0.0 };
    }
}

/// Conv backward through ReLU: `g ← g · (h > 0)`.
fn relu_mask(g: &mut [f32], h: &[f32]) {
    g.par_chunks_mut(1 << 16)
        .zip(h.par_chunks(1 << 16))
        .for_each(|(g, h)| {
            for (g, h) in g.iter_mut().zip(h) {
                *g = if *h > 0.0 { *g } else { 0.0 };
            }
        });
}

/// `dst (cols × rows) = srcᵀ` for a row-major `src (rows × cols)`, in cache-sized tiles.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// `out = relu(conv(x) + b)` for `n` spectra; rows past the valid length are set to zero.
fn conv_forward(c: &Conv, w: &[f32], b: &[f32], x: &[f32], out: &mut [f32], n: usize) {
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
fn pool_forward(c: &Conv, h: &[f32], out: &mut [f32], n: usize) {
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
fn pool_backward(c: &Conv, h: &[f32], gp: &[f32], dz: &mut [f32], n: usize) {
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

/// Adam with Keras's update form over the network's plain weight vectors.
pub(super) struct CpuAdam {
    lr: f64,
    step: i32,
    /// (m, v) per weight vector, then per bias vector.
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl CpuAdam {
    pub(super) fn new(net: &CpuNet, lr: f64) -> CpuAdam {
        let moments = net
            .w
            .iter()
            .chain(&net.b)
            .map(|p| (vec![0.0; p.len()], vec![0.0; p.len()]))
            .collect();
        CpuAdam {
            lr,
            step: 0,
            moments,
        }
    }

    pub(super) fn step(&mut self, net: &mut CpuNet, work: &Work) {
        let g = work.grad.as_ref().expect("work buffers made for training");
        self.step += 1;
        let (lr_t, eps_hat) = adam_factors(self.lr, self.step);
        let (lr_t, eps_hat) = (lr_t as f32, eps_hat as f32);
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        let params = net.w.iter_mut().chain(net.b.iter_mut());
        let grads = g.w.iter().chain(&g.b);
        for ((p, g), (m, v)) in params.zip(grads).zip(self.moments.iter_mut()) {
            const CHUNK: usize = 1 << 15;
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *p -= lr_t * *m / (v.sqrt() + eps_hat);
                    }
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Max |a − b| relative to the larger magnitude in `b`.
    fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale
    }

    /// A small network (70 points: odd pooled lengths, a dropped last row) with random biases,
    /// and a batch smaller than the work buffers.
    fn setup() -> (Cnn, Vec<Vec<f64>>, Vec<usize>) {
        let cnn = Cnn::new(70, 3, &Device::Cpu, 7).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        for (_, _, b) in &cnn.params {
            let v: Vec<f32> = (0..b.elem_count())
                .map(|_| rng.random_range(-0.1..0.1))
                .collect();
            b.set(&Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let rows = (0..5)
            .map(|_| (0..70).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        (cnn, rows, vec![0, 1, 2, 1, 0])
    }

    #[test]
    fn logits_loss_and_every_gradient_match_candle_autograd() {
        let (cnn, rows, labels) = setup();
        let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let net = CpuNet::from_cnn(&cnn).unwrap();
        let mut work = net.work(8, true);
        net.load(&mut work, &refs);
        let loss = net.gradients(&mut work, &labels, &mut StdRng::seed_from_u64(3));

        let x = cnn.batch_tensor(&refs).unwrap();
        let logits = cnn
            .forward(&x, Some(&mut StdRng::seed_from_u64(3)))
            .unwrap();
        let y = Tensor::new(&[0u32, 1, 2, 1, 0], &Device::Cpu).unwrap();
        let expected = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let logits: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            rel_diff(&work.logits[..15], &logits) < 1e-4,
            "logits differ"
        );
        let expected_loss = expected.to_scalar::<f32>().unwrap();
        assert!(
            (loss - expected_loss).abs() < 1e-4,
            "{loss} vs {expected_loss}"
        );

        let grads = expected.backward().unwrap();
        let g = work.grad.as_ref().unwrap();
        for (i, (name, w, b)) in cnn.params.iter().enumerate() {
            let gw: Vec<f32> = grads
                .get(w)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let gb: Vec<f32> = grads.get(b).unwrap().to_vec1().unwrap();
            assert!(
                gw.iter().any(|v| *v != 0.0),
                "{name}: candle's weight gradient is zero"
            );
            assert!(
                rel_diff(&g.w[i], &gw) < 1e-3,
                "{name} weight gradient differs"
            );
            assert!(
                rel_diff(&g.b[i], &gb) < 1e-3,
                "{name} bias gradient differs"
            );
        }
    }

    #[test]
    fn prediction_matches_candle_softmax_in_any_batch_size() {
        let (cnn, rows, _) = setup();
        let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let x = cnn.batch_tensor(&refs).unwrap();
        let expected = candle_nn::ops::softmax_last_dim(&cnn.forward(&x, None).unwrap()).unwrap();
        let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
        for batch in [1, 2, 5, 256] {
            let got: Vec<f32> = cnn
                .predict(&refs, batch, &crate::science::Cancel::new())
                .unwrap()
                .concat();
            assert!(rel_diff(&got, &expected) < 1e-5, "batch {batch}");
        }
    }
}
