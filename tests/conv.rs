//! conv2d and conv_transpose2d: the worked example, output sizes, the matrix view, the adjoint
//! identity, GPU vs CPU sweeps and determinism (bad input: conv_errors.rs; kernel variants past
//! their limits: conv_variants.rs).

mod common;

use common::{
    assert_close, assert_exact, dot, fixed_conv_cases, gpu, random_case, random_transpose_case,
    sum_atol, Rng,
};
use convpool::{cpu, Conv2d, ConvAlgo, ConvTranspose2d, Padding, Tensor};

/// Every kernel variant: each is checked against the CPU reference.
const ALGOS: &[ConvAlgo] = ConvAlgo::ALL;

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

/// The family in effect, printed for the log; under `CONVPOOL_EXPECT_KERNELS` (CI's reruns)
/// it must be the one expected, which `common::gpu` checks.
#[test]
fn the_kernel_family_in_effect_is_the_one_expected() {
    let Some(gpu) = gpu() else { return };
    println!(
        "kernel family in effect: {:?} (CONVPOOL_KERNELS={:?}, adapter {:?})",
        gpu.kernel_family(),
        std::env::var("CONVPOOL_KERNELS").ok(),
        gpu.adapter_info().device_type
    );
    common::assert_expected_family(&gpu);
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
        for &algo in ALGOS {
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
        for &algo in ALGOS {
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
    for &algo in ALGOS {
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
