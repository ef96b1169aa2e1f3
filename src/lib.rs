//! # convpool
//!
//! Convolution, transposed convolution, pooling and unpooling layers on any GPU through wgpu,
//! with PyTorch's semantics, and a CPU reference path that every GPU result is tested against.
//! For training: the convolutions' backward passes (`conv2d_backward_input`,
//! `conv2d_backward_weight`, `bias_backward`, and the transposed convolution's), activations
//! fused into the convolutions ([`Activation`], `conv2d_act`), `softmax_cross_entropy`,
//! `mse_loss`, `add` and `sgd_update` ([`Sgd`]), on [`cpu`], [`fast`] and [`Gpu`] alike;
//! `examples/train_segnet` trains an encoder–decoder with them.
//!
//! ```no_run
//! use convpool::{cpu, Conv2d, Gpu, Padding, Tensor};
//! # fn main() -> convpool::Result<()> {
//! let gpu = Gpu::new()?;
//! let x = Tensor::new([1, 1, 3, 3], (0..9).map(|v| v as f32).collect())?;
//! let k = Tensor::new([1, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0])?;
//! let spec = Conv2d { padding: Padding::Valid, ..Default::default() };
//! let y = gpu.conv2d(&gpu.upload(&x)?, &gpu.upload(&k)?, None, &spec)?.download()?;
//! assert_eq!(y, cpu::conv2d(&x, &k, None, &spec)?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod activation;
pub mod cpu;
mod error;
pub mod fast;
pub mod gpu;
#[cfg(feature = "ndarray")]
mod ndarray;
pub mod params;
mod tensor;

pub use activation::Activation;
pub use error::{Error, Result};
pub use gpu::{ConvAlgo, Gpu, GpuBuilder, GpuTensor};
pub use params::conv::{Conv2d, ConvGeometry, ConvTranspose2d, Padding};
pub use params::pool::{Pool2d, PoolGeometry};
pub use params::train::Sgd;
pub use tensor::{Element, Tensor};
/// The wgpu this crate is built on, for `Gpu::device`, `Gpu::queue` and `Gpu::adapter_info`.
pub use wgpu;
