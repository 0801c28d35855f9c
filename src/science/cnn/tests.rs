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

/// The candle engine (autograd, tensor Adam, dropout, snapshot/restore) is what runs on a
/// GPU; here, on the CPU, it must follow the hand-written engine step for step. Both draw
/// the same dropout masks from the same seed, so they differ only in summation order: after
/// 8 Adam steps every weight agrees within 2e-4 (absolute, on weights of order 0.05) and the
/// losses within 1e-4 relative.
#[test]
fn the_candle_engine_agrees_with_the_cpu_engine_step_for_step() {
    let (points, classes) = (64, 3);
    let rows: Vec<Vec<f64>> = (0..24)
        .map(|i| {
            (0..points)
                .map(|p| ((p * (i % 3 + 1)) as f64 / 7.0).sin() * (1.0 + i as f64 / 24.0))
                .collect()
        })
        .collect();
    let labels: Vec<usize> = (0..24).map(|i| i % classes).collect();
    let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
    let opts = TrainOptions {
        epochs: 1,
        batch_size: 12,
        min_delta: 0.0,
        patience: 1,
        learning_rate: 1e-3,
        seed: 0,
    };
    let (a, b) = (
        Cnn::new(points, classes, &Device::Cpu, 9).unwrap(),
        Cnn::new(points, classes, &Device::Cpu, 9).unwrap(),
    );
    let mut cpu = train::Engine::new(&a, &opts).unwrap();
    let mut candle = train::Engine::candle(&b, &opts).unwrap();
    assert!(matches!(cpu, train::Engine::Cpu { .. }));
    // Half the steps with class weights: both engines weigh the loss the same way. (Mild
    // weights: Adam turns a gradient near zero into a full step of either sign, so strong
    // weights let summation order move a few weights apart by a step; the weighted gradients
    // themselves are held to autograd in cpu::tests.)
    let class_weights = [1.0f32, 1.3, 0.8];
    for step in 0..8u64 {
        let batch = (step as usize % 2) * 12..(step as usize % 2 + 1) * 12;
        let weights = (step >= 4).then_some(&class_weights[..]);
        let l1 = cpu
            .step(
                &refs[batch.clone()],
                &labels[batch.clone()],
                weights,
                &mut StdRng::seed_from_u64(step),
            )
            .unwrap();
        let l2 = candle
            .step(
                &refs[batch.clone()],
                &labels[batch],
                weights,
                &mut StdRng::seed_from_u64(step),
            )
            .unwrap();
        assert!(
            (l1 - l2).abs() <= 1e-4 * l1.abs().max(1.0),
            "step {step}: loss {l1} vs {l2}"
        );
    }
    // Snapshot and restore: the best weights are the last ones here, moved into the models.
    cpu.keep_best().unwrap();
    candle.keep_best().unwrap();
    cpu.restore_best(&a).unwrap();
    candle.restore_best(&b).unwrap();
    let max_diff = |x: &Tensor, y: &Tensor| -> f32 {
        (x - y)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .unwrap()
    };
    let mut worst = 0f32;
    for ((_, wa, ba), (_, wb, bb)) in a.params.iter().zip(&b.params) {
        for (x, y) in [(wa, wb), (ba, bb)] {
            worst = worst.max(max_diff(x.as_tensor(), y.as_tensor()));
        }
    }
    assert!(worst < 2e-4, "weights differ by up to {worst}");
    // And the weights moved: 8 steps at 1e-3 shift some by about 1e-3 each.
    let fresh = Cnn::new(points, classes, &Device::Cpu, 9).unwrap();
    let moved = max_diff(a.params[8].1.as_tensor(), fresh.params[8].1.as_tensor());
    assert!(moved > 1e-3, "training moved the output weights by {moved}");
}

/// Early stopping on a validation set: the watched loss is the validation set's, and the
/// weights left in the model are those of its best epoch, not the last.
#[test]
fn validation_stopping_restores_the_best_weights() {
    let points = 48;
    let wave =
        |i: usize, p: usize| ((p * (i % 7 + 1)) as f64 / 5.0).sin() + (i as f64 / 13.0).cos();
    let make = |range: std::ops::Range<usize>| -> Vec<Vec<f64>> {
        range
            .map(|i| (0..points).map(|p| wave(i, p)).collect())
            .collect()
    };
    // Labels with little to do with the shapes: the network can only memorise the training
    // set, so the validation loss turns up after a few epochs.
    let (train_rows, val_rows) = (make(0..48), make(48..72));
    let label = |i: usize| (i * 7 + i / 5) % 3;
    let train_labels: Vec<usize> = (0..48).map(label).collect();
    let val_labels: Vec<usize> = (48..72).map(label).collect();
    let refs: Vec<&[f64]> = train_rows.iter().map(|r| r.as_slice()).collect();
    let vrefs: Vec<&[f64]> = val_rows.iter().map(|r| r.as_slice()).collect();
    let cnn = Cnn::new(points, 3, &Device::Cpu, 4).unwrap();
    let opts = TrainOptions {
        epochs: 60,
        batch_size: 8,
        min_delta: 0.0,
        patience: 4,
        learning_rate: 2e-3,
        seed: 2,
    };
    let objective = Objective {
        class_weights: None,
        validation: Some((&vrefs, &val_labels)),
    };
    let report = train_with(
        &cnn,
        &refs,
        &train_labels,
        &opts,
        &objective,
        &Cancel::new(),
        &Progress::new(),
        |_| {},
    )
    .unwrap();
    let v = &report.val_loss_per_epoch;
    assert_eq!(v.len(), report.epochs_run);
    let (best_at, best) = v
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap();
    assert_eq!((report.best_epoch, report.best_loss), (best_at + 1, *best));
    assert!(
        report.best_epoch < report.epochs_run && v[report.epochs_run - 1] > report.best_loss,
        "the validation loss should turn up before the end: {report:?}"
    );
    // The model holds the best epoch's weights: its validation loss is the best one.
    let p = cnn.predict(&vrefs, 16, &Cancel::new()).unwrap();
    let losses: Vec<f64> = p
        .iter()
        .zip(&val_labels)
        .map(|(p, &y)| -(p[y] as f64).ln())
        .collect();
    let now = train::class_mean(&losses, &val_labels);
    assert!(
        (now - report.best_loss).abs() < 1e-4,
        "{now} vs {}",
        report.best_loss
    );
}
