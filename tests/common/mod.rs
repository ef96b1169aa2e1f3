//! Helpers shared by the integration tests: the shared `Gpu`, seeded random data and
//! comparisons that report the first mismatches with their coordinates.
#![allow(dead_code)]

use std::sync::OnceLock;

use convpool::{cpu, Conv2d, ConvTranspose2d, Error, Gpu, Padding, Pool2d, Tensor};

/// True when a missing adapter must fail the run (CI, or `CONVPOOL_REQUIRE_GPU=1`).
fn gpu_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var("CONVPOOL_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The `Gpu` shared by every test of a binary. In CI (or with `CONVPOOL_REQUIRE_GPU=1`) a
/// missing adapter panics; elsewhere the GPU tests print why and skip.
pub fn gpu() -> Option<Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Gpu::new().map_err(|e| e.to_string())) {
        Ok(g) => Some(g.clone()),
        Err(e) if gpu_required() => {
            panic!("a GPU adapter is required here (CI or CONVPOOL_REQUIRE_GPU=1): {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
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

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise (NaN matches NaN, equal infinities
/// match), reporting the first mismatches with their coordinates.
#[track_caller]
/// Absolute tolerance for outputs that are float sums of `terms` products of values in
/// [-1, 1): two summation orders differ by rounding that grows like √terms (1e-5 up to 64
/// terms; a 2,700-term reduction near cancellation was seen 2e-5 apart).
pub fn sum_atol(terms: usize) -> f32 {
    1e-5 * (terms as f32 / 64.0).sqrt().max(1.0)
}

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

/// A random convolution case: (x shape, w shape, Conv2d, bias?).
pub fn random_case(rng: &mut Rng) -> ([usize; 4], [usize; 4], Conv2d, bool) {
    let groups = [1, 1, 2, 3][rng.range(0, 3)];
    let cig = rng.range(1, 3);
    let cog = rng.range(1, 3);
    let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
    let stride = [rng.range(1, 3), rng.range(1, 3)];
    let dilation = [rng.range(1, 2), rng.range(1, 2)];
    let padding = match rng.range(0, 3) {
        0 => Padding::Valid,
        1 => Padding::Same,
        2 => Padding::Full,
        _ => Padding::Explicit {
            top: rng.range(0, 2),
            bottom: rng.range(0, 2),
            left: rng.range(0, 2),
            right: rng.range(0, 2),
        },
    };
    let h = rng.range((kh - 1) * dilation[0] + 1, 11);
    let w = rng.range((kw - 1) * dilation[1] + 1, 11);
    let x = [rng.range(1, 2), cig * groups, h, w];
    let wt = [cog * groups, cig, kh, kw];
    (
        x,
        wt,
        Conv2d {
            stride,
            padding,
            dilation,
            groups,
        },
        rng.bool(),
    )
}

/// `Conv2d` with the same explicit padding on every side.
fn pad(p: usize) -> Conv2d {
    Conv2d {
        padding: Padding::uniform(p),
        ..Default::default()
    }
}

/// Fixed awkward conv2d cases (x shape, w shape, spec, bias?) for every backend's sweep:
/// stride (2,3) vs (3,2), asymmetric padding, depthwise, 1×1, channel counts that are no
/// multiple of any tile, wide non-square kernels, and the fast CPU path's task splits.
pub fn fixed_conv_cases() -> Vec<([usize; 4], [usize; 4], Conv2d, bool)> {
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    vec![
        (
            [1, 3, 9, 11],
            [5, 3, 3, 2],
            Conv2d {
                stride: [2, 3],
                ..Default::default()
            },
            true,
        ),
        (
            [1, 3, 11, 9],
            [5, 3, 2, 3],
            Conv2d {
                stride: [3, 2],
                ..Default::default()
            },
            false,
        ),
        (
            [2, 4, 7, 8],
            [6, 4, 3, 3],
            Conv2d {
                padding: asym,
                ..Default::default()
            },
            true,
        ),
        (
            [2, 8, 9, 7],
            [8, 1, 3, 3],
            Conv2d {
                groups: 8,
                padding: Padding::Same,
                ..Default::default()
            },
            true,
        ),
        ([1, 7, 6, 5], [13, 7, 1, 1], Conv2d::default(), true),
        (
            [1, 67, 5, 6],
            [33, 67, 3, 3],
            Conv2d {
                padding: Padding::Same,
                ..Default::default()
            },
            true,
        ),
        (
            [1, 2, 13, 17],
            [3, 2, 1, 7],
            Conv2d {
                dilation: [1, 2],
                padding: Padding::Full,
                ..Default::default()
            },
            false,
        ),
        (
            [3, 6, 10, 10],
            [9, 2, 3, 3],
            Conv2d {
                groups: 3,
                stride: [2, 1],
                dilation: [2, 1],
                ..Default::default()
            },
            true,
        ),
        // Depthwise, 8 outputs of a row per invocation: a partial last group, stride 2 with
        // asymmetric padding and a 5-wide kernel; row dilation with "same" padding.
        (
            [2, 6, 11, 19],
            [6, 1, 3, 5],
            Conv2d {
                groups: 6,
                stride: [2, 2],
                padding: asym,
                ..Default::default()
            },
            true,
        ),
        (
            [1, 4, 9, 17],
            [4, 1, 3, 3],
            Conv2d {
                groups: 4,
                dilation: [2, 1],
                padding: Padding::Same,
                ..Default::default()
            },
            false,
        ),
        // Row segments with a column step: 5 taps, stride 3 (26 values per lane), and the
        // longest, 8 taps at stride 7 (57 values).
        (
            [2, 3, 7, 23],
            [4, 3, 3, 5],
            Conv2d {
                stride: [2, 3],
                padding: asym,
                ..Default::default()
            },
            true,
        ),
        (
            [1, 2, 5, 90],
            [3, 2, 2, 8],
            Conv2d {
                stride: [1, 7],
                ..Default::default()
            },
            false,
        ),
        ([2, 16, 9, 9], [24, 16, 1, 1], Conv2d::default(), true), // 1×1: input read directly
        (
            [1, 8, 12, 11],
            [8, 1, 3, 3],
            Conv2d {
                groups: 8,
                padding: Padding::Same,
                ..Default::default()
            },
            true,
        ),
        (
            [2, 6, 15, 13],
            [10, 3, 5, 3],
            Conv2d {
                groups: 2,
                stride: [2, 3],
                dilation: [2, 1],
                padding: Padding::Full,
            },
            false,
        ),
        // Bands of output rows (about 256 columns each, the last one shorter), one task each.
        ([1, 3, 30, 29], [5, 3, 3, 3], pad(1), true),
        ([2, 4, 20, 20], [6, 4, 1, 1], Conv2d::default(), true), // 1×1 read directly, banded
        ([1, 300, 12, 10], [1, 300, 3, 3], pad(1), true),        // a long reduction: narrower bands
        // One image, one band: lowered whole, the product split over chunks of output channels.
        ([1, 8, 6, 6], [70, 8, 3, 3], pad(1), true),
        (
            [1, 8, 6, 7],
            [70, 4, 3, 2],
            Conv2d {
                groups: 2,
                ..pad(1)
            },
            true,
        ),
    ]
}

/// A random transposed convolution: (x shape, w shape, spec, bias?).
pub fn random_transpose_case(rng: &mut Rng) -> ([usize; 4], [usize; 4], ConvTranspose2d, bool) {
    let groups = [1, 1, 2, 3][rng.range(0, 3)];
    let (cig, cog) = (rng.range(1, 3), rng.range(1, 3));
    let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
    let stride = [rng.range(1, 3), rng.range(1, 3)];
    let dilation = [rng.range(1, 2), rng.range(1, 2)];
    let padding = [
        rng.range(0, (kh - 1) * dilation[0] / 2),
        rng.range(0, (kw - 1) * dilation[1] / 2),
    ];
    let output_padding = [
        rng.range(0, stride[0].max(dilation[0]) - 1),
        rng.range(0, stride[1].max(dilation[1]) - 1),
    ];
    let x = [
        rng.range(1, 2),
        cig * groups,
        rng.range(1, 8),
        rng.range(1, 8),
    ];
    let w = [cig * groups, cog, kh, kw];
    (
        x,
        w,
        ConvTranspose2d {
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        },
        rng.bool(),
    )
}

/// A random window that fits an input of spatial size `hw`, or `None`.
pub fn random_pool(rng: &mut Rng, hw: [usize; 2]) -> Option<Pool2d> {
    let kernel = [rng.range(1, 4), rng.range(1, 4)];
    let p = Pool2d {
        kernel,
        stride: [rng.range(1, 3), rng.range(1, 3)],
        padding: [rng.range(0, kernel[0] / 2), rng.range(0, kernel[1] / 2)],
        dilation: [rng.range(1, 2), rng.range(1, 2)],
        ceil_mode: rng.bool(),
        count_include_pad: rng.bool(),
    };
    p.geometry("test", &[1, 1, hw[0], hw[1]]).ok().map(|_| p)
}

/// The sweep: random windows plus the awkward fixed ones.
pub fn sweep(rng: &mut Rng) -> Vec<([usize; 4], Pool2d)> {
    let mut cases = Vec::new();
    while cases.len() < 30 {
        let xs = [
            rng.range(1, 2),
            rng.range(1, 3),
            rng.range(1, 11),
            rng.range(1, 11),
        ];
        if let Some(p) = random_pool(rng, [xs[2], xs[3]]) {
            cases.push((xs, p));
        }
    }
    let base = Pool2d::new([3, 3]);
    // Rows whose input and output widths are multiples of 4: the GPU's four-outputs-per-
    // invocation pooling kernels (every column shift into a vec4, dilation, ceil mode).
    let s2 = |k: usize, p: usize| Pool2d {
        stride: [2, 2],
        padding: [p, p],
        ..Pool2d::new([k, k])
    };
    cases.extend([
        ([1, 2, 8, 16], s2(2, 0)),
        ([2, 1, 9, 16], s2(3, 1)),
        (
            [1, 2, 5, 12],
            Pool2d {
                padding: [1, 1],
                ..base
            },
        ),
        (
            [1, 1, 6, 12],
            Pool2d {
                dilation: [2, 2],
                padding: [1, 1],
                ..Pool2d::new([2, 2])
            },
        ),
        (
            [1, 2, 7, 12],
            Pool2d {
                stride: [3, 3],
                ..base
            },
        ),
        (
            [1, 1, 8, 16],
            Pool2d {
                count_include_pad: false,
                ..s2(5, 2)
            },
        ),
        (
            [1, 1, 7, 16],
            Pool2d {
                ceil_mode: true,
                ..s2(3, 0)
            },
        ),
    ]);
    cases.extend([
        (
            [1, 2, 9, 11],
            Pool2d {
                stride: [2, 3],
                ..Pool2d::new([3, 2])
            },
        ),
        (
            [1, 2, 11, 9],
            Pool2d {
                stride: [3, 2],
                ..Pool2d::new([2, 3])
            },
        ),
        (
            [2, 3, 7, 7],
            Pool2d {
                stride: [2, 2],
                padding: [1, 1],
                ..base
            },
        ), // overlapping
        (
            [1, 2, 8, 8],
            Pool2d {
                stride: [3, 3],
                ..Pool2d::new([2, 2])
            },
        ), // gapped
        (
            [1, 2, 8, 7],
            Pool2d {
                stride: [2, 2],
                ceil_mode: true,
                ..base
            },
        ),
        (
            [1, 1, 6, 6],
            Pool2d {
                stride: [2, 2],
                padding: [1, 1],
                ceil_mode: true,
                count_include_pad: false,
                ..base
            },
        ),
        (
            [1, 2, 9, 10],
            Pool2d {
                dilation: [2, 3],
                padding: [1, 0],
                ..base
            },
        ),
        (
            [1, 1, 5, 13],
            Pool2d {
                padding: [0, 2],
                ..Pool2d::new([1, 5])
            },
        ),
    ]);
    cases
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
