// The weight gradient with operands shared through subgroup shuffles, for devices with
// subgroups of at least 8 lanes (as conv_gemm_sg.wgsl): a workgroup is 8 invocations, one
// subgroup, computing a 16 or 32 (m) × 32 (k) tile of one part's sum. For each term r of the
// part, lane l loads the im2col values of columns n0 + 4l .. + 3 and the gradients of rows
// m0 + l, m0 + 8 + l, …; every lane takes the 16 or 32 gradients from their lanes by shuffle
// (each input load feeds the multiply-adds of every row: 32 rows for layers with more than 16
// output channels per group, 16 below, where half of a 32-row tile would idle). The terms run in order,
// (image, row, column) carried without division.

@compute @workgroup_size(8)
fn weight_grad_sg16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let tile = flat_group(wid, nwg);
    let nt = tile % p.n_tiles;
    let mt = (tile / p.n_tiles) % p.m_tiles;
    let g = (tile / (p.n_tiles * p.m_tiles)) % p.groups;
    let part = tile / (p.n_tiles * p.m_tiles * p.groups);
    if (part >= p.parts) { return; }
    let m0 = mt * 16u;
    let n0 = nt * 32u + 4u * lane;
    // This lane's four columns: their taps, or a row offset that puts them outside the input.
    let off = vec4<i32>(0, -1073741824, 0, 0);
    let t0 = select(off, k_table[min(n0, p.k - 1u)], n0 < p.k);
    let t1 = select(off, k_table[min(n0 + 1u, p.k - 1u)], n0 + 1u < p.k);
    let t2 = select(off, k_table[min(n0 + 2u, p.k - 1u)], n0 + 2u < p.k);
    let t3 = select(off, k_table[min(n0 + 3u, p.k - 1u)], n0 + 3u < p.k);
    let m_mine = m0 + lane;
    let ok0 = m_mine + 0u < p.m;
    let ok1 = m_mine + 8u < p.m;
    // The part's terms: chunks u_start .. u_end, as flat (image, pixel) indices.
    let u_start = part * p.part_units;
    let u_end = min(u_start + p.part_units, p.units);
    let b_start = u_start / p.chunks;
    let r_start = b_start * p.npix + (u_start - b_start * p.chunks) * 32u;
    let b_end = u_end / p.chunks;
    let r_end = b_end * p.npix + min((u_end - b_end * p.chunks) * 32u, p.npix);
    var b = b_start;
    var px = r_start - b_start * p.npix;
    var oy = px / p.out_w;
    var ox = px - oy * p.out_w;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var bcc0 = vec4<f32>(0.0);
    var bcc1 = vec4<f32>(0.0);
    var bcc2 = vec4<f32>(0.0);
    var bcc3 = vec4<f32>(0.0);
    var bcc4 = vec4<f32>(0.0);
    var bcc5 = vec4<f32>(0.0);
    var bcc6 = vec4<f32>(0.0);
    var bcc7 = vec4<f32>(0.0);
    let in_h = i32(p.in_h);
    let in_w = i32(p.in_w);
    for (var r = r_start; r < r_end; r++) {
        let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
        let iy = i32(oy * p.s_h) - i32(p.p_h);
        let ix = i32(ox * p.s_w) - i32(p.p_w);
        let row = (b * p.c_y + g * p.m + m_mine) * p.npix + px;
        let a0 = select(0.0, gy[select(0u, row + 0u * p.npix, ok0)], ok0);
        let a1 = select(0.0, gy[select(0u, row + 8u * p.npix, ok1)], ok1);
        let y = vec4<i32>(iy + t0.y, iy + t1.y, iy + t2.y, iy + t3.y);
        let xx = vec4<i32>(ix + t0.z, ix + t1.z, ix + t2.z, ix + t3.z);
        let zero = vec4<i32>(0);
        let ok = (y >= zero) & (y < vec4<i32>(in_h)) & (xx >= zero) & (xx < vec4<i32>(in_w));
        let at = vec4<u32>(x_base) + vec4<u32>(vec4<i32>(t0.x, t1.x, t2.x, t3.x))
            + vec4<u32>(y) * p.in_w + vec4<u32>(xx);
        let bv = vec4<f32>(
            select(0.0, x[select(0u, at.x, ok.x)], ok.x),
            select(0.0, x[select(0u, at.y, ok.y)], ok.y),
            select(0.0, x[select(0u, at.z, ok.z)], ok.z),
            select(0.0, x[select(0u, at.w, ok.w)], ok.w));
        acc0 += subgroupShuffle(a0, 0u) * bv;
        acc1 += subgroupShuffle(a0, 1u) * bv;
        acc2 += subgroupShuffle(a0, 2u) * bv;
        acc3 += subgroupShuffle(a0, 3u) * bv;
        acc4 += subgroupShuffle(a0, 4u) * bv;
        acc5 += subgroupShuffle(a0, 5u) * bv;
        acc6 += subgroupShuffle(a0, 6u) * bv;
        acc7 += subgroupShuffle(a0, 7u) * bv;
        bcc0 += subgroupShuffle(a1, 0u) * bv;
        bcc1 += subgroupShuffle(a1, 1u) * bv;
        bcc2 += subgroupShuffle(a1, 2u) * bv;
        bcc3 += subgroupShuffle(a1, 3u) * bv;
        bcc4 += subgroupShuffle(a1, 4u) * bv;
        bcc5 += subgroupShuffle(a1, 5u) * bv;
        bcc6 += subgroupShuffle(a1, 6u) * bv;
        bcc7 += subgroupShuffle(a1, 7u) * bv;
        // The next term: column, row and image carried.
        px += 1u;
        ox += 1u;
        if (ox == p.out_w) {
            ox = 0u;
            oy += 1u;
            if (px == p.npix) {
                px = 0u;
                oy = 0u;
                b += 1u;
            }
        }
    }
    let base = part * p.total_out + g * p.m * p.k;
    store_sg(base, m0 + 0u, n0, acc0);
    store_sg(base, m0 + 1u, n0, acc1);
    store_sg(base, m0 + 2u, n0, acc2);
    store_sg(base, m0 + 3u, n0, acc3);
    store_sg(base, m0 + 4u, n0, acc4);
    store_sg(base, m0 + 5u, n0, acc5);
    store_sg(base, m0 + 6u, n0, acc6);
    store_sg(base, m0 + 7u, n0, acc7);
    store_sg(base, m0 + 8u, n0, bcc0);
    store_sg(base, m0 + 9u, n0, bcc1);
    store_sg(base, m0 + 10u, n0, bcc2);
    store_sg(base, m0 + 11u, n0, bcc3);
    store_sg(base, m0 + 12u, n0, bcc4);
    store_sg(base, m0 + 13u, n0, bcc5);
    store_sg(base, m0 + 14u, n0, bcc6);
    store_sg(base, m0 + 15u, n0, bcc7);
}

@compute @workgroup_size(8)
fn weight_grad_sg32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let tile = flat_group(wid, nwg);
    let nt = tile % p.n_tiles;
    let mt = (tile / p.n_tiles) % p.m_tiles;
    let g = (tile / (p.n_tiles * p.m_tiles)) % p.groups;
    let part = tile / (p.n_tiles * p.m_tiles * p.groups);
    if (part >= p.parts) { return; }
    let m0 = mt * 32u;
    let n0 = nt * 32u + 4u * lane;
    // This lane's four columns: their taps, or a row offset that puts them outside the input.
    let off = vec4<i32>(0, -1073741824, 0, 0);
    let t0 = select(off, k_table[min(n0, p.k - 1u)], n0 < p.k);
    let t1 = select(off, k_table[min(n0 + 1u, p.k - 1u)], n0 + 1u < p.k);
    let t2 = select(off, k_table[min(n0 + 2u, p.k - 1u)], n0 + 2u < p.k);
    let t3 = select(off, k_table[min(n0 + 3u, p.k - 1u)], n0 + 3u < p.k);
    let m_mine = m0 + lane;
    let ok0 = m_mine + 0u < p.m;
    let ok1 = m_mine + 8u < p.m;
    let ok2 = m_mine + 16u < p.m;
    let ok3 = m_mine + 24u < p.m;
    // The part's terms: chunks u_start .. u_end, as flat (image, pixel) indices.
    let u_start = part * p.part_units;
    let u_end = min(u_start + p.part_units, p.units);
    let b_start = u_start / p.chunks;
    let r_start = b_start * p.npix + (u_start - b_start * p.chunks) * 32u;
    let b_end = u_end / p.chunks;
    let r_end = b_end * p.npix + min((u_end - b_end * p.chunks) * 32u, p.npix);
    var b = b_start;
    var px = r_start - b_start * p.npix;
    var oy = px / p.out_w;
    var ox = px - oy * p.out_w;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var bcc0 = vec4<f32>(0.0);
    var bcc1 = vec4<f32>(0.0);
    var bcc2 = vec4<f32>(0.0);
    var bcc3 = vec4<f32>(0.0);
    var bcc4 = vec4<f32>(0.0);
    var bcc5 = vec4<f32>(0.0);
    var bcc6 = vec4<f32>(0.0);
    var bcc7 = vec4<f32>(0.0);
    var ccc0 = vec4<f32>(0.0);
    var ccc1 = vec4<f32>(0.0);
    var ccc2 = vec4<f32>(0.0);
    var ccc3 = vec4<f32>(0.0);
    var ccc4 = vec4<f32>(0.0);
    var ccc5 = vec4<f32>(0.0);
    var ccc6 = vec4<f32>(0.0);
    var ccc7 = vec4<f32>(0.0);
    var dcc0 = vec4<f32>(0.0);
    var dcc1 = vec4<f32>(0.0);
    var dcc2 = vec4<f32>(0.0);
    var dcc3 = vec4<f32>(0.0);
    var dcc4 = vec4<f32>(0.0);
    var dcc5 = vec4<f32>(0.0);
    var dcc6 = vec4<f32>(0.0);
    var dcc7 = vec4<f32>(0.0);
    let in_h = i32(p.in_h);
    let in_w = i32(p.in_w);
    for (var r = r_start; r < r_end; r++) {
        let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
        let iy = i32(oy * p.s_h) - i32(p.p_h);
        let ix = i32(ox * p.s_w) - i32(p.p_w);
        let row = (b * p.c_y + g * p.m + m_mine) * p.npix + px;
        let a0 = select(0.0, gy[select(0u, row + 0u * p.npix, ok0)], ok0);
        let a1 = select(0.0, gy[select(0u, row + 8u * p.npix, ok1)], ok1);
        let a2 = select(0.0, gy[select(0u, row + 16u * p.npix, ok2)], ok2);
        let a3 = select(0.0, gy[select(0u, row + 24u * p.npix, ok3)], ok3);
        let y = vec4<i32>(iy + t0.y, iy + t1.y, iy + t2.y, iy + t3.y);
        let xx = vec4<i32>(ix + t0.z, ix + t1.z, ix + t2.z, ix + t3.z);
        let zero = vec4<i32>(0);
        let ok = (y >= zero) & (y < vec4<i32>(in_h)) & (xx >= zero) & (xx < vec4<i32>(in_w));
        let at = vec4<u32>(x_base) + vec4<u32>(vec4<i32>(t0.x, t1.x, t2.x, t3.x))
            + vec4<u32>(y) * p.in_w + vec4<u32>(xx);
        let bv = vec4<f32>(
            select(0.0, x[select(0u, at.x, ok.x)], ok.x),
            select(0.0, x[select(0u, at.y, ok.y)], ok.y),
            select(0.0, x[select(0u, at.z, ok.z)], ok.z),
            select(0.0, x[select(0u, at.w, ok.w)], ok.w));
        acc0 += subgroupShuffle(a0, 0u) * bv;
        acc1 += subgroupShuffle(a0, 1u) * bv;
        acc2 += subgroupShuffle(a0, 2u) * bv;
        acc3 += subgroupShuffle(a0, 3u) * bv;
        acc4 += subgroupShuffle(a0, 4u) * bv;
        acc5 += subgroupShuffle(a0, 5u) * bv;
        acc6 += subgroupShuffle(a0, 6u) * bv;
        acc7 += subgroupShuffle(a0, 7u) * bv;
        bcc0 += subgroupShuffle(a1, 0u) * bv;
        bcc1 += subgroupShuffle(a1, 1u) * bv;
        bcc2 += subgroupShuffle(a1, 2u) * bv;
        bcc3 += subgroupShuffle(a1, 3u) * bv;
        bcc4 += subgroupShuffle(a1, 4u) * bv;
        bcc5 += subgroupShuffle(a1, 5u) * bv;
        bcc6 += subgroupShuffle(a1, 6u) * bv;
        bcc7 += subgroupShuffle(a1, 7u) * bv;
        ccc0 += subgroupShuffle(a2, 0u) * bv;
        ccc1 += subgroupShuffle(a2, 1u) * bv;
        ccc2 += subgroupShuffle(a2, 2u) * bv;
        ccc3 += subgroupShuffle(a2, 3u) * bv;
        ccc4 += subgroupShuffle(a2, 4u) * bv;
        ccc5 += subgroupShuffle(a2, 5u) * bv;
        ccc6 += subgroupShuffle(a2, 6u) * bv;
        ccc7 += subgroupShuffle(a2, 7u) * bv;
        dcc0 += subgroupShuffle(a3, 0u) * bv;
        dcc1 += subgroupShuffle(a3, 1u) * bv;
        dcc2 += subgroupShuffle(a3, 2u) * bv;
        dcc3 += subgroupShuffle(a3, 3u) * bv;
        dcc4 += subgroupShuffle(a3, 4u) * bv;
        dcc5 += subgroupShuffle(a3, 5u) * bv;
        dcc6 += subgroupShuffle(a3, 6u) * bv;
        dcc7 += subgroupShuffle(a3, 7u) * bv;
        // The next term: column, row and image carried.
        px += 1u;
        ox += 1u;
        if (ox == p.out_w) {
            ox = 0u;
            oy += 1u;
            if (px == p.npix) {
                px = 0u;
                oy = 0u;
                b += 1u;
            }
        }
    }
    let base = part * p.total_out + g * p.m * p.k;
    store_sg(base, m0 + 0u, n0, acc0);
    store_sg(base, m0 + 1u, n0, acc1);
    store_sg(base, m0 + 2u, n0, acc2);
    store_sg(base, m0 + 3u, n0, acc3);
    store_sg(base, m0 + 4u, n0, acc4);
    store_sg(base, m0 + 5u, n0, acc5);
    store_sg(base, m0 + 6u, n0, acc6);
    store_sg(base, m0 + 7u, n0, acc7);
    store_sg(base, m0 + 8u, n0, bcc0);
    store_sg(base, m0 + 9u, n0, bcc1);
    store_sg(base, m0 + 10u, n0, bcc2);
    store_sg(base, m0 + 11u, n0, bcc3);
    store_sg(base, m0 + 12u, n0, bcc4);
    store_sg(base, m0 + 13u, n0, bcc5);
    store_sg(base, m0 + 14u, n0, bcc6);
    store_sg(base, m0 + 15u, n0, bcc7);
    store_sg(base, m0 + 16u, n0, ccc0);
    store_sg(base, m0 + 17u, n0, ccc1);
    store_sg(base, m0 + 18u, n0, ccc2);
    store_sg(base, m0 + 19u, n0, ccc3);
    store_sg(base, m0 + 20u, n0, ccc4);
    store_sg(base, m0 + 21u, n0, ccc5);
    store_sg(base, m0 + 22u, n0, ccc6);
    store_sg(base, m0 + 23u, n0, ccc7);
    store_sg(base, m0 + 24u, n0, dcc0);
    store_sg(base, m0 + 25u, n0, dcc1);
    store_sg(base, m0 + 26u, n0, dcc2);
    store_sg(base, m0 + 27u, n0, dcc3);
    store_sg(base, m0 + 28u, n0, dcc4);
    store_sg(base, m0 + 29u, n0, dcc5);
    store_sg(base, m0 + 30u, n0, dcc6);
    store_sg(base, m0 + 31u, n0, dcc7);
}

// Stores columns n0 .. n0 + 3 of row m of a part's sum, those inside the matrix.
fn store_sg(base: u32, m: u32, n0: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.k) { out[base + m * p.k + n0 + j] = v[j]; }
    }
}
