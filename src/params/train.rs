//! The training step's parameters: shapes of the losses and elementwise ops, and `Sgd`.

use crate::error::{ensure, Error, Result};
use crate::tensor::{dims4, Tensor};

/// SGD with momentum, as PyTorch's `torch.optim.SGD` (dampening 0, not Nesterov):
/// `g = grad + weight_decay·w`, `v ← momentum·v + g`, `w ← w − lr·v`. With a zero initial
/// velocity the first step is PyTorch's (whose buffer starts as `g`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: plain SGD).
    pub momentum: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }
}

impl Sgd {
    /// `Err` unless every parameter is a finite number ≥ 0.
    pub fn check(&self) -> Result<()> {
        let op = "sgd_update";
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            ensure!(
                v.is_finite() && v >= 0.0,
                op,
                "{name} must be a finite number ≥ 0, got {v}"
            );
        }
        Ok(())
    }
}

/// `Err` unless `gy` and `y` have the same shape (an activation's backward pass).
pub(crate) fn check_same(
    op: &'static str,
    what: [&str; 2],
    a: &[usize],
    b: &[usize],
) -> Result<()> {
    ensure!(
        a == b,
        op,
        "{} shape {a:?} differs from {} shape {b:?}",
        what[0],
        what[1]
    );
    Ok(())
}

/// The shapes of `softmax_cross_entropy`: logits `[N, C, H, W]` with `C ≥ 1` and labels
/// `[N, H, W]`. Returns the logits' dims.
pub(crate) fn cross_entropy_dims(logits: &[usize], labels: &[usize]) -> Result<[usize; 4]> {
    let op = "softmax_cross_entropy";
    let l = dims4(op, "logits", logits)?;
    ensure!(
        l[1] >= 1,
        op,
        "logits need at least one class, got shape {l:?}"
    );
    ensure!(
        labels == [l[0], l[2], l[3]],
        op,
        "labels shape {labels:?} must be [N, H, W] = {:?} for logits {l:?}",
        [l[0], l[2], l[3]]
    );
    Ok(l)
}

/// `Err` naming the first label of `labels` `[N, H, W]` that is not below `classes`.
pub(crate) fn check_labels(op: &'static str, labels: &Tensor<u32>, classes: usize) -> Result<()> {
    if let Some(i) = labels.data().iter().position(|&l| l as usize >= classes) {
        let s = labels.shape();
        let (n, y, x) = (i / (s[1] * s[2]), i / s[2] % s[1], i % s[2]);
        return Err(Error::invalid(
            op,
            format!(
                "label {} at [{n}, {y}, {x}] is not below the {classes} classes",
                labels.data()[i]
            ),
        ));
    }
    Ok(())
}
