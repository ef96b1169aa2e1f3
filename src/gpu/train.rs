//! Launchers for the training step's elementwise ops, losses and update
//! (shaders/train.wgsl). Every op records its passes and returns at once; the losses come back
//! as a one-element `GpuTensor`, summed on the device in a fixed order (deterministic), so a
//! training step needs no CPU wait unless the loss is downloaded.

use super::{Gpu, GpuTensor, Pass};
use crate::activation::Activation;
use crate::error::{ensure, Result};
use crate::gpu::kernels::Kernel;
use crate::gpu::layout::params_struct;
use crate::params::train::{check_same, cross_entropy_dims, Sgd};
use crate::tensor::Tensor;

params_struct! {
    /// `TrainParams` in shaders/train.wgsl.
    struct TrainParams {
        total: u32,
        kind: u32,
        a: f32,
        b: f32,
        c: f32,
        classes: u32,
        hw: u32,
        scale: f32,
    }
}

/// Values one `sum_blocks` workgroup adds (`BLOCK` in the shader).
const SUM_BLOCK: usize = 4096;

impl TrainParams {
    fn act(total: usize, act: Activation) -> Self {
        let (kind, a, b) = act.encode();
        TrainParams {
            total: total as u32,
            kind,
            a,
            b,
            ..Default::default()
        }
    }
}

impl Gpu {
    /// `Err` unless every tensor lives on this `Gpu` and fits one binding.
    pub(super) fn check_inputs(
        &self,
        op: &'static str,
        ts: &[(&'static str, &GpuTensor)],
    ) -> Result<()> {
        for (what, t) in ts {
            self.check_owner(op, what, t)?;
            self.check_binding(op, what, t.len())?;
        }
        Ok(())
    }

    /// `scale ·` the sum of `v`'s elements as a `[1]` tensor: blocks of 4,096 summed by one
    /// workgroup each in a fixed order, level by level until one value is left.
    fn sum_scaled(&self, op: &'static str, v: &GpuTensor, scale: f32) -> Result<GpuTensor> {
        let mut cur = v.clone();
        loop {
            let blocks = cur.len().div_ceil(SUM_BLOCK).max(1);
            let last = blocks == 1;
            let next = self.alloc::<f32>(op, &[blocks])?;
            let params = TrainParams {
                total: cur.len() as u32,
                scale: if last { scale } else { 1.0 },
                ..Default::default()
            };
            let buffers = vec![cur.buffer(), next.buffer()];
            let pass = Pass::tiled(Kernel::SumBlocks, &params, buffers, blocks as u64);
            self.launch(op, &[], &[pass])?;
            cur = next;
            if last {
                return Ok(cur);
            }
        }
    }

    /// `act` applied to every element of `x` (any shape). Returns without waiting; as
    /// [`crate::cpu::activation`] (bitwise for the piecewise-linear activations).
    pub fn activation(&self, x: &GpuTensor, act: Activation) -> Result<GpuTensor> {
        let op = "activation";
        act.check(op)?;
        self.check_inputs(op, &[("input", x)])?;
        let y = self.alloc(op, x.shape())?;
        let params = TrainParams::act(x.len(), act);
        let buffers = vec![x.buffer(), y.buffer()];
        self.launch(
            op,
            &[],
            &[Pass::new(Kernel::ActForward, &params, buffers, x.len())],
        )?;
        Ok(y)
    }

    /// The gradient through `act`, from the upstream gradient `gy` and the forward *output*
    /// `y` (same shape; a fused forward keeps nothing else). Returns without waiting; as
    /// [`crate::cpu::activation_backward`].
    pub fn activation_backward(
        &self,
        gy: &GpuTensor,
        y: &GpuTensor,
        act: Activation,
    ) -> Result<GpuTensor> {
        let op = "activation_backward";
        act.check(op)?;
        check_same(op, ["gradient", "output"], gy.shape(), y.shape())?;
        self.check_inputs(op, &[("gradient", gy), ("output", y)])?;
        let gx = self.alloc(op, gy.shape())?;
        let params = TrainParams::act(gy.len(), act);
        let buffers = vec![gy.buffer(), y.buffer(), gx.buffer()];
        let pass = Pass::new(Kernel::ActBackward, &params, buffers, gy.len());
        self.launch(op, &[], &[pass])?;
        Ok(gx)
    }

    /// `a + b`, elementwise, for tensors of one shape (skip connections, gradient
    /// accumulation). Returns without waiting.
    pub fn add(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let op = "add";
        check_same(op, ["first", "second"], a.shape(), b.shape())?;
        self.check_inputs(op, &[("first", a), ("second", b)])?;
        let y = self.alloc(op, a.shape())?;
        let params = TrainParams::act(a.len(), Activation::Identity);
        let buffers = vec![a.buffer(), b.buffer(), y.buffer()];
        self.launch(
            op,
            &[],
            &[Pass::new(Kernel::Add, &params, buffers, a.len())],
        )?;
        Ok(y)
    }

    /// One step of PyTorch's SGD (dampening 0, not Nesterov): `g = grad + weight_decay·w`,
    /// `v = momentum·velocity + g`, returns `(w − lr·v, v)`; start from a zero velocity.
    /// Returns without waiting; as [`crate::cpu::sgd_update`].
    pub fn sgd_update(
        &self,
        w: &GpuTensor,
        grad: &GpuTensor,
        velocity: &GpuTensor,
        sgd: &Sgd,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let op = "sgd_update";
        sgd.check()?;
        check_same(op, ["weight", "gradient"], w.shape(), grad.shape())?;
        check_same(op, ["weight", "velocity"], w.shape(), velocity.shape())?;
        let ts = [("weight", w), ("gradient", grad), ("velocity", velocity)];
        self.check_inputs(op, &ts)?;
        let (nw, nv) = (self.alloc(op, w.shape())?, self.alloc(op, w.shape())?);
        let params = TrainParams {
            total: w.len() as u32,
            a: sgd.lr,
            b: sgd.momentum,
            c: sgd.weight_decay,
            ..Default::default()
        };
        let buffers = vec![
            w.buffer(),
            grad.buffer(),
            velocity.buffer(),
            nw.buffer(),
            nv.buffer(),
        ];
        let pass = Pass::new(Kernel::Sgd, &params, buffers, w.len());
        self.launch(op, &[], &[pass])?;
        Ok((nw, nv))
    }

    /// Per-pixel softmax cross-entropy; see [`crate::cpu::softmax_cross_entropy`]. Returns the
    /// mean loss as a `[1]` tensor and the gradient with respect to the logits. Labels uploaded
    /// from the host are range-checked at once (their bound was taken at upload); labels made
    /// on the device are downloaded to be checked, so that call waits.
    pub fn softmax_cross_entropy(
        &self,
        logits: &GpuTensor,
        labels: &GpuTensor<u32>,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let op = "softmax_cross_entropy";
        let [n, c, h, w] = cross_entropy_dims(logits.shape(), labels.shape())?;
        self.check_inputs(op, &[("logits", logits)])?;
        self.check_owner(op, "labels", labels)?;
        match labels.bound {
            Some(bound) => ensure!(
                bound <= c as u64,
                op,
                "label {} is not below the {c} classes",
                bound - 1
            ),
            None => crate::params::train::check_labels(op, &labels.download()?, c)?,
        }
        let pixels = n * h * w;
        let grad = self.alloc(op, logits.shape())?;
        if pixels == 0 {
            let loss = self.upload(&Tensor::new([1], vec![f32::NAN])?)?;
            return Ok((loss, grad));
        }
        let losses = self.alloc::<f32>(op, &[pixels])?;
        let scale = 1.0 / pixels as f32;
        let params = TrainParams {
            total: pixels as u32,
            classes: c as u32,
            hw: (h * w) as u32,
            scale,
            ..Default::default()
        };
        let buffers = vec![
            logits.buffer(),
            labels.buffer(),
            grad.buffer(),
            losses.buffer(),
        ];
        let pass = Pass::new(Kernel::CrossEntropy, &params, buffers, pixels);
        self.launch(op, &[], &[pass])?;
        Ok((self.sum_scaled(op, &losses, scale)?, grad))
    }

    /// Mean squared error `mean((pred − target)²)` as a `[1]` tensor (summed on the device in
    /// a fixed order), and its gradient `2·(pred − target)/len`. Returns without waiting; as
    /// [`crate::cpu::mse_loss`].
    pub fn mse_loss(&self, pred: &GpuTensor, target: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
        let op = "mse_loss";
        check_same(op, ["prediction", "target"], pred.shape(), target.shape())?;
        self.check_inputs(op, &[("prediction", pred), ("target", target)])?;
        let grad = self.alloc(op, pred.shape())?;
        if pred.is_empty() {
            let loss = self.upload(&Tensor::new([1], vec![f32::NAN])?)?;
            return Ok((loss, grad));
        }
        let sq = self.alloc::<f32>(op, pred.shape())?;
        let scale = 1.0 / pred.len() as f32;
        let params = TrainParams {
            total: pred.len() as u32,
            scale,
            ..Default::default()
        };
        let buffers = vec![pred.buffer(), target.buffer(), grad.buffer(), sq.buffer()];
        let pass = Pass::new(Kernel::SquaredError, &params, buffers, pred.len());
        self.launch(op, &[], &[pass])?;
        Ok((self.sum_scaled(op, &sq, scale)?, grad))
    }
}

#[cfg(test)]
#[test]
fn params_match_the_shaders() {
    TrainParams::check_layout().unwrap();
}
