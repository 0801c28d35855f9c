//! Training with early stopping on the training loss (or a held-out validation set's), on the
//! CPU passes or candle ops.

use super::*;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub min_delta: f64,
    pub patience: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// What training weighs and watches beyond [`TrainOptions`]; the default is the original's:
/// every spectrum counts the same, and early stopping watches the training loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct Objective<'a> {
    /// Loss weight of each class (Keras' `class_weight`).
    pub class_weights: Option<&'a [f32]>,
    /// A held-out set whose loss early stopping watches instead (its best epoch's weights are
    /// restored). Its loss is the mean over its classes of each class's mean cross-entropy,
    /// so that a rare class weighs as much as a common one.
    pub validation: Option<(&'a [&'a [f64]], &'a [usize])>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub loss_per_epoch: Vec<f64>,
    /// The validation set's loss per epoch (empty without one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub val_loss_per_epoch: Vec<f64>,
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// The best watched loss: the validation loss when there is a validation set.
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
    on_epoch: impl FnMut(&Epoch),
) -> Result<TrainReport, CnnError> {
    train_with(
        cnn,
        rows,
        labels,
        opts,
        &Objective::default(),
        cancel,
        progress,
        on_epoch,
    )
}

/// [`train`] with class weights and/or early stopping on a validation set.
#[allow(clippy::too_many_arguments)]
pub fn train_with(
    cnn: &Cnn,
    rows: &[&[f64]],
    labels: &[usize],
    opts: &TrainOptions,
    objective: &Objective,
    cancel: &Cancel,
    progress: &Progress,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<TrainReport, CnnError> {
    if rows.is_empty() {
        return Err(CnnError::NoData);
    }
    // The rows (and the validation rows) as the network sees them, once.
    let prepared = cnn.prepare(rows);
    let rows = &prepared.rows()[..];
    let prepared_val = objective.validation.map(|(v, l)| (cnn.prepare(v), l));
    let val_rows = prepared_val.as_ref().map(|(v, l)| (v.rows(), *l));
    let objective = &Objective {
        class_weights: objective.class_weights,
        validation: val_rows.as_ref().map(|(v, l)| (&v[..], *l)),
    };
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut engine = Engine::new(cnn, opts)?;
    let mut report = TrainReport {
        loss_per_epoch: Vec::new(),
        val_loss_per_epoch: Vec::new(),
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
            total += engine.step(&x, &y, objective.class_weights, &mut rng)? * batch.len() as f64;
            seen += batch.len();
        }
        let loss = total / seen as f64;
        report.loss_per_epoch.push(loss);
        report.epochs_run = epoch;
        let watched = match objective.validation {
            Some((vrows, vlabels)) => {
                let v = class_mean(&engine.losses(vrows, vlabels, opts.batch_size)?, vlabels);
                report.val_loss_per_epoch.push(v);
                v
            }
            None => loss,
        };
        // Keras' EarlyStopping(monitor="loss" or "val_loss", min_delta, patience,
        // restore_best_weights).
        if watched < report.best_loss - opts.min_delta {
            report.best_loss = watched;
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

/// The mean over the classes present of each class's mean of `losses`.
pub(super) fn class_mean(losses: &[f64], labels: &[usize]) -> f64 {
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    let mut sum = vec![0.0; classes];
    let mut count = vec![0usize; classes];
    for (&l, &y) in losses.iter().zip(labels) {
        sum[y] += l;
        count[y] += 1;
    }
    let means: Vec<f64> = sum
        .iter()
        .zip(&count)
        .filter(|(_, c)| **c > 0)
        .map(|(s, &c)| s / c as f64)
        .collect();
    means.iter().sum::<f64>() / means.len().max(1) as f64
}

/// The training step: [`cpu`]'s hand-written passes on the CPU, candle's autograd elsewhere.
/// One per training run, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Engine<'a> {
    Cpu {
        net: cpu::CpuNet,
        work: cpu::Work,
        /// For the validation set's forward passes (made when first needed).
        eval: Option<cpu::Work>,
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
    pub(super) fn new(cnn: &'a Cnn, opts: &TrainOptions) -> candle_core::Result<Engine<'a>> {
        Ok(if cnn.device.is_cpu() {
            let net = cpu::CpuNet::from_cnn(cnn)?;
            Engine::Cpu {
                work: net.work(opts.batch_size.max(1), true),
                eval: None,
                adam: cpu::CpuAdam::new(&net, opts.learning_rate),
                best: (net.w.clone(), net.b.clone()),
                net,
            }
        } else {
            Engine::candle(cnn, opts)?
        })
    }

    /// Candle's autograd and the tensor Adam, on any device (the CPU too, where the tests
    /// hold it to the hand-written engine).
    pub(super) fn candle(cnn: &'a Cnn, opts: &TrainOptions) -> candle_core::Result<Engine<'a>> {
        Ok(Engine::Candle {
            cnn,
            adam: Adam::new(cnn, opts.learning_rate)?,
            best: cnn.snapshot()?,
        })
    }

    /// One optimiser step on a batch (each spectrum's loss weighted by its class's entry of
    /// `weights`); returns its mean loss.
    pub(super) fn step(
        &mut self,
        rows: &[&[f64]],
        labels: &[usize],
        weights: Option<&[f32]>,
        rng: &mut StdRng,
    ) -> candle_core::Result<f64> {
        match self {
            Engine::Cpu {
                net, work, adam, ..
            } => {
                net.load(work, rows);
                let loss = net.gradients(work, labels, weights, rng);
                adam.step(net, work);
                Ok(loss as f64)
            }
            Engine::Candle { cnn, adam, .. } => {
                let x = cnn.batch_tensor(rows)?;
                let y: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
                let y = Tensor::from_vec(y, labels.len(), &cnn.device)?;
                let logits = cnn.forward(&x, Some(rng))?;
                let loss = match weights {
                    None => candle_nn::loss::cross_entropy(&logits, &y)?,
                    Some(w) => {
                        let w: Vec<f32> = labels.iter().map(|&l| w[l]).collect();
                        let w = Tensor::from_vec(w, labels.len(), &cnn.device)?;
                        candle_nn::ops::log_softmax(&logits, 1)?
                            .gather(&y.unsqueeze(1)?, 1)?
                            .squeeze(1)?
                            .mul(&w)?
                            .neg()?
                            .mean_all()?
                    }
                };
                adam.step(cnn, &loss.backward()?)?;
                Ok(loss.to_scalar::<f32>()? as f64)
            }
        }
    }

    /// Each spectrum's cross-entropy under the current weights (no dropout).
    pub(super) fn losses(
        &mut self,
        rows: &[&[f64]],
        labels: &[usize],
        batch: usize,
    ) -> candle_core::Result<Vec<f64>> {
        let batch = batch.max(1);
        let mut out = Vec::with_capacity(rows.len());
        match self {
            Engine::Cpu { net, eval, .. } => {
                let work = eval.get_or_insert_with(|| net.work(batch, false));
                for (x, y) in rows.chunks(batch).zip(labels.chunks(batch)) {
                    net.load(work, x);
                    net.forward(work, x.len(), None);
                    out.extend(net.losses(work, y));
                }
            }
            Engine::Candle { cnn, .. } => {
                for (x, y) in rows.chunks(batch).zip(labels.chunks(batch)) {
                    let lsm =
                        candle_nn::ops::log_softmax(&cnn.forward(&cnn.batch_tensor(x)?, None)?, 1)?;
                    let lsm = lsm.to_vec2::<f32>()?;
                    out.extend(lsm.iter().zip(y).map(|(r, &l)| -(r[l] as f64)));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn keep_best(&mut self) -> candle_core::Result<()> {
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
    pub(super) fn restore_best(self, cnn: &Cnn) -> candle_core::Result<()> {
        match self {
            Engine::Cpu { mut net, best, .. } => {
                (net.w, net.b) = best;
                net.store(cnn)
            }
            Engine::Candle { best, .. } => cnn.restore(&best),
        }
    }
}
