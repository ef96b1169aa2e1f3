//! Stride-2 conv2d with 5×5 to 8×8 kernels and few input channels — ResNet's 3 → 64, 7×7
//! stem — as Winograd F(2×2, 4×4) of its four input phases, on x86-64 with AVX-512.
//!
//! Split by the parity `(α, β)` of the kernel tap `(ky, kx) = (2a + α, 2b + β)`, the stride-2
//! convolution is a stride-1 correlation with 4×4 kernels (taps past the kernel are 0) over
//! `4·C_in` phase images `X_(ic,α,β)[u][v] = x[ic][2u + α − pad_h][2v + β − pad_w]`. That
//! correlation runs as Winograd F(2×2, 4×4) — 25 products per 2×2 outputs where the direct
//! kernel makes 64 (49 for a 7×7 kernel): `Y = Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A` over the
//! interpolation points 0, 1, −1, 2 and ∞.
//!
//! Vectors hold 16 tiles: two runs of 8 consecutive tiles of a tile row, so that a tile row's
//! runs are packed without gaps. Tile `tx`'s patch column `c` is input column
//! `4·(tx + c/2) + 2·(c mod 2) + β − pad_w`, so that the input rows are first split into their
//! 4 column phases and every load of a run is 8 consecutive floats of one phase.
//!
//! A task is a band of tile rows of one (image, group): it transforms its group's weights
//! (microseconds; a serial transform before the tasks would let the pool's threads fall
//! asleep) and the band's patches, then for each block of 8 output channels × 3 tile vectors
//! sums the products over the phase channels in registers, point by point, the bias entering
//! through the one point every output sees with weight 1. While a block's products run, the
//! previous block's sums are transformed into outputs and stored, one (channel, vector) pair
//! per point, so that that work issues beside the multiply-adds. Each output element's sum
//! has one order whatever the band split, so results are deterministic.
//!
//! On the benchmark machine (2 cores, AVX-512) ResNet's stem (W3) runs 10–12% faster than the
//! direct kernel single-threaded and 15–20% on both cores. With fewer phase channels or output
//! channels, or smaller images, the transforms and fixed costs outweigh the saved
//! multiply-adds (1 input channel: 20% slower; 32 output channels: 20%; 56×56 outputs: 5%),
//! and so do 5×5 and 6×6 kernels, which have 3 taps per phase: those stay on the direct kernel.

use std::arch::x86_64::*;
use std::ops::Range;

use rayon::prelude::*;

use super::{avx512f, strided_row, with_block, Dst, BLOCK_FLOATS};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Floats per vector, and tiles per vector.
const LANES: usize = 16;
/// Tiles per run (half a vector).
const RUN: usize = 8;
/// Transform points per tile (5×5).
const POINTS: usize = 25;
/// Input channels per group up to which this kernel runs (`4·C_in` phase channels).
const MAX_C_IN: usize = 4;
/// Output channels per register block.
const NO: usize = 8;
/// Tile vectors per register block (the main one; the last of a band may have 1 or 2).
const NT: usize = 3;
/// The point whose column of `Aᵀ ⊗ Aᵀ` is all ones: the bias is added there.
const BIAS_POINT: usize = 6;
/// Tasks per thread, as for the direct stem kernel.
const TASKS_PER_THREAD: usize = 2;

/// `G` of F(2, 4) over the points 0, 1, −1, 2, ∞ (`Bᵀ`'s rows scaled to integers).
const G: [[f64; 4]; 5] = [
    [0.5, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.5, 0.5],
    [1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0, 4.0 / 3.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Output channels per group from which this kernel runs.
const MIN_C_OUT: usize = 64;
/// Output rows and columns from which it runs.
const MIN_OUTPUT: usize = 96;

/// Whether this kernel computes conv2d of geometry `g`: stride 2, no dilation, kernels of 5
/// to 8 each way, at most 4 input channels per group, whole blocks of 8 output channels and
/// rows of at least 16 pixels.
fn fits(g: &ConvGeometry) -> bool {
    let taps = |k: usize| (5..=8).contains(&k);
    g.stride == [2, 2]
        && g.dilation == [1, 1]
        && taps(g.kernel[0])
        && taps(g.kernel[1])
        && g.c_in_per_group() <= MAX_C_IN
        && g.c_out_per_group().is_multiple_of(NO)
        && g.c_out_per_group() > 0
        && g.output[1] >= LANES
}

/// Whether conv2d of geometry `g` runs here rather than on the direct kernel: it [`fits`],
/// with 7 or 8 taps each way, 2 to 4 input channels and at least 64 output channels per group,
/// at least 96×96 outputs, and a machine with AVX-512F (see the module's measurements).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    fits(g)
        && g.kernel.iter().all(|k| (7..=8).contains(k))
        && g.c_in_per_group() >= 2
        && g.c_out_per_group() >= MIN_C_OUT
        && g.output.iter().all(|&n| n >= MIN_OUTPUT)
        && avx512f()
}

/// The tiles of one call and how tasks split them.
#[derive(Clone, Copy)]
struct Plan {
    /// Tile rows, and runs per tile row.
    tile_rows: usize,
    runs: usize,
    /// Tile rows per band (task).
    band: usize,
    /// Floats per phase row: every run's columns plus the patch's reach (2 columns).
    phase_len: usize,
    /// Phase channels (`4·C_in/groups`).
    channels: usize,
}

impl Plan {
    fn new(g: &ConvGeometry) -> Self {
        let [oh, ow] = g.output;
        let tile_rows = oh.div_ceil(2);
        let runs = ow.div_ceil(2).div_ceil(RUN);
        let channels = 4 * g.c_in_per_group();
        // At least TASKS_PER_THREAD bands per thread in all, each band's transformed patches
        // within one block (about a core's L2 cache).
        let units = g.n * g.groups;
        let tasks = TASKS_PER_THREAD * rayon::current_num_threads();
        let mut bands = tasks.div_ceil(units).clamp(1, tile_rows);
        let per_row = runs * RUN * POINTS * channels; // floats per tile row
        while bands < tile_rows && tile_rows.div_ceil(bands) * per_row > BLOCK_FLOATS {
            bands += 1;
        }
        Plan {
            tile_rows,
            runs,
            band: tile_rows.div_ceil(bands),
            phase_len: runs * RUN + 2,
            channels,
        }
    }

    /// Input rows a band reads: 4 per tile row and 6 more.
    fn band_inputs(&self) -> usize {
        4 * self.band + 6
    }

    /// Tile vectors of a band of `rows` tile rows: its runs, two per vector.
    fn vectors(&self, rows: usize) -> usize {
        (rows * self.runs).div_ceil(2)
    }

    /// Floats of one task's scratch: phase rows, transformed patches, and two blocks' sums.
    fn scratch_len(&self, g: &ConvGeometry) -> [usize; 3] {
        [
            g.c_in_per_group() * self.band_inputs() * 4 * self.phase_len,
            self.vectors(self.band) * POINTS * self.channels * LANES,
            2 * NO * NT * POINTS * LANES,
        ]
    }
}

/// The weights `w` `[o][ic][kH][kW]` of one block of `NO` output channels transformed:
/// `u[p][c][o]`, for point `p` and phase channel `c = (ic, α, β)`, is point `p` of `G g Gᵀ`
/// of the 4×4 kernel `g[a][b] = w[o][ic][2a + α][2b + β]` (0 past the kernel).
///
/// # Safety
/// AVX-512F (which the loops over the `NO` channels are vectorized for).
#[target_feature(enable = "avx512f")]
unsafe fn transform_weights(g: &ConvGeometry, w: &[f32], u: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let cig = g.c_in_per_group();
    let channels = 4 * cig;
    let gf = G.map(|row| row.map(|v| v as f32));
    for ic in 0..cig {
        for (alpha, beta) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let c = ic * 4 + alpha * 2 + beta;
            // The 4×4 phase kernel of all NO channels at once: t[a][b][o].
            let mut t = [[[0.0f32; NO]; 4]; 4];
            for (a, row) in t.iter_mut().enumerate() {
                for (b, taps) in row.iter_mut().enumerate() {
                    let (ky, kx) = (2 * a + alpha, 2 * b + beta);
                    if ky < kh && kx < kw {
                        for (o, v) in taps.iter_mut().enumerate() {
                            *v = w[((o * cig + ic) * kh + ky) * kw + kx];
                        }
                    }
                }
            }
            // G t (5×4), then (G t) Gᵀ (5×5).
            let mut gt = [[[0.0f32; NO]; 4]; 5];
            for (i, row) in gt.iter_mut().enumerate() {
                for (b, out) in row.iter_mut().enumerate() {
                    for (a, taps) in t.iter().enumerate() {
                        out.iter_mut()
                            .zip(&taps[b])
                            .for_each(|(o, v)| *o += gf[i][a] * v);
                    }
                }
            }
            for (i, row) in gt.iter().enumerate() {
                for j in 0..5 {
                    let out = &mut u[((i * 5 + j) * channels + c) * NO..][..NO];
                    out.fill(0.0);
                    for (b, v) in row.iter().enumerate() {
                        out.iter_mut().zip(v).for_each(|(o, v)| *o += v * gf[j][b]);
                    }
                }
            }
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
    assert!(avx512f(), "stem_winograd::conv2d needs AVX-512F");
    let plan = Plan::new(g);
    let bands = plan.tile_rows.div_ceil(plan.band);
    let units = g.n * g.groups;
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let in_plane = g.input[0] * g.input[1];
    let u_len = cog * POINTS * plan.channels;
    let per_block = NO * cig * g.kernel[0] * g.kernel[1]; // weights of one block
    let oh = g.output[0];
    (0..units * bands).into_par_iter().for_each(|t| {
        let (unit, band) = (t / bands, t % bands);
        let (b, grp) = (unit / g.groups, unit % g.groups);
        let tys = band * plan.band..((band + 1) * plan.band).min(plan.tile_rows);
        let first = grp * cog;
        let xg = &x[(b * g.c_in + grp * cig) * in_plane..][..cig * in_plane];
        let [a, v, m] = plan.scratch_len(g);
        with_block(u_len + a + v + m, |scratch| {
            // Each task transforms its group's weights (a few microseconds): a serial
            // transform before the tasks would let the pool's threads fall asleep.
            let (u, scratch) = scratch.split_at_mut(u_len);
            let wg = &w[grp * cog / NO * per_block..][..cog / NO * per_block];
            u.chunks_mut(POINTS * plan.channels * NO)
                .zip(wg.chunks(per_block))
                // SAFETY: AVX-512F is present (asserted above).
                .for_each(|(u, w)| unsafe { transform_weights(g, w, u) });
            let task = Task {
                g,
                plan,
                u,
                bias: bias.map(|b| &b[first..][..cog]),
                planes: out.at((b * g.c_out + first) * oh, 0),
            };
            let (phases, rest) = scratch.split_at_mut(a);
            let (patches, sums) = rest.split_at_mut(v);
            task.phases(xg, tys.start, phases);
            let vectors = plan.vectors(tys.len());
            // SAFETY: AVX-512F is present (asserted above); the buffers have the plan's sizes.
            unsafe {
                task.transform_patches(tys.clone(), phases, patches);
                task.products(tys.clone(), vectors, patches, sums);
            }
            if act != Activation::Identity {
                for oc in 0..cog {
                    for oy in 2 * tys.start..(2 * tys.end).min(oh) {
                        // SAFETY: this task alone wrote these rows, whole, above.
                        act.apply_slice(unsafe { task.planes.row(oc * oh + oy, g.output[1]) });
                    }
                }
            }
        });
    });
}

/// One band of tile rows of one (image, group).
struct Task<'a> {
    g: &'a ConvGeometry,
    plan: Plan,
    /// The group's transformed weights ([`transform_weights`]).
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    /// The group's first output plane (row `oc·H_out + oy` is output row `oy` of channel `oc`).
    planes: Dst,
}

impl Task<'_> {
    /// Offset of column phase `delta` of the band's input row `l` of channel `ic`.
    fn phase_row(&self, ic: usize, l: usize, delta: usize) -> usize {
        ((ic * self.plan.band_inputs() + l) * 4 + delta) * self.plan.phase_len
    }

    /// Splits the input rows of the band from tile row `ty0` into their 4 column phases
    /// (`phase[δ][j]` = column `4j + δ − pad_w`), 0 outside the image.
    fn phases(&self, xg: &[f32], ty0: usize, out: &mut [f32]) {
        let [h, w] = self.g.input;
        let top = (4 * ty0) as isize - self.g.pad_before[0] as isize;
        let pw = self.g.pad_before[1] as isize;
        for ic in 0..self.g.c_in_per_group() {
            for l in 0..self.plan.band_inputs() {
                let iy = top + l as isize;
                for delta in 0..4 {
                    let dst = &mut out[self.phase_row(ic, l, delta)..][..self.plan.phase_len];
                    if iy < 0 || iy as usize >= h {
                        dst.fill(0.0);
                    } else {
                        let src = &xg[(ic * h + iy as usize) * w..][..w];
                        strided_row(src, delta as isize - pw, 4, dst);
                    }
                }
            }
        }
    }

    /// Run `r` of the band (counted from tile row `ty0`): its tile row and first tile, or
    /// `None` past the band's last run.
    fn run(&self, tys: &Range<usize>, r: usize) -> Option<(usize, usize)> {
        let (row, k) = (r / self.plan.runs, r % self.plan.runs);
        (row < tys.len()).then(|| (tys.start + row, k * RUN))
    }

    /// `Bᵀ d B` of every tile vector of the band and phase channel: `patches[v][p][c]`.
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_patches(&self, tys: Range<usize>, phases: &[f32], patches: &mut [f32]) {
        let channels = self.plan.channels;
        for v in 0..self.plan.vectors(tys.len()) {
            let runs = [self.run(&tys, 2 * v), self.run(&tys, 2 * v + 1)];
            for c in 0..channels {
                let (ic, alpha, beta) = (c / 4, c / 2 % 2, c % 2);
                // d[r][col]: the first run's 8 tiles in the low half, the second's above.
                let mut d = [[_mm512_setzero_ps(); 5]; 5];
                for (half, run) in runs.iter().enumerate() {
                    let Some((ty, tx0)) = *run else { continue };
                    let l0 = 4 * (ty - tys.start) + alpha;
                    for (r, row) in d.iter_mut().enumerate() {
                        for (col, e) in row.iter_mut().enumerate() {
                            let delta = 2 * (col % 2) + beta;
                            let at = self.phase_row(ic, l0 + 2 * r, delta) + tx0 + col / 2;
                            let s = &phases[at..at + RUN];
                            let lo = unsafe { _mm256_loadu_ps(s.as_ptr()) };
                            *e = if half == 0 {
                                _mm512_zextps256_ps512(lo)
                            } else {
                                let hi = _mm256_castps_pd(lo);
                                _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(*e), hi, 1))
                            };
                        }
                    }
                }
                // Columns, then rows.
                for row in d.iter_mut() {
                    *row = bt(*row);
                }
                for j in 0..5 {
                    let col = bt(d.map(|row| row[j]));
                    for (i, e) in col.into_iter().enumerate() {
                        let at = ((v * POINTS + i * 5 + j) * channels + c) * LANES;
                        unsafe { _mm512_storeu_ps(patches[at..at + LANES].as_mut_ptr(), e) };
                    }
                }
            }
        }
    }

    /// The products and the output transform of the band's `vectors` tile vectors, in blocks
    /// of `NO` output channels × up to `NT` vectors. `sums` holds two blocks' sums: while one
    /// block's products run, the previous block's outputs are transformed and stored, one
    /// (channel, vector) pair per point, so that that work issues beside the multiply-adds.
    #[target_feature(enable = "avx512f")]
    unsafe fn products(
        &self,
        tys: Range<usize>,
        vectors: usize,
        patches: &[f32],
        sums: &mut [f32],
    ) {
        let (cog, channels) = (self.g.c_out_per_group(), self.plan.channels);
        let [oh, ow] = self.g.output;
        // Every store below lies in the group's planes: `spots` are inside one plane.
        assert!(
            cog * oh * ow <= self.planes.len,
            "stem_winograd: output planes"
        );
        let half = NO * NT * POINTS * LANES;
        let (mut cur, mut prev) = sums.split_at_mut(half);
        // The previous block: its output channel block, first vector and vectors.
        let mut done: Option<(usize, usize, usize)> = None;
        let blocks = (0..cog / NO).flat_map(|ocb| {
            (0..vectors)
                .step_by(NT)
                .map(move |v| (ocb, v, (vectors - v).min(NT)))
        });
        for block_at in blocks.map(Some).chain([None]) {
            let spots: [_; NT] = std::array::from_fn(|k| match done {
                Some((_, v, n)) if k < n => self.spots(&tys, v + k),
                _ => [[None; 2]; 2],
            });
            let prev_sums: &[f32] = prev;
            // Output pair `i` = (channel o, vector k) of the previous block.
            let mut finish = |i: usize| {
                let Some((ocb, _, n)) = done else { return };
                let (o, k) = (i / n, i % n);
                if o < NO {
                    let m = &prev_sums[(o * n + k) * LANES..];
                    // SAFETY: as asserted above.
                    unsafe { self.store((ocb * NO + o) * oh * ow, (m, NO * n * LANES), &spots[k]) };
                }
            };
            let Some((ocb, v, n)) = block_at else {
                (0..NO * NT).for_each(&mut finish);
                break;
            };
            let u = &self.u[ocb * POINTS * channels * NO..][..POINTS * channels * NO];
            let bias: [f32; NO] =
                std::array::from_fn(|o| self.bias.map_or(0.0, |b| b[ocb * NO + o]));
            let p = &patches[v * POINTS * channels * LANES..];
            unsafe {
                match n {
                    3 => block::<3>(p, u, channels, &bias, cur, &mut finish),
                    2 => block::<2>(p, u, channels, &bias, cur, &mut finish),
                    _ => block::<1>(p, u, channels, &bias, cur, &mut finish),
                }
            }
            std::mem::swap(&mut cur, &mut prev);
            done = Some((ocb, v, n));
        }
    }

    /// Where tile vector `v`'s outputs go: for each of its 2 output rows and 2 runs, the
    /// offset in the plane of the run's first pixel and the mask of its pixels inside the
    /// row, or `None` where the run or row lies outside.
    fn spots(&self, tys: &Range<usize>, v: usize) -> [[Option<(usize, u16)>; 2]; 2] {
        let [oh, ow] = self.g.output;
        std::array::from_fn(|r| {
            std::array::from_fn(|h| {
                let (ty, tx0) = self.run(tys, 2 * v + h)?;
                let (oy, ox) = (2 * ty + r, 2 * tx0);
                (oy < oh && ox < ow).then(|| {
                    let n = (ow - ox).min(LANES);
                    (oy * ow + ox, ((1u32 << n) - 1) as u16)
                })
            })
        })
    }

    /// The outputs of one tile vector from its sums `m` (point `p` at `p·step`; the bias
    /// included), stored
    /// at `spots` of the plane at `plane`.
    ///
    /// # Safety
    /// AVX-512F; the plane lies inside `self.planes`, which this task alone writes there.
    #[target_feature(enable = "avx512f")]
    unsafe fn store(
        &self,
        plane: usize,
        (m, step): (&[f32], usize),
        spots: &[[Option<(usize, u16)>; 2]; 2],
    ) {
        assert!(m.len() >= (POINTS - 1) * step + LANES);
        let at = |p: usize| unsafe { _mm512_loadu_ps(m.as_ptr().add(p * step)) };
        // Rows of points to 2 columns each, then the columns to 2 rows.
        let t: [[__m512; 2]; 5] = std::array::from_fn(|i| at_(|j| at(i * 5 + j)));
        let cols = [at_(|i| t[i][0]), at_(|i| t[i][1])];
        let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        for (r, spots) in spots.iter().enumerate() {
            let (e, o) = (cols[0][r], cols[1][r]);
            let halves = [
                _mm512_permutex2var_ps(e, lo, o),
                _mm512_permutex2var_ps(e, hi, o),
            ];
            for (spot, v) in spots.iter().zip(halves) {
                if let Some((at, mask)) = *spot {
                    // SAFETY: by the caller's promise and `spots`.
                    unsafe { _mm512_mask_storeu_ps(self.planes.ptr.add(plane + at), mask, v) };
                }
            }
        }
    }
}

/// The output transform along one axis: `[m0 + m1 + m2 + m3, m1 − m2 + 2·m3 + m4]` of the 5
/// values `at(0..5)`.
#[inline(always)]
fn at_(at: impl Fn(usize) -> __m512) -> [__m512; 2] {
    // SAFETY: callers are compiled with AVX-512F (inlined into target_feature functions).
    unsafe {
        let (m1, m2, m3) = (at(1), at(2), at(3));
        let y0 = _mm512_add_ps(_mm512_add_ps(at(0), m1), _mm512_add_ps(m2, m3));
        let y1 = _mm512_fmadd_ps(
            _mm512_set1_ps(2.0),
            m3,
            _mm512_add_ps(_mm512_sub_ps(m1, m2), at(4)),
        );
        [y0, y1]
    }
}

/// `Bᵀ d` for the 5 values `d`.
#[inline(always)]
fn bt(d: [__m512; 5]) -> [__m512; 5] {
    // SAFETY: as for `at_`.
    unsafe {
        let two = _mm512_set1_ps(2.0);
        let s = _mm512_sub_ps(d[3], d[1]);
        let t = _mm512_sub_ps(d[2], d[3]);
        [
            _mm512_fmadd_ps(two, _mm512_sub_ps(d[0], d[2]), s),
            _mm512_fmadd_ps(two, d[1], t),
            _mm512_fmadd_ps(two, _mm512_sub_ps(d[2], d[1]), t),
            s,
            _mm512_fnmadd_ps(two, s, _mm512_sub_ps(d[4], d[2])),
        ]
    }
}

/// The sums of one block: `sums[p][o][k]` = `Σ_c u[p][c][o] · patches[k][p][c]` (plus the
/// bias at [`BIAS_POINT`]) for the
/// `NO` output channels and `T` tile vectors, in registers point by point.
#[target_feature(enable = "avx512f")]
unsafe fn block<const T: usize>(
    patches: &[f32],
    u: &[f32],
    channels: usize,
    bias: &[f32; NO],
    sums: &mut [f32],
    between: &mut impl FnMut(usize),
) {
    let stride = POINTS * channels * LANES; // between tile vectors
    assert!(patches.len() >= (T - 1) * stride + POINTS * channels * LANES);
    assert!(u.len() >= POINTS * channels * NO && sums.len() >= NO * T * POINTS * LANES);
    let (pp, up, sp) = (patches.as_ptr(), u.as_ptr(), sums.as_mut_ptr());
    for p in 0..POINTS {
        between(p);
        // The bias enters through point (1, 1), which every output sees with weight 1.
        let mut acc: [[__m512; T]; NO] = std::array::from_fn(|o| {
            [if p == BIAS_POINT {
                _mm512_set1_ps(bias[o])
            } else {
                _mm512_setzero_ps()
            }; T]
        });
        for c in 0..channels {
            // SAFETY: in bounds by the asserts above.
            unsafe {
                let at = (p * channels + c) * LANES;
                let v: [__m512; T] =
                    std::array::from_fn(|k| _mm512_loadu_ps(pp.add(k * stride + at)));
                let w = up.add((p * channels + c) * NO);
                for (o, acc) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*w.add(o));
                    for (a, v) in acc.iter_mut().zip(&v) {
                        *a = _mm512_fmadd_ps(b, *v, *a);
                    }
                }
            }
        }
        for (o, acc) in acc.iter().enumerate() {
            for (k, a) in acc.iter().enumerate() {
                // SAFETY: in bounds by the asserts above.
                unsafe { _mm512_storeu_ps(sp.add(((p * NO + o) * T + k) * LANES), *a) };
            }
        }
    }
}

#[cfg(test)]
mod tests;
