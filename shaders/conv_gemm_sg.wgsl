// The implicit GEMM with operands shared through subgroup shuffles, no workgroup memory and no
// barriers (conv_gemm_common.wgsl has the modes). Used where subgroups have at least 8 lanes:
// a workgroup is 8 invocations, one subgroup, computing an 8 (m) × 32 (n) output tile. For each
// k, lane l loads the B columns n0 + 4l .. + 3 and the A element of row m0 + l; every lane
// takes the eight A elements from their lanes by shuffle. The accumulators are eight named
// vec4s: an array indexed in a loop ends up in memory on lavapipe (6× slower).

@compute @workgroup_size(8)
fn gemm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32) {
    let tile = tile_of(wid, nwg);
    if (tile.x >= p.batch) { return; }
    let b = tile.x;
    let g = tile.y;
    let mt = tile.z;
    let nt = tile.w;
    let m0 = mt * 8u;
    let n0 = nt * 32u + 4u * lane;
    let o0 = column_origin(n0);
    let o1 = column_origin(n0 + 1u);
    let o2 = column_origin(n0 + 2u);
    let o3 = column_origin(n0 + 3u);
    let ok0 = n0 < p.n;
    let ok1 = n0 + 1u < p.n;
    let ok2 = n0 + 2u < p.n;
    let ok3 = n0 + 3u < p.n;
    let x_base = (b * p.c_x + g * p.c_grp) * p.in_h * p.in_w;
    let m_mine = m0 + lane;
    let a_ok = m_mine < p.m;
    let m_safe = select(0u, m_mine, a_ok);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let t = k_table[k];
        let bv = vec4<f32>(load_x(x_base, t, o0, ok0), load_x(x_base, t, o1, ok1),
                           load_x(x_base, t, o2, ok2), load_x(x_base, t, o3, ok3));
        let a = select(0.0, load_w(g, m_safe, k, t.w), a_ok);
        acc0 += subgroupShuffle(a, 0u) * bv;
        acc1 += subgroupShuffle(a, 1u) * bv;
        acc2 += subgroupShuffle(a, 2u) * bv;
        acc3 += subgroupShuffle(a, 3u) * bv;
        acc4 += subgroupShuffle(a, 4u) * bv;
        acc5 += subgroupShuffle(a, 5u) * bv;
        acc6 += subgroupShuffle(a, 6u) * bv;
        acc7 += subgroupShuffle(a, 7u) * bv;
    }
    store_row(b, g, m0, n0, acc0);
    store_row(b, g, m0 + 1u, n0, acc1);
    store_row(b, g, m0 + 2u, n0, acc2);
    store_row(b, g, m0 + 3u, n0, acc3);
    store_row(b, g, m0 + 4u, n0, acc4);
    store_row(b, g, m0 + 5u, n0, acc5);
    store_row(b, g, m0 + 6u, n0, acc6);
    store_row(b, g, m0 + 7u, n0, acc7);
}

// Stores columns n0 .. n0 + 3 of output row m, those inside the matrix.
fn store_row(b: u32, g: u32, m: u32, n0: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.n) { store(b, g, m, n0 + j, v[j]); }
    }
}

// Taps per kernel row, and input columns between a lane's neighbouring output columns, of
// gemm_sg_rows (compiled in, so its loops unroll and the segment stays in registers).
override TAPS_W: u32 = 3u;
override STEP_W: u32 = 1u;

// gemm_sg with one load per input column a lane reads in a kernel row, and 8 columns per
// lane: the same K order, an 8 (m) × 64 (n) tile, for reductions whose kernel rows are TAPS_W
// consecutive k that read consecutive input columns (conv2d with unit column dilation; a
// conv_transpose2d phase whose column taps are one column apart). Each lane loads one row
// segment of 7·STEP_W + TAPS_W values per kernel row and takes every tap's two B vectors from
// it, instead of 8 loads per tap (3×3 stride 1: 10 loads instead of 24), and shares each A
// shuffle between 8 columns. Sixteen vec4 accumulators (on lavapipe the second eight cost no
// more than the loads they save). N is laid out with each output row padded to p.row_w (a
// multiple of 8) columns, so a lane's 8 columns lie in one output row; padding columns are
// computed, never stored. k_table[k] of a row's first tap gives the row's plane, row offset,
// first column offset and (mode 1) weight offset; the next tap's weight is p.w_step before.
@compute @workgroup_size(8)
fn gemm_sg_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(subgroup_invocation_id) lane: u32) {
    let tile = tile_of(wid, nwg);
    if (tile.x >= p.batch) { return; }
    let b = tile.x;
    let g = tile.y;
    let m0 = tile.z * 8u;
    let q = tile.w * 64u + 8u * lane; // in the padded layout
    let oy = q / p.row_w;
    let ox = q % p.row_w;
    let row_ok = oy < p.out_h;
    let n0 = oy * p.out_w + ox;
    let o = column_origin(n0);
    let x_base = i32((b * p.c_x + g * p.c_grp) * p.in_h * p.in_w);
    let m_mine = m0 + lane;
    let a_ok = m_mine < p.m;
    let m_safe = select(0u, m_mine, a_ok);
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
    var seg: array<f32, 64>; // 7·STEP_W + TAPS_W ≤ 57
    for (var k = 0u; k < p.k; k += TAPS_W) {
        let t = k_table[k];
        let iy = o.x + t.y;
        let ix0 = o.y + t.z;
        let rin = row_ok && iy >= 0 && iy < i32(p.in_h);
        let base = x_base + t.x + iy * i32(p.in_w) + ix0;
        for (var j = 0u; j < 7u * STEP_W + TAPS_W; j++) {
            let ix = ix0 + i32(j);
            let inside = rin && ix >= 0 && ix < i32(p.in_w);
            seg[j] = select(0.0, x[select(0u, u32(base + i32(j)), inside)], inside);
        }
        for (var c = 0u; c < TAPS_W; c++) {
            let w_off = t.w - i32(c * p.w_step); // mode 1: the tap's kernel column
            let a = select(0.0, load_w(g, m_safe, k + c, w_off), a_ok);
            let bv = vec4<f32>(seg[c], seg[c + STEP_W], seg[c + 2u * STEP_W], seg[c + 3u * STEP_W]);
            acc0 += subgroupShuffle(a, 0u) * bv;
            acc1 += subgroupShuffle(a, 1u) * bv;
            acc2 += subgroupShuffle(a, 2u) * bv;
            acc3 += subgroupShuffle(a, 3u) * bv;
            acc4 += subgroupShuffle(a, 4u) * bv;
            acc5 += subgroupShuffle(a, 5u) * bv;
            acc6 += subgroupShuffle(a, 6u) * bv;
            acc7 += subgroupShuffle(a, 7u) * bv;
            let bw = vec4<f32>(seg[c + 4u * STEP_W], seg[c + 5u * STEP_W], seg[c + 6u * STEP_W], seg[c + 7u * STEP_W]);
            bcc0 += subgroupShuffle(a, 0u) * bw;
            bcc1 += subgroupShuffle(a, 1u) * bw;
            bcc2 += subgroupShuffle(a, 2u) * bw;
            bcc3 += subgroupShuffle(a, 3u) * bw;
            bcc4 += subgroupShuffle(a, 4u) * bw;
            bcc5 += subgroupShuffle(a, 5u) * bw;
            bcc6 += subgroupShuffle(a, 6u) * bw;
            bcc7 += subgroupShuffle(a, 7u) * bw;
        }
    }
    if (!row_ok) { return; }
    let cols = min(p.out_w - ox, 4u);
    if (ox + 4u < p.out_w) {
        let c2 = min(p.out_w - ox - 4u, 4u);
        store_seg(b, g, m0, n0 + 4u, c2, bcc0);
        store_seg(b, g, m0 + 1u, n0 + 4u, c2, bcc1);
        store_seg(b, g, m0 + 2u, n0 + 4u, c2, bcc2);
        store_seg(b, g, m0 + 3u, n0 + 4u, c2, bcc3);
        store_seg(b, g, m0 + 4u, n0 + 4u, c2, bcc4);
        store_seg(b, g, m0 + 5u, n0 + 4u, c2, bcc5);
        store_seg(b, g, m0 + 6u, n0 + 4u, c2, bcc6);
        store_seg(b, g, m0 + 7u, n0 + 4u, c2, bcc7);
    }
    store_seg(b, g, m0, n0, cols, acc0);
    store_seg(b, g, m0 + 1u, n0, cols, acc1);
    store_seg(b, g, m0 + 2u, n0, cols, acc2);
    store_seg(b, g, m0 + 3u, n0, cols, acc3);
    store_seg(b, g, m0 + 4u, n0, cols, acc4);
    store_seg(b, g, m0 + 5u, n0, cols, acc5);
    store_seg(b, g, m0 + 6u, n0, cols, acc6);
    store_seg(b, g, m0 + 7u, n0, cols, acc7);
}

// Stores the first `cols` of columns n0 .. n0 + 3 of output row m (none past the row's end).
fn store_seg(b: u32, g: u32, m: u32, n0: u32, cols: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    for (var j = 0u; j < cols; j++) { store(b, g, m, n0 + j, v[j]); }
}
