//! Launchers for the convolutions' backward passes (shaders/conv_backward.wgsl). The input
//! gradients run on the forward kernels: conv2d's is a
//! conv_transpose2d of the gradient on the same geometry, conv_transpose2d's a conv2d, so they
//! take every kernel variant, chunk and band those do.

use super::conv_gemm::k_table;
use super::device::KernelFamily;
use super::divide::magic;
use super::{Gpu, GpuTensor, Pass};
use crate::activation::Activation;
use crate::error::Result;
use crate::gpu::kernels::Kernel;
use crate::gpu::layout::params_struct;
use crate::gpu::ConvAlgo;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::tensor::dims4;

params_struct! {
    /// `WgradParams` in shaders/conv_backward.wgsl.
    struct WgradParams {
        m: u32,
        k: u32,
        units: u32,
        part_units: u32,
        m_tiles: u32,
        n_tiles: u32,
        groups: u32,
        parts: u32,
        c_y: u32,
        c_x: u32,
        c_grp: u32,
        npix: u32,
        out_w: u32,
        in_h: u32,
        in_w: u32,
        s_h: u32,
        s_w: u32,
        p_h: u32,
        p_w: u32,
        total_out: u32,
        /// Chunks of 32 pixels per image.
        chunks: u32,
        _pad: u32,
        ow_magic: [u32; 2],
    }
}

/// The weight-gradient tile of the workgroup-memory kernel: 32 output channels × 32 columns.
const WGRAD_TILE: [usize; 2] = [32, 32];
/// The tiles of the subgroup kernel: 16 or 32 output channels (32 from 17 channels per group)
/// × 32 columns per 8-lane workgroup.
const WGRAD_SG_TILES: [[usize; 2]; 2] = [[16, 32], [32, 32]];
/// Consecutive pixels of one image a workgroup sums per step (a chunk).
const WGRAD_CHUNK: usize = 32;
/// The weight gradient's reduction is split until about this many workgroups run…
const WGRAD_TARGET_GROUPS: usize = 256;
/// …but into parts of at least this many chunks, and at most [`WGRAD_MAX_PARTS`] parts.
const WGRAD_MIN_PART: usize = 32;
const WGRAD_MAX_PARTS: usize = 64;

/// How the weight gradient's `units` chunks are split, for `tiles` output tiles: `(parts,
/// chunks per part)`. A function of the shape alone, so every run sums the same parts in the
/// same order.
fn wgrad_parts(units: usize, tiles: usize) -> (usize, usize) {
    let want = (WGRAD_TARGET_GROUPS / tiles.max(1)).clamp(1, WGRAD_MAX_PARTS);
    let parts = units.div_ceil(WGRAD_MIN_PART).clamp(1, want);
    let per_part = units.div_ceil(parts).max(1);
    (units.div_ceil(per_part).max(1), per_part)
}

impl Gpu {
    /// The weight gradient `[C_out, C_in/groups, kH, kW]` of forward convolution `g`, from `gy`
    /// (shaped as its output) and `x` (as its input).
    /// `algo`: `Gemm` (and `Auto` with the CPU kernel family) take the subgroup kernel where
    /// the device has subgroups of at least 8 lanes; every other choice the 64-invocation
    /// workgroup-memory one.
    fn weight_grad(
        &self,
        op: &'static str,
        g: &ConvGeometry,
        [gy, x]: [&GpuTensor; 2],
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
        let k = cig * g.kernel[0] * g.kernel[1];
        let shape = [g.c_out, cig, g.kernel[0], g.kernel[1]];
        let gw = self.alloc(op, &shape)?;
        if gw.is_empty() {
            return Ok(gw);
        }
        let npix = g.output[0] * g.output[1];
        let chunks = npix.div_ceil(WGRAD_CHUNK);
        let units = g.n * chunks;
        if units == 0 {
            self.launch(op, &[gw.buffer()], &[])?;
            return Ok(gw);
        }
        self.check_binding(op, "gradient", gy.len())?;
        self.check_binding(op, "input", x.len())?;
        let auto_sg = algo == ConvAlgo::Auto && self.inner.family == KernelFamily::Cpu;
        let sg = (auto_sg || algo == ConvAlgo::Gemm) && self.inner.subgroup_gemm;
        let (kernel, tile) = match (sg, cog > WGRAD_SG_TILES[0][0]) {
            (true, false) => (Kernel::WeightGradSg16, WGRAD_SG_TILES[0]),
            (true, true) => (Kernel::WeightGradSg32, WGRAD_SG_TILES[1]),
            (false, _) => (Kernel::WeightGrad, WGRAD_TILE),
        };
        let (m_tiles, n_tiles) = (cog.div_ceil(tile[0]), k.div_ceil(tile[1]));
        let tiles = g.groups * m_tiles * n_tiles;
        let (parts, part_units) = wgrad_parts(units, tiles);
        let u = |v: usize| v as u32;
        let params = WgradParams {
            m: u(cog),
            k: u(k),
            units: u(units),
            part_units: u(part_units),
            m_tiles: u(m_tiles),
            n_tiles: u(n_tiles),
            groups: u(g.groups),
            parts: u(parts),
            c_y: u(g.c_out),
            c_x: u(g.c_in),
            c_grp: u(cig),
            npix: u(npix),
            out_w: u(g.output[1]),
            in_h: u(g.input[0]),
            in_w: u(g.input[1]),
            s_h: u(g.stride[0]),
            s_w: u(g.stride[1]),
            p_h: u(g.pad_before[0]),
            p_w: u(g.pad_before[1]),
            total_out: u(gw.len()),
            chunks: u(chunks),
            _pad: 0,
            ow_magic: magic(g.output[1]),
        };
        let table = self.table(&k_table(g)?)?;
        let groups = (parts * tiles) as u64;
        if parts == 1 {
            let buffers = vec![gy.buffer(), x.buffer(), table.buffer(), gw.buffer()];
            let pass = Pass::tiled(kernel, &params, buffers, groups);
            self.launch(op, &[], &[pass])?;
            return Ok(gw);
        }
        self.check_binding(op, "partial sums", parts * gw.len())?;
        let partial = self.alloc::<f32>(op, &[parts, gw.len()])?;
        let buffers = vec![gy.buffer(), x.buffer(), table.buffer(), partial.buffer()];
        let passes = [
            Pass::tiled(kernel, &params, buffers, groups),
            Pass::new(
                Kernel::SumParts,
                &params,
                vec![partial.buffer(), gw.buffer()],
                gw.len(),
            ),
        ];
        self.launch(op, &[], &passes)?;
        Ok(gw)
    }

    /// `Err` unless both tensors live on this `Gpu`.
    pub(super) fn check_pair(
        &self,
        op: &'static str,
        what: [&'static str; 2],
        a: &GpuTensor,
        b: &GpuTensor,
    ) -> Result<()> {
        self.check_owner(op, what[0], a)?;
        self.check_owner(op, what[1], b)
    }

    /// The gradient of `conv2d` with respect to its input; see
    /// [`crate::cpu::conv2d_backward_input`]. Runs the conv_transpose2d kernels on the
    /// forward geometry. Returns without waiting.
    pub fn conv2d_backward_input(
        &self,
        gy: &GpuTensor,
        w: &GpuTensor,
        size: [usize; 2],
        spec: &Conv2d,
    ) -> Result<GpuTensor> {
        self.conv2d_backward_input_with(gy, w, size, spec, ConvAlgo::Auto)
    }

    /// `conv2d_backward_input` with a chosen kernel (conv_transpose2d's, see [`ConvAlgo`]).
    pub fn conv2d_backward_input_with(
        &self,
        gy: &GpuTensor,
        w: &GpuTensor,
        size: [usize; 2],
        spec: &Conv2d,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv2d_backward_input";
        self.check_pair(op, ["gradient", "weight"], gy, w)?;
        let g = spec.backward_input_geometry(gy.shape(), w.shape(), size)?;
        self.conv_transpose2d_geom(op, [gy, w], None, &g, (algo, Activation::Identity))
    }

    /// The gradient of `conv2d` with respect to its weight; see
    /// [`crate::cpu::conv2d_backward_weight`]. Its reduction over images and pixels is split
    /// into parts by shape alone and the parts summed in order: bitwise reproducible. Returns
    /// without waiting.
    pub fn conv2d_backward_weight(
        &self,
        gy: &GpuTensor,
        x: &GpuTensor,
        kernel: [usize; 2],
        spec: &Conv2d,
    ) -> Result<GpuTensor> {
        self.conv2d_backward_weight_with(gy, x, kernel, spec, ConvAlgo::Auto)
    }

    /// `conv2d_backward_weight` with a chosen kernel: `Gemm` the subgroup one (where the device
    /// has subgroups of at least 8 lanes; `Auto` picks it there with the CPU kernel family),
    /// every other choice the
    /// workgroup-memory one.
    pub fn conv2d_backward_weight_with(
        &self,
        gy: &GpuTensor,
        x: &GpuTensor,
        kernel: [usize; 2],
        spec: &Conv2d,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv2d_backward_weight";
        self.check_pair(op, ["gradient", "input"], gy, x)?;
        let g = spec.backward_weight_geometry(gy.shape(), x.shape(), kernel)?;
        self.weight_grad(op, &g, [gy, x], algo)
    }

    /// The gradient of a convolution's bias; see [`crate::cpu::bias_backward`]. One workgroup
    /// per channel, summing in a fixed order. Returns without waiting.
    pub fn bias_backward(&self, gy: &GpuTensor) -> Result<GpuTensor> {
        let op = "bias_backward";
        self.check_owner(op, "gradient", gy)?;
        let [n, c, h, w] = dims4(op, "gradient", gy.shape())?;
        let gb = self.alloc(op, &[c])?;
        if c == 0 {
            return Ok(gb);
        }
        if gy.is_empty() {
            self.launch(op, &[gb.buffer()], &[])?;
            return Ok(gb);
        }
        self.check_binding(op, "gradient", gy.len())?;
        let params = WgradParams {
            units: n as u32,
            c_y: c as u32,
            npix: (h * w) as u32,
            ..Default::default()
        };
        let buffers = vec![gy.buffer(), gb.buffer()];
        let pass = Pass::tiled(Kernel::ChannelSums, &params, buffers, c as u64);
        self.launch(op, &[], &[pass])?;
        Ok(gb)
    }

    /// The gradient of `conv_transpose2d` with respect to its input; see
    /// [`crate::cpu::conv_transpose2d_backward_input`]. Runs the conv2d kernels. Returns
    /// without waiting.
    pub fn conv_transpose2d_backward_input(
        &self,
        gy: &GpuTensor,
        w: &GpuTensor,
        size: [usize; 2],
        spec: &ConvTranspose2d,
    ) -> Result<GpuTensor> {
        self.conv_transpose2d_backward_input_with(gy, w, size, spec, ConvAlgo::Auto)
    }

    /// `conv_transpose2d_backward_input` with a chosen kernel (conv2d's, see [`ConvAlgo`]).
    pub fn conv_transpose2d_backward_input_with(
        &self,
        gy: &GpuTensor,
        w: &GpuTensor,
        size: [usize; 2],
        spec: &ConvTranspose2d,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv_transpose2d_backward_input";
        self.check_pair(op, ["gradient", "weight"], gy, w)?;
        let g = spec.backward_input_geometry(gy.shape(), w.shape(), size)?;
        self.conv2d_geom(op, [gy, w], None, &g, (algo, Activation::Identity))
    }

    /// The gradient of `conv_transpose2d` with respect to its weight; see
    /// [`crate::cpu::conv_transpose2d_backward_weight`]. Deterministic as
    /// [`Gpu::conv2d_backward_weight`]. Returns without waiting.
    pub fn conv_transpose2d_backward_weight(
        &self,
        gy: &GpuTensor,
        x: &GpuTensor,
        kernel: [usize; 2],
        spec: &ConvTranspose2d,
    ) -> Result<GpuTensor> {
        self.conv_transpose2d_backward_weight_with(gy, x, kernel, spec, ConvAlgo::Auto)
    }

    /// `conv_transpose2d_backward_weight` with a chosen kernel, as
    /// [`Gpu::conv2d_backward_weight_with`].
    pub fn conv_transpose2d_backward_weight_with(
        &self,
        gy: &GpuTensor,
        x: &GpuTensor,
        kernel: [usize; 2],
        spec: &ConvTranspose2d,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv_transpose2d_backward_weight";
        self.check_pair(op, ["gradient", "input"], gy, x)?;
        let g = spec.backward_weight_geometry(gy.shape(), x.shape(), kernel)?;
        // The forward convolution's output is `x`, its input `gy`.
        self.weight_grad(op, &g, [x, gy], algo)
    }
}

#[cfg(test)]
mod tests {
    use super::wgrad_parts;

    #[test]
    fn parts_cover_the_chunks_and_depend_on_the_shape_alone() {
        for (u, tiles) in [
            (1, 1),
            (31, 1),
            (784, 36),
            (1024, 5),
            (3125, 1),
            (5, 300),
            (49, 1),
        ] {
            let (parts, len) = wgrad_parts(u, tiles);
            assert!(parts >= 1 && len >= 1);
            assert!(parts * len >= u && (parts - 1) * len < u, "{u} {tiles}");
            assert_eq!((parts, len), wgrad_parts(u, tiles));
        }
        // W2's layer: 8 images of 98 chunks, 36 tiles: 7 parts.
        assert_eq!(wgrad_parts(784, 36).0, 7);
        // tests/backward.rs's short last part: 49 chunks in parts of 25 and 24.
        assert_eq!(wgrad_parts(49, 1), (2, 25));
    }
}

#[cfg(test)]
#[test]
fn params_match_the_shaders() {
    WgradParams::check_layout().unwrap();
}
