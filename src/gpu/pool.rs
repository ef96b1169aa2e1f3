//! Launchers for max, average and stochastic pooling (shaders/pool2d.wgsl, pool_quad.wgsl),
//! and the pooling params shared with the unpooling launchers (unpool.rs).

use super::chunk::{Band, Chunks, Planes, Reach, RowAxis};
use super::divide::magic;
use super::{check_reach, Gpu, GpuTensor, Pass};
use crate::error::Result;
use crate::gpu::kernels::{Kernel, MAX_COMPILED_WINDOW, WORKGROUP};
use crate::gpu::layout::params_struct;
use crate::params::pool::{Pool2d, PoolGeometry};

/// Plane `i` of a tensor of `[h, w]` planes, for copying bands of its rows.
pub(super) fn plane_of(i: usize, [h, w]: [usize; 2]) -> Planes {
    Planes {
        plane0: i,
        planes: 1,
        h,
        w,
    }
}

/// The row axis of a pooling's windows.
pub(super) fn row_axis(g: &PoolGeometry) -> RowAxis {
    RowAxis {
        k: g.kernel[0],
        s: g.stride[0],
        p: g.padding[0],
        d: g.dilation[0],
    }
}

params_struct! {
    /// `PoolParams` in the shaders.
    struct PoolParams {
        total: u32,
        planes: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        k_h: u32,
        k_w: u32,
        s_h: u32,
        s_w: u32,
        p_h: u32,
        p_w: u32,
        d_h: u32,
        d_w: u32,
        count_include_pad: u32,
        seed_lo: u32,
        seed_hi: u32,
        idx_plane: u32,
        /// Flat index of this dispatch's first output in the whole tensor (chunked stochastic
        /// pooling keeps its random stream).
        pos_base: u32,
        /// Global input row of row 0 of the bound input (the unpooled side), for bands of rows.
        row0: u32,
        /// Global pooled row of row 0 of the bound pooled side.
        orow0: u32,
        /// scatter_plane: first unpooled position the bound output band holds.
        pos_lo: u32,
        _pad: [u32; 2],
        /// `fast_div` magics (gpu/divide.rs) of out_w, out_h, in_w, in_h, s_h, s_w.
        dv_ow: [u32; 2],
        dv_oh: [u32; 2],
        dv_iw: [u32; 2],
        dv_ih: [u32; 2],
        dv_sh: [u32; 2],
        dv_sw: [u32; 2],
    }
}

impl PoolParams {
    pub(super) fn new(g: &PoolGeometry, total: usize) -> Self {
        let u = |v: usize| v as u32;
        PoolParams {
            total: u(total),
            planes: u(g.n * g.c),
            in_h: u(g.input[0]),
            in_w: u(g.input[1]),
            out_h: u(g.output[0]),
            out_w: u(g.output[1]),
            k_h: u(g.kernel[0]),
            k_w: u(g.kernel[1]),
            s_h: u(g.stride[0]),
            s_w: u(g.stride[1]),
            p_h: u(g.padding[0]),
            p_w: u(g.padding[1]),
            d_h: u(g.dilation[0]),
            d_w: u(g.dilation[1]),
            count_include_pad: g.count_include_pad as u32,
            idx_plane: u(g.input[0] * g.input[1]),
            ..Default::default()
        }
    }

    /// Whether the window is small enough to compile into a pipeline.
    pub(super) fn compiled_window(&self) -> bool {
        [self.k_h, self.k_w]
            .iter()
            .all(|&k| (1..=MAX_COMPILED_WINDOW as u32).contains(&k))
    }
}

/// A pass of a pooling kernel, with the `fast_div` magics of `params`' sizes filled in and,
/// for the kernels that walk windows, a small window size compiled into the pipeline.
pub(super) fn pool_pass<'a>(
    kernel: Kernel,
    params: PoolParams,
    buffers: Vec<&'a wgpu::Buffer>,
    threads: usize,
) -> Pass<'a> {
    let p = &params;
    let divisors = [p.out_w, p.out_h, p.in_w, p.in_h, p.s_h, p.s_w];
    let [dv_ow, dv_oh, dv_iw, dv_ih, dv_sh, dv_sw] = divisors.map(|d| magic(d as usize));
    let params = PoolParams {
        dv_ow,
        dv_oh,
        dv_iw,
        dv_ih,
        dv_sh,
        dv_sw,
        ..params
    };
    Pass {
        window: if kernel.walks_windows() && p.compiled_window() {
            [p.k_h, p.k_w]
        } else {
            [0, 0]
        },
        ..Pass::new(kernel, &params, buffers, threads)
    }
}

/// The four-outputs-per-invocation variant of max or average pooling (shaders/pool_quad.wgsl)
/// and its compiled-in constants [WIN_H, QUAD_W], where it runs: input and output rows a
/// multiple of 4 wide (so segments and outputs are whole vec4s), a window of at most 8×8, and
/// a segment of at most 36 values per kernel row.
fn quad_kernel(kernel: Kernel, p: &PoolParams) -> Option<(Kernel, [u32; 2])> {
    let quad = match kernel {
        Kernel::MaxPool => Kernel::MaxPoolQuad,
        Kernel::AvgPool => Kernel::AvgPoolQuad,
        _ => return None,
    };
    // Quads start at output column 4i, input column 4i·s_w − p_w: this far into a vec4.
    let shift = (4 - p.p_w % 4) % 4;
    let seg = shift as u64 + 3 * p.s_w as u64 + (p.k_w as u64 - 1) * p.d_w as u64 + 1;
    (p.compiled_window() && p.in_w.is_multiple_of(4) && p.out_w.is_multiple_of(4) && seg <= 36)
        .then(|| {
            let packed = p.k_w | p.s_w << 8 | p.d_w << 16 | shift << 24;
            (quad, [p.k_h, packed])
        })
}

impl Gpu {
    /// Runs one pooling kernel that writes values (and, for `idx`, indices), in chunks of planes
    /// when the tensors exceed one binding.
    fn pool(
        &self,
        op: &'static str,
        kernel: Kernel,
        x: &GpuTensor,
        p: &Pool2d,
        seed: u64,
        with_idx: bool,
    ) -> Result<(GpuTensor, Option<GpuTensor<u32>>)> {
        self.check_owner(op, "input", x)?;
        let g = p.geometry(op, x.shape())?;
        check_reach(
            op, g.input, g.padding, g.output, g.stride, g.kernel, g.dilation,
        )?;
        let vals = self.alloc::<f32>(op, &g.output_shape())?;
        let mut idx = with_idx
            .then(|| self.alloc::<u32>(op, &g.output_shape()))
            .transpose()?;
        if vals.is_empty() {
            return Ok((vals, idx));
        }
        let (planes, in_plane, out_plane) = (
            g.n * g.c,
            g.input[0] * g.input[1],
            g.output[0] * g.output[1],
        );
        let seeded = |gs: &PoolGeometry, total: usize| PoolParams {
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            ..PoolParams::new(gs, total)
        };
        let per_plane = [in_plane as u64 * 4, out_plane as u64 * 4];
        match self.chunks(op, planes, &per_plane, &[("input", x.buffer())])? {
            Chunks::Whole => {
                self.pool_once(op, kernel, x, seeded(&g, vals.len()), &vals, idx.as_ref())?
            }
            Chunks::Units(k) => {
                for p0 in (0..planes).step_by(k) {
                    let np = k.min(planes - p0);
                    let xs =
                        self.copy_out(op, x, p0 * in_plane, &[1, np, g.input[0], g.input[1]])?;
                    let gs = PoolGeometry { n: 1, c: np, ..g };
                    let vs = self.alloc::<f32>(op, &gs.output_shape())?;
                    let is = idx
                        .as_ref()
                        .map(|_| self.alloc::<u32>(op, &gs.output_shape()))
                        .transpose()?;
                    let params = PoolParams {
                        pos_base: (p0 * out_plane) as u32,
                        ..seeded(&gs, vs.len())
                    };
                    self.pool_once(op, kernel, &xs, params, &vs, is.as_ref())?;
                    self.copy_in(op, &vs, &vals, p0 * out_plane)?;
                    if let (Some(is), Some(idx)) = (&is, &idx) {
                        self.copy_in(op, is, idx, p0 * out_plane)?;
                    }
                }
            }
            Chunks::Rows => {
                let bands = self.row_bands(
                    op,
                    (g.output[0], g.output[1] as u64 * 4),
                    (g.input[0], g.input[1] as u64 * 4),
                    Reach::Windows(row_axis(&g)),
                )?;
                let gs = PoolGeometry { n: 1, c: 1, ..g };
                for plane in 0..planes {
                    let (xp, yp) = (plane_of(plane, g.input), plane_of(plane, g.output));
                    for Band { out, input } in &bands {
                        let xs = self.copy_rows_out(op, x, xp, input.clone())?;
                        let shape = [1, 1, out.len(), g.output[1]];
                        let vs = self.alloc::<f32>(op, &shape)?;
                        let is = idx
                            .as_ref()
                            .map(|_| self.alloc::<u32>(op, &shape))
                            .transpose()?;
                        let params = PoolParams {
                            pos_base: (plane * out_plane + out.start * g.output[1]) as u32,
                            row0: input.start as u32,
                            orow0: out.start as u32,
                            ..seeded(&gs, vs.len())
                        };
                        self.pool_once(op, kernel, &xs, params, &vs, is.as_ref())?;
                        self.copy_rows_in(op, &vs, &vals, yp, out.start)?;
                        if let (Some(is), Some(idx)) = (&is, &idx) {
                            self.copy_rows_in(op, is, idx, yp, out.start)?;
                        }
                    }
                }
            }
        }
        if let Some(i) = idx.as_mut() {
            i.origin = Some(g);
        }
        Ok((vals, idx))
    }

    /// One dispatch of a pooling kernel over `x` (which fits one binding).
    fn pool_once(
        &self,
        op: &'static str,
        kernel: Kernel,
        x: &GpuTensor,
        params: PoolParams,
        vals: &GpuTensor,
        idx: Option<&GpuTensor<u32>>,
    ) -> Result<()> {
        let mut buffers = vec![x.buffer(), vals.buffer()];
        buffers.extend(idx.map(GpuTensor::buffer));
        let mut pass = pool_pass(kernel, params, buffers, vals.len());
        if let Some((quad, window)) = quad_kernel(kernel, &params) {
            pass = Pass {
                kernel: quad,
                window,
                workgroups: (vals.len() / 4).div_ceil(WORKGROUP as usize) as u64,
                ..pass
            };
        }
        self.launch(op, &[], &[pass])
    }

    /// Max pooling with indices, PyTorch's `max_pool2d(…, return_indices=True)`: `x`
    /// `[N, C, H, W]` gives values and `u32` indices `[N, C, H_out, W_out]`, each index the flat
    /// position `h·W + w` of the window's maximum in its input plane (first maximum wins; NaN
    /// propagates; padding is never picked). One dispatch writes both; returns without
    /// waiting. The indices remember their window geometry, so unpooling and the backward pass
    /// with them gather and check nothing. Matches [`crate::cpu::max_pool2d`] exactly.
    pub fn max_pool2d(&self, x: &GpuTensor, p: &Pool2d) -> Result<(GpuTensor, GpuTensor<u32>)> {
        let (v, i) = self.pool("max_pool2d", Kernel::MaxPool, x, p, 0, true)?;
        Ok((v, i.expect("indices requested")))
    }

    /// Average pooling, PyTorch's `avg_pool2d` (with `count_include_pad` and `ceil_mode`
    /// as there, and dilation besides): `[N, C, H, W]` → `[N, C, H_out, W_out]`. Returns
    /// without waiting; matches [`crate::cpu::avg_pool2d`] within float rounding.
    pub fn avg_pool2d(&self, x: &GpuTensor, p: &Pool2d) -> Result<GpuTensor> {
        Ok(self.pool("avg_pool2d", Kernel::AvgPool, x, p, 0, false)?.0)
    }

    /// Stochastic pooling, training mode (Zeiler & Fergus): in each window a tap is picked
    /// with probability proportional to its positive part, by a hash of `seed` and the output
    /// position, so the same seed picks the same taps as [`crate::cpu::stochastic_pool2d`]
    /// (values and `u32` indices, as max_pool2d's). Returns without waiting.
    pub fn stochastic_pool2d(
        &self,
        x: &GpuTensor,
        p: &Pool2d,
        seed: u64,
    ) -> Result<(GpuTensor, GpuTensor<u32>)> {
        let (v, i) = self.pool(
            "stochastic_pool2d",
            Kernel::StochasticPool,
            x,
            p,
            seed,
            true,
        )?;
        Ok((v, i.expect("indices requested")))
    }

    /// Stochastic pooling, test mode: each window's expectation `Σa² / Σa` over its positive
    /// parts `a` (0 where none is positive), as
    /// [`crate::cpu::stochastic_pool2d_expectation`]. Returns without waiting.
    pub fn stochastic_pool2d_expectation(&self, x: &GpuTensor, p: &Pool2d) -> Result<GpuTensor> {
        let op = "stochastic_pool2d_expectation";
        Ok(self
            .pool(op, Kernel::StochasticExpectation, x, p, 0, false)?
            .0)
    }
}

#[cfg(test)]
#[test]
fn params_match_the_shaders() {
    PoolParams::check_layout().unwrap();
}
