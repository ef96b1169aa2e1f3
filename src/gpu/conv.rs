//! Launchers for conv2d and conv_transpose2d (shaders/conv2d.wgsl, shaders/conv_transpose2d.wgsl).

use super::{Gpu, GpuTensor, Pass};
use crate::error::Result;
use crate::gpu::kernels::Kernel;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};

/// `ConvParams` in the shaders.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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
}

impl ConvParams {
    /// The params of geometry `g` (every size already checked to fit the buffers, hence u32).
    fn new(g: &ConvGeometry, total: usize, has_bias: bool) -> Self {
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
        }
    }
}

/// Every size and index the shaders compute must fit in u32 and i32. Tensors are limited by the
/// storage-binding size (far below 2^31 elements), so only the geometry's own numbers — stride,
/// dilation, padding and kernel, which are not tied to any buffer — need a check here.
fn check_u32(op: &'static str, g: &ConvGeometry) -> Result<()> {
    let reach = |a: usize| {
        (g.input[a] as u128 + g.pad_before[a] as u128).max(
            g.output[a] as u128 * g.stride[a] as u128 + g.kernel[a] as u128 * g.dilation[a] as u128,
        )
    };
    let worst = reach(0).max(reach(1));
    crate::error::ensure!(
        worst < i32::MAX as u128,
        op,
        "stride, dilation or padding too large for the GPU kernels (coordinates reach {worst})"
    );
    Ok(())
}

impl Gpu {
    /// PyTorch's `conv2d` on the device; see [`crate::cpu::conv2d`].
    pub fn conv2d(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Conv2d,
    ) -> Result<GpuTensor> {
        let op = "conv2d";
        self.check_owner(op, "input", x)?;
        self.check_owner(op, "weight", w)?;
        if let Some(b) = bias {
            self.check_owner(op, "bias", b)?;
        }
        let g = spec.geometry(x.shape(), w.shape(), bias.map(GpuTensor::shape))?;
        check_u32(op, &g)?;
        let y = self.alloc(op, &g.output_shape())?;
        let total = y.len();
        let params = ConvParams::new(&g, total, bias.is_some());
        let b = bias.map_or(self.dummy(), |b| b.buffer());
        self.launch(
            op,
            &[],
            &[Pass::new(
                Kernel::Conv2d,
                &params,
                vec![x.buffer(), w.buffer(), b, y.buffer()],
                total,
            )],
        )?;
        Ok(y)
    }

    /// PyTorch's `conv_transpose2d` on the device, as a deterministic scatter-add: one pass per
    /// kernel tap, each a one-to-one map from input to output positions (no atomics, no race).
    pub fn conv_transpose2d(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &ConvTranspose2d,
    ) -> Result<GpuTensor> {
        let op = "conv_transpose2d";
        self.check_owner(op, "input", x)?;
        self.check_owner(op, "weight", w)?;
        if let Some(b) = bias {
            self.check_owner(op, "bias", b)?;
        }
        let g = spec.geometry(x.shape(), w.shape(), bias.map(GpuTensor::shape))?;
        check_u32(op, &g)?;
        let y = self.alloc(op, &g.input_shape())?;
        let b = bias.map_or(self.dummy(), |b| b.buffer());
        let mut passes = vec![Pass::new(
            Kernel::ConvTransposeInit,
            &ConvParams::new(&g, y.len(), bias.is_some()),
            vec![b, y.buffer()],
            y.len(),
        )];
        let threads = g.n * g.c_in * g.output[0] * g.output[1];
        for ky in 0..g.kernel[0] {
            for kx in 0..g.kernel[1] {
                let params = ConvParams {
                    tap_y: ky as u32,
                    tap_x: kx as u32,
                    ..ConvParams::new(&g, threads, bias.is_some())
                };
                passes.push(Pass::new(
                    Kernel::ConvTransposeTap,
                    &params,
                    vec![x.buffer(), w.buffer(), y.buffer()],
                    threads,
                ));
            }
        }
        self.launch(op, &[], &passes)?;
        Ok(y)
    }
}
