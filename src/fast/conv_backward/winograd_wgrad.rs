//! The weight gradient of 3×3 stride-1 layers by Winograd F(2×2, 3×3) on AVX-512.
//!
//! The forward kernel computes each tile's 2×2 outputs as `Aᵀ [U ⊙ V] A` with `U = G g Gᵀ`
//! and `V = Bᵀ d B` ([`winograd_avx512`](super::super::conv::winograd_avx512)), so the
//! gradient of a kernel `g` is `Gᵀ [Σ_t Z_t ⊙ V_t] G`, summed over every tile `t` of every
//! image, with `Z_t = A dY_t Aᵀ` the tile's 2×2 output gradient (zero past the output's edges)
//! taken to the 16 points. The sum over tiles is an elementwise product over the points —
//! the forward kernel's register blocks, 4 output × 6 input channels, 4 + 6 vector loads for
//! 24 multiply-adds — with 2.25× fewer multiply-adds than im2col's.
//!
//! Tasks are (group, part): a part is a run of consecutive chunks (whole tile rows of one
//! image, about [`CHUNK`] tiles, in image order), [`super::PARTS`] or fewer per group, a
//! function of the shape alone. Each task transforms a chunk's input patches and gradient tiles into its own
//! block and adds the chunk's products into its part's sums; the parts are added in order,
//! then taken back to 3×3 kernels. Every sum runs in a fixed order: bitwise reproducible.

use rayon::prelude::*;

use super::super::conv::winograd_avx512::{
    accumulate, block, pad_rows, patch_points, point_coefficients, XI,
};
use super::super::conv::{avx512f, with_block};
use super::PARTS;
use crate::params::conv::ConvGeometry;

/// Output channels per register block.
const MR: usize = 4;
/// Input channels per register block.
const NI: usize = 6;
/// Tiles per chunk, about (whole tile rows): a chunk's points of 64 channels each way take
/// 256 KB per operand.
const CHUNK: usize = 64;
/// Tasks, about, where the parts alone are fewer.
const TASKS: usize = 8;
/// Floats of all parts' sums, at most (unless one part needs more).
const MAX_SUMS: usize = 1 << 24;
/// Channels per group, each way, from which this kernel runs.
const MIN_CHANNELS: usize = 16;

/// Whether the weight gradient of the forward convolution `g` runs here.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.c_in_per_group() >= MIN_CHANNELS
        && g.c_out_per_group() >= MIN_CHANNELS
        && avx512f()
}

/// The weight gradient `[C_out, C_in/groups, 3, 3]` of the forward convolution `g` (for which
/// [`applies`] holds), from `gy` (shaped as its output) and `x` (as its input).
pub(super) fn weight_grad(g: &ConvGeometry, gy: &[f32], x: &[f32]) -> Vec<f32> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let [oh, ow] = g.output;
    let (trows, tcols) = (oh.div_ceil(2), ow.div_ceil(2));
    // Chunks: about CHUNK tiles, whole tile rows of one image.
    let rows = CHUNK.div_ceil(tcols).min(trows);
    let per_image = trows.div_ceil(rows);
    let chunks = g.n * per_image;
    let most = rows * tcols;
    let sums = cog * cig * XI;
    // At most 64 MB of part sums in all (512 → 512 channels: 4 parts).
    let parts = chunks.min(PARTS).min((MAX_SUMS / (g.groups * sums)).max(1));
    // With few parts, each part's output channels are split too (W4's layer: 1 part, 8
    // tasks); every task transforms its chunks' input patches for itself.
    let splits = (TASKS / (g.groups * parts)).clamp(1, cog.div_ceil(MR));
    let oc_chunk = cog.div_ceil(splits).next_multiple_of(MR).min(cog);
    let mut partial = crate::recycle::zeroed::<f32>(g.groups * parts * sums);
    let plane = (2 * rows + 2) * (2 * tcols + 2);
    partial
        .par_chunks_mut(sums)
        .enumerate()
        .flat_map(|(t, du)| {
            du.par_chunks_mut(oc_chunk * cig * XI)
                .enumerate()
                .map(move |(c, du)| (t, c, du))
        })
        .for_each(|(task, c, du)| {
            let (grp, part) = (task / parts, task % parts);
            let ocs = c * oc_chunk..((c + 1) * oc_chunk).min(cog);
            let chunk = Chunk {
                g,
                grp,
                tcols,
                gy,
                x,
            };
            let cl = ocs.len();
            with_block((cig + cl) * most * XI + plane, |block| {
                let (v, rest) = block.split_at_mut(cig * most * XI);
                let (z, pad) = rest.split_at_mut(cl * most * XI);
                for c in part * chunks / parts..(part + 1) * chunks / parts {
                    let (b, r0) = (c / per_image, c % per_image * rows);
                    let trs = r0..(r0 + rows).min(trows);
                    let n = trs.len() * tcols;
                    // SAFETY: AVX-512F is present (`applies`); the blocks hold a chunk's
                    // points and `du` the sums of channels `ocs`.
                    unsafe {
                        chunk.transform(b, trs, ocs.clone(), (v, z), pad);
                        products(du, (v, z), n, [cl, cig]);
                    }
                }
            });
        });
    // The parts, in order, then each kernel's `Gᵀ dU G`.
    let mut gw = crate::recycle::zeroed::<f32>(g.groups * cog * cig * 9);
    gw.par_chunks_mut(cig * 9)
        .enumerate()
        .for_each(|(row, out)| {
            let (grp, oc) = (row / cog, row % cog);
            for (ic, kernel) in out.chunks_exact_mut(9).enumerate() {
                let mut du = [0.0f32; XI];
                for part in 0..parts {
                    let at = ((grp * parts + part) * cog + oc) * cig + ic;
                    let src = &partial[at * XI..][..XI];
                    du.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
                back_to_kernel(&du, kernel);
            }
        });
    crate::recycle::give(partial);
    gw
}

/// `Gᵀ dU G` of one kernel's summed points `du` (`ξ = 4i + j`) into its 3×3 gradient, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`: `Gᵀ` takes four values
/// `(a, b, c, d)` to `(a + ½(b + c), ½(b − c), ½(b + c) + d)`, on the rows, then the columns.
fn back_to_kernel(du: &[f32; XI], kernel: &mut [f32]) {
    let gt = |[a, b, c, d]: [f32; 4]| [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d];
    let rows: [[f32; 4]; 3] = {
        let col = |j: usize| gt([du[j], du[4 + j], du[8 + j], du[12 + j]]);
        let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
        [0, 1, 2].map(|a| [c0[a], c1[a], c2[a], c3[a]])
    };
    for (a, row) in rows.into_iter().enumerate() {
        kernel[a * 3..][..3].copy_from_slice(&gt(row));
    }
}

/// One group's inputs and gradients, and its tiles.
struct Chunk<'a> {
    g: &'a ConvGeometry,
    grp: usize,
    /// Tile columns.
    tcols: usize,
    gy: &'a [f32],
    x: &'a [f32],
}

impl Chunk<'_> {
    /// The points of the tiles of tile rows `trs` of image `b` (`n` tiles, row-major): the
    /// input patches' `Bᵀ d B` into `v` (block of [`NI`] input channels `ib` at `ib·NI·n·16`,
    /// laid out `[tile][ic][ξ]`) and the gradient tiles' `A dY Aᵀ` of output channels `ocs` into `z` (blocks of [`MR`]
    /// output channels, the same way). Each input plane's rows under the tiles are first
    /// copied, zero-padded, into `pad`.
    ///
    /// # Safety
    /// AVX-512F must be present; `v` and `z` must hold `C_in/g·n·16` and `C_out/g·n·16`
    /// floats, `pad` the padded rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn transform(
        &self,
        b: usize,
        trs: std::ops::Range<usize>,
        ocs: std::ops::Range<usize>,
        (v, z): (&mut [f32], &mut [f32]),
        pad: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let g = self.g;
        let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
        let [h, w] = g.input;
        let [oh, ow] = g.output;
        let tcols = self.tcols;
        let n = trs.len() * tcols;
        let (prows, pcols) = (2 * trs.len() + 2, 2 * tcols + 2);
        let cl = ocs.len();
        assert!(v.len() >= cig * n * XI && z.len() >= cl * n * XI && pad.len() >= prows * pcols);
        // Padded row r, column c: input row 2·trs.start + r − pad_top, column c − pad_left.
        let top = (2 * trs.start) as isize - g.pad_before[0] as isize;
        let left = g.pad_before[1];
        let xs = &self.x[(b * g.c_in + self.grp * cig) * h * w..][..cig * h * w];
        for ic in 0..cig {
            let plane = &xs[ic * h * w..][..h * w];
            pad_rows(plane, [h, w], (top, left), pad, (prows, pcols));
            let (ib, i) = (ic / NI, ic % NI);
            let ni = NI.min(cig - ib * NI);
            let dst = v[(ib * NI * n + i) * XI..].as_mut_ptr();
            for ty in 0..trs.len() {
                for tx in 0..tcols {
                    let t = ty * tcols + tx;
                    // SAFETY: the patch lies inside the padded rows and the point's slot inside
                    // `v` (asserted sizes).
                    unsafe {
                        let at = pad.as_ptr().add(2 * ty * pcols + 2 * tx);
                        _mm512_storeu_ps(dst.add(t * ni * XI), patch_points(at, pcols));
                    }
                }
            }
        }
        // A dY Aᵀ of the 2×2 tile (p q; r s): point (i, j) = Σ A[i][a]·dY[a][b]·A[j][b],
        // A = [[1, 0], [1, 1], [1, −1], [0, −1]]: four multiply-adds by constant vectors.
        const A: [[f32; 2]; 4] = [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]];
        // SAFETY: AVX-512F is present (the caller's promise).
        let cz: [_; 4] = unsafe { point_coefficients(&A) };
        let gys = &self.gy[(b * g.c_out + self.grp * cog) * oh * ow..][..cog * oh * ow];
        for (oc, plane) in gys
            .chunks_exact(oh * ow)
            .skip(ocs.start)
            .take(cl)
            .enumerate()
        {
            let (ob, o) = (oc / MR, oc % MR);
            let mr = MR.min(cl - ob * MR);
            let dst = z[(ob * MR * n + o) * XI..].as_mut_ptr();
            for (r, ty) in trs.clone().enumerate() {
                let oy = 2 * ty;
                let below = oy + 1 < oh;
                for tx in 0..tcols {
                    let (ox, t) = (2 * tx, r * tcols + tx);
                    let pts = if below && ox + 1 < ow {
                        // SAFETY: the tile's 2×2 gradient lies inside the plane.
                        unsafe {
                            let d = plane.as_ptr().add(oy * ow + ox);
                            let pts = _mm512_mul_ps(_mm512_set1_ps(*d), cz[0]);
                            let pts = _mm512_fmadd_ps(_mm512_set1_ps(*d.add(1)), cz[1], pts);
                            let pts = _mm512_fmadd_ps(_mm512_set1_ps(*d.add(ow)), cz[2], pts);
                            _mm512_fmadd_ps(_mm512_set1_ps(*d.add(ow + 1)), cz[3], pts)
                        }
                    } else {
                        // At the bottom or right edge: zero past the output.
                        let at = |y: usize, x: usize| {
                            if y < oh && x < ow {
                                plane[y * ow + x]
                            } else {
                                0.0
                            }
                        };
                        let pts = _mm512_mul_ps(_mm512_set1_ps(at(oy, ox)), cz[0]);
                        let pts = _mm512_fmadd_ps(_mm512_set1_ps(at(oy, ox + 1)), cz[1], pts);
                        let pts = _mm512_fmadd_ps(_mm512_set1_ps(at(oy + 1, ox)), cz[2], pts);
                        _mm512_fmadd_ps(_mm512_set1_ps(at(oy + 1, ox + 1)), cz[3], pts)
                    };
                    // SAFETY: inside `z` (asserted).
                    unsafe { _mm512_storeu_ps(dst.add(t * mr * XI), pts) };
                }
            }
        }
    }
}

/// Adds the chunk's products `Σ_t Z[oc][t] ⊙ V[ic][t]` (`n` tiles; `v`, `z` as
/// [`Chunk::transform`] lays them out) into the sums `du` `[oc][ic][ξ]` of `[cog, cig]`
/// channels, register block by register block.
///
/// # Safety
/// AVX-512F must be present and the operands hold what their layouts need.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn products(du: &mut [f32], (v, z): (&[f32], &[f32]), n: usize, [cog, cig]: [usize; 2]) {
    assert!(du.len() >= cog * cig * XI && v.len() >= cig * n * XI && z.len() >= cog * n * XI);
    for ob in 0..cog.div_ceil(MR) {
        let (o0, mr) = block(ob, MR, cog);
        for ib in 0..cig.div_ceil(NI) {
            let (i0, ni) = block(ib, NI, cig);
            let blk = Block {
                du: du.as_mut_ptr(),
                cig,
                z: z[o0 * n * XI..].as_ptr(),
                v: v[i0 * n * XI..].as_ptr(),
                n,
                at: (o0, i0),
            };
            // SAFETY: the caller's promise; the block's streams lie inside the operands.
            unsafe {
                match (mr, ni) {
                    (MR, NI) => blk.run::<MR, NI>(0),
                    (MR, 5) => blk.run::<MR, 5>(0),
                    (MR, 4) => blk.run::<MR, 4>(0),
                    (MR, 3) => blk.run::<MR, 3>(0),
                    (MR, 2) => blk.run::<MR, 2>(0),
                    (MR, _) => blk.run::<MR, 1>(0),
                    (_, ni) => {
                        for o in 0..mr {
                            match ni {
                                NI => blk.run_one::<NI>(o, mr),
                                5 => blk.run_one::<5>(o, mr),
                                4 => blk.run_one::<4>(o, mr),
                                3 => blk.run_one::<3>(o, mr),
                                2 => blk.run_one::<2>(o, mr),
                                _ => blk.run_one::<1>(o, mr),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One register block of the products: output channels from `at.0`, input channels from
/// `at.1`, their gradient and input streams at `z` and `v`.
#[cfg(target_arch = "x86_64")]
struct Block {
    du: *mut f32,
    cig: usize,
    z: *const f32,
    v: *const f32,
    n: usize,
    at: (usize, usize),
}

#[cfg(target_arch = "x86_64")]
impl Block {
    /// Output channels `[at.0, at.0 + R)` of a whole block of [`MR`] (`first` = 0).
    ///
    /// # Safety
    /// As [`products`].
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const R: usize, const I: usize>(&self, first: usize) {
        // SAFETY: as the caller's.
        unsafe { self.run_at::<R, I>(first, R) }
    }

    /// Output channel `at.0 + o` of a last block of `mr` < [`MR`] channels.
    ///
    /// # Safety
    /// As [`products`].
    #[target_feature(enable = "avx512f")]
    unsafe fn run_one<const I: usize>(&self, o: usize, mr: usize) {
        // SAFETY: as the caller's.
        unsafe { self.run_at::<1, I>(o, mr) }
    }

    /// `R` output channels from `at.0 + first` of a channel block laid out with `stride`
    /// channels per tile: load the sums, add the chunk's tiles, store.
    ///
    /// # Safety
    /// As [`products`].
    #[target_feature(enable = "avx512f")]
    unsafe fn run_at<const R: usize, const I: usize>(&self, first: usize, stride: usize) {
        use std::arch::x86_64::*;
        let (o0, i0) = (self.at.0 + first, self.at.1);
        let at = |r: usize, i: usize| ((o0 + r) * self.cig + i0 + i) * XI;
        let mut acc = [[_mm512_setzero_ps(); I]; R];
        // SAFETY: the sums and streams lie inside their buffers (the caller's promise).
        unsafe {
            for (r, row) in acc.iter_mut().enumerate() {
                for (i, a) in row.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(self.du.add(at(r, i)));
                }
            }
            accumulate(
                &mut acc,
                (self.z.add(first * XI), stride * XI),
                self.v,
                self.n,
            );
            for (r, row) in acc.iter().enumerate() {
                for (i, &a) in row.iter().enumerate() {
                    _mm512_storeu_ps(self.du.add(at(r, i)), a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::conv::kernel_check::{
        assert_same_bits, assert_sum_close, spec, tensor,
    };
    use super::*;
    use crate::params::conv::{Conv2d, Padding};

    /// This kernel's gradient against the reference's, and twice for bitwise equality.
    fn check(xs: [usize; 4], ws: [usize; 4], spec: Conv2d, seed: &mut u64) {
        let x = tensor(&xs, seed);
        let g = spec.geometry(&xs, &ws, None).unwrap();
        let gy = tensor(&g.output_shape(), seed);
        let want = crate::cpu::conv2d_backward_weight(&gy, &x, [3, 3], &spec).unwrap();
        let got = weight_grad(&g, gy.data(), x.data());
        let what = format!("{xs:?} {ws:?} {spec:?}");
        let terms = xs[0] * g.output[0] * g.output[1];
        assert_sum_close(&what, &got, want.data(), terms);
        assert_same_bits(&what, &got, &weight_grad(&g, gy.data(), x.data()));
    }

    #[test]
    fn winograd_weight_gradient_matches_the_reference() {
        if !avx512f() {
            eprintln!("winograd_weight_gradient_matches_the_reference: no AVX-512F here");
            return;
        }
        let mut seed = 29;
        let asym = Padding::Explicit {
            top: 2,
            bottom: 0,
            left: 0,
            right: 1,
        };
        for (xs, ws, spec) in [
            // Register blocks of 4 × 6 channels and every remainder: 7 = 4 + 1 + 1 + 1 output
            // channels by 1 … 6 and 13 input channels.
            ([1, 13, 6, 6], [7, 13, 3, 3], spec(Padding::uniform(1), 1)),
            ([1, 5, 4, 8], [4, 5, 3, 3], spec(Padding::uniform(1), 1)),
            ([2, 3, 5, 4], [9, 3, 3, 3], spec(Padding::Valid, 1)),
            ([1, 2, 3, 7], [6, 2, 3, 3], spec(Padding::Full, 1)),
            ([1, 4, 7, 5], [8, 1, 3, 3], spec(asym, 4)),
            ([1, 6, 1, 2], [4, 6, 3, 3], spec(Padding::uniform(2), 1)),
            // Several chunks per image (rows of 10 tiles), several images, several parts; and
            // a tile row longer than a chunk (70 tiles).
            ([3, 4, 20, 19], [8, 4, 3, 3], spec(Padding::uniform(1), 1)),
            ([1, 2, 3, 140], [4, 2, 3, 3], spec(Padding::uniform(1), 1)),
            ([2, 12, 9, 9], [12, 6, 3, 3], spec(Padding::uniform(1), 2)),
        ] {
            check(xs, ws, spec, &mut seed);
        }
    }

    #[test]
    fn winograd_weight_gradient_runs_on_wide_3x3_layers() {
        let same = Conv2d {
            padding: Padding::uniform(1),
            ..Default::default()
        };
        let strided = Conv2d {
            stride: [2, 1],
            ..same
        };
        for (xs, ws, spec, want) in [
            // W9's layer, and T1's 16 → 32 one.
            ([8, 64, 56, 56], [64, 64, 3, 3], same, true),
            ([32, 16, 16, 16], [32, 16, 3, 3], same, true),
            // Too few channels, another kernel or a stride.
            ([1, 8, 16, 16], [32, 8, 3, 3], same, false),
            ([1, 32, 16, 16], [32, 32, 3, 2], same, false),
            ([1, 32, 16, 16], [32, 32, 3, 3], strided, false),
        ] {
            let g = spec.geometry(&xs, &ws, None).unwrap();
            assert_eq!(applies(&g), want && avx512f(), "{xs:?} {ws:?} {spec:?}");
        }
    }
}
