//! Reference backward passes of the convolutions (direct loops over the forward convolution's
//! geometry, f32 accumulation).

use super::conv::input_coord;
use crate::error::Result;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::tensor::{dims4, Tensor};

/// Calls `f(flat output index, flat input index, flat weight index)` for every term
/// `y[o] += x[i] · w[k]` of the forward convolution `g`, in the forward's order.
fn each_term(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let [kh, kw] = g.kernel;
    let outputs = g.output_shape().iter().product::<usize>();
    if outputs == 0 || g.c_in_per_group() == 0 {
        return; // no term (and a batch of usize::MAX empty images must not be walked)
    }
    let [h, wd] = g.input;
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let mut o = 0;
    for n in 0..g.n {
        for oc in 0..g.c_out {
            let grp = oc / cog;
            for oy in 0..g.output[0] {
                for ox in 0..g.output[1] {
                    for ic in 0..cig {
                        let c = grp * cig + ic;
                        for ky in 0..kh {
                            let Some(iy) = input_coord(g, 0, oy, ky) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = input_coord(g, 1, ox, kx) else {
                                    continue;
                                };
                                let i = ((n * g.c_in + c) * h + iy) * wd + ix;
                                f(o, i, ((oc * cig + ic) * kh + ky) * kw + kx);
                            }
                        }
                    }
                    o += 1;
                }
            }
        }
    }
}

/// `Cᵀ · gy`: the gradient of the forward convolution `g` with respect to its input.
fn grad_input(g: &ConvGeometry, gy: &[f32], w: &[f32]) -> Result<Tensor> {
    let mut gx = Tensor::zeros(g.input_shape())?;
    let d = gx.data_mut();
    each_term(g, |o, i, k| d[i] += gy[o] * w[k]);
    Ok(gx)
}

/// The gradient of the forward convolution `g` with respect to its weight.
fn grad_weight(g: &ConvGeometry, gy: &[f32], x: &[f32]) -> Result<Tensor> {
    let shape = [g.c_out, g.c_in_per_group(), g.kernel[0], g.kernel[1]];
    let mut gw = Tensor::zeros(shape)?;
    let d = gw.data_mut();
    each_term(g, |o, i, k| d[k] += gy[o] * x[i]);
    Ok(gw)
}

/// `C · x`: the forward convolution `g` without bias.
fn correlate(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Result<Tensor> {
    let mut y = Tensor::zeros(g.output_shape())?;
    let d = y.data_mut();
    each_term(g, |o, i, k| d[o] += x[i] * w[k]);
    Ok(y)
}

/// PyTorch's `torch.nn.grad.conv2d_input`: the gradient of `conv2d(x, w, _, spec)` with
/// respect to `x` `[N, C_in, H, W]`, from `gy` `[N, C_out, H_out, W_out]`; `size` is `[H, W]`.
/// Input positions no window reads (rows and columns a stride drops) get 0.
pub fn conv2d_backward_input(
    gy: &Tensor,
    w: &Tensor,
    size: [usize; 2],
    spec: &Conv2d,
) -> Result<Tensor> {
    let g = spec.backward_input_geometry(gy.shape(), w.shape(), size)?;
    grad_input(&g, gy.data(), w.data())
}

/// PyTorch's `torch.nn.grad.conv2d_weight`: the gradient of `conv2d(x, w, _, spec)` with
/// respect to `w` `[C_out, C_in/groups, kH, kW]`; `kernel` is `[kH, kW]`.
pub fn conv2d_backward_weight(
    gy: &Tensor,
    x: &Tensor,
    kernel: [usize; 2],
    spec: &Conv2d,
) -> Result<Tensor> {
    let g = spec.backward_weight_geometry(gy.shape(), x.shape(), kernel)?;
    grad_weight(&g, gy.data(), x.data())
}

/// The gradient of a convolution's bias: `gy` `[N, C, H, W]` summed over `N, H, W` → `[C]`.
pub fn bias_backward(gy: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = dims4("bias_backward", "gradient", gy.shape())?;
    let mut gb = Tensor::zeros([c])?;
    if gy.is_empty() {
        return Ok(gb);
    }
    for b in 0..n {
        for ch in 0..c {
            let plane = &gy.data()[(b * c + ch) * h * w..][..h * w];
            gb.data_mut()[ch] += plane.iter().sum::<f32>();
        }
    }
    Ok(gb)
}

/// The gradient of `conv_transpose2d(x, w, _, spec)` with respect to `x` `[N, C_in, H, W]`, from
/// `gy` `[N, C_out, H_out, W_out]`; `size` is `[H, W]`. It is the forward convolution of `gy`.
pub fn conv_transpose2d_backward_input(
    gy: &Tensor,
    w: &Tensor,
    size: [usize; 2],
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    let g = spec.backward_input_geometry(gy.shape(), w.shape(), size)?;
    correlate(&g, gy.data(), w.data())
}

/// The gradient of `conv_transpose2d(x, w, _, spec)` with respect to `w`
/// `[C_in, C_out/groups, kH, kW]`; `kernel` is `[kH, kW]`.
pub fn conv_transpose2d_backward_weight(
    gy: &Tensor,
    x: &Tensor,
    kernel: [usize; 2],
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    let g = spec.backward_weight_geometry(gy.shape(), x.shape(), kernel)?;
    // The forward convolution's output is `x`, its input `gy`.
    grad_weight(&g, x.data(), gy.data())
}
