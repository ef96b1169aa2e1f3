// The implicit GEMM with operands shared through subgroup shuffles, no workgroup memory and no
// barriers (conv_gemm_common.wgsl has the modes). Used where subgroups have at least 8 lanes:
// a workgroup is 8 invocations, one subgroup, computing an 8 (m) × 32 (n) output tile. For each
// k, lane l loads the B columns n0 + 4l .. + 3 and the A element of row m0 + l; every lane
// takes the eight A elements from their lanes by shuffle. The accumulators are eight named
// vec4s: an array indexed in a loop that is not unrolled ends up in memory on lavapipe (6×
// slower; measured while wgpu's loop bounding kept Mesa from unrolling any loop, see
// PipelineCache::get).

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

// Taps per kernel row of gemm_sg_rows, and (STEP_SHIFT) input columns between a lane's
// neighbouring output columns plus 65536 × where a lane's row segment starts in its first
// texel (0 to 3; the same for every lane and kernel row of a pass). Compiled in, so the
// kernel's loops unroll and its segment stays in registers.
override TAPS_W: u32 = 3u;
override STEP_SHIFT: u32 = 1u;

fn step_w() -> u32 { return STEP_SHIFT & 0xffffu; }
fn seg_shift() -> u32 { return STEP_SHIFT >> 16u; }

// gemm_sg_rows' weights, packed by pack_rows (weights as f32 bits): per tile of 8 output
// channels (group-major), per kernel row r (of p.rows_pad, a multiple of 16), slots() vec4s
// per lane (the row's taps, zero-padded; zero for channels past p.m) and then one vec4, the
// row's im2col entry (k_table of its first tap, i32 bits, with .w its input channel within the
// group, the texture layer offset). The kernel reads a 64 KiB window of
// it as a uniform buffer: on lavapipe a lane's uniform-buffer load is a vector gather, and a
// load at one address for the whole subgroup one scalar load, while every storage-buffer load
// is a loop over the lanes (W1: 56 -> 37 ms). The host splits dispatches so that each one's
// tiles and rows fit the window.
@group(0) @binding(6) var<uniform> wu: array<vec4<u32>, 4096>;
@group(0) @binding(7) var<storage, read_write> packed: array<vec4<u32>>;

// gemm_sg_rows' input: x as an rgba32float texture array, one layer per (image, channel),
// texel (i, y) holding columns 4i .. 4i + 3 of row y (zero past the row's end), written by
// x_to_texture. On lavapipe a texel fetch is a vector gather of four values: a row segment
// of 10 columns costs 3 or 4 fetches instead of 10 storage-buffer loops over the lanes.
@group(0) @binding(8) var x_tex: texture_2d_array<f32>;
@group(0) @binding(9) var x_out: texture_storage_2d_array<rgba32float, write>;

// One invocation per texel of x_out (p.in_w columns per row, p.in_h rows, p.batch × p.c_x
// layers).
@compute @workgroup_size(64)
fn x_to_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    let texels = (p.in_w + 3u) / 4u;
    let row = i / texels; // (layer, y)
    if (row >= p.batch * p.c_x * p.in_h) { return; }
    let c0 = i % texels * 4u;
    let base = row * p.in_w + c0;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.in_w) { v[j] = x[base + j]; }
    }
    textureStore(x_out, vec2<u32>(c0 / 4u, row % p.in_h), row / p.in_h, v);
}

// vec4s of taps per lane and kernel row.
fn slots() -> u32 { return (TAPS_W + 3u) / 4u; }

// vec4s per kernel row of a tile in the packed weights.
fn row_vec4s() -> u32 { return 8u * slots() + 1u; }

// One invocation per vec4 of the packed weights (p.k / TAPS_W kernel rows per tile). A tap's
// weight offset (mode 1) is p.w_step before the previous tap's, as in gemm_sg_rows.
@compute @workgroup_size(64)
fn pack_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    let per_tile = p.k / TAPS_W * row_vec4s();
    if (i >= p.groups * p.m_tiles * per_tile) { return; }
    let tile = i / per_tile;
    let r = i % per_tile / row_vec4s();
    let v = i % row_vec4s();
    let out = (tile * p.rows_pad + r) * row_vec4s() + v;
    let k0 = r * TAPS_W;
    let info = v == 8u * slots();
    var t = vec4<i32>(0);
    if (info || p.mode == 1u) { t = k_table[k0]; }
    if (info) {
        let layer = u32(t.x) / (p.in_h * p.in_w);
        packed[out] = vec4<u32>(bitcast<vec3<u32>>(t.xyz), layer);
        return;
    }
    let g = tile / p.m_tiles;
    let m = tile % p.m_tiles * 8u + v / slots();
    var a = vec4<f32>(0.0);
    if (m < p.m) {
        for (var j = 0u; j < 4u; j++) {
            let c = v % slots() * 4u + j;
            if (c < TAPS_W) { a[j] = load_w(g, m, k0 + c, t.w - i32(c * p.w_step)); }
        }
    }
    packed[out] = bitcast<vec4<u32>>(a);
}

// gemm_sg with one load per input column a lane reads in a kernel row, and 8 columns per
// lane: the same K order, an 8 (m) × 64 (n) tile, for reductions whose kernel rows are TAPS_W
// consecutive k that read consecutive input columns (conv2d with unit column dilation; a
// conv_transpose2d phase whose column taps are one column apart). Each lane fetches one row
// segment of 7·step + TAPS_W values per kernel row (from x_tex) and takes every tap's two B
// vectors from it, instead of 8 loads per tap, and shares each A shuffle between 8 columns. Sixteen vec4 accumulators (on lavapipe the second eight cost no
// more than the loads they save). N is laid out with each output row padded to p.row_w (a
// multiple of 8) columns, so a lane's 8 columns lie in one output row; padding columns are
// computed, never stored. A dispatch runs tiles p.tile0 .. + p.tiles (of all groups' m tiles)
// over kernel rows p.row0 .. p.row1 of the packed weights bound at its first row; a part
// after the first adds to what the earlier ones stored (p.accumulate).
@compute @workgroup_size(8)
fn gemm_sg_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(subgroup_invocation_id) lane: u32) {
    let f = flat_group(wid, nwg);
    let rest = f / p.n_tiles;
    let b = rest / p.tiles;
    if (b >= p.batch) { return; }
    let tile = p.tile0 + rest % p.tiles;
    let g = tile / p.m_tiles;
    let m0 = tile % p.m_tiles * 8u;
    let q = f % p.n_tiles * 64u + 8u * lane; // in the padded layout
    let oy = q / p.row_w;
    let ox = q % p.row_w;
    let row_ok = oy < p.out_h;
    let n0 = oy * p.out_w + ox;
    let o = column_origin(n0);
    let layer0 = b * p.c_x + g * p.c_grp;
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
    var seg: array<f32, 64>; // seg_shift() + 7·step + TAPS_W ≤ 60
    // The window's first vec4 is row p.row0 of tile p.tile0.
    let first = (tile - p.tile0) * p.rows_pad * row_vec4s();
    for (var r = p.row0; r < p.row1; r++) {
        let wr = first + (r - p.row0) * row_vec4s();
        let t = bitcast<vec4<i32>>(wu[wr + 8u * slots()]); // the same for every lane
        let iy = o.x + t.y;
        let rin = row_ok && iy >= 0 && iy < i32(p.in_h);
        // The segment starts seg_shift() columns into texel tx0 (whole texels lie in or out).
        let tx0 = (o.y + t.z - i32(seg_shift())) >> 2u;
        let texels = i32((p.in_w + 3u) / 4u);
        let layer = layer0 + u32(t.w);
        for (var i = 0u; i < (seg_shift() + 7u * step_w() + TAPS_W + 3u) / 4u; i++) {
            let tx = tx0 + i32(i);
            let inside = rin && tx >= 0 && tx < texels;
            let v = select(vec4<f32>(0.0), textureLoad(x_tex, vec2<i32>(tx, iy), layer, 0), inside);
            seg[4u * i] = v.x;
            seg[4u * i + 1u] = v.y;
            seg[4u * i + 2u] = v.z;
            seg[4u * i + 3u] = v.w;
        }
        let wa = bitcast<vec4<f32>>(wu[wr + lane * slots()]);
        let wb = bitcast<vec4<f32>>(wu[wr + lane * slots() + slots() - 1u]);
        for (var c = 0u; c < TAPS_W; c++) {
            let a = select(wb[c & 3u], wa[c & 3u], c < 4u);
            let j = seg_shift() + c;
            let bv = vec4<f32>(seg[j], seg[j + step_w()], seg[j + 2u * step_w()], seg[j + 3u * step_w()]);
            acc0 += subgroupShuffle(a, 0u) * bv;
            acc1 += subgroupShuffle(a, 1u) * bv;
            acc2 += subgroupShuffle(a, 2u) * bv;
            acc3 += subgroupShuffle(a, 3u) * bv;
            acc4 += subgroupShuffle(a, 4u) * bv;
            acc5 += subgroupShuffle(a, 5u) * bv;
            acc6 += subgroupShuffle(a, 6u) * bv;
            acc7 += subgroupShuffle(a, 7u) * bv;
            let bw = vec4<f32>(seg[j + 4u * step_w()], seg[j + 5u * step_w()], seg[j + 6u * step_w()], seg[j + 7u * step_w()]);
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
    // Columns ox .. ox + 7 of the 8 rows, those inside the output row.
    store_bank(b, g, m0, n0, min(p.out_w - ox, 4u), acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    if (ox + 4u < p.out_w) {
        store_bank(b, g, m0, n0 + 4u, min(p.out_w - ox - 4u, 4u), bcc0, bcc1, bcc2, bcc3, bcc4, bcc5, bcc6, bcc7);
    }
}

// Stores the first `cols` of columns n0 .. n0 + 3 of output rows m0 .. m0 + 7 (v0 .. v7), those
// inside the matrix.
fn store_bank(b: u32, g: u32, m0: u32, n0: u32, cols: u32, v0: vec4<f32>, v1: vec4<f32>,
              v2: vec4<f32>, v3: vec4<f32>, v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>,
              v7: vec4<f32>) {
    store_seg(b, g, m0, n0, cols, v0);
    store_seg(b, g, m0 + 1u, n0, cols, v1);
    store_seg(b, g, m0 + 2u, n0, cols, v2);
    store_seg(b, g, m0 + 3u, n0, cols, v3);
    store_seg(b, g, m0 + 4u, n0, cols, v4);
    store_seg(b, g, m0 + 5u, n0, cols, v5);
    store_seg(b, g, m0 + 6u, n0, cols, v6);
    store_seg(b, g, m0 + 7u, n0, cols, v7);
}

// Stores the first `cols` of columns n0 .. n0 + 3 of output row m (none past the row's end).
fn store_seg(b: u32, g: u32, m: u32, n0: u32, cols: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    for (var j = 0u; j < cols; j++) { store(b, g, m, n0 + j, v[j]); }
}
