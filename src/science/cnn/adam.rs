//! Adam as candle tensor ops, for devices other than the CPU; the Keras factors both optimisers share.

use super::*;

/// Adam with Keras's update form (`lr_t = lr·√(1−β2ᵗ)/(1−β1ᵗ)`, `ε̂ = ε·√(1−β2ᵗ)`) as tensor
/// ops, for devices other than the CPU.
pub(super) struct Adam {
    lr: f64,
    step: i32,
    /// First and second moments, per parameter tensor (weights and biases in order).
    moments: Vec<(Tensor, Tensor)>,
}

pub(super) const BETA1: f64 = 0.9;
pub(super) const BETA2: f64 = 0.999;
pub(super) const EPSILON: f64 = 1e-7;

/// Step `t`'s (lr_t, ε̂) in Keras's form: `lr·√(1−β2ᵗ)/(1−β1ᵗ)` and `ε·√(1−β2ᵗ)`.
pub(super) fn adam_factors(lr: f64, t: i32) -> (f64, f64) {
    let root = (1.0 - BETA2.powi(t)).sqrt();
    (lr * root / (1.0 - BETA1.powi(t)), EPSILON * root)
}

impl Adam {
    pub(super) fn new(cnn: &Cnn, lr: f64) -> candle_core::Result<Adam> {
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

    pub(super) fn step(
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
