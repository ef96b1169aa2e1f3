//! The convolutions' backward passes and fused activations on the CPU reference, the fast CPU
//! path and the GPU: exact adjoint identities, agreement with the reference on a seeded sweep
//! of every spec the forward ops take, and bitwise determinism.

mod common;

use common::{
    assert_close, assert_exact, dot, gpu, random_case, random_transpose_case, sum_atol, Rng,
};
use convpool::{cpu, fast, Activation, Conv2d, ConvAlgo, ConvTranspose2d, Gpu, Padding, Tensor};

/// The conv2d cases: the seeded sweep plus the awkward ones named in their comments.
fn conv_cases() -> Vec<([usize; 4], [usize; 4], Conv2d)> {
    let mut rng = Rng::new(0x5eed_bac4);
    let mut cases: Vec<_> = (0..48)
        .map(|_| random_case(&mut rng))
        .map(|(x, w, s, _)| (x, w, s))
        .collect();
    let d = Conv2d::default();
    cases.extend([
        // Depthwise, stride 2 that drops the last row and column, Same padding.
        (
            [2, 4, 9, 8],
            [4, 1, 3, 3],
            Conv2d {
                stride: [2, 2],
                padding: Padding::Same,
                groups: 4,
                ..d
            },
        ),
        // A weight-gradient reduction split into parts, the last one short: 7 images of 15×14
        // outputs are 49 chunks of 32 pixels (each image's last one short), in parts of 25 and 24.
        ([7, 4, 17, 16], [6, 2, 3, 3], Conv2d { groups: 2, ..d }),
        // More than one 32×32 weight tile each way, asymmetric padding, dilation.
        (
            [1, 40, 7, 6],
            [36, 40, 2, 3],
            Conv2d {
                padding: Padding::Explicit {
                    top: 2,
                    bottom: 0,
                    left: 1,
                    right: 3,
                },
                dilation: [2, 1],
                ..d
            },
        ),
        // 1×1, strides (3, 2).
        (
            [2, 5, 10, 9],
            [7, 5, 1, 1],
            Conv2d {
                stride: [3, 2],
                ..d
            },
        ),
    ]);
    cases
}

/// The conv_transpose2d cases: the seeded sweep plus output_padding ≥ stride (where the
/// dilation allows it), groups and a split reduction.
fn transpose_cases() -> Vec<([usize; 4], [usize; 4], ConvTranspose2d)> {
    let mut rng = Rng::new(0x7a25_b0c5);
    let mut cases: Vec<_> = (0..40)
        .map(|_| random_transpose_case(&mut rng))
        .map(|(x, w, s, _)| (x, w, s))
        .collect();
    let d = ConvTranspose2d::default();
    cases.extend([
        (
            [2, 2, 4, 5],
            [2, 3, 3, 3],
            ConvTranspose2d {
                output_padding: [2, 1],
                dilation: [3, 2],
                ..d
            },
        ),
        (
            [1, 6, 5, 4],
            [6, 2, 2, 3],
            ConvTranspose2d {
                stride: [2, 3],
                padding: [1, 1],
                groups: 3,
                ..d
            },
        ),
        (
            [4, 3, 19, 17],
            [3, 4, 3, 3],
            ConvTranspose2d {
                stride: [2, 2],
                padding: [1, 1],
                output_padding: [1, 1],
                ..d
            },
        ),
    ]);
    cases
}

/// `|a − b|` within a relative tolerance of the sum of the absolute terms of an inner product.
fn assert_identity(what: &str, a: f64, b: f64, scale: f64) {
    assert!((a - b).abs() <= 1e-4 * scale.max(1.0), "{what}: {a} vs {b}");
}

/// `⟨|a|, |b|⟩`: the scale of an inner product's rounding.
fn abs_dot(a: &Tensor, b: &Tensor) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x * y).abs() as f64)
        .sum()
}

/// The three backends' conv2d backward passes, on one call's operands.
type Conv2dGrads = (Tensor, Tensor, Tensor);

fn conv2d_grads(
    gpu: Option<&Gpu>,
    backend: usize,
    gy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    spec: &Conv2d,
) -> Conv2dGrads {
    let hw = [x.shape()[2], x.shape()[3]];
    let k = [w.shape()[2], w.shape()[3]];
    match backend {
        0 => (
            cpu::conv2d_backward_input(gy, w, hw, spec).unwrap(),
            cpu::conv2d_backward_weight(gy, x, k, spec).unwrap(),
            cpu::bias_backward(gy).unwrap(),
        ),
        1 => (
            fast::conv2d_backward_input(gy, w, hw, spec).unwrap(),
            fast::conv2d_backward_weight(gy, x, k, spec).unwrap(),
            fast::bias_backward(gy).unwrap(),
        ),
        _ => {
            let g = gpu.unwrap();
            let (gy, x, w) = (
                g.upload(gy).unwrap(),
                g.upload(x).unwrap(),
                g.upload(w).unwrap(),
            );
            (
                g.conv2d_backward_input_with(&gy, &w, hw, spec, ALGOS[backend - 2])
                    .unwrap()
                    .download()
                    .unwrap(),
                g.conv2d_backward_weight_with(&gy, &x, k, spec, ALGOS[backend - 2])
                    .unwrap()
                    .download()
                    .unwrap(),
                g.bias_backward(&gy).unwrap().download().unwrap(),
            )
        }
    }
}

fn transpose_grads(
    gpu: Option<&Gpu>,
    backend: usize,
    gy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    spec: &ConvTranspose2d,
) -> (Tensor, Tensor) {
    let hw = [x.shape()[2], x.shape()[3]];
    let k = [w.shape()[2], w.shape()[3]];
    match backend {
        0 => (
            cpu::conv_transpose2d_backward_input(gy, w, hw, spec).unwrap(),
            cpu::conv_transpose2d_backward_weight(gy, x, k, spec).unwrap(),
        ),
        1 => (
            fast::conv_transpose2d_backward_input(gy, w, hw, spec).unwrap(),
            fast::conv_transpose2d_backward_weight(gy, x, k, spec).unwrap(),
        ),
        _ => {
            let g = gpu.unwrap();
            let (gy, x, w) = (
                g.upload(gy).unwrap(),
                g.upload(x).unwrap(),
                g.upload(w).unwrap(),
            );
            (
                g.conv_transpose2d_backward_input_with(&gy, &w, hw, spec, ALGOS[backend - 2])
                    .unwrap()
                    .download()
                    .unwrap(),
                g.conv_transpose2d_backward_weight_with(&gy, &x, k, spec, ALGOS[backend - 2])
                    .unwrap()
                    .download()
                    .unwrap(),
            )
        }
    }
}

/// The backends to run: the CPU reference and the fast path, and the GPU with each kernel
/// choice where there is one (the weight gradient: `Gemm` the subgroup kernel where the device
/// has it, `GemmTiled` and `Direct` the workgroup-memory one; the input gradients: the forward
/// kernels of each choice).
fn backends(gpu: &Option<Gpu>) -> Vec<usize> {
    if gpu.is_some() {
        vec![0, 1, 2, 3, 4, 5]
    } else {
        vec![0, 1]
    }
}

const ALGOS: &[ConvAlgo] = ConvAlgo::ALL;
const NAMES: [&str; 6] = [
    "cpu",
    "fast",
    "gpu Auto",
    "gpu Direct",
    "gpu Gemm",
    "gpu GemmTiled",
];

#[test]
fn conv2d_backward_passes_are_the_adjoints_and_match_the_reference() {
    let gpu = gpu();
    let mut rng = Rng::new(11);
    for (i, (xs, ws, spec)) in conv_cases().into_iter().enumerate() {
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let y = cpu::conv2d(&x, &w, None, &spec).unwrap();
        let gy = rng.tensor(y.shape().to_vec());
        let (dx, dw) = (rng.tensor(xs), rng.tensor(ws));
        let want = conv2d_grads(None, 0, &gy, &x, &w, &spec);
        let terms = ws[1] * ws[2] * ws[3];
        let reduction = gy.len() / ws[0].max(1);
        for b in backends(&gpu) {
            let what = format!("case {i} {xs:?} {ws:?} {spec:?} on {}", NAMES[b]);
            let (gx, gw, gb) = conv2d_grads(gpu.as_ref(), b, &gy, &x, &w, &spec);
            // ⟨Cᵀ gy, dx⟩ = ⟨gy, C dx⟩ and ⟨∂W(gy, x), dw⟩ = ⟨gy, conv2d(x, dw)⟩.
            let c_dx = cpu::conv2d(&dx, &w, None, &spec).unwrap();
            let x_dw = cpu::conv2d(&x, &dw, None, &spec).unwrap();
            assert_identity(
                &format!("{what}: input adjoint"),
                dot(&gx, &dx),
                dot(&gy, &c_dx),
                abs_dot(&gy, &c_dx),
            );
            assert_identity(
                &format!("{what}: weight adjoint"),
                dot(&gw, &dw),
                dot(&gy, &x_dw),
                abs_dot(&gy, &x_dw),
            );
            if b > 0 {
                assert_close(
                    &format!("{what}: input"),
                    &gx,
                    &want.0,
                    sum_atol(ws[0] * ws[2] * ws[3]),
                    1e-4,
                );
                assert_close(
                    &format!("{what}: weight"),
                    &gw,
                    &want.1,
                    sum_atol(reduction),
                    1e-4,
                );
                assert_close(
                    &format!("{what}: bias"),
                    &gb,
                    &want.2,
                    sum_atol(reduction),
                    1e-4,
                );
                let again = conv2d_grads(gpu.as_ref(), b, &gy, &x, &w, &spec);
                assert_exact(&format!("{what}: input twice"), &again.0, &gx);
                assert_exact(&format!("{what}: weight twice"), &again.1, &gw);
                assert_exact(&format!("{what}: bias twice"), &again.2, &gb);
            }
            let _ = terms;
        }
    }
}

#[test]
fn conv_transpose2d_backward_passes_are_the_adjoints_and_match_the_reference() {
    let gpu = gpu();
    let mut rng = Rng::new(12);
    for (i, (xs, ws, spec)) in transpose_cases().into_iter().enumerate() {
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let y = cpu::conv_transpose2d(&x, &w, None, &spec).unwrap();
        let gy = rng.tensor(y.shape().to_vec());
        let (dx, dw) = (rng.tensor(xs), rng.tensor(ws));
        let want = transpose_grads(None, 0, &gy, &x, &w, &spec);
        let reduction = gy.len() / (ws[1] * spec.groups).max(1);
        for b in backends(&gpu) {
            let what = format!("case {i} {xs:?} {ws:?} {spec:?} on {}", NAMES[b]);
            let (gx, gw) = transpose_grads(gpu.as_ref(), b, &gy, &x, &w, &spec);
            let t_dx = cpu::conv_transpose2d(&dx, &w, None, &spec).unwrap();
            let x_dw = cpu::conv_transpose2d(&x, &dw, None, &spec).unwrap();
            assert_identity(
                &format!("{what}: input adjoint"),
                dot(&gx, &dx),
                dot(&gy, &t_dx),
                abs_dot(&gy, &t_dx),
            );
            assert_identity(
                &format!("{what}: weight adjoint"),
                dot(&gw, &dw),
                dot(&gy, &x_dw),
                abs_dot(&gy, &x_dw),
            );
            if b > 0 {
                let taps = ws[1] * ws[2] * ws[3];
                assert_close(
                    &format!("{what}: input"),
                    &gx,
                    &want.0,
                    sum_atol(taps),
                    1e-4,
                );
                assert_close(
                    &format!("{what}: weight"),
                    &gw,
                    &want.1,
                    sum_atol(reduction),
                    1e-4,
                );
                let again = transpose_grads(gpu.as_ref(), b, &gy, &x, &w, &spec);
                assert_exact(&format!("{what}: input twice"), &again.0, &gx);
                assert_exact(&format!("{what}: weight twice"), &again.1, &gw);
            }
        }
    }
}

#[test]
fn bias_backward_is_the_plain_sum() {
    let gpu = gpu();
    let mut rng = Rng::new(13);
    for shape in [
        [1, 1, 1, 1],
        [3, 5, 7, 9],
        [2, 3, 65, 3],
        // Past the fast path's threshold for splitting the channels over the cores.
        [2, 3, 211, 211],
        [0, 2, 3, 3],
        [2, 0, 3, 3],
        [4, 2, 0, 5],
    ] {
        let gy = rng.tensor(shape);
        let want: Vec<f32> = (0..shape[1])
            .map(|c| {
                let mut s = 0.0f64;
                for n in 0..shape[0] {
                    let plane = shape[2] * shape[3];
                    s += gy.data()[(n * shape[1] + c) * plane..][..plane]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>();
                }
                s as f32
            })
            .collect();
        let want = Tensor::new([shape[1]], want).unwrap();
        let atol = sum_atol(shape[0] * shape[2] * shape[3]);
        assert_close("cpu", &cpu::bias_backward(&gy).unwrap(), &want, atol, 1e-5);
        assert_close(
            "fast",
            &fast::bias_backward(&gy).unwrap(),
            &want,
            atol,
            1e-5,
        );
        if let Some(g) = &gpu {
            let got = g
                .bias_backward(&g.upload(&gy).unwrap())
                .unwrap()
                .download()
                .unwrap();
            assert_close("gpu", &got, &want, atol, 1e-5);
        }
    }
}

/// Every activation, with parameters that make each branch matter.
pub fn activations() -> Vec<Activation> {
    vec![
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Clamp {
            min: -0.25,
            max: 0.5,
        },
        Activation::Sigmoid,
        Activation::Tanh,
    ]
}

fn piecewise_linear(a: Activation) -> bool {
    !matches!(a, Activation::Sigmoid | Activation::Tanh)
}

#[test]
fn fused_convolutions_equal_the_activation_of_the_convolution() {
    let gpu = gpu();
    let mut rng = Rng::new(14);
    let convs = [
        (
            [2, 3, 9, 8],
            [4, 3, 3, 3],
            Conv2d {
                padding: Padding::uniform(1),
                ..Default::default()
            },
        ),
        (
            [1, 4, 7, 7],
            [4, 1, 3, 3],
            Conv2d {
                groups: 4,
                stride: [2, 1],
                ..Default::default()
            },
        ),
        // Wide enough for the fast path's Winograd kernel.
        (
            [1, 32, 16, 16],
            [32, 32, 3, 3],
            Conv2d {
                padding: Padding::uniform(1),
                ..Default::default()
            },
        ),
    ];
    let tconvs = [
        (
            [2, 3, 5, 4],
            [3, 2, 3, 3],
            ConvTranspose2d {
                stride: [2, 2],
                padding: [1, 0],
                output_padding: [1, 1],
                ..Default::default()
            },
        ),
        (
            [1, 4, 4, 6],
            [4, 1, 2, 2],
            ConvTranspose2d {
                stride: [2, 2],
                groups: 2,
                ..Default::default()
            },
        ),
    ];
    for act in activations() {
        let exact = piecewise_linear(act);
        for (xs, ws, spec) in convs {
            let (x, w, b) = (rng.tensor(xs), rng.tensor(ws), rng.tensor([ws[0]]));
            let want = cpu::conv2d_act(&x, &w, Some(&b), &spec, act).unwrap();
            let what = format!("conv2d_act {act:?} {xs:?} {ws:?}");
            let atol = sum_atol(ws[1] * ws[2] * ws[3]);
            let f = fast::conv2d_act(&x, &w, Some(&b), &spec, act).unwrap();
            assert_close(&format!("{what} fast"), &f, &want, atol, 1e-4);
            let unfused =
                fast::activation(&fast::conv2d(&x, &w, Some(&b), &spec).unwrap(), act).unwrap();
            if exact {
                assert_exact(&format!("{what} fast fused vs unfused"), &f, &unfused);
            }
            let Some(g) = &gpu else { continue };
            let (gx, gw, gb) = (
                g.upload(&x).unwrap(),
                g.upload(&w).unwrap(),
                g.upload(&b).unwrap(),
            );
            for &algo in ConvAlgo::ALL {
                let fused = g
                    .conv2d_act_with(&gx, &gw, Some(&gb), &spec, act, algo)
                    .unwrap()
                    .download()
                    .unwrap();
                assert_close(&format!("{what} gpu {algo:?}"), &fused, &want, atol, 1e-4);
                let plain = g.conv2d_with(&gx, &gw, Some(&gb), &spec, algo).unwrap();
                let unfused = g.activation(&plain, act).unwrap().download().unwrap();
                if exact {
                    assert_exact(
                        &format!("{what} gpu {algo:?} fused vs unfused"),
                        &fused,
                        &unfused,
                    );
                }
            }
        }
        for (xs, ws, spec) in tconvs {
            let (x, w) = (rng.tensor(xs), rng.tensor(ws));
            let b = rng.tensor([ws[1] * spec.groups]);
            let want = cpu::conv_transpose2d_act(&x, &w, Some(&b), &spec, act).unwrap();
            let what = format!("conv_transpose2d_act {act:?} {xs:?} {ws:?}");
            let atol = sum_atol(ws[0] * ws[2] * ws[3]);
            let f = fast::conv_transpose2d_act(&x, &w, Some(&b), &spec, act).unwrap();
            assert_close(&format!("{what} fast"), &f, &want, atol, 1e-4);
            let Some(g) = &gpu else { continue };
            let (gx, gw, gb) = (
                g.upload(&x).unwrap(),
                g.upload(&w).unwrap(),
                g.upload(&b).unwrap(),
            );
            for &algo in ConvAlgo::ALL {
                let fused = g
                    .conv_transpose2d_act_with(&gx, &gw, Some(&gb), &spec, act, algo)
                    .unwrap()
                    .download()
                    .unwrap();
                assert_close(&format!("{what} gpu {algo:?}"), &fused, &want, atol, 1e-4);
                let plain = g
                    .conv_transpose2d_with(&gx, &gw, Some(&gb), &spec, algo)
                    .unwrap();
                let unfused = g.activation(&plain, act).unwrap().download().unwrap();
                if exact {
                    assert_exact(
                        &format!("{what} gpu {algo:?} fused vs unfused"),
                        &fused,
                        &unfused,
                    );
                }
            }
        }
    }
}
