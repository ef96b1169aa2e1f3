// The workgroup-memory weight-gradient kernel (for devices without subgroups of at least 8
// lanes; conv_backward_common.wgsl has the split), the sum of the parts, and the bias gradient.

const TM: u32 = 32u;
const TN: u32 = 32u;
const TR: u32 = 32u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // [TR][TM / 4]: 4 consecutive m per term
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TR][TN / 4]: 4 consecutive k per term
var<workgroup> taps: array<vec4<i32>, 32>;    // the tile's k_table entries

// Workgroup (part, group, m tile, k tile) computes a 32×32 tile of one part's sum; each of
// its 64 invocations keeps a 4×4 block in registers. Invocation l loads term l % 32 of each
// chunk (consecutive invocations, consecutive pixels) for 16 m and 16 k.
@compute @workgroup_size(64)
fn weight_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let tile = flat_group(wid, nwg);
    let nt = tile % p.n_tiles;
    let mt = (tile / p.n_tiles) % p.m_tiles;
    let g = (tile / (p.n_tiles * p.m_tiles)) % p.groups;
    let part = tile / (p.n_tiles * p.m_tiles * p.groups);
    if (part >= p.parts) { return; }
    let m0 = mt * TM;
    let n0 = nt * TN;
    if (lid < 32u) {
        // k past the matrix: a row offset that puts every tap outside the input.
        let kk = n0 + lid;
        taps[lid] = select(vec4<i32>(0, -1073741824, 0, 0), k_table[min(kk, p.k - 1u)], kk < p.k);
    }
    workgroupBarrier();
    let tx = lid % 8u;
    let ty = lid / 8u;
    let rl = lid % 32u;
    let half = lid / 32u;
    let ml = m0 + 16u * half; // this invocation loads m = ml .. ml + 15
    let u_start = part * p.part_units;
    let u_end = min(u_start + p.part_units, p.units);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var u = u_start; u < u_end; u++) {
        let b = u / p.chunks;
        let px = (u - b * p.chunks) * TR + rl;
        let ok = px < p.npix;
        let oy = fast_div(px, p.ow_magic);
        let ox = px - oy * p.out_w;
        let gy_base = (b * p.c_y + g * p.m) * p.npix + px;
        let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
        let iy0 = i32(oy * p.s_h) - i32(p.p_h);
        let ix0 = i32(ox * p.s_w) - i32(p.p_w);
        for (var q = 0u; q < 4u; q++) {
            var av = vec4<f32>(0.0);
            var bv = vec4<f32>(0.0);
            for (var j = 0u; j < 4u; j++) {
                let m = ml + 4u * q + j;
                if (ok && m < p.m) { av[j] = gy[gy_base + m * p.npix]; }
                let t = taps[16u * half + 4u * q + j];
                let iy = iy0 + t.y;
                let ix = ix0 + t.z;
                if (ok && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w)) {
                    bv[j] = x[x_base + u32(t.x) + u32(iy) * p.in_w + u32(ix)];
                }
            }
            a_tile[rl * 8u + 4u * half + q] = av;
            b_tile[rl * 8u + 4u * half + q] = bv;
        }
        workgroupBarrier();
        for (var rr = 0u; rr < TR; rr++) {
            let a = a_tile[rr * 8u + ty];
            let bb = b_tile[rr * 8u + tx];
            acc0 += a.x * bb;
            acc1 += a.y * bb;
            acc2 += a.z * bb;
            acc3 += a.w * bb;
        }
        workgroupBarrier();
    }
    let mrow = m0 + ty * 4u;
    let ncol = n0 + tx * 4u;
    let base = part * p.total_out + g * p.m * p.k;
    for (var j = 0u; j < 4u; j++) {
        let n = ncol + j;
        if (n >= p.k) { break; }
        if (mrow < p.m) { out[base + mrow * p.k + n] = acc0[j]; }
        if (mrow + 1u < p.m) { out[base + (mrow + 1u) * p.k + n] = acc1[j]; }
        if (mrow + 2u < p.m) { out[base + (mrow + 2u) * p.k + n] = acc2[j]; }
        if (mrow + 3u < p.m) { out[base + (mrow + 3u) * p.k + n] = acc3[j]; }
    }
}

// out[i] = the parts' sums of element i, added in part order.
@compute @workgroup_size(64)
fn sum_parts(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total_out) { return; }
    var acc = partial[i];
    for (var q = 1u; q < p.parts; q++) {
        acc += partial[q * p.total_out + i];
    }
    out[i] = acc;
}

var<workgroup> sums: array<f32, 64>;

// The bias gradient: workgroup c sums channel c of gy [units images, c_y channels, npix]:
// invocation l adds pixels l, l + 64, … of each image in order, then a tree in a fixed order.
@compute @workgroup_size(64)
fn channel_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let c = flat_group(wid, nwg);
    var acc = 0.0;
    if (c < p.c_y) {
        for (var b = 0u; b < p.units; b++) {
            let base = (b * p.c_y + c) * p.npix;
            for (var j = lid; j < p.npix; j += 64u) { acc += gy[base + j]; }
        }
    }
    sums[lid] = acc;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {
        if (lid < half) { sums[lid] = sums[lid] + sums[lid + half]; }
        workgroupBarrier();
    }
    if (lid == 0u && c < p.c_y) { out[c] = sums[0]; }
}
