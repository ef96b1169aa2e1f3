//! conv2d and conv_transpose2d: the worked example, output sizes, the matrix view, the adjoint
//! identity, GPU vs CPU sweeps, determinism and bad input.

mod common;

use common::{
    assert_close, assert_exact, dot, expect_invalid, fixed_conv_cases, gpu, random_case,
    random_transpose_case, sum_atol, Rng,
};
use convpool::{cpu, Conv2d, ConvAlgo, ConvTranspose2d, Error, Padding, Tensor};

/// Every kernel variant: each is checked against the CPU reference.
const ALGOS: [ConvAlgo; 6] = ConvAlgo::ALL;

#[rustfmt::skip]
const IMAGE: [f32; 25] = [
    1., 1., 1., 0., 0.,
    0., 1., 1., 1., 0.,
    0., 0., 1., 1., 1.,
    0., 0., 1., 1., 0.,
    0., 1., 1., 0., 0.,
];
const KERNEL: [f32; 9] = [1., 0., 1., 0., 1., 0., 1., 0., 1.];

fn worked() -> (Tensor, Tensor) {
    (
        Tensor::new([1, 1, 5, 5], IMAGE.to_vec()).unwrap(),
        Tensor::new([1, 1, 3, 3], KERNEL.to_vec()).unwrap(),
    )
}

#[test]
fn worked_example_cpu_and_gpu() {
    let (x, k) = worked();
    let valid = Conv2d::default();
    let want = Tensor::new([1, 1, 3, 3], vec![4., 3., 4., 2., 4., 3., 2., 3., 4.]).unwrap();
    assert_exact(
        "cpu valid",
        &cpu::conv2d(&x, &k, None, &valid).unwrap(),
        &want,
    );
    let strided = Conv2d {
        stride: [2, 2],
        ..Default::default()
    };
    let want2 = Tensor::new([1, 1, 2, 2], vec![4., 4., 2., 4.]).unwrap();
    assert_exact(
        "cpu stride 2",
        &cpu::conv2d(&x, &k, None, &strided).unwrap(),
        &want2,
    );
    let Some(gpu) = gpu() else { return };
    let (gx, gk) = (gpu.upload(&x).unwrap(), gpu.upload(&k).unwrap());
    let y = gpu
        .conv2d(&gx, &gk, None, &valid)
        .unwrap()
        .download()
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    assert_exact("gpu valid", &y, &want);
    assert_exact(
        "gpu stride 2",
        &gpu.conv2d(&gx, &gk, None, &strided)
            .unwrap()
            .download()
            .unwrap(),
        &want2,
    );
}

#[test]
fn output_sizes_of_padding_modes() {
    // (n, k, stride, padding) -> expected output size, odd and even kernels.
    let cases = [
        (5, 3, 1, Padding::Valid, 3),
        (5, 3, 1, Padding::Same, 5),
        (5, 3, 1, Padding::Full, 7),
        (5, 4, 1, Padding::Valid, 2),
        (5, 4, 1, Padding::Same, 5),
        (5, 4, 1, Padding::Full, 8),
        (6, 2, 1, Padding::Same, 6),
        (7, 3, 2, Padding::Same, 4),
        (8, 4, 3, Padding::Same, 3),
        (5, 3, 2, Padding::Full, 4),
        (5, 1, 1, Padding::Full, 5),
    ];
    for (n, k, s, padding, want) in cases {
        let spec = Conv2d {
            stride: [s, s],
            padding,
            ..Default::default()
        };
        let g = spec.geometry(&[1, 1, n, n], &[1, 1, k, k], None).unwrap();
        assert_eq!(g.output, [want, want], "n={n} k={k} s={s} {padding:?}");
        let x = Tensor::new([1, 1, n, n], vec![1.0; n * n]).unwrap();
        let w = Tensor::new([1, 1, k, k], vec![1.0; k * k]).unwrap();
        assert_eq!(
            cpu::conv2d(&x, &w, None, &spec).unwrap().shape(),
            &[1, 1, want, want]
        );
    }
    // Same with an even kernel puts the odd padding at the bottom/right.
    let g = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    }
    .geometry(&[1, 1, 6, 6], &[1, 1, 4, 4], None)
    .unwrap();
    assert_eq!((g.pad_before, g.pad_after), ([1, 1], [2, 2]));
    // Full padding with dilation spans (k-1)*d.
    let g = Conv2d {
        padding: Padding::Full,
        dilation: [2, 3],
        ..Default::default()
    }
    .geometry(&[1, 1, 5, 5], &[1, 1, 3, 3], None)
    .unwrap();
    assert_eq!((g.pad_before, g.output), ([4, 6], [9, 11]));
}

/// `C · v` for a `[rows, cols]` matrix.
fn matvec(m: &Tensor, v: &[f32]) -> Vec<f32> {
    let cols = m.shape()[1];
    m.data()
        .chunks(cols)
        .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

/// `Cᵀ · v`.
fn matvec_t(m: &Tensor, v: &[f32]) -> Vec<f32> {
    let cols = m.shape()[1];
    let mut out = vec![0.0; cols];
    for (row, &s) in m.data().chunks(cols).zip(v) {
        for (o, &a) in out.iter_mut().zip(row) {
            *o += a * s;
        }
    }
    out
}

#[test]
fn matrix_view_of_convolution_and_its_transpose() {
    let mut rng = Rng::new(7);
    let cases = [
        ([1, 1, 4, 4], [1, 1, 3, 3], [1, 1], [0, 0], [1, 1], 1),
        ([1, 2, 5, 4], [3, 2, 2, 3], [2, 1], [1, 0], [1, 1], 1),
        ([2, 4, 5, 5], [4, 2, 3, 2], [2, 2], [1, 1], [1, 2], 2),
        ([1, 3, 7, 6], [3, 1, 3, 3], [3, 2], [2, 1], [2, 1], 3),
    ];
    for (xs, ws, stride, pad, dilation, groups) in cases {
        let w = rng.int_tensor(ws, 3);
        let x = rng.int_tensor(xs, 3);
        let spec = Conv2d {
            stride,
            padding: Padding::Explicit {
                top: pad[0],
                bottom: pad[0],
                left: pad[1],
                right: pad[1],
            },
            dilation,
            groups,
        };
        let c = cpu::conv2d_matrix(&xs, &w, &spec).unwrap();
        let y = cpu::conv2d(&x, &w, None, &spec).unwrap();
        assert_eq!(
            y.data(),
            matvec(&c, x.data()).as_slice(),
            "conv2d == C·x for {xs:?} {ws:?}"
        );
        let t = ConvTranspose2d {
            stride,
            padding: pad,
            output_padding: [0, 0],
            dilation,
            groups,
        };
        let gy = rng.int_tensor(y.shape(), 3);
        // Pick output_padding so the transposed output has the forward input's size.
        let plain = cpu::conv_transpose2d(&gy, &w, None, &t).unwrap();
        let op = [xs[2] - plain.shape()[2], xs[3] - plain.shape()[3]];
        let t = ConvTranspose2d {
            output_padding: op,
            ..t
        };
        let gx = cpu::conv_transpose2d(&gy, &w, None, &t).unwrap();
        assert_eq!(gx.shape(), &xs);
        assert_eq!(
            gx.data(),
            matvec_t(&c, gy.data()).as_slice(),
            "conv_transpose2d == Cᵀ·y for {xs:?} {ws:?}"
        );
        if let Some(gpu) = gpu() {
            let (gw, ggy) = (gpu.upload(&w).unwrap(), gpu.upload(&gy).unwrap());
            let on_gpu = gpu
                .conv_transpose2d(&ggy, &gw, None, &t)
                .unwrap()
                .download()
                .unwrap();
            assert_exact("gpu conv_transpose2d == Cᵀ·y (integers)", &on_gpu, &gx);
            let gx_ = gpu.upload(&x).unwrap();
            assert_exact(
                "gpu conv2d == C·x (integers)",
                &gpu.conv2d(&gx_, &gw, None, &spec)
                    .unwrap()
                    .download()
                    .unwrap(),
                &y,
            );
        }
    }
}

#[test]
fn conv2d_gpu_matches_cpu_on_a_seeded_sweep() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(2024);
    let mut cases: Vec<_> = (0..40).map(|_| random_case(&mut rng)).collect();
    cases.extend(fixed_conv_cases());
    for (i, (xs, ws, spec, with_bias)) in cases.into_iter().enumerate() {
        let x = rng.tensor(xs);
        let w = rng.tensor(ws);
        let b = with_bias.then(|| rng.tensor([ws[0]]));
        let want = cpu::conv2d(&x, &w, b.as_ref(), &spec).unwrap();
        let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        for algo in ALGOS {
            let got = gpu
                .conv2d_with(&gx, &gw, gb.as_ref(), &spec, algo)
                .unwrap()
                .download()
                .unwrap();
            let what = format!("case {i} {algo:?}: x {xs:?} w {ws:?} {spec:?} bias {with_bias}");
            assert_close(&what, &got, &want, sum_atol(ws[1] * ws[2] * ws[3]), 1e-4);
        }
    }
}

#[test]
fn conv_transpose2d_gpu_matches_cpu_on_a_seeded_sweep() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(99);
    let mut cases: Vec<_> = (0..40).map(|_| random_transpose_case(&mut rng)).collect();
    cases.extend([
        // Row segments in phases: column taps one input column apart whose kernel columns
        // fall by the stride (dilation 1) or by 1 (dilation = stride).
        (
            [1, 3, 5, 9],
            [3, 2, 2, 4],
            ConvTranspose2d {
                stride: [1, 2],
                dilation: [1, 2],
                padding: [0, 1],
                ..Default::default()
            },
            true,
        ),
        (
            [1, 4, 5, 6],
            [4, 3, 4, 4],
            ConvTranspose2d {
                stride: [2, 2],
                padding: [1, 1],
                ..Default::default()
            },
            true,
        ),
        (
            [1, 3, 6, 5],
            [3, 2, 3, 2],
            ConvTranspose2d {
                stride: [2, 3],
                output_padding: [1, 2],
                ..Default::default()
            },
            false,
        ),
        (
            [1, 3, 5, 6],
            [3, 2, 2, 3],
            ConvTranspose2d {
                stride: [3, 2],
                padding: [1, 0],
                ..Default::default()
            },
            true,
        ),
        (
            [2, 6, 4, 4],
            [6, 1, 3, 3],
            ConvTranspose2d {
                groups: 6,
                stride: [2, 2],
                ..Default::default()
            },
            true,
        ),
        (
            [1, 65, 3, 3],
            [65, 17, 2, 2],
            ConvTranspose2d {
                stride: [2, 2],
                ..Default::default()
            },
            true,
        ),
        (
            [1, 2, 4, 5],
            [2, 3, 3, 3],
            ConvTranspose2d {
                dilation: [2, 3],
                output_padding: [1, 2],
                ..Default::default()
            },
            false,
        ),
    ]);
    for (i, (xs, ws, spec, with_bias)) in cases.into_iter().enumerate() {
        let x = rng.tensor(xs);
        let w = rng.tensor(ws);
        let c_out = ws[1] * spec.groups;
        let b = with_bias.then(|| rng.tensor([c_out]));
        let want = cpu::conv_transpose2d(&x, &w, b.as_ref(), &spec).unwrap();
        let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        for algo in ALGOS {
            let got = gpu
                .conv_transpose2d_with(&gx, &gw, gb.as_ref(), &spec, algo)
                .unwrap()
                .download()
                .unwrap();
            let what = format!("case {i} {algo:?}: x {xs:?} w {ws:?} {spec:?} bias {with_bias}");
            assert_close(&what, &got, &want, 1e-5, 1e-4);
        }
    }
}

#[test]
fn adjoint_identity_on_the_gpu() {
    // <conv2d(x), y> == <x, conv_transpose2d(y)> with the same weight.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(5);
    for i in 0..25 {
        // conv_transpose2d pads symmetrically: give the forward convolution the same padding.
        let (xs, ws, spec, _) = random_case(&mut rng);
        let p = [rng.range(0, ws[2] / 2), rng.range(0, ws[3] / 2)];
        let padding = Padding::Explicit {
            top: p[0],
            bottom: p[0],
            left: p[1],
            right: p[1],
        };
        check_adjoint(&gpu, &mut rng, i, xs, ws, Conv2d { padding, ..spec }, p);
    }
}

fn check_adjoint(
    gpu: &convpool::Gpu,
    rng: &mut Rng,
    i: usize,
    xs: [usize; 4],
    ws: [usize; 4],
    spec: Conv2d,
    pad: [usize; 2],
) {
    let x = rng.tensor(xs);
    let w = rng.tensor(ws);
    let gw = gpu.upload(&w).unwrap();
    let cx = gpu
        .conv2d(&gpu.upload(&x).unwrap(), &gw, None, &spec)
        .unwrap()
        .download()
        .unwrap();
    let y = rng.tensor(cx.shape());
    let t = ConvTranspose2d {
        stride: spec.stride,
        padding: pad,
        output_padding: [0, 0],
        dilation: spec.dilation,
        groups: spec.groups,
    };
    let plain = t.geometry(y.shape(), w.shape(), None).unwrap();
    let t = ConvTranspose2d {
        output_padding: [xs[2] - plain.input[0], xs[3] - plain.input[1]],
        ..t
    };
    let ty = gpu
        .conv_transpose2d(&gpu.upload(&y).unwrap(), &gw, None, &t)
        .unwrap()
        .download()
        .unwrap();
    let (lhs, rhs) = (dot(&cx, &y), dot(&x, &ty));
    let scale = cx
        .data()
        .iter()
        .map(|v| v.abs() as f64)
        .sum::<f64>()
        .max(1.0);
    assert!(
        (lhs - rhs).abs() <= 1e-5 * scale,
        "case {i} {xs:?} {ws:?} {spec:?}: <conv(x),y> = {lhs}, <x,convT(y)> = {rhs}"
    );
}

#[test]
fn dispatch_beyond_65535_workgroups() {
    // 2049 x 2049 outputs = 4.2M invocations > 65,535 workgroups of 64: the grid is folded
    // into two dimensions. (The GEMM variant is folded in `folded_dispatch_of_every_variant`.)
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(11);
    let x = rng.int_tensor([1, 1, 2050, 2050], 4);
    let w = rng.int_tensor([1, 1, 2, 2], 2);
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    let spec = Conv2d::default();
    let got = gpu
        .conv2d_with(&gx, &gw, None, &spec, ConvAlgo::Direct)
        .unwrap()
        .download()
        .unwrap();
    assert_exact(
        "conv2d over 65,535 workgroups",
        &got,
        &cpu::conv2d(&x, &w, None, &spec).unwrap(),
    );
    let y = rng.int_tensor([1, 1, 1025, 1025], 4);
    let t = ConvTranspose2d {
        stride: [2, 2],
        ..Default::default()
    };
    let got = gpu
        .conv_transpose2d_with(&gpu.upload(&y).unwrap(), &gw, None, &t, ConvAlgo::Direct)
        .unwrap()
        .download()
        .unwrap();
    assert_exact(
        "conv_transpose2d over 65,535 workgroups",
        &got,
        &cpu::conv_transpose2d(&y, &w, None, &t).unwrap(),
    );
}

#[test]
fn folded_dispatch_of_every_variant() {
    // Folding at 6 workgroups per dimension puts every dispatch of these small cases through
    // the two-dimensional grid, for every kernel variant.
    if gpu().is_none() {
        return;
    }
    let gpu = convpool::Gpu::new().unwrap();
    gpu.set_fold_limit_for_tests(6);
    let mut rng = Rng::new(404);
    for i in 0..6 {
        let (xs, ws, spec, with_bias) = random_case(&mut rng);
        let xs = [xs[0], xs[1], xs[2] + 6, xs[3] + 6];
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = with_bias.then(|| rng.tensor([ws[0]]));
        let want = cpu::conv2d(&x, &w, b.as_ref(), &spec).unwrap();
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
        for algo in ALGOS {
            let got = gpu
                .conv2d_with(&gx, &gw, gb.as_ref(), &spec, algo)
                .unwrap()
                .download()
                .unwrap();
            assert_close(
                &format!("folded conv2d case {i} {algo:?}"),
                &got,
                &want,
                1e-5,
                1e-4,
            );
        }
        let (xs, ws, t, _) = random_transpose_case(&mut rng);
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let want = cpu::conv_transpose2d(&x, &w, None, &t).unwrap();
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        for algo in ALGOS {
            let got = gpu
                .conv_transpose2d_with(&gx, &gw, None, &t, algo)
                .unwrap()
                .download()
                .unwrap();
            assert_close(
                &format!("folded conv_transpose2d case {i} {algo:?}"),
                &got,
                &want,
                1e-5,
                1e-4,
            );
        }
    }
}

#[test]
fn same_call_twice_is_bitwise_equal() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(3);
    let x = gpu.upload(&rng.tensor([2, 16, 9, 8])).unwrap();
    let w = gpu.upload(&rng.tensor([16, 8, 3, 3])).unwrap();
    let b = gpu.upload(&rng.tensor([16])).unwrap();
    let spec = Conv2d {
        groups: 2,
        padding: Padding::Same,
        ..Default::default()
    };
    let t = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        groups: 2,
        ..Default::default()
    };
    let wt = gpu.upload(&rng.tensor([16, 8, 4, 4])).unwrap();
    let bt = gpu.upload(&rng.tensor([16])).unwrap();
    for algo in ALGOS {
        let run = || {
            gpu.conv2d_with(&x, &w, Some(&b), &spec, algo)
                .unwrap()
                .download()
                .unwrap()
        };
        assert_exact(&format!("conv2d twice, {algo:?}"), &run(), &run());
        let run = || {
            gpu.conv_transpose2d_with(&x, &wt, Some(&bt), &t, algo)
                .unwrap()
                .download()
                .unwrap()
        };
        assert_exact(&format!("conv_transpose2d twice, {algo:?}"), &run(), &run());
    }
}

#[test]
fn bad_input_is_an_err_naming_the_values() {
    expect_invalid(
        Tensor::new([2, 3], vec![0.0f32; 5]),
        "Tensor::new",
        "holds 6 elements but data has 5",
    );
    expect_invalid(
        Tensor::<f32>::new([usize::MAX, 3], vec![]),
        "Tensor::new",
        "usize::MAX",
    );
    let x = Tensor::new([1, 2, 5, 5], vec![0.0; 50]).unwrap();
    let w = Tensor::new([4, 2, 3, 3], vec![0.0; 72]).unwrap();
    let d = Conv2d::default();
    let x3 = Tensor::new([2, 5, 5], vec![0.0; 50]).unwrap();
    let cases: Vec<(Result<Tensor, Error>, &str)> = vec![
        (cpu::conv2d(&x3, &w, None, &d), "rank 4"),
        (cpu::conv2d(&x, &x3, None, &d), "rank 4"),
        (
            cpu::conv2d(
                &x,
                &Tensor::new([4, 3, 3, 3], vec![0.0; 108]).unwrap(),
                None,
                &d,
            ),
            "input has 2",
        ),
        (
            cpu::conv2d(&x, &w, None, &Conv2d { groups: 3, ..d }),
            "groups = 3 does not divide the 2 input channels",
        ),
        (
            cpu::conv2d(
                &x,
                &Tensor::new([3, 1, 3, 3], vec![0.0; 27]).unwrap(),
                None,
                &Conv2d { groups: 2, ..d },
            ),
            "does not divide the 3 output",
        ),
        (
            cpu::conv2d(
                &x,
                &w,
                None,
                &Conv2d {
                    stride: [0, 1],
                    ..d
                },
            ),
            "stride must be at least 1",
        ),
        (
            cpu::conv2d(
                &x,
                &w,
                None,
                &Conv2d {
                    dilation: [1, 0],
                    ..d
                },
            ),
            "dilation must be at least 1",
        ),
        (
            cpu::conv2d(&x, &w, None, &Conv2d { groups: 0, ..d }),
            "groups must be at least 1",
        ),
        (
            cpu::conv2d(
                &x,
                &w,
                None,
                &Conv2d {
                    dilation: [3, 1],
                    ..d
                },
            ),
            "larger than the padded input",
        ),
        (
            cpu::conv2d(
                &x,
                &Tensor::new([4, 2, 6, 3], vec![0.0; 144]).unwrap(),
                None,
                &d,
            ),
            "kernel height 6",
        ),
        (
            cpu::conv2d(&x, &w, Some(&Tensor::new([3], vec![0.0; 3]).unwrap()), &d),
            "bias must have shape [4]",
        ),
        (
            cpu::conv2d(&x, &Tensor::new([4, 2, 0, 3], vec![]).unwrap(), None, &d),
            "kernel size must be at least 1",
        ),
    ];
    for (r, needle) in cases {
        expect_invalid(r, "conv2d", needle);
    }
    let wt = Tensor::new([2, 3, 3, 3], vec![0.0; 54]).unwrap();
    let t = ConvTranspose2d::default();
    let tcases: Vec<(Result<Tensor, Error>, &str)> = vec![
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    output_padding: [1, 0],
                    ..t
                },
            ),
            "output_padding height 1 must be smaller than max(stride, dilation) = 1",
        ),
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    stride: [2, 2],
                    output_padding: [0, 2],
                    ..t
                },
            ),
            "output_padding width 2",
        ),
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    padding: [4, 0],
                    ..t
                },
            ),
            "is below 1",
        ),
        (
            cpu::conv_transpose2d(&x, &wt, Some(&Tensor::new([2], vec![0.0; 2]).unwrap()), &t),
            "bias must have shape [3]",
        ),
        (
            cpu::conv_transpose2d(&x, &w, None, &t),
            "expects 4 input channels, input has 2",
        ),
        (
            cpu::conv_transpose2d(&x, &wt, None, &ConvTranspose2d { groups: 0, ..t }),
            "groups must be at least 1",
        ),
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    stride: [1, 0],
                    ..t
                },
            ),
            "stride must be at least 1",
        ),
        (cpu::conv_transpose2d(&x3, &wt, None, &t), "rank 4"),
    ];
    for (r, needle) in tcases {
        expect_invalid(r, "conv_transpose2d", needle);
    }
    // The same refusals on the GPU, and a tensor from another Gpu.
    let Some(gpu) = gpu() else { return };
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    expect_invalid(
        gpu.conv2d(&gx, &gw, None, &Conv2d { groups: 3, ..d }),
        "conv2d",
        "groups = 3",
    );
    expect_invalid(
        gpu.conv2d(
            &gx,
            &gw,
            None,
            &Conv2d {
                dilation: [3, 1],
                ..d
            },
        ),
        "conv2d",
        "larger than the padded input",
    );
    expect_invalid(
        gpu.conv_transpose2d(
            &gx,
            &gpu.upload(&wt).unwrap(),
            None,
            &ConvTranspose2d {
                output_padding: [1, 0],
                ..t
            },
        ),
        "conv_transpose2d",
        "output_padding",
    );
    let other = convpool::Gpu::new().unwrap();
    let foreign = other.upload(&w).unwrap();
    assert!(matches!(
        gpu.conv2d(&gx, &foreign, None, &d),
        Err(Error::WrongDevice { what: "weight", .. })
    ));
}

#[test]
fn empty_batch_gives_an_empty_output() {
    let x = Tensor::new([0, 2, 5, 5], vec![]).unwrap();
    let w = Tensor::new([3, 2, 3, 3], vec![0.5; 54]).unwrap();
    let y = cpu::conv2d(&x, &w, None, &Conv2d::default()).unwrap();
    assert_eq!((y.shape(), y.len()), (&[0, 3, 3, 3][..], 0));
    let Some(gpu) = gpu() else { return };
    let gw = gpu.upload(&w).unwrap();
    let y = gpu
        .conv2d(&gpu.upload(&x).unwrap(), &gw, None, &Conv2d::default())
        .unwrap()
        .download()
        .unwrap();
    assert_eq!((y.shape(), y.len()), (&[0, 3, 3, 3][..], 0));
    let t = gpu
        .conv_transpose2d(
            &gpu.upload(&Tensor::new([0, 3, 2, 2], vec![]).unwrap())
                .unwrap(),
            &gpu.upload(&Tensor::new([3, 2, 2, 2], vec![1.0; 24]).unwrap())
                .unwrap(),
            None,
            &ConvTranspose2d::default(),
        )
        .unwrap();
    assert_eq!(t.download().unwrap().shape(), &[0, 2, 3, 3]);
    let (v, i) = gpu
        .max_pool2d(&gpu.upload(&x).unwrap(), &convpool::Pool2d::new([2, 2]))
        .unwrap();
    assert_eq!(
        gpu.max_unpool2d(&v, &i, [5, 5])
            .unwrap()
            .download()
            .unwrap()
            .shape(),
        &[0, 2, 5, 5]
    );
}

#[test]
fn row_segment_gemm_split_into_windows() {
    // The row-segment GEMM reads its packed weights through 4096-vec4 uniform windows, one per
    // dispatch: a dispatch takes as many whole tiles of 8 channels as fit, or else the kernel
    // rows of one tile that fit, later parts adding to what the first stored. Small windows
    // put these small cases through both splits (with bias, groups, 1 and 2 vec4s of taps per
    // row), each checked against the CPU reference.
    if gpu().is_none() {
        return;
    }
    let gpu = convpool::Gpu::new().unwrap();
    let mut rng = Rng::new(4096);
    let same = |groups| Conv2d {
        padding: Padding::Same,
        groups,
        ..Default::default()
    };
    let convs = [
        // 2 groups × 2 tiles of 3 rows each: 2 tiles per 300-vec4 window.
        ([1, 2, 7, 9], [20, 1, 3, 3], same(2)),
        // 24 kernel rows: parts of 16 rows at 272 vec4s.
        ([2, 8, 6, 11], [9, 8, 3, 3], same(1)),
        // 7 taps per row (2 vec4s), stride 2: 21 rows in parts of 16.
        (
            [1, 3, 12, 13],
            [10, 3, 7, 7],
            Conv2d {
                stride: [2, 2],
                padding: Padding::uniform(3),
                ..Default::default()
            },
        ),
    ];
    let convt = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    for window in [272, 300, 4096] {
        gpu.set_uniform_window_for_tests(window);
        for (i, (xs, ws, spec)) in convs.iter().enumerate() {
            let (x, w, b) = (rng.tensor(*xs), rng.tensor(*ws), rng.tensor([ws[0]]));
            let want = cpu::conv2d(&x, &w, Some(&b), spec).unwrap();
            let [gx, gw, gb] = [&x, &w, &b].map(|t| gpu.upload(t).unwrap());
            let got = gpu
                .conv2d_with(&gx, &gw, Some(&gb), spec, ConvAlgo::Gemm)
                .unwrap()
                .download()
                .unwrap();
            assert_close(
                &format!("conv2d {i}, window {window}"),
                &got,
                &want,
                1e-5,
                1e-4,
            );
            // A fused activation applies once the last part has been added: bitwise the
            // activation of the split convolution.
            let act = convpool::Activation::Clamp {
                min: -0.5,
                max: 0.5,
            };
            let fused = gpu
                .conv2d_act_with(&gx, &gw, Some(&gb), spec, act, ConvAlgo::Gemm)
                .unwrap()
                .download()
                .unwrap();
            let plain = gpu
                .conv2d_with(&gx, &gw, Some(&gb), spec, ConvAlgo::Gemm)
                .unwrap();
            let unfused = gpu.activation(&plain, act).unwrap().download().unwrap();
            assert_exact(
                &format!("conv2d_act {i}, window {window}"),
                &fused,
                &unfused,
            );
        }
        // 12 input channels × 2 × 2 taps per phase: 24 kernel rows.
        let (x, w, b) = (
            rng.tensor([1, 12, 5, 6]),
            rng.tensor([12, 9, 4, 4]),
            rng.tensor([9]),
        );
        let want = cpu::conv_transpose2d(&x, &w, Some(&b), &convt).unwrap();
        let [gx, gw, gb] = [&x, &w, &b].map(|t| gpu.upload(t).unwrap());
        let got = gpu
            .conv_transpose2d_with(&gx, &gw, Some(&gb), &convt, ConvAlgo::Gemm)
            .unwrap()
            .download()
            .unwrap();
        assert_close(
            &format!("conv_transpose2d, window {window}"),
            &got,
            &want,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn packed_weights_follow_the_weight_tensor() {
    // The row-segment GEMM keeps its packed copy of a weight tensor for later calls. Weights
    // made on the device by an op, dropped, and made again into the same recycled buffer with
    // other values must be packed afresh; the same weights give bitwise the same output.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(77);
    let spec = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let x = rng.tensor([1, 5, 9, 10]);
    let gx = gpu.upload(&x).unwrap();
    let pool = convpool::Pool2d::new([1, 1]);
    let mut last = None;
    for round in 0..3 {
        // avg_pool2d with a 1×1 window copies: weights [12, 5, 3, 3] made by an op.
        let w = rng.tensor([12, 5, 3, 3]);
        let gw = gpu.avg_pool2d(&gpu.upload(&w).unwrap(), &pool).unwrap();
        let want = cpu::conv2d(&x, &w, None, &spec).unwrap();
        let first = gpu
            .conv2d_with(&gx, &gw, None, &spec, ConvAlgo::Gemm)
            .unwrap();
        let again = gpu
            .conv2d_with(&gx, &gw, None, &spec, ConvAlgo::Gemm)
            .unwrap();
        let (first, again) = (first.download().unwrap(), again.download().unwrap());
        assert_close(&format!("round {round}"), &first, &want, 1e-5, 1e-4);
        assert_exact(&format!("round {round}, second call"), &again, &first);
        if let Some(prev) = last.replace(first) {
            assert_ne!(prev, again, "round {round} reused the previous weights");
        }
    }
}

#[test]
fn row_segment_gemm_past_the_texture_limits() {
    // The row-segment GEMM stages its input in a texture array, one layer per (image,
    // channel); past the device's layer limit the subgroup GEMM runs instead, as correct.
    let Some(gpu) = gpu() else { return };
    let layers = gpu.limits().max_texture_array_layers as usize;
    let mut rng = Rng::new(2049);
    let spec = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let (x, w) = (
        rng.tensor([1, layers + 1, 3, 4]),
        rng.tensor([3, layers + 1, 3, 3]),
    );
    let want = cpu::conv2d(&x, &w, None, &spec).unwrap();
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    let got = gpu
        .conv2d_with(&gx, &gw, None, &spec, ConvAlgo::Gemm)
        .unwrap()
        .download()
        .unwrap();
    assert_close("past the layer limit", &got, &want, 1e-4, 1e-4);
}
