//! The GPU path: a `Gpu` owns one wgpu device, its queue and the compiled pipelines; a
//! `GpuTensor` is a buffer on it with a shape. Ops submit their work and return at once; only
//! `download` waits for the device, so a chain of ops runs without a CPU round trip.

mod buffers;
mod chunk;
mod conv;
mod conv_act;
mod conv_backward;
mod conv_choice;
mod conv_gemm;
mod conv_wide;
mod device;
mod divide;
mod kernels;
mod layout;
mod pool;
mod profile;
mod record;
mod tensor;
mod train;
mod tune;
mod unpool;

pub use conv_choice::ConvAlgo;
pub use device::{GpuBuilder, KernelFamily};
pub use tensor::GpuTensor;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::tensor::Element;
use buffers::{BufferPool, XTexture};
use kernels::PipelineCache;
pub(crate) use record::Pass;
use record::Pending;

static NEXT_GPU_ID: AtomicU64 = AtomicU64::new(1);

/// A GPU device with its queue and compiled kernels. Cheap to clone (an `Arc`), `Send + Sync`:
/// clones share the device, the pipeline cache and the queue.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    cache: PipelineCache,
    /// Set by the device-lost callback; every later call returns `Error::DeviceLost`.
    lost: Arc<Mutex<Option<String>>>,
    /// Bound where a kernel's optional input (a bias) is absent.
    dummy: wgpu::Buffer,
    /// Kernel variants launched, by name, while tests count them (`None`: not counting).
    coverage: Mutex<Option<std::collections::BTreeMap<String, usize>>>,
    /// The one-binding layout `from_buffer` binds a wrapped buffer with, to learn its device.
    probe: std::sync::OnceLock<wgpu::BindGroupLayout>,
    /// Workgroups per grid dimension before a dispatch is folded into two dimensions: the
    /// device's limit, lowered only by tests to exercise folding on small shapes.
    fold_limit: std::sync::atomic::AtomicU32,
    /// vec4s of a uniform window one GEMM dispatch may use (see conv.rs `RowsLayout`): 4096,
    /// lowered only by tests to exercise split dispatches on small shapes.
    uniform_vec4s: std::sync::atomic::AtomicU32,
    /// Timestamp timers while `Gpu::profile` runs.
    profiler: profile::Profiler,
    /// Work recorded but not yet submitted: ops record into one command encoder, submitted by
    /// `flush` (called by `download`, `synchronize`, and every `FLUSH_EVERY` ops).
    pending: Mutex<Pending>,
    /// Idle buffers for reuse.
    pool: Mutex<BufferPool>,
    /// Bytes one kernel binding may hold; ops over it run in chunks (see chunk.rs).
    binding_limit: std::sync::atomic::AtomicU64,
    /// Subgroups of at least 8 lanes: `ConvAlgo::Gemm` runs the subgroup-shuffle kernel.
    subgroup_gemm: bool,
    /// The kernel family `Auto` chooses from (see `KernelFamily`).
    family: KernelFamily,
    /// The opt-in autotuner of `Auto` convolutions (see tune.rs).
    tuner: tune::Tuner,
    /// The GEMM kernels' im2col tables on the device, by contents (see `Gpu::table`).
    tables: Mutex<std::collections::HashMap<Vec<u32>, Arc<GpuTensor<u32>>>>,
    /// Packed weights of the row-segment GEMM, for later calls with the same weights.
    packed: Mutex<Vec<conv_gemm::PackedWeights>>,
    /// The row-segment GEMM's input textures, by size (see `Gpu::x_texture`).
    textures: Mutex<Vec<Arc<XTexture>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("id", &self.inner.id)
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish()
    }
}

impl Gpu {
    /// The adapter this `Gpu` runs on (name, backend, device type, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The wgpu adapter the device was opened on.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.inner.adapter
    }

    /// The device limits in force: the adapter's own where convpool opened the device, the
    /// application's where it came through [`Gpu::from_wgpu`].
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The wgpu device, for interop and timing (timestamp queries).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue. convpool records ops into a pending command encoder: call
    /// [`Gpu::flush`] before submitting work of your own that must follow them.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The kernel family automatic choices pick from on this `Gpu`.
    pub fn kernel_family(&self) -> KernelFamily {
        self.inner.family
    }

    /// A number that identifies this `Gpu` (and its clones) in error messages.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Folds dispatches at `limit` workgroups per dimension instead of the device's limit
    /// (clamped to `1..=limit`), so tests can exercise folding on small shapes.
    #[doc(hidden)]
    pub fn set_fold_limit_for_tests(&self, limit: u32) {
        let max = self.inner.limits.max_compute_workgroups_per_dimension;
        self.inner
            .fold_limit
            .store(limit.clamp(1, max), Ordering::Relaxed);
    }

    /// Lets one GEMM dispatch use only `vec4s` of its 4096-vec4 weight window (clamped to
    /// `272..=4096`), so tests can exercise dispatches split by tiles and by kernel rows on
    /// small shapes.
    #[doc(hidden)]
    pub fn set_uniform_window_for_tests(&self, vec4s: u32) {
        let max = (kernels::UNIFORM_WINDOW / 16) as u32;
        self.inner
            .uniform_vec4s
            .store(vec4s.clamp(272, max), Ordering::Relaxed);
    }

    /// `Err` unless `t` was made by this `Gpu` (or a clone of it).
    pub(crate) fn check_owner<T: Element>(
        &self,
        op: &'static str,
        what: &'static str,
        t: &GpuTensor<T>,
    ) -> Result<()> {
        if t.gpu().inner.id != self.inner.id {
            return Err(Error::WrongDevice {
                op,
                what,
                found: t.gpu().inner.id,
                expected: self.inner.id,
            });
        }
        Ok(())
    }

    /// Starts counting the kernel variants this `Gpu` launches (the wide GEMMs': tile, vec4,
    /// whole tiles, padding-free, parts over K), so tests can show that each was reached.
    #[doc(hidden)]
    pub fn count_variants_for_tests(&self) {
        *self
            .inner
            .coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Default::default());
    }

    /// The variants launched since `count_variants_for_tests`, with how many passes each.
    #[doc(hidden)]
    pub fn variants_for_tests(&self) -> std::collections::BTreeMap<String, usize> {
        let c = self
            .inner
            .coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.clone().unwrap_or_default()
    }

    /// Counts one launch of variant `name` where tests count them.
    pub(crate) fn cover(&self, name: impl FnOnce() -> String) {
        let mut c = self
            .inner
            .coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(map) = c.as_mut() {
            *map.entry(name()).or_default() += 1;
        }
    }

    pub(crate) fn dummy(&self) -> &wgpu::Buffer {
        &self.inner.dummy
    }
}

/// The shaders compute window coordinates in i32: per axis, `output·stride + kernel·dilation`
/// and `input + padding` must stay below 2^31 (the tensors themselves are far smaller, being
/// limited by `max_buffer_size`). `Err` naming `op` otherwise.
pub(crate) fn check_reach(
    op: &'static str,
    input: [usize; 2],
    padding: [usize; 2],
    output: [usize; 2],
    stride: [usize; 2],
    kernel: [usize; 2],
    dilation: [usize; 2],
) -> Result<()> {
    for a in 0..2 {
        let w = |v: usize| v as u128;
        let reach = (w(output[a]) * w(stride[a]) + w(kernel[a]) * w(dilation[a]))
            .max(w(input[a]) + w(padding[a]));
        if reach >= i32::MAX as u128 {
            return Err(Error::invalid(
                op,
                format!("stride, kernel, dilation or padding too large for the GPU kernels (coordinates reach {reach})"),
            ));
        }
    }
    Ok(())
}
