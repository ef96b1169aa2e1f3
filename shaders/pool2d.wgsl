// Pooling: one invocation per pooled element walks its window's in-bounds taps in row-major
// order (the same skeleton for max, average and stochastic) and writes value and index in
// the same dispatch. Indices are flat `y * in_w + x` positions within the (whole) input plane.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(64)
fn max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = flat_id(wid, nwg, lid);
    if (o >= p.total) { return; }
    let win = window_of(o);
    let base = win.plane * p.in_h * p.in_w;
    var best = bitcast<f32>(0xff800000u); // -inf
    var arg = NONE;
    for (var ky = 0u; ky < win_h(); ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        if (yy < 0 || yy >= i32(p.in_h)) { continue; }
        for (var kx = 0u; kx < win_w(); kx++) {
            let xx = win.x0 + i32(kx * p.d_w);
            if (xx < 0 || xx >= i32(p.in_w)) { continue; }
            let pos = u32(yy) * p.in_w + u32(xx);
            let v = x[in_at(base, pos)];
            // PyTorch: the index starts at the first in-bounds tap; a strictly greater value
            // (so the first maximum wins ties) or any NaN takes over.
            if (arg == NONE) { arg = pos; }
            if (v > best || is_nan(v)) {
                best = v;
                arg = pos;
            }
        }
    }
    vals[o] = best;
    idx[o] = arg;
}

@compute @workgroup_size(64)
fn avg_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = flat_id(wid, nwg, lid);
    if (o >= p.total) { return; }
    let win = window_of(o);
    let base = win.plane * p.in_h * p.in_w;
    var sum = 0.0;
    for (var ky = 0u; ky < win_h(); ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        if (yy < 0 || yy >= i32(p.in_h)) { continue; }
        for (var kx = 0u; kx < win_w(); kx++) {
            let xx = win.x0 + i32(kx * p.d_w);
            if (xx < 0 || xx >= i32(p.in_w)) { continue; }
            sum += x[in_at(base, u32(yy) * p.in_w + u32(xx))];
        }
    }
    vals[o] = sum / divisor(win);
}

// The counter-based uniform of stochastic pooling; `stochastic_uniform` in src/cpu/rng.rs is
// the same function.
fn mix32(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

fn stochastic_uniform(position: u32) -> f32 {
    let h = mix32(p.seed_lo ^ mix32(p.seed_hi ^ mix32(position + 0x9e3779b9u)));
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(64)
fn stochastic_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let o = flat_id(wid, nwg, lid);
    if (o >= p.total) { return; }
    let win = window_of(o);
    let base = win.plane * p.in_h * p.in_w;
    // First walk: first tap, first NaN, first maximum, sum of max(a, 0).
    var first = NONE;
    var nan_at = NONE;
    var best = 0.0;
    var best_at = NONE;
    var sum = 0.0;
    for (var ky = 0u; ky < win_h(); ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        if (yy < 0 || yy >= i32(p.in_h)) { continue; }
        for (var kx = 0u; kx < win_w(); kx++) {
            let xx = win.x0 + i32(kx * p.d_w);
            if (xx < 0 || xx >= i32(p.in_w)) { continue; }
            let pos = u32(yy) * p.in_w + u32(xx);
            let v = x[in_at(base, pos)];
            if (first == NONE) { first = pos; best = v; best_at = pos; }
            if (is_nan(v)) {
                if (nan_at == NONE) { nan_at = pos; }
            } else {
                if (v > best) { best = v; best_at = pos; }
                if (v > 0.0) { sum += v; }
            }
        }
    }
    if (nan_at != NONE) {
        vals[o] = bitcast<f32>(0x7fc00000u);
        idx[o] = nan_at;
        return;
    }
    if (sum == 0.0) {
        vals[o] = 0.0;
        idx[o] = first;
        return;
    }
    if (is_inf(sum)) {
        vals[o] = best;
        idx[o] = best_at;
        return;
    }
    // Second walk: the first tap whose running sum exceeds u * sum.
    let threshold = stochastic_uniform(o + p.pos_base) * sum;
    var run = 0.0;
    var pick = first;
    var pick_v = 0.0;
    var done = false;
    for (var ky = 0u; ky < win_h() && !done; ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        if (yy < 0 || yy >= i32(p.in_h)) { continue; }
        for (var kx = 0u; kx < win_w(); kx++) {
            let xx = win.x0 + i32(kx * p.d_w);
            if (xx < 0 || xx >= i32(p.in_w)) { continue; }
            let pos = u32(yy) * p.in_w + u32(xx);
            let v = x[in_at(base, pos)];
            if (v > 0.0) {
                run += v;
                pick = pos;
                pick_v = v;
                if (run > threshold) { done = true; break; }
            }
        }
    }
    vals[o] = pick_v;
    idx[o] = pick;
}

@compute @workgroup_size(64)
fn stochastic_expectation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let o = flat_id(wid, nwg, lid);
    if (o >= p.total) { return; }
    let win = window_of(o);
    let base = win.plane * p.in_h * p.in_w;
    var s1 = 0.0;
    var s2 = 0.0;
    var nan = false;
    for (var ky = 0u; ky < win_h(); ky++) {
        let yy = win.y0 + i32(ky * p.d_h);
        if (yy < 0 || yy >= i32(p.in_h)) { continue; }
        for (var kx = 0u; kx < win_w(); kx++) {
            let xx = win.x0 + i32(kx * p.d_w);
            if (xx < 0 || xx >= i32(p.in_w)) { continue; }
            let v = x[in_at(base, u32(yy) * p.in_w + u32(xx))];
            if (is_nan(v)) { nan = true; }
            if (v > 0.0) { s1 += v; s2 += v * v; }
        }
    }
    var r = 0.0;
    if (nan) { r = bitcast<f32>(0x7fc00000u); } else if (s1 != 0.0) { r = s2 / s1; }
    vals[o] = r;
}
