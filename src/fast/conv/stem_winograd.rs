//! conv2d with a column stride of 2 and 7 or 8 kernel columns, and few input channels —
//! ResNet's 3 → 64, 7×7, stride-2 stem — with the columns as Winograd F(2, 4), on x86-64 with
//! AVX-512.
//!
//! Split by the parity `β` of the kernel column `kx = 2b + β`, each kernel row is, along the
//! output row, a stride-1 correlation of 4 taps over the input row's column phase
//! `P_β[u] = x[2u + β − pad_w]`: two outputs per tile as F(2, 4), 5 products where the direct
//! kernel makes 8, over the interpolation points 0, 1, −1, 2 and ∞. With 7 kernel columns
//! phase 1 has 3 taps, its weight at ∞ (the last tap alone) is 0, and that point skips it: 9
//! products per tile where the direct kernel makes 14. The rows stay direct, so the reduction
//! of every transform point runs over (input channel, kernel row, phase) — 42 steps for the
//! stem, phase 0's first — and the output transform, on the register accumulators, costs
//! little beside it.
//!
//! Vectors hold 16 tiles: two runs of 8 consecutive tiles of an output row (so a row's runs
//! pack without gaps, whatever its width). Tile `t`'s patch column `c` is `P_β[2t + c]`, input
//! column `4·(t + c/2) + 2·(c mod 2) + β − pad_w`: the input rows are first split into their 4
//! column phases, so that every load of a run is 8 consecutive floats of one phase.
//!
//! A task is a band of output rows of one (image, group): it transforms its group's weights,
//! splits the band's input rows into phases and transforms their patches for every step, then
//! for each block of 3 tile vectors, point by point and for each block of 8 output channels,
//! sums the products in registers (3 vector loads and 8 broadcasts per 24 multiply-adds, as in
//! the direct kernel; one point's rows stay in L1 across the channel blocks), the bias entering
//! through point 1 (which both outputs of a tile see with weight 1); the 5 points' sums then
//! become outputs. Each output element's sum has
//! one order whatever the bands, so results are deterministic.
//!
//! The transformed rows are laid out by row phase of the row stride (`[ic][β][j][l mod s_h]
//! [l / s_h][tiles]`), so that for any one step the tiles of a band's consecutive runs are
//! consecutive floats: every vector is one load, with no shuffle.
//!
//! On the benchmark machine (2 cores, AVX-512) W3 ran 10–13% faster than on the direct kernel
//! single-threaded, and on both cores 5–10% faster in some spells of the VM and level in
//! others (in 24 alternating batches it was never more than 3% slower), before the skip at ∞
//! and a leaner weight transform took another 8% off (0.955 → 0.876 ms, medians of 101 calls
//! on both cores; the inner loop then runs at the machine's multiply-add rate and takes 70% of
//! the time). With one input channel, 16 output channels or 32-pixel rows it ran slower, so
//! those stay direct.

use std::arch::x86_64::*;
use std::ops::Range;

use super::bands::{for_each_band, Layout};
use super::{avx512f, strided_row, with_block, Dst, BLOCK_FLOATS};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Floats per vector, and tiles per vector.
const LANES: usize = 16;
/// Tiles per run (half a vector).
const RUN: usize = 8;
/// Transform points per tile.
const POINTS: usize = 5;
/// The point ∞, whose weight is a tile's last tap alone.
const INFINITY: usize = 4;
/// Input channels per group up to which this kernel runs.
const MAX_C_IN: usize = 4;
/// Output channels per register block.
const NO: usize = 8;
/// Tile vectors per register block (the main one; a band's last may have 1 or 2): with `NO`,
/// 24 accumulators, fed by 3 vector loads and 8 broadcasts per step, as in the direct kernel.
const NT: usize = 3;

/// `G` of F(2, 4) over the points 0, 1, −1, 2, ∞ (`Bᵀ`'s rows scaled to integers).
const G: [[f32; 4]; 5] = [
    [0.5, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.5, 0.5],
    [1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0, 4.0 / 3.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Whether this kernel computes conv2d of geometry `g`: a column stride of 2, no dilation,
/// 7 or 8 kernel columns, at most 4 input channels and whole blocks of 8 output channels per
/// group, and rows of at least 32 pixels.
fn fits(g: &ConvGeometry) -> bool {
    g.stride[1] == 2
        && g.dilation == [1, 1]
        && (7..=8).contains(&g.kernel[1])
        && g.c_in_per_group() <= MAX_C_IN
        && g.c_out_per_group().is_multiple_of(NO)
        && g.c_out_per_group() > 0
        && g.output[1] >= 2 * LANES
}

/// Input channels per group from which this kernel runs (with one, the direct kernel was as
/// fast or faster).
const MIN_C_IN: usize = 2;
/// Output channels per group from which it runs (16 ran slower than the direct kernel).
const MIN_C_OUT: usize = 32;
/// Output columns from which it runs (32 ran slower).
const MIN_WIDTH: usize = 48;

/// Whether conv2d of geometry `g` runs here rather than on the direct kernel: it [`fits`],
/// with at least 2 input and 32 output channels per group and rows of at least 48 pixels, on
/// a machine with AVX-512F.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    fits(g)
        && g.c_in_per_group() >= MIN_C_IN
        && g.c_out_per_group() >= MIN_C_OUT
        && g.output[1] >= MIN_WIDTH
        && avx512f()
}

/// The shape of one call: tiles, bands and the phase rows' layout.
#[derive(Clone, Copy)]
struct Plan {
    /// Runs per output row.
    runs: usize,
    /// Output rows per band (task).
    band: usize,
    /// Input rows a band reads, at most.
    band_inputs: usize,
    /// Tiles per transformed row: the output row's runs.
    width: usize,
    /// Transformed rows per row phase (of the row stride), one more than the band reads so
    /// that the band's last vector may read past its last run.
    phase_rows: usize,
    /// Floats per phase row: `width` rounded up to whole vectors plus the patch's reach.
    phase_len: usize,
    /// Reduction steps `(ic, ky, β)` per output.
    steps: usize,
}

impl Plan {
    fn new(g: &ConvGeometry) -> Self {
        let [oh, ow] = g.output;
        let runs = ow.div_ceil(2).div_ceil(RUN);
        let width = runs * RUN;
        let phase_len = width.next_multiple_of(LANES) + 2;
        let inputs = |rows: usize| (rows - 1) * g.stride[0] + g.kernel[0];
        // About two bands per thread in all, each band's phase rows within one block (about a
        // core's L2 cache).
        let mut bands = Layout::conv2d(g).min_bands();
        // Phase rows and transformed rows of one input row.
        let per_input = g.c_in_per_group() * (4 * phase_len + 2 * POINTS * width);
        while bands < oh && inputs(oh.div_ceil(bands)) * per_input > BLOCK_FLOATS {
            bands += 1;
        }
        let band = oh.div_ceil(bands);
        Plan {
            runs,
            band,
            band_inputs: inputs(band),
            width,
            phase_rows: inputs(band).div_ceil(g.stride[0]) + 1,
            phase_len,
            steps: g.c_in_per_group() * g.kernel[0] * 2,
        }
    }

    /// Step `s` of the reduction as (input channel, kernel row, phase `β`): the steps of
    /// phase 0 first, so that a point which phase 1 never reaches ([`Plan::live`]) stops
    /// halfway.
    fn step(&self, g: &ConvGeometry, s: usize) -> (usize, usize, usize) {
        let (half, kh) = (self.steps / 2, g.kernel[0]);
        (s % half / kh, s % half % kh, s / half)
    }

    /// Steps that point `j` sums: with 7 kernel columns, phase 1's 4th tap is 0, and so is
    /// its weight at point ∞ (`G`'s last row), whose sum then skips phase 1.
    fn live(&self, g: &ConvGeometry, j: usize) -> usize {
        if j == INFINITY && g.kernel[1] % 2 == 1 {
            self.steps / 2
        } else {
            self.steps
        }
    }

    /// Floats of one task's scratch: transformed weights, phase rows, transformed rows and
    /// one block's sums.
    fn scratch_len(&self, g: &ConvGeometry) -> [usize; 3] {
        let cig = g.c_in_per_group();
        [
            g.c_out_per_group() * self.steps * POINTS,
            cig * self.band_inputs * 4 * self.phase_len,
            self.rows_len(g) + g.c_out_per_group() * NT * POINTS * LANES,
        ]
    }

    /// Floats of the band's transformed rows.
    fn rows_len(&self, g: &ConvGeometry) -> usize {
        g.c_in_per_group() * 2 * POINTS * g.stride[0] * self.phase_rows * self.width
    }

    /// Offset of point `j` of column phase `β` of the band's transformed input row `l` of
    /// channel `ic`: `[ic][β][j][l mod s_h][l / s_h][width]`, so that the rows a kernel row
    /// reads for consecutive output rows are consecutive, and so are the tiles of a band's
    /// runs for any one step.
    fn row_at(&self, g: &ConvGeometry, (l, ic, beta, j): (usize, usize, usize, usize)) -> usize {
        let sy = g.stride[0];
        let plane = ((ic * 2 + beta) * POINTS + j) * sy + l % sy;
        (plane * self.phase_rows + l / sy) * self.width
    }
}

/// The group's weights `w` `[oc][ic][kH][kW]` transformed: `u[ocb][j][s][o]`, for output
/// channel `NO·ocb + o`, step `s` ([`Plan::step`]) and point `j`, is `(G g)[j]` of the 4 taps
/// `g[b] = w[oc][ic][ky][2b + β]` (0 past the kernel).
fn transform_weights(g: &ConvGeometry, w: &[f32], steps: usize, u: &mut [f32]) {
    let kw = g.kernel[1];
    let half = steps / 2;
    for (oc, k) in w.chunks_exact(half * kw).enumerate() {
        let (ocb, o) = (oc / NO, oc % NO);
        let at = |j: usize, s: usize| ((ocb * POINTS + j) * steps + s) * NO + o;
        // Kernel rows in the order of the steps' (ic, ky): `s = β·half + ic·kH + ky`.
        for (r, row) in k.chunks_exact(kw).enumerate() {
            for beta in 0..2 {
                let tap = |b: usize| row.get(2 * b + beta).copied().unwrap_or(0.0);
                let taps = [tap(0), tap(1), tap(2), tap(3)];
                for (j, gj) in G.iter().enumerate() {
                    let v = gj[0] * taps[0] + gj[1] * taps[1] + gj[2] * taps[2] + gj[3] * taps[3];
                    u[at(j, beta * half + r)] = v;
                }
            }
        }
    }
}

/// conv2d of geometry `g` (for which [`fits`] holds) into `out`, the whole output tensor
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
    let cog = g.c_out_per_group();
    for_each_band(Layout::conv2d(g), (x, w, bias, out), plan.band, |band| {
        let (xg, oys) = (band.input, band.rows.clone());
        let [ul, pl, vl] = plan.scratch_len(g);
        with_block(ul + pl + vl, |scratch| {
            let (u, scratch) = scratch.split_at_mut(ul);
            let (phases, patches) = scratch.split_at_mut(pl);
            // Each task transforms its group's weights (microseconds): a serial transform
            // before the tasks would let the pool's threads fall asleep.
            transform_weights(g, band.weights, plan.steps, u);
            let task = Task {
                g,
                plan,
                u,
                bias: band.bias,
                planes: band.planes,
            };
            task.phases(xg, oys.start, phases);
            // SAFETY: AVX-512F is present (asserted above); the buffers have the plan's sizes.
            unsafe { task.run(oys, phases, patches) };
            // SAFETY: this task alone wrote its band's rows, whole, above.
            unsafe { band.activate(act, cog, g.output) };
        });
    });
}

/// One band of output rows of one (image, group).
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
        ((ic * self.plan.band_inputs + l) * 4 + delta) * self.plan.phase_len
    }

    /// The first input row of the band from output row `oy0` (may lie above the image).
    fn top(&self, oy0: usize) -> isize {
        (oy0 * self.g.stride[0]) as isize - self.g.pad_before[0] as isize
    }

    /// Splits the band's input rows into their 4 column phases (`phase[δ][j]` = column
    /// `4j + δ − pad_w`), 0 outside the image.
    fn phases(&self, xg: &[f32], oy0: usize, out: &mut [f32]) {
        let [h, w] = self.g.input;
        let pw = self.g.pad_before[1] as isize;
        for ic in 0..self.g.c_in_per_group() {
            for l in 0..self.plan.band_inputs {
                let iy = self.top(oy0) + l as isize;
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

    /// Run `r` of the band: its output row and first tile, or `None` past the band.
    fn run_at(&self, oys: &Range<usize>, r: usize) -> Option<(usize, usize)> {
        let (row, k) = (r / self.plan.runs, r % self.plan.runs);
        (row < oys.len()).then(|| (oys.start + row, k * RUN))
    }

    /// The band: its input rows' transforms (`Bᵀ d` of every tile of every phase, once per
    /// input row), then every tile vector in blocks of up to `NT`, for each block of `NO`
    /// output channels the sums point by point and the outputs.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, oys: Range<usize>, phases: &[f32], scratch: &mut [f32]) {
        let g = self.g;
        let [oh, ow] = g.output;
        let cog = g.c_out_per_group();
        let steps = self.plan.steps;
        // Every store below lies in the group's planes.
        assert!(
            cog * oh * ow <= self.planes.len,
            "stem_winograd: output planes"
        );
        let (rows, sums) = scratch.split_at_mut(self.plan.rows_len(g));
        unsafe { self.transform_rows(phases, rows) };
        // Each step's and point's offset in the transformed rows, from a run's base.
        let step_at: Vec<usize> = (0..POINTS * steps)
            .map(|i| {
                let (j, s) = (i / steps, i % steps);
                let (ic, ky, beta) = self.plan.step(g, s);
                self.plan.row_at(g, (ky, ic, beta, j))
            })
            .collect();
        let vectors = (oys.len() * self.plan.runs).div_ceil(2);
        let runs = |v: usize| [self.run_at(&oys, 2 * v), self.run_at(&oys, 2 * v + 1)];
        for v0 in (0..vectors).step_by(NT) {
            let n = (vectors - v0).min(NT);
            // The next block's output lines, prefetched for writing while this one computes
            // (as in the direct kernel: stores that miss at the end of a block stall it).
            for v in v0 + NT..(v0 + 2 * NT).min(vectors) {
                for (at, _) in self.spots(runs(v)).iter().flatten() {
                    for oc in 0..cog {
                        let p = self.planes.ptr.wrapping_add(oc * oh * ow + at);
                        _mm_prefetch::<_MM_HINT_ET0>(p.cast());
                        _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(LANES - 1).cast());
                    }
                }
            }
            let spots: [_; NT] = std::array::from_fn(|k| self.spots(runs(v0 + k)));
            // Point by point, every block of output channels: one point's transformed rows
            // (8 KB for the stem) stay in L1 across the blocks, where all 5 points' would not.
            let rows: &[f32] = rows;
            let block_sums = NO * n * POINTS * LANES;
            let sums = &mut sums[..cog / NO * block_sums];
            for j in 0..POINTS {
                let live = self.plan.live(g, j);
                let at = &step_at[j * steps..][..live];
                for (ocb, sums) in sums.chunks_exact_mut(block_sums).enumerate() {
                    let u = &self.u[(ocb * POINTS + j) * steps * NO..][..live * NO];
                    let bias: [f32; NO] = std::array::from_fn(|o| match (j, self.bias) {
                        (1, Some(b)) => b[ocb * NO + o],
                        _ => 0.0,
                    });
                    unsafe {
                        match n {
                            3 => point::<3>((rows, v0 * LANES, at), u, &bias, (sums, j)),
                            2 => point::<2>((rows, v0 * LANES, at), u, &bias, (sums, j)),
                            _ => point::<1>((rows, v0 * LANES, at), u, &bias, (sums, j)),
                        }
                    }
                }
            }
            for (ocb, sums) in sums.chunks_exact(block_sums).enumerate() {
                for o in 0..NO {
                    for (k, spots) in spots.iter().enumerate().take(n) {
                        let m = &sums[(o * n + k) * POINTS * LANES..][..POINTS * LANES];
                        // SAFETY: as asserted above; `spots` lie inside one plane.
                        unsafe { self.store((ocb * NO + o) * oh * ow, m, spots) };
                    }
                }
            }
        }
    }

    /// `Bᵀ d` of every tile of every phase `β` of the band's input rows, 16 tiles at a time:
    /// tile `t`'s patch column `c` is phase `2·(c mod 2) + β` at `t + c/2`.
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_rows(&self, phases: &[f32], rows: &mut [f32]) {
        let g = self.g;
        let width = self.plan.width;
        for l in 0..self.plan.band_inputs {
            for ic in 0..g.c_in_per_group() {
                for beta in 0..2 {
                    for t0 in (0..width).step_by(LANES) {
                        let d: [__m512; POINTS] = std::array::from_fn(|c| {
                            let at = self.phase_row(ic, l, 2 * (c % 2) + beta) + t0 + c / 2;
                            unsafe { _mm512_loadu_ps(phases[at..at + LANES].as_ptr()) }
                        });
                        // The row's last vector may be partial.
                        let n = (width - t0).min(LANES);
                        let mask = ((1u32 << n) - 1) as u16;
                        for (j, e) in bt(d).into_iter().enumerate() {
                            let at = self.plan.row_at(g, (l, ic, beta, j)) + t0;
                            let dst = rows[at..at + n].as_mut_ptr();
                            unsafe { _mm512_mask_storeu_ps(dst, mask, e) };
                        }
                    }
                }
            }
        }
    }

    /// Where a tile vector's outputs go: for each of its 2 runs, the offset in the plane of
    /// the run's first pixel and the mask of its pixels inside the row, or `None`.
    fn spots(&self, runs: [Option<(usize, usize)>; 2]) -> [Option<(usize, u16)>; 2] {
        let ow = self.g.output[1];
        runs.map(|run| {
            let (oy, tx0) = run?;
            let ox = 2 * tx0;
            (ox < ow).then(|| (oy * ow + ox, ((1u32 << (ow - ox).min(LANES)) - 1) as u16))
        })
    }

    /// The outputs of one tile vector of one output channel from its sums `m` `[j][16]` (the
    /// bias included), stored at `spots` of the plane at `plane`.
    ///
    /// # Safety
    /// AVX-512F; the plane lies inside `self.planes`, which this task alone writes there.
    #[target_feature(enable = "avx512f")]
    unsafe fn store(&self, plane: usize, m: &[f32], spots: &[Option<(usize, u16)>; 2]) {
        assert!(m.len() >= POINTS * LANES);
        let [y0, y1] = at_(|j| unsafe { _mm512_loadu_ps(m.as_ptr().add(j * LANES)) });
        let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        let halves = [
            _mm512_permutex2var_ps(y0, lo, y1),
            _mm512_permutex2var_ps(y0, hi, y1),
        ];
        for (spot, v) in spots.iter().zip(halves) {
            if let Some((at, mask)) = *spot {
                // SAFETY: by the caller's promise and `spots`.
                unsafe { _mm512_mask_storeu_ps(self.planes.ptr.add(plane + at), mask, v) };
            }
        }
    }
}

/// The output transform: `[m0 + m1 + m2 + m3, m1 − m2 + 2·m3 + m4]` of the 5 values `at(0..5)`.
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

/// Point `j` of the sums of one block: `sums[o][k][j]` = `bias[o]` plus
/// `Σ_s u[s][o] · V`, where tile vector `k`'s `V` for step `s` is the 16 floats of the
/// transformed rows at `step_at[s] + first + 16·k`, for the `NO` output channels and `T` tile
/// vectors, in registers.
#[target_feature(enable = "avx512f")]
unsafe fn point<const T: usize>(
    (rows, first, step_at): (&[f32], usize, &[usize]),
    u: &[f32],
    bias: &[f32; NO],
    (sums, j): (&mut [f32], usize),
) {
    let steps = u.len() / NO;
    let reach = step_at.iter().max().copied().unwrap_or(0) + first + T * LANES;
    assert!(step_at.len() == steps && reach <= rows.len() && j < POINTS);
    assert!(sums.len() >= NO * T * POINTS * LANES);
    let (rp, up, sp) = (
        rows.as_ptr().wrapping_add(first),
        u.as_ptr(),
        sums.as_mut_ptr(),
    );
    let mut acc: [[__m512; T]; NO] = std::array::from_fn(|o| [_mm512_set1_ps(bias[o]); T]);
    for (s, &off) in step_at.iter().enumerate() {
        // SAFETY: in bounds by the asserts above.
        unsafe {
            let at = rp.add(off);
            let v: [__m512; T] = std::array::from_fn(|k| _mm512_loadu_ps(at.add(k * LANES)));
            let w = up.add(s * NO);
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
            unsafe { _mm512_storeu_ps(sp.add(((o * T + k) * POINTS + j) * LANES), *a) };
        }
    }
}

#[cfg(test)]
mod tests;
