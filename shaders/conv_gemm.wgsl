// The implicit GEMM through workgroup memory (conv_gemm_common.wgsl has the modes): a
// workgroup computes a 32×32 output tile, staging operands 32 deep in K; each of the 64
// invocations keeps a 4×4 block of outputs in registers and reads its operands as vec4.

const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 32u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // [TK][TM / 4]: 4 consecutive m per k
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TK][TN / 4]: 4 consecutive n per k

@compute @workgroup_size(64)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = tile_of(wid, nwg);
    if (tile.x >= p.batch) { return; }
    let b = tile.x;
    let g = tile.y;
    let mt = tile.z;
    let nt = tile.w;
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
        let o = column_origin(n);
        oy0[j] = o.x;
        ox0[j] = o.y;
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
