//! 2-D t-SNE of a training set (the bhtsne crate: exact up to 1,000 spectra, Barnes–Hut above),
//! perplexity min(30, (n − 1) / 3), from a seeded random start (bhtsne's parallel sums may
//! still differ in the last digits between runs).

use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};

/// Fewer spectra than this give no embedding (SPEC §10).
pub const MIN_SPECTRA: usize = 4;
const EXACT_UP_TO: usize = 1000;

pub fn perplexity(n: usize) -> f32 {
    (30.0f32).min((n as f32 - 1.0) / 3.0)
}

/// (x, y) per row, or `None` for fewer than [`MIN_SPECTRA`] rows.
pub fn embed(rows: &[Vec<f64>], seed: u64) -> Option<Vec<(f32, f32)>> {
    let n = rows.len();
    if n < MIN_SPECTRA {
        return None;
    }
    let data: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| r.iter().map(|&v| v as f32).collect())
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1e-4).ok()?;
    let start: Vec<f32> = (0..2 * n).map(|_| normal.sample(&mut rng)).collect();
    let distance = |a: &Vec<f32>, b: &Vec<f32>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let embedding = std::panic::catch_unwind(|| {
        let mut tsne: bhtsne::tSNE<f32, Vec<f32>> = bhtsne::tSNE::new(&data);
        tsne.perplexity(perplexity(n))
            .epochs(1000)
            .initial_embedding(start.clone());
        if n <= EXACT_UP_TO {
            tsne.exact(distance);
        } else {
            tsne.barnes_hut(0.5, distance);
        }
        tsne.embedding()
    })
    .ok()?;
    Some(embedding.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clusters_stay_apart_and_tiny_sets_give_nothing() {
        assert!(embed(&vec![vec![0.0; 3]; 3], 1).is_none());
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![(i / 20) as f64 * 10.0 + (i % 7) as f64 * 0.01; 5])
            .collect();
        let e = embed(&rows, 1).unwrap();
        assert_eq!(e.len(), 40);
        assert!(e.iter().all(|(x, y)| x.is_finite() && y.is_finite()));
        let centre = |r: std::ops::Range<usize>| {
            let n = r.len() as f32;
            r.fold((0.0, 0.0), |(sx, sy), i| (sx + e[i].0 / n, sy + e[i].1 / n))
        };
        let (a, b) = (centre(0..20), centre(20..40));
        let spread = e[..20]
            .iter()
            .map(|p| ((p.0 - a.0).powi(2) + (p.1 - a.1).powi(2)).sqrt())
            .fold(0.0f32, f32::max);
        assert!(
            ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() > spread,
            "clusters separate"
        );
        assert_eq!(perplexity(10), 3.0);
    }
}
