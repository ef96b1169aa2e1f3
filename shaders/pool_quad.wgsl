// max_pool2d and avg_pool2d, four adjacent outputs of a row per invocation, for rows whose
// input and output widths are multiples of 4: each kernel row's input segment is read as
// whole vec4s, and values and indices are written as vec4s. On lavapipe every storage-buffer
// access is a loop over the lanes whatever its width, so this reads and writes each element
// at about half the cost of pool2d.wgsl's kernels (W6-W8). Every output walks its taps in the
// same row-major order with the same comparisons as there: the same results, bit for bit.

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> vals4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> idx4: array<vec4<u32>>;

// The window's column geometry, compiled in so the loops unroll and the segment stays in
// registers: k_w | s_w << 8 | d_w << 16 | shift << 24, where shift (0 to 3) is how far into
// its first vec4 a quad's segment starts (quads start at output columns 4i, so it is the same
// for all). WIN_H (pool_common.wgsl) is the kernel's height.
override QUAD_W: u32 = 0x00010202u;

fn q_kw() -> u32 { return QUAD_W & 0xffu; }
fn q_sw() -> u32 { return (QUAD_W >> 8u) & 0xffu; }
fn q_dw() -> u32 { return (QUAD_W >> 16u) & 0xffu; }
fn q_shift() -> u32 { return QUAD_W >> 24u; }

// vec4s of a kernel row's segment: the four windows' columns, from the segment's first vec4.
fn q_vec4s() -> u32 { return (q_shift() + 3u * q_sw() + (q_kw() - 1u) * q_dw() + 4u) / 4u; }

// The input row `yy` of the plane at `base`, vec4s from column c0 (a multiple of 4) on, into
// `seg` (zeros outside the input).
struct Segment { v: array<f32, 36> }

fn load_segment(base: u32, yy: i32, c0: i32) -> Segment {
    var s: Segment;
    let row_ok = yy >= 0 && yy < i32(p.in_h);
    for (var i = 0u; i < q_vec4s(); i++) {
        let c = c0 + 4 * i32(i);
        let ok = row_ok && c >= 0 && c < i32(p.in_w);
        let at = select(0u, in_at(base, u32(yy) * p.in_w + u32(c)) / 4u, ok);
        let v = select(vec4<f32>(0.0), x4[at], ok);
        s.v[4u * i] = v.x;
        s.v[4u * i + 1u] = v.y;
        s.v[4u * i + 2u] = v.z;
        s.v[4u * i + 3u] = v.w;
    }
    return s;
}

@compute @workgroup_size(64)
fn max_pool_quad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    if (q >= p.total / 4u) { return; }
    let win = window_of(4u * q);
    let base = win.plane * p.in_h * p.in_w;
    let c0 = win.x0 - i32(q_shift());
    var best = vec4<f32>(bitcast<f32>(0xff800000u)); // -inf
    var arg = vec4<u32>(NONE);
    for (var ky = 0u; ky < win_h(); ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        let s = load_segment(base, yy, c0);
        let row_ok = yy >= 0 && yy < i32(p.in_h);
        for (var kx = 0u; kx < q_kw(); kx++) {
            for (var j = 0u; j < 4u; j++) {
                let col = j * q_sw() + kx * q_dw();
                let xx = win.x0 + i32(col);
                let ok = row_ok && xx >= 0 && xx < i32(p.in_w);
                let pos = select(0u, u32(yy) * p.in_w + u32(xx), ok);
                let v = select(0.0, s.v[q_shift() + col], ok);
                let m = max_tap(Max(best[j], arg[j]), ok, v, pos);
                best[j] = m.v;
                arg[j] = m.at;
            }
        }
    }
    vals4[q] = best;
    idx4[q] = arg;
}

@compute @workgroup_size(64)
fn avg_pool_quad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    if (q >= p.total / 4u) { return; }
    let win = window_of(4u * q);
    let base = win.plane * p.in_h * p.in_w;
    let c0 = win.x0 - i32(q_shift());
    var sum = vec4<f32>(0.0);
    for (var ky = 0u; ky < win_h(); ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        let s = load_segment(base, yy, c0);
        let row_ok = yy >= 0 && yy < i32(p.in_h);
        for (var kx = 0u; kx < q_kw(); kx++) {
            for (var j = 0u; j < 4u; j++) {
                let col = j * q_sw() + kx * q_dw();
                let xx = win.x0 + i32(col);
                let ok = row_ok && xx >= 0 && xx < i32(p.in_w);
                sum[j] = select(sum[j], sum[j] + s.v[q_shift() + col], ok);
            }
        }
    }
    // Quads whose windows lie wholly in the counted range (all but the edges) divide by the
    // window size; counting the taps costs ~40% of the kernel (W8).
    let c = counted();
    let last_x = win.x0 + i32(3u * q_sw() + (q_kw() - 1u) * q_dw());
    let inside = win.y0 >= c.x && win.y0 + i32((win_h() - 1u) * p.d_h) < c.y
        && win.x0 >= c.z && last_x < c.w;
    var d = vec4<f32>(f32(win_h() * q_kw()));
    if (!inside) {
        for (var j = 0u; j < 4u; j++) {
            let w = Window(win.plane, win.oy, win.ox + j, win.y0, win.x0 + i32(j * q_sw()));
            d[j] = divisor(w);
        }
    }
    vals4[q] = sum / d;
}
