//! What the machine can do right now: its FP32 multiply-add rate, measured beside every round
//! of the report, so that a slow spell of a shared machine shows in the report itself.

use std::time::Instant;

/// The machine's FP32 multiply-add rate right now, in GFLOP/s, on all of rayon's threads:
/// register-only 8-lane fused multiply-adds (AVX2 + FMA; a plain loop elsewhere) for about
/// 50 ms. On a shared VM it moves with the host's load; the report measures it before every
/// round and at the end, so that a slow spell shows in the report itself. (8 lanes: on an
/// AVX-512 machine, half its 16-lane peak.)
pub fn fma_rate() -> f64 {
    use rayon::prelude::*;
    const ITERS: u64 = 20_000_000;
    let threads = rayon::current_num_threads() as u64;
    let start = Instant::now();
    let (flops, sink): (u64, f32) = (0..threads)
        .into_par_iter()
        .map(|t| fma_loop(ITERS, t as f32))
        .reduce(|| (0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    std::hint::black_box(sink);
    flops as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// Independent multiply-add chains per thread: enough to cover the FMA latency of two units.
const CHAINS: usize = 12;

/// `iters` steps of [`CHAINS`] independent multiply-adds; returns the flops done and a value
/// that depends on all of them.
fn fma_loop(iters: u64, seed: f32) -> (u64, f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return (iters * CHAINS as u64 * 16, unsafe { fma_avx2(iters, seed) });
    }
    let mut acc = [seed; CHAINS];
    for _ in 0..iters {
        for a in &mut acc {
            *a = std::hint::black_box(*a) * 0.999_999 + 1e-7;
        }
    }
    (iters * CHAINS as u64 * 2, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(seed); CHAINS];
    for _ in 0..iters {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut lanes = [0f32; 8];
    acc.iter()
        .map(|a| {
            _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
            lanes.iter().sum::<f32>()
        })
        .sum()
}

/// Bytes of each buffer [`copy_bandwidth`] streams: far past any CPU's caches.
const STREAM_BYTES: usize = 256 << 20;

/// The machine's copy bandwidth right now, in GB/s of bytes read plus bytes written: one
/// 256 MiB buffer copied into another on all of rayon's threads (one contiguous slice each),
/// best of five after a pass that faults both in. The memory limit a pooling kernel, which
/// reads its input once and writes its output once, can approach.
pub fn copy_bandwidth() -> f64 {
    use rayon::prelude::*;
    let len = STREAM_BYTES / 4;
    let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut dst = vec![0f32; len];
    let chunk = len
        .div_ceil(rayon::current_num_threads())
        .next_multiple_of(16);
    let mut best = f64::MAX;
    for pass in 0..6 {
        let start = Instant::now();
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
        if pass > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    2.0 * STREAM_BYTES as f64 / best / 1e9
}
