//! Fast backward passes of the convolutions. The input gradients are the adjoint convolutions
//! (conv2d's is a conv_transpose2d of the gradient and the other way round), run by the fast
//! forward kernels on the forward geometry. The weight gradient is a GEMM of the gradient by
//! the im2col view of the input, reduced over images and bands of output rows (for 3×3
//! stride-1 layers on AVX-512, a Winograd sum over tiles instead: `winograd_wgrad`): that
//! reduction is split into [`PARTS`] (or fewer) consecutive parts, a function of the shape
//! alone, each summed by one task in order, and the parts are added in order: bitwise
//! reproducible.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod winograd_wgrad;

use super::conv::{
    conv2d_geom, conv_transpose2d_geom, im2col_taps, with_block, with_phases, BLOCK_FLOATS,
};
use super::{sgemm_acc, Dst};
use crate::activation::Activation;
use crate::error::Result;
use crate::params::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::tensor::{dims4, Tensor};

/// The weight gradient's reduction is split into at most this many parts per group.
const PARTS: usize = 8;
/// Output pixels per band of the weight gradient (the GEMMs' reduction): half of conv2d's
/// bands, so that each band's im2col block and the part's sum stay in L2 (the measurements
/// behind 128 are in docs/DESIGN.md).
const WGRAD_COLUMNS: usize = 128;

/// [`crate::cpu::conv2d_backward_input`] on all CPU cores: conv_transpose2d of `gy`.
pub fn conv2d_backward_input(
    gy: &Tensor,
    w: &Tensor,
    size: [usize; 2],
    spec: &Conv2d,
) -> Result<Tensor> {
    let g = spec.backward_input_geometry(gy.shape(), w.shape(), size)?;
    conv_transpose2d_geom(&g, gy.data(), w.data(), None, Activation::Identity)
}

/// [`crate::cpu::conv2d_backward_weight`] on all CPU cores.
pub fn conv2d_backward_weight(
    gy: &Tensor,
    x: &Tensor,
    kernel: [usize; 2],
    spec: &Conv2d,
) -> Result<Tensor> {
    let g = spec.backward_weight_geometry(gy.shape(), x.shape(), kernel)?;
    weight_grad(&g, gy.data(), x.data())
}

/// [`crate::cpu::conv_transpose2d_backward_input`] on all CPU cores: conv2d of `gy`.
pub fn conv_transpose2d_backward_input(
    gy: &Tensor,
    w: &Tensor,
    size: [usize; 2],
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    let g = spec.backward_input_geometry(gy.shape(), w.shape(), size)?;
    conv2d_geom(&g, gy.data(), w.data(), None, Activation::Identity)
}

/// [`crate::cpu::conv_transpose2d_backward_weight`] on all CPU cores.
pub fn conv_transpose2d_backward_weight(
    gy: &Tensor,
    x: &Tensor,
    kernel: [usize; 2],
    spec: &ConvTranspose2d,
) -> Result<Tensor> {
    let g = spec.backward_weight_geometry(gy.shape(), x.shape(), kernel)?;
    // The forward convolution's output is `x`, its input `gy`.
    weight_grad(&g, x.data(), gy.data())
}

/// [`crate::cpu::bias_backward`] on all CPU cores: channels in parallel, each summing its
/// planes image by image (`lane_sum`).
pub fn bias_backward(gy: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = dims4("bias_backward", "gradient", gy.shape())?;
    if gy.is_empty() {
        return Tensor::zeros([c]);
    }
    let plane = h * w;
    let channel = |ch: usize| {
        (0..n)
            .map(|b| lane_sum(&gy.data()[(b * c + ch) * plane..][..plane]))
            .fold(0.0, |a, v| a + v)
    };
    // Each channel's sum is the same on any thread; below a few hundred microseconds of work
    // the pool's wake-up costs more than it saves.
    let sums = if gy.len() < PARALLEL_SUM_MIN {
        (0..c).map(channel).collect()
    } else {
        (0..c).into_par_iter().map(channel).collect()
    };
    Tensor::new([c], sums)
}

/// Elements from which [`bias_backward`] splits its channels over the cores (1 MB).
const PARALLEL_SUM_MIN: usize = 1 << 18;

/// The sum of `v` as 16 interleaved partial sums (lane `l` takes elements `l, l + 16, …`),
/// added in lane order, then the remainder in order: an order fixed by the length alone,
/// which the compiler vectorizes, where a plain sum adds one element at a time.
fn lane_sum(v: &[f32]) -> f32 {
    let (chunks, rest) = v.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// The weight gradient `[C_out, C_in/groups, kH, kW]` of the forward convolution `g`, from
/// `gy` (shaped as its output) and `x` (as its input). Tasks are (group, part); a part is a
/// run of consecutive (image, band of output rows) units, each lowered to an im2col block and
/// multiplied into the part's sum.
fn weight_grad(g: &ConvGeometry, gy: &[f32], x: &[f32]) -> Result<Tensor> {
    let (cig, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let [kh, kw] = g.kernel;
    let k = cig * kh * kw;
    let [oh, ow] = g.output;
    let (n_pix, in_plane) = (oh * ow, g.input[0] * g.input[1]);
    let shape = [g.c_out, cig, kh, kw];
    if shape.contains(&0) || g.n == 0 || n_pix == 0 {
        return Tensor::zeros(shape);
    }
    #[cfg(target_arch = "x86_64")]
    if winograd_wgrad::applies(g) {
        return Tensor::new(shape, winograd_wgrad::weight_grad(g, gy, x));
    }
    let direct =
        g.kernel == [1, 1] && g.stride == [1, 1] && g.pad_before == [0, 0] && g.output == g.input;
    let band_rows = WGRAD_COLUMNS
        .min(BLOCK_FLOATS / k.max(1))
        .div_ceil(ow)
        .clamp(1, oh);
    let bands = oh.div_ceil(band_rows);
    let units = g.n * bands;
    let parts = units.min(PARTS);
    let block = cog * k; // one group's gradient
    let mut partial = crate::recycle::zeroed::<f32>(parts * g.groups * block);
    partial
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(t, sum)| {
            let (part, grp) = (t / g.groups, t % g.groups);
            let dst = Dst::new(sum, k);
            for u in part * units / parts..(part + 1) * units / parts {
                let (b, band) = (u / bands, u % bands);
                let oys = band * band_rows..((band + 1) * band_rows).min(oh);
                let cols = oys.len() * ow;
                let lhs = &gy[(b * g.c_out + grp * cog) * n_pix + oys.start * ow..];
                let xg = &x[(b * g.c_in + grp * cig) * in_plane..][..cig * in_plane];
                // sum (cog × k) += gy band (cog × cols) · im2col blockᵀ (cols × k).
                // SAFETY: `sum` is this task's own block, zeroed before.
                if direct {
                    let rhs = &xg[oys.start * ow..];
                    unsafe {
                        sgemm_acc((cog, k, cols), dst, (lhs, (n_pix, 1)), (rhs, (1, in_plane)))
                    };
                    continue;
                }
                with_block(k * cols, |col| {
                    with_phases(|phases| {
                        for (taps, out) in col.chunks_mut(kw * cols).enumerate() {
                            im2col_taps(g, xg, taps, oys.clone(), out, phases);
                        }
                    });
                    unsafe { sgemm_acc((cog, k, cols), dst, (lhs, (n_pix, 1)), (col, (1, cols))) };
                });
            }
        });
    // The parts, added in order; groups are consecutive blocks of the output.
    let total = g.groups * block;
    let mut gw = crate::recycle::zeroed::<f32>(total);
    gw.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
        for (part, sums) in partial.chunks(total).enumerate() {
            let src = &sums[c * 4096..][..out.len()];
            if part == 0 {
                out.copy_from_slice(src);
            } else {
                out.iter_mut().zip(src).for_each(|(o, v)| *o += v);
            }
        }
    });
    crate::recycle::give(partial);
    Tensor::new(shape, gw)
}
