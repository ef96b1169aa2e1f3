//! Fast conv2d (im2col + GEMM) and conv_transpose2d (GEMM + col2im).

use rayon::prelude::*;

use super::sgemm;
use crate::error::Result;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::tensor::Tensor;

/// Row `(ic, ky, kx)` of the im2col matrix of one input group `x` `[cig, H, W]`: the input value
/// each output pixel sees through that tap (0 in the padding).
fn im2col(g: &ConvGeometry, x: &[f32], col: &mut [f32]) {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let [kh, kw] = g.kernel;
    col.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(row, out)| {
            let (ic, ky, kx) = (row / (kh * kw), (row / kw) % kh, row % kw);
            let plane = &x[ic * h * w..][..h * w];
            for oy in 0..oh {
                let iy =
                    (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad_before[0] as isize;
                let dst = &mut out[oy * ow..][..ow];
                if iy < 0 || iy as usize >= h {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * w..][..w];
                // The output columns whose tap lands inside the row, ox*s + off in [0, w), are
                // a range [lo, hi): zero the rest, copy the range without per-element checks.
                let s = g.stride[1];
                let off = (kx * g.dilation[1]) as isize - g.pad_before[1] as isize;
                let lo = (off.min(0).unsigned_abs()).div_ceil(s).min(ow);
                let hi = (w as isize - off)
                    .max(0)
                    .unsigned_abs()
                    .div_ceil(s)
                    .clamp(lo, ow);
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                let first = (lo * s) as isize + off; // in [0, w) when lo < hi
                if s == 1 && lo < hi {
                    dst[lo..hi].copy_from_slice(&src[first as usize..][..hi - lo]);
                } else {
                    for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                        *d = src[(first + (j * s) as isize) as usize];
                    }
                }
            }
        });
}

/// PyTorch's `conv2d` on all CPU cores; same contract as [`crate::cpu::conv2d`].
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, spec: &Conv2d) -> Result<Tensor> {
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let (k, n) = (cig * g.kernel[0] * g.kernel[1], g.output[0] * g.output[1]);
    let in_plane = g.input[0] * g.input[1];
    let mut out = Tensor::zeros(g.output_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    // A 1×1 convolution with stride 1 and no padding reads its input as the GEMM operand.
    let direct =
        g.kernel == [1, 1] && g.stride == [1, 1] && g.pad_before == [0, 0] && g.output == g.input;
    let mut col = if direct { Vec::new() } else { vec![0.0; k * n] };
    for b in 0..g.n {
        for grp in 0..g.groups {
            let xg = &x.data()[(b * g.c_in + grp * cig) * in_plane..][..cig * in_plane];
            let rhs = if direct {
                xg
            } else {
                im2col(&g, xg, &mut col);
                &col
            };
            let dst = &mut out.data_mut()[(b * g.c_out + grp * cog) * n..][..cog * n];
            let lhs = &w.data()[grp * cog * k..][..cog * k];
            sgemm(cog, n, k, dst, false, lhs, (k, 1), rhs, (n, 1));
            if let Some(bias) = bias {
                for (c, plane) in dst.chunks_mut(n.max(1)).enumerate() {
                    let v = bias.data()[grp * cog + c];
                    plane.iter_mut().for_each(|o| *o += v);
                }
            }
        }
    }
    Ok(out)
}

/// PyTorch's `conv_transpose2d` on all CPU cores; same contract as
/// [`crate::cpu::conv_transpose2d`]. One GEMM per (image, group) gives every input pixel's
/// contribution through every tap; col2im then adds them into the output, in parallel over
/// output channels (disjoint planes, so the sums keep a fixed order).
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    // `g` is the forward convolution: its input is our output, its output our input.
    let g = spec.geometry(x.shape(), w.shape(), bias.map(Tensor::shape))?;
    let (cin, cout) = (g.c_out, g.c_in);
    let (kin, kout) = (g.c_out_per_group(), g.c_in_per_group()); // ours, per group
    let [kh, kw] = g.kernel;
    let [ih, iw] = g.output;
    let [oh, ow] = g.input;
    let (n, taps) = (ih * iw, kh * kw);
    let rows = kout * taps;
    let mut out = Tensor::zeros(g.input_shape())?;
    if out.is_empty() || x.is_empty() {
        return Ok(out);
    }
    let mut col = vec![0.0f32; rows * n];
    for b in 0..g.n {
        for grp in 0..g.groups {
            let xg = &x.data()[(b * cin + grp * kin) * n..][..kin * n];
            let wg = &w.data()[grp * kin * rows..][..kin * rows];
            // col[r, j] = Σ_ic w[ic, r] · x[ic, j]: lhs = wgᵀ.
            sgemm(rows, n, kin, &mut col, false, wg, (1, rows), xg, (n, 1));
            let planes = &mut out.data_mut()[(b * cout + grp * kout) * oh * ow..][..kout * oh * ow];
            planes
                .par_chunks_mut((oh * ow).max(1))
                .enumerate()
                .for_each(|(oc, plane)| {
                    if let Some(bias) = bias {
                        plane.fill(bias.data()[grp * kout + oc]);
                    }
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let src = &col[((oc * kh + ky) * kw + kx) * n..][..n];
                            for iy in 0..ih {
                                let oy = (iy * g.stride[0] + ky * g.dilation[0]) as isize
                                    - g.pad_before[0] as isize;
                                if oy < 0 || oy as usize >= oh {
                                    continue;
                                }
                                let dst = &mut plane[oy as usize * ow..][..ow];
                                for ix in 0..iw {
                                    let ox = (ix * g.stride[1] + kx * g.dilation[1]) as isize
                                        - g.pad_before[1] as isize;
                                    if ox >= 0 && (ox as usize) < ow {
                                        dst[ox as usize] += src[iy * iw + ix];
                                    }
                                }
                            }
                        }
                    }
                });
        }
    }
    Ok(out)
}
