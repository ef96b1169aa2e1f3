// conv_transpose2d as a deterministic scatter-add: one dispatch per kernel tap (tap_y, tap_x).
// Within one tap the map from an input position to the output position it feeds,
// (iy, ix) -> (iy*s - p + tap_y*d, ix*s - p + tap_x*d), is one-to-one, so every invocation of
// a pass adds into a different output element: no atomics, no race, and the taps are summed
// in the same order (bias, then taps row-major) on every run.
//
// The params describe the *forward* convolution this op is the transpose of: its input
// (in_*, c_in) is our output, its output (out_*, c_out) our input.
// Weight: [C_out_fwd, C_in_fwd/groups, kH, kW] = [our C_in, our C_out/groups, kH, kW].

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

// init_bias: y = bias broadcast over (n, h, w), or 0.

@compute @workgroup_size(64)
fn init_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    var v = 0.0;
    if (p.has_bias != 0u) { v = bias[(i / (p.in_h * p.in_w)) % p.c_in]; }
    y[i] = v;
}

// scatter_tap: invocation (n, oc, iy, ix) adds sum_ic x[n, ic, iy, ix] * w[ic, oc', tap] into
// y[n, oc, oy, ox]. `total` = N * C_out(ours) * H_in(ours) * W_in(ours).
@compute @workgroup_size(64)
fn scatter_tap(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ix = i % p.out_w;
    let iy = (i / p.out_w) % p.out_h;
    let oc = (i / (p.out_w * p.out_h)) % p.c_in;
    let n = i / (p.out_w * p.out_h * p.c_in);
    let oy = i32(iy * p.stride_h + p.tap_y * p.dil_h) - i32(p.pad_h);
    let ox = i32(ix * p.stride_w + p.tap_x * p.dil_w) - i32(p.pad_w);
    if (oy < 0 || oy >= i32(p.in_h) || ox < 0 || ox >= i32(p.in_w)) { return; }
    let cog = p.c_in / p.groups;   // our output channels per group
    let cig = p.c_out / p.groups;  // our input channels per group
    let oc_local = oc % cog;
    let ic0 = (oc / cog) * cig;
    let taps = p.k_h * p.k_w;
    let tap = p.tap_y * p.k_w + p.tap_x;
    var acc = 0.0;
    for (var ic = ic0; ic < ic0 + cig; ic++) {
        acc += x[((n * p.c_out + ic) * p.out_h + iy) * p.out_w + ix]
             * w[(ic * cog + oc_local) * taps + tap];
    }
    let o = ((n * p.c_in + oc) * p.in_h + u32(oy)) * p.in_w + u32(ox);
    y[o] = y[o] + acc;
}

// act_in_place: the fused activation over the summed output, after the last tap's pass (a
// tap's pass does not reach every output, so none of them can apply it).
@compute @workgroup_size(64)
fn act_in_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    y[i] = activate(y[i], p.act, p.act_a, p.act_b);
}
