//! SMOTE oversampling (imbalanced-learn's algorithm): every class is brought up to the size
//! of the largest by points on the segment between a spectrum and one of its k nearest
//! neighbours of the same class. k = 5, or n − 1 for a class of n ≤ 5; a class of one is
//! repeated; an absent class is left out. Deterministic for a seed.

use rand::{Rng, SeedableRng, rngs::StdRng};

pub const K_NEIGHBOURS: usize = 5;

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The `k` nearest other members of `members` (indices into `rows`) for each member.
fn neighbours(rows: &[Vec<f64>], members: &[usize], k: usize) -> Vec<Vec<usize>> {
    members
        .iter()
        .map(|&i| {
            let mut d: Vec<(f64, usize)> = members
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| (squared_distance(&rows[i], &rows[j]), j))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            d.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

/// The balanced set: the input rows first, then the synthetic ones (with their labels).
pub fn smote(
    rows: &[Vec<f64>],
    labels: &[usize],
    classes: usize,
    seed: u64,
) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let members: Vec<Vec<usize>> = (0..classes)
        .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect())
        .collect();
    let target = members.iter().map(Vec::len).max().unwrap_or(0);
    let (mut out_rows, mut out_labels) = (rows.to_vec(), labels.to_vec());
    for (class, members) in members.iter().enumerate() {
        let n = members.len();
        if n == 0 || n == target {
            continue;
        }
        let k = K_NEIGHBOURS.min(n - 1);
        let near = if k > 0 {
            neighbours(rows, members, k)
        } else {
            Vec::new()
        };
        for _ in 0..target - n {
            let a = rng.random_range(0..n);
            let row = if k == 0 {
                rows[members[a]].clone()
            } else {
                let b = near[a][rng.random_range(0..k)];
                let gap: f64 = rng.random();
                rows[members[a]]
                    .iter()
                    .zip(&rows[b])
                    .map(|(x, y)| x + gap * (y - x))
                    .collect()
            };
            out_rows.push(row);
            out_labels.push(class);
        }
    }
    (out_rows, out_labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_present_class_reaches_the_largest_and_an_absent_one_stays_absent() {
        let rows: Vec<Vec<f64>> = (0..13).map(|i| vec![i as f64, (i * i) as f64]).collect();
        let labels = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3];
        let (r, l) = smote(&rows, &labels, 4, 7);
        let count = |c| l.iter().filter(|&&x| x == c).count();
        assert_eq!((count(0), count(1), count(2), count(3)), (10, 10, 0, 10));
        assert_eq!(r.len(), 30);
        // A class of one is repeated; a class of two interpolates between its two members.
        assert!(
            r[13..]
                .iter()
                .zip(&l[13..])
                .filter(|(_, c)| **c == 3)
                .all(|(row, _)| *row == rows[12])
        );
        assert!(
            r[13..]
                .iter()
                .zip(&l[13..])
                .filter(|(_, c)| **c == 1)
                .all(|(row, _)| (10.0..=11.0).contains(&row[0]))
        );
        assert_eq!(smote(&rows, &labels, 4, 7), (r, l), "the same for a seed");
    }
}
