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
