//! The kernels: which shader file and entry point each one is, its bindings, and the cache of
//! compiled pipelines (each shader module and pipeline is built once per `Gpu`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Threads per workgroup of every kernel (the shaders say `@workgroup_size(64)`).
pub(crate) const WORKGROUP: u32 = 64;

/// The shader files, embedded at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Shader {
    Conv2d,
    ConvGemm,
    ConvGemmSg,
    ConvGemmWide8,
    ConvGemmWide16,
    ConvTranspose2d,
    Pool2d,
    PoolQuad,
    Unpool2d,
    UnpoolTiles,
    ConvBackward,
    ConvBackwardSg,
    Train,
}

impl Shader {
    /// Every shader, for the layout checks.
    #[cfg(test)]
    pub(super) const ALL: [Shader; 13] = [
        Shader::Conv2d,
        Shader::ConvGemm,
        Shader::ConvGemmSg,
        Shader::ConvGemmWide8,
        Shader::ConvGemmWide16,
        Shader::ConvTranspose2d,
        Shader::Pool2d,
        Shader::PoolQuad,
        Shader::Unpool2d,
        Shader::UnpoolTiles,
        Shader::ConvBackward,
        Shader::ConvBackwardSg,
        Shader::Train,
    ];

    pub(super) fn source(self) -> &'static str {
        match self {
            Shader::Conv2d => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv2d.wgsl")
            ),
            Shader::ConvGemm => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_gemm_common.wgsl"),
                include_str!("../../shaders/conv_gemm.wgsl")
            ),
            Shader::ConvGemmSg => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_gemm_common.wgsl"),
                include_str!("../../shaders/conv_gemm_sg.wgsl")
            ),
            Shader::ConvGemmWide8 => concat!(
                "const WG: u32 = 8u;\n",
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_gemm_common.wgsl"),
                include_str!("../../shaders/conv_gemm_wide.wgsl")
            ),
            Shader::ConvGemmWide16 => concat!(
                "const WG: u32 = 16u;\n",
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_gemm_common.wgsl"),
                include_str!("../../shaders/conv_gemm_wide.wgsl")
            ),
            Shader::ConvTranspose2d => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_transpose2d.wgsl")
            ),
            Shader::Pool2d => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/pool_common.wgsl"),
                include_str!("../../shaders/pool2d.wgsl")
            ),
            Shader::PoolQuad => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/pool_common.wgsl"),
                include_str!("../../shaders/pool_quad.wgsl")
            ),
            Shader::Unpool2d => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/pool_common.wgsl"),
                include_str!("../../shaders/unpool2d.wgsl")
            ),
            Shader::ConvBackward => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_backward_common.wgsl"),
                include_str!("../../shaders/conv_backward.wgsl")
            ),
            Shader::ConvBackwardSg => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/conv_backward_common.wgsl"),
                include_str!("../../shaders/conv_backward_sg.wgsl")
            ),
            Shader::Train => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/train.wgsl")
            ),
            Shader::UnpoolTiles => concat!(
                include_str!("../../shaders/common.wgsl"),
                include_str!("../../shaders/pool_common.wgsl"),
                include_str!("../../shaders/unpool_tiles.wgsl")
            ),
        }
    }
}

/// Every compute entry point convpool dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Conv2d,
    Conv2dRows,
    ConvGemm,
    ConvGemmSg,
    ConvGemmWide32,
    ConvGemmWide64,
    ConvGemmWide32V4,
    ConvGemmWide64V4,
    ConvGemmWideSum,
    ConvGemmSgRows,
    ConvPackRows,
    XToTexture,
    ConvTransposeInit,
    ConvTransposeTap,
    ActInPlace,
    MaxPool,
    AvgPool,
    MaxPoolQuad,
    AvgPoolQuad,
    StochasticPool,
    StochasticExpectation,
    CheckIndices,
    MaxUnpoolGather,
    MaxPoolBackwardGather,
    UnpoolScatterPlanes,
    BackwardScatterPlanes,
    ScatterOwned,
    UnpoolTiles,
    AvgUnpool,
    AvgPoolBackward,
    WeightGrad,
    WeightGradSg16,
    WeightGradSg32,
    SumParts,
    ChannelSums,
    ActForward,
    ActBackward,
    Add,
    Sgd,
    CrossEntropy,
    SquaredError,
    SumBlocks,
    UnpoolBackward,
}

impl Kernel {
    /// (shader, entry point, storage bindings). Binding 0 is always the uniform params; the
    /// launcher passes the storage buffers in the order listed here.
    fn spec(self) -> (Shader, &'static str, &'static [Binding]) {
        use Binding::{Read as R, StorageTexture as S, Texture as T, Uniform as U, Write as W};
        use Kernel::*;
        match self {
            Conv2d => (Shader::Conv2d, "conv2d", &[R(1), R(2), R(3), W(4)]),
            Conv2dRows => (Shader::Conv2d, "conv2d_rows", &[R(1), R(2), R(3), W(4)]),
            ConvGemm => (Shader::ConvGemm, "gemm", &[R(1), R(2), R(3), W(4), R(5)]),
            ConvGemmSg => (
                Shader::ConvGemmSg,
                "gemm_sg",
                &[R(1), R(2), R(3), W(4), R(5)],
            ),
            ConvGemmSgRows => (
                Shader::ConvGemmSg,
                "gemm_sg_rows",
                &[R(3), W(4), U(6), T(8)],
            ),
            ConvGemmWide32 => (
                Shader::ConvGemmWide8,
                "gemm_wide",
                &[R(1), R(2), R(3), W(4), R(5)],
            ),
            ConvGemmWide64 => (
                Shader::ConvGemmWide16,
                "gemm_wide",
                &[R(1), R(2), R(3), W(4), R(5)],
            ),
            ConvGemmWide32V4 => (
                Shader::ConvGemmWide8,
                "gemm_wide_v4",
                &[R(1), R(3), R(5), R(6), W(7)],
            ),
            ConvGemmWide64V4 => (
                Shader::ConvGemmWide16,
                "gemm_wide_v4",
                &[R(1), R(3), R(5), R(6), W(7)],
            ),
            ConvGemmWideSum => (
                Shader::ConvGemmWide8,
                "gemm_wide_sum",
                &[R(1), R(2), R(3), W(4), R(5)],
            ),
            XToTexture => (Shader::ConvGemmSg, "x_to_texture", &[R(1), S(9)]),
            ConvPackRows => (Shader::ConvGemmSg, "pack_rows", &[R(2), R(5), W(7)]),
            ConvTransposeInit => (Shader::ConvTranspose2d, "init_bias", &[R(3), W(4)]),
            ConvTransposeTap => (Shader::ConvTranspose2d, "scatter_tap", &[R(1), R(2), W(4)]),
            ActInPlace => (Shader::ConvTranspose2d, "act_in_place", &[W(4)]),
            MaxPool => (Shader::Pool2d, "max_pool", &[R(1), W(2), W(3)]),
            AvgPool => (Shader::Pool2d, "avg_pool", &[R(1), W(2)]),
            MaxPoolQuad => (Shader::PoolQuad, "max_pool_quad", &[R(1), W(2), W(3)]),
            AvgPoolQuad => (Shader::PoolQuad, "avg_pool_quad", &[R(1), W(2)]),
            StochasticPool => (Shader::Pool2d, "stochastic_pool", &[R(1), W(2), W(3)]),
            StochasticExpectation => (Shader::Pool2d, "stochastic_expectation", &[R(1), W(2)]),
            CheckIndices => (Shader::Unpool2d, "check_indices", &[R(2), W(4)]),
            MaxUnpoolGather => (Shader::Unpool2d, "max_unpool_gather", &[R(1), R(2), W(3)]),
            MaxPoolBackwardGather => (Shader::Unpool2d, "max_backward_gather", &[R(1), R(2), W(3)]),
            UnpoolScatterPlanes => (Shader::Unpool2d, "max_unpool_planes", &[R(1), R(2), W(3)]),
            BackwardScatterPlanes => (Shader::Unpool2d, "max_backward_planes", &[R(1), R(2), W(3)]),
            // The average gathers share `gather` with the max ones, so they bind (and ignore) indices.
            ScatterOwned => (Shader::Unpool2d, "scatter_owned", &[R(1), R(2), W(3)]),
            UnpoolTiles => (Shader::UnpoolTiles, "unpool_tiles", &[R(1), R(2), W(3)]),
            AvgUnpool => (Shader::Unpool2d, "avg_unpool", &[R(1), R(2), W(3)]),
            AvgPoolBackward => (Shader::Unpool2d, "avg_pool_backward", &[R(1), R(2), W(3)]),
            WeightGrad => (
                Shader::ConvBackward,
                "weight_grad",
                &[R(1), R(2), R(3), W(4)],
            ),
            WeightGradSg16 => (
                Shader::ConvBackwardSg,
                "weight_grad_sg16",
                &[R(1), R(2), R(3), W(4)],
            ),
            WeightGradSg32 => (
                Shader::ConvBackwardSg,
                "weight_grad_sg32",
                &[R(1), R(2), R(3), W(4)],
            ),
            SumParts => (Shader::ConvBackward, "sum_parts", &[R(5), W(4)]),
            ChannelSums => (Shader::ConvBackward, "channel_sums", &[R(1), W(4)]),
            ActForward => (Shader::Train, "act_forward", &[R(1), W(4)]),
            ActBackward => (Shader::Train, "act_backward", &[R(1), R(2), W(4)]),
            Add => (Shader::Train, "add", &[R(1), R(2), W(4)]),
            Sgd => (Shader::Train, "sgd", &[R(1), R(2), R(3), W(4), W(5)]),
            CrossEntropy => (Shader::Train, "cross_entropy", &[R(1), R(6), W(4), W(5)]),
            SquaredError => (Shader::Train, "squared_error", &[R(1), R(2), W(4), W(5)]),
            SumBlocks => (Shader::Train, "sum_blocks", &[R(1), W(4)]),
            UnpoolBackward => (Shader::Train, "unpool_backward", &[R(1), R(6), W(4)]),
        }
    }

    /// Whether the kernel loops over a pooling window (`win_h()`/`win_w()` in the shaders), so a
    /// pipeline with the window size compiled in pays (see [`PipelineCache::get`]).
    pub(crate) fn walks_windows(self) -> bool {
        use Kernel::*;
        matches!(
            self,
            MaxPool
                | AvgPool
                | StochasticPool
                | StochasticExpectation
                | MaxUnpoolGather
                | MaxPoolBackwardGather
                | AvgUnpool
                | AvgPoolBackward
                | UnpoolTiles
        )
    }

    /// The names of the two override constants a [`Pass::window`](super::Pass) sets when it
    /// is nonzero: the window size for kernels that walk windows, the taps per kernel row and
    /// the column step for the row-segment GEMM.
    fn overrides(self) -> [&'static str; 2] {
        match self {
            Kernel::ConvGemmSgRows | Kernel::ConvPackRows => ["TAPS_W", "STEP_SHIFT"],
            Kernel::Conv2dRows => ["TAPS_W", "STEP_W"],
            Kernel::ConvGemmWide32
            | Kernel::ConvGemmWide64
            | Kernel::ConvGemmWide32V4
            | Kernel::ConvGemmWide64V4 => ["FULL_TILES", "PAD_FREE"],
            Kernel::MaxPoolQuad | Kernel::AvgPoolQuad => ["WIN_H", "QUAD_W"],
            _ => ["WIN_H", "WIN_W"],
        }
    }

    /// The storage bindings, in the order the launcher passes buffers.
    pub(crate) fn bindings(self) -> &'static [Binding] {
        self.spec().2
    }
}

/// A binding of a kernel besides the params: its number and kind. `Read`, `Write`: a storage
/// buffer; `Uniform`: a read-only window of [`UNIFORM_WINDOW`] bytes of a buffer at the pass's
/// `uniform_offset`; `Texture`, `StorageTexture`: the pass's texture (an rgba32float 2-D
/// array), read by `textureLoad` or written by `textureStore`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Binding {
    Read(u32),
    Write(u32),
    Uniform(u32),
    Texture(u32),
    StorageTexture(u32),
}

/// Bytes of a `Binding::Uniform` window (the shaders declare `array<vec4<u32>, 4096>`): the
/// least `max_uniform_buffer_binding_size` WebGPU allows.
pub(crate) const UNIFORM_WINDOW: u64 = 65536;

/// The format of a `Binding::Texture` or `Binding::StorageTexture`: four f32 per texel.
pub(crate) const X_TEXTURE_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;

impl Binding {
    pub(crate) fn index(self) -> u32 {
        match self {
            Binding::Read(i)
            | Binding::Write(i)
            | Binding::Uniform(i)
            | Binding::Texture(i)
            | Binding::StorageTexture(i) => i,
        }
    }
}

/// A compiled kernel.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Shader modules and pipelines, built on first use and kept for the life of the `Gpu`.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<Shader, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

/// A kernel, the window size compiled into it (`[0, 0]`: none) and its activation kind
/// (`DYNAMIC_ACT`: from the params).
type PipelineKey = (Kernel, [u32; 2], u32);

/// A pass whose activation kind comes from its params at run time (`ACT_FIXED`'s default).
pub(crate) const DYNAMIC_ACT: u32 = 255;

/// The activation kind to compile into the pipeline of a pass whose params say `kind`: the
/// identity and ReLU (the plain and the usual fused convolution) get pipelines of their own;
/// the rarer kinds share the dynamic one, so that each kernel compiles at most three
/// pipelines for its activations (on lavapipe a GEMM pipeline takes about a second).
pub(crate) fn compiled_act(kind: u32) -> u32 {
    if kind <= 1 {
        kind
    } else {
        DYNAMIC_ACT
    }
}

/// Pooling windows up to this size per axis get pipelines with the size compiled in.
pub(crate) const MAX_COMPILED_WINDOW: usize = 8;

impl PipelineCache {
    /// The pipeline of `kernel`; with a nonzero `window` one with two sizes fixed through the
    /// shader's override constants ([`Kernel::overrides`]), so their loops unroll: the window
    /// size of kernels that [walk windows](Kernel::walks_windows) (each side at most
    /// [`MAX_COMPILED_WINDOW`]), the taps per
    /// kernel row and column step of the row-segment GEMM (at most 8 each). At most 64 such
    /// variants per kernel.
    ///
    /// With `act` other than [`DYNAMIC_ACT`], the pipeline has that activation kind compiled in
    /// (`ACT_FIXED` in shaders/common.wgsl): its stores skip the switch over kinds, which
    /// llvmpipe otherwise runs for every output (about 5% of the 7×7 stem's time). Launchers
    /// pass [`compiled_act`] of the kind in the pass's own params, so both always agree.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        window: [u32; 2],
        act: u32,
    ) -> Arc<Pipeline> {
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(kernel, window, act))
        {
            return p.clone();
        }
        let (shader, entry, bindings) = kernel.spec();
        let module = self
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(shader)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(entry),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                };
                // SAFETY: only the loop-bounding check is dropped; every other runtime check
                // (buffer bounds included) stays on. Dropping it requires that no loop of our
                // shaders runs forever: every loop in shaders/ counts up to or down from a
                // bound fixed before it starts, with a nonzero constant step. The check adds a
                // second counter to every loop, which keeps Mesa's NIR from unrolling any of
                // them: tap loops over compiled-in window sizes then index their register
                // arrays dynamically, which llvmpipe does through memory lane by lane
                // (docs/DESIGN.md).
                Arc::new(unsafe { device.create_shader_module_trusted(desc, runtime_checks()) })
            })
            .clone();
        // The least size each binding's array type needs, so that a buffer too small for it
        // is refused when its bind group is made (inside the launch's error scope, before
        // anything is recorded), not when the pass holding its dispatch ends.
        let least = least_binding_sizes(shader.source());
        let buffer = |ty, b: &Binding| wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: least
                .get(&b.index())
                .copied()
                .and_then(std::num::NonZeroU64::new),
        };
        let storage = |b: &Binding| wgpu::BindGroupLayoutEntry {
            binding: b.index(),
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match b {
                Binding::Read(_) => buffer(wgpu::BufferBindingType::Storage { read_only: true }, b),
                Binding::Write(_) => {
                    buffer(wgpu::BufferBindingType::Storage { read_only: false }, b)
                }
                Binding::Uniform(_) => buffer(wgpu::BufferBindingType::Uniform, b),
                Binding::Texture(_) => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                    multisampled: false,
                },
                Binding::StorageTexture(_) => wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: X_TEXTURE_FORMAT,
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                },
            },
            count: None,
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        entries.extend(bindings.iter().map(storage));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &entries,
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let mut constants: Vec<(&str, f64)> = if window == [0, 0] {
            Vec::new()
        } else {
            let [a, b] = kernel.overrides();
            vec![(a, window[0] as f64), (b, window[1] as f64)]
        };
        if act != DYNAMIC_ACT {
            constants.push(("ACT_FIXED", act as f64));
        }
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                ..Default::default()
            },
            cache: None,
        });
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((kernel, window, act), p.clone());
        p
    }
}

/// The bytes of one element of each storage binding of `source` declared as an array of
/// `vec4`s or `vec2`s (16 or 8): a binding of fewer bytes holds no element, and wgpu refuses
/// it at dispatch. Scalar arrays need 4 bytes, which every buffer has.
pub(crate) fn least_binding_sizes(source: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for line in source.lines() {
        let Some(rest) = line.trim_start().strip_prefix("@group(0) @binding(") else {
            continue;
        };
        let Some((index, decl)) = rest.split_once(')') else {
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            continue;
        };
        if !decl.contains("var<storage") {
            continue;
        }
        let Some((_, ty)) = decl.split_once(':') else {
            continue;
        };
        let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = if ty.starts_with("array<vec4<") {
            16
        } else if ty.starts_with("array<vec2<") {
            8
        } else {
            continue;
        };
        out.insert(index, bytes);
    }
    out
}

/// The checks our shader modules run with: all of wgpu's, less loop bounding (see
/// `PipelineCache::get`).
fn runtime_checks() -> wgpu::ShaderRuntimeChecks {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks
}

#[cfg(test)]
mod tests {
    use super::{least_binding_sizes, Shader};
    use std::collections::HashMap;

    /// The text scan agrees with naga's reading of every storage binding of every shader.
    #[test]
    fn least_binding_sizes_match_what_naga_reads() {
        for shader in Shader::ALL {
            let module = naga::front::wgsl::parse_str(shader.source()).unwrap();
            let mut want = HashMap::new();
            for (_, var) in module.global_variables.iter() {
                let (Some(b), naga::AddressSpace::Storage { .. }) = (&var.binding, var.space)
                else {
                    continue;
                };
                let naga::TypeInner::Array { base, .. } = module.types[var.ty].inner else {
                    continue;
                };
                if let naga::TypeInner::Vector { size, scalar } = module.types[base].inner {
                    want.insert(b.binding, size as u64 * scalar.width as u64);
                }
            }
            assert_eq!(least_binding_sizes(shader.source()), want, "{shader:?}");
        }
    }
}
