//! Reference convolution and transposed convolution (direct loops, f32 accumulation), and
//! their fused forms with an activation.

use crate::activation::Activation;
use crate::error::Result;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::tensor::{numel, Tensor};

/// Input coordinate of output position `o`, kernel tap `k` along axis `a`, or `None` in padding.
pub(super) fn input_coord(g: &ConvGeometry, a: usize, o: usize, k: usize) -> Option<usize> {
    let t = (o * g.stride[a] + k * g.dilation[a]) as isize - g.pad_before[a] as isize;
    (t >= 0 && (t as usize) < g.input[a]).then_some(t as usize)
}

/// PyTorch's `conv2d`: cross-correlation of `x` `[N, C_in, H, W]` with `w`
/// `[C_out, C_in/groups, kH, kW]`, plus `bias` `[C_out]`.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, spec: &Conv2d) -> Result<Tensor> {
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    let (x, w) = (x.data(), w.data());
    let [kh, kw] = g.kernel;
    let [h, wd] = g.input;
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let mut out = Tensor::zeros(g.output_shape())?;
    let y = out.data_mut();
    let mut i = 0;
    for n in 0..g.n {
        for oc in 0..g.c_out {
            let grp = oc / cog;
            for oy in 0..g.output[0] {
                for ox in 0..g.output[1] {
                    let mut acc = bias.map_or(0.0, |b| b.data()[oc]);
                    for ic in 0..cig {
                        let c = grp * cig + ic;
                        for ky in 0..kh {
                            let Some(iy) = input_coord(&g, 0, oy, ky) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = input_coord(&g, 1, ox, kx) else {
                                    continue;
                                };
                                acc += x[((n * g.c_in + c) * h + iy) * wd + ix]
                                    * w[((oc * cig + ic) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    y[i] = acc;
                    i += 1;
                }
            }
        }
    }
    Ok(out)
}

/// PyTorch's `conv_transpose2d`: every input element adds its weighted kernel footprint into
/// the output (a scatter-add). `x` `[N, C_in, H, W]`, `w` `[C_in, C_out/groups, kH, kW]`.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    // `g` is the forward convolution: its output is our input and its input our output.
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    let (xd, wd) = (x.data(), w.data());
    let [kh, kw] = g.kernel;
    let [oh, ow] = g.input;
    let [ih, iw] = g.output;
    let (cog, cig) = (g.c_in_per_group(), g.c_out_per_group()); // ours: out per group, in per group
    let mut out = Tensor::zeros(g.input_shape())?;
    let y = out.data_mut();
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b.data()[(i / (oh * ow)) % g.c_in];
        }
    }
    for n in 0..g.n {
        for ic in 0..g.c_out {
            let grp = ic / cig;
            for iy in 0..ih {
                for ix in 0..iw {
                    let v = xd[((n * g.c_out + ic) * ih + iy) * iw + ix];
                    for oc in 0..cog {
                        let c = grp * cog + oc;
                        for ky in 0..kh {
                            let Some(oy) = input_coord(&g, 0, iy, ky) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ox) = input_coord(&g, 1, ix, kx) else {
                                    continue;
                                };
                                y[((n * g.c_in + c) * oh + oy) * ow + ox] +=
                                    v * wd[((ic * cog + oc) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The dense matrix `C` of a convolution without bias, for input shape `x_shape`: row `r` is
/// output element `r`, column `c` input element `c` (both flat NCHW), so that
/// `conv2d(x).data() == C · x.data()` and `conv_transpose2d(y) == Cᵀ · y` for the same weight.
/// Returned as `[rows, cols]`. Meant for small shapes (tests, teaching).
pub fn conv2d_matrix(x_shape: &[usize], w: &Tensor, spec: &Conv2d) -> Result<Tensor> {
    let g = spec.geometry(x_shape, w.shape(), None)?;
    let rows = numel("conv2d_matrix", &g.output_shape())?;
    let cols = numel("conv2d_matrix", &g.input_shape())?;
    let [kh, kw] = g.kernel;
    let [h, wd] = g.input;
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let mut m = Tensor::zeros([rows, cols])?;
    let md = m.data_mut();
    let mut r = 0;
    for n in 0..g.n {
        for oc in 0..g.c_out {
            for oy in 0..g.output[0] {
                for ox in 0..g.output[1] {
                    for ic in 0..cig {
                        let c = (oc / cog) * cig + ic;
                        for ky in 0..kh {
                            let Some(iy) = input_coord(&g, 0, oy, ky) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = input_coord(&g, 1, ox, kx) else {
                                    continue;
                                };
                                let col = ((n * g.c_in + c) * h + iy) * wd + ix;
                                md[r * cols + col] +=
                                    w.data()[((oc * cig + ic) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    r += 1;
                }
            }
        }
    }
    Ok(m)
}

/// `activation(conv2d(x, w, bias, spec), act)`.
pub fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &Conv2d,
    act: Activation,
) -> Result<Tensor> {
    act.check("conv2d_act")?;
    let mut y = conv2d(x, w, bias, spec)?;
    y.data_mut().iter_mut().for_each(|v| *v = act.apply(*v));
    Ok(y)
}

/// `activation(conv_transpose2d(x, w, bias, spec), act)`.
pub fn conv_transpose2d_act(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &ConvTranspose2d,
    act: Activation,
) -> Result<Tensor> {
    act.check("conv_transpose2d_act")?;
    let mut y = conv_transpose2d(x, w, bias, spec)?;
    y.data_mut().iter_mut().for_each(|v| *v = act.apply(*v));
    Ok(y)
}
