//! One active-learning step, shared by the ACTIVE_ML job and `mljm simulate-al`: balance the
//! labelled set with SMOTE, train the CNN, predict the pool, and rank it by uncertainty
//! (a pool file of any size: [`super::scan`]).

use candle_core::Device;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use super::{
    Cancel, Progress,
    augment::{Augment, augment},
    cnn::{self, Cnn, CnnError, Objective, TrainOptions, TrainReport},
    features::Features,
    selection::{self, RARE_SHARE, Strategy},
    smote::smote,
};

/// How the labelled set's classes are balanced for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The original's: SMOTE brings every class up to the largest.
    #[default]
    Smote,
    /// Each class's loss weighed by N / (classes · its count) instead (no synthetic spectra).
    ClassWeights,
    /// Neither.
    None,
}

named_choices!(Balance, "smote, class_weights or none");

/// The loop's choices of training beyond [`TrainOptions`]; the default is the original's
/// (SMOTE, early stopping on the training loss, no augmentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choices {
    pub balance: Balance,
    /// Share of each class of the labelled set held out for early stopping (0: stop on the
    /// training loss, as the original does).
    pub validation_split: f64,
    pub augment: Option<Augment>,
    /// What the CNN sees of a row.
    pub features: Features,
}

/// Monte-Carlo dropout samples per spectrum for [`Strategy::Bald`].
pub const BALD_SAMPLES: usize = 10;

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
    let choices = Choices::default();
    fit_with(
        rows,
        labels,
        &[],
        classes,
        opts,
        &choices,
        device,
        cancel,
        progress,
        log,
    )
}

/// Per class, which of `labels` are held out for validation: `share` of each class (rounded,
/// at least one) when the class has at least two members, so that every class still trains.
pub fn validation_split(labels: &[usize], share: f64, seed: u64) -> Vec<bool> {
    let mut held = vec![false; labels.len()];
    if share <= 0.0 {
        return held;
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x005E_ED0F_5711);
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    for c in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if members.len() < 2 {
            continue;
        }
        members.shuffle(&mut rng);
        let k = ((members.len() as f64 * share).round() as usize).clamp(1, members.len() - 1);
        for &i in &members[..k] {
            held[i] = true;
        }
    }
    held
}

/// Class weights N / (classes present · count) of `labels` (1 for an absent class).
pub fn class_weights(labels: &[usize], classes: usize) -> Vec<f32> {
    let counts: Vec<usize> = (0..classes)
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .collect();
    let present = counts.iter().filter(|&&n| n > 0).count().max(1);
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                1.0
            } else {
                (labels.len() as f64 / (present * n) as f64) as f32
            }
        })
        .collect()
}

/// [`fit`] with the loop's `choices`: a validation split held out (and watched by early
/// stopping), augmented copies of the rest (`wave` is their grid), then SMOTE, class
/// weights or neither.
#[allow(clippy::too_many_arguments)]
pub fn fit_with(
    rows: &[Vec<f64>],
    labels: &[usize],
    wave: &[f64],
    classes: usize,
    opts: &TrainOptions,
    choices: &Choices,
    device: &Device,
    cancel: &Cancel,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Trained, CnnError> {
    let points = rows.first().map_or(0, Vec::len);
    let held = validation_split(labels, choices.validation_split, opts.seed);
    let (mut train_rows, mut train_labels, mut val_rows, mut val_labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((row, &label), &h) in rows.iter().zip(labels).zip(&held) {
        if h {
            val_rows.push(row.as_slice());
            val_labels.push(label);
        } else {
            train_rows.push(row.clone());
            train_labels.push(label);
        }
    }
    let counts = |labels: &[usize]| -> Vec<usize> {
        (0..classes)
            .map(|c| labels.iter().filter(|&&l| l == c).count())
            .collect()
    };
    let mut note = Vec::new();
    if !val_rows.is_empty() {
        note.push(format!(
            "{} held out for early stopping (per class {:?})",
            val_rows.len(),
            counts(&val_labels)
        ));
    }
    if let Some(a) = &choices.augment {
        let (more, more_labels, _) = augment(&train_rows, &train_labels, wave, a, opts.seed);
        note.push(format!(
            "{} augmented copies (±{} km/s{})",
            more.len(),
            a.max_kms,
            if a.noise {
                ", noise at each spectrum's S/N"
            } else {
                ""
            }
        ));
        train_rows.extend(more);
        train_labels.extend(more_labels);
    }
    let weights =
        (choices.balance == Balance::ClassWeights).then(|| class_weights(&train_labels, classes));
    let (train_rows, train_labels) = match choices.balance {
        Balance::Smote => {
            let (b, l) = smote(&train_rows, &train_labels, classes, opts.seed);
            note.push(format!("{} after SMOTE", b.len()));
            (b, l)
        }
        Balance::ClassWeights => {
            note.push(format!(
                "class weights {:.2?}",
                weights.as_deref().unwrap_or(&[])
            ));
            (train_rows, train_labels)
        }
        Balance::None => (train_rows, train_labels),
    };
    log(&format!(
        "training on {} labelled spectra per class {:?}{}; batch {}, at most {} epochs",
        rows.len(),
        counts(labels),
        note.iter().map(|n| format!(", {n}")).collect::<String>(),
        opts.batch_size,
        opts.epochs
    ));
    let cnn = Cnn::new(points, classes, device, opts.seed)?.with_features(choices.features);
    let refs: Vec<&[f64]> = train_rows.iter().map(Vec::as_slice).collect();
    let objective = Objective {
        class_weights: weights.as_deref(),
        validation: (!val_rows.is_empty()).then_some((&val_rows[..], &val_labels[..])),
    };
    let watched = if val_rows.is_empty() {
        "loss"
    } else {
        "validation loss"
    };
    let report = cnn::train_with(
        &cnn,
        &refs,
        &train_labels,
        opts,
        &objective,
        cancel,
        progress,
        |e| {
            let val = e
                .report
                .val_loss_per_epoch
                .last()
                .map_or(String::new(), |v| format!(", validation {v:.5}"));
            log(&format!(
                "epoch {} loss {:.5}{val} ({:.2} s); best {watched} {:.5} at epoch {}, {} epoch(s) without improvement",
                e.epoch, e.loss, e.seconds, e.report.best_loss, e.report.best_epoch, e.waiting
            ))
        },
    )?;
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
    if val_rows.is_empty() && report.best_loss > 0.9 * (classes as f64).ln() {
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

/// The oracle batch of `n` among `rows` by `strategy`, given their (deterministic)
/// predictions; `rare` are the classes a balanced batch reserves places for.
#[allow(clippy::too_many_arguments)]
pub fn query(
    strategy: Strategy,
    cnn: &Cnn,
    rows: &[&[f64]],
    predicted: &Predictions,
    n: usize,
    rare: &[usize],
    seed: u64,
    cancel: &Cancel,
) -> Result<Vec<usize>, CnnError> {
    Ok(match strategy {
        Strategy::Entropy => selection::oracle_batch(&predicted.entropies, n),
        Strategy::Margin => {
            let scores: Vec<f64> = predicted
                .probabilities
                .iter()
                .map(|p| selection::margin(p))
                .collect();
            selection::oracle_batch(&scores, n)
        }
        Strategy::Bald => {
            let (_, info) = cnn.predict_mc(rows, 256, BALD_SAMPLES, seed, cancel)?;
            selection::oracle_batch(&info, n)
        }
        Strategy::Balanced => {
            selection::balanced_batch(&predicted.entropies, &predicted.labels, n, rare, RARE_SHARE)
        }
    })
}

/// The most probable class of a probability row.
pub(super) fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Recall and precision of each class (NaN where undefined: no such spectrum, or none
/// predicted as it).
pub fn per_class(truth: &[usize], predicted: &[usize], classes: usize) -> Vec<(f64, f64)> {
    (0..classes)
        .map(|c| {
            let tp = truth
                .iter()
                .zip(predicted)
                .filter(|&(&t, &p)| t == c && p == c)
                .count() as f64;
            let actual = truth.iter().filter(|&&t| t == c).count() as f64;
            let called = predicted.iter().filter(|&&p| p == c).count() as f64;
            (tp / actual, tp / called)
        })
        .collect()
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
        let pc = per_class(&[0, 0, 1, 1], &[0, 0, 1, 0], 3);
        assert_eq!((pc[0].0, pc[0].1), (1.0, 2.0 / 3.0));
        assert_eq!((pc[1].0, pc[1].1), (0.5, 1.0));
        assert!(pc[2].0.is_nan() && pc[2].1.is_nan());
    }

    #[test]
    fn a_validation_split_holds_out_each_class_and_leaves_each_one_to_train() {
        let labels: Vec<usize> = [vec![0; 50], vec![1; 10], vec![2; 2], vec![2 + 1; 1]].concat();
        let held = validation_split(&labels, 0.2, 3);
        let count = |c: usize, h: bool| {
            (0..labels.len())
                .filter(|&i| labels[i] == c && held[i] == h)
                .count()
        };
        assert_eq!((count(0, true), count(0, false)), (10, 40));
        assert_eq!((count(1, true), count(1, false)), (2, 8));
        assert_eq!((count(2, true), count(2, false)), (1, 1));
        assert_eq!(
            (count(3, true), count(3, false)),
            (0, 1),
            "a class of one only trains"
        );
        assert_eq!(held, validation_split(&labels, 0.2, 3), "seeded");
        assert!(validation_split(&labels, 0.0, 3).iter().all(|h| !h));
    }

    #[test]
    fn class_weights_make_each_class_weigh_the_same() {
        let labels = [0, 0, 0, 0, 0, 0, 1, 1];
        let w = class_weights(&labels, 3);
        assert!((w[0] * 6.0 - w[1] * 2.0).abs() < 1e-6);
        assert!((w[0] * 6.0 + w[1] * 2.0 - 8.0).abs() < 1e-5);
        assert_eq!(w[2], 1.0);
    }

    /// With the same seed, the loop's choices (validation split, augmentation, class
    /// weights) train the same network twice; another seed trains another.
    #[test]
    fn a_seed_makes_a_training_run_reproducible() {
        let wave: Vec<f64> = (0..64).map(|p| 6500.0 + p as f64).collect();
        let rows: Vec<Vec<f64>> = (0..30)
            .map(|i| {
                (0..64)
                    .map(|p| ((p * (i % 3 + 1)) as f64 / 8.0).sin())
                    .collect()
            })
            .collect();
        let labels: Vec<usize> = (0..30)
            .map(|i| if i < 20 { 0 } else { 1 + i % 2 })
            .collect();
        let choices = Choices {
            balance: Balance::ClassWeights,
            validation_split: 0.2,
            augment: Some(Augment::default()),
            features: Features::Lines,
        };
        let run = |seed: u64| {
            let opts = TrainOptions {
                epochs: 4,
                batch_size: 8,
                min_delta: 0.0,
                patience: 4,
                learning_rate: 1e-3,
                seed,
            };
            let t = fit_with(
                &rows,
                &labels,
                &wave,
                3,
                &opts,
                &choices,
                &Device::Cpu,
                &Cancel::new(),
                &Progress::new(),
                &|_| {},
            )
            .unwrap();
            let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
            (
                t.cnn.predict(&refs, 32, &Cancel::new()).unwrap(),
                t.report.val_loss_per_epoch,
            )
        };
        let (a, va) = run(1);
        assert_eq!(va.len(), 4, "watched a validation set");
        assert_eq!(run(1), (a.clone(), va));
        assert_ne!(run(2).0, a);
    }

    /// Each strategy takes what it claims on a pool whose predictions are constructed.
    #[test]
    fn each_strategy_selects_what_it_claims() {
        let cnn = Cnn::new(64, 3, &Device::Cpu, 5).unwrap();
        // Row 0 is all zeros: with zero biases every layer gives zeros, so each dropout
        // sample predicts uniform probabilities: the highest entropy, and no disagreement.
        let rows: Vec<Vec<f64>> = (0..6)
            .map(|i| {
                (0..64)
                    .map(|p| {
                        if i == 0 {
                            0.0
                        } else {
                            ((p * (i + 1)) as f64 / 9.0).sin()
                        }
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        // 0: flat (highest entropy); 1: torn between two classes (smallest margin); 2-5: sure,
        // 5 predicted as the rare class 2.
        let probabilities: Vec<Vec<f32>> = vec![
            vec![0.34, 0.33, 0.33],
            vec![0.5, 0.5, 0.0],
            vec![0.9, 0.05, 0.05],
            vec![0.95, 0.03, 0.02],
            vec![0.97, 0.02, 0.01],
            vec![0.05, 0.05, 0.9],
        ];
        let predicted = Predictions {
            labels: probabilities.iter().map(|p| argmax(p)).collect(),
            entropies: probabilities.iter().map(|p| cnn::entropy(p)).collect(),
            probabilities,
        };
        let q = |s| query(s, &cnn, &refs, &predicted, 2, &[2], 0, &Cancel::new()).unwrap();
        assert_eq!(q(Strategy::Entropy), vec![0, 1]);
        assert_eq!(q(Strategy::Margin), vec![1, 0]);
        assert_eq!(q(Strategy::Balanced), vec![5, 0]);
        // BALD ranks by the dropout samples' disagreement: never the zero row, however
        // unsure the model is about it, but the rows whose samples differ most.
        let (plain, info) = cnn
            .predict_mc(&refs, 256, BALD_SAMPLES, 0, &Cancel::new())
            .unwrap();
        assert_eq!(plain, cnn.predict(&refs, 256, &Cancel::new()).unwrap());
        assert!(info[0] < 1e-9, "{info:?}");
        assert!(
            (cnn::entropy(&plain[0]) - 3f64.ln()).abs() < 1e-6,
            "uniform: {:?}",
            plain[0]
        );
        let bald = q(Strategy::Bald);
        assert!(!bald.contains(&0), "{bald:?} {info:?}");
        assert_eq!(bald, selection::oracle_batch(&info, 2));
        assert!(info[bald[0]] > 1e-6, "{info:?}");
        assert!(
            plain
                .iter()
                .all(|p| (p.iter().sum::<f32>() - 1.0).abs() < 1e-5)
        );
    }
}
