// The implicit GEMM for hardware GPUs (conv_gemm_common.wgsl has the modes), in the shape of
// tfjs' and ONNX Runtime's WebGPU matmul: a WG×WG workgroup (WG is prepended: 8 or 16, so 64
// or 256 invocations) computes a TM×TN = 4WG×4WG output tile, each invocation a 4×4 block in
// registers, read as vec4 from operands staged TK = 16 deep in workgroup memory. Loads are
// coalesced: consecutive invocations read consecutive k of a weight row and consecutive
// pixels of an im2col row. No subgroup operations, so no assumption on the subgroup size.
// Each output sums its K terms in order 0..K: deterministic.
//
// FULL_TILES = 1 (set only where m, n and k are multiples of the tile): no bounds checks on
// m, n, k. PAD_FREE = 1 (set only for conv2d whose windows never leave the input): no
// padding checks on the im2col loads.
//
// Layers with too few output tiles to fill a GPU split K into parts of p.k_part (a multiple
// of TK; the host derives the number of parts from the shape alone): workgroups of part q
// (counted in the batch dimension of the grid) sum their k range in order and write the raw
// sums to y as partials [part][batch][group][m][n]; gemm_wide_sum then adds the parts in
// order, and the bias and the activation, into the output. No atomics.

const TM: u32 = 4u * WG;
const TN: u32 = 4u * WG;
const TK: u32 = 16u;
const THREADS: u32 = WG * WG;
// Rows of the K×N operand one invocation loads per K step, and the k stride between them.
const B_ROWS: u32 = TK * TN / THREADS;
const B_STEP: u32 = THREADS / TN;
// Rows of the M×K operand one invocation loads per K step, and the m stride between them.
const A_ROWS: u32 = TM * TK / THREADS;
const A_STEP: u32 = THREADS / TK;

override FULL_TILES: u32 = 0u;
override PAD_FREE: u32 = 0u;

var<workgroup> a_tile: array<vec4<f32>, TK * TM / 4u>; // [TK][TM / 4]: 4 consecutive m per k
var<workgroup> b_tile: array<vec4<f32>, TK * TN / 4u>; // [TK][TN / 4]: 4 consecutive n per k

// Stages the M×K operand for the K step at k0: weights (m0 + am + A_STEP·r, k0 + lid % TK),
// scalar loads (any mode, any shape).
fn stage_a(lid: u32, g: u32, m0: u32, k0: u32, k_end: u32, full: bool) {
    let ak = lid % TK;
    let am = lid / TK;
    let ka = k0 + ak;
    let ka_ok = full || ka < k_end;
    let ta = k_table[select(0u, ka, ka_ok)];
    for (var r = 0u; r < A_ROWS; r++) {
        let m = am + A_STEP * r;
        var v = 0.0;
        if (ka_ok && (full || m0 + m < p.m)) {
            v = load_w(g, m0 + m, ka, ta.w);
        }
        a_tile[ak * (TM / 4u) + m / 4u][m % 4u] = v;
    }
}

// Stages the K×N operand for the K step at k0: the im2col view of x at (k0 + lid / TN +
// B_STEP·r, column n = n0 + lid % TN, whose input origin is `origin`).
fn stage_b(lid: u32, x_base: u32, origin: vec2<i32>, n_ok: bool, k0: u32, k_end: u32, full: bool) {
    let bn = lid % TN;
    let bk = lid / TN;
    for (var r = 0u; r < B_ROWS; r++) {
        let kr = bk + B_STEP * r;
        let k = k0 + kr;
        let ok = n_ok && (full || k < k_end);
        let t = k_table[select(0u, k, ok)];
        var v = 0.0;
        if (PAD_FREE != 0u) {
            if (ok) {
                v = x[x_base + u32(t.x) + u32(origin.x + t.y) * p.in_w + u32(origin.y + t.z)];
            }
        } else {
            v = load_x(x_base, t, origin, ok);
        }
        b_tile[kr * (TN / 4u) + bn / 4u][bn % 4u] = v;
    }
}

// Adds the staged tiles' products, k in order, to the 4×4 block of rows 4ty.. and columns
// 4tx.. in acc.
fn multiply(tx: u32, ty: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var kk = 0u; kk < TK; kk++) {
        let a = a_tile[kk * (TM / 4u) + ty];
        let bb = b_tile[kk * (TN / 4u) + tx];
        (*acc)[0] += a.x * bb;
        (*acc)[1] += a.y * bb;
        (*acc)[2] += a.z * bb;
        (*acc)[3] += a.w * bb;
    }
}

@compute @workgroup_size(THREADS)
fn gemm_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let tile = tile_of(wid, nwg);
    let split = p.k_part != 0u;
    let parts = select(1u, (p.k + p.k_part - 1u) / max(p.k_part, 1u), split);
    if (tile.x >= p.batch * parts) { return; }
    let part = tile.x / p.batch;
    let b = tile.x % p.batch;
    let g = tile.y;
    let k_begin = part * p.k_part;
    let k_end = select(p.k, min(p.k, k_begin + p.k_part), split);
    let m0 = tile.z * TM;
    let n0 = tile.w * TN;
    let full = FULL_TILES != 0u;
    let n = n0 + lid % TN;
    let n_ok = full || n < p.n;
    let origin = column_origin(n);
    let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
    let tx = lid % WG; // computes columns n0 + 4tx ..
    let ty = lid / WG; // computes rows    m0 + 4ty ..
    var acc = array<vec4<f32>, 4>();
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        stage_a(lid, g, m0, k0, k_end, full);
        stage_b(lid, x_base, origin, n_ok, k0, k_end, full);
        workgroupBarrier();
        multiply(tx, ty, &acc);
        workgroupBarrier();
    }
    let mrow = m0 + ty * 4u;
    let ncol = n0 + tx * 4u;
    if (split) {
        let base = ((part * p.batch + b) * p.groups + g) * p.m;
        for (var j = 0u; j < 4u; j++) {
            let nj = ncol + j;
            if (!full && nj >= p.n) { break; }
            for (var i = 0u; i < 4u; i++) {
                if (full || mrow + i < p.m) { y[(base + mrow + i) * p.n + nj] = acc[i][j]; }
            }
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let nj = ncol + j;
        if (!full && nj >= p.n) { break; }
        for (var i = 0u; i < 4u; i++) {
            if (full || mrow + i < p.m) { store(b, g, mrow + i, nj, acc[i][j]); }
        }
    }
}

// The weights and the output as vec4 (the same buffers as w and y): for gemm_wide_v4 only.
@group(0) @binding(6) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> y4: array<vec4<f32>>;

// gemm_wide for conv2d on whole tiles (FULL_TILES set; the host runs it only then, unsplit):
// the weights are read as vec4 along k (rows of K floats, K a multiple of 16, so aligned) and
// the outputs written as vec4 along n (rows of N floats, N a multiple of the tile).
@compute @workgroup_size(THREADS)
fn gemm_wide_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tile = tile_of(wid, nwg);
    if (tile.x >= p.batch) { return; }
    let b = tile.x;
    let g = tile.y;
    let m0 = tile.z * TM;
    let n0 = tile.w * TN;
    let origin = column_origin(n0 + lid % TN);
    let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
    let tx = lid % WG;
    let ty = lid / WG;
    var acc = array<vec4<f32>, 4>();
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // A: vec4 e = lid + THREADS·r of the tile holds row m = e / 4, k = k0 + 4(e % 4) ...
        for (var r = 0u; r < TM * TK / 4u / THREADS; r++) {
            let e = lid + THREADS * r;
            let m = e / 4u;
            let kq = 4u * (e % 4u);
            let v = w4[((g * p.m + m0 + m) * p.k + k0 + kq) / 4u];
            a_tile[kq * (TM / 4u) + m / 4u][m % 4u] = v.x;
            a_tile[(kq + 1u) * (TM / 4u) + m / 4u][m % 4u] = v.y;
            a_tile[(kq + 2u) * (TM / 4u) + m / 4u][m % 4u] = v.z;
            a_tile[(kq + 3u) * (TM / 4u) + m / 4u][m % 4u] = v.w;
        }
        stage_b(lid, x_base, origin, true, k0, p.k, true);
        workgroupBarrier();
        multiply(tx, ty, &acc);
        workgroupBarrier();
    }
    let mrow = m0 + ty * 4u;
    let ncol = n0 + tx * 4u;
    for (var i = 0u; i < 4u; i++) {
        let c = b * p.c_y + g * p.m + mrow + i;
        var bv = 0.0;
        if (p.has_bias != 0u) {
            bv = bias[g * p.m + mrow + i];
        }
        let v = acc[i] + vec4<f32>(bv); // as `store`: the same bits
        let out = vec4<f32>(activate(v.x, p.act, p.act_a, p.act_b), activate(v.y, p.act, p.act_a, p.act_b),
                            activate(v.z, p.act, p.act_a, p.act_b), activate(v.w, p.act, p.act_a, p.act_b));
        y4[(c * p.n + ncol) / 4u] = out;
    }
}

// Adds the parts of a split GEMM in order (the partials are bound as x), then the bias and
// the activation through `store`: one invocation per output element of the GEMM.
@compute @workgroup_size(64)
fn gemm_wide_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    let total = p.batch * p.groups * p.m * p.n;
    if (i >= total) { return; }
    let parts = (p.k + p.k_part - 1u) / max(p.k_part, 1u);
    var acc = x[i];
    for (var q = 1u; q < parts; q++) {
        acc += x[q * total + i];
    }
    let n = i % p.n;
    let t = i / p.n;
    let m = t % p.m;
    let bg = t / p.m;
    store(bg / p.groups, bg % p.groups, m, n, acc);
}
