//! Adam with Keras's update form over the network's plain weight vectors.

use rayon::prelude::*;

use super::{CpuNet, Work};
use crate::science::cnn::{BETA1, BETA2, adam_factors};

/// Adam with Keras's update form over the network's plain weight vectors.
pub(in crate::science::cnn) struct CpuAdam {
    lr: f64,
    step: i32,
    /// (m, v) per weight vector, then per bias vector.
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl CpuAdam {
    pub(in crate::science::cnn) fn new(net: &CpuNet, lr: f64) -> CpuAdam {
        let moments = net
            .w
            .iter()
            .chain(&net.b)
            .map(|p| (vec![0.0; p.len()], vec![0.0; p.len()]))
            .collect();
        CpuAdam {
            lr,
            step: 0,
            moments,
        }
    }

    pub(in crate::science::cnn) fn step(&mut self, net: &mut CpuNet, work: &Work) {
        let g = work.grad.as_ref().expect("work buffers made for training");
        self.step += 1;
        let (lr_t, eps_hat) = adam_factors(self.lr, self.step);
        let (lr_t, eps_hat) = (lr_t as f32, eps_hat as f32);
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        let params = net.w.iter_mut().chain(net.b.iter_mut());
        let grads = g.w.iter().chain(&g.b);
        for ((p, g), (m, v)) in params.zip(grads).zip(self.moments.iter_mut()) {
            const CHUNK: usize = 1 << 15;
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *p -= lr_t * *m / (v.sqrt() + eps_hat);
                    }
                });
        }
    }
}
