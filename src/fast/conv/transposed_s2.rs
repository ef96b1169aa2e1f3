//! conv_transpose2d with stride 2 and 4×4 kernels — a decoder's ×2 upsampling layer, such as
//! W5 (64 → 32 channels, 28×28 → 56×56, padding 1) — directly, on x86-64 with AVX-512.
//!
//! With stride 2, output `(oy, ox)` sees exactly 2×2 of the 16 taps: with `r = oy + pad_h`
//! and `q = ox + pad_w`, kernel rows `ky = r mod 2 + 2a` at input rows `iy = ⌊r/2⌋ − a` and
//! kernel columns `kx = q mod 2 + 2b` at input columns `ix = ⌊q/2⌋ − b` (`a, b ∈ {0, 1}`).
//! So each output is a sum of `4·C_in` products, and the GEMM + col2im lowering's 16-row
//! column matrix (and its scatter-add) is not needed.
//!
//! Vectors hold 16 output channels; a register block is one output row's 14 consecutive
//! columns of them (14 accumulators). A step — one input channel and one kernel row — loads
//! the 4 kernel columns' weight vectors and multiplies each column's two taps by their input
//! values, broadcast (9 distinct input columns serve the 14 outputs): 28 multiply-adds for 4
//! vector loads and 9 broadcasts. The block is then transposed (16×16 in registers) into the
//! 16 channels' output rows. Every lane computes an output, so none is wasted but in a row's
//! last block (W5's 56 columns are 4 whole blocks).
//!
//! Each output is its bias plus its terms in the order (input channel, row tap `a`, column
//! tap `b`), whatever the task split (bands of output rows per (image, group)), so results
//! are deterministic.
//!
//! On the benchmark machine (2 cores, AVX-512) W5 runs 7–13% faster than GEMM + col2im
//! (medians of alternating calls, 0.28–0.32 against 0.30–0.37 ms), 13% single-threaded; the
//! inner loop runs at the machine's multiply-add rate.

use std::arch::x86_64::*;
use std::ops::Range;

use super::bands::{for_each_band, Band, Layout};
use super::channel_block::{pad_rows, store_block, transpose_block, COLS, LANES};
use super::{avx512f, with_block, with_packed, Dst};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Input columns a block reads: `COLS / 2` plus the two taps' reach.
const READS: usize = COLS / 2 + 2;

/// Whether conv_transpose2d of forward geometry `g` (its input is our output) runs here: stride
/// 2, 4×4 kernels, no dilation, whole vectors of output channels per group, on a machine with
/// AVX-512F.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    g.stride == [2, 2]
        && g.kernel == [4, 4]
        && g.dilation == [1, 1]
        && g.c_in_per_group() > 0
        && g.c_in_per_group().is_multiple_of(LANES)
        && g.c_out_per_group() > 0
        && avx512f()
}

/// conv_transpose2d of forward geometry `g` (for which [`applies`] holds): `x` shaped as `g`'s
/// output, weights `[C_in, C_out/groups, 4, 4]`, into `out`, the whole output tensor (row
/// stride `W_out`), with `act` applied to each row once written. Every output element is
/// written, none read before.
pub(super) fn conv_transpose2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, act): (Dst, Activation),
) {
    assert!(applies(g), "transposed_s2::conv_transpose2d: geometry");
    with_packed(|wp| run(g, (x, pack_weights(w, g, wp), bias), (out, act)));
}

/// [`conv_transpose2d`] with the weights packed as `wp` ([`pack_weights`]).
fn run(
    g: &ConvGeometry,
    (x, wp, bias): (&[f32], &[f32], Option<&[f32]>),
    (out, act): (Dst, Activation),
) {
    let layout = Layout::conv_transpose2d(g);
    let band_rows = g.input[0].div_ceil(layout.min_bands());
    for_each_band(layout, (x, wp, bias, out), band_rows, |band| {
        let task = Task { g, band };
        let rows = task.input_rows();
        with_block(g.c_out_per_group() * rows.len() * task.row_len(), |xp| {
            task.pad_rows(&rows, xp);
            // SAFETY: AVX-512F is present (`applies`); `xp` holds the padded rows.
            unsafe { task.run(rows.start, xp) };
        });
        // SAFETY: this task alone wrote its band's rows, whole, above.
        unsafe { task.band.activate(act, g.c_in_per_group(), g.input) };
    });
}

/// The weights `[C_in, C_out/groups, 4, 4]` as `[group][oc / 16][ic][ky][kx][oc mod 16]`: a
/// step's 4 weight vectors (16 consecutive output channels each) are 256 consecutive bytes.
fn pack_weights<'a>(w: &[f32], g: &ConvGeometry, wp: &'a mut Vec<f32>) -> &'a [f32] {
    let (kin, kout) = (g.c_out_per_group(), g.c_in_per_group());
    wp.resize(g.groups * kin * 16 * kout, 0.0);
    // Each (input channel, 16 output channels) is a 16 × 16 block `[oc][tap]`, stored
    // transposed as `[tap][oc]`.
    for (icg, k) in w.chunks_exact(kout * 16).enumerate() {
        let (grp, ic) = (icg / kin, icg % kin);
        let group = &mut wp[grp * kin * 16 * kout..][..kin * 16 * kout];
        for (ob, block) in k.chunks_exact(LANES * 16).enumerate() {
            let dst = &mut group[(ob * kin + ic) * 16 * LANES..][..16 * LANES];
            // SAFETY: AVX-512F is present (`applies`); both blocks hold 256 floats.
            unsafe { transpose_block(block, dst) };
        }
    }
    wp
}

/// One band of output rows of one (image, group): its group's input planes, packed weights
/// ([`pack_weights`]), biases and output planes.
struct Task<'a> {
    g: &'a ConvGeometry,
    band: Band<'a>,
}

impl Task<'_> {
    /// The input rows that the band's output rows read, inside the input.
    fn input_rows(&self) -> Range<usize> {
        let oys = &self.band.rows;
        let ph = self.g.pad_before[0];
        let ih = self.g.output[0];
        let lo = ((oys.start + ph) / 2).saturating_sub(1).min(ih);
        let hi = ((oys.end - 1 + ph) / 2 + 1).clamp(lo, ih);
        lo..hi
    }

    /// Floats per padded input row: position `ix + 1` holds column `ix`, 0 outside the row,
    /// far enough for the last block's reads.
    fn row_len(&self) -> usize {
        let (ow, pw, iw) = (self.g.input[1], self.g.pad_before[1], self.g.output[1]);
        let last = (ow - 1) / COLS * COLS;
        ((last + pw) / 2 + READS).max(iw + 2)
    }

    /// The input rows `rows` of every channel, padded ([`Task::row_len`]), into `xp`
    /// (`[ic][row]`).
    fn pad_rows(&self, rows: &Range<usize>, xp: &mut [f32]) {
        // Column `ix` at position `ix + 1`: the taps reach one column left of the row.
        pad_rows(
            self.band.input,
            self.g.output,
            rows,
            (1, self.row_len()),
            xp,
        );
    }

    /// The band from the padded rows `xp` of input rows from `first`.
    ///
    /// # Safety
    /// AVX-512F must be present.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, first: usize, xp: &[f32]) {
        let g = self.g;
        let [oh, ow] = g.input;
        let (ph, pw) = (g.pad_before[0], g.pad_before[1]);
        let ih = g.output[0];
        let (kin, kout) = (g.c_out_per_group(), g.c_in_per_group());
        let (len, rows) = (self.row_len(), xp.len() / (kin * self.row_len()).max(1));
        assert!(
            kout * oh * ow <= self.band.planes.len,
            "transposed_s2: output planes"
        );
        let mut steps = Vec::with_capacity(2 * kin);
        for oy in self.band.rows.clone() {
            // The row taps inside the input: (offset of the padded row, of the weights).
            let r = oy + ph;
            steps.clear();
            for ic in 0..kin {
                for a in 0..2 {
                    let Some(iy) = (r / 2).checked_sub(a).filter(|&iy| iy < ih) else {
                        continue;
                    };
                    let ky = r % 2 + 2 * a;
                    assert!(
                        iy >= first && iy - first < rows,
                        "transposed_s2: input rows"
                    );
                    steps.push(((ic * rows + iy - first) * len, (ic * 4 + ky) * 4 * LANES));
                }
            }
            let reach = steps
                .iter()
                .fold((0, 0), |(x, w), &(xo, wo)| (x.max(xo), w.max(wo)));
            for o0 in (0..kout).step_by(LANES) {
                let bias = self
                    .band
                    .bias
                    .map_or([0.0; LANES], |b| std::array::from_fn(|o| b[o0 + o]));
                for c0 in (0..ow).step_by(COLS) {
                    // Input column `⌊(c0 + pw)/2⌋ − 1` is at padded position `⌊(c0 + pw)/2⌋`.
                    let t0 = (c0 + pw) / 2;
                    assert!(t0 + READS <= len, "transposed_s2: padded row");
                    let block = Block {
                        steps: &steps,
                        reach,
                        // (Empty where no row tap lies inside the input: no step reads it.)
                        xp: xp.get(t0..).unwrap_or(&[]),
                        w: &self.band.weights[o0 * kin * 16..],
                    };
                    // SAFETY: AVX-512F (the caller's promise); `Block::sums` checks its bounds.
                    let acc = unsafe {
                        if (c0 + pw) % 2 == 0 {
                            block.sums::<0>(&bias)
                        } else {
                            block.sums::<1>(&bias)
                        }
                    };
                    // SAFETY: AVX-512F; the rows lie inside the planes (asserted above), and
                    // this task alone writes output row `oy`.
                    unsafe { store_block(self.band.planes, &acc, (o0 * oh + oy, oh, (c0, ow))) };
                }
            }
        }
    }
}

/// One register block: one output row's `COLS` columns of 16 output channels.
struct Block<'a> {
    /// (padded row offset, weight offset) of each step, in the reduction's order.
    steps: &'a [(usize, usize)],
    /// The largest of each.
    reach: (usize, usize),
    /// The padded rows from the block's first input column.
    xp: &'a [f32],
    /// The packed weights of the block's channels.
    w: &'a [f32],
}

impl Block<'_> {
    /// The block's sums, `bias` first: column `c` (output column `c0 + c`, where `c0 + pw`
    /// has parity `P`) is `q = c0 + pw + c`, whose taps are kernel column `(P + c) mod 2 + 2b`
    /// at padded position `(P + c)/2 + 1 − b`, `b = 0` first.
    ///
    /// # Safety
    /// AVX-512F; every step's row offset plus `READS` inside `xp`, and weight offset plus
    /// 64 inside `w`.
    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const P: usize>(&self, bias: &[f32; LANES]) -> [__m512; COLS] {
        assert!(
            self.steps.is_empty()
                || (self.reach.0 + READS <= self.xp.len()
                    && self.reach.1 + 4 * LANES <= self.w.len()),
            "transposed_s2: block bounds"
        );
        let b = _mm512_loadu_ps(bias.as_ptr());
        let mut acc = [b; COLS];
        let (xp, wp) = (self.xp.as_ptr(), self.w.as_ptr());
        for &(xo, wo) in self.steps {
            // SAFETY: in bounds (asserted above).
            unsafe {
                let (xs, ws) = (xp.add(xo), wp.add(wo));
                let w: [__m512; 4] = std::array::from_fn(|kx| _mm512_loadu_ps(ws.add(kx * LANES)));
                let x = |i: usize| _mm512_set1_ps(*xs.add(i));
                // Columns 2p and 2p + 1, unrolled so that the accumulators stay in registers.
                // With P = 0 their taps are kernel columns (0, 2) and (1, 3) at padded
                // positions (p + 1, p); with P = 1, (1, 3) at (p + 1, p) and (0, 2) at
                // (p + 2, p + 1).
                macro_rules! pair {
                    ($($p:literal)*) => {$(
                        let (ke, ko, oe, oo) = if P == 0 { (0, 1, $p, $p) } else { (1, 0, $p, $p + 1) };
                        acc[2 * $p] = _mm512_fmadd_ps(w[ke], x(oe + 1), acc[2 * $p]);
                        acc[2 * $p] = _mm512_fmadd_ps(w[ke + 2], x(oe), acc[2 * $p]);
                        acc[2 * $p + 1] = _mm512_fmadd_ps(w[ko], x(oo + 1), acc[2 * $p + 1]);
                        acc[2 * $p + 1] = _mm512_fmadd_ps(w[ko + 2], x(oo), acc[2 * $p + 1]);
                    )*};
                }
                pair!(0 1 2 3 4 5 6);
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests;
