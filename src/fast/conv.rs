//! Fast conv2d (im2col + GEMM) and conv_transpose2d (GEMM + col2im), split into tasks that
//! each run one single-threaded GEMM on a block that stays in cache.

use std::mem::MaybeUninit;
use std::ops::Range;

use multiversion::multiversion;
use rayon::prelude::*;

use super::{output, sgemm, Dst};
use crate::activation::Activation;
use crate::error::Result;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::tensor::Tensor;
use buffers::with_matrix;
#[cfg(target_arch = "x86_64")]
use buffers::with_packed;
pub(super) use buffers::{with_block, with_phases};

mod bands;
mod buffers;
#[cfg(target_arch = "x86_64")]
mod channel_block;
#[cfg(target_arch = "x86_64")]
mod direct_s2;
mod flipped;
#[cfg(test)]
pub(super) mod kernel_check;
#[cfg(test)]
mod rows_check;
mod stem;
#[cfg(target_arch = "x86_64")]
mod stem_winograd;
#[cfg(target_arch = "x86_64")]
mod transposed_s2;
mod winograd;
#[cfg(target_arch = "x86_64")]
pub(super) mod winograd_avx512;

/// Output columns (pixels) per conv2d task: a band of whole output rows.
const BAND_COLUMNS: usize = 256;
/// Floats a task's im2col block (or col2im block) may hold, unless one output row (one output
/// channel) alone needs more: 1 MiB, the size of one core's L2 cache on the benchmark machine.
pub(super) const BLOCK_FLOATS: usize = 1 << 18;
/// Fewer tasks than this leave cores idle: the work is then split over output channels too.
const MIN_TASKS: usize = 4;

/// Whether this machine has AVX-512F (detected once at run time), which the stem kernel and
/// the AVX-512 Winograd kernels need.
pub(super) fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `j` in `[0, n)` with `j·s + off` in `[0, w)`: a range (im2col's output columns that
/// read inside an input row, col2im's input columns that land inside an output row).
fn inside(off: isize, s: usize, n: usize, w: usize) -> Range<usize> {
    let lo = off.min(0).unsigned_abs().div_ceil(s).min(n);
    let hi = (w as isize - off)
        .max(0)
        .unsigned_abs()
        .div_ceil(s)
        .clamp(lo, n);
    lo..hi
}

/// `dst[j] = src[j·s + off]` for every `j`, 0 where that falls outside `src`: the output
/// columns whose tap lands inside the row form a range `[lo, hi)`, copied without per-element
/// checks, and the rest is zeroed. Always inlined, so that it is compiled for the vector width
/// of each caller's multiversioned clone.
#[inline(always)]
fn strided_row(src: &[f32], off: isize, s: usize, dst: &mut [f32]) {
    let Range { start: lo, end: hi } = inside(off, s, dst.len(), src.len());
    dst[..lo].fill(0.0);
    dst[hi..].fill(0.0);
    if lo == hi {
        return;
    }
    let src = &src[((lo * s) as isize + off) as usize..]; // starts inside the row
    let dst = &mut dst[lo..hi];
    match s {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        // Strides of 2 (im2col) and 4 (the stem kernels' column phases) as chunks: the
        // compiler turns these into vector shuffles (step_by stays scalar).
        2 => every::<2>(src, dst),
        4 => every::<4>(src, dst),
        _ => dst
            .iter_mut()
            .zip(src.iter().step_by(s))
            .for_each(|(d, v)| *d = *v),
    }
}

/// `dst[j] = src[S·j]` for every `j` (`src` holds at least `S·(dst.len() − 1) + 1` floats).
#[inline(always)]
fn every<const S: usize>(src: &[f32], dst: &mut [f32]) {
    let whole = (src.len() / S).min(dst.len());
    let (head, tail) = dst.split_at_mut(whole);
    head.iter_mut()
        .zip(src.chunks_exact(S))
        .for_each(|(d, v)| *d = v[0]);
    if let Some(d) = tail.first_mut() {
        *d = src[S * whole];
    }
}

/// Rows `(ic, ky, 0..kW)` of the im2col matrix of one input group `x` `[cig, H, W]` (`taps`:
/// `ic·kH + ky`), for the output rows `oys`, into `out` (`kW` rows of `oys.len()·W_out`): the
/// input value each output pixel sees through each tap of the kernel row (0 in the padding).
/// With a column stride `s` > 1, tap `kx` reads input column `s·(ox + a) + b − pad` where
/// `kx·d = s·a + b`: the input row is split once into its `s` phases (`phases[b][j]` = column
/// `s·j + b − pad`) and each tap's row is a contiguous copy out of one of them, instead of a
/// strided walk of the input row per tap (W3: kW = 7 walks become 2). Compiled for AVX2 and
/// AVX-512 too and chosen at run time: W3 1.5–2% faster than the SSE2 baseline (in-process A/B).
#[multiversion(targets = "simd")]
pub(super) fn im2col_taps(
    g: &ConvGeometry,
    x: &[f32],
    taps: usize,
    oys: Range<usize>,
    out: &mut [f32],
    phases: &mut Vec<f32>,
) {
    let [h, w] = g.input;
    let ow = g.output[1];
    let [kh, kw] = g.kernel;
    let (ic, ky) = (taps / kh, taps % kh);
    let plane = &x[ic * h * w..][..h * w];
    let (s, d, pad) = (g.stride[1], g.dilation[1], g.pad_before[1] as isize);
    let cols = oys.len() * ow;
    // Phase rows: ow + the furthest shift a tap needs.
    let len = ow + (kw - 1) * d / s;
    if s > 1 {
        phases.resize(s * len, 0.0);
    }
    for (r, oy) in oys.enumerate() {
        let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad_before[0] as isize;
        let seg = |kx: usize| r * ow + kx * cols..r * ow + kx * cols + ow;
        if iy < 0 || iy as usize >= h {
            (0..kw).for_each(|kx| out[seg(kx)].fill(0.0));
            continue;
        }
        let src = &plane[iy as usize * w..][..w];
        if s == 1 {
            for kx in 0..kw {
                strided_row(src, (kx * d) as isize - pad, 1, &mut out[seg(kx)]);
            }
            continue;
        }
        for (b, phase) in phases.chunks_mut(len).enumerate() {
            strided_row(src, b as isize - pad, s, phase);
        }
        for kx in 0..kw {
            let (a, b) = (kx * d / s, kx * d % s);
            out[seg(kx)].copy_from_slice(&phases[b * len + a..][..ow]);
        }
    }
}

/// Adds `bias[r]` to row `r` (the first `cols` columns) of `dst`, for `rows` rows, then applies
/// `act` to them: the convolutions' epilogue, on rows a task has just written.
///
/// # Safety
/// No other thread may touch those elements during the call, and they have been written.
unsafe fn epilogue(dst: Dst, bias: Option<&[f32]>, (rows, cols): (usize, usize), act: Activation) {
    if bias.is_none() && act == Activation::Identity {
        return;
    }
    for r in 0..rows {
        // SAFETY: exclusive by the caller's promise; `row` checks the bounds.
        let row = unsafe { dst.row(r, cols) };
        if let Some(b) = bias {
            row.iter_mut().for_each(|o| *o += b[r]);
        }
        act.apply_slice(row);
    }
}

/// Task sizes for `units` independent products of `m` rows: rows per chunk, so that there are
/// at least [`MIN_TASKS`] tasks where `m` allows, and at most `limit` rows.
fn row_chunk(m: usize, units: usize, limit: usize) -> usize {
    let per_unit = MIN_TASKS.div_ceil(units.max(1));
    m.div_ceil(per_unit).min(limit).max(1)
}

/// PyTorch's `conv2d` on all CPU cores; same contract as [`crate::cpu::conv2d`].
///
/// 3×3 stride-1 layers with enough channels and tiles run as Winograd F(2×2, 3×3)
/// (`src/fast/conv/winograd.rs`); everything else as below.
///
/// Tasks are bands of output rows of one (image, group): each writes its band's im2col block
/// (about 256 columns, `BAND_COLUMNS`) and multiplies the group's weights by it. Where that makes
/// fewer than 4 tasks (`MIN_TASKS`), each (image, group) is lowered whole and its product split
/// over chunks of output channels instead.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, spec: &Conv2d) -> Result<Tensor> {
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    conv2d_geom(
        &g,
        x.data(),
        w.data(),
        bias.map(Tensor::data),
        Activation::Identity,
    )
}

/// `activation(conv2d(x, w, bias, spec), act)` on all CPU cores, the activation applied by each
/// task to the output rows it has just written; for the piecewise-linear activations the result
/// is bitwise `activation(conv2d(…))`.
pub fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &Conv2d,
    act: Activation,
) -> Result<Tensor> {
    act.check("conv2d_act")?;
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    conv2d_geom(&g, x.data(), w.data(), bias.map(Tensor::data), act)
}

/// A direct conv2d kernel's entry point: `conv2d(g, x, w, bias, (out, act))` writes every
/// element of `out` (the whole output tensor, row stride `W_out`).
pub(super) type Kernel = fn(&ConvGeometry, &[f32], &[f32], Option<&[f32]>, (Dst, Activation));

/// The kernel that computes conv2d of geometry `g` without im2col, where one applies, in
/// order of preference; `None` for im2col + GEMM. (One table of which layer runs where.)
fn direct_kernel(g: &ConvGeometry) -> Option<Kernel> {
    type Entry = (fn(&ConvGeometry) -> bool, Kernel);
    let table: &[Entry] = &[
        #[cfg(target_arch = "x86_64")]
        (winograd_avx512::applies, winograd_avx512::conv2d),
        (winograd::applies, winograd::conv2d),
        #[cfg(target_arch = "x86_64")]
        (stem_winograd::applies, stem_winograd::conv2d),
        (stem::applies, stem::conv2d),
        #[cfg(target_arch = "x86_64")]
        (direct_s2::applies, direct_s2::conv2d),
    ];
    table
        .iter()
        .find(|(applies, _)| applies(g))
        .map(|&(_, kernel)| kernel)
}

/// conv2d of the checked geometry `g` (input `x`, weight `w`, bias) with activation `act`.
pub(super) fn conv2d_geom(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Result<Tensor> {
    let g = *g;
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let (k, n) = (cig * g.kernel[0] * g.kernel[1], g.output[0] * g.output[1]);
    let [oh, ow] = g.output;
    let kw = g.kernel[1];
    let in_plane = g.input[0] * g.input[1];
    let shape = g.output_shape();
    if shape.contains(&0) {
        return Tensor::zeros(shape);
    }
    if let Some(kernel) = direct_kernel(&g) {
        // SAFETY: every direct kernel writes every output element.
        return unsafe { output(shape, ow, |dst| kernel(&g, x, w, bias, (dst, act))) };
    }
    // A 1×1 convolution with stride 1 and no padding reads its input as the GEMM operand.
    let direct =
        g.kernel == [1, 1] && g.stride == [1, 1] && g.pad_before == [0, 0] && g.output == g.input;
    let units = g.n * g.groups;
    let input = |u: usize| {
        let (b, grp) = (u / g.groups, u % g.groups);
        &x[(b * g.c_in + grp * cig) * in_plane..][..cig * in_plane]
    };
    let weights = |u: usize| &w[(u % g.groups) * cog * k..][..cog * k];
    let biases =
        |u: usize, c0: usize, rows: usize| bias.map(|b| &b[(u % g.groups) * cog + c0..][..rows]);
    // Output row of channel c0 of unit u: units are consecutive blocks of `cog` rows.
    let first_row = |u: usize, c0: usize| u * cog + c0;

    let band_rows = BAND_COLUMNS
        .min(BLOCK_FLOATS / k.max(1))
        .div_ceil(ow)
        .clamp(1, oh);
    let bands = oh.div_ceil(band_rows);
    let fill = |dst: Dst| {
        if units * bands >= MIN_TASKS || cog == 1 {
            (0..units * bands).into_par_iter().for_each(|t| {
                let (u, band) = (t / bands, t % bands);
                let oys = band * band_rows..((band + 1) * band_rows).min(oh);
                let cols = oys.len() * ow;
                let d = dst.at(first_row(u, 0), oys.start * ow);
                let xg = input(u);
                // SAFETY (both GEMMs and the bias): task t alone writes rows [u·cog, (u+1)·cog),
                // columns `oys` of the output.
                if direct {
                    let rhs = &xg[oys.start * ow..];
                    unsafe { sgemm(cog, cols, k, d, weights(u), (k, 1), rhs, (n, 1)) };
                } else {
                    with_block(k * cols, |col| {
                        with_phases(|phases| {
                            for (taps, out) in col.chunks_mut(kw * cols).enumerate() {
                                im2col_taps(&g, xg, taps, oys.clone(), out, phases);
                            }
                        });
                        unsafe { sgemm(cog, cols, k, d, weights(u), (k, 1), col, (cols, 1)) };
                    });
                }
                unsafe { epilogue(d, biases(u, 0, cog), (cog, cols), act) };
            });
            return;
        }
        let chunk = row_chunk(cog, units, cog);
        let chunks = cog.div_ceil(chunk);
        with_matrix(if direct { 0 } else { k * n }, |col| {
            for u in 0..units {
                let rhs: &[f32] = if direct {
                    input(u)
                } else {
                    col.par_chunks_mut(kw * n)
                        .enumerate()
                        .for_each(|(taps, out)| {
                            with_phases(|phases| {
                                im2col_taps(&g, input(u), taps, 0..oh, out, phases)
                            })
                        });
                    col
                };
                (0..chunks).into_par_iter().for_each(|c| {
                    let rows = c * chunk..((c + 1) * chunk).min(cog);
                    let d = dst.at(first_row(u, rows.start), 0);
                    let lhs = &weights(u)[rows.start * k..];
                    // SAFETY: chunk c alone writes output rows `rows` of unit u.
                    unsafe { sgemm(rows.len(), n, k, d, lhs, (k, 1), rhs, (n, 1)) };
                    let b = biases(u, rows.start, rows.len());
                    unsafe { epilogue(d, b, (rows.len(), n), act) };
                });
            }
        });
    };
    // SAFETY: each (image, group) is `cog` whole output rows (one per channel), and either its
    // bands cover all its columns or its channel chunks all its rows: every output element is
    // written by one task's GEMM (`sgemm` writes its whole m×n block) before the bias is added.
    unsafe { output(shape, n, fill) }
}

/// PyTorch's `conv_transpose2d` on all CPU cores; same contract as
/// [`crate::cpu::conv_transpose2d`]. Tasks are chunks of output channels of one (image, group):
/// a GEMM gives every input pixel's contribution through every tap of those channels, and
/// col2im adds them into the channels' planes while they are in cache (each plane written by
/// one task, its sums in a fixed order).
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    // `g` is the forward convolution: its input is our output, its output our input.
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    conv_transpose2d_geom(
        &g,
        x.data(),
        w.data(),
        bias.map(Tensor::data),
        Activation::Identity,
    )
}

/// `activation(conv_transpose2d(x, w, bias, spec), act)` on all CPU cores, the activation
/// applied to each output plane once its task has summed it.
pub fn conv_transpose2d_act(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &ConvTranspose2d,
    act: Activation,
) -> Result<Tensor> {
    act.check("conv_transpose2d_act")?;
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    conv_transpose2d_geom(&g, x.data(), w.data(), bias.map(Tensor::data), act)
}

/// conv_transpose2d of the checked forward geometry `g`: `x` is shaped as `g`'s output, the
/// result as its input.
pub(super) fn conv_transpose2d_geom(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Result<Tensor> {
    let g = *g;
    let cin = g.c_out;
    let (kin, kout) = (g.c_out_per_group(), g.c_in_per_group()); // ours, per group
    let [kh, kw] = g.kernel;
    let [ih, iw] = g.output;
    let [oh, ow] = g.input;
    let (n, taps) = (ih * iw, kh * kw);
    let rows = kout * taps;
    let shape = g.input_shape();
    if shape.contains(&0) || x.is_empty() {
        // No input channel: every output is its bias, activated.
        let c_out = g.c_in;
        let at = |i: usize| bias.map_or(0.0, |b| b[i / (oh * ow) % c_out]);
        return Tensor::from_fn(shape, |i| act.apply(at(i)));
    }
    if let Some((conv, wf)) = flipped::as_conv2d(&g, w) {
        return conv2d_geom(&conv, x, &wf, bias, act);
    }
    #[cfg(target_arch = "x86_64")]
    if transposed_s2::applies(&g) {
        // SAFETY: the kernel writes every output element (transposed_s2::conv_transpose2d).
        return unsafe {
            output(shape, ow, |dst| {
                transposed_s2::conv_transpose2d(&g, x, w, bias, (dst, act))
            })
        };
    }
    let units = g.n * g.groups;
    let chunk = row_chunk(kout, units, BLOCK_FLOATS / (taps * n).max(1));
    let chunks = kout.div_ceil(chunk);
    let fill = |planes: Dst| {
        (0..units * chunks).into_par_iter().for_each(|t| {
            let (u, c) = (t / chunks, t % chunks);
            let (b, grp) = (u / g.groups, u % g.groups);
            let ocs = c * chunk..((c + 1) * chunk).min(kout);
            let xg = &x[(b * cin + grp * kin) * n..][..kin * n];
            let wg = &w[grp * kin * rows..][..kin * rows];
            with_block(ocs.len() * taps * n, |col| {
                // col[r, j] = Σ_ic w[ic, r] · x[ic, j] for the rows r of channels `ocs`: lhs = wgᵀ.
                let d = Dst::new(col, n);
                // SAFETY: `col` is this thread's own block.
                unsafe {
                    sgemm(
                        ocs.len() * taps,
                        n,
                        kin,
                        d,
                        &wg[ocs.start * taps..],
                        (1, rows),
                        xg,
                        (n, 1),
                    )
                };
                for (i, oc) in ocs.clone().enumerate() {
                    let start = bias.map_or(0.0, |b| b[grp * kout + oc]);
                    // SAFETY: task t alone writes the planes of channels `ocs` of unit u, and fills
                    // each whole before `row` reads it.
                    unsafe { planes.row_uninit(u * kout + oc, oh * ow) }
                        .fill(MaybeUninit::new(start));
                    let plane = unsafe { planes.row(u * kout + oc, oh * ow) };
                    col2im(&g, &col[i * taps * n..][..taps * n], plane);
                    act.apply_slice(plane);
                }
            });
        });
    };
    // SAFETY: the tasks' channel chunks cover every plane of every (image, group), and each
    // task fills its planes whole before adding into them.
    unsafe { output(shape, oh * ow, fill) }
}

/// Adds one output channel's taps `col` `[kH·kW, H_in·W_in]` into its plane.
#[multiversion(targets = "simd")]
fn col2im(g: &ConvGeometry, col: &[f32], plane: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let [ih, iw] = g.output;
    let [oh, ow] = g.input;
    let s = g.stride[1];
    // Input columns ix of tap kx whose output column ix*s + off lies in [0, ow), and off.
    let taps = |kx: usize| {
        let off = (kx * g.dilation[1]) as isize - g.pad_before[1] as isize;
        (inside(off, s, iw, ow), off)
    };
    // Output row of (iy, ky), if inside the plane.
    let out_row = |iy: usize, ky: usize| {
        let oy = (iy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad_before[0] as isize;
        // `then`, not `then_some`: above the plane `oy as usize * ow` would overflow.
        (oy >= 0 && (oy as usize) < oh).then(|| oy as usize * ow)
    };
    let tap_src =
        |ky: usize, kx: usize, iy: usize| &col[(ky * kw + kx) * ih * iw + iy * iw..][..iw];
    let mut kx = 0;
    while kx < kw {
        if s == 2 && g.dilation[1] == 1 && kx + 1 < kw {
            // Two adjacent taps write the two columns of each output pair: added together as
            // pairs, so the stores are whole vectors. Each output element still gets its
            // terms in the same order (it lies under one of the two taps only).
            let ((ra, off), (rb, _)) = (taps(kx), taps(kx + 1));
            let both = ra.start.max(rb.start)..ra.end.min(rb.end).max(ra.start.max(rb.start));
            for ky in 0..kh {
                for iy in 0..ih {
                    let Some(row0) = out_row(iy, ky) else {
                        continue;
                    };
                    let row = &mut plane[row0..][..ow];
                    let (a, b) = (tap_src(ky, kx, iy), tap_src(ky, kx + 1, iy));
                    let at = |ix: usize, t: isize| (2 * ix) as isize + off + t;
                    // Columns under one tap only: at the row's ends.
                    let ends = |r: &Range<usize>| {
                        (r.start..both.start.clamp(r.start, r.end))
                            .chain(both.end.clamp(r.start, r.end)..r.end)
                    };
                    for ix in ends(&ra) {
                        row[at(ix, 0) as usize] += a[ix];
                    }
                    for ix in ends(&rb) {
                        row[at(ix, 1) as usize] += b[ix];
                    }
                    if !both.is_empty() {
                        let dst = &mut row[at(both.start, 0) as usize..][..2 * both.len()];
                        dst.chunks_exact_mut(2)
                            .zip(a[both.clone()].iter().zip(&b[both.clone()]))
                            .for_each(|(d, (x, y))| {
                                d[0] += x;
                                d[1] += y;
                            });
                    }
                }
            }
            kx += 2;
            continue;
        }
        let (range, off) = taps(kx);
        kx += 1;
        if range.is_empty() {
            continue;
        }
        let first = ((range.start * s) as isize + off) as usize; // in [0, ow)
        for ky in 0..kh {
            for iy in 0..ih {
                let Some(row0) = out_row(iy, ky) else {
                    continue;
                };
                let dst = &mut plane[row0 + first..][..(range.len() - 1) * s + 1];
                let src = &tap_src(ky, kx - 1, iy)[range.clone()];
                if s == 1 {
                    dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                } else {
                    dst.iter_mut()
                        .step_by(s)
                        .zip(src)
                        .for_each(|(d, v)| *d += v);
                }
            }
        }
    }
}
