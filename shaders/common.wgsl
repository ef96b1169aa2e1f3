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
