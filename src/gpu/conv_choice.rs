//! The choice of convolution kernel: `ConvAlgo` (what a caller may force) and how `Auto`
//! resolves by shape, device features and kernel family.

use super::device::KernelFamily;

/// Which GPU kernel runs a convolution. Every choice gives the same result up to float
/// rounding, runs every shape on every device, and is bitwise reproducible; `Auto` picks by
/// shape, by the device's features and by the `Gpu`'s [`KernelFamily`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConvAlgo {
    /// Pick by shape and device (a pure function of both; docs/DESIGN.md has the rules).
    /// With [`KernelFamily::Cpu`] (CPU-type adapters such as lavapipe): where the subgroup GEMM
    /// kernel runs, `Gemm` from 2 output channels per group; elsewhere `GemmTiled` for conv2d
    /// with at least 32 output channels per group and a reduction (`C_in/groups·kH·kW`) of at
    /// least 64, for conv_transpose2d with at least 16 and a per-phase reduction of at least
    /// 32; `Direct` otherwise. Within `Gemm`, the row-segment variant only from 65,536
    /// multiply-adds. With [`KernelFamily::Gpu`] (hardware GPUs): `Direct` for depthwise
    /// layers and for fewer than 8 output channels per group or a reduction under 8;
    /// otherwise `GemmWide64` where at least 64 output channels per group and 128 of its
    /// 64×64 tiles fill the device, else `GemmWide32`.
    #[default]
    Auto,
    /// conv2d: one invocation per output element; for depthwise layers (one input and one
    /// output channel per group) with column dilation 1 and a kernel wider than its stride,
    /// one per 8 adjacent outputs of a row, sharing each kernel row's input segment and
    /// weights. conv_transpose2d: a bias pass, then one scatter pass per kernel tap (each a
    /// one-to-one map, no atomics).
    Direct,
    /// Implicit GEMM. conv2d: one pass. conv_transpose2d: one pass per stride phase
    /// (`s_h·s_w` passes), each a dense stride-1 correlation writing its outputs once. Where
    /// the device has subgroups of at least 8 lanes, the kernel shares operands by subgroup
    /// shuffles (8×32 outputs per 8-lane workgroup, no workgroup memory, no barriers);
    /// elsewhere it is `GemmTiled`. Where a kernel row's
    /// taps read consecutive input columns (conv2d with column dilation 1 and a kernel 2 to 8
    /// wide, wider than its column stride; conv_transpose2d phases with 2 to 8 column taps one
    /// input column apart), a variant of the subgroup kernel takes all of a row's taps from one
    /// input row segment per lane, the input staged in a texture array and the weights packed
    /// into uniform windows (kept for later calls with the same weight tensor), unless the
    /// input has more images × channels than the device's texture array layers.
    Gemm,
    /// The implicit GEMM through workgroup memory: 32×32 outputs per 64-lane workgroup, 4×4 per
    /// invocation, operands staged 32 deep with vec4 loads. Runs on every device.
    GemmTiled,
    /// The implicit GEMM for hardware GPUs (shaders/conv_gemm_wide.wgsl): 32×32 outputs per
    /// workgroup of 8×8 = 64 invocations, 4×4 per invocation, operands staged 16 deep in
    /// workgroup memory with coalesced loads (consecutive invocations read consecutive weights
    /// and consecutive pixels); no subgroup operations. Shapes that divide the tile run
    /// without bounds checks, and convolutions whose windows stay inside the input without
    /// padding checks. Runs on every device.
    GemmWide32,
    /// As `GemmWide32` with 64×64 outputs per workgroup of 16×16 = 256 invocations: twice the
    /// reuse of each staged operand, for layers with enough tiles to fill the device.
    GemmWide64,
}

impl ConvAlgo {
    /// Every choice, `Auto` first: what tests run a convolution through to reach every kernel.
    /// A slice, so that a new kernel can join it without breaking callers (and `ConvAlgo` is
    /// `#[non_exhaustive]`: a `match` on it needs a wildcard arm):
    ///
    /// ```compile_fail
    /// fn name(a: convpool::ConvAlgo) -> &'static str {
    ///     use convpool::ConvAlgo::*;
    ///     match a {
    ///         Auto => "auto", Direct => "direct", Gemm => "gemm", GemmTiled => "tiled",
    ///         GemmWide32 => "wide32", GemmWide64 => "wide64",
    ///     }
    /// }
    /// ```
    pub const ALL: &'static [ConvAlgo] = &[
        ConvAlgo::Auto,
        ConvAlgo::Direct,
        ConvAlgo::Gemm,
        ConvAlgo::GemmTiled,
        ConvAlgo::GemmWide32,
        ConvAlgo::GemmWide64,
    ];

    /// True for the choices that run as an implicit GEMM.
    pub(super) fn is_gemm(self) -> bool {
        !matches!(self, ConvAlgo::Auto | ConvAlgo::Direct)
    }

    /// Resolves `Auto` for GEMMs `s` (for conv_transpose2d: one stride phase's); `subgroups`:
    /// the subgroup GEMM kernel runs here. The CPU family's thresholds were measured on
    /// lavapipe (benchmarks/HISTORY.md): the subgroup kernel beats the direct one from 2 output
    /// channels per group (a tie at 1, depthwise), the workgroup-memory kernel only from 32
    /// channels and a reduction of 64 (16 and 32 for conv_transpose2d, whose direct path takes
    /// a pass per tap). The GPU family's follow the tile shapes: a 64×64 tile pays where a
    /// layer has 64 channels and enough tiles for every compute unit.
    pub(super) fn resolve(self, s: GemmShape, subgroups: bool, family: KernelFamily) -> ConvAlgo {
        if self != ConvAlgo::Auto {
            return self;
        }
        let GemmShape {
            m,
            n,
            k,
            count,
            depthwise,
            transposed,
        } = s;
        match family {
            KernelFamily::Cpu => {
                let tiled_pays = if transposed {
                    m >= 16 && k >= 32
                } else {
                    m >= 32 && k >= 64
                };
                if subgroups && m >= 2 {
                    ConvAlgo::Gemm
                } else if !subgroups && tiled_pays {
                    ConvAlgo::GemmTiled
                } else {
                    ConvAlgo::Direct
                }
            }
            KernelFamily::Gpu => {
                let tiles64 = count * m.div_ceil(64) * n.div_ceil(64);
                if depthwise || m < 8 || k < 8 {
                    ConvAlgo::Direct
                } else if m >= 64 && tiles64 >= 128 {
                    ConvAlgo::GemmWide64
                } else {
                    ConvAlgo::GemmWide32
                }
            }
        }
    }
}

/// The GEMM a convolution (or one stride phase of a transposed one) amounts to, for the
/// choice of kernel: `m` output channels per group, `n` output pixels, a reduction of `k`,
/// `count` = images × groups of them; `depthwise`: one input and one output channel per
/// group.
#[derive(Debug, Clone, Copy)]
pub(super) struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub count: usize,
    pub depthwise: bool,
    pub transposed: bool,
}

#[cfg(test)]
mod choice_tests {
    use super::{ConvAlgo, GemmShape, KernelFamily};

    fn conv(m: usize, n: usize, k: usize, count: usize) -> GemmShape {
        GemmShape {
            m,
            n,
            k,
            count,
            depthwise: false,
            transposed: false,
        }
    }

    #[test]
    fn auto_picks_by_family_shape_and_features() {
        let auto = |s, sg, f| ConvAlgo::Auto.resolve(s, sg, f);
        let (w1, w2, w4) = (
            conv(64, 3136, 576, 1),
            conv(64, 3136, 576, 8),
            conv(256, 196, 2304, 1),
        );
        // The CPU family: the subgroup GEMM where it runs, else by size.
        assert_eq!(auto(w1, true, KernelFamily::Cpu), ConvAlgo::Gemm);
        assert_eq!(auto(w1, false, KernelFamily::Cpu), ConvAlgo::GemmTiled);
        assert_eq!(
            auto(conv(16, 3136, 27, 1), false, KernelFamily::Cpu),
            ConvAlgo::Direct
        );
        // The GPU family never takes the 8-lane subgroup kernel, whatever the device has.
        for sg in [true, false] {
            assert_eq!(auto(w1, sg, KernelFamily::Gpu), ConvAlgo::GemmWide32);
            assert_eq!(auto(w2, sg, KernelFamily::Gpu), ConvAlgo::GemmWide64);
            assert_eq!(auto(w4, sg, KernelFamily::Gpu), ConvAlgo::GemmWide32);
            let depthwise = GemmShape {
                depthwise: true,
                ..conv(1, 3136, 9, 128)
            };
            assert_eq!(auto(depthwise, sg, KernelFamily::Gpu), ConvAlgo::Direct);
            assert_eq!(
                auto(conv(4, 3136, 576, 8), sg, KernelFamily::Gpu),
                ConvAlgo::Direct
            );
        }
        // An explicit choice is kept.
        for &algo in ConvAlgo::ALL.iter().skip(1) {
            assert_eq!(algo.resolve(w1, true, KernelFamily::Gpu), algo);
        }
    }
}
