// Prepended to every convpool shader.

// The flat index of a workgroup of a 1-D launch whose count may be folded into two or three
// dimensions when it exceeds the per-dimension limit (see `Gpu::grid` on the host).
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.z * nwg.y + wid.y) * nwg.x + wid.x;
}

// The flat invocation index, for 64-wide workgroups.
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return flat_group(wid, nwg) * 64u + lid;
}

// NaN test on the bits: WGSL lets compilers assume comparisons never see NaN.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
}

// The high 32 bits of a * b.
fn mulhi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let lo = a0 * b0;
    let m1 = a1 * b0;
    let m2 = a0 * b1;
    let carry = ((lo >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu)) >> 16u;
    return a1 * b1 + (m1 >> 16u) + (m2 >> 16u) + carry;
}

// n / d for every u32 n, given d's magic (multiplier, shift1 | shift2 << 8) from the host
// (`gpu::divide::magic`): a CPU driver such as lavapipe cannot vectorise integer division,
// and this is a few multiplies and shifts per lane instead.
fn fast_div(n: u32, dm: vec2<u32>) -> u32 {
    let t = mulhi(dm.x, n);
    return (t + ((n - t) >> (dm.y & 0xffu))) >> (dm.y >> 8u);
}

// An activation (kind: 0 identity, 1 ReLU, 2 LeakyReLU with slope a, 3 Clamp to [a, b],
// 4 sigmoid, 5 tanh), operation for operation the CPU's `Activation::apply` in the
// piecewise-linear cases. NaN propagates (tested on the bits, which no compiler may assume away).
// The activation kind compiled into a pipeline whose launcher fixes it (the same kind as its
// params' `act`), so that the switch below folds away; 255: taken from `kind` at run time.
override ACT_FIXED: u32 = 255u;

fn activate(v: f32, kind: u32, a: f32, b: f32) -> f32 {
    var k = kind;
    if (ACT_FIXED != 255u) { k = ACT_FIXED; }
    let nan = is_nan(v);
    switch k {
        case 1u: { return select(v, 0.0, v < 0.0 && !nan); }
        case 2u: { return select(v, v * a, v < 0.0 && !nan); }
        case 3u: { return select(select(v, a, v < a && !nan), b, v > b && !nan); }
        case 4u: { return 1.0 / (1.0 + exp(-v)); }
        case 5u: {
            let e = exp(-2.0 * abs(v));
            let t = (1.0 - e) / (1.0 + e);
            return select(t, -t, v < 0.0);
        }
        default: { return v; }
    }
}

// The gradient through an activation from the upstream gradient gy and the forward output y
// (the CPU's `Activation::grad`).
fn activate_grad(gy: f32, y: f32, kind: u32, a: f32, b: f32) -> f32 {
    switch kind {
        case 1u: { return select(0.0, gy, y > 0.0); }
        case 2u: { return select(gy * a, gy, y > 0.0); }
        case 3u: { return select(0.0, gy, y > a && y < b); }
        case 4u: { return gy * y * (1.0 - y); }
        case 5u: { return gy * (1.0 - y * y); }
        default: { return gy; }
    }
}
