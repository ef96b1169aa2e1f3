// max_unpool2d and max_pool2d_backward for indices from this library's max_pool2d whose
// windows tile the unpooled plane exactly (stride = kernel, no padding, no dilation, the plane
// exactly out · kernel in each axis) and whose pooled rows are a multiple of 4 wide. One
// invocation takes four adjacent pooled elements of a row (one vec4 of values, one of indices)
// and writes their windows' rows whole, as vec4s: the value where its index points, zero
// elsewhere. Every output element is written exactly once, by its own window, so no zeroing
// pass runs and the result is the owned scatter's, bit for bit (W7's unpool: 33 -> 17 ms on
// lavapipe in a probe). `total` = pooled elements; WIN_H, WIN_W are compiled in.

@group(0) @binding(1) var<storage, read> pooled4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> idx4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn unpool_tiles(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let q = flat_id(wid, nwg, lid);
    if (q >= p.total / 4u) { return; }
    let win = window_of(4u * q);
    let v = pooled4[q];
    let t = idx4[q];
    let base = win.plane * p.in_h * p.in_w;
    for (var ky = 0u; ky < win_h(); ky++) {
        // The four windows' row ky: 4 · k_w columns from x0 (a multiple of 4), k_w vec4s.
        let pos = (u32(win.y0) + ky) * p.in_w + u32(win.x0);
        let at = in_at(base, pos) / 4u;
        for (var i = 0u; i < win_w(); i++) {
            var w = vec4<f32>(0.0);
            for (var l = 0u; l < 4u; l++) {
                let col = 4u * i + l;
                let j = col / win_w();
                w[l] = select(0.0, v[j], t[j] == pos + col);
            }
            out4[at + i] = w;
        }
    }
}
