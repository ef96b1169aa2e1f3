// Implicit GEMM shared by conv2d and conv_transpose2d (per batch and group, M×K weights times
// the K×N im2col view of the input), for the two kernels conv_gemm.wgsl (workgroup memory) and
// conv_gemm_sg.wgsl (subgroup shuffles). Each output sums its K terms in order 0..K on every
// run: deterministic.
//
// mode 0, conv2d: M = C_out/groups, N = H_out·W_out, K = C_in/groups·kH·kW; the K×N operand is
//   the im2col view of x, gathered on the fly (padding reads 0); y = acc + bias.
// mode 1, one stride phase (tap_y, tap_x) of conv_transpose2d: the outputs (tap_y + s_h·j,
//   tap_x + s_w·i) form an out_h × out_w grid (N = its size) that is a dense stride-1
//   correlation of x: the taps whose rows and columns reach the phase read x at a constant
//   offset (k_table: channel plane, row and column offsets, weight offset), K = C_in/groups
//   times those taps. Every output belongs to exactly one phase: y = acc + bias, written once.

struct GemmParams {
    mode: u32, batch: u32, groups: u32, m: u32,
    n: u32, k: u32, m_tiles: u32, n_tiles: u32,
    c_x: u32, c_y: u32, in_h: u32, in_w: u32,
    out_h: u32, out_w: u32, k_h: u32, k_w: u32,
    s_h: u32, s_w: u32, d_h: u32, d_w: u32,
    p_h: u32, p_w: u32, tap_y: u32, tap_x: u32,
    has_bias: u32, c_grp: u32, y_h: u32, y_w: u32,
    row_w: u32, w_step: u32, rows_pad: u32, tile0: u32,
    tiles: u32, row0: u32, row1: u32, accumulate: u32,
    act: u32, act_a: f32, act_b: f32, k_part: u32,
}

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// For each k of the im2col row: (channel plane offset, tap row offset, tap column offset,
// weight offset (mode 1)), built on the host so the kernel does no integer
// division per load (a CPU driver such as lavapipe cannot vectorise division).
@group(0) @binding(5) var<storage, read> k_table: array<vec4<i32>>;

// Weight (m, k) of group g; `w_off` (mode 1): the tap's offset from its k_table entry.
// Branch-free: on lavapipe a branch on p.mode here made every pack_rows dispatch grow the
// process by ~120 KiB (the soak test caught it).
fn load_w(g: u32, m: u32, k: u32, w_off: i32) -> f32 {
    let taps = p.k_h * p.k_w;
    let tap = g * p.c_grp * p.m * taps + u32(w_off) + m * taps;
    return w[select(tap, (g * p.m + m) * p.k + k, p.mode == 0u)];
}

// Writes output (m, n) of batch b, group g: v plus the bias, or (p.accumulate: a later part of
// a reduction split in parts) plus what y holds, through the activation (identity except in
// the last part).
fn store(b: u32, g: u32, m: u32, n: u32, v: f32) {
    let c = b * p.c_y + g * p.m + m;
    var i = c * p.n + n;
    if (p.mode == 1u) {
        let oy = p.tap_y + p.s_h * (n / p.out_w);
        let ox = p.tap_x + p.s_w * (n % p.out_w);
        i = (c * p.y_h + oy) * p.y_w + ox;
    }
    var bv = 0.0;
    if (p.accumulate != 0u) {
        bv = y[i];
    } else if (p.has_bias != 0u) {
        bv = bias[g * p.m + m];
    }
    y[i] = activate(v + bv, p.act, p.act_a, p.act_b);
}


// Input coordinates of output column n before the tap offsets are added.
fn column_origin(n: u32) -> vec2<i32> {
    if (p.mode == 0u) {
        return vec2<i32>(i32((n / p.out_w) * p.s_h) - i32(p.p_h), i32((n % p.out_w) * p.s_w) - i32(p.p_w));
    }
    return vec2<i32>(i32(n / p.out_w), i32(n % p.out_w));
}

// Element (k, n) of the K×N operand: `t` = k_table[k], `o` = column_origin(n), `ok` whether
// k and n are inside the matrix. Branch-free: outside elements read x[0] and give 0.
fn load_x(x_base: u32, t: vec4<i32>, o: vec2<i32>, ok: bool) -> f32 {
    let iy = o.x + t.y;
    let ix = o.y + t.z;
    let inside = ok && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    let i = x_base + u32(t.x) + u32(iy) * p.in_w + u32(ix);
    return select(0.0, x[select(0u, i, inside)], inside);
}

// The output tile of workgroup `wid`: (batch, group, m tile, n tile). The batch is `p.batch`
// or more for a workgroup past the last tile (a folded grid rounds up).
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec4<u32> {
    let tile = flat_group(wid, nwg);
    let bg = tile / (p.n_tiles * p.m_tiles);
    return vec4<u32>(bg / p.groups, bg % p.groups, (tile / p.n_tiles) % p.m_tiles, tile % p.n_tiles);
}
