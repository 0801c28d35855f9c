//! Matrix products over slices through `gemm`, split over the rayon threads, and the small
//! reductions around them.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// A read-only matrix operand inside a slice: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    pub(super) fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Mat { data, rs, cs }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Raw pointers handed to the threads of one product; each thread writes its own block.
#[derive(Clone, Copy)]
pub(super) struct Shared(*mut f32, *const f32, *const f32);
// SAFETY: the blocks written through `.0` by different threads are disjoint (see `matmul`),
// and `.1`, `.2` are only read while the borrows they come from are alive.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// `dst (m × n, row-major) = a (m × k) · b (k × n)`, split over the rayon threads into blocks
/// of rows or of columns, whichever dimension is longer (gemm's own threading splits poorly
/// for the long-k and short-m products of backward: measured 95-230 GFLOP/s against 190-310
/// when split here).
pub(super) fn matmul(dst: &mut [f32], m: usize, k: usize, n: usize, a: Mat, b: Mat) {
    matmul_strided(dst, (n, 1), m, k, n, a, b)
}

/// [`matmul`] with `dst (i, j)` at `dst[i·rs + j·cs]`.
pub(super) fn matmul_strided(
    dst: &mut [f32],
    (drs, dcs): (usize, usize),
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
) {
    let dst_fits = m == 0 || n == 0 || (m - 1) * drs + (n - 1) * dcs < dst.len();
    assert!(
        dst_fits && a.fits(m, k) && b.fits(k, n),
        "matmul operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            (0..n).for_each(|j| dst[i * drs + j * dcs] = 0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let shared = Shared(dst.as_mut_ptr(), a.data.as_ptr(), b.data.as_ptr());
    let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        let s = shared;
        // SAFETY: `fits` checked every element the product reads; rows × cols is inside dst
        // (m × n), and blocks given to different threads do not overlap.
        unsafe {
            gemm(
                rows.len(),
                cols.len(),
                k,
                s.0.add(rows.start * drs + cols.start * dcs),
                dcs as isize,
                drs as isize,
                false,
                s.1.add(rows.start * a.rs),
                a.cs as isize,
                a.rs as isize,
                s.2.add(cols.start * b.cs),
                b.cs as isize,
                b.rs as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if threads == 1 || m * n * k < 1 << 20 {
        block(0..m, 0..n);
    } else if m >= n {
        let per = m.div_ceil(threads);
        (0..threads)
            .into_par_iter()
            .for_each(|t| block((t * per).min(m)..((t + 1) * per).min(m), 0..n));
    } else {
        let per = n.div_ceil(threads);
        (0..threads)
            .into_par_iter()
            .for_each(|t| block(0..m, (t * per).min(n)..((t + 1) * per).min(n)));
    }
}

/// Column sums of a (rows × n) matrix into `out`.
pub(super) fn column_sums(x: &[f32], n: usize, out: &mut [f32]) {
    let rows_per = (x.len() / n)
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let sums = x
        .par_chunks(rows_per * n)
        .map(|block| {
            let mut s = vec![0.0f32; n];
            for row in block.chunks_exact(n) {
                s.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            s
        })
        .reduce(
            || vec![0.0f32; n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    out.copy_from_slice(&sums);
}

/// `dst (cols × rows) = srcᵀ` for a row-major `src (rows × cols)`, in cache-sized tiles.
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}
