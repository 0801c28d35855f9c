//! Which spectra go to the researcher, over predictions held whole (`mljm simulate-al`, and
//! the reference for [`super::scan`]): the oracle batch (most uncertain first, by a query
//! strategy) and the candidates (predicted as a candidate class).

use serde::{Deserialize, Serialize};

/// How the oracle batch is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The original's: the highest entropy of the predicted probabilities.
    #[default]
    Entropy,
    /// The smallest gap between the two most probable classes.
    Margin,
    /// BALD over Monte-Carlo dropout samples: where the samples disagree most.
    Bald,
    /// Entropy, with part of each batch reserved for the spectra most uncertain among those
    /// predicted as each rare class (the candidate classes), so that a rare class the model
    /// barely knows is still asked about.
    Balanced,
}

named_choices!(Strategy, "entropy, margin, bald or balanced");

/// Share of a [`Strategy::Balanced`] batch reserved for the rare classes.
pub const RARE_SHARE: f64 = 0.5;

/// Margin uncertainty of a probability row: 1 − (p₁ − p₂), higher when the two most probable
/// classes are closer.
pub fn margin(p: &[f32]) -> f64 {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in p {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    if second == f32::NEG_INFINITY {
        return 0.0;
    }
    1.0 - (first - second) as f64
}

/// A batch of `n` by `scores` (most uncertain first) of which `share` is reserved for the
/// spectra predicted as the `rare` classes, split evenly among them (a class with too few
/// such spectra leaves its places to the others), highest score first within each class;
/// the rest of the batch is the highest scores among what is left. Ties: lower index first.
pub fn balanced_batch(
    scores: &[f64],
    predicted: &[usize],
    n: usize,
    rare: &[usize],
    share: f64,
) -> Vec<usize> {
    let order = oracle_batch(scores, scores.len());
    let n = n.min(scores.len());
    let reserved = ((n as f64 * share).round() as usize).min(n);
    let mut taken = vec![false; scores.len()];
    let mut out = Vec::with_capacity(n);
    // Round robin over the rare classes, each taking its most uncertain spectrum in turn.
    let mut queues: Vec<std::collections::VecDeque<usize>> = rare
        .iter()
        .map(|&c| {
            order
                .iter()
                .copied()
                .filter(|&i| predicted[i] == c)
                .collect()
        })
        .collect();
    while out.len() < reserved && queues.iter().any(|q| !q.is_empty()) {
        for q in &mut queues {
            if out.len() == reserved {
                break;
            }
            if let Some(i) = q.pop_front() {
                taken[i] = true;
                out.push(i);
            }
        }
    }
    for i in order {
        if out.len() == n {
            break;
        }
        if !taken[i] {
            taken[i] = true;
            out.push(i);
        }
    }
    out
}

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
    fn margin_prefers_two_close_classes() {
        assert!((margin(&[0.45, 0.45, 0.1]) - 1.0).abs() < 1e-6);
        assert!((margin(&[0.9, 0.05, 0.05]) - 0.15).abs() < 1e-6);
        // Entropy ranks the flat row first; margin the one torn between two classes.
        let (torn, flat) = ([0.5f32, 0.5, 0.0], [0.4f32, 0.3, 0.3]);
        assert!(margin(&torn) > margin(&flat));
        assert!(crate::science::cnn::entropy(&flat) > crate::science::cnn::entropy(&torn));
    }

    #[test]
    fn a_balanced_batch_reserves_places_for_each_rare_class() {
        // Ten spectra predicted common (0) with high scores, two predicted as class 1 and one
        // as class 2, with low scores: entropy alone would take only common ones.
        let mut scores = vec![0.9; 10];
        let mut predicted = vec![0; 10];
        scores.extend([0.2, 0.3, 0.1]);
        predicted.extend([1, 1, 2]);
        assert!(oracle_batch(&scores, 4).iter().all(|&i| predicted[i] == 0));
        let b = balanced_batch(&scores, &predicted, 4, &[1, 2], 0.5);
        assert_eq!(b.len(), 4);
        // Half the batch: the most uncertain of class 1 (index 11) and of class 2 (12).
        assert_eq!(&b[..2], &[11, 12]);
        assert!(b[2..].iter().all(|&i| predicted[i] == 0));
        // A rare class with too few spectra gives its places to the other.
        let b = balanced_batch(&scores, &predicted, 8, &[1, 2], 0.5);
        assert_eq!(&b[..3], &[11, 12, 10]);
        assert_eq!(b.len(), 8);
        let unique: std::collections::HashSet<_> = b.iter().collect();
        assert_eq!(unique.len(), 8);
    }

    #[test]
    fn strategies_parse_and_print_alike() {
        for s in ["entropy", "margin", "bald", "balanced"] {
            assert_eq!(s.parse::<Strategy>().unwrap().to_string(), s);
        }
        assert!("smote".parse::<Strategy>().is_err());
    }

    #[test]
    fn the_oracle_batch_is_the_most_uncertain_first() {
        assert_eq!(oracle_batch(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
        assert_eq!(oracle_batch(&[0.1], 5), vec![0]);
        assert_eq!(candidates(&[0, 1, 2, 1, 0, 2], &[1, 2]), vec![1, 2, 3, 5]);
    }
}
