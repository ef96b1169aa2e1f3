//! Direct conv2d for layers with few input channels per group — a network's stem, such as
//! ResNet's 3 → 64, 7×7, stride 2 — on x86-64 with AVX-512.
//!
//! With so few input channels the im2col matrix is short (k = 147 for that stem), so lowering
//! it costs as much per output as the GEMM's few steps, and the GEMM packs it once more. Here
//! no matrix is made: each output row is computed in registers from its input rows, 16 output
//! pixels per vector, as `MR` output channels × `NV` vectors of accumulators. Every step of the
//! reduction (one tap of one input channel) loads `NV` vectors of input and broadcasts `MR`
//! weights into `MR·NV` multiply-adds.
//!
//! The input rows are first split into their column phases (`phase[b][j]` = column
//! `s·j + b − pad`, 0 in the padding), so that the pixels `ox … ox + 15` of every tap read 16
//! consecutive floats of one phase: tap `kx` at dilation `d` reads phase `b` from `j = ox + a`,
//! where `kx·d = s·a + b`. Taps that fall in the top or bottom padding are skipped.
//!
//! Each output element is the bias plus its terms in the order (input channel, kernel row,
//! kernel column), whatever the task split, so results are deterministic. Tasks are bands of
//! output rows of one (image, group).

use std::ops::Range;

use super::bands::{for_each_band, Layout};
use super::{avx512f, strided_row, with_block, Dst, BLOCK_FLOATS};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Input channels per group up to which this kernel runs (a stem's RGB or RGBA input).
const MAX_C_IN: usize = 4;
/// Floats per vector.
const LANES: usize = 16;
/// Output channels per register block (the main one; the remainder runs in blocks of 4 and 1).
const MR: usize = 8;
/// Vectors of output pixels per register block (the main one): `MR·NV` = 24 accumulators.
const NV: usize = 3;

/// Whether conv2d of geometry `g` runs here rather than through im2col: few input channels
/// per group, at least one whole register block of output channels, rows of at least one
/// vector, and a machine with AVX-512. (Below that, a 1 → 32 channel 5×5 layer on 28×28 images
/// ran no faster than im2col.)
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.c_in_per_group() <= MAX_C_IN && g.c_out_per_group() >= MR && g.output[1] >= LANES && avx512f()
}

/// The shape of one call: where each task's phase rows lie and how long they are.
#[derive(Clone, Copy)]
struct Plan {
    /// Floats per phase row: the output row rounded up to whole vectors, plus the farthest
    /// tap's shift.
    run: usize,
    /// Output rows per band (task).
    band_rows: usize,
    /// Input rows a band reads, at most.
    band_inputs: usize,
}

impl Plan {
    fn new(g: &ConvGeometry) -> Self {
        let [oh, ow] = g.output;
        let (kh, kw) = (g.kernel[0], g.kernel[1]);
        let shift = (kw - 1) * g.dilation[1] / g.stride[1];
        let run = ow.next_multiple_of(LANES) + shift;
        let inputs = |rows: usize| (rows - 1) * g.stride[0] + (kh - 1) * g.dilation[0] + 1;
        // Equal bands, about two per thread in all, each band's phase rows within one block
        // (about a core's L2 cache) where one output row allows.
        let mut bands = Layout::conv2d(g).min_bands();
        let row_floats = g.c_in_per_group() * g.stride[1] * run;
        while bands < oh && inputs(oh.div_ceil(bands)).min(g.input[0]) * row_floats > BLOCK_FLOATS {
            bands += 1;
        }
        let band_rows = oh.div_ceil(bands);
        Plan {
            run,
            band_rows,
            band_inputs: inputs(band_rows).min(g.input[0]),
        }
    }

    /// Floats of one task's phase rows.
    fn scratch_len(&self, g: &ConvGeometry) -> usize {
        g.c_in_per_group() * self.band_inputs * g.stride[1] * self.run
    }
}

/// The group's weights `w` `[oc][k]` (`k` = (input channel, kernel row, kernel column)) as
/// `wt[k][oc]`: the `MR` weights a step broadcasts are consecutive.
fn pack_weights(w: &[f32], k: usize, wt: &mut [f32]) {
    let cog = w.len() / k;
    for (oc, row) in w.chunks_exact(k).enumerate() {
        for (p, &v) in row.iter().enumerate() {
            wt[p * cog + oc] = v;
        }
    }
}

/// conv2d of geometry `g` (for which [`applies`] holds) into `out`, the whole output tensor
/// (row stride `W_out`), with `act` applied to each row once written. Every output element is
/// written, none read before.
pub(super) fn conv2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, act): (Dst, Activation),
) {
    let plan = Plan::new(g);
    let k = g.c_in_per_group() * g.kernel[0] * g.kernel[1];
    let cog = g.c_out_per_group();
    for_each_band(
        Layout::conv2d(g),
        (x, w, bias, out),
        plan.band_rows,
        |band| {
            let task = Task {
                g,
                plan,
                w: band.weights,
                bias: band.bias,
                planes: band.planes,
                act,
            };
            let (xg, oys) = (band.input, band.rows);
            with_block(plan.scratch_len(g) + k * cog, |scratch| {
                let (phases, wt) = scratch.split_at_mut(plan.scratch_len(g));
                pack_weights(task.w, k, wt);
                task.run(xg, oys, phases, wt)
            });
        },
    );
}

/// One band of output rows of one (image, group).
struct Task<'a> {
    g: &'a ConvGeometry,
    plan: Plan,
    /// The group's weights, `[oc][k]`.
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    /// The group's first output plane (row `oc·H_out + oy` is output row `oy` of channel `oc`).
    planes: Dst,
    act: Activation,
}

impl Task<'_> {
    /// The band `oys` from the group's input `xg`, with the group's weights packed as `wt`
    /// ([`pack_weights`]) and `scratch` for its phase rows.
    fn run(&self, xg: &[f32], oys: Range<usize>, scratch: &mut [f32], wt: &[f32]) {
        let g = self.g;
        let [h, w] = g.input;
        let [oh, ow] = g.output;
        let (kh, kw) = (g.kernel[0], g.kernel[1]);
        let (sy, sx) = (g.stride[0], g.stride[1]);
        let (dy, dx) = (g.dilation[0], g.dilation[1]);
        let (ph, pw) = (g.pad_before[0] as isize, g.pad_before[1] as isize);
        let (cig, cog, run) = (g.c_in_per_group(), g.c_out_per_group(), self.plan.run);
        // The input rows the band reads, inside the image.
        let first = (oys.start * sy) as isize - ph;
        let last = ((oys.end - 1) * sy + (kh - 1) * dy) as isize - ph;
        let iys = first.max(0) as usize..(last + 1).clamp(0, h as isize) as usize;
        let rows = iys.len();
        debug_assert!(rows <= self.plan.band_inputs);
        let phase_row =
            |ic: usize, iy: usize, b: usize| ((ic * rows + iy - iys.start) * sx + b) * run;
        for ic in 0..cig {
            for iy in iys.clone() {
                let src = &xg[(ic * h + iy) * w..][..w];
                for b in 0..sx {
                    let dst = &mut scratch[phase_row(ic, iy, b)..][..run];
                    strided_row(src, b as isize - pw, sx, dst);
                }
            }
        }
        // Each kernel column's (shift, phase): `kx·d = s·a + b`.
        let cols: Vec<(usize, usize)> = (0..kw).map(|kx| (kx * dx / sx, kx * dx % sx)).collect();
        // (offset of the tap's phase row, shifted by the tap; of its weight row) for every
        // tap of the output row that lands inside the image, in the reduction's order. Rows
        // whose taps span the same kernel rows differ only by the offset of their first row.
        let mut taps = Vec::with_capacity(cig * kh * kw);
        let mut span = None;
        for oy in oys {
            // The kernel rows that land inside the image: `0 ≤ oy·s + ky·d − pad < H`.
            let top = (oy * sy) as isize - ph;
            let first = (-top).max(0).unsigned_abs().div_ceil(dy).min(kh);
            let end = (h as isize - top)
                .max(0)
                .unsigned_abs()
                .div_ceil(dy)
                .clamp(first, kh);
            let kys = first..end;
            if span.as_ref() == Some(&kys) {
                taps.iter_mut()
                    .for_each(|t: &mut (usize, usize)| t.0 += sy * sx * run);
            } else {
                taps.clear();
                for ic in 0..cig {
                    for ky in kys.clone() {
                        let iy = (top + (ky * dy) as isize) as usize;
                        for (kx, &(a, b)) in cols.iter().enumerate() {
                            let k = (ic * kh + ky) * kw + kx;
                            taps.push((phase_row(ic, iy, b) + a, k * cog));
                        }
                    }
                }
                span = Some(kys);
            }
            // SAFETY: every tap's offset plus the widest read (the output row rounded up to
            // whole vectors) stays inside the phase rows, every weight row holds `cog` floats,
            // and this task alone writes rows `oy` of the group's output planes.
            unsafe { self.row(&taps, (scratch, wt), oy, ow, oh) };
            for oc in 0..cog {
                // SAFETY: this task alone writes output row `oy` of channel `oc`, just written.
                self.act
                    .apply_slice(unsafe { self.planes.row(oc * oh + oy, ow) });
            }
        }
        debug_assert!(taps.capacity() >= taps.len());
    }

    /// Output row `oy` of every channel of the group, through the register blocks.
    ///
    /// # Safety
    /// As at the call in [`Task::run`].
    unsafe fn row(
        &self,
        taps: &[(usize, usize)],
        (scratch, wt): (&[f32], &[f32]),
        oy: usize,
        ow: usize,
        oh: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            let cog = self.g.c_out_per_group();
            let mut oc = 0;
            while oc < cog {
                let mr = match cog - oc {
                    r if r >= MR => MR,
                    r if r >= 4 => 4,
                    _ => 1,
                };
                // The row's vectors in blocks of at most NV, as even as they go (7 = 3 + 2 + 2).
                let vectors = ow.div_ceil(LANES);
                let blocks = vectors.div_ceil(NV);
                let mut ox = 0;
                for blk in 0..blocks {
                    let nv = vectors / blocks + usize::from(blk < vectors % blocks);
                    let block = Block {
                        taps,
                        xs: scratch[ox..].as_ptr(),
                        wt: wt[oc..].as_ptr(),
                        bias: self.bias.map(|b| &b[oc..]),
                        out: self.planes.at(oc * oh + oy, ox).ptr,
                        plane: oh * ow,
                        last: (ow - ox).min(nv * LANES) - (nv - 1) * LANES,
                    };
                    // SAFETY: AVX-512F is present (`applies`); the bounds are the caller's.
                    unsafe {
                        match (mr, nv) {
                            (MR, 3) => block.run::<MR, 3>(),
                            (MR, 2) => block.run::<MR, 2>(),
                            (MR, _) => block.run::<MR, 1>(),
                            (4, 3) => block.run::<4, 3>(),
                            (4, 2) => block.run::<4, 2>(),
                            (4, _) => block.run::<4, 1>(),
                            (_, 3) => block.run::<1, 3>(),
                            (_, 2) => block.run::<1, 2>(),
                            _ => block.run::<1, 1>(),
                        }
                    }
                    ox += nv * LANES;
                }
                oc += mr;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (taps, scratch, wt, oy, ow, oh);
            unreachable!("stem::applies is false off x86-64");
        }
    }
}

/// One register block: `mr` output channels × `nv` vectors of output pixels.
#[cfg(target_arch = "x86_64")]
struct Block<'a> {
    taps: &'a [(usize, usize)],
    /// The phase rows, at the block's first pixel.
    xs: *const f32,
    /// The packed weights, at the block's first channel (each tap gives its row's offset).
    wt: *const f32,
    bias: Option<&'a [f32]>,
    /// Output row of the block's first channel, at its first pixel; the next channel's row is
    /// `plane` floats on.
    out: *mut f32,
    plane: usize,
    /// Pixels of the last vector to store (1–16).
    last: usize,
}

#[cfg(target_arch = "x86_64")]
impl Block<'_> {
    /// # Safety
    /// AVX-512F must be present, `xs + tap + 16·NV` inside the phase rows for every tap,
    /// `wt + k + MR` inside the weights for every tap's weight offset `k`, and the `MR` output rows'
    /// first `16·(NV−1) + last` floats this thread's alone to write.
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const R: usize, const V: usize>(&self) {
        use std::arch::x86_64::*;
        // The block's output lines, asked for (to write) now, so that they arrive while it
        // computes: the output planes are far apart and not in cache, and stores that miss
        // at the end cost a tenth of the kernel's rate (measured in isolation).
        for r in 0..R {
            for v in 0..V {
                // SAFETY: a prefetch reads nothing; the address is inside the block's output.
                unsafe {
                    _mm_prefetch::<_MM_HINT_ET0>(self.out.add(r * self.plane + v * LANES).cast())
                };
            }
        }
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        if let Some(b) = self.bias {
            for (r, a) in acc.iter_mut().enumerate() {
                *a = [_mm512_set1_ps(b[r]); V];
            }
        }
        for &(off, k) in self.taps {
            // SAFETY: in bounds by the caller's promise.
            unsafe {
                let xp = self.xs.add(off);
                let wp = self.wt.add(k);
                let mut xv = [_mm512_setzero_ps(); V];
                for (v, x) in xv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(xp.add(v * LANES));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*wp.add(r));
                    for v in 0..V {
                        a[v] = _mm512_fmadd_ps(wv, xv[v], a[v]);
                    }
                }
            }
        }
        let mask: __mmask16 = if self.last >= LANES {
            !0
        } else {
            (1u16 << self.last) - 1
        };
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: in bounds and exclusive by the caller's promise.
            unsafe {
                let o = self.out.add(r * self.plane);
                for (v, &val) in a.iter().enumerate().take(V - 1) {
                    _mm512_storeu_ps(o.add(v * LANES), val);
                }
                _mm512_mask_storeu_ps(o.add((V - 1) * LANES), mask, a[V - 1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel_check::check;
    use super::*;
    use crate::params::conv::{Conv2d, Padding};

    #[test]
    fn stem_matches_the_reference() {
        if !avx512f() {
            eprintln!("stem_matches_the_reference: no AVX-512F here; the kernel never runs");
            return;
        }
        let mut seed = 5;
        let spec = |stride: [usize; 2], padding: Padding, dilation: [usize; 2], groups| Conv2d {
            stride,
            padding,
            dilation,
            groups,
        };
        let asym = Padding::Explicit {
            top: 3,
            bottom: 0,
            left: 1,
            right: 4,
        };
        for (xs, ws, spec) in [
            // The ResNet stem's geometry on a small image: 7×7, stride 2, padding 3.
            (
                [1, 3, 40, 38],
                [16, 3, 7, 7],
                spec([2, 2], Padding::uniform(3), [1, 1], 1),
            ),
            // Rows of 1–4 vectors, the last one partial (17, 33, 50, 64 + 1 pixels); blocks
            // of 8, 4 and 1 output channels (8, 13 = 8 + 4 + 1).
            (
                [2, 1, 5, 17],
                [8, 1, 3, 3],
                spec([1, 1], Padding::uniform(1), [1, 1], 1),
            ),
            (
                [1, 2, 4, 35],
                [13, 2, 3, 3],
                spec([1, 1], Padding::Valid, [1, 1], 1),
            ),
            (
                [1, 4, 3, 50],
                [9, 4, 1, 1],
                spec([1, 1], Padding::Valid, [1, 1], 1),
            ),
            (
                [1, 3, 6, 130],
                [12, 3, 2, 3],
                spec([2, 2], Padding::Full, [1, 1], 1),
            ),
            // Non-square kernels, asymmetric stride, padding and dilation; strides of 3.
            ([1, 3, 11, 70], [8, 3, 3, 5], spec([1, 3], asym, [2, 1], 1)),
            ([2, 2, 9, 61], [10, 2, 4, 2], spec([3, 2], asym, [1, 3], 1)),
            // Groups: two RGB-like inputs, and 4 groups of 1 channel.
            (
                [1, 6, 8, 40],
                [16, 3, 3, 3],
                spec([1, 1], Padding::uniform(1), [1, 1], 2),
            ),
            (
                [2, 4, 7, 33],
                [32, 1, 3, 3],
                spec([2, 1], Padding::uniform(2), [1, 2], 4),
            ),
            // Kernel rows beyond the padding: a band whose rows read nothing but padding.
            (
                [1, 1, 2, 16],
                [8, 1, 5, 3],
                spec([1, 1], Padding::uniform(4), [1, 1], 1),
            ),
        ] {
            check(conv2d, xs, ws, spec, &mut seed);
        }
    }

    #[test]
    fn stem_runs_where_it_pays() {
        let spec = |stride, p| Conv2d {
            stride,
            padding: Padding::uniform(p),
            ..Default::default()
        };
        for (xs, ws, spec, want) in [
            // The benchmark's stem (W3) and a VGG-style first layer.
            ([1, 3, 224, 224], [64, 3, 7, 7], spec([2, 2], 3), true),
            ([1, 3, 224, 224], [64, 3, 3, 3], spec([1, 1], 1), true),
            (
                [1, 8, 64, 64],
                [16, 4, 3, 3],
                Conv2d {
                    groups: 2,
                    ..spec([1, 1], 1)
                },
                true,
            ),
            // Too many input channels, too few output channels, rows under one vector.
            ([1, 5, 64, 64], [16, 5, 3, 3], spec([1, 1], 1), false),
            ([1, 3, 64, 64], [4, 3, 3, 3], spec([1, 1], 1), false),
            ([8, 1, 28, 28], [32, 1, 5, 5], spec([2, 2], 2), false),
        ] {
            let g = spec.geometry(&xs, &ws, None).unwrap();
            assert_eq!(applies(&g), want && avx512f(), "{xs:?} {ws:?} {spec:?}");
        }
    }
}
