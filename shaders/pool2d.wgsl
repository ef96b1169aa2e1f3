// Pooling: one invocation per pooled element walks its window's taps in row-major order (the
// same skeleton for max, average and stochastic) and writes value and index in the same
// dispatch. Indices are flat `y * in_w + x` positions within the (whole) input plane.
// The walks are branch-free: a tap outside the input reads nothing that counts (its value is
// masked with `select`), which a CPU driver such as lavapipe runs much faster than per-tap
// control flow (W8 on lavapipe: 62 -> 44 ms).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

// Tap (ky, kx) of `win`: whether it lies inside the input, its flat position in the plane
// (0 outside), and its value (0 outside; the load then reads element 0 of the bound input).
struct Tap { ok: bool, pos: u32, v: f32 }

fn tap(win: Window, base: u32, ky: u32, kx: u32) -> Tap {
    let yy = win.y0 + i32(ky * p.d_h);
    let xx = win.x0 + i32(kx * p.d_w);
    let ok = yy >= 0 && yy < i32(p.in_h) && xx >= 0 && xx < i32(p.in_w);
    let pos = select(0u, u32(yy) * p.in_w + u32(xx), ok);
    let v = x[select(0u, in_at(base, pos), ok)];
    return Tap(ok, pos, select(0.0, v, ok));
}

@compute @workgroup_size(64)
fn max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let o = flat_id(wid, nwg, lid);
    if (o >= p.total) { return; }
    let win = window_of(o);
    let base = win.plane * p.in_h * p.in_w;
    var m = Max(bitcast<f32>(0xff800000u), NONE); // -inf
    for (var ky = 0u; ky < win_h(); ky++) {
        for (var kx = 0u; kx < win_w(); kx++) {
            let t = tap(win, base, ky, kx);
            m = max_tap(m, t.ok, t.v, t.pos);
        }
    }
    vals[o] = m.v;
    idx[o] = m.at;
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
        for (var kx = 0u; kx < win_w(); kx++) {
            let t = tap(win, base, ky, kx);
            sum = select(sum, sum + t.v, t.ok);
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
        for (var kx = 0u; kx < win_w(); kx++) {
            let t = tap(win, base, ky, kx);
            let is_first = t.ok && first == NONE;
            first = select(first, t.pos, is_first);
            best = select(best, t.v, is_first);
            best_at = select(best_at, t.pos, is_first);
            let nan = t.ok && is_nan(t.v);
            nan_at = select(nan_at, t.pos, nan && nan_at == NONE);
            let number = t.ok && !is_nan(t.v);
            let better = number && t.v > best;
            best = select(best, t.v, better);
            best_at = select(best_at, t.pos, better);
            sum = select(sum, sum + t.v, number && t.v > 0.0);
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
    for (var ky = 0u; ky < win_h(); ky++) {
        for (var kx = 0u; kx < win_w(); kx++) {
            let t = tap(win, base, ky, kx);
            let live = t.ok && !done && t.v > 0.0;
            run = select(run, run + t.v, live);
            pick = select(pick, t.pos, live);
            pick_v = select(pick_v, t.v, live);
            done = done || (live && run > threshold);
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
        for (var kx = 0u; kx < win_w(); kx++) {
            let t = tap(win, base, ky, kx);
            nan = nan || (t.ok && is_nan(t.v));
            let positive = t.ok && t.v > 0.0;
            s1 = select(s1, s1 + t.v, positive);
            s2 = select(s2, s2 + t.v * t.v, positive);
        }
    }
    var r = 0.0;
    if (nan) { r = bitcast<f32>(0x7fc00000u); } else if (s1 != 0.0) { r = s2 / s1; }
    vals[o] = r;
}
