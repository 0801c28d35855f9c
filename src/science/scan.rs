//! A survey-sized pool file predicted chunk by chunk, in flat memory: one thread reads the
//! next chunk while this one predicts, and only what goes to the researcher is kept (the
//! oracle batch, the candidates), each chunk's labels and entropies going straight out.

use std::{
    collections::{BinaryHeap, HashSet},
    hash::{Hash, Hasher},
    ops::Range,
    time::{Duration, Instant},
};

use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{
    Cancel, Progress,
    active::{BALD_SAMPLES, argmax},
    cnn::{self, Cnn, CnnError},
    pool::{PoolFile, refuse_non_finite},
    selection::{RARE_SHARE, Strategy, margin},
};

/// How [`scan`] reads and ranks a pool.
pub struct ScanOptions {
    /// Spectra per inference batch.
    pub batch: usize,
    /// Pool rows read at once ([`super::pool::chunk_rows`] unless a test wants small ones).
    pub chunk_rows: usize,
    /// Size of the oracle batch.
    pub oracle_size: usize,
    /// Class indexes whose predictions are candidates.
    pub candidate_classes: Vec<usize>,
    /// Keep every candidate (for `show_candidates`); otherwise only count them.
    pub keep_candidates: bool,
    /// Size and seed of the uniform sample among the candidates (performance estimation).
    pub sample: usize,
    pub seed: u64,
    /// How the oracle batch is ranked (a balanced batch reserves places for the candidate
    /// classes).
    pub strategy: Strategy,
}

/// A spectrum the scan keeps for the researcher: its index among the predicted spectra.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub index: usize,
    pub label: usize,
    pub entropy: f64,
    /// The strategy's uncertainty (the entropy, the margin's, or BALD's).
    pub score: f64,
}

/// Ordered so that the heap's top is the pick to drop first: lowest score, then (among
/// equal scores) the highest index, as [`super::selection::oracle_batch`] ranks them.
struct Worst(Pick);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.index.cmp(&other.0.index))
    }
}

/// What one pass over a pool found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Pool rows predicted (the rest were training spectra or repeated names), in order.
    pub runs: Vec<Range<usize>>,
    /// Spectra predicted; the indexes below count them from 0.
    pub predicted: usize,
    /// The oracle batch, most uncertain first.
    pub oracle: Vec<Pick>,
    /// Every spectrum predicted as a candidate class, in order, when asked to keep them.
    pub candidates: Vec<Pick>,
    /// How many spectra were predicted as a candidate class.
    pub candidate_count: usize,
    /// `min(sample, candidate_count)` candidates drawn uniformly (reservoir), in order.
    pub sample: Vec<Pick>,
}

impl Scan {
    /// The pool rows of predicted spectra `indexes`.
    pub fn rows(&self, indexes: impl Iterator<Item = usize>) -> Vec<usize> {
        // Index of the first spectrum of each run.
        let firsts: Vec<usize> = self
            .runs
            .iter()
            .scan(0, |before, r| {
                let first = *before;
                *before += r.len();
                Some(first)
            })
            .collect();
        indexes
            .map(|i| {
                let k = firsts.partition_point(|&f| f <= i) - 1;
                self.runs[k].start + i - firsts[k]
            })
            .collect()
    }
}

/// Predicts every spectrum of `pool` except those named in `exclude` (and later rows of a
/// name seen before), a chunk at a time: one thread reads the next chunk while this one
/// predicts, and `sink` receives each chunk's labels and entropies as they are ready. Only
/// the oracle batch and the candidates are kept. Progress counts pool rows.
#[allow(clippy::too_many_arguments)]
pub fn scan(
    cnn: &Cnn,
    pool: &PoolFile,
    exclude: &HashSet<String>,
    opts: &ScanOptions,
    cancel: &Cancel,
    progress: &Progress,
    log: &(dyn Fn(&str) + Sync),
    mut sink: impl FnMut(&[i64], &[f64]) -> anyhow::Result<()>,
) -> anyhow::Result<Scan> {
    let batch = if cnn.device().is_cpu() {
        // Large CPU batches only cost memory and cache (candle-cpu.md: ~256 is fastest).
        opts.batch.min(256)
    } else {
        opts.batch
    };
    let chunk = opts.chunk_rows.max(1);
    let n = pool.len();
    let mut out = Scan::default();
    // A balanced batch keeps, besides the most uncertain overall, the most uncertain of each
    // candidate class; the overall ones then fill what those leave (so it keeps more).
    let reserved = match opts.strategy {
        Strategy::Balanced => {
            ((opts.oracle_size as f64 * RARE_SHARE).round() as usize).min(opts.oracle_size)
        }
        _ => 0,
    };
    let overall = opts.oracle_size + reserved;
    let mut oracle: BinaryHeap<Worst> = BinaryHeap::with_capacity(overall + 1);
    let mut per_class: Vec<BinaryHeap<Worst>> = (0..opts.candidate_classes.len())
        .map(|_| BinaryHeap::new())
        .collect();
    // Names that occur more than once (rare), and which of those were seen: a row of such a
    // name after its first is left out.
    let repeated = repeated_names(pool)?;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let started = Instant::now();
    let mut last_line = started;
    std::thread::scope(|threads| -> anyhow::Result<()> {
        type Read = hdf5::Result<(usize, Vec<String>, Array2<f64>)>;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Read>(1);
        threads.spawn(move || {
            for start in (0..n).step_by(chunk) {
                let end = (start + chunk).min(n);
                let read = pool
                    .names(start..end)
                    .and_then(|names| Ok((start, names, pool.fluxes(start..end)?)));
                if tx.send(read).is_err() {
                    break;
                }
            }
        });
        for read in rx {
            if cancel.is_cancelled() {
                return Err(CnnError::Cancelled.into());
            }
            let (start, names, fluxes) = read.map_err(|e| {
                anyhow::anyhow!("cannot read the pool {}: {e}", pool.path().display())
            })?;
            let mut kept: Vec<&[f64]> = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                if exclude.contains(name)
                    || (!repeated.is_empty() && {
                        let h = name_hash(name);
                        repeated.contains(&h) && !seen.insert(h)
                    })
                {
                    continue;
                }
                let row = fluxes.row(i).to_slice().unwrap_or(&[]);
                refuse_non_finite("pool", pool.path(), name, start + i, row)?;
                match out.runs.last_mut() {
                    Some(r) if r.end == start + i => r.end += 1,
                    _ => out.runs.push(start + i..start + i + 1),
                }
                kept.push(row);
            }
            // BALD's dropout samples come with the plain prediction, from one pass of the
            // convolutions.
            let (probabilities, bald) = match opts.strategy {
                Strategy::Bald => {
                    let seed = opts.seed ^ (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let (p, info) = cnn.predict_mc(&kept, batch, BALD_SAMPLES, seed, cancel)?;
                    (p, Some(info))
                }
                _ => (cnn.predict(&kept, batch, cancel)?, None),
            };
            let labels: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
            let entropies: Vec<f64> = probabilities.iter().map(|p| cnn::entropy(p)).collect();
            let scores: Vec<f64> = match (opts.strategy, bald) {
                (_, Some(info)) => info,
                (Strategy::Margin, None) => probabilities.iter().map(|p| margin(p)).collect(),
                _ => entropies.clone(),
            };
            sink(
                &labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                &entropies,
            )?;
            for (k, ((&label, &entropy), &score)) in
                labels.iter().zip(&entropies).zip(&scores).enumerate()
            {
                let pick = Pick {
                    index: out.predicted + k,
                    label,
                    entropy,
                    score,
                };
                if reserved > 0
                    && let Some(c) = opts.candidate_classes.iter().position(|&c| c == label)
                {
                    keep_top(&mut per_class[c], pick, reserved);
                }
                if opts.candidate_classes.contains(&label) {
                    out.candidate_count += 1;
                    if opts.keep_candidates {
                        out.candidates.push(pick);
                    }
                    // Algorithm R: the k-th candidate replaces a random one with chance s/k.
                    if out.sample.len() < opts.sample {
                        out.sample.push(pick);
                    } else {
                        let j = rng.random_range(0..out.candidate_count);
                        if j < opts.sample {
                            out.sample[j] = pick;
                        }
                    }
                }
                keep_top(&mut oracle, pick, overall);
            }
            out.predicted += labels.len();
            progress.advance(names.len() as u64);
            if last_line.elapsed() >= Duration::from_secs(10) {
                last_line = Instant::now();
                log(&rate_line(start + names.len(), n, started.elapsed()));
            }
        }
        Ok(())
    })?;
    let overall: Vec<Pick> = oracle.into_sorted_vec().into_iter().map(|w| w.0).collect();
    out.oracle = if reserved > 0 {
        // As selection::balanced_batch: round robin over the classes' most uncertain, then
        // the most uncertain overall that are not taken yet.
        let mut queues: Vec<std::collections::VecDeque<Pick>> = per_class
            .into_iter()
            .map(|h| h.into_sorted_vec().into_iter().map(|w| w.0).collect())
            .collect();
        let mut batch: Vec<Pick> = Vec::with_capacity(opts.oracle_size);
        while batch.len() < reserved && queues.iter().any(|q| !q.is_empty()) {
            for q in &mut queues {
                if batch.len() == reserved {
                    break;
                }
                if let Some(p) = q.pop_front() {
                    batch.push(p);
                }
            }
        }
        let taken: HashSet<usize> = batch.iter().map(|p| p.index).collect();
        let room = opts.oracle_size.saturating_sub(batch.len());
        batch.extend(
            overall
                .into_iter()
                .filter(|p| !taken.contains(&p.index))
                .take(room),
        );
        batch
    } else {
        overall
    };
    out.sample.sort_by_key(|p| p.index);
    Ok(out)
}

/// Keeps `pick` in `heap` if it is among the `size` most uncertain so far.
fn keep_top(heap: &mut BinaryHeap<Worst>, pick: Pick, size: usize) {
    if size == 0 {
        return;
    }
    if heap.len() >= size && heap.peek().is_none_or(|top| Worst(pick) > *top) {
        return;
    }
    heap.push(Worst(pick));
    if heap.len() > size {
        heap.pop();
    }
}

fn name_hash(name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// Hashes of the names that occur more than once in `pool`, from one pass over the names
/// alone (8 bytes a spectrum while it runs, nothing kept but the repeats).
fn repeated_names(pool: &PoolFile) -> anyhow::Result<HashSet<u64>> {
    let mut hashes = Vec::with_capacity(pool.len());
    for start in (0..pool.len()).step_by(65_536) {
        let names = pool
            .names(start..(start + 65_536).min(pool.len()))
            .map_err(|e| anyhow::anyhow!("cannot read the pool {}: {e}", pool.path().display()))?;
        hashes.extend(names.iter().map(|n| name_hash(n)));
    }
    hashes.sort_unstable();
    Ok(hashes
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect())
}

/// "predicting: 1,200,000 of 4,100,000 pool spectra (41,000/s, about 71 s left)".
pub fn rate_line(done: usize, total: usize, elapsed: Duration) -> String {
    format!(
        "predicting: {} of {} pool spectra ({})",
        thousands(done),
        thousands(total),
        pace(done as u64, total as u64, elapsed)
    )
}

/// "41,000/s, about 71 s left" ("41,000/s" once `done` reached `total`).
pub fn pace(done: u64, total: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut text = format!("{}/s", thousands(rate as usize));
    if total > done {
        let left = (total - done) as f64 / rate.max(1e-9);
        text.push_str(&format!(", about {left:.0} s left"));
    }
    text
}

/// 1234567 → "1,234,567".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::science::{
        active::predict,
        h5::{SpectraWriter, read_spectra},
        selection,
    };

    #[test]
    fn a_pool_read_in_chunks_ranks_as_the_whole_pool_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.h5");
        let points = 64;
        let wave: Vec<f64> = (0..points).map(|i| 6500.0 + i as f64).collect();
        let mut w = SpectraWriter::create(&path, &wave).unwrap();
        let name = |i: usize| format!("spec-{}.fits", if i == 150 { 10 } else { i });
        for i in 0..203 {
            let row: Vec<f64> = (0..points)
                .map(|p| ((p * (1 + i % 5)) as f64 / 9.0).sin() * (i as f64 / 203.0))
                .collect();
            w.push(&name(i), &row).unwrap();
        }
        w.finish().unwrap();
        let cnn = Cnn::new(points, 3, &Device::Cpu, 4).unwrap();
        let exclude: HashSet<String> = [name(3), name(120)].into_iter().collect();

        let whole = read_spectra(&path).unwrap();
        let mut seen = HashSet::new();
        let kept: Vec<usize> = (0..whole.len())
            .filter(|&i| !exclude.contains(&whole.filenames[i]) && seen.insert(&whole.filenames[i]))
            .collect();
        assert_eq!(kept.len(), 203 - 3);
        let refs: Vec<&[f64]> = kept.iter().map(|&i| whole.row(i)).collect();
        let expected = predict(&cnn, &refs, 256, &Cancel::new()).unwrap();
        let candidates = selection::candidates(&expected.labels, &[1, 2]);

        let pool = PoolFile::open(&path).unwrap();
        let strategies = [Strategy::Entropy, Strategy::Margin, Strategy::Balanced];
        for (chunk, strategy) in [7, 203, 1000]
            .into_iter()
            .flat_map(|c| strategies.map(|s| (c, s)))
        {
            let oracle = crate::science::active::query(
                strategy,
                &cnn,
                &refs,
                &expected,
                20,
                &[1, 2],
                0,
                &Cancel::new(),
            )
            .unwrap();
            let (mut labels, mut entropies) = (Vec::new(), Vec::new());
            let opts = ScanOptions {
                batch: 16_384,
                chunk_rows: chunk,
                oracle_size: 20,
                candidate_classes: vec![1, 2],
                keep_candidates: true,
                sample: 5,
                seed: 3,
                strategy,
            };
            let progress = Progress::new();
            let scan = scan(
                &cnn,
                &pool,
                &exclude,
                &opts,
                &Cancel::new(),
                &progress,
                &|_| {},
                |l, e| {
                    labels.extend(l.iter().map(|&l| l as usize));
                    entropies.extend_from_slice(e);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(labels, expected.labels, "chunks of {chunk}");
            assert_eq!(entropies, expected.entropies, "chunks of {chunk}");
            assert_eq!(
                scan.oracle.iter().map(|p| p.index).collect::<Vec<_>>(),
                oracle,
                "{strategy}, chunks of {chunk}"
            );
            assert_eq!(
                scan.candidates.iter().map(|p| p.index).collect::<Vec<_>>(),
                candidates
            );
            assert_eq!(scan.predicted, kept.len());
            assert_eq!(scan.candidate_count, candidates.len());
            assert_eq!(scan.sample.len(), 5);
            assert!(scan.sample.windows(2).all(|w| w[0].index < w[1].index));
            assert!(scan.sample.iter().all(|p| candidates.contains(&p.index)));
            assert_eq!(scan.rows(0..kept.len()), kept);
            assert_eq!(progress.snapshot().1, 203);
        }
    }

    #[test]
    fn a_scan_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.h5");
        let mut w = SpectraWriter::create(&path, &[0.0; 32]).unwrap();
        for i in 0..100 {
            w.push(&format!("s{i}"), &[0.5; 32]).unwrap();
        }
        w.finish().unwrap();
        let cnn = Cnn::new(32, 3, &Device::Cpu, 1).unwrap();
        let cancel = Cancel::new();
        cancel.cancel();
        let opts = ScanOptions {
            batch: 8,
            chunk_rows: 10,
            oracle_size: 5,
            candidate_classes: vec![],
            keep_candidates: false,
            sample: 0,
            seed: 0,
            strategy: Strategy::Bald,
        };
        let pool = PoolFile::open(&path).unwrap();
        let err = scan(
            &cnn,
            &pool,
            &HashSet::new(),
            &opts,
            &cancel,
            &Progress::new(),
            &|_| {},
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(err.downcast_ref::<CnnError>(), Some(CnnError::Cancelled)),
            "{err}"
        );
    }

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(thousands(4_100_000), "4,100,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(
            rate_line(1_000_000, 4_000_000, Duration::from_secs(25)),
            "predicting: 1,000,000 of 4,000,000 pool spectra (40,000/s, about 75 s left)"
        );
    }
}
