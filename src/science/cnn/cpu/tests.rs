//! The hand-written passes against candle's autograd of `Cnn::forward`.

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
    compare_with_autograd(None);
}

/// With class weights, the loss is the mean of each spectrum's cross-entropy times its
/// class's weight (Keras' `class_weight`).
#[test]
fn class_weighted_gradients_match_candle_autograd() {
    compare_with_autograd(Some(&[1.0, 2.5, 0.5]));
}

fn compare_with_autograd(weights: Option<&[f32]>) {
    let (cnn, rows, labels) = setup();
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let net = CpuNet::from_cnn(&cnn).unwrap();
    let mut work = net.work(8, true);
    net.load(&mut work, &refs);
    let loss = net.gradients(&mut work, &labels, weights, &mut StdRng::seed_from_u64(3));

    let x = cnn.batch_tensor(&refs).unwrap();
    let logits = cnn
        .forward(&x, Some(&mut StdRng::seed_from_u64(3)))
        .unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 1, 0], &Device::Cpu).unwrap();
    let expected = match weights {
        None => candle_nn::loss::cross_entropy(&logits, &y).unwrap(),
        Some(w) => {
            let w: Vec<f32> = labels.iter().map(|&l| w[l]).collect();
            let w = Tensor::new(w.as_slice(), &Device::Cpu).unwrap();
            let picked = candle_nn::ops::log_softmax(&logits, 1)
                .and_then(|l| l.gather(&y.unsqueeze(1)?, 1)?.squeeze(1))
                .unwrap();
            (picked * w).unwrap().neg().unwrap().mean_all().unwrap()
        }
    };
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
