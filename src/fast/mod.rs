//! The fast CPU path: im2col + GEMM (the `gemm` crate) for the convolutions, Winograd
//! F(2×2, 3×3) for wide 3×3 stride-1 layers (on AVX-512, small images in a layout of their
//! own), direct AVX-512 kernels for stems (few input channels), stride-2 3×3 and 4×4 layers
//! and stride-2 4×4 transposed convolutions, and rayon-parallel loops for pooling. It is what
//! to run where no GPU adapter exists, and the honest CPU side of a GPU-vs-CPU comparison.
//! Every function here is tested against the plain reference in [`crate::cpu`], which stays
//! the oracle. Results are deterministic: work is split over disjoint outputs, never over a
//! sum, and how it is split depends on the shapes alone (the stem kernel's bands follow the
//! thread count, but each of its outputs is summed whole, in one order, by one task).
//!
//! The convolutions split their work into tasks themselves — bands of output rows, chunks of
//! output channels — and run one single-threaded GEMM per task on rayon's pool. On the 2-core
//! benchmark machine that is 1.3–2× faster than handing one large product to the GEMM's own
//! threading (benchmarks/HISTORY.md), and each task's im2col block stays in the core's cache.

use std::mem::MaybeUninit;

use crate::error::Result;
use crate::tensor::Tensor;

mod conv;
mod conv_backward;
mod pool;
mod train;

pub use conv::{conv2d, conv2d_act, conv_transpose2d, conv_transpose2d_act};
pub use conv_backward::{
    bias_backward, conv2d_backward_input, conv2d_backward_weight, conv_transpose2d_backward_input,
    conv_transpose2d_backward_weight,
};
pub use pool::{avg_pool2d, max_pool2d, max_pool2d_backward, max_unpool2d, max_unpool2d_backward};
pub use train::{
    activation, activation_backward, add, mse_loss, sgd_update, softmax_cross_entropy,
};

/// Hands back to the allocator the element buffers of dropped tensors that the fast path keeps
/// for its next outputs (at most 256 MB; see `src/recycle.rs`): outputs written on pages
/// already touched skip a page fault per 4 KiB, which cost a 3.2 MB output (W3's) about
/// 1 ms on the benchmark machine.
pub fn release_buffers() {
    crate::recycle::release();
}

/// Where a GEMM writes: a row-major matrix at `ptr` with row stride `rs`, inside `len` writable
/// floats from `ptr`. Tasks on several threads write disjoint parts of one output through
/// copies of one `Dst`. A `Dst` over a fresh [`output`] starts uninitialized: each element is
/// written (by `sgemm` or through [`Dst::row_uninit`]) before [`Dst::row`] may read it.
#[derive(Clone, Copy)]
struct Dst {
    ptr: *mut f32,
    len: usize,
    rs: usize,
}

// SAFETY: a `Dst` is only written through `sgemm`, `Dst::row` and `Dst::row_uninit`, whose
// callers guarantee that concurrent tasks write disjoint elements.
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

impl Dst {
    /// The whole of `out` as a matrix with row stride `rs`.
    fn new(out: &mut [f32], rs: usize) -> Self {
        Dst {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            rs,
        }
    }

    /// The sub-matrix starting at row `r`, column `c`.
    fn at(self, r: usize, c: usize) -> Self {
        let off = r * self.rs + c;
        assert!(off <= self.len, "Dst::at({r}, {c}) outside the output");
        Dst {
            ptr: self.ptr.wrapping_add(off),
            len: self.len - off,
            ..self
        }
    }

    /// Row `r`, columns `[0, cols)`, as a slice.
    ///
    /// # Safety
    /// No other thread may read or write these elements while the slice lives, and they have
    /// been written.
    unsafe fn row(self, r: usize, cols: usize) -> &'static mut [f32] {
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the elements are initialized by
        // the caller's promise.
        unsafe { &mut *(self.row_uninit(r, cols) as *mut [MaybeUninit<f32>] as *mut [f32]) }
    }

    /// Row `r`, columns `[0, cols)`, as a slice to write (its elements may be uninitialized).
    ///
    /// # Safety
    /// No other thread may read or write these elements while the slice lives.
    unsafe fn row_uninit(self, r: usize, cols: usize) -> &'static mut [MaybeUninit<f32>] {
        assert!(
            cols == 0 || r * self.rs + cols <= self.len,
            "Dst::row outside the output"
        );
        // SAFETY: in bounds (asserted); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.rs).cast(), cols) }
    }
}

/// A tensor of `shape` whose elements `fill` writes through the [`Dst`] it is given (the whole
/// tensor, row stride `rs`), without zeroing them first: the convolutions' GEMMs and
/// transforms write every output element anyway, and zeroing it first (plus the page faults
/// of a zeroed allocation) cost W3 12% and W2 9% (in-process A/B). Debug builds fill it with
/// NaN first, so that an element `fill` missed shows in the tests.
///
/// # Safety
/// `fill` must write every element of the tensor, and read none before writing it.
unsafe fn output(shape: [usize; 4], rs: usize, fill: impl FnOnce(Dst)) -> Result<Tensor> {
    let len = shape.iter().product();
    let mut data = crate::recycle::take(len);
    let spare = &mut data.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        spare.fill(MaybeUninit::new(f32::NAN));
    }
    fill(Dst {
        ptr: spare.as_mut_ptr().cast(),
        len,
        rs,
    });
    // SAFETY: `fill` wrote all `len` elements (the caller's promise).
    unsafe { data.set_len(len) };
    Tensor::new(shape, data)
}

/// `dst (m×n) = lhs (m×k) · rhs (k×n)` for strided operands (`lhs[i, p] = lhs[i*lrs + p*lcs]`,
/// `rhs[p, j] = rhs[p*rrs + j*rcs]`), on the calling thread.
///
/// # Safety
/// No other thread may read or write the `m×n` elements of `dst` during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: Dst,
    lhs: &[f32],
    lstrides: (usize, usize),
    rhs: &[f32],
    rstrides: (usize, usize),
) {
    // SAFETY: the caller's promise.
    unsafe { sgemm_into(false, (m, n, k), dst, (lhs, lstrides), (rhs, rstrides)) }
}

/// `dst (m×n) += lhs (m×k) · rhs (k×n)`, else as [`sgemm`] (whose elements `dst` must hold).
///
/// # Safety
/// No other thread may read or write the `m×n` elements of `dst` during the call, and they
/// have been written.
unsafe fn sgemm_acc(
    (m, n, k): (usize, usize, usize),
    dst: Dst,
    lhs: (&[f32], (usize, usize)),
    rhs: (&[f32], (usize, usize)),
) {
    // SAFETY: the caller's promise.
    unsafe { sgemm_into(true, (m, n, k), dst, lhs, rhs) }
}

/// [`sgemm`] (`accumulate` false) or [`sgemm_acc`] (true).
///
/// # Safety
/// As theirs.
unsafe fn sgemm_into(
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    dst: Dst,
    (lhs, (lrs, lcs)): (&[f32], (usize, usize)),
    (rhs, (rrs, rcs)): (&[f32], (usize, usize)),
) {
    if m == 0 || n == 0 || (accumulate && k == 0) {
        return;
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    // The raw-pointer GEMM below must stay inside the operands and the output.
    assert!((m == 1 || n <= dst.rs) && dst.len > last(m, dst.rs, n, 1));
    if k == 0 {
        for r in 0..m {
            // SAFETY: in bounds (asserted above); exclusive by the caller's promise.
            unsafe { dst.row_uninit(r, n) }.fill(MaybeUninit::new(0.0));
        }
        return;
    }
    assert!(lhs.len() > last(m, lrs, k, lcs) && rhs.len() > last(k, rrs, n, rcs));
    // SAFETY: the asserts above keep every index the GEMM forms (i*rs + j*cs for i < rows,
    // j < cols) inside the operands and the output, the operands are shared borrows that the
    // output cannot alias (it comes from a `&mut`), and the caller keeps other threads off the
    // output's elements.
    //
    // It is asked for the transpose, `dstᵀ (n×m) = rhsᵀ · lhsᵀ`, on the same memory: the
    // crate's kernels run down the columns of its output, and ours are the pixels (or tiles),
    // many and contiguous. Posed the other way, the same products ran 0–12% slower on the
    // convolutions and several times slower on Winograd's small ones (benchmarks/HISTORY.md).
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            dst.ptr,
            dst.rs as isize,
            1,
            accumulate,
            rhs.as_ptr(),
            rrs as isize,
            rcs as isize,
            lhs.as_ptr(),
            lrs as isize,
            lcs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
