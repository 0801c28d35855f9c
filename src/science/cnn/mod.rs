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

mod cpu;

use std::{collections::HashMap, path::Path, time::Instant};

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rand_distr::{Distribution, Uniform};

use super::{Cancel, Progress};

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

pub struct Cnn {
    device: Device,
    points: usize,
    classes: usize,
    /// (name, weight, bias); conv weights are (3·C_in, C_out), dense weights (in, out).
    params: Vec<(String, Var, Var)>,
    /// im2col row indices of each conv layer: t, t+1, t+2 for every output position t.
    im2col: Vec<Tensor>,
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
        })
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
            let x = self.batch_tensor(chunk)?;
            let p = candle_nn::ops::softmax_last_dim(&self.forward(&x, None)?)?;
            out.extend(p.to_vec2::<f32>()?);
        }
        Ok(out)
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

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub min_delta: f64,
    pub patience: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub loss_per_epoch: Vec<f64>,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_loss: f64,
    pub stopped_early: bool,
    pub seconds: f64,
}

/// One finished epoch, for logs and progress.
pub struct Epoch<'a> {
    pub epoch: usize,
    pub loss: f64,
    pub seconds: f64,
    pub waiting: usize,
    pub report: &'a TrainReport,
}

/// Trains on `rows` with class indices `labels`; restores the weights of the best epoch.
pub fn train(
    cnn: &Cnn,
    rows: &[&[f64]],
    labels: &[usize],
    opts: &TrainOptions,
    cancel: &Cancel,
    progress: &Progress,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<TrainReport, CnnError> {
    if rows.is_empty() {
        return Err(CnnError::NoData);
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut engine = Engine::new(cnn, opts)?;
    let mut report = TrainReport {
        loss_per_epoch: Vec::new(),
        epochs_run: 0,
        best_epoch: 0,
        best_loss: f64::INFINITY,
        stopped_early: false,
        seconds: 0.0,
    };
    let mut waiting = 0;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    progress.start_step("training", opts.epochs as u64);
    for epoch in 1..=opts.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let (mut total, mut seen) = (0.0, 0usize);
        for batch in order.chunks(opts.batch_size.max(1)) {
            if cancel.is_cancelled() {
                return Err(CnnError::Cancelled);
            }
            let x: Vec<&[f64]> = batch.iter().map(|&i| rows[i]).collect();
            let y: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
            total += engine.step(&x, &y, &mut rng)? * batch.len() as f64;
            seen += batch.len();
        }
        let loss = total / seen as f64;
        report.loss_per_epoch.push(loss);
        report.epochs_run = epoch;
        // Keras' EarlyStopping(monitor="loss", min_delta, patience, restore_best_weights).
        if loss < report.best_loss - opts.min_delta {
            report.best_loss = loss;
            report.best_epoch = epoch;
            engine.keep_best()?;
            waiting = 0;
        } else {
            waiting += 1;
        }
        progress.advance(1);
        report.seconds = started.elapsed().as_secs_f64();
        on_epoch(&Epoch {
            epoch,
            loss,
            seconds: epoch_start.elapsed().as_secs_f64(),
            waiting,
            report: &report,
        });
        if waiting >= opts.patience {
            report.stopped_early = true;
            break;
        }
    }
    engine.restore_best(cnn)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The training step: [`cpu`]'s hand-written passes on the CPU, candle's autograd elsewhere.
/// One per training run, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Engine<'a> {
    Cpu {
        net: cpu::CpuNet,
        work: cpu::Work,
        adam: cpu::CpuAdam,
        /// Weights and biases of the best epoch so far.
        best: (Vec<Vec<f32>>, Vec<Vec<f32>>),
    },
    Candle {
        cnn: &'a Cnn,
        adam: Adam,
        best: Vec<Tensor>,
    },
}

impl<'a> Engine<'a> {
    fn new(cnn: &'a Cnn, opts: &TrainOptions) -> candle_core::Result<Engine<'a>> {
        Ok(if cnn.device.is_cpu() {
            let net = cpu::CpuNet::from_cnn(cnn)?;
            Engine::Cpu {
                work: net.work(opts.batch_size.max(1), true),
                adam: cpu::CpuAdam::new(&net, opts.learning_rate),
                best: (net.w.clone(), net.b.clone()),
                net,
            }
        } else {
            Engine::Candle {
                cnn,
                adam: Adam::new(cnn, opts.learning_rate)?,
                best: cnn.snapshot()?,
            }
        })
    }

    /// One optimiser step on a batch; returns its mean loss.
    fn step(
        &mut self,
        rows: &[&[f64]],
        labels: &[usize],
        rng: &mut StdRng,
    ) -> candle_core::Result<f64> {
        match self {
            Engine::Cpu {
                net, work, adam, ..
            } => {
                net.load(work, rows);
                let loss = net.gradients(work, labels, rng);
                adam.step(net, work);
                Ok(loss as f64)
            }
            Engine::Candle { cnn, adam, .. } => {
                let x = cnn.batch_tensor(rows)?;
                let y: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
                let y = Tensor::from_vec(y, labels.len(), &cnn.device)?;
                let loss = candle_nn::loss::cross_entropy(&cnn.forward(&x, Some(rng))?, &y)?;
                adam.step(cnn, &loss.backward()?)?;
                Ok(loss.to_scalar::<f32>()? as f64)
            }
        }
    }

    fn keep_best(&mut self) -> candle_core::Result<()> {
        match self {
            Engine::Cpu { net, best, .. } => {
                for (dst, src) in best.0.iter_mut().zip(&net.w) {
                    dst.copy_from_slice(src);
                }
                for (dst, src) in best.1.iter_mut().zip(&net.b) {
                    dst.copy_from_slice(src);
                }
            }
            Engine::Candle { cnn, best, .. } => *best = cnn.snapshot()?,
        }
        Ok(())
    }

    /// Puts the best epoch's weights into `cnn`.
    fn restore_best(self, cnn: &Cnn) -> candle_core::Result<()> {
        match self {
            Engine::Cpu { mut net, best, .. } => {
                (net.w, net.b) = best;
                net.store(cnn)
            }
            Engine::Candle { best, .. } => cnn.restore(&best),
        }
    }
}

/// Adam with Keras's update form (`lr_t = lr·√(1−β2ᵗ)/(1−β1ᵗ)`, `ε̂ = ε·√(1−β2ᵗ)`) as tensor
/// ops, for devices other than the CPU.
struct Adam {
    lr: f64,
    step: i32,
    /// First and second moments, per parameter tensor (weights and biases in order).
    moments: Vec<(Tensor, Tensor)>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-7;

/// Step `t`'s (lr_t, ε̂) in Keras's form: `lr·√(1−β2ᵗ)/(1−β1ᵗ)` and `ε·√(1−β2ᵗ)`.
fn adam_factors(lr: f64, t: i32) -> (f64, f64) {
    let root = (1.0 - BETA2.powi(t)).sqrt();
    (lr * root / (1.0 - BETA1.powi(t)), EPSILON * root)
}

impl Adam {
    fn new(cnn: &Cnn, lr: f64) -> candle_core::Result<Adam> {
        let moments = cnn
            .params
            .iter()
            .flat_map(|(_, w, b)| [w, b])
            .map(|v| Ok((v.zeros_like()?, v.zeros_like()?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Adam {
            lr,
            step: 0,
            moments,
        })
    }

    fn step(
        &mut self,
        cnn: &Cnn,
        grads: &candle_core::backprop::GradStore,
    ) -> candle_core::Result<()> {
        self.step += 1;
        let (lr_t, eps_hat) = adam_factors(self.lr, self.step);
        let vars = cnn.params.iter().flat_map(|(_, w, b)| [w, b]);
        for (var, (m, v)) in vars.zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            *m = ((&*m * BETA1)? + (g * (1.0 - BETA1))?)?;
            *v = ((&*v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = (&*m / (v.sqrt()? + eps_hat)?)?;
            var.set(&(var.as_tensor() - (update * lr_t)?)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_shapes_follow_the_spec() {
        assert_eq!(conv_lengths(600), vec![598, 596, 296, 294, 145, 143]);
        let cnn = Cnn::new(600, 3, &Device::Cpu, 1).unwrap();
        assert_eq!(cnn.params[6].1.dims(), &[71 * 256, 512]);
        let rows = vec![vec![0.5f64; 600]; 2];
        let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let p = cnn.predict(&refs, 256, &Cancel::new()).unwrap();
        assert_eq!((p.len(), p[0].len()), (2, 3));
        assert!((p[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn entropy_is_in_nats() {
        assert!((entropy(&[0.5, 0.5]) - 2f64.ln()).abs() < 1e-9);
        assert_eq!(entropy(&[1.0, 0.0]), 0.0);
    }

    #[test]
    fn training_learns_two_separable_shapes_and_saves_and_loads() {
        let points = 64;
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                (0..points)
                    .map(|p| {
                        if i % 2 == 0 {
                            (p as f64 / 5.0).sin()
                        } else {
                            -1.0 + 2.0 * p as f64 / points as f64
                        }
                    })
                    .collect()
            })
            .collect();
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let cnn = Cnn::new(points, 2, &Device::Cpu, 3).unwrap();
        let opts = TrainOptions {
            epochs: 30,
            batch_size: 8,
            min_delta: 1e-3,
            patience: 5,
            learning_rate: 1e-3,
            seed: 1,
        };
        let mut seen = 0;
        let report = train(
            &cnn,
            &refs,
            &labels,
            &opts,
            &Cancel::new(),
            &Progress::new(),
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!(seen, report.epochs_run);
        assert!(report.best_loss < report.loss_per_epoch[0], "{report:?}");
        let p = cnn.predict(&refs, 16, &Cancel::new()).unwrap();
        let right = p
            .iter()
            .zip(&labels)
            .filter(|(p, l)| (p[1] > p[0]) == (**l == 1))
            .count();
        assert!(right >= 36, "{right}/40 right");
        let dir = tempfile::tempdir().unwrap();
        cnn.save(&dir.path().join("m.safetensors")).unwrap();
        let back = Cnn::load(&dir.path().join("m.safetensors"), points, 2, &Device::Cpu).unwrap();
        assert_eq!(back.predict(&refs, 16, &Cancel::new()).unwrap(), p);
    }

    #[test]
    fn training_stops_at_once_when_cancelled() {
        let rows = vec![vec![0.0f64; 64]; 4];
        let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let cnn = Cnn::new(64, 2, &Device::Cpu, 3).unwrap();
        let cancel = Cancel::new();
        cancel.cancel();
        let opts = TrainOptions {
            epochs: 5,
            batch_size: 2,
            min_delta: 0.0,
            patience: 5,
            learning_rate: 1e-3,
            seed: 1,
        };
        assert!(matches!(
            train(
                &cnn,
                &refs,
                &[0, 1, 0, 1],
                &opts,
                &cancel,
                &Progress::new(),
                |_| {}
            ),
            Err(CnnError::Cancelled)
        ));
    }
}
