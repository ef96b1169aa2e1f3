//! Fast pooling: the planes are split over the CPU cores.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::params::pool::{unpool_shape, Pool2d, PoolGeometry};
use crate::tensor::Tensor;

/// The in-bounds taps of every window along axis `a`: for window `o`, the first in-bounds
/// input coordinate and how many taps (spaced by the dilation) lie inside the input.
/// Computed once per call, so the window loops below run without bounds tests.
fn window_axis(g: &PoolGeometry, a: usize) -> Vec<(usize, usize)> {
    let n = g.input[a] as isize;
    (0..g.output[a])
        .map(|o| {
            let mut inside = g.taps(a, o).filter(|&t| t >= 0 && t < n);
            let first = inside.next();
            (
                first.unwrap_or(0) as usize,
                first.map_or(0, |_| 1 + inside.count()),
            )
        })
        .collect()
}

/// PyTorch's `max_pool2d(..., return_indices=True)` on all cores; same contract as
/// [`crate::cpu::max_pool2d`] (the same walk, so the same values and indices).
pub fn max_pool2d(x: &Tensor, p: &Pool2d) -> Result<(Tensor, Tensor<u32>)> {
    let g = p.geometry("max_pool2d", x.shape())?;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let [dy, dx] = g.dilation;
    let mut vals = Tensor::zeros(g.output_shape())?;
    let mut idx = Tensor::<u32>::zeros(g.output_shape())?;
    if vals.is_empty() {
        return Ok((vals, idx));
    }
    let (rows, cols) = (window_axis(&g, 0), window_axis(&g, 1));
    let per = (oh * ow).max(1);
    vals.data_mut()
        .par_chunks_mut(per)
        .zip(idx.data_mut().par_chunks_mut(per))
        .zip(x.data().par_chunks((h * w).max(1)))
        .for_each(|((v, i), xs)| {
            for (oy, &(y0, ny)) in rows.iter().enumerate() {
                for (ox, &(x0, nx)) in cols.iter().enumerate() {
                    // The first tap inside the input is the index of an all-−∞ window; NaN
                    // wins and the last NaN is kept, as PyTorch's CPU kernel does.
                    let (mut best, mut arg) = (f32::NEG_INFINITY, y0 * w + x0);
                    for yy in (0..ny).map(|j| y0 + j * dy) {
                        let row = &xs[yy * w..][..w];
                        for xx in (0..nx).map(|j| x0 + j * dx) {
                            let v = row[xx];
                            if v > best || v.is_nan() {
                                (best, arg) = (v, yy * w + xx);
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

/// PyTorch's `avg_pool2d` on all cores; same contract as [`crate::cpu::avg_pool2d`] (the same
/// summation order).
pub fn avg_pool2d(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let g = p.geometry("avg_pool2d", x.shape())?;
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let [dy, dx] = g.dilation;
    let mut out = Tensor::zeros(g.output_shape())?;
    if out.is_empty() {
        return Ok(out);
    }
    let (rows, cols) = (window_axis(&g, 0), window_axis(&g, 1));
    let divisors: Vec<f32> = (0..oh * ow)
        .map(|o| g.divisor(o / ow, o % ow) as f32)
        .collect();
    out.data_mut()
        .par_chunks_mut((oh * ow).max(1))
        .zip(x.data().par_chunks((h * w).max(1)))
        .for_each(|(o, xs)| {
            for (oy, &(y0, ny)) in rows.iter().enumerate() {
                for (ox, &(x0, nx)) in cols.iter().enumerate() {
                    let mut sum = 0.0f32;
                    for yy in (0..ny).map(|j| y0 + j * dy) {
                        let row = &xs[yy * w..][..w];
                        for xx in (0..nx).map(|j| x0 + j * dx) {
                            sum += row[xx];
                        }
                    }
                    o[oy * ow + ox] = sum / divisors[oy * ow + ox];
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
