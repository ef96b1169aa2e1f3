//! The GPU path: a `Gpu` owns one wgpu device, its queue and the compiled pipelines; a
//! `GpuTensor` is a buffer on it with a shape. Ops submit their work and return at once; only
//! `download` waits for the device, so a chain of ops runs without a CPU round trip.

mod chunk;
mod conv;
mod conv_backward;
mod divide;
mod kernels;
mod pool;
mod profile;
mod tensor;
mod train;

pub use conv::ConvAlgo;
pub use tensor::GpuTensor;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::tensor::{numel, Element, Tensor};
use kernels::{Kernel, PipelineCache, WORKGROUP};

static NEXT_GPU_ID: AtomicU64 = AtomicU64::new(1);

/// A GPU device with its queue and compiled kernels. Cheap to clone (an `Arc`), `Send + Sync`:
/// clones share the device, the pipeline cache and the queue.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    cache: PipelineCache,
    /// Set by the device-lost callback; every later call returns `Error::DeviceLost`.
    lost: Arc<Mutex<Option<String>>>,
    /// Bound where a kernel's optional input (a bias) is absent.
    dummy: wgpu::Buffer,
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
    /// The GEMM kernels' im2col tables on the device, by contents (see `Gpu::table`).
    tables: Mutex<std::collections::HashMap<Vec<u32>, Arc<GpuTensor<u32>>>>,
    /// Packed weights of the row-segment GEMM, for later calls with the same weights.
    packed: Mutex<Vec<conv::PackedWeights>>,
    /// The row-segment GEMM's input textures, by size (see `Gpu::x_texture`).
    textures: Mutex<Vec<Arc<XTexture>>>,
}

/// An rgba32float 2-D array texture and its view.
pub(crate) struct XTexture {
    pub size: wgpu::Extent3d,
    pub _texture: wgpu::Texture,
    pub view: wgpu::TextureView,
}

/// How many input textures `Gpu::x_texture` keeps (the oldest goes first).
const TEXTURES_KEPT: usize = 4;

/// How many im2col tables `Gpu::table` keeps (it starts afresh when full).
const TABLES_KEPT: usize = 64;

/// Buffers of dropped tensors, kept for later outputs of the same size. Bounded in bytes
/// (`POOL_BYTES`) and in count (`POOL_PER_SIZE` per size, `POOL_BUFFERS` in all), since every
/// buffer also costs the driver some memory of its own. Reuse is safe: a new output is written
/// by commands recorded after every use of the old tensor, on the same queue.
#[derive(Default)]
struct BufferPool {
    free: std::collections::HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
    count: usize,
}

/// At most this many bytes of idle buffers are kept for reuse.
const POOL_BYTES: u64 = 256 << 20;
/// At most this many idle buffers of one size.
const POOL_PER_SIZE: usize = 16;
/// At most this many idle buffers in all.
const POOL_BUFFERS: usize = 256;

impl BufferPool {
    fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&size)?.pop()?;
        self.bytes -= size;
        self.count -= 1;
        Some(b)
    }

    fn put(&mut self, b: wgpu::Buffer) {
        let same = self.free.entry(b.size()).or_default();
        if self.bytes + b.size() <= POOL_BYTES
            && same.len() < POOL_PER_SIZE
            && self.count < POOL_BUFFERS
        {
            self.bytes += b.size();
            self.count += 1;
            same.push(b);
        }
    }
}

/// The command encoder that ops record into, the compute pass left open in it for the next
/// op's dispatches, and how many ops it holds.
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Consecutive ops' dispatches share one compute pass: on lavapipe each pass costs about
    /// 34 µs of its own (a one-dispatch pass 50 µs, a dispatch in a shared pass 16 µs). wgpu
    /// orders the dispatches within it by their resource uses, as it does across passes.
    /// Ended before anything else is recorded in the encoder and before it is finished.
    pass: Option<wgpu::ComputePass<'static>>,
    ops: usize,
}

impl Pending {
    /// The encoder, with the open pass (if any) ended.
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("convpool"),
            })
        })
    }

    /// The open compute pass, begun if none is.
    fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(device)
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("convpool"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("just set")
    }

    /// The finished encoder, if anything was recorded.
    fn finish(&mut self) -> Option<wgpu::CommandBuffer> {
        self.pass = None;
        self.ops = 0;
        self.encoder.take().map(wgpu::CommandEncoder::finish)
    }
}

/// Ops recorded before the pending encoder is submitted even if nobody waits: keeps the device
/// busy during long chains and bounds what an unsubmitted encoder holds on to.
const FLUSH_EVERY: usize = 32;

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("id", &self.inner.id)
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish()
    }
}

/// One dispatch of a launch: a kernel, its params (a `#[repr(C)]` Pod struct as bytes), its
/// storage buffers in binding order, and how many workgroups it needs.
pub(crate) struct Pass<'a> {
    pub kernel: Kernel,
    /// The window size compiled into the pipeline (see `PipelineCache::get`); `[0, 0]`: none.
    pub window: [u32; 2],
    pub params: Vec<u8>,
    pub buffers: Vec<&'a wgpu::Buffer>,
    pub workgroups: u64,
    /// Where the kernel's `Binding::Uniform` window starts in its buffer.
    pub uniform_offset: u64,
    /// The kernel's `Binding::Texture` or `Binding::StorageTexture`.
    pub texture: Option<&'a wgpu::TextureView>,
}

impl<'a> Pass<'a> {
    /// A pass of `threads` invocations, one per element (workgroups of [`WORKGROUP`]).
    pub fn new<P: bytemuck::Pod>(
        kernel: Kernel,
        params: &P,
        buffers: Vec<&'a wgpu::Buffer>,
        threads: usize,
    ) -> Self {
        let groups = (threads as u64).div_ceil(WORKGROUP as u64);
        Self::tiled(kernel, params, buffers, groups)
    }

    /// A pass of `workgroups` workgroups, for kernels that work tile by tile.
    pub fn tiled<P: bytemuck::Pod>(
        kernel: Kernel,
        params: &P,
        buffers: Vec<&'a wgpu::Buffer>,
        workgroups: u64,
    ) -> Self {
        Pass {
            kernel,
            window: [0, 0],
            params: bytemuck::bytes_of(params).to_vec(),
            buffers,
            workgroups,
            uniform_offset: 0,
            texture: None,
        }
    }
}

/// Picks the adapter: `WGPU_ADAPTER_NAME` (case-insensitive substring) if set, else the default
/// adapter for `WGPU_POWER_PREF`; backends follow `WGPU_BACKEND`.
fn pick_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| {
                a.get_info()
                    .name
                    .to_lowercase()
                    .contains(&name.to_lowercase())
            })
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    "WGPU_ADAPTER_NAME={name:?} matches none of {names:?}"
                ))
            });
    }
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::from_env().unwrap_or_default(),
        ..Default::default()
    }))
    .map_err(|e| Error::NoAdapter(format!("wgpu found none ({e})")))
}

impl Gpu {
    /// Opens the default adapter headless. Honours `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
    /// `WGPU_POWER_PREF`, and asks for the adapter's own limits (not WebGPU's defaults), so any
    /// size the hardware allows can be used.
    pub fn new() -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pick_adapter(&instance)?;
        let info = adapter.get_info();
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("convpool"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| Error::NoAdapter(format!("{} refused a device: {e}", info.name)))?;
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        // Any loss, including an explicit `device().destroy()`, makes every later call an Err.
        device.set_device_lost_callback(move |reason, msg| {
            *lost_cb.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{reason:?}: {msg}"));
        });
        // Every call runs inside error scopes; anything that escapes them is recorded, not a panic.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            eprintln!("convpool: uncaptured wgpu error: {e}");
        }));
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("convpool dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let fold_limit = device.limits().max_compute_workgroups_per_dimension;
        let subgroup_gemm =
            device.features().contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8;
        let binding_limit = device
            .limits()
            .max_storage_buffer_binding_size
            .min(device.limits().max_buffer_size);
        Ok(Gpu {
            inner: Arc::new(Inner {
                id: NEXT_GPU_ID.fetch_add(1, Ordering::Relaxed),
                limits: device.limits(),
                device,
                queue,
                info,
                cache: PipelineCache::default(),
                lost,
                dummy,
                fold_limit: std::sync::atomic::AtomicU32::new(fold_limit),
                uniform_vec4s: std::sync::atomic::AtomicU32::new(
                    (kernels::UNIFORM_WINDOW / 16) as u32,
                ),
                profiler: Default::default(),
                pending: Default::default(),
                pool: Default::default(),
                binding_limit: std::sync::atomic::AtomicU64::new(binding_limit),
                subgroup_gemm,
                tables: Default::default(),
                packed: Default::default(),
                textures: Default::default(),
            }),
        })
    }

    /// The adapter this `Gpu` runs on (name, backend, device type, driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The device limits in force (the adapter's own).
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

    /// Records into the pending command encoder (inside error scopes naming `op`); submits it
    /// once `FLUSH_EVERY` ops are pending. Recording never waits for the device.
    pub(crate) fn record(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        self.record_with(op, |p, d| f(p.encoder(d)))
    }

    /// Records dispatches into the pending encoder's shared compute pass (see [`Pending`]),
    /// like [`Gpu::record`]. A validation error of a dispatch surfaces when the pass ends, in
    /// the call that ends it: such errors are internal ones (ops check their inputs first).
    pub(crate) fn record_dispatches(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut wgpu::ComputePass<'static>),
    ) -> Result<()> {
        self.record_with(op, |p, d| f(p.pass(d)))
    }

    fn record_with(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Pending, &wgpu::Device),
    ) -> Result<()> {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.scoped(op, || {
            f(&mut pending, &self.inner.device);
            pending.ops += 1;
            if pending.ops >= FLUSH_EVERY {
                if let Some(commands) = pending.finish() {
                    self.inner.queue.submit([commands]);
                }
            }
        })
    }

    /// Submits everything recorded so far, without waiting for it.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.scoped("flush", || {
            if let Some(commands) = pending.finish() {
                self.inner.queue.submit([commands]);
            }
        })
    }

    /// Submits everything recorded so far and waits until the device has finished it.
    pub fn synchronize(&self) -> Result<()> {
        self.flush()?;
        self.check_lost("synchronize")?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu {
                op: "synchronize",
                msg: e.to_string(),
            })
    }

    /// `table` on the device, uploaded once and kept (up to [`TABLES_KEPT`] of them): a chain
    /// of convolutions of one shape then records no upload per call.
    pub(crate) fn table(&self, table: &Tensor<u32>) -> Result<Arc<GpuTensor<u32>>> {
        let mut tables = self.inner.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.get(table.data()) {
            return Ok(t.clone());
        }
        if tables.len() >= TABLES_KEPT {
            tables.clear();
        }
        let t = Arc::new(self.upload(table)?);
        tables.insert(table.data().to_vec(), t.clone());
        Ok(t)
    }

    /// An rgba32float 2-D array texture of `size` to stage a kernel's input in: a kept one of
    /// that size (work on one queue runs in order, so each use sees its own contents), or a
    /// new one. `None` when the device's texture limits do not allow the size.
    pub(crate) fn x_texture(
        &self,
        op: &'static str,
        size: wgpu::Extent3d,
    ) -> Result<Option<Arc<XTexture>>> {
        let l = &self.inner.limits;
        if size.width > l.max_texture_dimension_2d
            || size.height > l.max_texture_dimension_2d
            || size.depth_or_array_layers > l.max_texture_array_layers
        {
            return Ok(None);
        }
        let mut kept = self
            .inner
            .textures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = kept.iter().find(|t| t.size == size) {
            return Ok(Some(t.clone()));
        }
        let texture = self.scoped(op, || {
            self.inner.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("convpool input texture"),
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: kernels::X_TEXTURE_FORMAT,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
                view_formats: &[],
            })
        })?;
        let view = texture.create_view(&wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2Array),
            ..Default::default()
        });
        let t = Arc::new(XTexture {
            size,
            _texture: texture,
            view,
        });
        if kept.len() >= TEXTURES_KEPT {
            kept.remove(0);
        }
        kept.push(t.clone());
        Ok(Some(t))
    }

    /// Copies a host tensor to the device.
    pub fn upload<T: Element>(&self, t: &Tensor<T>) -> Result<GpuTensor<T>> {
        let op = "upload";
        let bytes = self.buffer_bytes::<T>(op, "tensor", t.len())?;
        let mut contents = bytemuck::cast_slice::<T, u8>(t.data()).to_vec();
        contents.resize(bytes as usize, 0);
        let buffer = self.scoped(op, || {
            self.inner
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("convpool tensor"),
                    contents: &contents,
                    usage: tensor_usage(),
                })
        })?;
        let mut out = GpuTensor::from_parts(self, buffer, t.shape().to_vec());
        out.bound = T::bound(t.data());
        Ok(out)
    }

    fn check_lost(&self, op: &'static str) -> Result<()> {
        match &*self.inner.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(msg) => Err(Error::DeviceLost {
                op,
                msg: msg.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes: any wgpu error it
    /// raises becomes an `Err` naming `op` instead of a panic.
    fn scoped<R>(&self, op: &'static str, f: impl FnOnce() -> R) -> Result<R> {
        self.check_lost(op)?;
        let d = &self.inner.device;
        let internal = d.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = d.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let errors = [
            pollster::block_on(validation.pop()),
            pollster::block_on(oom.pop()),
            pollster::block_on(internal.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(Error::Gpu {
                op,
                msg: e.to_string(),
            });
        }
        self.check_lost(op)?;
        Ok(r)
    }

    /// Size in bytes of a storage buffer for `len` elements of `T` (at least 4), or `Err` when it
    /// exceeds what one buffer may hold on this device (ops split tensors larger than one
    /// binding, see chunk.rs).
    fn buffer_bytes<T: Element>(
        &self,
        op: &'static str,
        what: &'static str,
        len: usize,
    ) -> Result<u64> {
        let bytes = (len as u128 * std::mem::size_of::<T>() as u128).max(4);
        let l = &self.inner.limits;
        let limit = l.max_buffer_size;
        if bytes > limit as u128 {
            return Err(Error::TooLarge {
                op,
                what,
                bytes: bytes.min(u64::MAX as u128) as u64,
                limit,
            });
        }
        Ok(bytes as u64)
    }

    /// A device tensor of `shape` for the output of `op`: a recycled buffer of the same size if
    /// one is idle, else a new one. Its contents are unspecified: kernels write every element
    /// or clear it first.
    pub(crate) fn alloc<T: Element>(
        &self,
        op: &'static str,
        shape: &[usize],
    ) -> Result<GpuTensor<T>> {
        let len = numel(op, shape)?;
        let bytes = self.buffer_bytes::<T>(op, "output", len)?;
        let recycled = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(bytes);
        if let Some(buffer) = recycled {
            return Ok(GpuTensor::from_parts(self, buffer, shape.to_vec()));
        }
        let buffer = self.scoped(op, || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(op),
                size: bytes,
                usage: tensor_usage(),
                mapped_at_creation: false,
            })
        })?;
        Ok(GpuTensor::from_parts(self, buffer, shape.to_vec()))
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

    pub(crate) fn dummy(&self) -> &wgpu::Buffer {
        &self.inner.dummy
    }

    /// The dispatch grid for `groups` workgroups, folded into two or three dimensions when one
    /// would exceed the per-dimension limit (the shaders rebuild the linear index).
    fn grid(&self, op: &'static str, groups: u64) -> Result<(u32, u32, u32)> {
        let max = self.inner.fold_limit.load(Ordering::Relaxed) as u64;
        let x = groups.min(max);
        let rest = groups.div_ceil(x.max(1));
        let y = rest.min(max);
        let z = rest.div_ceil(y.max(1));
        if z > max {
            return Err(Error::invalid(
                op,
                format!("{groups} workgroups are more than {max}³"),
            ));
        }
        Ok((x as u32, y as u32, z as u32))
    }

    /// Records and submits the passes, in order, in one compute pass. `clear` buffers are
    /// zeroed first. Returns without waiting for the device.
    pub(crate) fn launch(
        &self,
        op: &'static str,
        clear: &[&wgpu::Buffer],
        passes: &[Pass<'_>],
    ) -> Result<()> {
        let align = self.inner.limits.min_uniform_buffer_offset_alignment as usize;
        let mut uniforms = Vec::new();
        let mut offsets = Vec::new();
        let mut grids = Vec::new();
        for p in passes {
            // The shaders index invocations with u32.
            if p.workgroups * WORKGROUP as u64 > u32::MAX as u64 {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{} workgroups of {WORKGROUP} exceed 2^32 invocations",
                        p.workgroups
                    ),
                ));
            }
            let (mut buffers, mut textures) = (0, 0);
            for b in p.kernel.bindings() {
                match b {
                    kernels::Binding::Texture(_) | kernels::Binding::StorageTexture(_) => {
                        textures += 1
                    }
                    _ => buffers += 1,
                }
            }
            if buffers != p.buffers.len() || (textures > 0) != p.texture.is_some() {
                return Err(Error::Gpu {
                    op,
                    msg: format!("internal: {:?} given the wrong resources", p.kernel),
                });
            }
            grids.push(self.grid(op, p.workgroups)?);
            uniforms.resize(uniforms.len().next_multiple_of(align), 0);
            offsets.push(uniforms.len() as u64);
            uniforms.extend_from_slice(&p.params);
        }
        let d = &self.inner.device;
        let params = || {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("convpool params"),
                contents: if uniforms.is_empty() {
                    &[0; 16]
                } else {
                    &uniforms
                },
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        let timer = self.inner.profiler.timer(d);
        if clear.is_empty() && timer.is_none() {
            // Into the pass left open by the previous op (see `Pending`).
            return self.record_dispatches(op, |cpass| {
                self.dispatch(op, cpass, passes, &params(), &offsets, &grids)
            });
        }
        self.record(op, |encoder| {
            let params = params();
            for b in clear {
                encoder.clear_buffer(b, 0, None);
            }
            {
                let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(op),
                    timestamp_writes: timer.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
                        query_set: &t.query,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }),
                });
                self.dispatch(op, &mut cpass, passes, &params, &offsets, &grids);
            }
            if let Some(t) = timer {
                self.inner.profiler.finish(encoder, t);
            }
        })
    }

    /// Records `passes` into `cpass`: pipeline, bind group (params at `offsets` in `params`,
    /// resources checked by `launch`) and dispatch of `grids` workgroups each.
    fn dispatch(
        &self,
        op: &'static str,
        cpass: &mut wgpu::ComputePass<'_>,
        passes: &[Pass<'_>],
        params: &wgpu::Buffer,
        offsets: &[u64],
        grids: &[(u32, u32, u32)],
    ) {
        let d = &self.inner.device;
        for ((p, &offset), &(x, y, z)) in passes.iter().zip(offsets).zip(grids) {
            if p.workgroups == 0 {
                continue;
            }
            let pipe = self.inner.cache.get(d, p.kernel, p.window);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: params,
                    offset,
                    size: std::num::NonZeroU64::new(p.params.len() as u64),
                }),
            }];
            let mut buffers = p.buffers.iter();
            for slot in p.kernel.bindings() {
                use kernels::Binding::*;
                // Counted against the bindings in `launch`.
                let resource = match (slot, p.texture) {
                    (Texture(_) | StorageTexture(_), Some(view)) => {
                        wgpu::BindingResource::TextureView(view)
                    }
                    (Uniform(_), _) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buffers.next().expect("checked"),
                        offset: p.uniform_offset,
                        size: std::num::NonZeroU64::new(kernels::UNIFORM_WINDOW),
                    }),
                    _ => buffers.next().expect("checked").as_entire_binding(),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: slot.index(),
                    resource,
                });
            }
            let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(op),
                layout: &pipe.layout,
                entries: &entries,
            });
            cpass.set_pipeline(&pipe.pipeline);
            cpass.set_bind_group(0, &bind, &[]);
            cpass.dispatch_workgroups(x, y, z);
        }
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

/// Every device buffer's usage: storage, copies, and uniform windows (the row-segment GEMM's
/// packed weights; one kind for all keeps the recycling pool simple).
fn tensor_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE
        | wgpu::BufferUsages::UNIFORM
        | wgpu::BufferUsages::COPY_SRC
        | wgpu::BufferUsages::COPY_DST
}
