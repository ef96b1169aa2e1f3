// The convolutions' weight and bias gradients. The weight gradient of group g is the GEMM
// dW[m][k] = Σ_r gy[b, g·M + m, pixel] · im2col(x)[k][b, pixel] over r = (b, pixel), the
// N·H_out·W_out terms, taken in chunks of 32 consecutive pixels of one image (`chunks` per
// image, `units` in all). The chunks are split into `parts` consecutive ranges of `part_units`,
// a number the host derives from the shape alone; each workgroup sums one range of one 32×32
// tile of dW in order into `partial`, and `sum_parts` adds the parts in order: no atomics, the
// same bits on every run.

struct WgradParams {
    m: u32, k: u32, units: u32, part_units: u32,
    m_tiles: u32, n_tiles: u32, groups: u32, parts: u32,
    c_y: u32, c_x: u32, c_grp: u32, npix: u32,
    out_w: u32, in_h: u32, in_w: u32, s_h: u32,
    s_w: u32, p_h: u32, p_w: u32, total_out: u32,
    chunks: u32, pad0: u32, ow_magic: vec2<u32>,
}

@group(0) @binding(0) var<uniform> p: WgradParams;
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
// For each k = (ic, ky, kx): (ic's plane offset, ky·d_h, kx·d_w, 0), as for the forward GEMM.
@group(0) @binding(3) var<storage, read> k_table: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> partial: array<f32>;
