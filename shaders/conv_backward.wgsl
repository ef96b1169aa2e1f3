// The convolutions' weight and bias gradients. The weight gradient of group g is the GEMM
// dW[m][k] = Σ_r gy[b, g·M + m, pixel] · im2col(x)[k][b, pixel] over r = (b, pixel), the
// N·H_out·W_out terms. That reduction is split into `parts` consecutive ranges of `part_len`
// terms, a number the host derives from the shape alone; each workgroup sums one range of one
// 32×32 tile of dW in order into `partial`, and `sum_parts` adds the parts in order: no
// atomics, the same bits on every run.

struct WgradParams {
    m: u32, k: u32, r_total: u32, part_len: u32,
    m_tiles: u32, n_tiles: u32, groups: u32, parts: u32,
    c_y: u32, c_x: u32, c_grp: u32, npix: u32,
    out_w: u32, in_h: u32, in_w: u32, s_h: u32,
    s_w: u32, p_h: u32, p_w: u32, total_out: u32,
    npix_magic: vec2<u32>, ow_magic: vec2<u32>,
}

@group(0) @binding(0) var<uniform> p: WgradParams;
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
// For each k = (ic, ky, kx): (ic's plane offset, ky·d_h, kx·d_w, 0), as for the forward GEMM.
@group(0) @binding(3) var<storage, read> k_table: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> partial: array<f32>;

const TM: u32 = 32u;
const TN: u32 = 32u;
const TR: u32 = 32u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // [TR][TM / 4]: 4 consecutive m per term
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TR][TN / 4]: 4 consecutive k per term

// Workgroup (part, group, m tile, k tile) computes a 32×32 tile of one part's sum; each of
// its 64 invocations keeps a 4×4 block in registers.
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
    let tx = lid % 8u;
    let ty = lid / 8u;
    let quad = lid % 8u;
    let rrow = lid / 8u;
    let ma = m0 + 4u * quad;
    let na = n0 + 4u * quad;
    var t: array<vec4<i32>, 4>;
    var k_ok = vec4<bool>(false);
    for (var j = 0u; j < 4u; j++) {
        k_ok[j] = na + j < p.k;
        t[j] = k_table[select(0u, na + j, k_ok[j])];
    }
    let r_start = part * p.part_len;
    let r_end = min(r_start + p.part_len, p.r_total);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var r0 = r_start; r0 < r_end; r0 += TR) {
        for (var i = 0u; i < 4u; i++) {
            let rr = rrow + 8u * i;
            let r = r0 + rr;
            var av = vec4<f32>(0.0);
            var bv = vec4<f32>(0.0);
            if (r < r_end) {
                let b = fast_div(r, p.npix_magic);
                let pix = r - b * p.npix;
                let oy = fast_div(pix, p.ow_magic);
                let ox = pix - oy * p.out_w;
                let gy_base = (b * p.c_y + g * p.m) * p.npix + pix;
                let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
                let iy0 = i32(oy * p.s_h) - i32(p.p_h);
                let ix0 = i32(ox * p.s_w) - i32(p.p_w);
                for (var j = 0u; j < 4u; j++) {
                    if (ma + j < p.m) { av[j] = gy[gy_base + (ma + j) * p.npix]; }
                    let iy = iy0 + t[j].y;
                    let ix = ix0 + t[j].z;
                    if (k_ok[j] && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w)) {
                        bv[j] = x[x_base + u32(t[j].x) + u32(iy) * p.in_w + u32(ix)];
                    }
                }
            }
            a_tile[rr * 8u + quad] = av;
            b_tile[rr * 8u + quad] = bv;
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

// The bias gradient: workgroup c sums channel c of gy [r_total images, c_y channels, npix]:
// invocation l adds pixels l, l + 64, … of each image in order, then a tree in a fixed order.
@compute @workgroup_size(64)
fn channel_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let c = flat_group(wid, nwg);
    var acc = 0.0;
    if (c < p.c_y) {
        for (var b = 0u; b < p.r_total; b++) {
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
