//! Winograd F(2×2, 3×3) (Lavin & Gray, 2016) for conv2d's 3×3, stride-1, undilated layers
//! with enough channels: each 2×2 block of outputs (a tile) is computed from the 4×4 input
//! patch under it as `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, and the elementwise product, summed over
//! input channels, becomes 16 GEMMs (one per point ξ of the 4×4 transform domain) of
//! `C_out × C_in` transformed weights by `C_in × tiles` transformed inputs: 16 multiply-adds per
//! tile and channel pair instead of 36, 2.25× fewer.
//!
//! Tasks are bands of tile rows of one (image, group): each transforms its band of the input
//! into its own block, runs the 16 products and transforms their results into its output rows.
//! Where that makes too few tasks, the bands' products are split over output channels too, and
//! their transformed inputs are made first, once, by tasks over input channels. The split
//! depends on the shapes alone and no sum is split between tasks, so results are
//! deterministic. The transforms' coefficients are 0, ±1 and ±½, so the rounding error stays
//! close to that of the direct sum (the tests hold it to the same tolerance as im2col).

use std::ops::Range;

use multiversion::multiversion;
use rayon::prelude::*;

use super::{row_chunk, sgemm, strided_row, with_block, with_matrix, Dst};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Points of the transform domain (4×4).
const XI: usize = 16;
/// Tiles per task, about: the width of each of the 16 products. With 64 channels the band's
/// transformed input and products take 460 KB each. 112 = 7·16 ran 3–7% faster than 128 or
/// 196 on W1 and W2 (whole vectors of the GEMM's kernel).
pub(super) const BAND_TILES: usize = 112;
/// Channels per group, in and out, from which the transforms pay for themselves: at 56×56,
/// 16 → 16 channels ran as fast as im2col, 16 → 64 slower, 32 → 32 24% faster.
const MIN_CHANNELS: usize = 32;
/// Tiles in the whole batch from which the weights' transform (read 9, write 16 floats per
/// kernel) pays for itself: 256 → 256 channels on 14×14 (49 tiles) ran 5–25% faster than
/// im2col, 512 → 512 on 7×7 (16 tiles) twice as slow.
const MIN_TILES: usize = 48;

/// Whether conv2d of geometry `g` runs here rather than through im2col.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    winograd_layer(g, MIN_CHANNELS)
}

/// A 3×3 stride-1 undilated layer with at least `channels` channels per group each way and
/// [`MIN_TILES`] tiles in the batch: where a Winograd kernel may run.
pub(super) fn winograd_layer(g: &ConvGeometry, channels: usize) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.c_in_per_group() >= channels
        && g.c_out_per_group() >= channels
        && g.n * g.output[0].div_ceil(2) * g.output[1].div_ceil(2) >= MIN_TILES
}

/// Kernels per block of the weight transform.
const KERNEL_BLOCK: usize = 64;

/// `U = G g Gᵀ` of every 3×3 kernel `g`, as `u[group][ξ][oc][ic]`: one `C_out/g × C_in/g`
/// matrix per group and point, the left operand of that point's product.
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`. Blocks of kernels are transformed into
/// a local array and copied out as 16 runs: the 16 matrices lie a multiple of a large power of
/// two apart, and storing to all 16 at once thrashes the cache's sets.
fn transform_weights(g: &ConvGeometry, w: &[f32], u: &mut [f32]) {
    let pairs = g.c_out_per_group() * g.c_in_per_group();
    let blocks = pairs.div_ceil(KERNEL_BLOCK);
    let dst = Dst::new(u, pairs);
    (0..g.groups * blocks).into_par_iter().for_each(|t| {
        let (grp, blk) = (t / blocks, t % blocks);
        let first = blk * KERNEL_BLOCK;
        let kernels = &w[(grp * pairs + first) * 9..][..(pairs - first).min(KERNEL_BLOCK) * 9];
        let mut local = [[0.0f32; KERNEL_BLOCK]; XI];
        transform_kernels(kernels, &mut local);
        let n = kernels.len() / 9;
        for (xi, run) in local.iter().enumerate() {
            // SAFETY: task t alone writes columns [first, first + n) of group grp's rows.
            unsafe { dst.at(grp * XI + xi, first).row(0, n) }.copy_from_slice(&run[..n]);
        }
    });
}

/// `G g Gᵀ` of each 3×3 kernel of `kernels` (at most [`KERNEL_BLOCK`]), into `local[ξ][p]`:
/// the taps are first gathered into runs over the kernels, so that every step below is a
/// vector operation across them.
#[multiversion(targets = "simd")]
fn transform_kernels(kernels: &[f32], local: &mut [[f32; KERNEL_BLOCK]; XI]) {
    let mut taps = [[0.0f32; KERNEL_BLOCK]; 9];
    for (p, k) in kernels.chunks_exact(9).enumerate() {
        for (e, &v) in k.iter().enumerate() {
            taps[e][p] = v;
        }
    }
    // Rows of G g (each three runs), then each row times Gᵀ. Both are, per column or row,
    // (a, (a + b + c)/2, (a − b + c)/2, c).
    let mut gg = [[[0.0f32; KERNEL_BLOCK]; 3]; 4];
    for c in 0..3 {
        for p in 0..KERNEL_BLOCK {
            let (a, b, d) = (taps[c][p], taps[3 + c][p], taps[6 + c][p]);
            gg[0][c][p] = a;
            gg[1][c][p] = 0.5 * (a + b + d);
            gg[2][c][p] = 0.5 * (a - b + d);
            gg[3][c][p] = d;
        }
    }
    for (i, r) in gg.iter().enumerate() {
        for p in 0..KERNEL_BLOCK {
            let (a, b, d) = (r[0][p], r[1][p], r[2][p]);
            local[i * 4][p] = a;
            local[i * 4 + 1][p] = 0.5 * (a + b + d);
            local[i * 4 + 2][p] = 0.5 * (a - b + d);
            local[i * 4 + 3][p] = d;
        }
    }
}

/// Tile geometry of one conv2d: tile rows and columns, each tile 2×2 outputs.
#[derive(Clone, Copy)]
struct Tiles {
    rows: usize,
    cols: usize,
}

impl Tiles {
    /// Tile columns rounded up to whole blocks of [`LANES`].
    fn padded_cols(self) -> usize {
        self.cols.next_multiple_of(LANES)
    }
}

/// `V = Bᵀ d B` of every 4×4 input patch under the tiles of tile rows `trs`, for the channels
/// `ics` of the input group `x` `[C_in/g, H, W]`, into `v[ξ][ic][t]` (row `ξ·C_in/g + ic` of
/// `v`, `t` the tile's index in the band).
/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`.
///
/// The row pass `d B` runs once per input row: the row, zero-padded, is split into its even and
/// odd columns, so that each of the 4 results is a difference of two runs; the runs are
/// [`LANES`]-padded, so that the loops are whole vectors. Its results are kept by parity of the
/// row, so that the column pass `Bᵀ (d B)` is 16 runs over the whole band.
#[multiversion(targets = "simd")]
fn transform_input(
    g: &ConvGeometry,
    tiles: Tiles,
    x: &[f32],
    trs: Range<usize>,
    ics: Range<usize>,
    v: Dst,
    scratch: &mut [f32],
) {
    let [h, w] = g.input;
    let (tw, tp) = (tiles.cols, tiles.padded_cols());
    let (ph, pw) = (g.pad_before[0] as isize, g.pad_before[1] as isize);
    let cig = g.c_in_per_group();
    let n = trs.len() * tw;
    // Input rows under the band: 2 per tile row and 2 below; pairs of them.
    let pairs = trs.len() + 1;
    let (row, rest) = scratch.split_at_mut(2 * tp + 2);
    let (even, rest) = rest.split_at_mut(tp + 1);
    let (odd, rest) = rest.split_at_mut(tp + 1);
    let (t, rest) = rest.split_at_mut(4 * tp);
    // Row pass results rp[j][parity][pair][tx].
    let rp = &mut rest[..8 * pairs * tw];
    for ic in ics {
        let plane = &x[ic * h * w..][..h * w];
        for l in 0..2 * pairs {
            let iy = (2 * trs.start + l) as isize - ph;
            let at = |j: usize| ((j * 2 + l % 2) * pairs + l / 2) * tw;
            if iy < 0 || iy as usize >= h {
                (0..4).for_each(|j| rp[at(j)..][..tw].fill(0.0));
                continue;
            }
            strided_row(&plane[iy as usize * w..][..w], -pw, 1, row);
            row.chunks_exact(2)
                .zip(even.iter_mut().zip(odd.iter_mut()))
                .for_each(|(p, (e, o))| (*e, *o) = (p[0], p[1]));
            // Patch columns of tile tx: even[tx], odd[tx], even[tx + 1], odd[tx + 1].
            let (e0, e1, o0, o1) = (&even[..tp], &even[1..], &odd[..tp], &odd[1..]);
            let (t01, t23) = t.split_at_mut(2 * tp);
            let (t0, t1) = t01.split_at_mut(tp);
            let (t2, t3) = t23.split_at_mut(tp);
            lanes(t0, e0, e1, |a, b| a - b);
            lanes(t1, o0, e1, |a, b| a + b);
            lanes(t2, e1, o0, |a, b| a - b);
            lanes(t3, o0, o1, |a, b| a - b);
            for (j, tj) in t.chunks_exact(tp).enumerate() {
                rp[at(j)..][..tw].copy_from_slice(&tj[..tw]);
            }
        }
        // Column pass: patch row pr of tile row r is input row 2r + pr, so rows 0 and 2 are
        // the even rows at t and t + tw, rows 1 and 3 the odd ones.
        for j in 0..4 {
            let (even, odd) = rp[j * 2 * pairs * tw..][..2 * pairs * tw].split_at(pairs * tw);
            let (r0, r2, r1, r3) = (&even[..n], &even[tw..][..n], &odd[..n], &odd[tw..][..n]);
            let terms = [
                (r0, r2, -1.0),
                (r1, r2, 1.0),
                (r2, r1, -1.0),
                (r1, r3, -1.0),
            ];
            for (i, (p, q, sign)) in terms.into_iter().enumerate() {
                // SAFETY: the caller gives this call rows `ics` of every point alone.
                let run = unsafe { v.row((i * 4 + j) * cig + ic, n) };
                run.iter_mut()
                    .zip(p.iter().zip(q))
                    .for_each(|(o, (p, q))| *o = p + sign * q);
            }
        }
    }
}

/// Lanes per block of the row pass: its runs are padded to a multiple of this.
const LANES: usize = 8;

/// `dst[k] = f(a[k], b[k])` over whole blocks of [`LANES`] (`dst.len()` a multiple of it).
fn lanes(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((d, a), b) in dst
        .chunks_exact_mut(LANES)
        .zip(a.chunks_exact(LANES))
        .zip(b.chunks_exact(LANES))
    {
        for k in 0..LANES {
            d[k] = f(a[k], b[k]);
        }
    }
}

/// Scratch floats that [`transform_input`] and [`transform_output`] need for `rows` tile rows.
fn scratch_len(tiles: Tiles, rows: usize) -> usize {
    let (tw, tp) = (tiles.cols, tiles.padded_cols());
    let input = 2 * tp + 2 + 2 * (tp + 1) + 4 * tp + 8 * (rows + 1) * tw;
    input.max(12 * rows * tw)
}

/// `Y = Aᵀ M A` of the products `m[ξ][oc][t]` of the band's tiles (tile rows `trs`) for the
/// consecutive output channels they hold, whose planes start at `dst` (channel `oc` at row
/// `oc·H_out`), plus their `bias`: each tile's 2×2 outputs, cut at the output's bottom and
/// right edges.
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`. Both passes run over the whole band; the two columns
/// of each tile are then interleaved into the output rows.
#[multiversion(targets = "simd")]
fn transform_output(
    g: &ConvGeometry,
    tiles: Tiles,
    m: &[f32],
    trs: Range<usize>,
    bias: Option<&[f32]>,
    (dst, act): (Dst, Activation),
    scratch: &mut [f32],
) {
    let [oh, ow] = g.output;
    let tw = tiles.cols;
    let n = trs.len() * tw;
    let cl = m.len() / (XI * n);
    let (s, y) = scratch[..12 * n].split_at_mut(8 * n);
    for ocl in 0..cl {
        let (plane_row, bias) = (ocl * oh, bias.map_or(0.0, |b| b[ocl]));
        let pt = |i: usize, j: usize| &m[((i * 4 + j) * cl + ocl) * n..][..n];
        // s[a][j] = (Aᵀ M)[a][j].
        for j in 0..4 {
            let (m0, m1, m2, m3) = (pt(0, j), pt(1, j), pt(2, j), pt(3, j));
            let (s0, s1) = s.split_at_mut(4 * n);
            let (s0, s1) = (&mut s0[j * n..][..n], &mut s1[j * n..][..n]);
            for k in 0..n {
                s0[k] = m0[k] + m1[k] + m2[k];
                s1[k] = m1[k] - m2[k] - m3[k];
            }
        }
        // y[a][b] = (Aᵀ M A)[a][b] + bias.
        for a in 0..2 {
            let sa = |j: usize| &s[(a * 4 + j) * n..][..n];
            let (c0, c1, c2, c3) = (sa(0), sa(1), sa(2), sa(3));
            let (y0, y1) = y[a * 2 * n..][..2 * n].split_at_mut(n);
            for k in 0..n {
                y0[k] = c0[k] + c1[k] + c2[k] + bias;
                y1[k] = c1[k] - c2[k] - c3[k] + bias;
            }
        }
        // The fused activation, while the rows are in cache.
        act.apply_slice(&mut y[..4 * n]);
        for (r, ty) in trs.clone().enumerate() {
            for a in 0..2 {
                let oy = 2 * ty + a;
                if oy >= oh {
                    break;
                }
                let (y0, y1) = (
                    &y[(2 * a) * n + r * tw..][..tw],
                    &y[(2 * a + 1) * n + r * tw..][..tw],
                );
                // SAFETY: this task alone writes output row `oy` of this channel.
                let out = unsafe { dst.row_uninit(plane_row + oy, ow) };
                let (pairs, last) = out.split_at_mut(ow / 2 * 2);
                pairs
                    .chunks_exact_mut(2)
                    .zip(y0.iter().zip(y1))
                    .for_each(|(o, (a, b))| {
                        o[0].write(*a);
                        o[1].write(*b);
                    });
                if let Some(o) = last.first_mut() {
                    o.write(y0[ow / 2]);
                }
            }
        }
    }
}

/// conv2d of geometry `g` (for which [`applies`] holds) into `out`, the whole output tensor
/// (row stride `W_out`). Every output element is written, none read: the tile rows cover the
/// output rows of every (image, group) and [`transform_output`] writes each of them whole.
///
/// Tasks are bands of tile rows of one (image, group). Where there are fewer than
/// [`MIN_TASKS`](super::MIN_TASKS) such bands, each band's products are split over chunks of
/// output channels, and its transformed input, which they share, is made first by tasks over
/// chunks of input channels.
pub(super) fn conv2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, act): (Dst, Activation),
) {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let [oh, ow] = g.output;
    let in_plane = g.input[0] * g.input[1];
    let tiles = Tiles {
        rows: oh.div_ceil(2),
        cols: ow.div_ceil(2),
    };
    let tw = tiles.cols;
    let band_rows = BAND_TILES.div_ceil(tw).clamp(1, tiles.rows);
    let bands = tiles.rows.div_ceil(band_rows);
    let units = g.n * g.groups;
    let chunk = row_chunk(cog, units * bands, cog);
    let chunks = cog.div_ceil(chunk);
    // Tile rows of band `band`, and its width in tiles.
    let band_of = |band: usize| {
        let trs = band * band_rows..((band + 1) * band_rows).min(tiles.rows);
        let n = trs.len() * tw;
        (trs, n)
    };
    let input = |unit: usize| {
        let (b, grp) = (unit / g.groups, unit % g.groups);
        &x[(b * g.c_in + grp * cig) * in_plane..][..cig * in_plane]
    };
    let scratch_len = scratch_len(tiles, band_rows);
    // The weights' transform, then (shared bands) each band's transformed input.
    let (u_len, v_max) = (g.groups * XI * cog * cig, XI * cig * band_rows * tw);
    let shared = chunks > 1;
    let shared_len = if shared { units * bands * v_max } else { 0 };
    with_matrix(u_len + shared_len, |buf| {
        let (u, v_all) = buf.split_at_mut(u_len);
        transform_weights(g, w, u);
        if shared {
            let ic_chunk = row_chunk(cig, units * bands, cig);
            let ic_chunks = cig.div_ceil(ic_chunk);
            let v_dst = Dst::new(v_all, 1);
            (0..units * bands * ic_chunks)
                .into_par_iter()
                .for_each(|t| {
                    let (ub, c) = (t / ic_chunks, t % ic_chunks);
                    let (trs, n) = band_of(ub % bands);
                    let ics = c * ic_chunk..((c + 1) * ic_chunk).min(cig);
                    let v = Dst {
                        rs: n,
                        ..v_dst.at(ub * v_max, 0)
                    };
                    with_block(scratch_len, |scratch| {
                        transform_input(g, tiles, input(ub / bands), trs, ics, v, scratch)
                    });
                });
        }
        let (u, v_all) = (&*u, &*v_all);
        (0..units * bands * chunks).into_par_iter().for_each(|t| {
            let (unit, band, c) = (t / (bands * chunks), t / chunks % bands, t % chunks);
            let (b, grp) = (unit / g.groups, unit % g.groups);
            let (trs, n) = band_of(band);
            let ocs = c * chunk..((c + 1) * chunk).min(cog);
            let cl = ocs.len();
            // The chunk's output channels: consecutive planes, and their biases.
            let first = grp * cog + ocs.start;
            let planes = out.at((b * g.c_out + first) * oh, 0);
            let biases = bias.map(|b| &b[first..][..cl]);
            let v_len = if shared { 0 } else { XI * cig * n };
            with_block(v_len + XI * cl * n + scratch_len, |work| {
                let (v, rest) = work.split_at_mut(v_len);
                let (m, scratch) = rest.split_at_mut(XI * cl * n);
                let v: &[f32] = if shared {
                    &v_all[(unit * bands + band) * v_max..][..XI * cig * n]
                } else {
                    let all = 0..cig;
                    transform_input(
                        g,
                        tiles,
                        input(unit),
                        trs.clone(),
                        all,
                        Dst::new(v, n),
                        scratch,
                    );
                    v
                };
                for xi in 0..XI {
                    let lhs = &u[((grp * XI + xi) * cog + ocs.start) * cig..][..cl * cig];
                    let rhs = &v[xi * cig * n..][..cig * n];
                    let d = Dst::new(&mut m[xi * cl * n..][..cl * n], n);
                    // SAFETY: `m` is this thread's own block.
                    unsafe { sgemm(cl, n, cig, d, lhs, (cig, 1), rhs, (n, 1)) };
                }
                transform_output(g, tiles, m, trs, biases, (planes, act), scratch);
            });
        });
    });
}

#[cfg(test)]
mod tests {
    use super::super::kernel_check::{check, spec};
    use super::*;
    use crate::params::conv::{Conv2d, Padding};

    #[test]
    fn winograd_matches_the_reference() {
        let mut seed = 11;
        let asym = Padding::Explicit {
            top: 2,
            bottom: 0,
            left: 1,
            right: 3,
        };
        let valid = Padding::Valid;
        let same = Padding::uniform(1);
        for (xs, ws, spec) in [
            // Few channels (the transforms at their edges, cheaply), odd sizes both ways.
            ([1, 1, 5, 7], [1, 1, 3, 3], spec(same, 1)),
            ([2, 3, 6, 3], [2, 3, 3, 3], spec(valid, 1)),
            ([1, 4, 3, 3], [6, 2, 3, 3], spec(Padding::Full, 2)),
            ([1, 2, 9, 4], [3, 2, 3, 3], spec(asym, 1)),
            ([1, 2, 1, 1], [2, 2, 3, 3], spec(Padding::uniform(2), 1)),
            // Fused bands: several tile rows per band, several bands, a short last one.
            ([2, 32, 30, 29], [33, 32, 3, 3], spec(same, 1)),
            // Shared bands (too few for the cores): split over input and output channels; the
            // first with three bands, the last one short.
            ([1, 8, 100, 9], [8, 8, 3, 3], spec(valid, 1)),
            ([1, 32, 14, 14], [40, 32, 3, 3], spec(same, 1)),
            ([1, 64, 9, 7], [64, 32, 3, 3], spec(asym, 2)),
            ([1, 6, 3, 5], [3, 6, 3, 3], spec(valid, 1)),
        ] {
            check(conv2d, xs, ws, spec, &mut seed);
        }
    }

    #[test]
    fn winograd_runs_where_it_pays() {
        let same = spec(Padding::uniform(1), 1);
        let strided = Conv2d {
            stride: [1, 2],
            ..same
        };
        let dilated = Conv2d {
            dilation: [2, 1],
            ..same
        };
        for (xs, ws, spec, want) in [
            // The benchmark's 3×3 layers (W1, W2, W4) and a grouped one.
            ([1, 64, 56, 56], [64, 64, 3, 3], same, true),
            ([8, 64, 56, 56], [64, 64, 3, 3], same, true),
            ([1, 256, 14, 14], [256, 256, 3, 3], same, true),
            (
                [1, 64, 14, 14],
                [64, 32, 3, 3],
                spec(Padding::uniform(1), 2),
                true,
            ),
            // Too few channels or tiles; other kernels, strides, dilations.
            ([1, 16, 56, 56], [64, 16, 3, 3], same, false),
            ([1, 64, 56, 56], [16, 64, 3, 3], same, false),
            ([1, 512, 7, 7], [512, 512, 3, 3], same, false),
            ([1, 64, 14, 14], [64, 64, 3, 2], same, false),
            ([1, 64, 14, 14], [64, 64, 3, 3], strided, false),
            ([1, 64, 14, 14], [64, 64, 3, 3], dilated, false),
        ] {
            let g = spec.geometry(&xs, &ws, None).unwrap();
            assert_eq!(applies(&g), want, "{xs:?} {ws:?} {spec:?}");
        }
    }
}
