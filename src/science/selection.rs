//! Which spectra go to the researcher: the oracle batch (highest entropy first), candidates
//! (predicted as a candidate class) and the performance-estimation sample among them.

use rand::{SeedableRng, rngs::StdRng, seq::index::sample};

/// Indices of the `n` highest entropies, highest first (ties: lower index first).
pub fn oracle_batch(entropies: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entropies.len()).collect();
    order.sort_by(|&a, &b| entropies[b].total_cmp(&entropies[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// Indices predicted as one of `candidate_classes`.
pub fn candidates(predicted: &[usize], candidate_classes: &[usize]) -> Vec<usize> {
    (0..predicted.len())
        .filter(|&i| candidate_classes.contains(&predicted[i]))
        .collect()
}

/// `min(n, #candidates)` candidates drawn without replacement, in index order.
pub fn perf_est_sample(candidates: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked: Vec<usize> = sample(&mut rng, candidates.len(), n.min(candidates.len()))
        .into_iter()
        .map(|i| candidates[i])
        .collect();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_batch_is_the_most_uncertain_first() {
        assert_eq!(oracle_batch(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
        assert_eq!(oracle_batch(&[0.1], 5), vec![0]);
    }

    #[test]
    fn the_perf_est_sample_is_drawn_from_the_candidates() {
        let c = candidates(&[0, 1, 2, 1, 0, 2], &[1, 2]);
        assert_eq!(c, vec![1, 2, 3, 5]);
        let s = perf_est_sample(&c, 2, 3);
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|i| c.contains(i)));
        assert_eq!(perf_est_sample(&c, 10, 3), c);
    }
}
