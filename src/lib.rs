//! # convpool
//!
//! The layers of a convolutional network on any GPU through wgpu — convolution, transposed
//! convolution, max / average / stochastic pooling, unpooling, their backward passes, fused
//! activations, losses and SGD — with PyTorch's semantics and bitwise reproducible results,
//! beside a plain CPU reference ([`cpu`]) that every GPU kernel is tested against and a fast
//! multi-threaded CPU path ([`fast`]) with the same functions.
//!
//! Upload once, chain ops on the device (each returns at once), download once:
//!
//! ```
//! use convpool::{cpu, Activation, Conv2d, Gpu, Padding, Pool2d, Tensor};
//! # fn main() -> convpool::Result<()> {
//! # let required = std::env::var("CONVPOOL_REQUIRE_GPU").is_ok_and(|v| v == "1")
//! #     || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
//! # let gpu = match Gpu::new() {
//! #     Ok(gpu) => gpu,
//! #     Err(e) if required => return Err(e), // CI: an adapter must exist
//! #     Err(_) => return Ok(()),              // no adapter here: nothing to show
//! # };
//! let x = Tensor::from_fn([1, 3, 8, 8], |i| (i % 7) as f32 - 3.0)?;   // NCHW, f32
//! let w = Tensor::from_fn([4, 3, 3, 3], |i| (i % 5) as f32 * 0.1)?;   // [C_out, C_in, kH, kW]
//! let spec = Conv2d { padding: Padding::Same, ..Default::default() };
//!
//! let gw = gpu.upload(&w)?;
//! let y = gpu.conv2d_act(&gpu.upload(&x)?, &gw, None, &spec, Activation::Relu)?;
//! let (pooled, indices) = gpu.max_pool2d(&y, &Pool2d::new([2, 2]))?;
//! let up = gpu.max_unpool2d(&pooled, &indices, [8, 8])?;
//! let on_gpu = up.download()?;                                         // waits here only
//!
//! let y = cpu::conv2d_act(&x, &w, None, &spec, Activation::Relu)?;
//! let (pooled, indices) = cpu::max_pool2d(&y, &Pool2d::new([2, 2]))?;
//! let on_cpu = cpu::max_unpool2d(&pooled, &indices, [8, 8])?;
//! // GPU and CPU sum in different orders: they agree within float rounding.
//! for (a, b) in on_gpu.data().iter().zip(on_cpu.data()) {
//!     assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs());
//! }
//! # Ok(()) }
//! ```
//!
//! - **Tensors**: [`Tensor`] on the host, [`GpuTensor`] on a [`Gpu`]; `f32` data, `u32`
//!   indices and labels.
//! - **Ops** (the same names on [`cpu`], [`fast`] and [`Gpu`]): `conv2d`, `conv_transpose2d`,
//!   `max_pool2d`, `avg_pool2d`, `stochastic_pool2d`, `max_unpool2d`, `avg_unpool2d`, the
//!   backward passes (`conv2d_backward_input`, `conv2d_backward_weight`, `bias_backward`,
//!   `max_pool2d_backward`, …), `activation` and the fused `conv2d_act`, `softmax_cross_entropy`,
//!   `mse_loss`, `add` and `sgd_update`.
//! - **Specs**: [`Conv2d`], [`ConvTranspose2d`], [`Pool2d`], [`Activation`], [`Sgd`]; each
//!   validates itself and owns its shape arithmetic.
//! - **Interop**: [`Gpu::from_wgpu`] runs on an application's own device,
//!   [`GpuTensor::from_buffer`] wraps its buffers, [`Gpu::builder`] picks the adapter in code;
//!   with the `ndarray` feature, `Tensor` converts to and from `ndarray` arrays.
//! - **Errors**: every function returns [`Result`]; bad input is an [`Error`] naming the op and
//!   the values, never a panic.
//!
//! The exact semantics (output sizes, padding modes, index conventions, the stochastic
//! pooling hash, the gradients) are in `docs/SEMANTICS.md`; how kernels are chosen is in
//! `docs/DESIGN.md`.
#![warn(missing_docs)]

mod activation;
pub mod cpu;
mod error;
pub mod fast;
pub mod gpu;
#[cfg(feature = "ndarray")]
mod ndarray;
pub mod params;
mod recycle;
mod tensor;

pub use activation::Activation;
pub use error::{Error, Result};
pub use gpu::{ConvAlgo, Gpu, GpuBuilder, GpuTensor, KernelFamily};
pub use params::conv::{Conv2d, ConvGeometry, ConvTranspose2d, Padding};
pub use params::pool::{Pool2d, PoolGeometry};
pub use params::train::Sgd;
pub use tensor::{Element, Tensor};
/// The wgpu this crate is built on, for `Gpu::device`, `Gpu::queue` and `Gpu::adapter_info`.
pub use wgpu;
