//! The wide GEMMs' host side (shaders/conv_gemm_wide.wgsl, the GPU kernel family): which
//! checks a pass may skip, when a layer splits its reduction, and the passes of one GEMM.

use std::sync::atomic::Ordering;

use super::conv_choice::ConvAlgo;
use super::conv_gemm::GemmParams;
use super::{Gpu, GpuTensor, Pass};
use crate::error::Result;
use crate::gpu::kernels::{self, Kernel};

/// A wide GEMM configuration: its square tile, and its kernels for any shape and for conv2d
/// on whole tiles (vec4 weights and outputs).
#[derive(Clone, Copy)]
pub(super) struct Wide {
    pub tile: u32,
    kernel: Kernel,
    v4: Kernel,
}

impl Wide {
    /// The configuration `algo` names, if it is a wide GEMM.
    pub(super) fn of(algo: ConvAlgo) -> Option<Wide> {
        match algo {
            ConvAlgo::GemmWide32 => Some(Wide {
                tile: 32,
                kernel: Kernel::ConvGemmWide32,
                v4: Kernel::ConvGemmWide32V4,
            }),
            ConvAlgo::GemmWide64 => Some(Wide {
                tile: 64,
                kernel: Kernel::ConvGemmWide64,
                v4: Kernel::ConvGemmWide64V4,
            }),
            _ => None,
        }
    }
}

/// The override constants of a wide GEMM pass with tile `tile` (shaders/conv_gemm_wide.wgsl):
/// `FULL_TILES` where m, n and k are whole tiles (k: 16 deep), `PAD_FREE` for a conv2d whose
/// windows all stay inside the input.
pub(super) fn wide_constants(p: &GemmParams, tile: [u32; 2]) -> [u32; 2] {
    let full = p.m.is_multiple_of(tile[0]) && p.n.is_multiple_of(tile[1]) && p.k.is_multiple_of(16);
    let inside = |out: u32, s: u32, k: u32, d: u32, n: u32| {
        out == 0 || ((out as u64 - 1) * s as u64 + (k as u64 - 1) * d as u64) < (n as u64)
    };
    let pad_free = p.mode == 0
        && p.p_h == 0
        && p.p_w == 0
        && inside(p.out_h, p.s_h, p.k_h, p.d_h, p.in_h)
        && inside(p.out_w, p.s_w, p.k_w, p.d_w, p.in_w);
    [full as u32, pad_free as u32]
}

/// Output tiles from which a wide GEMM fills a large GPU without splitting K.
const WIDE_TILES: u32 = 256;

/// K per part of a wide GEMM of `tiles` output tiles and a reduction of `k`, where splitting
/// pays: enough parts to bring the workgroups near [`WIDE_TILES`], at most 8, each at least
/// 256 deep, a multiple of 16; `None` for one part. A function of the shape alone.
fn wide_k_part(tiles: u32, k: u32) -> Option<u32> {
    let parts = (WIDE_TILES / tiles.max(1)).min(k / 256).min(8);
    if parts < 2 {
        return None;
    }
    let k_part = k.div_ceil(parts).next_multiple_of(16);
    (k.div_ceil(k_part) > 1).then_some(k_part)
}

impl Gpu {
    /// The split over K of a wide GEMM `p` with few output tiles: its partials tensor and K
    /// per part, or `None` (another kernel, enough tiles, or partials over one binding).
    pub(super) fn wide_split(
        &self,
        op: &'static str,
        algo: ConvAlgo,
        p: &GemmParams,
    ) -> Result<Option<(GpuTensor, u32)>> {
        let Some(Wide { tile, .. }) = Wide::of(algo) else {
            return Ok(None);
        };
        let tiles = p.batch * p.groups * p.m.div_ceil(tile) * p.n.div_ceil(tile);
        let Some(k_part) = wide_k_part(tiles, p.k) else {
            return Ok(None);
        };
        let len = p.k.div_ceil(k_part) as u64 * (p.batch * p.groups * p.m * p.n) as u64;
        if len * 4 > self.inner.binding_limit.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some((self.alloc(op, &[len as usize])?, k_part)))
    }

    /// The passes of wide GEMM `wide` for `params` (its tile counts set): one pass, on whole
    /// tiles of conv2d its vec4 variant; with `split` (partials buffer, K per part) the parts
    /// into the partials and their ordered sum into the output. `buffers`: input, weights,
    /// bias, output, im2col table.
    pub(super) fn wide_passes<'a>(
        &self,
        wide: Wide,
        params: GemmParams,
        buffers: [&'a wgpu::Buffer; 5],
        split: Option<(&'a wgpu::Buffer, u32)>,
    ) -> Vec<Pass<'a>> {
        let window = wide_constants(&params, [wide.tile; 2]);
        let [full, pad_free] = window;
        let Some((partial, k_part)) = split else {
            let [x, w, bias, y, table] = buffers;
            // conv2d on whole tiles: weights and outputs as vec4.
            let v4 = full == 1 && params.mode == 0;
            let (kernel, buffers) = if v4 {
                (wide.v4, vec![x, bias, table, w, y])
            } else {
                (wide.kernel, buffers.to_vec())
            };
            self.cover(|| {
                let kind = if v4 { "v4" } else { "scalar" };
                format!(
                    "wide{} {kind} full_tiles={full} pad_free={pad_free}",
                    wide.tile
                )
            });
            let pass = Pass::tiled(kernel, &params, buffers, params.workgroups());
            return vec![Pass {
                window,
                act: kernels::compiled_act(params.act),
                ..pass
            }];
        };
        // Parts over K into `partial`, then their ordered sum into the output.
        let params = GemmParams { k_part, ..params };
        let parts = params.k.div_ceil(k_part) as u64;
        self.cover(|| format!("wide{} split parts={parts}", wide.tile));
        let [x, w, bias, y, table] = buffers;
        let gemm = Pass::tiled(
            wide.kernel,
            &params,
            vec![x, w, bias, partial, table],
            params.workgroups() * parts,
        );
        let total = (params.batch * params.groups * params.m * params.n) as usize;
        let sum = Pass::new(
            Kernel::ConvGemmWideSum,
            &params,
            vec![partial, w, bias, y, table],
            total,
        );
        let act = kernels::compiled_act(params.act);
        vec![
            Pass {
                window,
                act,
                ..gemm
            },
            Pass { act, ..sum },
        ]
    }
}

#[cfg(test)]
#[test]
fn wide_constants_skip_checks_only_where_they_cannot_fail() {
    let p = GemmParams {
        m: 64,
        n: 64,
        k: 144,
        in_h: 10,
        in_w: 10,
        out_h: 8,
        out_w: 8,
        k_h: 3,
        k_w: 3,
        s_h: 1,
        s_w: 1,
        d_h: 1,
        d_w: 1,
        ..Default::default()
    };
    assert_eq!(wide_constants(&p, [64, 64]), [1, 1]);
    assert_eq!(wide_constants(&GemmParams { m: 96, ..p }, [64, 64]), [0, 1]);
    assert_eq!(wide_constants(&GemmParams { m: 96, ..p }, [32, 32]), [1, 1]);
    assert_eq!(
        wide_constants(&GemmParams { k: 136, ..p }, [32, 32]),
        [0, 1]
    );
    // Padding before, windows past the bottom, dilation past the right, a transposed phase.
    assert_eq!(
        wide_constants(&GemmParams { p_w: 1, ..p }, [64, 64]),
        [1, 0]
    );
    assert_eq!(
        wide_constants(&GemmParams { in_h: 9, ..p }, [64, 64]),
        [1, 0]
    );
    assert_eq!(
        wide_constants(&GemmParams { d_w: 2, ..p }, [64, 64]),
        [1, 0]
    );
    assert_eq!(
        wide_constants(&GemmParams { mode: 1, ..p }, [64, 64]),
        [1, 0]
    );
}

#[cfg(test)]
#[test]
fn wide_gemms_split_k_only_with_few_tiles_and_a_deep_reduction() {
    // W4 (256 channels, 14×14, 3×3) in 32×32 tiles: 56 tiles, k = 2304 → 4 parts of 576.
    assert_eq!(wide_k_part(56, 2304), Some(576));
    assert_eq!(wide_k_part(1, 576), Some(288));
    assert_eq!(wide_k_part(1, 100_000), Some(12_512)); // at most 8 parts
    assert_eq!(wide_k_part(256, 2304), None);
    assert_eq!(wide_k_part(1, 511), None);
    for (tiles, k) in [(1, 600), (3, 4000), (100, 9999)] {
        let k_part = wide_k_part(tiles, k).unwrap();
        assert_eq!(k_part % 16, 0);
        assert!(k.div_ceil(k_part) >= 2 && k.div_ceil(k_part) <= 8);
    }
}
