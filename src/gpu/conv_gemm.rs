//! The implicit-GEMM convolution kernels' host side (shaders/conv_gemm*.wgsl): their params,
//! im2col and stride-phase tables, the row-segment variant's packed weights (kept for later
//! calls) and input texture, and the passes of one GEMM launch.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::conv_choice::ConvAlgo;
use super::conv_wide::Wide;
use super::{Gpu, GpuTensor, Pass};
use crate::activation::Activation;
use crate::error::Result;
use crate::gpu::kernels::{self, Kernel, UNIFORM_WINDOW};
use crate::gpu::layout::params_struct;
use crate::params::conv::ConvGeometry;
use crate::tensor::Tensor;

params_struct! {
    /// `GemmParams` in shaders/conv_gemm.wgsl.
    struct GemmParams {
        mode: u32,
        batch: u32,
        groups: u32,
        m: u32,
        n: u32,
        k: u32,
        m_tiles: u32,
        n_tiles: u32,
        c_x: u32,
        c_y: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        k_h: u32,
        k_w: u32,
        s_h: u32,
        s_w: u32,
        d_h: u32,
        d_w: u32,
        p_h: u32,
        p_w: u32,
        tap_y: u32,
        tap_x: u32,
        has_bias: u32,
        /// Input channels per group.
        c_grp: u32,
        /// Mode 1: the output's height and width (out_h × out_w is the phase's grid).
        y_h: u32,
        y_w: u32,
        /// gemm_sg_rows: output rows padded to this many columns (a multiple of 8).
        row_w: u32,
        /// gemm_sg_rows, mode 1: a row's next column tap's weight is this many before the last.
        w_step: u32,
        /// gemm_sg_rows: kernel rows per tile in the packed weights, and the dispatch's tiles
        /// (`tile0 .. tile0 + tiles`, counting all groups' m tiles) and kernel rows
        /// (`row0 .. row1`); `accumulate`: add to y (a part after the first).
        rows_pad: u32,
        tile0: u32,
        tiles: u32,
        row0: u32,
        row1: u32,
        accumulate: u32,
        /// The fused activation (see `Activation::encode`), applied by the last part only.
        act: u32,
        act_a: f32,
        act_b: f32,
        /// The wide GEMMs split in parts over K (conv_gemm_wide.wgsl): K per part (a multiple of
        /// 16), 0 for no split.
        k_part: u32,
    }
}

/// Output tile of the workgroup-memory GEMM kernel: 32 channels × 32 pixels per workgroup.
const GEMM_TILE: usize = 32;

/// Output tile of the subgroup GEMM kernel: 8 channels × 32 pixels per workgroup.
const SUBGROUP_TILE: [u32; 2] = [8, 32];
/// Output tile of the subgroup kernel's row-segment variant: 8 channels × 64 pixels.
const ROWS_TILE: [u32; 2] = [8, 64];
/// The row-segment GEMM takes at most this many taps per kernel row, and a smaller column step
/// (its segment, `7·step + taps` values, stays in registers).
pub(super) const MAX_ROW_TAPS: usize = 8;

/// `ConvAlgo::Auto` runs the row-segment GEMM from this many multiply-adds: below, its extra
/// dispatch (staging the input texture) costs more than it saves over the plain subgroup GEMM
/// (measured on lavapipe with a chain of small ops; docs/DESIGN.md).
pub(super) const ROWS_MIN_MACS: usize = 1 << 16;

/// Multiply-adds of the forward convolution `g` (the same for its transposed one).
pub(super) fn macs(g: &ConvGeometry) -> usize {
    let taps = g.kernel[0] * g.kernel[1];
    g.n * g.c_out * g.output[0] * g.output[1] * g.c_in_per_group() * taps
}

/// How the row-segment GEMM's packed weights (see `pack_rows` in shaders/conv_gemm_sg.wgsl)
/// are laid out and split into dispatches whose tiles and kernel rows fit one uniform window.
#[derive(Debug, Clone, Copy)]
struct RowsLayout {
    /// Taps per kernel row and column step, and where a lane's row segment starts in its first
    /// texel (the shader's TAPS_W and STEP_SHIFT).
    taps: u32,
    step: u32,
    shift: u32,
    /// Kernel rows (`k / taps`) and, padded to a multiple of 16, per tile in the buffer.
    rows: u32,
    rows_pad: u32,
    /// vec4s per kernel row of a tile: 8 lanes × ⌈taps/4⌉ and the row's table entry.
    row_vec4s: u32,
    /// Tiles of 8 output channels, all groups.
    tiles: u32,
    /// Per dispatch: tiles (all rows of each), or else kernel rows of one tile.
    tiles_per_window: u32,
    rows_per_window: u32,
}

impl RowsLayout {
    /// `window`: vec4s a dispatch may read (4096, fewer in tests); at least 16 rows' worth.
    /// `tiles`: of 8 output channels, all groups'.
    fn new(taps: usize, step: u32, shift: u32, k: usize, tiles: u32, window: u32) -> Self {
        let rows = (k / taps) as u32;
        let rows_pad = rows.next_multiple_of(16);
        let row_vec4s = 8 * (taps as u32).div_ceil(4) + 1;
        let fit = window / (rows_pad * row_vec4s);
        let (tiles_per_window, rows_per_window) = if fit >= 1 {
            (fit, rows)
        } else {
            // Windows start at multiples of 16 rows: 256-byte aligned, as uniform offsets must be.
            (1, window / row_vec4s / 16 * 16)
        };
        RowsLayout {
            taps: taps as u32,
            step,
            shift,
            rows,
            rows_pad,
            row_vec4s,
            tiles,
            tiles_per_window,
            rows_per_window,
        }
    }

    /// u32s of the packed buffer: every tile, and room for a whole window after the last
    /// dispatch's start.
    fn packed_len(&self) -> usize {
        (self.tiles * self.rows_pad * self.row_vec4s) as usize * 4 + (UNIFORM_WINDOW / 4) as usize
    }

    /// The override constants [TAPS_W, STEP_SHIFT].
    fn constants(&self) -> [u32; 2] {
        [self.taps, self.step | self.shift << 16]
    }
}

/// The input texture of the row-segment GEMM's passes: its size for `params`.
fn x_texture_size(params: &GemmParams) -> wgpu::Extent3d {
    wgpu::Extent3d {
        width: params.in_w.div_ceil(4),
        height: params.in_h,
        depth_or_array_layers: params.batch * params.c_x,
    }
}

/// One GEMM of a launch: conv2d's, or one stride phase of conv_transpose2d.
pub(super) struct GemmPhase {
    pub(super) params: GemmParams,
    /// The im2col table (conv2d) or the phase's table (conv_transpose2d).
    pub(super) table: Arc<GpuTensor<u32>>,
    /// Taps per kernel row read from consecutive input columns, where they are, and the
    /// column offset of a kernel row's first tap (see [`Gpu::rows_layout`]).
    pub(super) row_taps: Option<usize>,
    pub(super) col0: i64,
}

/// What the row-segment GEMM's passes use besides the GEMM's buffers.
#[derive(Clone, Copy)]
struct RowsRun<'a> {
    layout: RowsLayout,
    /// The packed weights, and whether this call packs them.
    packed: &'a wgpu::Buffer,
    fresh: bool,
    /// The input staged by `x_to_texture`.
    x: &'a wgpu::TextureView,
}

/// A weight tensor packed for the row-segment GEMM with one im2col table, kept while both
/// live (convpool's tensors never change once made; an application's wrapped buffers are never
/// kept): a network's later calls skip the packing pass.
pub(super) struct PackedWeights {
    weights: Weak<wgpu::Buffer>,
    table: Weak<GpuTensor<u32>>,
    /// What else shapes the packing: taps, padded rows, tiles, m, groups, mode, w_step, c_grp.
    key: [u32; 8],
    packed: Arc<GpuTensor<u32>>,
}

/// At most this many packed weight tensors are kept (the oldest goes first).
const PACKED_KEPT: usize = 16;

/// Packed weights for one GEMM: found among those kept, or `fresh` (to be packed by this call
/// and kept once it is recorded).
struct Packed {
    tensor: Arc<GpuTensor<u32>>,
    fresh: bool,
    key: [u32; 8],
}

impl GemmParams {
    /// Geometry fields shared by both modes; `g` is the forward convolution.
    pub(super) fn new(
        g: &ConvGeometry,
        mode: u32,
        m: usize,
        n: usize,
        k: usize,
        has_bias: bool,
    ) -> Self {
        let u = |v: usize| v as u32;
        GemmParams {
            mode,
            batch: u(g.n),
            groups: u(g.groups),
            m: u(m),
            n: u(n),
            k: u(k),
            k_h: u(g.kernel[0]),
            k_w: u(g.kernel[1]),
            s_h: u(g.stride[0]),
            s_w: u(g.stride[1]),
            d_h: u(g.dilation[0]),
            d_w: u(g.dilation[1]),
            p_h: u(g.pad_before[0]),
            p_w: u(g.pad_before[1]),
            has_bias: has_bias as u32,
            ..Default::default()
        }
    }

    /// These params with the fused activation `act`.
    pub(super) fn with_act(self, act: Activation) -> Self {
        let (act, act_a, act_b) = act.encode();
        GemmParams {
            act,
            act_a,
            act_b,
            ..self
        }
    }

    /// One workgroup per output tile.
    pub(super) fn workgroups(&self) -> u64 {
        self.m_tiles as u64 * self.n_tiles as u64 * self.batch as u64 * self.groups as u64
    }
}

/// The GEMM kernel's im2col table: for each k = (ic, ky, kx) of a group's reduction, the
/// offset of input channel ic's plane and the tap's row and column offsets, as `[i32; 4]`.
pub(crate) fn k_table(g: &ConvGeometry) -> Result<Tensor<u32>> {
    let [kh, kw] = g.kernel;
    let plane = g.input[0] * g.input[1];
    let mut t = Vec::with_capacity(g.c_in_per_group() * kh * kw * 4);
    for ic in 0..g.c_in_per_group() {
        for ky in 0..kh {
            for kx in 0..kw {
                let v = [ic * plane, ky * g.dilation[0], kx * g.dilation[1], 0];
                t.extend(v.map(|v| v as u32)); // < 2^31: checked by check_reach and the buffer limits
            }
        }
    }
    Tensor::new([t.len() / 4, 4], t)
}

/// The table of stride phase `[py, px]` of a transposed convolution (forward geometry `g`,
/// windows starting `pad` rows/columns before row/column 0): for each input channel `ic` of a
/// group and each tap `(ky, kx)` that reaches the phase, `[ic's plane offset in x, row offset,
/// column offset, weight offset]`, where output `(py + s·j, px + s·i)` reads x at
/// `(j + row offset, i + column offset)` since `iy·s − p + ky·d = oy`. One unused row at the
/// end keeps the buffer non-empty when no tap reaches the phase.
///
/// Also the row taps for the row-segment GEMM: a tap row's column taps are listed by
/// ascending column offset, and where those offsets are consecutive the kernel reads them from
/// one row segment (`Some(taps per row)`), and how far the kernel column falls from one column
/// tap to the next.
pub(super) fn phase_table(
    g: &ConvGeometry,
    phase: [usize; 2],
    pad: [i64; 2],
) -> Result<(Tensor<u32>, Option<usize>, usize)> {
    let offsets = |a: usize| -> Vec<(usize, i64)> {
        let (s, d) = (g.stride[a] as i64, g.dilation[a] as i64);
        (0..g.kernel[a])
            .filter_map(|t| {
                let r = phase[a] as i64 + pad[a] - t as i64 * d;
                (r.rem_euclid(s) == 0).then_some((t, r.div_euclid(s)))
            })
            .collect()
    };
    let (rows, mut cols) = (offsets(0), offsets(1));
    cols.reverse(); // ascending column offset
    let consecutive = cols.windows(2).all(|c| c[1].1 == c[0].1 + 1);
    let row_taps = (consecutive && !cols.is_empty()).then_some(cols.len());
    // Taps reaching a phase are evenly spaced: the kernel column falls by this much per tap.
    let w_step = cols.get(..2).map_or(0, |c| c[0].0 - c[1].0);
    let plane = g.output[0] * g.output[1]; // our input's plane
    let taps = g.kernel[0] * g.kernel[1];
    let cog = g.c_in_per_group();
    let mut t = Vec::with_capacity((g.c_out_per_group() * rows.len() * cols.len() + 1) * 4);
    for ic in 0..g.c_out_per_group() {
        for &(ky, dy) in &rows {
            for &(kx, dx) in &cols {
                let wo = ic * cog * taps + ky * g.kernel[1] + kx;
                // Each < 2^31 (check_reach and the buffer limits): as i32 bits.
                t.extend([(ic * plane) as i64, dy, dx, wo as i64].map(|v| v as i32 as u32));
            }
        }
    }
    t.extend([0; 4]);
    Ok((Tensor::new([t.len() / 4, 4], t)?, row_taps, w_step))
}

/// A signed row offset as the shaders read it (`i32(u32)` reinterprets the bits).
pub(super) fn signed(v: i64) -> u32 {
    v as i32 as u32
}

impl Gpu {
    /// The packed-weight layout of the row-segment GEMM where it runs: `ConvAlgo::Gemm` on a
    /// device with subgroups of at least 8 lanes, a reduction whose kernel rows are `row_taps`
    /// (2 to 8) consecutive k reading consecutive input columns, and a column step (the stride
    /// for conv2d, 1 for a conv_transpose2d phase) below the taps, where a segment of
    /// `7·step + taps` loads beats `8·taps`; and unless `rows_ok` is false (`Auto` on a layer
    /// of fewer than [`ROWS_MIN_MACS`] multiply-adds). `col0`: the column offset of a kernel
    /// row's first tap (the same for every row).
    fn rows_layout(
        &self,
        algo: ConvAlgo,
        rows_ok: bool,
        params: &GemmParams,
        row_taps: Option<usize>,
        col0: i64,
    ) -> Option<RowsLayout> {
        let step = if params.mode == 0 { params.s_w } else { 1 };
        let taps = row_taps.filter(|&t| (2..=MAX_ROW_TAPS).contains(&t) && (step as usize) < t)?;
        let window_fits = self.inner.limits.max_uniform_buffer_binding_size >= UNIFORM_WINDOW;
        let runs = rows_ok && window_fits && algo == ConvAlgo::Gemm && self.inner.subgroup_gemm;
        (runs && params.k > 0).then(|| {
            let window = self.inner.uniform_vec4s.load(Ordering::Relaxed);
            let tiles = params.m.div_ceil(ROWS_TILE[0]) * params.groups;
            // A lane's first output column is a multiple of 8: its segment starts at
            // 8·i·step − p_w + col0 (conv2d) or 8·i + col0 (a transposed phase).
            let pad = if params.mode == 0 {
                params.p_w as i64
            } else {
                0
            };
            let shift = (col0 - pad).rem_euclid(4) as u32;
            RowsLayout::new(taps, step, shift, params.k as usize, tiles, window)
        })
    }

    /// The packed weights of `w` for layout `l` with im2col table `table`: the kept ones, or
    /// a new buffer to pack into.
    fn packed_weights(
        &self,
        op: &'static str,
        w: &GpuTensor,
        table: &Arc<GpuTensor<u32>>,
        l: &RowsLayout,
        p: &GemmParams,
    ) -> Result<Packed> {
        let key = [
            l.taps, l.rows_pad, l.tiles, p.m, p.groups, p.mode, p.w_step, p.c_grp,
        ];
        let mut kept = self.inner.packed.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|e| e.weights.strong_count() > 0 && e.table.strong_count() > 0);
        // An application's buffer may have changed since: pack it afresh (and keep nothing).
        let found = kept.iter().find(|e| {
            !w.external
                && e.key == key
                && std::ptr::eq(e.weights.as_ptr(), Arc::as_ptr(w.shared_buffer()))
                && std::ptr::eq(e.table.as_ptr(), Arc::as_ptr(table))
        });
        if let Some(e) = found {
            return Ok(Packed {
                tensor: e.packed.clone(),
                fresh: false,
                key,
            });
        }
        drop(kept);
        Ok(Packed {
            tensor: Arc::new(self.alloc(op, &[l.packed_len()])?),
            fresh: true,
            key,
        })
    }

    /// The pass staging `x` in `texture` for the row-segment GEMM (`params`' input geometry).
    fn x_to_texture<'a>(
        &self,
        params: &GemmParams,
        x: &'a wgpu::Buffer,
        texture: &'a wgpu::TextureView,
    ) -> Pass<'a> {
        let size = x_texture_size(params);
        let texels =
            size.width as usize * size.height as usize * size.depth_or_array_layers as usize;
        Pass {
            texture: Some(texture),
            ..Pass::new(Kernel::XToTexture, params, vec![x], texels)
        }
    }

    /// Keeps `packed` (once its packing pass is recorded) for later calls.
    fn keep_packed(&self, w: &GpuTensor, table: &Arc<GpuTensor<u32>>, packed: &Packed) {
        if !packed.fresh || w.external {
            return;
        }
        let mut kept = self.inner.packed.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= PACKED_KEPT {
            kept.remove(0);
        }
        kept.push(PackedWeights {
            weights: Arc::downgrade(w.shared_buffer()),
            table: Arc::downgrade(table),
            key: packed.key,
            packed: packed.tensor.clone(),
        });
    }

    /// The passes of the GEMM kernel for `params`: with a `rows` layout (from
    /// [`Gpu::rows_layout`]) and its `packed` buffer, a pass packing the weights (where
    /// `fresh`) and then the row-segment kernel's dispatches, a window each; else the subgroup
    /// kernel for `ConvAlgo::Gemm` where the device has subgroups of at least 8 lanes, or the
    /// workgroup-memory one, or the wide GEMMs (with `split`: their partials buffer and K per
    /// part, see [`Gpu::wide_split`]). `buffers`: input, weights, bias, output, im2col table.
    fn gemm_passes<'a>(
        &self,
        algo: ConvAlgo,
        params: GemmParams,
        buffers: [&'a wgpu::Buffer; 5],
        rows: Option<RowsRun<'a>>,
        split: Option<(&'a wgpu::Buffer, u32)>,
    ) -> Vec<Pass<'a>> {
        let [_, w, bias, y, table] = buffers;
        let Some(RowsRun {
            layout: l,
            packed,
            fresh,
            x,
        }) = rows
        else {
            let tiled = |tile: [u32; 2]| GemmParams {
                m_tiles: params.m.div_ceil(tile[0]),
                n_tiles: params.n.div_ceil(tile[1]),
                ..params
            };
            if let Some(wide) = Wide::of(algo) {
                return self.wide_passes(wide, tiled([wide.tile; 2]), buffers, split);
            }
            let (kernel, tile) = match algo {
                ConvAlgo::Gemm if self.inner.subgroup_gemm => (Kernel::ConvGemmSg, SUBGROUP_TILE),
                _ => (Kernel::ConvGemm, [GEMM_TILE as u32; 2]),
            };
            let params = tiled(tile);
            let pass = Pass::tiled(kernel, &params, buffers.to_vec(), params.workgroups());
            return vec![Pass {
                act: kernels::compiled_act(params.act),
                ..pass
            }];
        };
        // Output rows padded to whole lanes of 8 columns.
        let row_w = params.out_w.next_multiple_of(ROWS_TILE[1] / 8);
        let params = GemmParams {
            row_w,
            rows_pad: l.rows_pad,
            m_tiles: params.m.div_ceil(ROWS_TILE[0]),
            n_tiles: (params.out_h * row_w).div_ceil(ROWS_TILE[1]),
            ..params
        };
        let window = l.constants();
        let mut passes = Vec::new();
        if fresh {
            let packs = (l.tiles * l.rows * l.row_vec4s) as usize;
            let pack = Pass::new(Kernel::ConvPackRows, &params, vec![w, table, packed], packs);
            passes.push(Pass { window, ..pack });
        }
        for row0 in (0..l.rows).step_by(l.rows_per_window as usize) {
            for tile0 in (0..l.tiles).step_by(l.tiles_per_window as usize) {
                let tiles = l.tiles_per_window.min(l.tiles - tile0);
                let p = GemmParams {
                    tile0,
                    tiles,
                    row0,
                    row1: (row0 + l.rows_per_window).min(l.rows),
                    accumulate: (row0 > 0) as u32,
                    // The activation once the last part has been added.
                    act: if row0 + l.rows_per_window >= l.rows {
                        params.act
                    } else {
                        0
                    },
                    ..params
                };
                let groups = p.batch as u64 * tiles as u64 * p.n_tiles as u64;
                let pass = Pass::tiled(Kernel::ConvGemmSgRows, &p, vec![bias, y, packed], groups);
                passes.push(Pass {
                    window,
                    uniform_offset: ((tile0 * l.rows_pad + row0) * l.row_vec4s) as u64 * 16,
                    texture: Some(x),
                    act: kernels::compiled_act(p.act),
                    ..pass
                });
            }
        }
        passes
    }

    /// Launches the GEMM passes of `phases` (one for conv2d, one per stride phase for
    /// conv_transpose2d) over input `x`, weights `w`, output `y` and bias buffer `b`. Where
    /// the row-segment GEMM runs (see [`Gpu::rows_layout`]), the input is staged once in one
    /// texture for every phase and each phase's packed weights are found among those kept or
    /// packed by this launch (and kept once it is recorded).
    pub(super) fn gemm_launch(
        &self,
        op: &'static str,
        [x, w, y]: [&GpuTensor; 3],
        b: &wgpu::Buffer,
        (algo, rows_ok): (ConvAlgo, bool),
        phases: Vec<GemmPhase>,
    ) -> Result<()> {
        let mut rows: Vec<_> = phases
            .iter()
            .map(|ph| self.rows_layout(algo, rows_ok, &ph.params, ph.row_taps, ph.col0))
            .collect();
        // Every phase reads the same input: staged once, in one texture.
        let tex = match rows.iter().any(Option::is_some) {
            true => self.x_texture(op, x_texture_size(&phases[0].params))?,
            false => None,
        };
        if tex.is_none() {
            rows.iter_mut().for_each(|l| *l = None);
        }
        let packed = rows
            .iter()
            .zip(&phases)
            .map(|(l, ph)| {
                l.map(|l| self.packed_weights(op, w, &ph.table, &l, &ph.params))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        // The wide GEMMs' split over K, where a phase has too few output tiles.
        let splits = phases
            .iter()
            .map(|ph| self.wide_split(op, algo, &ph.params))
            .collect::<Result<Vec<_>>>()?;
        let mut passes = Vec::new();
        if let Some(t) = &tex {
            passes.push(self.x_to_texture(&phases[0].params, x.buffer(), &t.view));
        }
        for (((ph, rows), packed), split) in phases.iter().zip(rows).zip(&packed).zip(&splits) {
            let buffers = [x.buffer(), w.buffer(), b, y.buffer(), ph.table.buffer()];
            let run = match (rows, packed, &tex) {
                (Some(layout), Some(p), Some(t)) => Some(RowsRun {
                    layout,
                    packed: p.tensor.buffer(),
                    fresh: p.fresh,
                    x: &t.view,
                }),
                _ => None,
            };
            let split = split.as_ref().map(|(t, k_part)| (t.buffer(), *k_part));
            passes.extend(self.gemm_passes(algo, ph.params, buffers, run, split));
        }
        self.launch(op, &[], &passes)?;
        for (ph, packed) in phases.iter().zip(&packed) {
            if let Some(p) = packed {
                self.keep_packed(w, &ph.table, p);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[test]
fn params_match_the_shaders() {
    GemmParams::check_layout().unwrap();
}
