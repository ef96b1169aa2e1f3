//! Fast activations, losses and update: elementwise loops on all CPU cores, in chunks of a
//! fixed size; the losses sum each image (or chunk) in order and then the partial sums in
//! order, so results are bitwise reproducible.

use rayon::prelude::*;

use crate::activation::Activation;
use crate::error::Result;
use crate::params::train::check_labels;
use crate::params::train::{check_same, cross_entropy_dims, Sgd};
use crate::tensor::Tensor;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// `f(i)` for every flat index, on all cores, written in place: no zeroed buffer first.
fn map_indexed(shape: &[usize], len: usize, f: impl Fn(usize) -> f32 + Sync) -> Result<Tensor> {
    let mut out = crate::recycle::take(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            for (j, v) in o.iter_mut().enumerate() {
                v.write(f(c * CHUNK + j));
            }
        });
    // SAFETY: the chunks cover all `len` elements, each written above.
    unsafe { out.set_len(len) };
    Tensor::new(shape.to_vec(), out)
}

/// [`crate::cpu::activation`] on all cores.
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    act.check("activation")?;
    let mut y = x.clone();
    y.data_mut()
        .par_chunks_mut(CHUNK)
        .for_each(|v| act.apply_slice(v));
    Ok(y)
}

/// [`crate::cpu::activation_backward`] on all cores.
pub fn activation_backward(gy: &Tensor, y: &Tensor, act: Activation) -> Result<Tensor> {
    let op = "activation_backward";
    act.check(op)?;
    check_same(op, ["gradient", "output"], gy.shape(), y.shape())?;
    let (g, yd) = (gy.data(), y.data());
    map_indexed(gy.shape(), gy.len(), |i| act.grad(g[i], yd[i]))
}

/// [`crate::cpu::add`] on all cores.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_same("add", ["first", "second"], a.shape(), b.shape())?;
    let (ad, bd) = (a.data(), b.data());
    map_indexed(a.shape(), a.len(), |i| ad[i] + bd[i])
}

/// [`crate::cpu::softmax_cross_entropy`] on all cores: images in parallel.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor<u32>) -> Result<(f32, Tensor)> {
    let op = "softmax_cross_entropy";
    let [n, c, h, w] = cross_entropy_dims(logits.shape(), labels.shape())?;
    check_labels(op, labels, c)?;
    if logits.is_empty() {
        return Ok((f32::NAN, Tensor::zeros(logits.shape())?));
    }
    let hw = h * w;
    let scale = 1.0 / (n * hw) as f32;
    let mut grad = crate::recycle::zeroed::<f32>(logits.len());
    let losses: Vec<f32> = grad
        .par_chunks_mut(c * hw)
        .zip(logits.data().par_chunks(c * hw))
        .zip(labels.data().par_chunks(hw.max(1)))
        .map(|((g, l), lab)| {
            // Per pixel: the maximum, then Σ exp(l − max), channel by channel.
            let mut m = vec![f32::NEG_INFINITY; hw];
            for ch in l.chunks(hw) {
                m.iter_mut().zip(ch).for_each(|(m, &v)| {
                    if v > *m || v.is_nan() {
                        *m = v
                    }
                });
            }
            let mut s = vec![0.0f32; hw];
            for (gc, ch) in g.chunks_mut(hw).zip(l.chunks(hw)) {
                for p in 0..hw {
                    let e = (ch[p] - m[p]).exp();
                    gc[p] = e;
                    s[p] += e;
                }
            }
            let mut loss = 0.0f32;
            for p in 0..hw {
                let label = lab[p] as usize;
                loss += s[p].ln() - (l[label * hw + p] - m[p]);
            }
            for (ci, gc) in g.chunks_mut(hw).enumerate() {
                for p in 0..hw {
                    let onehot = if lab[p] as usize == ci { 1.0 } else { 0.0 };
                    gc[p] = (gc[p] / s[p] - onehot) * scale;
                }
            }
            loss
        })
        .collect();
    let total = losses.iter().fold(0.0f32, |a, v| a + v);
    Ok((total * scale, Tensor::new(logits.shape(), grad)?))
}

/// [`crate::cpu::mse_loss`] on all cores.
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Result<(f32, Tensor)> {
    check_same(
        "mse_loss",
        ["prediction", "target"],
        pred.shape(),
        target.shape(),
    )?;
    let len = pred.len() as f32;
    let (p, t) = (pred.data(), target.data());
    let sums: Vec<f32> = p
        .par_chunks(CHUNK)
        .zip(t.par_chunks(CHUNK))
        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum::<f32>())
        .collect();
    let total = sums.iter().fold(0.0f32, |a, v| a + v);
    let grad = map_indexed(pred.shape(), pred.len(), |i| 2.0 * (p[i] - t[i]) / len)?;
    Ok((total / len, grad))
}

/// [`crate::cpu::sgd_update`] on all cores.
pub fn sgd_update(
    w: &Tensor,
    grad: &Tensor,
    velocity: &Tensor,
    sgd: &Sgd,
) -> Result<(Tensor, Tensor)> {
    let op = "sgd_update";
    sgd.check()?;
    check_same(op, ["weight", "gradient"], w.shape(), grad.shape())?;
    check_same(op, ["weight", "velocity"], w.shape(), velocity.shape())?;
    let (wd, gd, vd) = (w.data(), grad.data(), velocity.data());
    let v = map_indexed(w.shape(), w.len(), |i| {
        sgd.momentum * vd[i] + (gd[i] + sgd.weight_decay * wd[i])
    })?;
    let nv = v.data();
    let nw = map_indexed(w.shape(), w.len(), |i| wd[i] - sgd.lr * nv[i])?;
    Ok((nw, v))
}
