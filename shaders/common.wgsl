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
