//! The fast CPU path against the plain CPU reference, on the same sweeps as the GPU.

mod common;

use common::{
    assert_close, assert_exact, fixed_conv_cases, random_case, random_transpose_case, sum_atol,
    sweep, Rng,
};
use convpool::{cpu, fast, Activation, Conv2d, ConvTranspose2d, Padding, Pool2d, Tensor};

#[test]
fn fast_conv2d_matches_the_reference() {
    let mut rng = Rng::new(1);
    let mut cases: Vec<_> = (0..40).map(|_| random_case(&mut rng)).collect();
    cases.extend(fixed_conv_cases());
    for (i, (xs, ws, spec, with_bias)) in cases.into_iter().enumerate() {
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = with_bias.then(|| rng.tensor([ws[0]]));
        let got = fast::conv2d(&x, &w, b.as_ref(), &spec).unwrap();
        let want = cpu::conv2d(&x, &w, b.as_ref(), &spec).unwrap();
        assert_close(
            &format!("case {i}: {xs:?} {ws:?} {spec:?}"),
            &got,
            &want,
            sum_atol(ws[1] * ws[2] * ws[3]),
            1e-4,
        );
        assert_exact(
            &format!("case {i} twice"),
            &fast::conv2d(&x, &w, b.as_ref(), &spec).unwrap(),
            &got,
        );
    }
}

/// 3×3 stride-1 layers with enough channels and tiles, which the fast path runs as Winograd
/// F(2×2, 3×3): through the AVX-512 kernel where the CPU has it and the images' transformed
/// inputs fit (src/fast/conv/winograd_avx512.rs), else the portable one
/// (src/fast/conv/winograd.rs); the unit tests of both check the choice and the kernels on
/// their edge shapes.
#[test]
fn fast_conv2d_winograd_layers_match_the_reference() {
    let mut rng = Rng::new(3);
    let same = Conv2d {
        padding: Padding::uniform(1),
        ..Default::default()
    };
    for (xs, ws, spec) in [
        ([2, 32, 13, 11], [32, 32, 3, 3], same),
        (
            [1, 64, 14, 14],
            [48, 32, 3, 3],
            Conv2d { groups: 2, ..same },
        ),
        ([3, 40, 11, 10], [36, 40, 3, 3], Conv2d::default()),
        // More tiles (12 × 12) than one of the portable kernel's bands.
        ([1, 32, 24, 24], [32, 32, 3, 3], same),
    ] {
        let (x, w, b) = (rng.tensor(xs), rng.tensor(ws), rng.tensor([ws[0]]));
        let got = fast::conv2d(&x, &w, Some(&b), &spec).unwrap();
        let want = cpu::conv2d(&x, &w, Some(&b), &spec).unwrap();
        let what = format!("{xs:?} {ws:?} {spec:?}");
        assert_close(&what, &got, &want, sum_atol(ws[1] * 9), 1e-4);
        let again = fast::conv2d(&x, &w, Some(&b), &spec).unwrap();
        assert_exact(&format!("{what} twice"), &again, &got);
    }
}

/// Layers with few input channels (network stems), which the fast path runs as a direct
/// convolution on AVX-512 machines (src/fast/conv/stem.rs, whose unit tests check the choice
/// and the kernel on its edge shapes), with and without a fused activation.
#[test]
fn fast_conv2d_stem_layers_match_the_reference() {
    let mut rng = Rng::new(4);
    let spec = |stride, p| Conv2d {
        stride,
        padding: Padding::uniform(p),
        ..Default::default()
    };
    for (xs, ws, spec) in [
        ([1, 3, 37, 45], [64, 3, 7, 7], spec([2, 2], 3)),
        ([2, 3, 9, 33], [24, 3, 3, 3], spec([1, 1], 1)),
        (
            [1, 4, 6, 40],
            [8, 2, 3, 2],
            Conv2d {
                groups: 2,
                ..spec([1, 2], 1)
            },
        ),
    ] {
        let (x, w, b) = (rng.tensor(xs), rng.tensor(ws), rng.tensor([ws[0]]));
        let what = format!("{xs:?} {ws:?} {spec:?}");
        let want = cpu::conv2d(&x, &w, Some(&b), &spec).unwrap();
        let got = fast::conv2d(&x, &w, Some(&b), &spec).unwrap();
        assert_close(&what, &got, &want, sum_atol(ws[1] * ws[2] * ws[3]), 1e-4);
        let relu = fast::conv2d_act(&x, &w, Some(&b), &spec, Activation::Relu).unwrap();
        let want_relu = cpu::activation(&got, Activation::Relu).unwrap();
        assert_exact(&format!("{what} relu"), &relu, &want_relu);
    }
}

#[test]
fn fast_conv_transpose2d_matches_the_reference() {
    let mut rng = Rng::new(2);
    let mut cases: Vec<_> = (0..40).map(|_| random_transpose_case(&mut rng)).collect();
    cases.push((
        [2, 8, 7, 6],
        [8, 4, 4, 4],
        ConvTranspose2d {
            stride: [2, 2],
            padding: [1, 1],
            groups: 2,
            ..Default::default()
        },
        true,
    ));
    // Chunks of output channels per task: several per image, one per (image, group), and one
    // channel at a time where a channel's taps fill the block.
    let s2 = ConvTranspose2d {
        stride: [2, 2],
        ..Default::default()
    };
    cases.extend([
        ([1, 6, 5, 5], [6, 10, 3, 3], s2, true),
        (
            [2, 6, 5, 4],
            [6, 5, 2, 3],
            ConvTranspose2d { groups: 2, ..s2 },
            true,
        ),
        ([1, 2, 100, 100], [2, 4, 5, 5], s2, false),
    ]);
    for (i, (xs, ws, spec, with_bias)) in cases.into_iter().enumerate() {
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = with_bias.then(|| rng.tensor([ws[1] * spec.groups]));
        let got = fast::conv_transpose2d(&x, &w, b.as_ref(), &spec).unwrap();
        let want = cpu::conv_transpose2d(&x, &w, b.as_ref(), &spec).unwrap();
        assert_close(
            &format!("case {i}: {xs:?} {ws:?} {spec:?}"),
            &got,
            &want,
            sum_atol(ws[1] * ws[2] * ws[3]),
            1e-4,
        );
        assert_exact(
            &format!("case {i} twice"),
            &fast::conv_transpose2d(&x, &w, b.as_ref(), &spec).unwrap(),
            &got,
        );
    }
}

#[test]
fn fast_pooling_matches_the_reference() {
    let mut rng = Rng::new(3);
    let mut cases = sweep(&mut rng);
    // Whole disjoint windows (the one-pass average): 2×2 with a row and a column unread, a
    // non-square kernel, and a ceil-mode partial window, which takes the general path.
    cases.extend([
        ([2, 3, 9, 11], Pool2d::new([2, 2])),
        ([1, 2, 6, 9], Pool2d::new([2, 3])),
        ([1, 2, 9, 9], Pool2d::new([3, 3])),
        (
            [1, 1, 5, 7],
            Pool2d {
                ceil_mode: true,
                ..Pool2d::new([2, 2])
            },
        ),
    ]);
    for (i, (xs, p)) in cases.into_iter().enumerate() {
        let x = if i % 2 == 0 {
            rng.int_tensor(xs, 3)
        } else {
            rng.tensor(xs)
        };
        let (v, idx) = fast::max_pool2d(&x, &p).unwrap();
        let (rv, ridx) = cpu::max_pool2d(&x, &p).unwrap();
        assert_exact(&format!("case {i} max"), &v, &rv);
        assert_exact(&format!("case {i} idx"), &idx, &ridx);
        assert_close(
            &format!("case {i} avg"),
            &fast::avg_pool2d(&x, &p).unwrap(),
            &cpu::avg_pool2d(&x, &p).unwrap(),
            0.0,
            0.0,
        );
        let size = [xs[2], xs[3]];
        assert_exact(
            &format!("case {i} unpool"),
            &fast::max_unpool2d(&v, &idx, size).unwrap(),
            &cpu::max_unpool2d(&rv, &ridx, size).unwrap(),
        );
        // The backward passes: overlapping windows sum into one position, in the same order.
        let g = rng.tensor(v.shape().to_vec());
        assert_exact(
            &format!("case {i} max_pool2d_backward"),
            &fast::max_pool2d_backward(&g, &idx, size).unwrap(),
            &cpu::max_pool2d_backward(&g, &ridx, size).unwrap(),
        );
        let gu = rng.tensor(x.shape().to_vec());
        assert_exact(
            &format!("case {i} max_unpool2d_backward"),
            &fast::max_unpool2d_backward(&gu, &idx).unwrap(),
            &cpu::max_unpool2d_backward(&gu, &ridx).unwrap(),
        );
    }
    // NaN handling and bad indices, as the reference.
    let x = convpool::Tensor::new([1, 1, 2, 2], vec![1.0, f32::NAN, 3.0, f32::NAN]).unwrap();
    let (v, i) = fast::max_pool2d(&x, &Pool2d::new([2, 2])).unwrap();
    assert!(v.data()[0].is_nan() && i.data()[0] == 3);
    let bad = convpool::Tensor::<u32>::new([1, 1, 1, 1], vec![4]).unwrap();
    assert!(fast::max_unpool2d(&v, &bad, [2, 2])
        .unwrap_err()
        .to_string()
        .contains("index 4 at position 0"));
    assert!(fast::max_pool2d_backward(&v, &bad, [2, 2])
        .unwrap_err()
        .to_string()
        .contains("index 4 at position 0"));
    assert!(fast::max_unpool2d_backward(&x, &bad)
        .unwrap_err()
        .to_string()
        .contains("index 4 at position 0"));
}

#[test]
fn fast_disjoint_pooling_keeps_the_references_nan_and_infinity_rules() {
    // 2×2 windows: a NaN (the last one wins), all −∞ (the first tap), ties (the first), and
    // +∞; 3×3 windows through the general loop of the same path.
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    #[rustfmt::skip]
    let data = vec![
        1.0, nan,  -inf, -inf,  2.0, 2.0,  inf, 0.0,
        nan, 3.0,  -inf, -inf,  2.0, 1.0,  5.0, 9.0,
        0.0, -0.0, 4.0, 4.0,    nan, nan,  1.0, 1.0,
        -0.0, 0.0, 4.0, 3.0,    nan, 7.0,  1.0, 2.0,
    ];
    for shape in [[1, 1, 4, 8], [2, 1, 2, 8]] {
        let x = Tensor::new(shape, data.clone()).unwrap();
        for p in [
            Pool2d::new([2, 2]),
            Pool2d::new([1, 2]),
            Pool2d::new([2, 4]),
        ] {
            let (v, i) = fast::max_pool2d(&x, &p).unwrap();
            let (rv, ri) = cpu::max_pool2d(&x, &p).unwrap();
            assert_exact(&format!("{shape:?} {p:?} values"), &v, &rv);
            assert_exact(&format!("{shape:?} {p:?} indices"), &i, &ri);
            let a = fast::avg_pool2d(&x, &p).unwrap();
            assert_close(
                &format!("{shape:?} {p:?} avg"),
                &a,
                &cpu::avg_pool2d(&x, &p).unwrap(),
                0.0,
                0.0,
            );
        }
    }
}
