// The weight gradient with operands shared through subgroup shuffles, for devices with
// subgroups of at least 8 lanes (as conv_gemm_sg.wgsl): a workgroup is 8 invocations, one
// subgroup, computing a 16 or 32 (m) × 32 (k) tile of one part's sum. For each term r of the
// part, lane l loads the im2col values of columns n0 + 4l .. + 3 and the gradients of rows
// m0 + l, m0 + 8 + l, …; every lane takes the 16 or 32 gradients from their lanes by shuffle
// (each input load feeds the multiply-adds of every row: 32 rows for layers with more than 16
// output channels per group, 16 below, where half of a 32-row tile would idle). The terms run
// in order, (image, row, column) carried without division. The two kernels differ only in
// their number of named accumulators (an array indexed in a loop lands in memory on lavapipe).

// The tile of workgroup `wid` for tiles of `rows` output channels: its group, part, first
// channel and this lane's first column, and whether the workgroup lies past the last part.
struct SgTile { g: u32, part: u32, m0: u32, n0: u32, idle: bool }

fn sg_tile(wid: vec3<u32>, nwg: vec3<u32>, lane: u32, rows: u32) -> SgTile {
    let tile = flat_group(wid, nwg);
    let nt = tile % p.n_tiles;
    let mt = (tile / p.n_tiles) % p.m_tiles;
    let g = (tile / (p.n_tiles * p.m_tiles)) % p.groups;
    let part = tile / (p.n_tiles * p.m_tiles * p.groups);
    return SgTile(g, part, mt * rows, nt * 32u + 4u * lane, part >= p.parts);
}

// The taps of a lane's four columns n0 .. n0 + 3, or a row offset that puts a column past the
// matrix outside the input.
struct Taps { t0: vec4<i32>, t1: vec4<i32>, t2: vec4<i32>, t3: vec4<i32> }

fn column_taps(n0: u32) -> Taps {
    let off = vec4<i32>(0, -1073741824, 0, 0);
    return Taps(
        select(off, k_table[min(n0, p.k - 1u)], n0 < p.k),
        select(off, k_table[min(n0 + 1u, p.k - 1u)], n0 + 1u < p.k),
        select(off, k_table[min(n0 + 2u, p.k - 1u)], n0 + 2u < p.k),
        select(off, k_table[min(n0 + 3u, p.k - 1u)], n0 + 3u < p.k));
}

// A term of the reduction: image b, output pixel px = (oy, ox).
struct Term { b: u32, px: u32, oy: u32, ox: u32 }

// The terms of `part`: its chunks u_start .. u_end as flat (image, pixel) indices [start, end),
// and its first term.
fn part_terms(part: u32) -> vec2<u32> {
    let u_start = part * p.part_units;
    let u_end = min(u_start + p.part_units, p.units);
    let b_start = u_start / p.chunks;
    let b_end = u_end / p.chunks;
    return vec2<u32>(b_start * p.npix + (u_start - b_start * p.chunks) * 32u,
                     b_end * p.npix + min((u_end - b_end * p.chunks) * 32u, p.npix));
}

fn term_at(r: u32) -> Term {
    let b = r / p.npix;
    let px = r - b * p.npix;
    let oy = px / p.out_w;
    return Term(b, px, oy, px - oy * p.out_w);
}

// The next term: column, row and image carried, without division.
fn next_term(t: Term) -> Term {
    var n = Term(t.b, t.px + 1u, t.oy, t.ox + 1u);
    if (n.ox == p.out_w) {
        n.ox = 0u;
        n.oy += 1u;
        if (n.px == p.npix) {
            n = Term(t.b + 1u, 0u, 0u, 0u);
        }
    }
    return n;
}

// Gradient row m of group g at term t (0 past the channels).
fn grad_at(t: Term, g: u32, m: u32) -> f32 {
    let ok = m < p.m;
    return select(0.0, gy[select(0u, (t.b * p.c_y + g * p.m + m) * p.npix + t.px, ok)], ok);
}

// The im2col values of a lane's four columns (taps `c`) of group g at term t: 0 in the padding.
fn load_columns(t: Term, g: u32, c: Taps) -> vec4<f32> {
    let x_base = (t.b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
    let iy = i32(t.oy * p.s_h) - i32(p.p_h);
    let ix = i32(t.ox * p.s_w) - i32(p.p_w);
    let y = vec4<i32>(iy + c.t0.y, iy + c.t1.y, iy + c.t2.y, iy + c.t3.y);
    let xx = vec4<i32>(ix + c.t0.z, ix + c.t1.z, ix + c.t2.z, ix + c.t3.z);
    let zero = vec4<i32>(0);
    let ok = (y >= zero) & (y < vec4<i32>(i32(p.in_h))) & (xx >= zero) & (xx < vec4<i32>(i32(p.in_w)));
    let at = vec4<u32>(x_base) + vec4<u32>(vec4<i32>(c.t0.x, c.t1.x, c.t2.x, c.t3.x))
        + vec4<u32>(y) * p.in_w + vec4<u32>(xx);
    return vec4<f32>(
        select(0.0, x[select(0u, at.x, ok.x)], ok.x),
        select(0.0, x[select(0u, at.y, ok.y)], ok.y),
        select(0.0, x[select(0u, at.z, ok.z)], ok.z),
        select(0.0, x[select(0u, at.w, ok.w)], ok.w));
}

@compute @workgroup_size(8)
fn weight_grad_sg16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let w = sg_tile(wid, nwg, lane, 16u);
    if (w.idle) { return; }
    let taps = column_taps(w.n0);
    let m = w.m0 + lane;
    let range = part_terms(w.part);
    var t = term_at(range.x);
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
    for (var r = range.x; r < range.y; r++) {
        let bv = load_columns(t, w.g, taps);
        let a0 = grad_at(t, w.g, m + 0u);
        let a1 = grad_at(t, w.g, m + 8u);
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
        t = next_term(t);
    }
    let base = w.part * p.total_out + w.g * p.m * p.k;
    store_bank(base, w.m0 + 0u, w.n0, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    store_bank(base, w.m0 + 8u, w.n0, bcc0, bcc1, bcc2, bcc3, bcc4, bcc5, bcc6, bcc7);
}

@compute @workgroup_size(8)
fn weight_grad_sg32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let w = sg_tile(wid, nwg, lane, 32u);
    if (w.idle) { return; }
    let taps = column_taps(w.n0);
    let m = w.m0 + lane;
    let range = part_terms(w.part);
    var t = term_at(range.x);
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
    for (var r = range.x; r < range.y; r++) {
        let bv = load_columns(t, w.g, taps);
        let a0 = grad_at(t, w.g, m + 0u);
        let a1 = grad_at(t, w.g, m + 8u);
        let a2 = grad_at(t, w.g, m + 16u);
        let a3 = grad_at(t, w.g, m + 24u);
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
        t = next_term(t);
    }
    let base = w.part * p.total_out + w.g * p.m * p.k;
    store_bank(base, w.m0 + 0u, w.n0, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    store_bank(base, w.m0 + 8u, w.n0, bcc0, bcc1, bcc2, bcc3, bcc4, bcc5, bcc6, bcc7);
    store_bank(base, w.m0 + 16u, w.n0, ccc0, ccc1, ccc2, ccc3, ccc4, ccc5, ccc6, ccc7);
    store_bank(base, w.m0 + 24u, w.n0, dcc0, dcc1, dcc2, dcc3, dcc4, dcc5, dcc6, dcc7);
}

// Stores columns n0 .. n0 + 3 of rows m0 .. m0 + 7 (v0 .. v7) of a part's sum, those inside
// the matrix.
fn store_bank(base: u32, m0: u32, n0: u32, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>,
              v3: vec4<f32>, v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>) {
    store_sg(base, m0, n0, v0);
    store_sg(base, m0 + 1u, n0, v1);
    store_sg(base, m0 + 2u, n0, v2);
    store_sg(base, m0 + 3u, n0, v3);
    store_sg(base, m0 + 4u, n0, v4);
    store_sg(base, m0 + 5u, n0, v5);
    store_sg(base, m0 + 6u, n0, v6);
    store_sg(base, m0 + 7u, n0, v7);
}

// Stores columns n0 .. n0 + 3 of row m of a part's sum, those inside the matrix.
fn store_sg(base: u32, m: u32, n0: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.k) { out[base + m * p.k + n0 + j] = v[j]; }
    }
}
