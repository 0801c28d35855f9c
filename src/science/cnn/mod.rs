//! The active-learning CNN of SPEC §6 in candle: six "valid" k=3 convolutions (64, 64, 128,
//! 128, 256, 256, ReLU) with a max-pool after each pair, Dense 512 ReLU, Dropout 0.5, Dense 512
//! ReLU, Dropout 0.5, Dense n_classes. Trained with Adam on cross-entropy with early stopping
//! on the training loss (best weights restored); predicts softmax probabilities.
//!
//! The weights live in candle variables. On the CPU, training and prediction run in [`cpu`]'s
//! hand-written passes (about twice as fast as candle's autograd here); on other devices, and
//! as the reference that [`cpu`]'s tests compare against, [`Cnn::forward`] is candle ops with
//! channels-last activations `(B, L, C)`, so a convolution is one im2col `index_select` and
//! one matmul.

mod adam;
mod train;

use adam::{Adam, BETA1, BETA2, adam_factors};
pub use train::{Epoch, Objective, TrainOptions, TrainReport, train, train_with};

mod cpu;

use std::{collections::HashMap, path::Path, time::Instant};

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::{Distribution, Uniform};

use super::{Cancel, Progress, features::Features};

const CONV_CHANNELS: [usize; 6] = [64, 64, 128, 128, 256, 256];
const DENSE: usize = 512;
const DROPOUT: f32 = 0.5;

#[derive(Debug, thiserror::Error)]
pub enum CnnError {
    #[error("spectra of {0} points are too short for the network (at least 30 are needed)")]
    TooShort(usize),
    #[error("no training spectra")]
    NoData,
    #[error("cancelled")]
    Cancelled,
    #[error("device {0:?}: {1}")]
    Device(String, String),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

/// `gpu.device`: "auto" (CUDA when built with it and a GPU is present), "cpu", or "cuda:N".
pub fn device(spec: &str) -> Result<Device, CnnError> {
    let err = |m: String| CnnError::Device(spec.to_string(), m);
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" if candle_core::utils::cuda_is_available() => {
            Device::new_cuda(0).map_err(|e| err(e.to_string()))
        }
        "auto" => Ok(Device::Cpu),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if candle_core::utils::cuda_is_available() => {
                Device::new_cuda(n).map_err(|e| err(e.to_string()))
            }
            Some(_) => Err(err(
                "this mljm was built without CUDA (cargo build --features cuda)".into(),
            )),
            None => Err(err("expected \"auto\", \"cpu\" or \"cuda:N\"".into())),
        },
    }
}

/// Lengths after each layer: conv (k=3, valid) shortens by 2, pooling halves (rounding down).
fn conv_lengths(points: usize) -> Vec<usize> {
    let mut l = points;
    let mut out = Vec::new();
    for i in 0..CONV_CHANNELS.len() {
        l -= 2;
        out.push(l);
        if i % 2 == 1 {
            l /= 2;
        }
    }
    out
}

/// Rows ready for the network (see [`Cnn::prepare`]).
pub enum Prepared<'a> {
    Borrowed(Vec<&'a [f64]>),
    Owned(Vec<Vec<f64>>),
}

impl Prepared<'_> {
    pub fn rows(&self) -> Vec<&[f64]> {
        match self {
            Prepared::Borrowed(r) => r.clone(),
            Prepared::Owned(r) => r.iter().map(Vec::as_slice).collect(),
        }
    }
}

pub struct Cnn {
    device: Device,
    points: usize,
    classes: usize,
    /// (name, weight, bias); conv weights are (3·C_in, C_out), dense weights (in, out).
    params: Vec<(String, Var, Var)>,
    /// im2col row indices of each conv layer: t, t+1, t+2 for every output position t.
    im2col: Vec<Tensor>,
    /// What the network sees of a pool row ([`Features::apply`], in training and prediction).
    features: Features,
}

impl Cnn {
    /// Glorot-uniform kernels and zero biases (Keras's defaults), from `seed`.
    pub fn new(points: usize, classes: usize, device: &Device, seed: u64) -> Result<Cnn, CnnError> {
        if points < 30 {
            return Err(CnnError::TooShort(points));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = Vec::new();
        let mut glorot = |name: String,
                          fan_in: usize,
                          fan_out: usize,
                          shape: (usize, usize)|
         -> Result<(String, Var, Var), CnnError> {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            let dist = Uniform::new(-limit, limit)
                .map_err(|e| CnnError::Device("init".into(), e.to_string()))?;
            let w: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| dist.sample(&mut rng))
                .collect();
            let w = Var::from_vec(w, shape, device)?;
            let b = Var::zeros(shape.1, DType::F32, device)?;
            Ok((name, w, b))
        };
        let mut c_in = 1;
        for (i, &c_out) in CONV_CHANNELS.iter().enumerate() {
            params.push(glorot(
                format!("conv{}", i + 1),
                3 * c_in,
                3 * c_out,
                (3 * c_in, c_out),
            )?);
            c_in = c_out;
        }
        let lengths = conv_lengths(points);
        let flat = lengths[5] / 2 * CONV_CHANNELS[5];
        params.push(glorot("dense1".into(), flat, DENSE, (flat, DENSE))?);
        params.push(glorot("dense2".into(), DENSE, DENSE, (DENSE, DENSE))?);
        params.push(glorot("output".into(), DENSE, classes, (DENSE, classes))?);
        let im2col = lengths
            .iter()
            .map(|&lo| {
                let idx: Vec<u32> = (0..lo as u32).flat_map(|t| [t, t + 1, t + 2]).collect();
                Tensor::from_vec(idx, 3 * lo, device)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Cnn {
            device: device.clone(),
            points,
            classes,
            params,
            im2col,
            features: Features::Scaled,
        })
    }

    /// This network seeing its rows as `features` (saved in the model card, not the weights).
    pub fn with_features(mut self, features: Features) -> Cnn {
        self.features = features;
        self
    }

    pub fn features(&self) -> Features {
        self.features
    }

    /// `rows` as the network sees them: borrowed as they are, or transformed copies.
    pub fn prepare<'a>(&self, rows: &[&'a [f64]]) -> Prepared<'a> {
        match self.features {
            Features::Scaled => Prepared::Borrowed(rows.to_vec()),
            features => Prepared::Owned(
                rows.iter()
                    .map(|r| {
                        let mut v = r.to_vec();
                        features.apply(&mut v);
                        v
                    })
                    .collect(),
            ),
        }
    }

    pub fn points(&self) -> usize {
        self.points
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits for a batch `x` of shape (B, points); dropout (training) draws from `dropout`.
    pub fn forward(
        &self,
        x: &Tensor,
        mut dropout: Option<&mut StdRng>,
    ) -> candle_core::Result<Tensor> {
        let b = x.dim(0)?;
        let mut h = x.reshape((b, self.points, 1))?;
        for (i, (_, w, bias)) in self.params[..6].iter().enumerate() {
            let (c_in, lo, c_out) = (h.dim(2)?, self.im2col[i].dim(0)? / 3, w.dim(1)?);
            let cols = h
                .index_select(&self.im2col[i], 1)?
                .reshape((b * lo, 3 * c_in))?;
            h = cols
                .matmul(w.as_tensor())?
                .broadcast_add(bias.as_tensor())?
                .relu()?
                .reshape((b, lo, c_out))?;
            if i % 2 == 1 {
                let half = lo / 2;
                h = h
                    .narrow(1, 0, half * 2)?
                    .reshape((b, half, 2, c_out))?
                    .max(2)?;
            }
        }
        let mut h = h.reshape((b, ()))?;
        for (_, w, bias) in &self.params[6..8] {
            h = h
                .matmul(w.as_tensor())?
                .broadcast_add(bias.as_tensor())?
                .relu()?;
            if let Some(rng) = dropout.as_deref_mut() {
                h = self.dropout(&h, rng)?;
            }
        }
        let (_, w, bias) = &self.params[8];
        h.matmul(w.as_tensor())?.broadcast_add(bias.as_tensor())
    }

    /// Inverted dropout with a mask from our seeded generator (candle's CPU generator cannot
    /// be seeded), so a training run is reproducible.
    fn dropout(&self, h: &Tensor, rng: &mut StdRng) -> candle_core::Result<Tensor> {
        let mut mask = vec![0.0; h.elem_count()];
        fill_dropout_mask(&mut mask, rng);
        h * Tensor::from_vec(mask, h.shape(), &self.device)?
    }

    fn snapshot(&self) -> candle_core::Result<Vec<Tensor>> {
        self.params
            .iter()
            .flat_map(|(_, w, b)| [w, b])
            .map(|v| v.as_tensor().copy())
            .collect()
    }

    fn restore(&self, saved: &[Tensor]) -> candle_core::Result<()> {
        for (v, t) in self.params.iter().flat_map(|(_, w, b)| [w, b]).zip(saved) {
            v.set(t)?;
        }
        Ok(())
    }

    /// Weights as safetensors (`conv1.weight`, `conv1.bias`, …, `output.bias`).
    pub fn save(&self, path: &Path) -> candle_core::Result<()> {
        let mut map = HashMap::new();
        for (name, w, b) in &self.params {
            map.insert(format!("{name}.weight"), w.as_tensor().clone());
            map.insert(format!("{name}.bias"), b.as_tensor().clone());
        }
        candle_core::safetensors::save(&map, path)
    }

    pub fn load(
        path: &Path,
        points: usize,
        classes: usize,
        device: &Device,
    ) -> Result<Cnn, CnnError> {
        let cnn = Cnn::new(points, classes, device, 0)?;
        let map = candle_core::safetensors::load(path, device)?;
        for (name, w, b) in &cnn.params {
            for (suffix, var) in [("weight", w), ("bias", b)] {
                let key = format!("{name}.{suffix}");
                let t = map.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("{}: no tensor {key}", path.display()))
                })?;
                var.set(t)?;
            }
        }
        Ok(cnn)
    }

    /// Softmax probabilities, one row per spectrum, in batches of `batch`.
    pub fn predict(
        &self,
        rows: &[&[f64]],
        batch: usize,
        cancel: &Cancel,
    ) -> Result<Vec<Vec<f32>>, CnnError> {
        let batch = batch.max(1);
        let mut out = Vec::with_capacity(rows.len());
        if self.device.is_cpu() {
            let net = cpu::CpuNet::from_cnn(self)?;
            let mut work = net.work(batch.min(rows.len()), false);
            for chunk in rows.chunks(batch) {
                if cancel.is_cancelled() {
                    return Err(CnnError::Cancelled);
                }
                let prepared = self.prepare(chunk);
                let chunk = &prepared.rows()[..];
                net.load(&mut work, chunk);
                net.forward(&mut work, chunk.len(), None);
                out.extend(net.probabilities(&work, chunk.len()));
            }
            return Ok(out);
        }
        for chunk in rows.chunks(batch) {
            if cancel.is_cancelled() {
                return Err(CnnError::Cancelled);
            }
            let prepared = self.prepare(chunk);
            let x = self.batch_tensor(&prepared.rows())?;
            let p = candle_nn::ops::softmax_last_dim(&self.forward(&x, None)?)?;
            out.extend(p.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// Monte-Carlo dropout (Gal & Ghahramani 2016): `samples` passes per spectrum with
    /// dropout on, from `seed`. Returns the probabilities without dropout (what
    /// [`Cnn::predict`] gives) and BALD's mutual information (the entropy of the samples'
    /// mean less their mean entropy: high where the samples disagree, not merely where each
    /// is unsure). On the CPU the convolutions run once and only the dense layers per sample.
    pub fn predict_mc(
        &self,
        rows: &[&[f64]],
        batch: usize,
        samples: usize,
        seed: u64,
        cancel: &Cancel,
    ) -> Result<(Vec<Vec<f32>>, Vec<f64>), CnnError> {
        let (batch, samples) = (batch.max(1), samples.max(1));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut plain = Vec::with_capacity(rows.len());
        let mut info = Vec::with_capacity(rows.len());
        let mut work = if self.device.is_cpu() {
            let net = cpu::CpuNet::from_cnn(self)?;
            let work = net.work(batch.min(rows.len()), false);
            Some((net, work))
        } else {
            None
        };
        for chunk in rows.chunks(batch) {
            if cancel.is_cancelled() {
                return Err(CnnError::Cancelled);
            }
            let prepared = self.prepare(chunk);
            let chunk = &prepared.rows()[..];
            let mut sum = vec![vec![0f64; self.classes]; chunk.len()];
            let mut entropies = vec![0f64; chunk.len()];
            let x = match &mut work {
                Some((net, work)) => {
                    net.load(work, chunk);
                    net.features(work, chunk.len());
                    net.head(work, chunk.len(), None);
                    plain.extend(net.probabilities(work, chunk.len()));
                    None
                }
                None => {
                    let x = self.batch_tensor(chunk)?;
                    let p = candle_nn::ops::softmax_last_dim(&self.forward(&x, None)?)?;
                    plain.extend(p.to_vec2::<f32>()?);
                    Some(x)
                }
            };
            for _ in 0..samples {
                let p = match (&mut work, &x) {
                    (Some((net, work)), _) => {
                        net.head(work, chunk.len(), Some(&mut rng));
                        net.probabilities(work, chunk.len())
                    }
                    (None, Some(x)) => {
                        candle_nn::ops::softmax_last_dim(&self.forward(x, Some(&mut rng))?)?
                            .to_vec2::<f32>()?
                    }
                    (None, None) => unreachable!("a tensor is made when there is no CPU net"),
                };
                for ((s, e), p) in sum.iter_mut().zip(&mut entropies).zip(&p) {
                    s.iter_mut().zip(p).for_each(|(s, &v)| *s += v as f64);
                    *e += entropy(p);
                }
            }
            for (s, e) in sum.into_iter().zip(entropies) {
                let m: Vec<f32> = s.iter().map(|v| (v / samples as f64) as f32).collect();
                info.push((entropy(&m) - e / samples as f64).max(0.0));
            }
        }
        Ok((plain, info))
    }

    fn batch_tensor(&self, rows: &[&[f64]]) -> candle_core::Result<Tensor> {
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v as f32))
            .collect();
        Tensor::from_vec(flat, (rows.len(), self.points), &self.device)
    }
}

/// Inverted-dropout mask: each element kept (scaled by 1 / keep) with probability 1 − DROPOUT.
fn fill_dropout_mask(mask: &mut [f32], rng: &mut StdRng) {
    let keep = 1.0 - DROPOUT;
    for m in mask {
        *m = if rng.random::<f32>() < keep {
            1.0 / keep
        } else {
            0.0
        };
    }
}

/// Natural-log entropy of each probability row.
pub fn entropy(probs: &[f32]) -> f64 {
    probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| -(p as f64) * (p as f64).ln())
        .sum()
}

#[cfg(test)]
mod tests;
