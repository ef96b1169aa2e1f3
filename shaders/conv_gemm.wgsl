// Implicit GEMM shared by conv2d and conv_transpose2d: per (batch, group), an M×N output tile
// = (M×K weights) · (K×N input columns), staged through workgroup memory 32 deep in K; each of
// the 64 invocations keeps a 4×4 block of outputs in registers and reads its operands as vec4.
// Each output sums its K terms in order 0..K on every run: deterministic.
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

const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 32u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // [TK][TM / 4]: 4 consecutive m per k
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TK][TN / 4]: 4 consecutive n per k

fn load_w(g: u32, m: u32, k: u32, w_off: i32) -> f32 {
    if (p.mode == 0u) {
        return w[(g * p.m + m) * p.k + k];
    }
    let taps = p.k_h * p.k_w;
    return w[g * p.c_grp * p.m * taps + u32(w_off) + m * taps];
}

fn store(b: u32, g: u32, m: u32, n: u32, v: f32) {
    let c = b * p.c_y + g * p.m + m;
    var bv = 0.0;
    if (p.has_bias != 0u) { bv = bias[g * p.m + m]; }
    if (p.mode == 0u) {
        y[c * p.n + n] = v + bv;
    } else {
        let oy = p.tap_y + p.s_h * (n / p.out_w);
        let ox = p.tap_x + p.s_w * (n % p.out_w);
        y[(c * p.y_h + oy) * p.y_w + ox] = v + bv;
    }
}

@compute @workgroup_size(64)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = flat_group(wid, nwg);
    let nt = tile % p.n_tiles;
    let mt = (tile / p.n_tiles) % p.m_tiles;
    let bg = tile / (p.n_tiles * p.m_tiles);
    if (bg >= p.batch * p.groups) { return; }
    let b = bg / p.groups;
    let g = bg % p.groups;
    let m0 = mt * TM;
    let n0 = nt * TN;
    let tx = lid % 8u; // computes columns n0 + 4tx ..
    let ty = lid / 8u; // computes rows    m0 + 4ty ..
    // What this invocation loads, as four vec4 per tile and K chunk: A rows m0 + 4(lid%8) ..+3
    // at k columns lid/8 + 8r, and B columns n0 + 4(lid%8) ..+3 at k rows lid/8 + 8r (r < 4).
    let quad = lid % 8u;
    let krow = lid / 8u;
    let ma = m0 + 4u * quad;
    // Input coordinates of the four B columns before the tap offsets.
    var oy0 = vec4<i32>(0);
    var ox0 = vec4<i32>(0);
    var n_ok = vec4<bool>(false);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + 4u * quad + j;
        n_ok[j] = n < p.n;
        if (p.mode == 0u) {
            oy0[j] = i32((n / p.out_w) * p.s_h) - i32(p.p_h);
            ox0[j] = i32((n % p.out_w) * p.s_w) - i32(p.p_w);
        } else {
            oy0[j] = i32(n / p.out_w);
            ox0[j] = i32(n % p.out_w);
        }
    }
    let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let kk = krow + 8u * r;
            let k = k0 + kk;
            var av = vec4<f32>(0.0);
            var bv = vec4<f32>(0.0);
            if (k < p.k) {
                let t = k_table[k];
                for (var j = 0u; j < 4u; j++) {
                    if (ma + j < p.m) { av[j] = load_w(g, ma + j, k, t.w); }
                    let iy = oy0[j] + t.y;
                    let ix = ox0[j] + t.z;
                    if (n_ok[j] && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w)) {
                        bv[j] = x[x_base + u32(t.x) + u32(iy) * p.in_w + u32(ix)];
                    }
                }
            }
            a_tile[kk * 8u + quad] = av;
            b_tile[kk * 8u + quad] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = a_tile[kk * 8u + ty];
            let bb = b_tile[kk * 8u + tx];
            acc0 += a.x * bb;
            acc1 += a.y * bb;
            acc2 += a.z * bb;
            acc3 += a.w * bb;
        }
        workgroupBarrier();
    }
    let mrow = m0 + ty * 4u;
    let ncol = n0 + tx * 4u;
    for (var j = 0u; j < 4u; j++) {
        let n = ncol + j;
        if (n >= p.n) { break; }
        if (mrow < p.m) { store(b, g, mrow, n, acc0[j]); }
        if (mrow + 1u < p.m) { store(b, g, mrow + 1u, n, acc1[j]); }
        if (mrow + 2u < p.m) { store(b, g, mrow + 2u, n, acc2[j]); }
        if (mrow + 3u < p.m) { store(b, g, mrow + 3u, n, acc3[j]); }
    }
}
