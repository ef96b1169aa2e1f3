//! conv2d with stride 2 and 3×3 or 4×4 kernels — a network's downsampling layers, and the
//! input gradient of a stride-2 4×4 transposed convolution (W10's) — directly, with output
//! channels in the vectors, on x86-64 with AVX-512.
//!
//! im2col lowers every tap of every input channel into a matrix row of short output rows (28
//! floats for W10), which costs as much as a fifth of the GEMM that follows. Here no matrix is
//! made: vectors hold 16 output channels, and a register block is 14 consecutive columns of
//! one output row (14 accumulators). A step — one input channel and one kernel row — loads the
//! `kW` kernel columns' weight vectors (packed so that they are consecutive) and multiplies
//! each of the block's columns by its `kW` input values, broadcast from the zero-padded input
//! row (`2·13 + kW` distinct values): `14·kW` multiply-adds for `kW` vector loads. The block
//! is then transposed (16×16 in registers) into the 16 channels' output rows.
//!
//! Each output is its bias plus its terms in the order (input channel, kernel row, kernel
//! column), whatever the task split (bands of output rows per (image, group)), so results are
//! deterministic.

use std::arch::x86_64::*;
use std::ops::Range;

use super::bands::{for_each_band, Band, Layout};
use super::channel_block::{pad_rows, store_block, transpose_block, COLS, LANES};
use super::{avx512f, with_block, with_packed, Dst};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Input channels per group from which this kernel runs (below, the stem kernels do).
const MIN_C_IN: usize = 8;
/// Reduction length (input channels × taps per group) up to which it runs: a block's weights
/// (`16·k` floats, 72 KB at 1152) are read again for every block, and past about 1152 the
/// GEMM's blocking wins (256 → 512 channels 3×3 on 28×28: 3.4 against 2.5 ms).
const MAX_K: usize = 1152;

/// Whether conv2d of geometry `g` fits this kernel: stride 2, 3×3 or 4×4 kernels, no dilation,
/// whole vectors of output channels per group, on a machine with AVX-512F.
fn fits(g: &ConvGeometry) -> bool {
    g.stride == [2, 2]
        && (g.kernel == [3, 3] || g.kernel == [4, 4])
        && g.dilation == [1, 1]
        && g.c_in_per_group() > 0
        && g.c_out_per_group() > 0
        && g.c_out_per_group().is_multiple_of(LANES)
        && avx512f()
}

/// Whether conv2d of geometry `g` runs here rather than through im2col: it [`fits`], with at
/// least 8 input channels per group, at most [`MAX_K`] products per output and rows of at
/// least one whole block (7-column rows ran 3× slower than im2col + GEMM).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    let k = g.c_in_per_group() * g.kernel[0] * g.kernel[1];
    fits(g) && g.c_in_per_group() >= MIN_C_IN && k <= MAX_K && g.output[1] >= COLS
}

/// conv2d of geometry `g` (for which [`fits`] holds) into `out`, the whole output tensor (row
/// stride `W_out`), with `act` applied to each row once written. Every output element is
/// written, none read before.
pub(super) fn conv2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, act): (Dst, Activation),
) {
    assert!(fits(g), "direct_s2::conv2d: geometry");
    with_packed(|wp| run(g, (x, pack_weights(w, g, wp), bias), (out, act)));
}

/// The weights `[C_out, C_in/groups, kH, kW]` as `[oc / 16][ic][ky][kx][oc mod 16]` (groups
/// being blocks of whole vectors of output channels): a step's `kW` weight vectors are
/// consecutive.
fn pack_weights<'a>(w: &[f32], g: &ConvGeometry, wp: &'a mut Vec<f32>) -> &'a [f32] {
    let taps = g.kernel[0] * g.kernel[1];
    let k = g.c_in_per_group() * taps;
    wp.resize(w.len(), 0.0);
    // Per (channel vector, input channel): 16 rows `[oc][tap]` of `taps` floats, stored
    // transposed as `[tap][oc]`, through a zero-padded 16 × 16 block.
    let mut block = [0.0f32; 256];
    for (src, dst) in w
        .chunks_exact(LANES * k)
        .zip(wp.chunks_exact_mut(LANES * k))
    {
        for ic in 0..g.c_in_per_group() {
            for (o, row) in block.chunks_exact_mut(16).enumerate() {
                row[..taps].copy_from_slice(&src[o * k + ic * taps..][..taps]);
            }
            let mut t = [0.0f32; 256];
            // SAFETY: AVX-512F is present (`fits`); both blocks hold 256 floats.
            unsafe { transpose_block(&block, &mut t) };
            dst[ic * taps * LANES..][..taps * LANES].copy_from_slice(&t[..taps * LANES]);
        }
    }
    wp
}

/// [`conv2d`] with the weights packed as `wp` ([`pack_weights`]).
fn run(
    g: &ConvGeometry,
    (x, wp, bias): (&[f32], &[f32], Option<&[f32]>),
    (out, act): (Dst, Activation),
) {
    let layout = Layout::conv2d(g);
    let band_rows = g.output[0].div_ceil(layout.min_bands());
    for_each_band(layout, (x, wp, bias, out), band_rows, |band| {
        let task = Task { g, band };
        let rows = task.input_rows();
        with_block(g.c_in_per_group() * rows.len() * task.row_len(), |xp| {
            task.pad_rows(&rows, xp);
            // SAFETY: AVX-512F is present (`fits`); `xp` holds the padded rows.
            unsafe {
                match g.kernel[1] {
                    3 => task.run::<3>(rows.start, xp),
                    _ => task.run::<4>(rows.start, xp),
                }
            };
        });
        // SAFETY: this task alone wrote its band's rows, whole, above.
        unsafe { task.band.activate(act, g.c_out_per_group(), g.output) };
    });
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
        let (ph, kh, ih) = (self.g.pad_before[0], self.g.kernel[0], self.g.input[0]);
        let lo = (2 * oys.start).saturating_sub(ph).min(ih);
        let hi = (2 * (oys.end - 1) + kh).saturating_sub(ph).clamp(lo, ih);
        lo..hi
    }

    /// Floats per padded input row: position `ix + pad_w` holds column `ix`, 0 outside the
    /// row, far enough for the last block's reads.
    fn row_len(&self) -> usize {
        let (ow, pw, iw, kw) = (
            self.g.output[1],
            self.g.pad_before[1],
            self.g.input[1],
            self.g.kernel[1],
        );
        let last = (ow - 1) / COLS * COLS;
        (2 * last + 2 * (COLS - 1) + kw).max(pw + iw)
    }

    /// The input rows `rows` of every channel, padded ([`Task::row_len`]), into `xp`
    /// (`[ic][row]`).
    fn pad_rows(&self, rows: &Range<usize>, xp: &mut [f32]) {
        let widths = (self.g.pad_before[1], self.row_len());
        pad_rows(self.band.input, self.g.input, rows, widths, xp);
    }

    /// The band from the padded rows `xp` of input rows from `first`, for kernels of
    /// `KW` columns.
    ///
    /// # Safety
    /// AVX-512F must be present.
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const KW: usize>(&self, first: usize, xp: &[f32]) {
        let g = self.g;
        let [oh, ow] = g.output;
        let (ph, kh, ih) = (g.pad_before[0], g.kernel[0], g.input[0]);
        let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
        let len = self.row_len();
        let rows = xp.len() / (cig * len).max(1);
        assert!(
            cog * oh * ow <= self.band.planes.len,
            "direct_s2: output planes"
        );
        let mut steps = Vec::with_capacity(cig * kh);
        for oy in self.band.rows.clone() {
            // The kernel rows inside the input: (offset of the padded row, of the weights).
            steps.clear();
            for ic in 0..cig {
                for ky in 0..kh {
                    let Some(iy) = (2 * oy + ky).checked_sub(ph).filter(|&iy| iy < ih) else {
                        continue;
                    };
                    assert!(iy >= first && iy - first < rows, "direct_s2: input rows");
                    steps.push(((ic * rows + iy - first) * len, (ic * kh + ky) * KW * LANES));
                }
            }
            let reach = steps
                .iter()
                .fold((0, 0), |(x, w), &(xo, wo)| (x.max(xo), w.max(wo)));
            for o0 in (0..cog).step_by(LANES) {
                let bias = self
                    .band
                    .bias
                    .map_or([0.0; LANES], |b| std::array::from_fn(|o| b[o0 + o]));
                let w = &self.band.weights[o0 * cig * kh * KW..][..LANES * cig * kh * KW];
                for c0 in (0..ow).step_by(COLS) {
                    // Output column `c0` reads padded positions from `2·c0`.
                    let xs = xp.get(2 * c0..).unwrap_or(&[]);
                    let fits = steps.is_empty()
                        || (reach.0 + 2 * (COLS - 1) + KW <= xs.len()
                            && reach.1 + KW * LANES <= w.len());
                    assert!(fits, "direct_s2: block bounds");
                    // SAFETY: AVX-512F (the caller's promise); in bounds (asserted).
                    let acc = unsafe { sums::<KW>(&steps, (xs, w), &bias) };
                    // SAFETY: AVX-512F; the rows lie inside the planes (asserted above), and
                    // this task alone writes output row `oy`.
                    unsafe {
                        store_block(self.band.planes, &acc, (o0 * oh + oy, oh, (c0, ow)));
                    }
                }
            }
        }
    }
}

/// One register block's sums, `bias` first: column `c` is the sum over the steps `(row
/// offset, weight offset)` and kernel columns `kx` of weight vector `kx` times the padded
/// input at `row + 2c + kx`.
///
/// # Safety
/// AVX-512F; every step's row offset plus `2·13 + KW` inside `xs`, and weight offset plus
/// `16·KW` inside `w`.
#[target_feature(enable = "avx512f")]
unsafe fn sums<const KW: usize>(
    steps: &[(usize, usize)],
    (xs, w): (&[f32], &[f32]),
    bias: &[f32; LANES],
) -> [__m512; COLS] {
    let mut acc = [_mm512_loadu_ps(bias.as_ptr()); COLS];
    let (xp, wp) = (xs.as_ptr(), w.as_ptr());
    for &(xo, wo) in steps {
        // SAFETY: in bounds by the caller's promise.
        unsafe {
            let (x, ws) = (xp.add(xo), wp.add(wo));
            let wv: [__m512; KW] = std::array::from_fn(|kx| _mm512_loadu_ps(ws.add(kx * LANES)));
            let v = |i: usize| _mm512_set1_ps(*x.add(i));
            // Unrolled over the columns, so that the accumulators stay in registers.
            macro_rules! cols {
                ($($c:literal)*) => {$(
                    for (kx, wk) in wv.iter().enumerate() {
                        acc[$c] = _mm512_fmadd_ps(*wk, v(2 * $c + kx), acc[$c]);
                    }
                )*};
            }
            cols!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
        }
    }
    acc
}

#[cfg(test)]
mod tests;
