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
    // This invocation's B column and first B row; its A k column and first A row.
    let bn = lid % TN;
    let bk = lid / TN;
    let ak = lid % TK;
    let am = lid / TK;
    let n = n0 + bn;
    let n_ok = full || n < p.n;
    let origin = column_origin(n);
    let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let tx = lid % WG; // computes columns n0 + 4tx ..
    let ty = lid / WG; // computes rows    m0 + 4ty ..
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        // A: weights (m0 + am + A_STEP·r, k0 + ak).
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
        // B: the im2col view of x at (k0 + bk + B_STEP·r, n).
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
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = a_tile[kk * (TM / 4u) + ty];
            let bb = b_tile[kk * (TN / 4u) + tx];
            acc0 += a.x * bb;
            acc1 += a.y * bb;
            acc2 += a.z * bb;
            acc3 += a.w * bb;
        }
        workgroupBarrier();
    }
    let mrow = m0 + ty * 4u;
    let ncol = n0 + tx * 4u;
    if (split) {
        let base = ((part * p.batch + b) * p.groups + g) * p.m;
        for (var j = 0u; j < 4u; j++) {
            let nj = ncol + j;
            if (!full && nj >= p.n) { break; }
            if (full || mrow < p.m) { y[(base + mrow) * p.n + nj] = acc0[j]; }
            if (full || mrow + 1u < p.m) { y[(base + mrow + 1u) * p.n + nj] = acc1[j]; }
            if (full || mrow + 2u < p.m) { y[(base + mrow + 2u) * p.n + nj] = acc2[j]; }
            if (full || mrow + 3u < p.m) { y[(base + mrow + 3u) * p.n + nj] = acc3[j]; }
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let nj = ncol + j;
        if (!full && nj >= p.n) { break; }
        if (full || mrow < p.m) { store(b, g, mrow, nj, acc0[j]); }
        if (full || mrow + 1u < p.m) { store(b, g, mrow + 1u, nj, acc1[j]); }
        if (full || mrow + 2u < p.m) { store(b, g, mrow + 2u, nj, acc2[j]); }
        if (full || mrow + 3u < p.m) { store(b, g, mrow + 3u, nj, acc3[j]); }
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
