//! The bad-input battery: random shapes and parameters, including zeros, values near
//! `usize::MAX` and combinations whose output-size arithmetic overflows, for every op on the CPU
//! reference, the fast CPU path and the GPU. Every call must return (Ok or Err), never panic;
//! and whatever the shared validation refuses on the CPU is refused on the GPU too.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::gpu;
use convpool::{cpu, fast, Conv2d, ConvTranspose2d, Padding, Pool2d, Result, Tensor};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A size or parameter: mostly small, sometimes huge.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 0usize..5,
        1 => Just(usize::MAX),
        1 => Just(usize::MAX / 3),
        1 => Just(1usize << 31),
        1 => Just(u32::MAX as usize + 1),
    ]
}

fn pair() -> impl Strategy<Value = [usize; 2]> {
    [dim(), dim()]
}

/// A tensor of `shape` if it holds at most 2,000 elements (else the shape cannot be built here).
fn tensor(shape: [usize; 4], seed: usize) -> Option<Tensor> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    (n <= 2000).then(|| Tensor::from_fn(shape, |i| ((i * 7 + seed) % 11) as f32 - 5.0).unwrap())
}

/// Calls made and inputs refused, per test.
#[derive(Default)]
struct Tally {
    calls: AtomicUsize,
    refused: AtomicUsize,
}

impl Tally {
    /// Counts a result and returns whether it was refused.
    fn count<T>(&self, r: &Result<T>) -> bool {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let refused = r.is_err();
        if refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        refused
    }

    /// Counts a GPU result, which must be an `Err` where the CPU's was.
    fn agree<U>(&self, op: &str, cpu_refused: bool, gpu: &Result<U>) {
        let refused = self.count(gpu);
        assert!(
            !cpu_refused || refused,
            "{op}: the CPU refused this input but the GPU accepted it"
        );
    }

    fn report(&self, what: &str) {
        let (c, r) = (
            self.calls.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        );
        println!("{what} battery: {c} calls, {r} refused with an Err, none panicked");
    }
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

#[test]
fn convolutions_never_panic() {
    let gpu = gpu();
    let t = Tally::default();
    let padding = prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        Just(Padding::Full),
        (dim(), dim(), dim(), dim()).prop_map(|(top, bottom, left, right)| Padding::Explicit {
            top,
            bottom,
            left,
            right
        }),
    ];
    let conv =
        (pair(), padding, pair(), dim()).prop_map(|(stride, padding, dilation, groups)| Conv2d {
            stride,
            padding,
            dilation,
            groups,
        });
    let convt = (pair(), pair(), pair(), pair(), dim()).prop_map(
        |(stride, padding, output_padding, dilation, groups)| ConvTranspose2d {
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        },
    );
    let shapes = (
        [dim(), dim(), dim(), dim()],
        [dim(), dim(), dim(), dim()],
        prop::option::of(dim()),
    );
    runner(1500)
        .run(
            &(shapes, conv, convt),
            |((xs, ws, bias_len), spec, tspec)| {
                let (Some(x), Some(w)) = (tensor(xs, 1), tensor(ws, 2)) else {
                    return Ok(());
                };
                let bias = bias_len
                    .filter(|&n| n <= 2000)
                    .map(|n| Tensor::from_fn([n], |i| i as f32).unwrap());
                let b = bias.as_ref();
                let r = cpu::conv2d(&x, &w, b, &spec);
                let c1 = t.count(&r);
                t.count(&fast::conv2d(&x, &w, b, &spec));
                t.count(
                    &cpu::conv2d_matrix(x.shape(), &w, &spec)
                        .map(drop)
                        .or_else(|e| if x.len() > 64 { Ok(()) } else { Err(e) }),
                );
                let rt = cpu::conv_transpose2d(&x, &w, b, &tspec);
                let c2 = t.count(&rt);
                t.count(&fast::conv_transpose2d(&x, &w, b, &tspec));
                if let Some(gpu) = &gpu {
                    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
                    let gb = bias.as_ref().map(|b| gpu.upload(b).unwrap());
                    t.agree("conv2d", c1, &gpu.conv2d(&gx, &gw, gb.as_ref(), &spec));
                    t.agree(
                        "conv_transpose2d",
                        c2,
                        &gpu.conv_transpose2d(&gx, &gw, gb.as_ref(), &tspec),
                    );
                }
                Ok(())
            },
        )
        .unwrap();
    t.report("convolution");
}

#[test]
fn pooling_never_panics() {
    let gpu = gpu();
    let t = Tally::default();
    let pool = (pair(), pair(), pair(), pair(), any::<bool>(), any::<bool>()).prop_map(
        |(kernel, stride, padding, dilation, ceil_mode, count_include_pad)| Pool2d {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
            count_include_pad,
        },
    );
    let case = (
        [dim(), dim(), dim(), dim()],
        pool,
        pair(),
        [dim(), dim(), dim(), dim()],
        any::<u32>(),
    );
    runner(1500)
        .run(&case, |(xs, p, size, is, idx_max)| {
            let Some(x) = tensor(xs, 3) else {
                return Ok(());
            };
            let idx = tensor(is, 0).map(|t| {
                Tensor::<u32>::new(
                    t.shape(),
                    (0..t.len())
                        .map(|i| (i as u32).wrapping_mul(2654435761) % idx_max.max(1))
                        .collect(),
                )
                .unwrap()
            });
            let (m, a) = (cpu::max_pool2d(&x, &p), cpu::avg_pool2d(&x, &p));
            let cm = t.count(&m);
            let ca = t.count(&a);
            t.count(&fast::max_pool2d(&x, &p));
            t.count(&fast::avg_pool2d(&x, &p));
            let cs = t.count(&cpu::stochastic_pool2d(&x, &p, 7));
            t.count(&cpu::stochastic_pool2d_expectation(&x, &p));
            // Unpooling and backward passes, with the input as the pooled tensor.
            let cau = t.count(&cpu::avg_unpool2d(&x, &p, size));
            let cab = t.count(&cpu::avg_pool2d_backward(&x, &p, size));
            let (cmu, cmb) = match &idx {
                Some(i) => {
                    t.count(&fast::max_unpool2d(&x, i, size));
                    (
                        t.count(&cpu::max_unpool2d(&x, i, size)),
                        t.count(&cpu::max_pool2d_backward(&x, i, size)),
                    )
                }
                None => (true, true),
            };
            if let Some(gpu) = &gpu {
                let gx = gpu.upload(&x).unwrap();
                t.agree("max_pool2d", cm, &gpu.max_pool2d(&gx, &p));
                t.agree("avg_pool2d", ca, &gpu.avg_pool2d(&gx, &p));
                t.agree("stochastic_pool2d", cs, &gpu.stochastic_pool2d(&gx, &p, 7));
                t.agree(
                    "stochastic_pool2d_expectation",
                    cs,
                    &gpu.stochastic_pool2d_expectation(&gx, &p),
                );
                t.agree("avg_unpool2d", cau, &gpu.avg_unpool2d(&gx, &p, size));
                t.agree(
                    "avg_pool2d_backward",
                    cab,
                    &gpu.avg_pool2d_backward(&gx, &p, size),
                );
                if let Some(i) = &idx {
                    let gi = gpu.upload(i).unwrap();
                    t.agree("max_unpool2d", cmu, &gpu.max_unpool2d(&gx, &gi, size));
                    t.agree(
                        "max_pool2d_backward",
                        cmb,
                        &gpu.max_pool2d_backward(&gx, &gi, size),
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    t.report("pooling");
}

/// Elements of `shape`, or `usize::MAX` where the product overflows on the way.
fn numel(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX)
}

#[test]
fn training_ops_never_panic() {
    use convpool::{Activation, Sgd};
    let gpu = gpu();
    let t = Tally::default();
    let conv = (pair(), pair(), pair(), dim()).prop_map(|(stride, pad, dilation, groups)| Conv2d {
        stride,
        padding: Padding::Explicit {
            top: pad[0],
            bottom: pad[1],
            left: pad[1],
            right: pad[0],
        },
        dilation,
        groups,
    });
    let convt = (pair(), pair(), pair(), pair(), dim()).prop_map(
        |(stride, padding, output_padding, dilation, groups)| ConvTranspose2d {
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        },
    );
    let value = prop_oneof![
        Just(0.0f32),
        Just(-1.0),
        Just(6.0),
        Just(f32::NAN),
        Just(f32::INFINITY)
    ];
    let act = (0usize..6, value.clone(), value.clone()).prop_map(|(k, a, b)| match k {
        0 => Activation::Identity,
        1 => Activation::Relu,
        2 => Activation::LeakyRelu { slope: a },
        3 => Activation::Clamp { min: a, max: b },
        4 => Activation::Sigmoid,
        _ => Activation::Tanh,
    });
    let sgd = (value.clone(), value.clone(), value).prop_map(|(lr, momentum, weight_decay)| Sgd {
        lr,
        momentum,
        weight_decay,
    });
    let shapes = (
        [dim(), dim(), dim(), dim()],
        [dim(), dim(), dim(), dim()],
        pair(),
    );
    runner(600)
        .run(
            &(shapes, conv, convt, act, sgd, 0u32..6, any::<bool>()),
            |((a_shape, b_shape, size), spec, tspec, act, sgd, label, alike)| {
                // Half the cases give both operands one shape, so the elementwise ops run.
                let b_shape = if alike { a_shape } else { b_shape };
                let (Some(a), Some(b)) = (tensor(a_shape, 1), tensor(b_shape, 2)) else {
                    return Ok(());
                };
                // Sizes whose tensors could be built (the CPU would allocate them).
                // and whose multiply-adds stay few (the reference runs them one by one).
                let small = |s: Result<convpool::ConvGeometry>, weight: bool| {
                    s.map_or(true, |g| {
                        let w = [g.c_out, g.c_in_per_group(), g.kernel[0], g.kernel[1]];
                        let macs = numel(&g.output_shape()).saturating_mul(numel(&w[1..]));
                        numel(&g.input_shape()) <= 20_000
                            && numel(&g.output_shape()) <= 20_000
                            && (!weight || numel(&w) <= 20_000)
                            && macs <= 200_000
                    })
                };
                let bi = small(
                    spec.backward_input_geometry(a.shape(), b.shape(), size),
                    false,
                );
                let bw = small(
                    spec.backward_weight_geometry(a.shape(), b.shape(), size),
                    true,
                );
                let ti = small(
                    tspec.backward_input_geometry(a.shape(), b.shape(), size),
                    false,
                );
                let tw = small(
                    tspec.backward_weight_geometry(a.shape(), b.shape(), size),
                    true,
                );
                let mut refused = Vec::new();
                if bi {
                    refused.push(t.count(&cpu::conv2d_backward_input(&a, &b, size, &spec)));
                    t.count(&fast::conv2d_backward_input(&a, &b, size, &spec));
                }
                if bw {
                    refused.push(t.count(&cpu::conv2d_backward_weight(&a, &b, size, &spec)));
                    t.count(&fast::conv2d_backward_weight(&a, &b, size, &spec));
                }
                if ti {
                    let r = cpu::conv_transpose2d_backward_input(&a, &b, size, &tspec);
                    refused.push(t.count(&r));
                    t.count(&fast::conv_transpose2d_backward_input(&a, &b, size, &tspec));
                }
                if tw {
                    let r = cpu::conv_transpose2d_backward_weight(&a, &b, size, &tspec);
                    refused.push(t.count(&r));
                    t.count(&fast::conv_transpose2d_backward_weight(
                        &a, &b, size, &tspec,
                    ));
                }
                let c_bias = t.count(&cpu::bias_backward(&a));
                t.count(&fast::bias_backward(&a));
                let c_act = t.count(&cpu::activation(&a, act));
                t.count(&fast::activation(&a, act));
                let c_actb = t.count(&cpu::activation_backward(&a, &b, act));
                t.count(&fast::activation_backward(&a, &b, act));
                let c_add = t.count(&cpu::add(&a, &b));
                let c_mse = t.count(&cpu::mse_loss(&a, &b));
                t.count(&fast::mse_loss(&a, &b));
                let c_sgd = t.count(&cpu::sgd_update(&a, &b, &a, &sgd));
                t.count(&fast::sgd_update(&a, &b, &a, &sgd));
                let lshape = [b_shape[0], b_shape[2], b_shape[3]];
                let labels = (numel(&lshape) <= 2000).then(|| {
                    Tensor::<u32>::from_fn(lshape, |i| (i as u32 * 7 + label) % 6).unwrap()
                });
                let c_ce = labels.as_ref().map(|l| {
                    t.count(&fast::softmax_cross_entropy(&a, l));
                    t.count(&cpu::softmax_cross_entropy(&a, l))
                });
                let idx = Tensor::<u32>::from_fn(b_shape, |i| (i as u32 * 5 + label) % 9).unwrap();
                let c_unpool = t.count(&cpu::max_unpool2d_backward(&a, &idx));
                t.count(&fast::max_unpool2d_backward(&a, &idx));
                let Some(gpu) = &gpu else { return Ok(()) };
                let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
                let mut r = refused.into_iter();
                if bi {
                    let g = gpu.conv2d_backward_input(&ga, &gb, size, &spec);
                    t.agree("conv2d_backward_input", r.next().unwrap(), &g);
                }
                if bw {
                    let g = gpu.conv2d_backward_weight(&ga, &gb, size, &spec);
                    t.agree("conv2d_backward_weight", r.next().unwrap(), &g);
                }
                if ti {
                    let g = gpu.conv_transpose2d_backward_input(&ga, &gb, size, &tspec);
                    t.agree("conv_transpose2d_backward_input", r.next().unwrap(), &g);
                }
                if tw {
                    let g = gpu.conv_transpose2d_backward_weight(&ga, &gb, size, &tspec);
                    t.agree("conv_transpose2d_backward_weight", r.next().unwrap(), &g);
                }
                t.agree("bias_backward", c_bias, &gpu.bias_backward(&ga));
                t.agree("activation", c_act, &gpu.activation(&ga, act));
                t.agree(
                    "activation_backward",
                    c_actb,
                    &gpu.activation_backward(&ga, &gb, act),
                );
                t.agree("add", c_add, &gpu.add(&ga, &gb));
                t.agree("mse_loss", c_mse, &gpu.mse_loss(&ga, &gb));
                t.agree("sgd_update", c_sgd, &gpu.sgd_update(&ga, &gb, &ga, &sgd));
                if let (Some(l), Some(c)) = (&labels, c_ce) {
                    let gl = gpu.upload(l).unwrap();
                    t.agree(
                        "softmax_cross_entropy",
                        c,
                        &gpu.softmax_cross_entropy(&ga, &gl),
                    );
                }
                let gi = gpu.upload(&idx).unwrap();
                t.agree(
                    "max_unpool2d_backward",
                    c_unpool,
                    &gpu.max_unpool2d_backward(&ga, &gi),
                );
                Ok(())
            },
        )
        .unwrap();
    t.report("training");
}
