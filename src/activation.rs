//! `Activation`: the elementwise nonlinearities the convolutions can apply in their epilogue,
//! their parameter checks, and their values and gradients (the gradient from the forward
//! *output*, so a fused forward needs to keep nothing else for its backward pass).

use crate::error::{ensure, Result};

/// An elementwise activation, applied after the bias. `Default` is `Identity`.
///
/// Every forward propagates NaN. The backward passes take the forward output `y`:
/// ReLU passes `gy` where `y > 0`; LeakyReLU `gy` where `y > 0`, else `slope·gy`; Clamp `gy`
/// where `min < y < max`, else 0 (PyTorch's `hardtanh_backward`: the boundary gets 0);
/// Sigmoid `gy·y·(1−y)`; Tanh `gy·(1−y²)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// `y = x`.
    #[default]
    Identity,
    /// `y = x` where `x > 0`, else 0 (NaN stays NaN).
    Relu,
    /// `y = x` where `x > 0`, else `slope·x`; `slope ≥ 0`.
    LeakyRelu {
        /// Slope of the negative part (PyTorch's `negative_slope`).
        slope: f32,
    },
    /// `y = min(max(x, min), max)`: PyTorch's `hardtanh`; ReLU6 is `Clamp { min: 0.0, max: 6.0 }`.
    Clamp {
        /// Lower bound.
        min: f32,
        /// Upper bound, at least `min`.
        max: f32,
    },
    /// `y = 1 / (1 + e^(−x))`.
    Sigmoid,
    /// `y = tanh(x)`.
    Tanh,
}

impl Activation {
    /// `Err` naming `op` for a NaN or negative slope, or a NaN or inverted clamp range.
    pub fn check(self, op: &'static str) -> Result<()> {
        match self {
            Activation::LeakyRelu { slope } => ensure!(
                slope.partial_cmp(&0.0).is_some_and(|o| o.is_ge()),
                op,
                "LeakyRelu slope must be a number ≥ 0, got {slope}"
            ),
            Activation::Clamp { min, max } => ensure!(
                min.partial_cmp(&max).is_some_and(|o| o.is_le()),
                op,
                "Clamp needs numbers min ≤ max, got min = {min}, max = {max}"
            ),
            _ => {}
        }
        Ok(())
    }

    /// The activation of `x` (the CPU definition the GPU kernels follow operation for operation
    /// in the piecewise-linear cases).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::LeakyRelu { slope } => {
                if x < 0.0 {
                    x * slope
                } else {
                    x
                }
            }
            Activation::Clamp { min, max } => {
                if x < min {
                    min
                } else if x > max {
                    max
                } else {
                    x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }

    /// `dL/dx` from `gy = dL/dy` and the forward output `y`.
    #[inline(always)]
    pub fn grad(self, gy: f32, y: f32) -> f32 {
        match self {
            Activation::Identity => gy,
            Activation::Relu => {
                if y > 0.0 {
                    gy
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu { slope } => {
                if y > 0.0 {
                    gy
                } else {
                    gy * slope
                }
            }
            Activation::Clamp { min, max } => {
                if y > min && y < max {
                    gy
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => gy * y * (1.0 - y),
            Activation::Tanh => gy * (1.0 - y * y),
        }
    }

    /// Applies the activation to every element of `v`, in place. Each case is its own loop, so
    /// the piecewise-linear ones vectorize.
    #[inline(always)]
    pub(crate) fn apply_slice(self, v: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => v.iter_mut().for_each(|x| *x = Activation::Relu.apply(*x)),
            a @ Activation::LeakyRelu { .. } => v.iter_mut().for_each(|x| *x = a.apply(*x)),
            a @ Activation::Clamp { .. } => v.iter_mut().for_each(|x| *x = a.apply(*x)),
            a => v.iter_mut().for_each(|x| *x = a.apply(*x)),
        }
    }

    /// The kernels' encoding: (kind, first parameter, second parameter).
    pub(crate) fn encode(self) -> (u32, f32, f32) {
        match self {
            Activation::Identity => (0, 0.0, 0.0),
            Activation::Relu => (1, 0.0, 0.0),
            Activation::LeakyRelu { slope } => (2, slope, 0.0),
            Activation::Clamp { min, max } => (3, min, max),
            Activation::Sigmoid => (4, 0.0, 0.0),
            Activation::Tanh => (5, 0.0, 0.0),
        }
    }
}
