//! Helpers shared by the integration tests: the shared `Gpu`, seeded random data and
//! comparisons that report the first mismatches with their coordinates.
#![allow(dead_code)]

mod cases;
#[allow(unused_imports)] // not every test binary sweeps cases
pub use cases::*;

use std::sync::OnceLock;

use convpool::{cpu, Conv2d, ConvTranspose2d, Error, Gpu, Padding, Pool2d, Tensor};

/// True when a missing adapter must fail the run (CI, or `CONVPOOL_REQUIRE_GPU=1`).
fn gpu_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var("CONVPOOL_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The `Gpu` shared by every test of a binary. In CI (or with `CONVPOOL_REQUIRE_GPU=1`) a
/// missing adapter panics; elsewhere the GPU tests print why and skip. Where
/// `CONVPOOL_EXPECT_KERNELS` names a kernel family (`cpu` or `gpu`, as CI's reruns set it
/// beside `CONVPOOL_KERNELS`), a `Gpu` choosing from another family panics.
pub fn gpu() -> Option<Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Gpu::new().map_err(|e| e.to_string())) {
        Ok(g) => {
            assert_expected_family(g);
            Some(g.clone())
        }
        Err(e) if gpu_required() => {
            panic!("a GPU adapter is required here (CI or CONVPOOL_REQUIRE_GPU=1): {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// Panics unless `gpu` chooses from the family `CONVPOOL_EXPECT_KERNELS` names (if set).
#[track_caller]
pub fn assert_expected_family(gpu: &Gpu) {
    let Ok(expected) = std::env::var("CONVPOOL_EXPECT_KERNELS") else {
        return;
    };
    let want = match expected.to_lowercase().as_str() {
        "cpu" => convpool::KernelFamily::Cpu,
        "gpu" => convpool::KernelFamily::Gpu,
        other => panic!("CONVPOOL_EXPECT_KERNELS={other:?}: expected cpu or gpu"),
    };
    assert_eq!(
        gpu.kernel_family(),
        want,
        "CONVPOOL_EXPECT_KERNELS={expected} but the Gpu chooses from another family \
         (CONVPOOL_KERNELS={:?})",
        std::env::var("CONVPOOL_KERNELS").ok()
    );
}

/// SplitMix64: a tiny seeded generator, so every random case is reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    pub fn tensor(&mut self, shape: impl Into<Vec<usize>>) -> Tensor {
        let shape = shape.into();
        let n = shape.iter().product();
        Tensor::new(shape, (0..n).map(|_| self.f32()).collect()).unwrap()
    }
    /// Small integers in `-k..=k`, as f32: sums are exact and ties are frequent.
    pub fn int_tensor(&mut self, shape: impl Into<Vec<usize>>, k: i64) -> Tensor {
        let shape = shape.into();
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| (self.next_u64() % (2 * k as u64 + 1)) as i64 - k)
            .map(|v| v as f32)
            .collect();
        Tensor::new(shape, data).unwrap()
    }
}

/// NCHW coordinates of flat index `i` in `shape`.
pub fn coords(shape: &[usize], mut i: usize) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

/// Absolute tolerance for outputs that are float sums of `terms` products of values in
/// [-1, 1): two summation orders differ by rounding that grows like √terms (1e-5 up to 64
/// terms; a 2,700-term reduction near cancellation was seen 2e-5 apart).
pub fn sum_atol(terms: usize) -> f32 {
    1e-5 * (terms as f32 / 64.0).sqrt().max(1.0)
}

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise (NaN matches NaN, equal infinities
/// match), reporting the first mismatches with their coordinates.
#[track_caller]
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    let bad: Vec<String> = got
        .data()
        .iter()
        .zip(want.data())
        .enumerate()
        .filter(|&(_, (&a, &b))| {
            let same_special = (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b);
            !same_special && !approx::abs_diff_eq!(a, b, epsilon = atol + rtol * b.abs())
        })
        .map(|(i, (a, b))| format!("  at {:?}: got {a}, want {b}", coords(want.shape(), i)))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements differ (atol {atol}, rtol {rtol}); first ones:\n{}",
        bad.len(),
        want.len(),
        bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Asserts exact equality of two tensors (bitwise for floats), reporting the first mismatches.
#[track_caller]
pub fn assert_exact<T: convpool::Element>(what: &str, got: &Tensor<T>, want: &Tensor<T>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    let same = |a: &T, b: &T| bytemuck::bytes_of(a) == bytemuck::bytes_of(b);
    let bad: Vec<String> = got
        .data()
        .iter()
        .zip(want.data())
        .enumerate()
        .filter(|(_, (a, b))| !same(a, b))
        .map(|(i, (a, b))| format!("  at {:?}: got {a:?}, want {b:?}", coords(want.shape(), i)))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements differ; first ones:\n{}",
        bad.len(),
        want.len(),
        bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// `⟨a, b⟩` in f64.
pub fn dot(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.data()
        .iter()
        .zip(b.data())
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum()
}

/// Asserts that `r` is an `Error::Invalid` whose message names `op` and contains `needle`.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(r: convpool::Result<T>, op: &str, needle: &str) {
    match r {
        Err(e @ Error::Invalid { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(op), "message {msg:?} should name {op}");
            assert!(
                msg.contains(needle),
                "message {msg:?} should mention {needle:?}"
            );
        }
        other => panic!("expected an Invalid error from {op} mentioning {needle:?}, got {other:?}"),
    }
}

/// Runs mixed op number `k` on `x` (`[1, 4, 8, 8]`) and `w` (`[4, 4, 3, 3]`) on the GPU and
/// the CPU reference; returns both results.
pub fn mixed_op(gpu: &Gpu, k: usize, x: &Tensor, w: &Tensor, seed: u64) -> (Tensor, Tensor) {
    let (gx, gw) = (gpu.upload(x).unwrap(), gpu.upload(w).unwrap());
    let p = Pool2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Pool2d::new([3, 3])
    };
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let t = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        output_padding: [1, 1],
        ..Default::default()
    };
    match k % 8 {
        0 => (
            gpu.conv2d(&gx, &gw, None, &same)
                .unwrap()
                .download()
                .unwrap(),
            cpu::conv2d(x, w, None, &same).unwrap(),
        ),
        1 => (
            gpu.conv_transpose2d(&gx, &gw, None, &t)
                .unwrap()
                .download()
                .unwrap(),
            cpu::conv_transpose2d(x, w, None, &t).unwrap(),
        ),
        2 => (
            gpu.max_pool2d(&gx, &p).unwrap().0.download().unwrap(),
            cpu::max_pool2d(x, &p).unwrap().0,
        ),
        3 => (
            gpu.avg_pool2d(&gx, &p).unwrap().download().unwrap(),
            cpu::avg_pool2d(x, &p).unwrap(),
        ),
        4 => (
            gpu.stochastic_pool2d(&gx, &p, seed)
                .unwrap()
                .0
                .download()
                .unwrap(),
            cpu::stochastic_pool2d(x, &p, seed).unwrap().0,
        ),
        5 => {
            let (v, i) = gpu.max_pool2d(&gx, &p).unwrap();
            let (cv, ci) = cpu::max_pool2d(x, &p).unwrap();
            (
                gpu.max_unpool2d(&v, &i, [8, 8])
                    .unwrap()
                    .download()
                    .unwrap(),
                cpu::max_unpool2d(&cv, &ci, [8, 8]).unwrap(),
            )
        }
        6 => {
            let a = gpu.avg_pool2d(&gx, &p).unwrap();
            let ca = cpu::avg_pool2d(x, &p).unwrap();
            (
                gpu.avg_pool2d_backward(&a, &p, [8, 8])
                    .unwrap()
                    .download()
                    .unwrap(),
                cpu::avg_pool2d_backward(&ca, &p, [8, 8]).unwrap(),
            )
        }
        _ => {
            let a = gpu.avg_pool2d(&gx, &p).unwrap();
            let ca = cpu::avg_pool2d(x, &p).unwrap();
            (
                gpu.avg_unpool2d(&a, &p, [8, 8])
                    .unwrap()
                    .download()
                    .unwrap(),
                cpu::avg_unpool2d(&ca, &p, [8, 8]).unwrap(),
            )
        }
    }
}
