//! Reference pooling, unpooling and pooling backward passes.

use super::rng::stochastic_uniform;
use crate::error::Result;
use crate::params::pool::{unpool_shape, Pool2d, PoolGeometry};
use crate::tensor::Tensor;

/// Calls `f(plane, o, taps)` for every pooled element, in row-major order: `plane` is the flat
/// `n*C + c`, `o` the flat output index, `taps` the flat in-plane positions of the window's
/// in-bounds taps in row-major window order.
fn for_each_window(g: &PoolGeometry, mut f: impl FnMut(usize, usize, &[usize])) {
    let [h, w] = g.input;
    let mut taps = Vec::with_capacity(g.kernel[0] * g.kernel[1]);
    let mut o = 0;
    for plane in 0..g.n * g.c {
        for oh in 0..g.output[0] {
            for ow in 0..g.output[1] {
                taps.clear();
                for y in g.taps(0, oh).filter(|&y| y >= 0 && (y as usize) < h) {
                    for x in g.taps(1, ow).filter(|&x| x >= 0 && (x as usize) < w) {
                        taps.push(y as usize * w + x as usize);
                    }
                }
                f(plane, o, &taps);
                o += 1;
            }
        }
    }
}

/// PyTorch's `max_pool2d(..., return_indices=True)`. Indices are flat `h*W + w` positions in
/// each input plane; ties keep the first maximum in row-major window order; a NaN wins over
/// any number (a later NaN over an earlier one, as PyTorch).
pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<(Tensor, Tensor<u32>)> {
    let g = p.geometry("max_pool2d", x.shape())?;
    let mut vals = Tensor::zeros(g.output_shape())?;
    let mut idx = Tensor::<u32>::zeros(g.output_shape())?;
    if vals.is_empty() {
        return Ok((vals, idx));
    }
    let plane_len = g.input[0] * g.input[1];
    for_each_window(&g, |plane, o, taps| {
        let xs = &x.data()[plane * plane_len..][..plane_len];
        let (mut best, mut arg) = (f32::NEG_INFINITY, taps[0]);
        for &t in taps {
            if xs[t] > best || xs[t].is_nan() {
                (best, arg) = (xs[t], t);
            }
        }
        vals.data_mut()[o] = best;
        idx.data_mut()[o] = arg as u32;
    });
    Ok((vals, idx))
}

/// PyTorch's `avg_pool2d`: the sum of the in-bounds taps divided by [`PoolGeometry::divisor`].
pub fn avg_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let g = p.geometry("avg_pool2d", x.shape())?;
    let mut out = Tensor::zeros(g.output_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    let plane_len = g.input[0] * g.input[1];
    let ow = g.output[1];
    for_each_window(&g, |plane, o, taps| {
        let xs = &x.data()[plane * plane_len..][..plane_len];
        let sum: f32 = taps.iter().map(|&t| xs[t]).sum();
        let (oy, ox) = ((o / ow) % g.output[0], o % ow);
        out.data_mut()[o] = sum / g.divisor(oy, ox) as f32;
    });
    Ok(out)
}

/// Outcome of stochastic pooling in one window: (value, index).
fn stochastic_pick(xs: &[f32], taps: &[usize], u: f32) -> (f32, usize) {
    if let Some(&t) = taps.iter().find(|&&t| xs[t].is_nan()) {
        return (f32::NAN, t);
    }
    let positive = || taps.iter().map(|&t| xs[t]).filter(|&v| v > 0.0);
    let sum = positive().fold(0.0f32, |s, v| s + v);
    if sum == 0.0 {
        return (0.0, taps[0]);
    }
    if sum.is_infinite() {
        // p_i degenerates: take the first maximum.
        let mut best = taps[0];
        for &t in taps {
            if xs[t] > xs[best] {
                best = t;
            }
        }
        return (xs[best], best);
    }
    // The first tap whose running sum of positive values exceeds u * sum; if rounding lets
    // none exceed it, the last positive tap.
    let threshold = u * sum;
    let mut run = 0.0f32;
    let mut last_positive = taps[0];
    for &t in taps.iter().filter(|&&t| xs[t] > 0.0) {
        run += xs[t];
        last_positive = t;
        if run > threshold {
            return (xs[t], t);
        }
    }
    (xs[last_positive], last_positive)
}

/// Stochastic pooling (Zeiler & Fergus 2013), training mode: in each window an element is drawn
/// with probability `max(a_i, 0) / Σ max(a, 0)` using [`stochastic_uniform`]`(seed, o)`; see
/// docs/SEMANTICS.md for the exact rule, zero-sum and non-finite windows.
pub fn stochastic_pool2d(x: &Tensor, p: &Pool2d, seed: u64) -> Result<(Tensor, Tensor<u32>)> {
    let g = p.geometry("stochastic_pool2d", x.shape())?;
    let mut vals = Tensor::zeros(g.output_shape())?;
    let mut idx = Tensor::<u32>::zeros(g.output_shape())?;
    if vals.is_empty() {
        return Ok((vals, idx));
    }
    let plane_len = g.input[0] * g.input[1];
    for_each_window(&g, |plane, o, taps| {
        let xs = &x.data()[plane * plane_len..][..plane_len];
        let (v, t) = stochastic_pick(xs, taps, stochastic_uniform(seed, o as u32));
        vals.data_mut()[o] = v;
        idx.data_mut()[o] = t as u32;
    });
    Ok((vals, idx))
}

/// Stochastic pooling, test mode: the expectation `Σ a_i² / Σ a_i` with `a = max(x, 0)`
/// (0 for a zero sum; NaN in, NaN out).
pub fn stochastic_pool2d_expectation(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let g = p.geometry("stochastic_pool2d_expectation", x.shape())?;
    let mut out = Tensor::zeros(g.output_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    let plane_len = g.input[0] * g.input[1];
    for_each_window(&g, |plane, o, taps| {
        let xs = &x.data()[plane * plane_len..][..plane_len];
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &t in taps.iter().filter(|&&t| xs[t] > 0.0) {
            s1 += xs[t];
            s2 += xs[t] * xs[t];
        }
        out.data_mut()[o] = if taps.iter().any(|&t| xs[t].is_nan()) {
            f32::NAN
        } else if s1 == 0.0 {
            0.0
        } else {
            s2 / s1
        };
    });
    Ok(out)
}

/// Checks an indices tensor against its values and the unpooled size; returns
/// (`[N, C, h, w]` of the pooled side, plane length of the unpooled side).
fn check_indices(
    op: &'static str,
    vals: &[usize],
    idx: &Tensor<u32>,
    size: [usize; 2],
) -> Result<([usize; 4], usize)> {
    let (d, plane_len) = unpool_shape(op, vals, idx.shape(), size)?;
    let planes = d[2].saturating_mul(d[3]);
    if let Some((j, &i)) = idx
        .data()
        .iter()
        .enumerate()
        .find(|&(_, &i)| i as usize >= plane_len)
    {
        let plane = j.checked_div(planes).unwrap_or(0);
        return Err(crate::Error::invalid(
            op,
            format!(
                "index {i} at position {j} (plane {plane}) is out of range for a {}×{} output plane ({plane_len} positions)",
                size[0], size[1]
            ),
        ));
    }
    Ok((d, plane_len))
}

/// Shared body of the two index scatters: `combine(out, value)` at each recorded index, in
/// row-major order of the pooled elements.
fn scatter_indices(
    op: &'static str,
    vals: &Tensor,
    idx: &Tensor<u32>,
    size: [usize; 2],
    combine: impl Fn(&mut f32, f32),
) -> Result<Tensor> {
    let ([n, c, ph, pw], plane_len) = check_indices(op, vals.shape(), idx, size)?;
    let mut out = Tensor::zeros([n, c, size[0], size[1]])?;
    let per_plane = ph * pw;
    for (j, (&v, &i)) in vals.data().iter().zip(idx.data()).enumerate() {
        let plane = j / per_plane;
        combine(&mut out.data_mut()[plane * plane_len + i as usize], v);
    }
    Ok(out)
}

/// PyTorch's `max_unpool2d`: zeros except each value written at its recorded index in an
/// `[H, W]` = `size` plane. Where several pooled elements name one index the last in row-major
/// order wins. An index `>= H*W` is an `Err`.
pub fn max_unpool2d(vals: &Tensor, idx: &Tensor<u32>, size: [usize; 2]) -> Result<Tensor> {
    scatter_indices("max_unpool2d", vals, idx, size, |o, v| *o = v)
}

/// Gradient of `max_pool2d` w.r.t. its input: each input position receives the sum of the
/// upstream gradients of every window whose argmax it is (summed in row-major window order).
pub fn max_pool2d_backward(grad: &Tensor, idx: &Tensor<u32>, size: [usize; 2]) -> Result<Tensor> {
    scatter_indices("max_pool2d_backward", grad, idx, size, |o, v| *o += v)
}

/// The gradient of `max_unpool2d` with respect to its values, as PyTorch's autograd: each
/// pooled element gathers the gradient at its index in its plane of `grad` `[N, C, H, W]`
/// (also where overlapping windows let a later element overwrite it in the forward pass).
/// Indices `[N, C, h, w]`; an index `>= H*W` is an `Err`.
pub fn max_unpool2d_backward(grad: &Tensor, idx: &Tensor<u32>) -> Result<Tensor> {
    let op = "max_unpool2d_backward";
    let (d, size) = crate::params::pool::unpool_backward_shape(op, grad.shape(), idx.shape())?;
    let (_, plane_len) = check_indices(op, idx.shape(), idx, size)?;
    let per_plane = d[2].saturating_mul(d[3]);
    Tensor::from_fn(d, |j| {
        grad.data()[j / per_plane * plane_len + idx.data()[j] as usize]
    })
}

/// Average unpooling: each pooled value is spread over the in-bounds positions of its window;
/// a position covered by several windows gets the mean of their values, one covered by none 0.
pub fn avg_unpool2d(a: &Tensor, p: &Pool2d, size: [usize; 2]) -> Result<Tensor> {
    let g = p.geometry_for("avg_unpool2d", a.shape(), size)?;
    let mut sum = Tensor::zeros(g.input_shape())?;
    if sum.is_empty() {
        return Ok(sum);
    }
    let plane_len = size[0] * size[1];
    let mut count = vec![0u32; sum.len()];
    for_each_window(&g, |plane, o, taps| {
        for &t in taps {
            sum.data_mut()[plane * plane_len + t] += a.data()[o];
            count[plane * plane_len + t] += 1;
        }
    });
    for (s, &k) in sum.data_mut().iter_mut().zip(&count) {
        if k > 0 {
            *s /= k as f32;
        }
    }
    Ok(sum)
}

/// Gradient of `avg_pool2d` w.r.t. its input (its exact adjoint): each tap of window `o`
/// receives `grad[o] / divisor(o)`, summed in row-major window order.
pub fn avg_pool2d_backward(grad: &Tensor, p: &Pool2d, size: [usize; 2]) -> Result<Tensor> {
    let g = p.geometry_for("avg_pool2d_backward", grad.shape(), size)?;
    let ow = g.output[1];
    let mut out = Tensor::zeros(g.input_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    let plane_len = size[0] * size[1];
    for_each_window(&g, |plane, o, taps| {
        let (oy, ox) = ((o / ow) % g.output[0], o % ow);
        let share = grad.data()[o] / g.divisor(oy, ox) as f32;
        for &t in taps {
            out.data_mut()[plane * plane_len + t] += share;
        }
    });
    Ok(out)
}
