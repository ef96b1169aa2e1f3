//! Launchers for conv2d and conv_transpose2d, and the choice of kernel (`ConvAlgo`): the direct
//! kernels (shaders/conv2d.wgsl, conv_transpose2d.wgsl) here, the GEMM ones in conv_gemm.rs.

use crate::gpu::layout::params_struct;

use super::chunk::{Chunks, Reach, RowAxis};
use super::conv_choice::{ConvAlgo, GemmShape};
use super::conv_gemm::{
    k_table, macs, phase_table, signed, GemmParams, GemmPhase, MAX_ROW_TAPS, ROWS_MIN_MACS,
};
use super::{check_reach, Gpu, GpuTensor, Pass};
use crate::activation::Activation;
use crate::error::Result;
use crate::gpu::kernels::{self, Kernel};
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};

params_struct! {
    /// `ConvParams` in the shaders.
    struct ConvParams {
        total: u32,
        n: u32,
        c_in: u32,
        c_out: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        k_h: u32,
        k_w: u32,
        stride_h: u32,
        stride_w: u32,
        dil_h: u32,
        dil_w: u32,
        pad_h: u32,
        pad_w: u32,
        groups: u32,
        has_bias: u32,
        tap_y: u32,
        tap_x: u32,
        /// conv2d_rows: groups of 8 outputs per output row.
        octets: u32,
        /// The fused activation (see `Activation::encode`).
        act: u32,
        act_a: f32,
        act_b: f32,
    }
}

impl ConvParams {
    /// The params of geometry `g` (every size already checked to fit the buffers, hence u32).
    fn new(g: &ConvGeometry, total: usize, has_bias: bool, act: Activation) -> Self {
        let (act, act_a, act_b) = act.encode();
        let u = |v: usize| v as u32;
        ConvParams {
            total: u(total),
            n: u(g.n),
            c_in: u(g.c_in),
            c_out: u(g.c_out),
            in_h: u(g.input[0]),
            in_w: u(g.input[1]),
            out_h: u(g.output[0]),
            out_w: u(g.output[1]),
            k_h: u(g.kernel[0]),
            k_w: u(g.kernel[1]),
            stride_h: u(g.stride[0]),
            stride_w: u(g.stride[1]),
            dil_h: u(g.dilation[0]),
            dil_w: u(g.dilation[1]),
            pad_h: u(g.pad_before[0]),
            pad_w: u(g.pad_before[1]),
            groups: u(g.groups),
            has_bias: has_bias as u32,
            tap_y: 0,
            tap_x: 0,
            octets: 0,
            act,
            act_a,
            act_b,
        }
    }
}
impl Gpu {
    /// `Err` unless the input, weight and bias all live on this `Gpu`.
    fn check_conv_owners(
        &self,
        op: &'static str,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
    ) -> Result<()> {
        self.check_owner(op, "input", x)?;
        self.check_owner(op, "weight", w)?;
        bias.map_or(Ok(()), |b| self.check_owner(op, "bias", b))
    }

    /// PyTorch's `conv2d` (cross-correlation): `x` `[N, C_in, H, W]`, weight
    /// `[C_out, C_in/groups, kH, kW]`, optional bias `[C_out]`, output
    /// `[N, C_out, H_out, W_out]` with the sizes of `spec` ([`Conv2d::geometry`] computes them;
    /// `Same`, `Full` and asymmetric padding, stride, dilation, groups). The kernel is chosen
    /// by shape and device ([`ConvAlgo::Auto`]). Returns without waiting; matches
    /// [`crate::cpu::conv2d`] within float rounding, bitwise the same on every run.
    pub fn conv2d(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Conv2d,
    ) -> Result<GpuTensor> {
        self.conv2d_with(x, w, bias, spec, ConvAlgo::Auto)
    }

    /// [`Gpu::conv2d`] with a chosen kernel (every choice runs every shape; `Gemm` falls back
    /// to `GemmTiled` where the device has no subgroups of at least 8 lanes).
    pub fn conv2d_with(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Conv2d,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv2d";
        self.check_conv_owners(op, x, w, bias)?;
        let g = spec.geometry(x.shape(), w.shape(), bias.map(GpuTensor::shape))?;
        self.conv2d_geom(op, [x, w], bias, &g, (algo, Activation::Identity))
    }

    /// conv2d of the checked geometry `g` with input and weight `xw`, then `act`: in chunks of
    /// images or bands of rows where the tensors exceed one binding.
    pub(super) fn conv2d_geom(
        &self,
        op: &'static str,
        [x, w]: [&GpuTensor; 2],
        bias: Option<&GpuTensor>,
        g: &ConvGeometry,
        (algo, act): (ConvAlgo, Activation),
    ) -> Result<GpuTensor> {
        check_reach(
            op,
            g.input,
            g.pad_before,
            g.output,
            g.stride,
            g.kernel,
            g.dilation,
        )?;
        let y = self.alloc(op, &g.output_shape())?;
        if y.is_empty() {
            return Ok(y);
        }
        if x.is_empty() || w.is_empty() {
            // No product to sum (no input channel, or an input of no position).
            let out = ConvGeometry {
                c_in: g.c_out,
                input: g.output,
                ..*g
            };
            self.fill_bias(op, bias, &out, act, &y)?;
            return Ok(y);
        }
        self.check_binding(op, "weight", w.len())?;
        let algo = self.tuned(op, g, algo, |a| {
            self.conv2d_geom(op, [x, w], bias, g, (a, act)).map(drop)
        })?;
        self.conv_chunked(
            op,
            (x, &y, g, false),
            |xs, gb, pad, ys| self.conv2d_run(xs, w, bias, gb, pad, (algo, act), ys),
            |xs| {
                let gs = ConvGeometry {
                    n: xs.shape()[0],
                    ..*g
                };
                self.conv2d_geom(op, [xs, w], bias, &gs, (algo, act))
            },
        )?;
        Ok(y)
    }

    /// Runs a convolution of forward geometry `g` (transposed when `transposed`) from `x` into
    /// `y`: `run(x, g, pad_h, y)` at once when both fit one binding, else `again` on chunks of
    /// images, or `run` on bands of rows of each image when one image is over the limit.
    fn conv_chunked(
        &self,
        op: &'static str,
        (x, y, g, transposed): (&GpuTensor, &GpuTensor, &ConvGeometry, bool),
        run: impl Fn(&GpuTensor, &ConvGeometry, i64, &GpuTensor) -> Result<()>,
        again: impl Fn(&GpuTensor) -> Result<GpuTensor>,
    ) -> Result<()> {
        let (x_img, y_img) = (x.len() / g.n, y.len() / g.n);
        let per_image = [x_img as u64 * 4, y_img as u64 * 4];
        match self.chunks(op, g.n, &per_image, &[("input", x.buffer())])? {
            Chunks::Whole => run(x, g, g.pad_before[0] as i64, y),
            Chunks::Units(k) => self.by_images(op, x, y, k, again),
            Chunks::Rows => self.conv_rows(op, x, y, g, transposed, run),
        }
    }

    /// A convolution of forward geometry `g` (transposed when `transposed`) from `x` into
    /// `y` in bands of rows of each image: `run(x band, band geometry, pad_h, y band)`.
    /// conv2d bands its output rows, each with the input rows its windows reach;
    /// conv_transpose2d bands its output rows (the forward input), each with the rows of its
    /// input (the forward output) whose windows cover them.
    #[allow(clippy::too_many_arguments)]
    fn conv_rows(
        &self,
        op: &'static str,
        x: &GpuTensor,
        y: &GpuTensor,
        g: &ConvGeometry,
        transposed: bool,
        run: impl Fn(&GpuTensor, &ConvGeometry, i64, &GpuTensor) -> Result<()>,
    ) -> Result<()> {
        let fwd_in = (g.input[0], (g.c_in * g.input[1]) as u64 * 4);
        let fwd_out = (g.output[0], (g.c_out * g.output[1]) as u64 * 4);
        let axis = RowAxis {
            k: g.kernel[0],
            s: g.stride[0],
            p: g.pad_before[0],
            d: g.dilation[0],
        };
        let (bands, xs, ys) = if transposed {
            let bands = self.row_bands(op, fwd_in, fwd_out, Reach::Covering(axis))?;
            (bands, (x, g.c_out, g.output), (y, g.c_in, g.input))
        } else {
            let bands = self.row_bands(op, fwd_out, fwd_in, Reach::Windows(axis))?;
            (bands, (x, g.c_in, g.input), (y, g.c_out, g.output))
        };
        self.by_rows(op, xs, ys, &bands, |xb, band| {
            let (fin, fout) = if transposed {
                (&band.out, &band.input)
            } else {
                (&band.input, &band.out)
            };
            let gb = ConvGeometry {
                n: 1,
                input: [fin.len(), g.input[1]],
                output: [fout.len(), g.output[1]],
                ..*g
            };
            let shape = if transposed {
                gb.input_shape()
            } else {
                gb.output_shape()
            };
            let yb = self.alloc(op, &shape)?;
            // Forward input row fin.start is the band's row 0: its windows start at
            // o*s - (p + fin.start - fout.start*s).
            let pad = (g.pad_before[0] + fin.start) as i64 - (fout.start * g.stride[0]) as i64;
            run(xb, &gb, pad, &yb)?;
            Ok(yb)
        })
    }

    /// One conv2d pass over tensors that fit their bindings: geometry `g`, except that the
    /// windows start `pad_h` rows above row 0 (negative: below), so a band of rows can run.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_run(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        g: &ConvGeometry,
        pad_h: i64,
        (algo, act): (ConvAlgo, Activation),
        y: &GpuTensor,
    ) -> Result<()> {
        let op = "conv2d";
        let b = bias.map_or(self.dummy(), |b| b.buffer());
        let (m, n) = (g.c_out_per_group(), g.output[0] * g.output[1]);
        let k = g.c_in_per_group() * g.kernel[0] * g.kernel[1];
        let rows_ok = algo != ConvAlgo::Auto || macs(g) >= ROWS_MIN_MACS;
        let shape = GemmShape {
            m,
            n,
            k,
            count: g.n * g.groups,
            depthwise: g.c_in_per_group() == 1 && m == 1,
            transposed: false,
        };
        let algo = algo.resolve(shape, self.inner.subgroup_gemm, self.inner.family);
        match algo {
            a if a.is_gemm() => {
                let table = self.table(&k_table(g)?)?;
                let params = GemmParams {
                    c_x: g.c_in as u32,
                    c_y: g.c_out as u32,
                    in_h: g.input[0] as u32,
                    in_w: g.input[1] as u32,
                    out_h: g.output[0] as u32,
                    out_w: g.output[1] as u32,
                    p_h: signed(pad_h),
                    c_grp: g.c_in_per_group() as u32,
                    ..GemmParams::new(g, 0, m, n, k, bias.is_some()).with_act(act)
                };
                let phase = GemmPhase {
                    params,
                    table,
                    row_taps: (g.dilation[1] == 1).then_some(g.kernel[1]),
                    col0: 0, // a kernel row's first tap: kx = 0
                };
                self.gemm_launch(op, [x, w, y], b, (algo, rows_ok), vec![phase])
            }
            _ => {
                let params = ConvParams {
                    pad_h: signed(pad_h),
                    ..ConvParams::new(g, y.len(), bias.is_some(), act)
                };
                let [kw, sw] = [g.kernel[1], g.stride[1]];
                let depthwise = g.c_in_per_group() == 1 && g.c_out_per_group() == 1;
                let buffers = vec![x.buffer(), w.buffer(), b, y.buffer()];
                let pass = if depthwise && g.dilation[1] == 1 && sw < kw && kw <= MAX_ROW_TAPS {
                    // Depthwise: 8 outputs of a row per invocation share their row segments.
                    let octets = g.output[1].div_ceil(8);
                    let params = ConvParams {
                        octets: octets as u32,
                        ..params
                    };
                    let threads = y.len() / g.output[1] * octets;
                    Pass {
                        window: [kw as u32, sw as u32],
                        act: kernels::compiled_act(params.act),
                        ..Pass::new(Kernel::Conv2dRows, &params, buffers, threads)
                    }
                } else {
                    Pass {
                        act: kernels::compiled_act(params.act),
                        ..Pass::new(Kernel::Conv2d, &params, buffers, y.len())
                    }
                };
                self.launch(op, &[], &[pass])
            }
        }
    }

    /// PyTorch's `conv_transpose2d`: `x` `[N, C_in, H, W]`, weight
    /// `[C_in, C_out/groups, kH, kW]`, optional bias `[C_out]`, output per axis
    /// `(n − 1)·s − 2p + d·(k − 1) + output_padding + 1`; the adjoint of [`Gpu::conv2d`].
    /// Deterministic without atomics: one pass per kernel tap, each a one-to-one map from
    /// input to output positions, or one implicit-GEMM pass per stride phase (see
    /// [`ConvAlgo`]). Returns without waiting; matches [`crate::cpu::conv_transpose2d`] within
    /// float rounding.
    pub fn conv_transpose2d(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &ConvTranspose2d,
    ) -> Result<GpuTensor> {
        self.conv_transpose2d_with(x, w, bias, spec, ConvAlgo::Auto)
    }

    /// [`Gpu::conv_transpose2d`] with a chosen kernel: `Direct` the per-tap scatter, `Gemm` or
    /// `GemmTiled` the per-phase GEMM.
    pub fn conv_transpose2d_with(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &ConvTranspose2d,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv_transpose2d";
        self.check_conv_owners(op, x, w, bias)?;
        // `g` is the forward convolution: its input is our output, its output our input.
        let g = spec.geometry(x.shape(), w.shape(), bias.map(GpuTensor::shape))?;
        self.conv_transpose2d_geom(op, [x, w], bias, &g, (algo, Activation::Identity))
    }

    /// conv_transpose2d of the checked forward geometry `g` (`x` shaped as its output), then
    /// `act`: in chunks of images or bands of rows where the tensors exceed one binding.
    pub(super) fn conv_transpose2d_geom(
        &self,
        op: &'static str,
        [x, w]: [&GpuTensor; 2],
        bias: Option<&GpuTensor>,
        g: &ConvGeometry,
        (algo, act): (ConvAlgo, Activation),
    ) -> Result<GpuTensor> {
        check_reach(
            op,
            g.input,
            g.pad_before,
            g.output,
            g.stride,
            g.kernel,
            g.dilation,
        )?;
        let y = self.alloc(op, &g.input_shape())?;
        if y.is_empty() {
            return Ok(y);
        }
        if x.is_empty() || w.is_empty() {
            // No product to sum: every output is the bias (or 0), through the activation.
            self.fill_bias(op, bias, g, act, &y)?;
            return Ok(y);
        }
        self.check_binding(op, "weight", w.len())?;
        let algo = self.tuned(op, g, algo, |a| {
            self.conv_transpose2d_geom(op, [x, w], bias, g, (a, act))
                .map(drop)
        })?;
        self.conv_chunked(
            op,
            (x, &y, g, true),
            |xs, gb, pad, ys| self.conv_transpose_run(xs, w, bias, gb, pad, (algo, act), ys),
            |xs| {
                let gs = ConvGeometry {
                    n: xs.shape()[0],
                    ..*g
                };
                self.conv_transpose2d_geom(op, [xs, w], bias, &gs, (algo, act))
            },
        )?;
        Ok(y)
    }

    /// Writes `act(bias)` (or `act(0)` without a bias) into every element of `y`, shaped as
    /// `g`'s input (`[n, c_in, H, W]`): the convolutions whose sums have no term. Without this,
    /// `y` would hold whatever its recycled buffer held before.
    fn fill_bias(
        &self,
        op: &'static str,
        bias: Option<&GpuTensor>,
        g: &ConvGeometry,
        act: Activation,
        y: &GpuTensor,
    ) -> Result<()> {
        let mut passes = vec![self.init_pass(g, bias, y)];
        passes.extend(act_pass(g, act, y));
        self.launch(op, &[], &passes)
    }

    /// The pass writing `bias` (or 0) into every element of `y`, shaped as `g`'s input.
    fn init_pass<'a>(
        &'a self,
        g: &ConvGeometry,
        bias: Option<&'a GpuTensor>,
        y: &'a GpuTensor,
    ) -> Pass<'a> {
        let b = bias.map_or(self.dummy(), |b| b.buffer());
        Pass::new(
            Kernel::ConvTransposeInit,
            &ConvParams::new(g, y.len(), bias.is_some(), Activation::Identity),
            vec![b, y.buffer()],
            y.len(),
        )
    }

    /// The passes of conv_transpose2d over tensors that fit their bindings; `g` is the forward
    /// geometry, with its windows starting `pad_h` rows above row 0 (see `conv2d_run`).
    #[allow(clippy::too_many_arguments)]
    fn conv_transpose_run(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        g: &ConvGeometry,
        pad_h: i64,
        (algo, act): (ConvAlgo, Activation),
        y: &GpuTensor,
    ) -> Result<()> {
        let op = "conv_transpose2d";
        let taps = (g.kernel[0] * g.kernel[1] / (g.stride[0] * g.stride[1])).max(1);
        let (m, k) = (g.c_in_per_group(), g.c_out_per_group() * taps);
        let rows_ok = algo != ConvAlgo::Auto || macs(g) >= ROWS_MIN_MACS;
        let shape = GemmShape {
            m,
            n: (g.input[0] * g.input[1]).div_ceil(g.stride[0] * g.stride[1]),
            k,
            count: g.n * g.groups,
            depthwise: false,
            transposed: true,
        };
        let algo = algo.resolve(shape, self.inner.subgroup_gemm, self.inner.family);
        if algo != ConvAlgo::Direct {
            return self.conv_transpose_phases(x, w, bias, g, pad_h, (algo, rows_ok, act), y);
        }
        let mut passes = vec![self.init_pass(g, bias, y)];
        let threads = g.n * g.c_in * g.output[0] * g.output[1];
        for ky in 0..g.kernel[0] {
            for kx in 0..g.kernel[1] {
                let params = ConvParams {
                    tap_y: ky as u32,
                    tap_x: kx as u32,
                    pad_h: signed(pad_h),
                    ..ConvParams::new(g, threads, bias.is_some(), Activation::Identity)
                };
                let buffers = vec![x.buffer(), w.buffer(), y.buffer()];
                passes.push(Pass::new(
                    Kernel::ConvTransposeTap,
                    &params,
                    buffers,
                    threads,
                ));
            }
        }
        passes.extend(act_pass(g, act, y));
        self.launch(op, &[], &passes)
    }

    /// conv_transpose2d through the GEMM kernel, one pass per stride phase: the outputs
    /// `(py + s_h·j, px + s_w·i)` are a dense stride-1 correlation of `x` with the taps that
    /// reach them (see shaders/conv_gemm.wgsl, mode 1). Each output is written once, by one
    /// pass; a phase no tap reaches gets its bias.
    #[allow(clippy::too_many_arguments)]
    fn conv_transpose_phases(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        g: &ConvGeometry,
        pad_h: i64,
        (algo, rows_ok, act): (ConvAlgo, bool, Activation),
        y: &GpuTensor,
    ) -> Result<()> {
        let op = "conv_transpose2d";
        let b = bias.map_or(self.dummy(), |b| b.buffer());
        let [s_h, s_w] = g.stride;
        let m = g.c_in_per_group(); // our output channels per group
        let mut phases = Vec::new();
        for py in 0..s_h.min(g.input[0]) {
            for px in 0..s_w.min(g.input[1]) {
                let grid = [
                    (g.input[0] - py).div_ceil(s_h),
                    (g.input[1] - px).div_ceil(s_w),
                ];
                let (table, taps, w_step) =
                    phase_table(g, [py, px], [pad_h, g.pad_before[1] as i64])?;
                let (n, k) = (grid[0] * grid[1], table.shape()[0] - 1);
                phases.push(GemmPhase {
                    params: GemmParams {
                        c_x: g.c_out as u32,
                        c_y: g.c_in as u32,
                        in_h: g.output[0] as u32,
                        in_w: g.output[1] as u32,
                        out_h: grid[0] as u32,
                        out_w: grid[1] as u32,
                        tap_y: py as u32,
                        tap_x: px as u32,
                        w_step: w_step as u32,
                        c_grp: g.c_out_per_group() as u32,
                        y_h: g.input[0] as u32,
                        y_w: g.input[1] as u32,
                        ..GemmParams::new(g, 1, m, n, k, bias.is_some()).with_act(act)
                    },
                    row_taps: taps,
                    // The column offset of a row's first tap (i32 bits).
                    col0: table.data()[2] as i32 as i64,
                    table: self.table(&table)?,
                });
            }
        }
        self.gemm_launch(op, [x, w, y], b, (algo, rows_ok), phases)
    }
}

/// The pass applying `act` to `y` in place (shaped as `g`'s input), unless it is the identity.
fn act_pass<'a>(g: &ConvGeometry, act: Activation, y: &'a GpuTensor) -> Option<Pass<'a>> {
    (act != Activation::Identity).then(|| {
        let params = ConvParams::new(g, y.len(), false, act);
        let pass = Pass::new(Kernel::ActInPlace, &params, vec![y.buffer()], y.len());
        Pass {
            act: kernels::compiled_act(params.act),
            ..pass
        }
    })
}

#[cfg(test)]
#[test]
fn params_match_the_shaders() {
    ConvParams::check_layout().unwrap();
}
