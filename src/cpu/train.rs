//! Reference activations, losses and update: what a training step needs besides the layers.

use crate::activation::Activation;
use crate::error::Result;
use crate::params::train::{check_same, cross_entropy_dims, Sgd};
use crate::tensor::Tensor;

/// `act` applied to every element of `x` (any shape).
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    act.check("activation")?;
    Tensor::from_fn(x.shape(), |i| act.apply(x.data()[i]))
}

/// The gradient with respect to the activation's input, from `gy` and the forward output `y`
/// (same shapes; see [`Activation`] for each rule).
pub fn activation_backward(gy: &Tensor, y: &Tensor, act: Activation) -> Result<Tensor> {
    let op = "activation_backward";
    act.check(op)?;
    check_same(op, ["gradient", "output"], gy.shape(), y.shape())?;
    Tensor::from_fn(gy.shape(), |i| act.grad(gy.data()[i], y.data()[i]))
}

/// `a + b`, elementwise (same shapes): skip connections, gradient accumulation.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_same("add", ["first", "second"], a.shape(), b.shape())?;
    Tensor::from_fn(a.shape(), |i| a.data()[i] + b.data()[i])
}

/// Per-pixel softmax cross-entropy over the channel axis, as PyTorch's
/// `F.cross_entropy(logits, labels)` (reduction `mean`): `logits` `[N, C, H, W]`, `labels`
/// `[N, H, W]` with values below `C` (else `Err`). Returns the mean loss over the `N·H·W`
/// pixels and its gradient with respect to the logits, `(softmax − onehot) / (N·H·W)`.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor<u32>) -> Result<(f32, Tensor)> {
    let op = "softmax_cross_entropy";
    let [n, c, h, w] = cross_entropy_dims(logits.shape(), labels.shape())?;
    crate::params::train::check_labels(op, labels, c)?;
    if logits.is_empty() {
        return Ok((f32::NAN, Tensor::zeros(logits.shape())?));
    }
    let hw = h * w;
    let pixels = n * hw;
    let scale = 1.0 / pixels as f32;
    let mut grad = Tensor::zeros(logits.shape())?;
    let (l, g) = (logits.data(), grad.data_mut());
    let mut total = 0.0f32;
    for b in 0..n {
        for p in 0..hw {
            let at = |ch: usize| (b * c + ch) * hw + p;
            let m = (0..c).map(|ch| l[at(ch)]).fold(f32::NEG_INFINITY, |a, v| {
                if v > a || v.is_nan() {
                    v
                } else {
                    a
                }
            });
            let s: f32 = (0..c).map(|ch| (l[at(ch)] - m).exp()).sum();
            let label = labels.data()[b * hw + p] as usize;
            total += s.ln() - (l[at(label)] - m);
            for ch in 0..c {
                let onehot = if ch == label { 1.0 } else { 0.0 };
                g[at(ch)] = ((l[at(ch)] - m).exp() / s - onehot) * scale;
            }
        }
    }
    Ok((total * scale, grad))
}

/// Mean squared error, as PyTorch's `F.mse_loss(pred, target)`: the mean of `(pred − target)²`
/// and its gradient with respect to `pred`, `2·(pred − target) / len` (same shapes).
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Result<(f32, Tensor)> {
    check_same(
        "mse_loss",
        ["prediction", "target"],
        pred.shape(),
        target.shape(),
    )?;
    let len = pred.len() as f32;
    let diff = |i: usize| pred.data()[i] - target.data()[i];
    let total: f32 = (0..pred.len()).map(|i| diff(i) * diff(i)).sum();
    let grad = Tensor::from_fn(pred.shape(), |i| 2.0 * diff(i) / len)?;
    Ok((total / len, grad))
}

/// One step of SGD with momentum (see [`Sgd`]): returns the new weight and velocity. `w`,
/// `grad` and `velocity` have one shape.
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
    let v = Tensor::from_fn(w.shape(), |i| {
        sgd.momentum * velocity.data()[i] + (grad.data()[i] + sgd.weight_decay * w.data()[i])
    })?;
    let nw = Tensor::from_fn(w.shape(), |i| w.data()[i] - sgd.lr * v.data()[i])?;
    Ok((nw, v))
}
