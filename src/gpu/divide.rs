//! Division by a runtime-constant divisor as a multiply and shifts (Granlund and Montgomery's
//! round-up method), for the shaders' `fast_div`: integer division does not vectorise on a CPU
//! driver such as lavapipe, and a pooling kernel spent more than half its time in it.

/// The magic of divisor `d` for `fast_div` in shaders/common.wgsl: `[m, sh1 | sh2 << 8]` with
/// `n / d = (t + ((n - t) >> sh1)) >> sh2`, `t = mulhi(m, n)`, exact for every `u32` `n`.
/// `d` of 0 (never divided by) is treated as 1.
pub(crate) fn magic(d: usize) -> [u32; 2] {
    let d = d.clamp(1, u32::MAX as usize) as u64;
    if d == 1 {
        return [1, 0]; // t = 0, then n >> 0 >> 0
    }
    let l = 64 - (d - 1).leading_zeros() as u64; // ceil(log2 d), 1..=32
    let m = ((1u64 << 32) * ((1u64 << l) - d)) / d + 1;
    [m as u32, 1 | ((l as u32 - 1) << 8)]
}

#[cfg(test)]
mod tests {
    use super::magic;

    /// The shader's arithmetic, in u32.
    fn fast_div(n: u32, [m, sh]: [u32; 2]) -> u32 {
        let t = ((m as u64 * n as u64) >> 32) as u32;
        (t + ((n - t) >> (sh & 0xff))) >> (sh >> 8)
    }

    #[test]
    fn matches_integer_division() {
        let mut ds: Vec<u32> = (1..=1000).collect();
        ds.extend([
            1023,
            1024,
            1025,
            65535,
            65536,
            65537,
            12544,
            3136,
            1 << 31,
            (1 << 31) + 1,
        ]);
        ds.extend([u32::MAX - 1, u32::MAX, 641, 6_700_417, 3 * (1 << 30)]);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut ns: Vec<u32> = vec![0, 1, 2, 3, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX];
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ns.push((seed >> 32) as u32);
            ns.push((seed >> 45) as u32);
        }
        for &d in &ds {
            let mg = magic(d as usize);
            for &n in ns
                .iter()
                .chain(&[d - 1, d, d.wrapping_add(1), d.wrapping_mul(7)])
            {
                assert_eq!(fast_div(n, mg), n / d, "{n} / {d}");
            }
        }
    }

    #[test]
    fn mulhi_by_halves_matches_u64() {
        // The shader's mulhi works on 16-bit halves; check that decomposition.
        let mulhi = |a: u32, b: u32| {
            let (a0, a1, b0, b1) = (a & 0xffff, a >> 16, b & 0xffff, b >> 16);
            let (lo, m1, m2) = (a0 * b0, a1 * b0, a0 * b1);
            let carry = ((lo >> 16) + (m1 & 0xffff) + (m2 & 0xffff)) >> 16;
            a1 * b1 + (m1 >> 16) + (m2 >> 16) + carry
        };
        let mut s = 12345u64;
        for _ in 0..100_000 {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            let (a, b) = ((s >> 32) as u32, s as u32);
            assert_eq!(mulhi(a, b), ((a as u64 * b as u64) >> 32) as u32);
        }
        assert_eq!(mulhi(u32::MAX, u32::MAX), u32::MAX - 1);
    }
}
