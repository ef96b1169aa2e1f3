//! The fused convolution + activation on the GPU: the activation runs in the store of the
//! convolution kernels (shaders/common.wgsl `activate`), so no extra pass or tensor.

use super::{Gpu, GpuTensor};
use crate::activation::Activation;
use crate::error::Result;
use crate::gpu::ConvAlgo;
use crate::params::conv::{Conv2d, ConvTranspose2d};

impl Gpu {
    /// `activation(conv2d(x, w, bias, spec), act)` in one pass: the activation runs in the
    /// kernel's store, so no extra pass or tensor; for the piecewise-linear activations the
    /// result is bitwise the unfused one. Returns without waiting.
    pub fn conv2d_act(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Conv2d,
        act: Activation,
    ) -> Result<GpuTensor> {
        self.conv2d_act_with(x, w, bias, spec, act, ConvAlgo::Auto)
    }

    /// `conv2d_act` with a chosen kernel.
    pub fn conv2d_act_with(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Conv2d,
        act: Activation,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv2d_act";
        act.check(op)?;
        self.check_pair(op, ["input", "weight"], x, w)?;
        bias.map_or(Ok(()), |b| self.check_owner(op, "bias", b))?;
        let g = spec.geometry(x.shape(), w.shape(), bias.map(GpuTensor::shape))?;
        self.conv2d_geom(op, [x, w], bias, &g, (algo, act))
    }

    /// `activation(conv_transpose2d(x, w, bias, spec), act)`: the GEMM kernels apply it in
    /// their store; the per-tap scatter (`ConvAlgo::Direct`) in a pass over its output in place
    /// after the last tap. Returns without waiting.
    pub fn conv_transpose2d_act(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &ConvTranspose2d,
        act: Activation,
    ) -> Result<GpuTensor> {
        self.conv_transpose2d_act_with(x, w, bias, spec, act, ConvAlgo::Auto)
    }

    /// `conv_transpose2d_act` with a chosen kernel.
    pub fn conv_transpose2d_act_with(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &ConvTranspose2d,
        act: Activation,
        algo: ConvAlgo,
    ) -> Result<GpuTensor> {
        let op = "conv_transpose2d_act";
        act.check(op)?;
        self.check_pair(op, ["input", "weight"], x, w)?;
        bias.map_or(Ok(()), |b| self.check_owner(op, "bias", b))?;
        let g = spec.geometry(x.shape(), w.shape(), bias.map(GpuTensor::shape))?;
        self.conv_transpose2d_geom(op, [x, w], bias, &g, (algo, act))
    }
}
