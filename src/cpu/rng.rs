//! The counter-based random numbers of stochastic pooling. The GPU shader (`shaders/pool2d.wgsl`,
//! `stochastic_uniform`) implements the same function bit for bit.

/// Chris Wellons' `lowbias32` integer hash.
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The uniform number in `[0, 1)` that stochastic pooling draws for output element `position`
/// (its flat NCHW index, modulo 2³²) under `seed`:
/// `h = mix32(seed_lo ^ mix32(seed_hi ^ mix32(position + 0x9e3779b9)))`, `u = (h >> 8) / 2²⁴`,
/// where `mix32` is `lowbias32` and all arithmetic wraps on 32 bits.
pub fn stochastic_uniform(seed: u64, position: u32) -> f32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let h = mix32(lo ^ mix32(hi ^ mix32(position.wrapping_add(0x9e37_79b9))));
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}
