//! Register blocks of 16 output channels × `COLS` output columns, shared by the direct
//! kernels that put output channels in the vectors (`direct_s2`, `transposed_s2`): their
//! 16×16 transpose into the channels' output rows, the weight packing's transpose, and the
//! zero-padded input rows their blocks broadcast from.

use std::arch::x86_64::*;
use std::ops::Range;

use super::Dst;

/// Output channels per vector.
pub(super) const LANES: usize = 16;
/// Output columns per register block (14 accumulators: with 28, the weight vectors and the
/// broadcasts no longer fit in the 32 registers, and the spills made the transposed kernel
/// 15% slower than GEMM + col2im).
pub(super) const COLS: usize = 14;

/// The rows `rows` of every `[h, w]` plane of `x`, each zero-padded into `len` floats of `xp`
/// (`[plane][row]`): `lead` zeros, the row, then zeros.
pub(super) fn pad_rows(
    x: &[f32],
    [h, w]: [usize; 2],
    rows: &Range<usize>,
    (lead, len): (usize, usize),
    xp: &mut [f32],
) {
    for (c, plane) in x.chunks_exact(h * w).enumerate() {
        for (l, y) in rows.clone().enumerate() {
            let dst = &mut xp[(c * rows.len() + l) * len..][..len];
            dst[..lead].fill(0.0);
            dst[lead..lead + w].copy_from_slice(&plane[y * w..][..w]);
            dst[lead + w..].fill(0.0);
        }
    }
}

/// The block `acc` (column `c` of 16 channels in `acc[c]`) stored into those channels' output
/// rows: channel `o`'s is row `first + o·stride` of `planes`, from column `c0` of `width`
/// (columns past the row are not written).
///
/// # Safety
/// AVX-512F must be present; the 16 rows lie inside `planes`, this thread's alone to write.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store_block(
    planes: Dst,
    acc: &[__m512; COLS],
    (first, stride, (c0, width)): (usize, usize, (usize, usize)),
) {
    let n = (width - c0).min(COLS);
    // SAFETY: AVX-512F (the caller's promise).
    let t = unsafe {
        transpose(std::array::from_fn(|c| {
            acc.get(c).copied().unwrap_or(_mm512_setzero_ps())
        }))
    };
    let mask = ((1u32 << n) - 1) as u16;
    for (o, v) in t.iter().enumerate() {
        let row = planes.at(first + o * stride, c0).ptr;
        // SAFETY: the first `n` floats from `row` lie in the row (the caller's promise;
        // `Dst::at` checked the row's start).
        unsafe { _mm512_mask_storeu_ps(row, mask, *v) };
    }
}

/// `dst[j·16 + i] = src[i·16 + j]` for the 16 × 16 blocks `src` and `dst`.
///
/// # Safety
/// AVX-512F must be present.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_block(src: &[f32], dst: &mut [f32]) {
    assert!(src.len() >= 256 && dst.len() >= 256);
    // SAFETY: in bounds (asserted above).
    unsafe {
        let rows: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(src.as_ptr().add(16 * i)));
        for (j, v) in transpose(rows).into_iter().enumerate() {
            _mm512_storeu_ps(dst.as_mut_ptr().add(16 * j), v);
        }
    }
}

/// The 16×16 transpose of `r` (`out[j]` lane `i` = `r[i]` lane `j`).
///
/// # Safety
/// AVX-512F must be present.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose(r: [__m512; 16]) -> [__m512; 16] {
    {
        // Pairs of rows interleaved, then pairs of pairs: `u[4k + m]` holds, in 128-bit lane
        // `L`, rows `4k … 4k + 3` of column `4L + m`.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (k, m) = (i / 4, i % 4);
            let (a, b) = (
                _mm512_castps_pd(t[4 * k + m / 2]),
                _mm512_castps_pd(t[4 * k + m / 2 + 2]),
            );
            _mm512_castpd_ps(if m % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        // Lanes regrouped: `v[m]` (`v[4 + m]`) holds lanes 0 and 2 (1 and 3) of rows 0–3 and
        // 4–7, `v[8 + m]` (`v[12 + m]`) those of rows 8–15.
        let v: [__m512; 16] = std::array::from_fn(|i| {
            let (half, odd, m) = (i / 8, (i / 4) % 2, i % 4);
            let (a, b) = (u[8 * half + m], u[8 * half + 4 + m]);
            if odd == 0 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            }
        });
        // Column `4L + m` gathers lane `L` of every row group.
        std::array::from_fn(|j| {
            let (lane, m) = (j / 4, j % 4);
            let (a, b) = (v[4 * (lane % 2) + m], v[8 + 4 * (lane % 2) + m]);
            if lane < 2 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_the_16x16_transpose() {
        if !super::super::avx512f() {
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut got = vec![0.0; 256];
        // SAFETY: AVX-512F is present (checked above).
        unsafe { transpose_block(&m, &mut got) };
        let want: Vec<f32> = (0..256).map(|k| m[(k % 16) * 16 + k / 16]).collect();
        assert_eq!(got, want);
    }
}
