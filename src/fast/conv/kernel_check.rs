//! The unit tests' check of one conv2d kernel, called directly (whether or not its `applies`
//! holds) against the plain reference: without a bias, and with one and a fused activation;
//! every element written; and twice for bitwise equality.

use super::{Dst, Kernel};
use crate::activation::Activation;
use crate::params::conv::{Conv2d, Padding};
use crate::tensor::Tensor;

/// A stride-1 undilated spec with `padding` and `groups`.
pub(in crate::fast) fn spec(padding: Padding, groups: usize) -> Conv2d {
    strided([1, 1], padding, groups)
}

/// An undilated spec with `stride`, `padding` and `groups`.
pub(super) fn strided(stride: [usize; 2], padding: Padding, groups: usize) -> Conv2d {
    Conv2d {
        stride,
        padding,
        groups,
        ..Default::default()
    }
}

/// Seeded values in [-1, 1).
pub(in crate::fast) fn tensor(shape: &[usize], seed: &mut u64) -> Tensor {
    let data = (0..shape.iter().product())
        .map(|_| {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (*seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// Runs `kernel` on seeded inputs of shapes `xs`, `ws` under `spec` and checks it as the
/// module says, within the fast path's tolerance (tests/common: `sum_atol`, rtol 1e-4).
pub(super) fn check(kernel: Kernel, xs: [usize; 4], ws: [usize; 4], spec: Conv2d, seed: &mut u64) {
    let (x, w, b) = (tensor(&xs, seed), tensor(&ws, seed), tensor(&[ws[0]], seed));
    let g = spec.geometry(x.shape(), w.shape(), Some(&[ws[0]])).unwrap();
    let what = format!("{xs:?} {ws:?} {spec:?}");
    let leaky = Activation::LeakyRelu { slope: 0.25 };
    for (bias, act) in [(None, Activation::Identity), (Some(&b), leaky)] {
        let conv = crate::cpu::conv2d(&x, &w, bias, &spec).unwrap();
        let want = crate::cpu::activation(&conv, act).unwrap();
        let what = format!("{what} bias {}", bias.is_some());
        check_runs(&what, &want, (g.output[1], ws[1] * ws[2] * ws[3]), |dst| {
            kernel(&g, x.data(), w.data(), bias.map(Tensor::data), (dst, act))
        });
    }
}

/// Runs `kernel` twice into an output of `want`'s size (row stride `width`) filled with NaN
/// first, and checks it against `want` (sums of `terms` terms), every element written, and
/// the second run's bits against the first's.
pub(super) fn check_runs(
    what: &str,
    want: &Tensor,
    (width, terms): (usize, usize),
    kernel: impl Fn(Dst),
) {
    let run = || {
        // NaN where nothing is written: every element must be.
        let mut out = vec![f32::NAN; want.data().len()];
        kernel(Dst::new(&mut out, width));
        out
    };
    let got = run();
    assert_sum_close(what, &got, want.data(), terms);
    assert_same_bits(what, &got, &run());
}

/// `got` against `want` within the fast path's tolerance for sums of `terms` terms
/// (tests/common: `sum_atol`, rtol 1e-4).
pub(in crate::fast) fn assert_sum_close(what: &str, got: &[f32], want: &[f32], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let atol = 1e-5 * (terms as f32 / 64.0).sqrt().max(1.0);
    for (i, (a, e)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - e).abs() <= atol + 1e-4 * e.abs(),
            "{what}: element {i}: got {a}, want {e}"
        );
    }
}

/// A second run's bits against the first's.
pub(in crate::fast) fn assert_same_bits(what: &str, first: &[f32], again: &[f32]) {
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(first), bits(again), "{what}: not deterministic");
}
