//! One active-learning step, shared by the ACTIVE_ML job and `mljm simulate-al`: balance the
//! labelled set with SMOTE, train the CNN, predict the pool, and rank it by uncertainty
//! (a pool file of any size: [`super::scan`]).

use candle_core::Device;

use super::{
    Cancel, Progress,
    cnn::{self, Cnn, CnnError, TrainOptions, TrainReport},
    smote::smote,
};

/// What the model said about each pool spectrum.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub probabilities: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
    pub entropies: Vec<f64>,
}

pub struct Trained {
    pub cnn: Cnn,
    pub report: TrainReport,
}

/// SMOTE-balances `rows`/`labels` over `classes` classes and trains a fresh CNN on them.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    rows: &[Vec<f64>],
    labels: &[usize],
    classes: usize,
    opts: &TrainOptions,
    device: &Device,
    cancel: &Cancel,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Trained, CnnError> {
    let points = rows.first().map_or(0, Vec::len);
    let (balanced, balanced_labels) = smote(rows, labels, classes, opts.seed);
    let counts: Vec<usize> = (0..classes)
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .collect();
    log(&format!(
        "training on {} labelled spectra per class {:?}, {} after SMOTE; batch {}, at most {} epochs",
        rows.len(),
        counts,
        balanced.len(),
        opts.batch_size,
        opts.epochs
    ));
    let cnn = Cnn::new(points, classes, device, opts.seed)?;
    let refs: Vec<&[f64]> = balanced.iter().map(Vec::as_slice).collect();
    let report = cnn::train(&cnn, &refs, &balanced_labels, opts, cancel, progress, |e| {
        log(&format!(
            "epoch {} loss {:.5} ({:.2} s); best {:.5} at epoch {}, {} epoch(s) without improvement",
            e.epoch, e.loss, e.seconds, e.report.best_loss, e.report.best_epoch, e.waiting
        ))
    })?;
    log(&format!(
        "trained {} epochs in {:.1} s{}; best loss {:.5} at epoch {} (weights restored)",
        report.epochs_run,
        report.seconds,
        if report.stopped_early {
            ", stopped early"
        } else {
            ""
        },
        report.best_loss,
        report.best_epoch
    ));
    // ln(classes) is the loss of a model that learned nothing (uniform probabilities).
    if report.best_loss > 0.9 * (classes as f64).ln() {
        log(&format!(
            "warning: the training loss stayed near that of an untrained model ({:.3}); a larger patience_train or more labelled spectra may help",
            report.best_loss
        ));
    }
    Ok(Trained { cnn, report })
}

/// Class probabilities, argmax labels and entropies for `rows`, in batches of `batch`.
pub fn predict(
    cnn: &Cnn,
    rows: &[&[f64]],
    batch: usize,
    cancel: &Cancel,
) -> Result<Predictions, CnnError> {
    // Large CPU batches only cost memory and cache (candle-cpu.md: ~256 is fastest).
    let batch = if cnn.device().is_cpu() {
        batch.min(256)
    } else {
        batch
    };
    let probabilities = cnn.predict(rows, batch, cancel)?;
    let labels = probabilities.iter().map(|p| argmax(p)).collect();
    let entropies = probabilities.iter().map(|p| cnn::entropy(p)).collect();
    Ok(Predictions {
        probabilities,
        labels,
        entropies,
    })
}

/// The most probable class of a probability row.
pub(super) fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Accuracy and macro-F1 (mean over the classes present in truth or prediction).
pub fn scores(truth: &[usize], predicted: &[usize], classes: usize) -> (f64, f64) {
    let right = truth.iter().zip(predicted).filter(|(a, b)| a == b).count();
    let accuracy = right as f64 / truth.len().max(1) as f64;
    let mut f1s = Vec::new();
    for c in 0..classes {
        let tp = truth
            .iter()
            .zip(predicted)
            .filter(|&(&t, &p)| t == c && p == c)
            .count() as f64;
        let fp = truth
            .iter()
            .zip(predicted)
            .filter(|&(&t, &p)| t != c && p == c)
            .count() as f64;
        let fn_ = truth
            .iter()
            .zip(predicted)
            .filter(|&(&t, &p)| t == c && p != c)
            .count() as f64;
        if tp + fp + fn_ > 0.0 {
            f1s.push(2.0 * tp / (2.0 * tp + fp + fn_));
        }
    }
    (accuracy, f1s.iter().sum::<f64>() / f1s.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's whole-pool path against [`scan`] with chunks smaller than, equal to and larger
    /// than the pool: the same labels, entropies, oracle batch and candidates, exactly.
    #[test]
    fn macro_f1_averages_the_classes() {
        let (acc, f1) = scores(&[0, 0, 1, 1], &[0, 0, 1, 0], 2);
        assert_eq!(acc, 0.75);
        assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }
}
