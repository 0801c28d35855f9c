//! Which spectra go to the researcher, over predictions held whole (`mljm simulate-al`, and
//! the reference for [`super::scan`]): the oracle batch (highest entropy first) and the
//! candidates (predicted as a candidate class).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_batch_is_the_most_uncertain_first() {
        assert_eq!(oracle_batch(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
        assert_eq!(oracle_batch(&[0.1], 5), vec![0]);
        assert_eq!(candidates(&[0, 1, 2, 1, 0, 2], &[1, 2]), vec![1, 2, 3, 5]);
    }
}
