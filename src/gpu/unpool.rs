//! Launchers for unpooling and the pooling backward passes (shaders/unpool2d.wgsl,
//! unpool_tiles.wgsl): gathers where the indices come from this library's pooling, range-checked
//! scatters for indices of any other origin.

use super::chunk::{Band, Chunks, Reach};
use super::pool::{plane_of, pool_pass, row_axis, PoolParams};
use super::record::BufferCopy;
use super::train::TrainParams;
use super::{check_reach, Gpu, GpuTensor, Pass};
use crate::error::{ensure, Error, Result};
use crate::gpu::kernels::Kernel;
use crate::params::pool::{unpool_backward_shape, unpool_shape, Pool2d, PoolGeometry};
use crate::tensor::{dims4, Tensor};

impl Gpu {
    /// Shared body of max_unpool2d and max_pool2d_backward.
    fn index_scatter(
        &self,
        op: &'static str,
        vals: &GpuTensor,
        idx: &GpuTensor<u32>,
        size: [usize; 2],
        kernels: (Kernel, Kernel),
    ) -> Result<GpuTensor> {
        self.check_owner(op, "values", vals)?;
        self.check_owner(op, "indices", idx)?;
        let ([n, c, ph, pw], plane_len) = unpool_shape(op, vals.shape(), idx.shape(), size)?;
        let out = self.alloc::<f32>(op, &[n, c, size[0], size[1]])?;
        if out.is_empty() {
            return Ok(out);
        }
        ensure!(
            plane_len <= u32::MAX as usize,
            op,
            "output plane {size:?} has more than 2^32 positions"
        );
        let (planes, per) = (n * c, ph * pw);
        let per_plane = [per as u64 * 4, plane_len as u64 * 4];
        match self.chunks(
            op,
            planes,
            &per_plane,
            &[("values", vals.buffer()), ("indices", idx.buffer())],
        )? {
            Chunks::Whole => self.index_scatter_once(op, vals, idx, &out, size, kernels, 0)?,
            Chunks::Rows => self.index_scatter_rows(op, vals, idx, &out, size, kernels)?,
            Chunks::Units(k) => {
                for p0 in (0..planes).step_by(k) {
                    let np = k.min(planes - p0);
                    let vs = self.copy_out(op, vals, p0 * per, &[1, np, ph, pw])?;
                    let mut is = self.copy_out(op, idx, p0 * per, &[1, np, ph, pw])?;
                    is.origin = idx.origin.map(|g| PoolGeometry { n: 1, c: np, ..g });
                    is.bound = idx.bound;
                    let os = self.alloc::<f32>(op, &[1, np, size[0], size[1]])?;
                    self.index_scatter_once(op, &vs, &is, &os, size, kernels, p0 * per)?;
                    self.copy_in(op, &os, &out, p0 * plane_len)?;
                }
            }
        }
        Ok(out)
    }

    /// max_unpool2d / max_pool2d_backward over planes too large for one binding.
    fn index_scatter_rows(
        &self,
        op: &'static str,
        vals: &GpuTensor,
        idx: &GpuTensor<u32>,
        out: &GpuTensor,
        size: [usize; 2],
        (gather, planes_kernel): (Kernel, Kernel),
    ) -> Result<()> {
        let [n, c, ph, pw] = dims4(op, "values", vals.shape())?;
        let (per, plane_len) = (ph * pw, size[0] * size[1]);
        let origin = idx
            .origin
            .filter(|g| g.output == [ph, pw] && g.n * g.c == n * c && g.input == size);
        if let Some(g) = origin {
            // Indices from this library's pooling: gather through the covering windows.
            return self.gather_rows(op, gather, &g, vals, Some(idx), out);
        }
        // Indices of another origin: each plane's pooled elements in chunks that fit a binding
        // (range-checked first), scattered in row-major order into bands of output rows.
        let limit = self.binding_limit();
        let row = size[1] as u64 * 4;
        if row > limit {
            let what = "one output row";
            return Err(Error::TooLarge {
                op,
                what,
                bytes: row,
                limit,
            });
        }
        let (chunk, band) = ((limit / 4) as usize, (limit / row) as usize);
        let bound_known = idx.indices_known_within(plane_len);
        for plane in 0..n * c {
            let mut parts = Vec::new();
            for j0 in (0..per).step_by(chunk) {
                let len = chunk.min(per - j0);
                let vs = self.copy_out(op, vals, plane * per + j0, &[1, 1, 1, len])?;
                let is = self.copy_out(op, idx, plane * per + j0, &[1, 1, 1, len])?;
                if !bound_known {
                    self.check_index_range(op, &is, size, per, plane * per + j0)?;
                }
                parts.push((vs, is));
            }
            for r0 in (0..size[0]).step_by(band) {
                let os = self.alloc::<f32>(op, &[1, 1, band.min(size[0] - r0), size[1]])?;
                let passes: Vec<_> = parts
                    .iter()
                    .map(|(vs, is)| {
                        let params = PoolParams {
                            total: 1,
                            out_h: 1,
                            out_w: vs.len() as u32,
                            idx_plane: os.len() as u32,
                            pos_lo: (r0 * size[1]) as u32,
                            ..Default::default()
                        };
                        let buffers = vec![vs.buffer(), is.buffer(), os.buffer()];
                        pool_pass(planes_kernel, params, buffers, 1)
                    })
                    .collect();
                self.launch(op, &[os.buffer()], &passes)?;
                self.copy_rows_in(op, &os, out, plane_of(plane, size), r0)?;
            }
        }
        Ok(())
    }

    /// One pass of max_unpool2d / max_pool2d_backward over tensors that fit one binding; `base`
    /// is the flat position of `idx` in the whole indices tensor (for messages).
    #[allow(clippy::too_many_arguments)]
    fn index_scatter_once(
        &self,
        op: &'static str,
        vals: &GpuTensor,
        idx: &GpuTensor<u32>,
        out: &GpuTensor,
        size: [usize; 2],
        (gather, planes_kernel): (Kernel, Kernel),
        base: usize,
    ) -> Result<()> {
        let [n, c, ph, pw] = dims4(op, "values", vals.shape())?;
        let plane_len = size[0] * size[1];
        // Indices made by this library's pooling carry its window geometry.
        let origin = idx
            .origin
            .filter(|g| g.output == [ph, pw] && g.n * g.c == n * c);
        if let Some(g) = origin {
            let buffers = vec![vals.buffer(), idx.buffer(), out.buffer()];
            let params = PoolParams::new(&g, vals.len());
            if g.tiles_exactly() && g.input == size && pw % 4 == 0 && params.compiled_window() {
                // Windows tiling the plane: four pooled elements' windows written whole per
                // invocation, every output element once (no zeroing).
                let pass = pool_pass(Kernel::UnpoolTiles, params, buffers, vals.len() / 4);
                return self.launch(op, &[], &[pass]);
            }
            let disjoint = (0..2).all(|a| g.stride[a] > (g.kernel[a] - 1) * g.dilation[a]);
            if disjoint && g.input[0] * g.input[1] <= plane_len {
                // Non-overlapping windows: each pooled element owns its position.
                let params = PoolParams {
                    idx_plane: plane_len as u32,
                    ..params
                };
                let pass = pool_pass(Kernel::ScatterOwned, params, buffers, vals.len());
                return self.launch(op, &[out.buffer()], &[pass]);
            }
            if g.input == size {
                // Overlapping windows over an input of this very size: gather through the
                // windows (in range by construction, summed in row-major window order).
                let params = PoolParams::new(&g, out.len());
                return self.launch(op, &[], &[pool_pass(gather, params, buffers, out.len())]);
            }
        }
        // Indices of another origin: unless their upload bounded them, check the range on the
        // device first (one small readback), then scatter plane by plane in row-major order.
        if !idx.indices_known_within(plane_len) && !idx.is_empty() {
            self.check_index_range(op, idx, size, ph * pw, base)?;
        }
        let params = PoolParams {
            total: (n * c) as u32,
            out_h: ph as u32,
            out_w: pw as u32,
            idx_plane: plane_len as u32,
            ..Default::default()
        };
        self.launch(
            op,
            &[out.buffer()],
            &[pool_pass(
                planes_kernel,
                params,
                vec![vals.buffer(), idx.buffer(), out.buffer()],
                n * c,
            )],
        )
    }

    /// `Err` naming the first index outside a `size` plane; runs `check_indices` on the
    /// device. `base` is the flat position of `idx` in the whole indices tensor and `per_plane`
    /// that tensor's pooled plane length (for the message).
    pub(super) fn check_index_range(
        &self,
        op: &'static str,
        idx: &GpuTensor<u32>,
        size: [usize; 2],
        per_plane: usize,
        base: usize,
    ) -> Result<()> {
        let plane_len = size[0] * size[1];
        let flag = self.upload(&Tensor::new([1], vec![u32::MAX])?)?;
        let params = PoolParams {
            total: idx.len() as u32,
            idx_plane: plane_len as u32,
            ..Default::default()
        };
        self.launch(
            op,
            &[],
            &[pool_pass(
                Kernel::CheckIndices,
                params,
                vec![idx.buffer(), flag.buffer()],
                idx.len(),
            )],
        )?;
        let first_bad = flag.download()?.data()[0];
        if first_bad == u32::MAX {
            return Ok(());
        }
        let j = first_bad as usize;
        // Fetch the offending value for the message, where the buffer can be copied from.
        let value = if idx.buffer().usage().contains(wgpu::BufferUsages::COPY_SRC) {
            let one = self.alloc::<u32>(op, &[1])?;
            let copy = BufferCopy::new(idx.buffer(), j as u64 * 4, one.buffer(), 0, 4);
            self.record_copies(op, &[copy])?;
            format!("index {}", one.download()?.data()[0])
        } else {
            "an index".to_string()
        };
        let j = base + j;
        Err(Error::invalid(
            op,
            format!(
                "{value} at position {j} (plane {}) is out of range for a {}×{} output plane ({plane_len} positions)",
                j / per_plane.max(1),
                size[0],
                size[1]
            ),
        ))
    }

    /// Max unpooling, PyTorch's `max_unpool2d`: values and indices `[N, C, h, w]` give
    /// `[N, C, H, W]` (`size` = `[H, W]`), zero except each value at its index in its plane
    /// (the last in row-major order wins where indices repeat). An index `≥ H·W` is an `Err`
    /// naming it and its position, and is never written.
    ///
    /// Returns without waiting for indices from this library's pooling or uploaded from the
    /// host (their range is known); indices made otherwise on the device are range-checked
    /// there first, and that call waits for the check. Matches [`crate::cpu::max_unpool2d`]
    /// exactly.
    pub fn max_unpool2d(
        &self,
        vals: &GpuTensor,
        idx: &GpuTensor<u32>,
        size: [usize; 2],
    ) -> Result<GpuTensor> {
        self.index_scatter(
            "max_unpool2d",
            vals,
            idx,
            size,
            (Kernel::MaxUnpoolGather, Kernel::UnpoolScatterPlanes),
        )
    }

    /// The gradient of max_pool2d with respect to its input: `grad` and the forward's indices
    /// `[N, C, h, w]` give `[N, C, H, W]`, each input position the sum (in row-major window
    /// order) of the gradients of the windows whose maximum it was. Waits exactly where
    /// [`Gpu::max_unpool2d`] does; matches [`crate::cpu::max_pool2d_backward`] exactly.
    pub fn max_pool2d_backward(
        &self,
        grad: &GpuTensor,
        idx: &GpuTensor<u32>,
        size: [usize; 2],
    ) -> Result<GpuTensor> {
        let op = "max_pool2d_backward";
        self.index_scatter(
            op,
            grad,
            idx,
            size,
            (Kernel::MaxPoolBackwardGather, Kernel::BackwardScatterPlanes),
        )
    }

    /// Shared body of avg_unpool2d and avg_pool2d_backward: a gather over covering windows.
    fn window_gather(
        &self,
        op: &'static str,
        kernel: Kernel,
        a: &GpuTensor,
        p: &Pool2d,
        size: [usize; 2],
    ) -> Result<GpuTensor> {
        self.check_owner(op, "pooled tensor", a)?;
        let g = p.geometry_for(op, a.shape(), size)?;
        check_reach(
            op, g.input, g.padding, g.output, g.stride, g.kernel, g.dilation,
        )?;
        let out = self.alloc::<f32>(op, &g.input_shape())?;
        if out.is_empty() {
            return Ok(out);
        }
        let (planes, per, plane_len) = (g.n * g.c, g.output[0] * g.output[1], size[0] * size[1]);
        let per_plane = [per as u64 * 4, plane_len as u64 * 4];
        match self.chunks(op, planes, &per_plane, &[("pooled tensor", a.buffer())])? {
            Chunks::Whole => {
                self.gather_once(op, kernel, PoolParams::new(&g, out.len()), a, None, &out)?
            }
            Chunks::Units(k) => {
                for p0 in (0..planes).step_by(k) {
                    let np = k.min(planes - p0);
                    let gs = PoolGeometry { n: 1, c: np, ..g };
                    let as_ = self.copy_out(op, a, p0 * per, &gs.output_shape())?;
                    let os = self.alloc::<f32>(op, &gs.input_shape())?;
                    self.gather_once(op, kernel, PoolParams::new(&gs, os.len()), &as_, None, &os)?;
                    self.copy_in(op, &os, &out, p0 * plane_len)?;
                }
            }
            Chunks::Rows => self.gather_rows(op, kernel, &g, a, None, &out)?,
        }
        Ok(out)
    }

    /// One dispatch of a gather kernel (unpooled position ← the windows covering it).
    fn gather_once(
        &self,
        op: &'static str,
        kernel: Kernel,
        params: PoolParams,
        pooled: &GpuTensor,
        idx: Option<&GpuTensor<u32>>,
        out: &GpuTensor,
    ) -> Result<()> {
        let idx = idx.map_or(self.dummy(), GpuTensor::buffer);
        let buffers = vec![pooled.buffer(), idx, out.buffer()];
        self.launch(op, &[], &[pool_pass(kernel, params, buffers, out.len())])
    }

    /// A gather kernel over planes too large for one binding: bands of unpooled rows, each
    /// with the pooled rows whose windows cover it.
    fn gather_rows(
        &self,
        op: &'static str,
        kernel: Kernel,
        g: &PoolGeometry,
        pooled: &GpuTensor,
        idx: Option<&GpuTensor<u32>>,
        out: &GpuTensor,
    ) -> Result<()> {
        let bands = self.row_bands(
            op,
            (g.input[0], g.input[1] as u64 * 4),
            (g.output[0], g.output[1] as u64 * 4),
            Reach::Covering(row_axis(g)),
        )?;
        let gs = PoolGeometry { n: 1, c: 1, ..*g };
        for plane in 0..g.n * g.c {
            let (pp, up) = (plane_of(plane, g.output), plane_of(plane, g.input));
            for Band { out: rows, input } in &bands {
                let ps = self.copy_rows_out(op, pooled, pp, input.clone())?;
                let is = idx
                    .map(|i| self.copy_rows_out(op, i, pp, input.clone()))
                    .transpose()?;
                let os = self.alloc::<f32>(op, &[1, 1, rows.len(), g.input[1]])?;
                let params = PoolParams {
                    row0: rows.start as u32,
                    orow0: input.start as u32,
                    ..PoolParams::new(&gs, os.len())
                };
                self.gather_once(op, kernel, params, &ps, is.as_ref(), &os)?;
                self.copy_rows_in(op, &os, out, up, rows.start)?;
            }
        }
        Ok(())
    }

    /// The gradient of `max_unpool2d` with respect to its values; see
    /// [`crate::cpu::max_unpool2d_backward`]. Indices from this library's pooling or uploaded
    /// from the host need no check on the device; others are range-checked there first (one
    /// small readback: that call waits).
    pub fn max_unpool2d_backward(
        &self,
        grad: &GpuTensor,
        idx: &GpuTensor<u32>,
    ) -> Result<GpuTensor> {
        let op = "max_unpool2d_backward";
        let (d, size) = unpool_backward_shape(op, grad.shape(), idx.shape())?;
        self.check_inputs(op, &[("gradient", grad)])?;
        self.check_owner(op, "indices", idx)?;
        self.check_binding(op, "indices", idx.len())?;
        let plane = size[0].saturating_mul(size[1]);
        if !idx.indices_known_within(plane) && !idx.is_empty() {
            self.check_index_range(op, idx, size, d[2].saturating_mul(d[3]), 0)?;
        }
        let out = self.alloc(op, &d)?;
        let params = TrainParams {
            total: idx.len() as u32,
            classes: d[2].saturating_mul(d[3]) as u32,
            hw: plane as u32,
            ..Default::default()
        };
        let buffers = vec![grad.buffer(), idx.buffer(), out.buffer()];
        let pass = Pass::new(Kernel::UnpoolBackward, &params, buffers, idx.len());
        self.launch(op, &[], &[pass])?;
        Ok(out)
    }

    /// Average unpooling: each pooled value of `a` replicated into the in-bounds positions of
    /// its window in a `size` plane, the mean where windows overlap, 0 where none covers;
    /// `size` must pool to `a`'s shape under `p`. Returns without waiting; as
    /// [`crate::cpu::avg_unpool2d`].
    pub fn avg_unpool2d(&self, a: &GpuTensor, p: &Pool2d, size: [usize; 2]) -> Result<GpuTensor> {
        self.window_gather("avg_unpool2d", Kernel::AvgUnpool, a, p, size)
    }

    /// The gradient of avg_pool2d with respect to its input (a `size` plane): each tap of
    /// window `o` receives `grad[o] / divisor(o)`, the exact adjoint of
    /// [`Gpu::avg_pool2d`]. Returns without waiting; as [`crate::cpu::avg_pool2d_backward`].
    pub fn avg_pool2d_backward(
        &self,
        grad: &GpuTensor,
        p: &Pool2d,
        size: [usize; 2],
    ) -> Result<GpuTensor> {
        self.window_gather(
            "avg_pool2d_backward",
            Kernel::AvgPoolBackward,
            grad,
            p,
            size,
        )
    }
}
