// conv2d: cross-correlation, NCHW, weight [C_out, C_in/groups, kH, kW]. One invocation per
// output element; it sums bias, then channels, kernel rows and columns in that order.

struct ConvParams {
    total: u32, n: u32, c_in: u32, c_out: u32,
    in_h: u32, in_w: u32, out_h: u32, out_w: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    dil_h: u32, dil_w: u32, pad_h: u32, pad_w: u32,
    groups: u32, has_bias: u32, tap_y: u32, tap_x: u32,
    octets: u32, act: u32, act_a: f32, act_b: f32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let oc = (i / (p.out_w * p.out_h)) % p.c_out;
    let n = i / (p.out_w * p.out_h * p.c_out);
    let cig = p.c_in / p.groups;
    let c0 = (oc / (p.c_out / p.groups)) * cig;
    let iy0 = i32(oy * p.stride_h) - i32(p.pad_h);
    let ix0 = i32(ox * p.stride_w) - i32(p.pad_w);
    var acc = 0.0;
    if (p.has_bias != 0u) { acc = bias[oc]; }
    for (var ic = 0u; ic < cig; ic++) {
        let xplane = (n * p.c_in + c0 + ic) * p.in_h;
        let wrow = (oc * cig + ic) * p.k_h;
        for (var ky = 0u; ky < p.k_h; ky++) {
            let iy = iy0 + i32(ky * p.dil_h);
            if (iy < 0 || iy >= i32(p.in_h)) { continue; }
            let xrow = (xplane + u32(iy)) * p.in_w;
            let wk = (wrow + ky) * p.k_w;
            for (var kx = 0u; kx < p.k_w; kx++) {
                let ix = ix0 + i32(kx * p.dil_w);
                if (ix < 0 || ix >= i32(p.in_w)) { continue; }
                acc += x[xrow + u32(ix)] * w[wk + kx];
            }
        }
    }
    y[i] = activate(acc, p.act, p.act_a, p.act_b);
}

// Taps per kernel row and columns between neighbouring outputs of conv2d_rows (compiled in, so
// its loops unroll and the row segment stays in registers).
override TAPS_W: u32 = 3u;
override STEP_W: u32 = 1u;

// conv2d for one input and one output channel per group (depthwise) with column dilation 1:
// each invocation computes 8 adjacent outputs of one output row (p.octets groups of 8 per
// row), loading one input row segment of 7·STEP_W + TAPS_W values per kernel row instead of
// 8·TAPS_W values, and each weight once for the 8. Each output sums exactly as conv2d does:
// bias, then the in-bounds taps row by row.
@compute @workgroup_size(64)
fn conv2d_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    let row = q / p.octets;
    if (row >= p.n * p.c_out * p.out_h) { return; }
    let ox0 = (q % p.octets) * 8u;
    let oy = row % p.out_h;
    let plane = row / p.out_h; // n·C + c: input and output channel are the same
    let oc = plane % p.c_out;
    let iy0 = i32(oy * p.stride_h) - i32(p.pad_h);
    let ix0 = i32(ox0 * p.stride_w) - i32(p.pad_w);
    var acc: array<f32, 8>;
    var b = 0.0;
    if (p.has_bias != 0u) { b = bias[oc]; }
    for (var r = 0u; r < 8u; r++) { acc[r] = b; }
    var seg: array<f32, 64>; // 7·STEP_W + TAPS_W ≤ 64
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = iy0 + i32(ky * p.dil_h);
        let row_in = iy >= 0 && iy < i32(p.in_h);
        let xrow = (plane * p.in_h + u32(select(0, iy, row_in))) * p.in_w;
        for (var j = 0u; j < 7u * STEP_W + TAPS_W; j++) {
            let ix = ix0 + i32(j);
            let ok = row_in && ix >= 0 && ix < i32(p.in_w);
            seg[j] = select(0.0, x[select(0u, xrow + u32(ix), ok)], ok);
        }
        for (var kx = 0u; kx < TAPS_W; kx++) {
            let wv = w[(oc * p.k_h + ky) * TAPS_W + kx];
            for (var r = 0u; r < 8u; r++) {
                let j = r * STEP_W + kx;
                let ix = ix0 + i32(j);
                let ok = row_in && ix >= 0 && ix < i32(p.in_w);
                acc[r] = select(acc[r], acc[r] + seg[j] * wv, ok);
            }
        }
    }
    let out = (plane * p.out_h + oy) * p.out_w + ox0;
    for (var r = 0u; r < 8u; r++) {
        if (ox0 + r < p.out_w) { y[out + r] = activate(acc[r], p.act, p.act_a, p.act_b); }
    }
}
