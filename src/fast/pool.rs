//! Fast pooling: the planes are split over the CPU cores.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::params::pool::{unpool_shape, Pool2d, PoolGeometry};
use crate::tensor::Tensor;

/// The in-bounds input coordinates of window `o` along axis `a`, as a range with a step.
fn window_axis(g: &PoolGeometry, a: usize, o: usize) -> impl Iterator<Item = usize> + Clone {
    let n = g.input[a] as isize;
    g.taps(a, o)
        .filter(move |&t| t >= 0 && t < n)
        .map(|t| t as usize)
}

/// PyTorch's `max_pool2d(..., return_indices=True)` on all cores; same contract as
/// [`crate::cpu::max_pool2d`].
pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<(Tensor, Tensor<u32>)> {
    let g = p.geometry("max_pool2d", x.shape())?;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let mut vals = Tensor::zeros(g.output_shape())?;
    let mut idx = Tensor::<u32>::zeros(g.output_shape())?;
    if vals.is_empty() {
        return Ok((vals, idx));
    }
    let per = (oh * ow).max(1);
    vals.data_mut()
        .par_chunks_mut(per)
        .zip(idx.data_mut().par_chunks_mut(per))
        .zip(x.data().par_chunks((h * w).max(1)))
        .for_each(|((v, i), xs)| {
            for oy in 0..oh {
                let rows = window_axis(&g, 0, oy);
                for ox in 0..ow {
                    let (mut best, mut arg) = (f32::NEG_INFINITY, usize::MAX);
                    for yy in rows.clone() {
                        for xx in window_axis(&g, 1, ox) {
                            let t = yy * w + xx;
                            if arg == usize::MAX {
                                arg = t;
                            }
                            if xs[t] > best || xs[t].is_nan() {
                                (best, arg) = (xs[t], t);
                            }
                        }
                    }
                    v[oy * ow + ox] = best;
                    i[oy * ow + ox] = arg as u32;
                }
            }
        });
    Ok((vals, idx))
}

/// PyTorch's `avg_pool2d` on all cores; same contract as [`crate::cpu::avg_pool2d`].
pub fn avg_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let g = p.geometry("avg_pool2d", x.shape())?;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let mut out = Tensor::zeros(g.output_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    out.data_mut()
        .par_chunks_mut((oh * ow).max(1))
        .zip(x.data().par_chunks((h * w).max(1)))
        .for_each(|(o, xs)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0f32;
                    for yy in window_axis(&g, 0, oy) {
                        for xx in window_axis(&g, 1, ox) {
                            sum += xs[yy * w + xx];
                        }
                    }
                    o[oy * ow + ox] = sum / g.divisor(oy, ox) as f32;
                }
            }
        });
    Ok(out)
}

/// PyTorch's `max_unpool2d` on all cores; same contract as [`crate::cpu::max_unpool2d`].
pub fn max_unpool2d(vals: &Tensor, idx: &Tensor<u32>, size: [usize; 2]) -> Result<Tensor> {
    let op = "max_unpool2d";
    let ([n, c, ph, pw], plane) = unpool_shape(op, vals.shape(), idx.shape(), size)?;
    if let Some(j) = idx
        .data()
        .par_iter()
        .position_first(|&i| i as usize >= plane)
    {
        return Err(Error::invalid(
            op,
            format!(
                "index {} at position {j} is out of range for a {}×{} output plane ({plane} positions)",
                idx.data()[j],
                size[0],
                size[1]
            ),
        ));
    }
    let mut out = Tensor::zeros([n, c, size[0], size[1]])?;
    if out.is_empty() {
        return Ok(out);
    }
    let per = (ph * pw).max(1);
    out.data_mut()
        .par_chunks_mut(plane.max(1))
        .zip(vals.data().par_chunks(per).zip(idx.data().par_chunks(per)))
        .for_each(|(o, (v, i))| {
            for (&v, &i) in v.iter().zip(i) {
                o[i as usize] = v;
            }
        });
    Ok(out)
}
