//! Fast pooling: the planes are split over the CPU cores.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::params::pool::{unpool_shape, Pool2d, PoolGeometry};
use crate::tensor::Tensor;

/// The in-bounds taps of every window along axis `a`: for window `o`, the first in-bounds
/// input coordinate and how many taps (spaced by the dilation) lie inside the input.
fn window_axis(g: &PoolGeometry, a: usize) -> Vec<(usize, usize)> {
    let n = g.input[a] as isize;
    (0..g.output[a])
        .map(|o| {
            let mut inside = g.taps(a, o).filter(|&t| t >= 0 && t < n);
            let first = inside.next();
            (
                first.unwrap_or(0) as usize,
                first.map_or(0, |_| 1 + inside.count()),
            )
        })
        .collect()
}

/// The column walk shared by the pooling loops: for every output row, its window rows, and in
/// each window row, tap `c` of every window in turn (so each output still sees its taps in
/// row-major window order, as the reference walks them). `tap(ox, xx, row)` gets the output
/// column, the input column and the input row; windows whose taps all lie inside the input
/// (the interior columns) take no per-tap test.
struct Walk {
    rows: Vec<(usize, usize)>,
    /// Per output column: (first in-bounds tap index, one past the last).
    cols: Vec<(usize, usize)>,
    /// Output columns whose windows lie wholly inside the input.
    interior: std::ops::Range<usize>,
    kw: usize,
}

impl Walk {
    fn new(g: &PoolGeometry) -> Self {
        let kw = g.kernel[1];
        let (s, d, p) = (
            g.stride[1] as isize,
            g.dilation[1] as isize,
            g.padding[1] as isize,
        );
        let w = g.input[1] as isize;
        let cols: Vec<(usize, usize)> = (0..g.output[1])
            .map(|ox| {
                let start = ox as isize * s - p;
                let inside = |c: &usize| (0..w).contains(&(start + *c as isize * d));
                let lo = (0..kw).find(inside).unwrap_or(kw);
                let hi = (0..kw).rfind(inside).map_or(lo, |c| c + 1);
                (lo, hi)
            })
            .collect();
        let full = |ox: &usize| cols[*ox] == (0, kw);
        let lo = (0..cols.len()).find(full).unwrap_or(cols.len());
        let hi = (lo..cols.len()).find(|ox| !full(ox)).unwrap_or(cols.len());
        Walk {
            rows: window_axis(g, 0),
            cols,
            interior: lo..hi,
            kw,
        }
    }

    /// Runs output row `oy`'s windows in the order described above, as strips: `strip(oxs,
    /// xx, yy)` takes tap `c` of the windows of output columns `oxs`, whose first one reads
    /// input column `xx` of row `yy` and the next ones a stride apart (the interior windows in
    /// one strip, so the caller's loop over it can vectorize; edge windows one by one).
    #[inline(always)]
    fn row_strips(
        &self,
        g: &PoolGeometry,
        oy: usize,
        mut strip: impl FnMut(std::ops::Range<usize>, usize, usize),
    ) {
        let (s, d, p) = (g.stride[1], g.dilation[1], g.padding[1]);
        let (y0, ny) = self.rows[oy];
        for yy in (0..ny).map(|j| y0 + j * g.dilation[0]) {
            for c in 0..self.kw {
                let at = |ox: usize| ox * s + c * d - p;
                let inside = |ox: &usize| {
                    let (lo, hi) = self.cols[*ox];
                    (lo..hi).contains(&c)
                };
                for ox in (0..self.interior.start).filter(inside) {
                    strip(ox..ox + 1, at(ox), yy);
                }
                if !self.interior.is_empty() {
                    // Interior windows: ox*s + c*d - p is inside the row.
                    strip(self.interior.clone(), at(self.interior.start), yy);
                }
                for ox in (self.interior.end..self.cols.len()).filter(inside) {
                    strip(ox..ox + 1, at(ox), yy);
                }
            }
        }
    }

    /// Runs `tap(ox, xx, yy)` for output row `oy`'s windows, in the order described above.
    #[inline(always)]
    fn row(&self, g: &PoolGeometry, oy: usize, mut tap: impl FnMut(usize, usize, usize)) {
        let s = g.stride[1];
        self.row_strips(g, oy, |oxs, xx, yy| {
            for (k, ox) in oxs.enumerate() {
                tap(ox, xx + k * s, yy);
            }
        });
    }
}

/// PyTorch's `max_pool2d(..., return_indices=True)` on all cores; same contract as
/// [`crate::cpu::max_pool2d`] (each window's taps in the same order, so the same values and
/// indices).
pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<(Tensor, Tensor<u32>)> {
    let g = p.geometry("max_pool2d", x.shape())?;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    if g.windows_whole_and_disjoint() && oh * ow > 0 && g.n * g.c > 0 {
        return max_pool_disjoint(&g, x);
    }
    let mut vals = Tensor::zeros(g.output_shape())?;
    let mut idx = Tensor::<u32>::zeros(g.output_shape())?;
    if vals.is_empty() {
        return Ok((vals, idx));
    }
    let walk = Walk::new(&g);
    let first_col = window_axis(&g, 1);
    let per = (oh * ow).max(1);
    vals.data_mut()
        .par_chunks_mut(per)
        .zip(idx.data_mut().par_chunks_mut(per))
        .zip(x.data().par_chunks((h * w).max(1)))
        .for_each(|((v, i), xs)| {
            for ((oy, v), i) in v.chunks_mut(ow).enumerate().zip(i.chunks_mut(ow)) {
                // The first in-bounds tap is the index of an all-−∞ window; NaN wins and the
                // last NaN is kept, as PyTorch's CPU kernel does.
                let y0 = walk.rows[oy].0;
                v.fill(f32::NEG_INFINITY);
                for (i, &(x0, _)) in i.iter_mut().zip(&first_col) {
                    *i = (y0 * w + x0) as u32;
                }
                let strip = |v: &mut [f32], i: &mut [u32], t: usize| {
                    // Constant strides, so the compiler vectorizes the strip.
                    match g.stride[1] {
                        1 => max_strip::<1>(v, i, xs, t),
                        2 => max_strip::<2>(v, i, xs, t),
                        s => max_strip_by(v, i, xs, t, s),
                    }
                };
                walk.row_strips(&g, oy, |oxs, xx, yy| {
                    strip(&mut v[oxs.clone()], &mut i[oxs], yy * w + xx)
                });
            }
        });
    Ok((vals, idx))
}

/// Folds input element `t` of value `val` into a window's running maximum `v` at `i`: a
/// greater value or any NaN takes over (the last NaN stays), as PyTorch's CPU kernel does.
#[inline(always)]
fn fold_max(v: &mut f32, i: &mut u32, val: f32, t: u32) {
    // A bit mask and unconditional stores: no branches and no conditional stores, so strips
    // vectorize.
    let take = ((val > *v) | val.is_nan()) as u32;
    let m = take.wrapping_neg();
    *v = f32::from_bits((val.to_bits() & m) | (v.to_bits() & !m));
    *i = (t & m) | (*i & !m);
}

/// `fold_max` over consecutive windows `v`, `i` whose taps are input elements `t`, `t + S`, …
fn max_strip<const S: usize>(v: &mut [f32], i: &mut [u32], xs: &[f32], t: usize) {
    let n = v.len().min(i.len());
    if n == 0 {
        return;
    }
    let (v, i, src) = (&mut v[..n], &mut i[..n], &xs[t..][..(n - 1) * S + 1]);
    for k in 0..n {
        fold_max(&mut v[k], &mut i[k], src[k * S], (t + k * S) as u32);
    }
}

/// `max_strip` for a stride known only at run time.
fn max_strip_by(v: &mut [f32], i: &mut [u32], xs: &[f32], t: usize, s: usize) {
    for (k, (v, i)) in v.iter_mut().zip(i).enumerate() {
        fold_max(v, i, xs[t + k * s], (t + k * s) as u32);
    }
}

/// PyTorch's `avg_pool2d` on all cores; same contract as [`crate::cpu::avg_pool2d`] (each
/// window summed in the same order).
pub fn avg_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let g = p.geometry("avg_pool2d", x.shape())?;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    if g.windows_whole_and_disjoint() && oh * ow > 0 && g.n * g.c > 0 {
        return avg_pool_disjoint(&g, x);
    }
    let mut out = Tensor::zeros(g.output_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    let walk = Walk::new(&g);
    let divisors: Vec<f32> = (0..oh * ow)
        .map(|o| g.divisor(o / ow, o % ow) as f32)
        .collect();
    out.data_mut()
        .par_chunks_mut((oh * ow).max(1))
        .zip(x.data().par_chunks((h * w).max(1)))
        .for_each(|(o, xs)| {
            for (oy, o) in o.chunks_mut(ow).enumerate() {
                o.fill(0.0);
                walk.row(&g, oy, |ox, xx, yy| o[ox] += xs[yy * w + xx]);
                for (o, d) in o.iter_mut().zip(&divisors[oy * ow..]) {
                    *o /= *d;
                }
            }
        });
    Ok(out)
}

/// Average pooling over whole, disjoint windows in one pass: each input element read once,
/// each output written once (no zeroing pass), planes in parallel. Each window sums its taps
/// in row-major order starting from the first, as the reference does, then divides.
fn avg_pool_disjoint(g: &PoolGeometry, x: &Tensor) -> Result<Tensor> {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let len = g.n * g.c * oh * ow;
    let mut out = crate::recycle::take(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(oh * ow)
        .zip(x.data().par_chunks(h * w))
        .for_each(|(o, xs)| avg_planes(o, xs, g));
    // SAFETY: the n·c chunks of oh·ow cover all `len` elements, and `avg_planes` writes every
    // element of its chunk.
    unsafe { out.set_len(len) };
    Tensor::new(g.output_shape(), out)
}

/// One plane of [`avg_pool_disjoint`]; 2×2 windows get a loop the compiler vectorises.
#[multiversion::multiversion(targets = "simd")]
fn avg_planes(o: &mut [std::mem::MaybeUninit<f32>], xs: &[f32], g: &PoolGeometry) {
    let ([_, w], [_, ow], [kh, kw]) = (g.input, g.output, g.kernel);
    let d = (kh * kw) as f32;
    for (oy, orow) in o.chunks_exact_mut(ow).enumerate() {
        let rows = &xs[oy * kh * w..];
        if [kh, kw] == [2, 2] {
            let (a, b) = (&rows[..2 * ow], &rows[w..w + 2 * ow]);
            for ((o, a), b) in orow
                .iter_mut()
                .zip(a.chunks_exact(2))
                .zip(b.chunks_exact(2))
            {
                o.write((a[0] + a[1] + b[0] + b[1]) / d);
            }
            continue;
        }
        for (ox, o) in orow.iter_mut().enumerate() {
            let mut sum = rows[ox * kw];
            for ky in 0..kh {
                for kx in 0..kw {
                    if ky + kx > 0 {
                        sum += rows[ky * w + ox * kw + kx];
                    }
                }
            }
            o.write(sum / d);
        }
    }
}

/// Max pooling with indices over whole, disjoint windows in one pass: each input element read
/// once, values and indices written once (no initialising pass), planes in parallel. Each
/// window folds its taps in row-major order from −∞, as the general path does.
fn max_pool_disjoint(g: &PoolGeometry, x: &Tensor) -> Result<(Tensor, Tensor<u32>)> {
    let ([h, w], [oh, ow]) = (g.input, g.output);
    let len = g.n * g.c * oh * ow;
    let (mut vals, mut idx) = (crate::recycle::take(len), crate::recycle::take(len));
    vals.spare_capacity_mut()[..len]
        .par_chunks_mut(oh * ow)
        .zip(idx.spare_capacity_mut()[..len].par_chunks_mut(oh * ow))
        .zip(x.data().par_chunks(h * w))
        .for_each(|((v, i), xs)| max_planes(v, i, xs, g));
    // SAFETY: the n·c chunks of oh·ow cover all `len` elements of both, and `max_planes`
    // writes every element of its chunks.
    unsafe {
        vals.set_len(len);
        idx.set_len(len);
    }
    Ok((
        Tensor::new(g.output_shape(), vals)?,
        Tensor::new(g.output_shape(), idx)?,
    ))
}

/// One plane of [`max_pool_disjoint`]; 2×2 windows get a loop the compiler vectorises.
#[multiversion::multiversion(targets = "simd")]
fn max_planes(
    v: &mut [std::mem::MaybeUninit<f32>],
    i: &mut [std::mem::MaybeUninit<u32>],
    xs: &[f32],
    g: &PoolGeometry,
) {
    let ([_, w], [_, ow], [kh, kw]) = (g.input, g.output, g.kernel);
    for (oy, (vrow, irow)) in v
        .chunks_exact_mut(ow)
        .zip(i.chunks_exact_mut(ow))
        .enumerate()
    {
        let y0 = oy * kh;
        let rows = &xs[y0 * w..];
        if [kh, kw] == [2, 2] {
            let (a, b) = (&rows[..2 * ow], &rows[w..w + 2 * ow]);
            let it = vrow.iter_mut().zip(irow.iter_mut());
            for (ox, ((vo, io), (a, b))) in
                it.zip(a.chunks_exact(2).zip(b.chunks_exact(2))).enumerate()
            {
                let t = (y0 * w + 2 * ox) as u32;
                let (mut m, mut at) = (f32::NEG_INFINITY, t);
                fold_max(&mut m, &mut at, a[0], t);
                fold_max(&mut m, &mut at, a[1], t + 1);
                fold_max(&mut m, &mut at, b[0], t + w as u32);
                fold_max(&mut m, &mut at, b[1], t + w as u32 + 1);
                vo.write(m);
                io.write(at);
            }
            continue;
        }
        for (ox, (vo, io)) in vrow.iter_mut().zip(irow.iter_mut()).enumerate() {
            let t0 = y0 * w + ox * kw;
            let (mut m, mut at) = (f32::NEG_INFINITY, t0 as u32);
            for ky in 0..kh {
                for kx in 0..kw {
                    let t = t0 + ky * w + kx;
                    fold_max(&mut m, &mut at, xs[t], t as u32);
                }
            }
            vo.write(m);
            io.write(at);
        }
    }
}

/// PyTorch's `max_unpool2d` on all cores; same contract as [`crate::cpu::max_unpool2d`].
pub fn max_unpool2d(vals: &Tensor, idx: &Tensor<u32>, size: [usize; 2]) -> Result<Tensor> {
    scatter_planes("max_unpool2d", vals, idx, size, |o, v| *o = v)
}

/// `max_pool2d_backward` on all cores (planes in parallel, each summed in row-major window
/// order); same contract as [`crate::cpu::max_pool2d_backward`].
pub fn max_pool2d_backward(grad: &Tensor, idx: &Tensor<u32>, size: [usize; 2]) -> Result<Tensor> {
    scatter_planes("max_pool2d_backward", grad, idx, size, |o, v| *o += v)
}

/// [`crate::cpu::max_unpool2d_backward`] on all cores: the same check, then planes gathered in
/// parallel.
pub fn max_unpool2d_backward(grad: &Tensor, idx: &Tensor<u32>) -> Result<Tensor> {
    let op = "max_unpool2d_backward";
    let (d, size) = crate::params::pool::unpool_backward_shape(op, grad.shape(), idx.shape())?;
    let plane = size[0].saturating_mul(size[1]);
    let per = d[2].saturating_mul(d[3]).max(1);
    // Written in place, plane by plane (no zeroed buffer first), the index check folded into the
    // gather (an out-of-range index reads 0 and flags its plane; the error is formed afterwards).
    let mut out = crate::recycle::take(idx.len());
    let bad = out.spare_capacity_mut()[..idx.len()]
        .par_chunks_mut(per)
        .zip(idx.data().par_chunks(per))
        .zip(grad.data().par_chunks(plane.max(1)))
        .map(|((o, i), g)| {
            let mut bad = false;
            for (o, &i) in o.iter_mut().zip(i) {
                o.write(*g.get(i as usize).unwrap_or_else(|| {
                    bad = true;
                    &0.0
                }));
            }
            bad
        })
        .reduce(|| false, |a, b| a || b);
    if bad || (!idx.is_empty() && plane == 0) {
        return Err(out_of_range(op, idx, size, "gradient"));
    }
    // SAFETY: the n·c chunks of `per` cover every element (grad has the same n·c planes, each
    // non-empty here).
    unsafe { out.set_len(idx.len()) };
    Tensor::new(d, out)
}

/// The error naming the first index of `idx` outside a `size` (`what`: "output", "gradient")
/// plane.
fn out_of_range(op: &'static str, idx: &Tensor<u32>, size: [usize; 2], what: &str) -> Error {
    let plane = size[0].saturating_mul(size[1]);
    let j = idx
        .data()
        .iter()
        .position(|&i| i as usize >= plane)
        .unwrap_or(0);
    Error::invalid(
        op,
        format!(
            "index {} at position {j} is out of range for a {}×{} {what} plane ({plane} positions)",
            idx.data()[j],
            size[0],
            size[1]
        ),
    )
}

/// Each value of `vals` put into its `(n, c)` plane of `size` at its index by `put`, plane by
/// plane in parallel, in row-major order within a plane.
fn scatter_planes(
    op: &'static str,
    vals: &Tensor,
    idx: &Tensor<u32>,
    size: [usize; 2],
    put: impl Fn(&mut f32, f32) + Sync,
) -> Result<Tensor> {
    let ([n, c, ph, pw], plane) = unpool_shape(op, vals.shape(), idx.shape(), size)?;
    let shape = [n, c, size[0], size[1]];
    let len = crate::tensor::numel(op, &shape)?;
    if len == 0 || vals.is_empty() || len > isize::MAX as usize / 4 {
        // Nothing to scatter (or a shape Tensor::zeros refuses).
        return Tensor::zeros(shape);
    }
    let per = (ph * pw).max(1);
    // Each task zeroes its planes and scatters into them while they are in cache, skipping
    // (and flagging) indices out of range; the error is formed afterwards. One pass over the
    // output and the indices instead of a check pass, a zeroing pass and a scatter.
    let mut out = crate::recycle::take::<f32>(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let bad = spare
        .par_chunks_mut(plane)
        .zip(vals.data().par_chunks(per).zip(idx.data().par_chunks(per)))
        .map(|(o, (v, i))| {
            o.fill(std::mem::MaybeUninit::new(0.0));
            // SAFETY: just initialized.
            let o = unsafe { &mut *(o as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            let mut bad = false;
            for (&v, &i) in v.iter().zip(i) {
                match o.get_mut(i as usize) {
                    Some(slot) => put(slot, v),
                    None => bad = true,
                }
            }
            bad
        })
        .reduce(|| false, |a, b| a || b);
    if bad {
        return Err(out_of_range(op, idx, size, "output"));
    }
    // SAFETY: the planes cover all `len` elements (n·c planes of `plane`), each filled above.
    unsafe { out.set_len(len) };
    Tensor::new(shape, out)
}
