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

mod layers;
mod matmul;
mod optimiser;

use rand::rngs::StdRng;

use layers::{
    Conv, conv_forward, dense_backward, dense_forward, dense_mask, dropout, pool_backward,
    pool_forward, relu_mask, softmax,
};
use matmul::{Mat, column_sums, matmul, transpose};
pub(super) use optimiser::CpuAdam;

use super::{CONV_CHANNELS, Cnn, DENSE, conv_lengths};

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
    /// Conv inputs and outputs: x, h1, h2, p1, h3, h4, p2, h5, h6, p3 (= the flat vector,
    /// index [`FLAT`]).
    act: Vec<Vec<f32>>,
    /// The two dense layers' activations, their dropout masks and dropped-out values.
    dense1: Vec<f32>,
    dense1_dropped: Vec<f32>,
    dense2: Vec<f32>,
    dense2_dropped: Vec<f32>,
    dense1_mask: Vec<f32>,
    dense2_mask: Vec<f32>,
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
    d_logits: Vec<f32>,
    d_dense2: Vec<f32>,
    d_dense1: Vec<f32>,
    wflip: Vec<f32>,
}

/// Index in `Work::act` of the last pooled activation, flattened into the first dense layer.
const FLAT: usize = 9;

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
            d_logits: vec![0.0; cap * self.classes],
            d_dense2: vec![0.0; cap * DENSE],
            d_dense1: vec![0.0; cap * DENSE],
            wflip: vec![0.0; 3 * CONV_CHANNELS[5] * CONV_CHANNELS[4]],
        });
        Work {
            cap,
            act,
            dense1: vec![0.0; cap * DENSE],
            dense1_dropped: vec![0.0; cap * DENSE],
            dense2: vec![0.0; cap * DENSE],
            dense2_dropped: vec![0.0; cap * DENSE],
            dense1_mask: vec![0.0; cap * DENSE],
            dense2_mask: vec![0.0; cap * DENSE],
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
    pub(super) fn forward(&self, work: &mut Work, n: usize, rng: Option<&mut StdRng>) {
        self.features(work, n);
        self.head(work, n, rng);
    }

    /// The convolutions and pooling of the first `n` loaded spectra (no dropout there).
    pub(super) fn features(&self, work: &mut Work, n: usize) {
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
    }

    /// The dense layers over the features of the last [`CpuNet::features`]: dropout masks from
    /// `rng` when given (training, or Monte-Carlo dropout at prediction). Leaves the logits in
    /// `work.logits`.
    pub(super) fn head(&self, work: &mut Work, n: usize, mut rng: Option<&mut StdRng>) {
        let flat = &work.act[FLAT][..n * self.flat];
        dense_forward(flat, &self.w[6], &self.b[6], &mut work.dense1, n, self.flat);
        let dense1_dropped = dropout(
            &work.dense1,
            &mut work.dense1_mask,
            &mut work.dense1_dropped,
            n,
            rng.as_deref_mut(),
        );
        dense_forward(
            dense1_dropped,
            &self.w[7],
            &self.b[7],
            &mut work.dense2,
            n,
            DENSE,
        );
        let dense2_dropped = dropout(
            &work.dense2,
            &mut work.dense2_mask,
            &mut work.dense2_dropped,
            n,
            rng,
        );
        let k = self.classes;
        matmul(
            &mut work.logits,
            n,
            DENSE,
            k,
            Mat::new(dense2_dropped, DENSE, 1),
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

    /// Cross-entropy of each of the last forward pass's spectra against `labels`.
    pub(super) fn losses(&self, work: &Work, labels: &[usize]) -> Vec<f64> {
        work.logits[..labels.len() * self.classes]
            .chunks_exact(self.classes)
            .zip(labels)
            .map(|(row, &y)| {
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                (sum.ln() + max - row[y]) as f64
            })
            .collect()
    }

    /// One training step's forward and backward pass over the `labels.len()` loaded spectra:
    /// returns the mean cross-entropy (each spectrum's weighted by its class's entry of
    /// `weights`, as Keras' `class_weight` does) and leaves the gradients in `work`.
    pub(super) fn gradients(
        &self,
        work: &mut Work,
        labels: &[usize],
        weights: Option<&[f32]>,
        rng: &mut StdRng,
    ) -> f32 {
        let n = labels.len();
        self.forward(work, n, Some(rng));
        let k = self.classes;
        let Work {
            act,
            dense1,
            dense1_dropped,
            dense2,
            dense2_dropped,
            dense1_mask,
            dense2_mask,
            logits,
            grad,
            ..
        } = work;
        let g = grad.as_mut().expect("work buffers made for training");
        // Cross-entropy on the logits: d loss / d logits = (softmax − onehot) / n.
        let mut loss = 0.0f64;
        let d_logits = &mut g.d_logits[..n * k];
        d_logits.copy_from_slice(&logits[..n * k]);
        for (row, &y) in d_logits.chunks_exact_mut(k).zip(labels) {
            let wy = weights.map_or(1.0, |w| w[y]);
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            loss += (wy * (sum.ln() + max - row[y])) as f64;
            softmax(row);
            row[y] -= 1.0;
            row.iter_mut().for_each(|v| *v *= wy / n as f32);
        }
        // Output layer, then the two dense layers through dropout and ReLU.
        let d_logits = &g.d_logits[..n * k];
        dense_backward(
            dense2_dropped,
            d_logits,
            &self.w[8],
            &mut g.w[8],
            &mut g.b[8],
            &mut g.d_dense2,
            n,
            DENSE,
            k,
        );
        dense_mask(&mut g.d_dense2[..n * DENSE], dense2, dense2_mask);
        let d_dense2_z = &g.d_dense2[..n * DENSE];
        dense_backward(
            dense1_dropped,
            d_dense2_z,
            &self.w[7],
            &mut g.w[7],
            &mut g.b[7],
            &mut g.d_dense1,
            n,
            DENSE,
            DENSE,
        );
        dense_mask(&mut g.d_dense1[..n * DENSE], dense1, dense1_mask);
        let (d_dense1_z, flat) = (&g.d_dense1[..n * DENSE], &act[FLAT][..n * self.flat]);
        let compact = &mut g.compact;
        dense_backward(
            flat,
            d_dense1_z,
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

#[cfg(test)]
mod tests;
