//! The fast CPU path: im2col + a multi-threaded GEMM (the `gemm` crate) for the convolutions,
//! and rayon-parallel loops for pooling. It is what to run where no GPU adapter exists, and the
//! honest CPU side of a GPU-vs-CPU comparison. Every function here is tested against the plain
//! reference in [`crate::cpu`], which stays the oracle. Results are deterministic: work is split
//! over disjoint outputs, never over a sum.

mod conv;
mod pool;

pub use conv::{conv2d, conv_transpose2d};
pub use pool::{avg_pool2d, max_pool2d, max_unpool2d};

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)` for row-major `dst` and strided operands
/// (`lhs[i, p] = lhs[i*lrs + p*lcs]`, `rhs[p, j] = rhs[p*rrs + j*rcs]`), on all cores.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lrs, lcs): (usize, usize),
    rhs: &[f32],
    (rrs, rcs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    // The raw-pointer GEMM below must stay inside these slices.
    assert!(dst.len() > last(m, n, n, 1));
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    assert!(lhs.len() > last(m, lrs, k, lcs) && rhs.len() > last(k, rrs, n, rcs));
    // SAFETY: the asserts above keep every index the GEMM forms (i*rs + j*cs for i < rows,
    // j < cols) inside the three slices, and `dst` does not alias the operands (&mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lcs as isize,
            lrs as isize,
            rhs.as_ptr(),
            rcs as isize,
            rrs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}
