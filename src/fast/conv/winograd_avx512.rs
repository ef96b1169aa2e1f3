//! Winograd F(2×2, 3×3) on AVX-512 for layers whose transformed input takes at most 4 MB per
//! image (14×14 at 256 channels, 56×56 at 64): the transforms of [`super::winograd`], laid
//! out so that the 16 points ξ of a tile fill one vector.
//!
//! The portable kernel runs 16 GEMMs, one per point, across the tiles; with 49 tiles (14×14)
//! the GEMM's vectors of tiles are a quarter empty. Here the product runs along the points:
//! for output channel `oc` and tile `t`, `M[oc][t][ξ] = Σ_ic U[oc][ic][ξ] · V[ic][t][ξ]`,
//! elementwise over the 16 points, so every multiply-add is a whole vector, and a register
//! block of 4 output channels × 6 tiles loads 4 + 6 vectors per input channel for 24
//! multiply-adds. The weight transform writes each kernel's 16 points contiguously (9
//! multiply-adds of its broadcast taps by constant vectors), the input transform each tile's
//! (shuffles of its 4×4 patch), and the output transform `Aᵀ M A` runs on each accumulator
//! in registers, with the bias and the activation, before its 2×2 outputs are stored.
//!
//! Tasks: images (and groups) go in rounds of at most 4 MB of transformed input. In each,
//! first the input transform, over (image, group, chunk of input channels); then the
//! products, over (chunk of output channels, chunk of tiles, image, group): where the
//! transformed input outweighs the weights' the tiles are split and the weights transformed
//! once before the rounds, else the output channels are split and each task transforms its
//! chunk's weights into its own block (with several images, once before the rounds too).
//! Every output is summed over the input channels, in order, by one task, and the split
//! depends on the shapes alone, so results are deterministic.

use rayon::prelude::*;

use super::{avx512f, winograd, with_block, with_matrix, Dst, BLOCK_FLOATS, MIN_TASKS};
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Points of the transform domain (4×4): one vector.
pub(in crate::fast) const XI: usize = 16;
/// Output channels per register block (the remainder runs in blocks of 1).
const MR: usize = 4;
/// Tiles per register block (the remainder runs in one smaller block).
const NT: usize = 6;
/// Floats of transformed input per image and group up to which this kernel runs (4 MB: W1's
/// 64 channels of 28×28 tiles take 3.2 MB). Beyond that the portable kernel's bands, which
/// keep their transformed inputs in L2, ran faster (64 channels at 112×112: 3.7 against
/// 4.7–5.0 ms).
const V_FLOATS: usize = 1 << 20;
/// Channels per group, each way, from which this kernel runs: half the portable kernel's
/// (`train_segnet`'s layers, batch 32: 16 → 16 at 32×32 1.5 against 2.3 ms for im2col, 16 → 32
/// and 32 → 16 at 16×16 0.6–0.8 against 0.9–1.5).
const MIN_CHANNELS: usize = 16;
/// Tasks per image and group, about, for each of the two passes.
const TASKS: usize = 2 * MIN_TASKS;

/// Whether conv2d of geometry `g` runs here rather than through the portable Winograd kernel
/// or im2col: a Winograd layer (from [`MIN_CHANNELS`]) whose images' transformed inputs take
/// at most [`V_FLOATS`], on a machine with AVX-512.
pub(super) fn applies(g: &ConvGeometry) -> bool {
    winograd::winograd_layer(g, MIN_CHANNELS)
        && g.c_in_per_group() * Tiles::of(g).count() * XI <= V_FLOATS
        && avx512f()
}

/// Tile geometry of one conv2d: tile rows and columns, each tile 2×2 outputs.
#[derive(Clone, Copy)]
struct Tiles {
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn of(g: &ConvGeometry) -> Self {
        Tiles {
            rows: g.output[0].div_ceil(2),
            cols: g.output[1].div_ceil(2),
        }
    }

    fn count(self) -> usize {
        self.rows * self.cols
    }

    /// The zero-padded input plane under all tiles: rows and columns.
    fn plane(self) -> (usize, usize) {
        (2 * self.rows + 2, 2 * self.cols + 2)
    }
}

/// Where block `b` of `n` items in blocks of `size` starts, and how many it holds.
pub(in crate::fast) fn block(b: usize, size: usize, n: usize) -> (usize, usize) {
    (b * size, size.min(n - b * size))
}

/// conv2d of geometry `g` (for which [`applies`] holds) into `out`, the whole output tensor
/// (row stride `W_out`), with `act` applied to each plane once written. Every output element
/// is written, none read before.
pub(super) fn conv2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (out, act): (Dst, Activation),
) {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let tiles = Tiles::of(g);
    let t = tiles.count();
    let units = g.n * g.groups;
    let in_plane = g.input[0] * g.input[1];
    let [oh, ow] = g.output;
    let v_unit = cig * t * XI;
    // Images (and groups) whose transformed inputs fit in V_FLOATS are done together, a round
    // at a time (W2: 8 rounds of one image).
    let batch = (V_FLOATS / v_unit).clamp(1, units);
    let per_unit = TASKS.div_ceil(batch);
    let ic_chunk = cig.div_ceil(per_unit);
    let ic_chunks = cig.div_ceil(ic_chunk);
    // Chunks of output channels whose points fit in half a block (W4: 32 channels, 512 KB).
    let fits = (BLOCK_FLOATS / 2 / (cig * XI)).max(MR) / MR * MR;
    let oc_chunk = cog
        .div_ceil(per_unit)
        .next_multiple_of(MR)
        .min(fits)
        .min(cog);
    // Where the transformed input outweighs the weights' (W1: 3.2 MB against 256 KB), tasks
    // split the tiles and share the weights, transformed once; else (W4: 800 KB against 4 MB)
    // they split the output channels, each transforming its own.
    let blocks = t.div_ceil(NT);
    let split_tiles = v_unit > cog * cig * XI;
    let (oc_chunk, tile_chunks) = if split_tiles {
        let oc_chunk = cog.min(fits);
        (
            oc_chunk,
            per_unit.div_ceil(cog.div_ceil(oc_chunk)).min(blocks),
        )
    } else {
        (oc_chunk, 1)
    };
    let oc_chunks = cog.div_ceil(oc_chunk);
    let (ph, pw) = tiles.plane();
    let shared = g.n > 1 || split_tiles;
    let u_shared = if shared { g.groups * cog * cig * XI } else { 0 };
    with_matrix(batch * v_unit + u_shared, |buf| {
        let (v_all, u_all) = buf.split_at_mut(batch * v_unit);
        // With several images, each chunk's weights are transformed once, before the products.
        if shared {
            u_all
                .par_chunks_mut(cog * cig * XI)
                .enumerate()
                .flat_map(|(grp, ug)| {
                    ug.par_chunks_mut(oc_chunk * cig * XI)
                        .enumerate()
                        .map(move |(c, uc)| (grp, c, uc))
                })
                .for_each(|(grp, c, uc)| {
                    let (oc0, cl) = block(c, oc_chunk, cog);
                    let weights = &w[(grp * cog + oc0) * cig * 9..][..cl * cig * 9];
                    // SAFETY: AVX-512F is present (`applies`); `uc` holds the chunk's points.
                    unsafe { transform_weights(weights, cig, uc) };
                });
        }
        let u_all = &*u_all;
        for start in (0..units).step_by(batch) {
            let round = (units - start).min(batch);
            let v_dst = Dst::new(v_all, 1);
            (0..round * ic_chunks).into_par_iter().for_each(|task| {
                let (lu, c) = (task / ic_chunks, task % ic_chunks);
                let (b, grp) = ((start + lu) / g.groups, (start + lu) % g.groups);
                let (ic0, n) = block(c, ic_chunk, cig);
                let xg = &x[(b * g.c_in + grp * cig) * in_plane..][..cig * in_plane];
                with_block(ph * pw, |plane| {
                    for ic in ic0..ic0 + n {
                        pad_plane(g, &xg[ic * in_plane..][..in_plane], plane);
                        // SAFETY: AVX-512F is present (`applies`); this task alone writes the
                        // points of input channel `ic` of the round's unit `lu`, inside its
                        // `v_unit` floats.
                        let v = v_dst.at(lu * v_unit, 0);
                        unsafe { transform_input(tiles, plane, ic, cig, v) };
                    }
                });
            });
            let v_all = &*v_all;
            // Chunk by chunk, so that a core's consecutive tasks share the chunk's weights.
            (0..round * oc_chunks * tile_chunks)
                .into_par_iter()
                .for_each(|task| {
                    let (c, rest) = (task / (round * tile_chunks), task % (round * tile_chunks));
                    let (tc, lu) = (rest / round, rest % round);
                    let tbs = tc * blocks / tile_chunks..(tc + 1) * blocks / tile_chunks;
                    let (b, grp) = ((start + lu) / g.groups, (start + lu) % g.groups);
                    let (oc0, cl) = block(c, oc_chunk, cog);
                    let first = grp * cog + oc0;
                    let planes = out.at((b * g.c_out + first) * oh, 0);
                    let u_len = cl * cig * XI;
                    with_block(if shared { 0 } else { u_len }, |u_blk| {
                        let u_blk: &[f32] = if shared {
                            &u_all[first * cig * XI..][..u_len]
                        } else {
                            let weights = &w[first * cig * 9..][..cl * cig * 9];
                            // SAFETY: AVX-512F is present (`applies`); the block holds the points.
                            unsafe { transform_weights(weights, cig, u_blk) };
                            u_blk
                        };
                        let products = Products {
                            tiles,
                            cig,
                            u: u_blk,
                            v: &v_all[lu * v_unit..][..v_unit],
                            bias: bias.map(|b| &b[first..][..cl]),
                            planes,
                            out: [oh, ow],
                            tbs,
                            act,
                        };
                        // SAFETY: AVX-512F is present (`applies`); the blocks hold what the
                        // layouts need, and this task alone writes output planes
                        // [first, first + cl) of image `b`.
                        unsafe { products.run() };
                    });
                });
        }
    });
}

/// The input plane `x` `[H, W]` under all tiles, zero-padded, into `plane` (rows of
/// [`Tiles::plane`]): plane row `r`, column `c` is input row `r − pad_top`, column
/// `c − pad_left`.
fn pad_plane(g: &ConvGeometry, x: &[f32], plane: &mut [f32]) {
    let at = (-(g.pad_before[0] as isize), g.pad_before[1]);
    pad_rows(x, g.input, at, plane, Tiles::of(g).plane());
}

/// Rows `top … top + rows − 1` of the plane `x` `[H, W]`, each moved right by `left` and cut
/// to `cols` columns, into `dst` (rows of `cols`), zero outside the plane: the zero-padded
/// rows under a run of tiles.
pub(in crate::fast) fn pad_rows(
    x: &[f32],
    [h, w]: [usize; 2],
    (top, left): (isize, usize),
    dst: &mut [f32],
    (rows, cols): (usize, usize),
) {
    for (r, row) in dst.chunks_exact_mut(cols).take(rows).enumerate() {
        row.fill(0.0);
        let iy = top + r as isize;
        if (0..h as isize).contains(&iy) {
            let src = &x[iy as usize * w..][..w];
            let (lo, hi) = (left.min(cols), (left + w).min(cols));
            row[lo..hi].copy_from_slice(&src[..hi - lo]);
        }
    }
}

/// `V = Bᵀ d B` of every tile's 4×4 patch `d` of the padded plane of input channel `ic`, into
/// the unit's points `v` (`cig` input channels): tile block `tb` (tiles `[s, s + nt)`) at
/// `s·cig·16`, laid out `[ic][tile][ξ]`, so that a block's product reads one stream.
/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`; point `ξ = 4i + j`.
///
/// # Safety
/// AVX-512F must be present; `v` must hold the unit's `cig·tiles·16` floats, of which this
/// call alone writes input channel `ic`'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_input(tiles: Tiles, plane: &[f32], ic: usize, cig: usize, v: Dst) {
    use std::arch::x86_64::*;
    let (_, cols) = tiles.plane();
    let n = tiles.count();
    assert!(plane.len() >= tiles.plane().0 * cols && v.len >= cig * n * XI);
    for tb in 0..n.div_ceil(NT) {
        let (s, nt) = block(tb, NT, n);
        for j in 0..nt {
            let (ty, tx) = ((s + j) / tiles.cols, (s + j) % tiles.cols);
            // SAFETY: the patch (rows 2ty … 2ty + 3, columns 2tx … 2tx + 3) lies inside the
            // plane, and the tile's 16 points inside `v` (asserted sizes).
            unsafe {
                let points = patch_points(plane.as_ptr().add(2 * ty * cols + 2 * tx), cols);
                _mm512_storeu_ps(v.ptr.add((s * cig + ic * nt + j) * XI), points);
            }
        }
    }
}

/// `Bᵀ d B` of the 4×4 patch `d` at `p` (rows `cols` floats apart), point `ξ = 4i + j` in lane
/// `ξ`. `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`.
///
/// # Safety
/// AVX-512F must be present and the patch's 4 rows of 4 floats readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(in crate::fast) unsafe fn patch_points(
    p: *const f32,
    cols: usize,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let rows_sign = _mm512_setr_ps(
        -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0,
    );
    let cols_sign = _mm512_setr_ps(
        -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0,
    );
    // SAFETY: the caller's promise.
    let d = unsafe {
        let d = _mm512_castps128_ps512(_mm_loadu_ps(p));
        let d = _mm512_insertf32x4::<1>(d, _mm_loadu_ps(p.add(cols)));
        let d = _mm512_insertf32x4::<2>(d, _mm_loadu_ps(p.add(2 * cols)));
        _mm512_insertf32x4::<3>(d, _mm_loadu_ps(p.add(3 * cols)))
    };
    // Rows (128-bit lanes): (r0 − r2, r1 + r2, r2 − r1, r1 − r3).
    let a = _mm512_shuffle_f32x4::<0x64>(d, d); // r0 r1 r2 r1
    let b = _mm512_shuffle_f32x4::<0xDA>(d, d); // r2 r2 r1 r3
    let t = _mm512_fmadd_ps(rows_sign, b, a);
    // Columns (within each lane), the same combination.
    let a = _mm512_permute_ps::<0x64>(t);
    let b = _mm512_permute_ps::<0xDA>(t);
    _mm512_fmadd_ps(cols_sign, b, a)
}

/// The constant vectors of the transform `M · d · Mᵀ` of a `K×K` tile `d` into the 16 points:
/// vector `e` (of `E` = `K·K`) holds `M[i][e / K]·M[j][e % K]` in lane `4i + j`, so that the
/// points are `Σ_e d[e]·vector[e]`.
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(in crate::fast) unsafe fn point_coefficients<const K: usize, const E: usize>(
    m: &[[f32; K]; 4],
) -> [std::arch::x86_64::__m512; E] {
    use std::arch::x86_64::*;
    debug_assert_eq!(E, K * K);
    let mut vectors = [_mm512_setzero_ps(); E];
    for (e, v) in vectors.iter_mut().enumerate() {
        let mut lanes = [0.0f32; XI];
        for (xi, l) in lanes.iter_mut().enumerate() {
            *l = m[xi / 4][e / K] * m[xi % 4][e % K];
        }
        // SAFETY: 16 floats.
        *v = unsafe { _mm512_loadu_ps(lanes.as_ptr()) };
    }
    vectors
}

/// `acc[r][j] += a_s[r] ⊙ b_s[j]` over `steps` steps `s`: step `s` reads `R` vectors at
/// `a + s·a_step` and `T` consecutive vectors at `b + s·T·16`. The elementwise products of
/// both Winograd kernels (the forward's over input channels, the weight gradient's over tiles).
///
/// # Safety
/// AVX-512F must be present and every vector read inside its operand.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(in crate::fast) unsafe fn accumulate<const R: usize, const T: usize>(
    acc: &mut [[std::arch::x86_64::__m512; T]; R],
    (mut a, a_step): (*const f32, usize),
    mut b: *const f32,
    steps: usize,
) {
    use std::arch::x86_64::*;
    for _ in 0..steps {
        // SAFETY: the caller's promise.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); T];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(b.add(j * XI));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_loadu_ps(a.add(r * XI));
                for j in 0..T {
                    row[j] = _mm512_fmadd_ps(av, bv[j], row[j]);
                }
            }
            a = a.add(a_step);
            b = b.add(T * XI);
        }
    }
}

/// `U = G g Gᵀ` of every kernel `g` of `weights` (`[oc][ic][3][3]`, `cig` input channels),
/// into `u`: block `sb` of [`MR`] output channels (channels `[s, s + mr)`) at `s·cig·16`,
/// laid out `[ic][oc][ξ]`. `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`, so
/// `U[4i + j] = Σ G[i][ky]·G[j][kx]·g[ky][kx]`: 9 multiply-adds of broadcast taps by
/// constant vectors.
///
/// # Safety
/// AVX-512F must be present and `u` hold `weights.len() / 9 · 16` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_weights(weights: &[f32], cig: usize, u: &mut [f32]) {
    use std::arch::x86_64::*;
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    // SAFETY: AVX-512F is present (the caller's promise).
    let coef: [_; 9] = unsafe { point_coefficients(&G) };
    let cl = weights.len() / (9 * cig);
    assert!(u.len() >= cl * cig * XI);
    for sb in 0..cl.div_ceil(MR) {
        let (s, mr) = block(sb, MR, cl);
        for r in 0..mr {
            for ic in 0..cig {
                let g = &weights[((s + r) * cig + ic) * 9..][..9];
                let mut acc = _mm512_mul_ps(_mm512_set1_ps(g[0]), coef[0]);
                for e in 1..9 {
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(g[e]), coef[e], acc);
                }
                let at = (s * cig + ic * mr + r) * XI;
                // SAFETY: inside `u` (asserted).
                unsafe { _mm512_storeu_ps(u.as_mut_ptr().add(at), acc) };
            }
        }
    }
}

/// One task's products: its chunk of output channels of one (image, group), over all tiles.
struct Products<'a> {
    tiles: Tiles,
    cig: usize,
    /// The chunk's transformed weights ([`transform_weights`]).
    u: &'a [f32],
    /// The unit's transformed input ([`transform_input`]).
    v: &'a [f32],
    bias: Option<&'a [f32]>,
    /// The chunk's first output plane.
    planes: Dst,
    /// `[H_out, W_out]`.
    out: [usize; 2],
    /// The tile blocks (of [`NT`]) this task computes.
    tbs: std::ops::Range<usize>,
    /// Applied to each output as it is stored.
    act: Activation,
}

impl Products<'_> {
    /// Every register block: tile blocks outside, channel blocks inside (a tile block's points
    /// stay in cache across the chunk's channels).
    ///
    /// # Safety
    /// AVX-512F must be present; `u`, `v` and the planes hold what their layouts need, and
    /// this task alone writes the chunk's planes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self) {
        let n = self.tiles.count();
        let cl = self.u.len() / (self.cig * XI);
        assert!(self.v.len() >= n * self.cig * XI);
        for tb in self.tbs.clone() {
            let (s, nt) = block(tb, NT, n);
            for sb in 0..cl.div_ceil(MR) {
                let (c, mr) = block(sb, MR, cl);
                // SAFETY: the caller's promise, with the blocks inside `u` and `v`.
                unsafe {
                    match (mr, nt) {
                        (MR, NT) => self.block::<MR, NT>(c, s),
                        (MR, 5) => self.block::<MR, 5>(c, s),
                        (MR, 4) => self.block::<MR, 4>(c, s),
                        (MR, 3) => self.block::<MR, 3>(c, s),
                        (MR, 2) => self.block::<MR, 2>(c, s),
                        (MR, _) => self.block::<MR, 1>(c, s),
                        (_, NT) => self.channel_by_channel::<NT>(c, mr, s),
                        (_, 5) => self.channel_by_channel::<5>(c, mr, s),
                        (_, 4) => self.channel_by_channel::<4>(c, mr, s),
                        (_, 3) => self.channel_by_channel::<3>(c, mr, s),
                        (_, 2) => self.channel_by_channel::<2>(c, mr, s),
                        _ => self.channel_by_channel::<1>(c, mr, s),
                    }
                }
            }
        }
    }

    /// A last channel block of `mr` < [`MR`] channels, one channel at a time.
    ///
    /// # Safety
    /// As [`Products::run`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn channel_by_channel<const T: usize>(&self, c: usize, mr: usize, s: usize) {
        for r in 0..mr {
            // SAFETY: as the caller's; channel `c + r` of a block laid out `[ic][mr][ξ]` is
            // reached through its own offset and stride.
            unsafe { self.block_at::<1, T>(c, s, (r, mr)) };
        }
    }

    /// The register block of channels `[c, c + R)` and tiles `[s, s + T)`.
    ///
    /// # Safety
    /// As [`Products::run`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const T: usize>(&self, c: usize, s: usize) {
        // SAFETY: the caller's promise.
        unsafe { self.block_at::<R, T>(c, s, (0, R)) }
    }

    /// The register block of `R` channels starting at channel `c + first` of the channel block
    /// at `c` (laid out with `stride` channels per input channel), and tiles `[s, s + T)`:
    /// the products, then `Aᵀ M A` + bias of each, stored as its tile's 2×2 outputs (cut at the
    /// output's bottom and right edges).
    ///
    /// # Safety
    /// As [`Products::run`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block_at<const R: usize, const T: usize>(
        &self,
        c: usize,
        s: usize,
        (first, stride): (usize, usize),
    ) {
        use std::arch::x86_64::*;
        let cig = self.cig;
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        // SAFETY: the blocks' streams lie inside `u` and `v` (the caller's promise).
        unsafe {
            let u = self.u.as_ptr().add((c * cig + first) * XI);
            let v = self.v.as_ptr().add(s * cig * XI);
            accumulate(&mut acc, (u, stride * XI), v, cig);
        }
        // Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]] on the rows (lanes), then on the columns.
        let rows_sign = _mm512_setr_ps(
            1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        );
        let cols_sign = _mm512_setr_ps(
            1.0, -1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0,
        );
        let [oh, ow] = self.out;
        let cols = self.tiles.cols;
        for (r, a) in acc.iter().enumerate() {
            let oc = c + first + r;
            let bias = _mm512_set1_ps(self.bias.map_or(0.0, |b| b[oc]));
            for (j, &m) in a.iter().enumerate() {
                let (ty, tx) = ((s + j) / cols, (s + j) % cols);
                // Lane 0 of s: m0 + (m1 + m2); lane 1: m1 − (m2 + m3).
                let p = _mm512_shuffle_f32x4::<0x39>(m, m); // lanes 1 2 3 0
                let q = _mm512_shuffle_f32x4::<0x4E>(m, m); // lanes 2 3 0 1
                let rows = _mm512_fmadd_ps(rows_sign, _mm512_add_ps(p, q), m);
                let p = _mm512_permute_ps::<0x39>(rows);
                let q = _mm512_permute_ps::<0x4E>(rows);
                let y = _mm512_fmadd_ps(cols_sign, _mm512_add_ps(p, q), rows);
                let mut y = _mm512_add_ps(y, bias);
                if self.act != Activation::Identity {
                    let mut v = [0.0f32; XI];
                    // SAFETY: 16 floats each way.
                    unsafe { _mm512_storeu_ps(v.as_mut_ptr(), y) };
                    for i in [0, 1, 4, 5] {
                        v[i] = self.act.apply(v[i]);
                    }
                    y = unsafe { _mm512_loadu_ps(v.as_ptr()) };
                }
                let (y0, y1) = (_mm512_castps512_ps128(y), _mm512_extractf32x4_ps::<1>(y));
                let (oy, ox) = (2 * ty, 2 * tx);
                let pair = ox + 1 < ow;
                // SAFETY: output rows `oy` (and `oy + 1` where inside) of channel `oc`,
                // columns `ox` (and `ox + 1` where inside): this task's own elements.
                unsafe {
                    let o = self.planes.at(oc * oh + oy, ox).ptr;
                    store(o, y0, pair);
                    if oy + 1 < oh {
                        store(o.add(ow), y1, pair);
                    }
                }
            }
        }
    }
}

/// Stores the first two floats of `v` at `o` (`pair`), or the first alone.
///
/// # Safety
/// AVX-512F must be present and those floats writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store(o: *mut f32, v: std::arch::x86_64::__m128, pair: bool) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's promise.
    unsafe {
        if pair {
            _mm_store_sd(o.cast(), _mm_castps_pd(v));
        } else {
            _mm_store_ss(o, v);
        }
    }
}

#[cfg(test)]
mod tests;
