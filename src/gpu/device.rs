//! Opening a `Gpu`: on a device the application made (`Gpu::from_wgpu`), or on an adapter
//! convpool picks and opens itself (`Gpu::new`, `Gpu::builder`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::kernels::{self, PipelineCache};
use super::tune;
use super::{Gpu, Inner, NEXT_GPU_ID};
use crate::error::{Error, Result};

/// Which of convpool's two kernel families [`ConvAlgo::Auto`](super::ConvAlgo::Auto) (and the
/// weight gradient's automatic choice) pick from. Results agree across families within float
/// rounding; within one family every choice is a pure function of the shape and the device.
///
/// The family follows the adapter's device type: `Cpu` for [`wgpu::DeviceType::Cpu`]
/// (lavapipe, SwiftShader, WARP), `Gpu` for discrete, integrated, virtual and unknown
/// adapters. `CONVPOOL_KERNELS=cpu` or `=gpu` forces one on any adapter (so the GPU family is
/// tested on lavapipe too), and [`GpuBuilder::kernels`] overrides both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelFamily {
    /// Tuned on lavapipe, where a workgroup is a loop over SIMD lanes on a CPU core: 8-lane
    /// subgroup GEMMs with no workgroup memory or barriers, input staged in textures.
    Cpu,
    /// Sized for 32- and 64-lane hardware: workgroup-memory GEMMs of 64 and 256 invocations
    /// with 4×4 register tiles and coalesced loads, no assumption on the subgroup size.
    Gpu,
}

impl KernelFamily {
    /// The family for an adapter: `CONVPOOL_KERNELS` if set (`cpu` or `gpu`, any case; another
    /// value is an `Err`), else by its device type.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Result<KernelFamily> {
        let forced = std::env::var("CONVPOOL_KERNELS").ok();
        KernelFamily::choose(info.device_type, forced.as_deref())
    }

    /// The family for a device type, or as `forced` says (`CONVPOOL_KERNELS`' value).
    fn choose(device: wgpu::DeviceType, forced: Option<&str>) -> Result<KernelFamily> {
        match forced.map(str::to_lowercase).as_deref() {
            Some("cpu") => Ok(KernelFamily::Cpu),
            Some("gpu") => Ok(KernelFamily::Gpu),
            Some(_) => Err(Error::invalid(
                "Gpu::new",
                format!(
                    "CONVPOOL_KERNELS={:?} is not a kernel family: the valid values are \"cpu\" \
                     and \"gpu\" (any case), or leave it unset to choose by device type",
                    forced.unwrap_or_default()
                ),
            )),
            None if device == wgpu::DeviceType::Cpu => Ok(KernelFamily::Cpu),
            None => Ok(KernelFamily::Gpu),
        }
    }
}

/// How [`Gpu::builder`] picks and opens an adapter. Every option left unset falls back to its
/// environment variable, then to wgpu's default:
///
/// | option | environment variable | default |
/// |---|---|---|
/// | [`adapter_name`](GpuBuilder::adapter_name) | `WGPU_ADAPTER_NAME` | the default adapter |
/// | [`backends`](GpuBuilder::backends) | `WGPU_BACKEND` (`vulkan`, `metal`, `dx12`) | all compiled in |
/// | [`power_preference`](GpuBuilder::power_preference) | `WGPU_POWER_PREF` (`low`, `high`) | wgpu's default |
/// | [`kernels`](GpuBuilder::kernels) | `CONVPOOL_KERNELS` (`cpu`, `gpu`) | by device type ([`KernelFamily`]) |
/// | [`autotune`](GpuBuilder::autotune) | `CONVPOOL_AUTOTUNE` (`1`) | off |
/// | [`tune_cache`](GpuBuilder::tune_cache) | `CONVPOOL_TUNE_CACHE` (a file) | `$XDG_CACHE_HOME/convpool/tune.json` or `~/.cache/convpool/tune.json` |
///
/// ```no_run
/// # fn main() -> convpool::Result<()> {
/// let gpu = convpool::Gpu::builder()
///     .adapter_name("nvidia")
///     .backends(convpool::wgpu::Backends::VULKAN)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GpuBuilder {
    adapter_name: Option<String>,
    backends: Option<wgpu::Backends>,
    power_preference: Option<wgpu::PowerPreference>,
    kernels: Option<KernelFamily>,
    autotune: Option<bool>,
    tune_cache: Option<std::path::PathBuf>,
}

impl GpuBuilder {
    /// Turns the autotuner on or off. On, the first `Auto` convolution of each new shape key
    /// times every candidate kernel on its real inputs (that call waits), pins the winner
    /// for the life of the `Gpu` and persists it to the tuning cache; a later process with
    /// the same cache times nothing and makes the same choices, so its results are bitwise
    /// those of the first. Off (the default), every choice is a pure function of the shape
    /// and the device.
    pub fn autotune(mut self, on: bool) -> Self {
        self.autotune = Some(on);
        self
    }

    /// The autotuner's cache file (JSON; created with its directory when first written).
    pub fn tune_cache(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tune_cache = Some(path.into());
        self
    }

    fn tuner(&self) -> tune::Tuner {
        let on = self.autotune.unwrap_or_else(tune::autotune_from_env);
        let path = self.tune_cache.clone().unwrap_or_else(tune::cache_from_env);
        tune::Tuner::new(on.then_some(path))
    }

    /// Chooses from this kernel family whatever the adapter (see [`KernelFamily`]).
    pub fn kernels(mut self, family: KernelFamily) -> Self {
        self.kernels = Some(family);
        self
    }

    /// Takes the first adapter whose name contains `name` (case-insensitive); none matching
    /// is an `Err` that lists the adapters found.
    pub fn adapter_name(mut self, name: impl Into<String>) -> Self {
        self.adapter_name = Some(name.into());
        self
    }

    /// Looks for adapters on these backends only.
    pub fn backends(mut self, backends: wgpu::Backends) -> Self {
        self.backends = Some(backends);
        self
    }

    /// Prefers a low-power or a high-performance adapter (ignored when an adapter name is
    /// given).
    pub fn power_preference(mut self, preference: wgpu::PowerPreference) -> Self {
        self.power_preference = Some(preference);
        self
    }

    /// The adapters these options can see (name, backend, device type, driver), in wgpu's
    /// order.
    pub fn adapters(&self) -> Vec<wgpu::AdapterInfo> {
        let instance = self.instance();
        let adapters = pollster::block_on(instance.enumerate_adapters(self.backends_in_force()));
        adapters.iter().map(|a| a.get_info()).collect()
    }

    /// Opens the chosen adapter headless, with the adapter's own limits (not WebGPU's
    /// defaults, so any size the hardware allows can be used) and its timestamp-query and
    /// subgroup features where it has them.
    pub fn build(self) -> Result<Gpu> {
        let instance = self.instance();
        let adapter = self.pick(&instance)?;
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
        self.open(adapter, device, queue, true)
    }

    /// convpool on a device the application made, with this builder's kernel family and
    /// autotuner options (the adapter options do not apply: the device is given). See
    /// [`Gpu::from_wgpu`], which is `Gpu::builder().from_wgpu(…)`.
    ///
    /// `Err` if `adapter` is not the one `device` was opened on (their [`wgpu::AdapterInfo`]
    /// differ): kernels are chosen by the device's own adapter info and features.
    pub fn from_wgpu(
        self,
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Gpu> {
        let (given, own) = (adapter.get_info(), device.adapter_info());
        if given != own {
            return Err(Error::invalid(
                "Gpu::from_wgpu",
                format!(
                    "the adapter {:?} ({:?}) is not the one the device was opened on, {:?} ({:?})",
                    given.name, given.backend, own.name, own.backend
                ),
            ));
        }
        self.open(adapter, device, queue, false)
    }

    /// The `Gpu` on `device` with this builder's kernel family (else the environment's, else
    /// by the device's type) and autotuner; `own`: see [`Gpu::open`].
    fn open(
        &self,
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        own: bool,
    ) -> Result<Gpu> {
        let family = match self.kernels {
            Some(f) => f,
            None => KernelFamily::for_adapter(&device.adapter_info())?,
        };
        Ok(Gpu::open(
            adapter,
            device,
            queue,
            (own, family, self.tuner()),
        ))
    }

    fn backends_in_force(&self) -> wgpu::Backends {
        self.backends
            .or_else(wgpu::Backends::from_env)
            .unwrap_or(wgpu::Backends::all())
    }

    fn instance(&self) -> wgpu::Instance {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = self.backends_in_force();
        wgpu::Instance::new(desc)
    }

    fn pick(&self, instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
        let name = self
            .adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        if let Some(name) = name {
            let adapters =
                pollster::block_on(instance.enumerate_adapters(self.backends_in_force()));
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            let wanted = name.to_lowercase();
            return adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
                .ok_or_else(|| {
                    Error::NoAdapter(format!("adapter name {name:?} matches none of {names:?}"))
                });
        }
        let power_preference = self
            .power_preference
            .or_else(wgpu::PowerPreference::from_env)
            .unwrap_or_default();
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference,
            ..Default::default()
        }))
        .map_err(|e| Error::NoAdapter(format!("wgpu found none ({e})")))
    }
}

impl Gpu {
    /// Opens the default adapter headless: `Gpu::builder().build()`, so `WGPU_BACKEND`,
    /// `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF` choose it (see [`GpuBuilder`]).
    pub fn new() -> Result<Gpu> {
        Gpu::builder().build()
    }

    /// Options for picking and opening an adapter in code, with the environment variables as
    /// the defaults.
    pub fn builder() -> GpuBuilder {
        GpuBuilder::default()
    }

    /// convpool on a device the application made, with whatever features and limits it was
    /// created with. Kernels are chosen accordingly: without `Features::SUBGROUP` the
    /// subgroup kernels never run; without `TIMESTAMP_QUERY` [`Gpu::profile`] gives no GPU
    /// time (`None`); WebGPU's default limits work for every op (tensors over one storage binding
    /// run in chunks).
    ///
    /// convpool installs no callback on an application's device (its device-lost callback
    /// and uncaptured-error handler stay the application's): every call still runs inside
    /// error scopes, so wgpu errors come back as [`Error::Gpu`], but a lost device shows as
    /// such an error rather than as [`Error::DeviceLost`].
    ///
    /// The application may submit its own work on `queue` at any time; convpool's recorded
    /// work reaches the queue at [`Gpu::flush`] (and at `synchronize`, `download`, and every
    /// 32 ops), so call `flush` before submitting work that must follow convpool's ops.
    ///
    /// The kernel family follows `CONVPOOL_KERNELS` and the device's type
    /// ([`KernelFamily::for_adapter`]); the autotuner `CONVPOOL_AUTOTUNE` and
    /// `CONVPOOL_TUNE_CACHE` (see [`GpuBuilder::autotune`]). To set them in code, use
    /// [`GpuBuilder::from_wgpu`]: `Gpu::builder().kernels(…).autotune(…).from_wgpu(…)`.
    ///
    /// `Err` if `adapter` is not the one `device` was opened on.
    pub fn from_wgpu(
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Gpu> {
        Gpu::builder().from_wgpu(adapter, device, queue)
    }

    /// The `Gpu` on `device`; `own`: convpool made the device, so it installs the
    /// device-lost callback (every later call then returns `Error::DeviceLost`) and an
    /// uncaptured-error handler that prints instead of panicking.
    fn open(
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        (own, family, tuner): (bool, KernelFamily, tune::Tuner),
    ) -> Gpu {
        // The device's own adapter info: its subgroup sizes are the ones its pipelines run with.
        let info = device.adapter_info();
        let lost = Arc::new(Mutex::new(None));
        if own {
            let lost_cb = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                *lost_cb.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("{reason:?}: {msg}"));
            });
            device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
                eprintln!("convpool: uncaptured wgpu error: {e}");
            }));
        }
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("convpool dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let limits = device.limits();
        let subgroup_gemm =
            device.features().contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8;
        let binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let uniform_vec4s = (kernels::UNIFORM_WINDOW / 16) as u32;
        Gpu {
            inner: Arc::new(Inner {
                id: NEXT_GPU_ID.fetch_add(1, Ordering::Relaxed),
                fold_limit: AtomicU32::new(limits.max_compute_workgroups_per_dimension),
                limits,
                adapter,
                device,
                queue,
                info,
                cache: PipelineCache::default(),
                lost,
                dummy,
                probe: Default::default(),
                coverage: Default::default(),
                uniform_vec4s: AtomicU32::new(uniform_vec4s),
                profiler: Default::default(),
                pending: Default::default(),
                pool: Default::default(),
                binding_limit: AtomicU64::new(binding_limit),
                subgroup_gemm,
                family,
                tuner,
                tables: Default::default(),
                packed: Default::default(),
                textures: Default::default(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KernelFamily;
    use wgpu::DeviceType;

    #[test]
    fn the_family_follows_the_device_type_unless_forced() {
        let choose = |d, f| KernelFamily::choose(d, f).unwrap();
        assert_eq!(choose(DeviceType::Cpu, None), KernelFamily::Cpu);
        for d in [
            DeviceType::DiscreteGpu,
            DeviceType::IntegratedGpu,
            DeviceType::VirtualGpu,
            DeviceType::Other,
        ] {
            assert_eq!(choose(d, None), KernelFamily::Gpu);
            assert_eq!(choose(d, Some("CPU")), KernelFamily::Cpu);
        }
        assert_eq!(choose(DeviceType::Cpu, Some("gpu")), KernelFamily::Gpu);
        let err = KernelFamily::choose(DeviceType::Cpu, Some("fast")).unwrap_err();
        assert!(
            err.to_string().contains("CONVPOOL_KERNELS=\"fast\""),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("the valid values are \"cpu\" and \"gpu\""),
            "{err}"
        );
    }
}
