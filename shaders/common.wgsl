// Prepended to every convpool shader.

// The flat invocation index of a 1-D launch of 64-wide workgroups whose count may be folded
// into two dimensions when it exceeds the per-dimension limit (see `Gpu::grid` on the host).
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

// NaN test on the bits: WGSL lets compilers assume comparisons never see NaN.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
}
