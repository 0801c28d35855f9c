//! Training with early stopping on the training loss, on the CPU passes or candle ops.

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
pub(super) enum Engine<'a> {
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
    pub(super) fn new(cnn: &'a Cnn, opts: &TrainOptions) -> candle_core::Result<Engine<'a>> {
        Ok(if cnn.device.is_cpu() {
            let net = cpu::CpuNet::from_cnn(cnn)?;
            Engine::Cpu {
                work: net.work(opts.batch_size.max(1), true),
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

    /// One optimiser step on a batch; returns its mean loss.
    pub(super) fn step(
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
