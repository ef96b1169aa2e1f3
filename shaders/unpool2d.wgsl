// Unpooling and the pooling backward passes. Every kernel is a gather or a per-plane sequential
// scatter, so results are bitwise reproducible; none writes outside its output, whatever the
// indices hold (out-of-range indices are skipped here and reported by check_indices).

@group(0) @binding(1) var<storage, read> pooled: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> flag: array<atomic<u32>>;

// check_indices: flag[0] = the smallest flat position j whose index is >= idx_plane
// (the unpooled plane's length); stays 0xffffffff when every index is in range.
@compute @workgroup_size(64)
fn check_indices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let j = flat_id(wid, nwg, lid);
    if (j >= p.total) { return; }
    if (idx[j] >= p.idx_plane) { atomicMin(&flag[0], j); }
}

// Walks the pooled windows that cover unpooled position (y, x) of `plane`, in row-major
// window order, and folds them with `mode`:
//   0: max_unpool    — the value of the last window whose index is this position
//   1: max backward  — the sum of the gradients of the windows whose index is this position
//   2: avg_unpool    — the mean of the covering windows' values
//   3: avg backward  — the sum of grad / divisor over the covering windows
// `y` is the global row; `plane` counts bound planes.
fn gather(plane: u32, y: u32, x: u32, mode: u32) -> f32 {
    let pos = y * p.in_w + x;
    var acc = 0.0;
    var count = 0u;
    if (p.d_h == 1u && p.d_w == 1u) {
        // Undilated windows: the covering ones form a range per axis, walked directly.
        let ry = covering_range(y, win_h(), p.p_h, p.s_h, p.dv_sh, p.out_h);
        let rx = covering_range(x, win_w(), p.p_w, p.s_w, p.dv_sw, p.out_w);
        for (var oy = ry.x; oy < ry.y; oy++) {
            for (var ox = rx.x; ox < rx.y; ox++) {
                let o = (plane * p.out_h + oy - p.orow0) * p.out_w + ox;
                fold(&acc, &count, o, pos, mode);
            }
        }
    } else {
        for (var i = win_h(); i > 0u; i--) {
            let oy = covering(y, i - 1u, p.p_h, p.d_h, p.s_h, p.dv_sh, p.out_h);
            if (oy < 0) { continue; }
            for (var j = win_w(); j > 0u; j--) {
                let ox = covering(x, j - 1u, p.p_w, p.d_w, p.s_w, p.dv_sw, p.out_w);
                if (ox < 0) { continue; }
                let o = (plane * p.out_h + u32(oy) - p.orow0) * p.out_w + u32(ox);
                fold(&acc, &count, o, pos, mode);
            }
        }
    }
    if (mode == 2u && count > 0u) { acc = acc / f32(count); }
    return acc;
}

// Folds pooled element `o` into the gather's accumulator (see `gather`).
fn fold(acc: ptr<function, f32>, count: ptr<function, u32>, o: u32, pos: u32, mode: u32) {
    switch mode {
        case 0u: { if (idx[o] == pos) { *acc = pooled[o]; } }
        case 1u: { if (idx[o] == pos) { *acc += pooled[o]; } }
        case 2u: { *acc += pooled[o]; *count += 1u; }
        default: { *acc += pooled[o] / divisor(window_of(o)); }
    }
}

fn gather_main(i: u32, mode: u32) {
    if (i >= p.total) { return; }
    let row = fast_div(i, p.dv_iw);
    let x = i - row * p.in_w;
    let plane = fast_div(row, p.dv_ih);
    out[i] = gather(plane, row - plane * p.in_h + p.row0, x, mode);
}

@compute @workgroup_size(64)
fn max_unpool_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    gather_main(flat_id(wid, nwg, lid), 0u);
}

@compute @workgroup_size(64)
fn max_backward_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    gather_main(flat_id(wid, nwg, lid), 1u);
}

@compute @workgroup_size(64)
fn avg_unpool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    gather_main(flat_id(wid, nwg, lid), 2u);
}

@compute @workgroup_size(64)
fn avg_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    gather_main(flat_id(wid, nwg, lid), 3u);
}

// For indices of unknown origin: one invocation per plane walks the plane's pooled elements in
// row-major order and scatters them (`out` starts zeroed). `total` = planes,
// `out_h * out_w` = pooled elements per plane; the bound output holds unpooled positions
// [pos_lo, pos_lo + idx_plane) of each plane (all of it unless the plane runs in bands).
fn scatter_plane(plane: u32, add: bool) {
    if (plane >= p.total) { return; }
    let per_plane = p.out_h * p.out_w;
    for (var j = 0u; j < per_plane; j++) {
        let o = plane * per_plane + j;
        let t = idx[o];
        if (t < p.pos_lo || t - p.pos_lo >= p.idx_plane) { continue; }
        let dst = plane * p.idx_plane + t - p.pos_lo;
        if (add) { out[dst] += pooled[o]; } else { out[dst] = pooled[o]; }
    }
}

@compute @workgroup_size(64)
fn max_unpool_planes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    scatter_plane(flat_id(wid, nwg, lid), false);
}

@compute @workgroup_size(64)
fn max_backward_planes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    scatter_plane(flat_id(wid, nwg, lid), true);
}

// Indices from this library's pooling with non-overlapping windows: every pooled element owns
// a distinct output position (its index lies in its own window), so a one-to-one scatter is
// race-free, and it serves both max_unpool2d and max_pool2d_backward (a sum of one term).
// `out` starts zeroed; `total` = pooled elements, `idx_plane` = unpooled plane length.
@compute @workgroup_size(64)
fn scatter_owned(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let j = flat_id(wid, nwg, lid);
    if (j >= p.total) { return; }
    let t = idx[j];
    if (t >= p.idx_plane) { return; }
    out[fast_div(fast_div(j, p.dv_ow), p.dv_oh) * p.idx_plane + t] = pooled[j];
}
