//! Activations, losses, `add` and the SGD update: gradients against finite differences (in
//! f64), the fast path and the GPU against the reference, determinism and bad input.

mod common;

use common::{assert_close, assert_exact, expect_invalid, gpu, Rng};
use convpool::{cpu, fast, Activation, Conv2d, Sgd, Tensor};

fn activations() -> Vec<Activation> {
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

/// The activation in f64, written from its definition (not from the library's code).
fn act64(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Identity => x,
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu { slope } => {
            if x > 0.0 {
                x
            } else {
                slope as f64 * x
            }
        }
        Activation::Clamp { min, max } => x.clamp(min as f64, max as f64),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
        other => panic!("act64 has no formula for {other:?}: add one"),
    }
}

#[test]
fn activation_gradients_match_finite_differences_and_pytorch_at_the_kinks() {
    let mut rng = Rng::new(21);
    for act in activations() {
        // Values away from the kinks, for the finite differences.
        let x = Tensor::from_fn([2, 3, 4, 5], |_| {
            let v = 2.0 * rng.f32();
            if [0.0f32, -0.25, 0.5].iter().any(|k| (v - k).abs() < 0.02) {
                v + 0.05
            } else {
                v
            }
        })
        .unwrap();
        let gy = rng.tensor([2, 3, 4, 5]);
        let y = cpu::activation(&x, act).unwrap();
        let gx = cpu::activation_backward(&gy, &y, act).unwrap();
        for i in 0..x.len() {
            let (v, h) = (x.data()[i] as f64, 1e-4);
            let fd = (act64(act, v + h) - act64(act, v - h)) / (2.0 * h) * gy.data()[i] as f64;
            let got = gx.data()[i] as f64;
            assert!(
                (got - fd).abs() <= 1e-3 * (1.0 + fd.abs()),
                "{act:?} at x = {v}: {got} vs {fd}"
            );
            assert!(
                (y.data()[i] as f64 - act64(act, v)).abs() <= 1e-6 * (1.0 + v.abs()),
                "{act:?} forward at {v}"
            );
        }
        // The fast path and the GPU agree with the reference.
        assert_exact("fast activation", &fast::activation(&x, act).unwrap(), &y);
        assert_exact(
            "fast backward",
            &fast::activation_backward(&gy, &y, act).unwrap(),
            &gx,
        );
        if let Some(g) = gpu() {
            let (gxx, ggy) = (g.upload(&x).unwrap(), g.upload(&gy).unwrap());
            let gyy = g.activation(&gxx, act).unwrap();
            assert_close(
                &format!("{act:?} gpu"),
                &gyy.download().unwrap(),
                &y,
                1e-6,
                1e-5,
            );
            let back = g
                .activation_backward(&ggy, &g.upload(&y).unwrap(), act)
                .unwrap();
            assert_close(
                &format!("{act:?} gpu backward"),
                &back.download().unwrap(),
                &gx,
                1e-6,
                1e-5,
            );
        }
    }
    // The kinks: ReLU's 0 and Clamp's bounds get 0, as PyTorch's relu and hardtanh backward;
    // LeakyReLU at 0 gets the slope. NaN propagates through every forward.
    let ones = Tensor::new([4], vec![1.0; 4]).unwrap();
    let at = |a: Activation, v: f32| {
        let y = cpu::activation(&Tensor::new([4], vec![v; 4]).unwrap(), a).unwrap();
        (
            y.data()[0],
            cpu::activation_backward(&ones, &y, a).unwrap().data()[0],
        )
    };
    assert_eq!(at(Activation::Relu, 0.0), (0.0, 0.0));
    assert_eq!(at(Activation::LeakyRelu { slope: 0.1 }, 0.0), (0.0, 0.1));
    let clamp = Activation::Clamp {
        min: -1.0,
        max: 6.0,
    };
    assert_eq!(at(clamp, -1.0), (-1.0, 0.0));
    assert_eq!(at(clamp, 6.0), (6.0, 0.0));
    assert_eq!(at(clamp, 7.0), (6.0, 0.0));
    for act in activations() {
        assert!(at(act, f32::NAN).0.is_nan(), "{act:?} must propagate NaN");
        if let Some(g) = gpu() {
            let y = g
                .activation(
                    &g.upload(&Tensor::new([1], vec![f32::NAN]).unwrap())
                        .unwrap(),
                    act,
                )
                .unwrap();
            assert!(
                y.download().unwrap().data()[0].is_nan(),
                "{act:?} on the GPU must propagate NaN"
            );
        }
    }
}

/// Mean cross-entropy in f64 from its definition.
fn cross_entropy64(l: &[f64], labels: &[u32], [n, c, hw]: [usize; 3]) -> f64 {
    let mut total = 0.0;
    for b in 0..n {
        for p in 0..hw {
            let at = |ch: usize| l[(b * c + ch) * hw + p];
            let lse = (0..c).map(|ch| at(ch).exp()).sum::<f64>().ln();
            total += lse - at(labels[b * hw + p] as usize);
        }
    }
    total / (n * hw) as f64
}

#[test]
fn losses_match_finite_differences_and_every_backend_agrees() {
    let mut rng = Rng::new(22);
    let (n, c, h, w) = (2, 3, 5, 7);
    let logits = Tensor::from_fn([n, c, h, w], |_| 3.0 * rng.f32()).unwrap();
    let labels = Tensor::<u32>::from_fn([n, h, w], |_| rng.range(0, c - 1) as u32).unwrap();
    let (loss, grad) = cpu::softmax_cross_entropy(&logits, &labels).unwrap();
    let l64: Vec<f64> = logits.data().iter().map(|&v| v as f64).collect();
    let want = cross_entropy64(&l64, labels.data(), [n, c, h * w]);
    assert!((loss as f64 - want).abs() < 1e-5, "{loss} vs {want}");
    for i in (0..logits.len()).step_by(3) {
        let eps = 1e-5;
        let (mut up, mut down) = (l64.clone(), l64.clone());
        up[i] += eps;
        down[i] -= eps;
        let dims = [n, c, h * w];
        let fd = (cross_entropy64(&up, labels.data(), dims)
            - cross_entropy64(&down, labels.data(), dims))
            / (2.0 * eps);
        assert!(
            (grad.data()[i] as f64 - fd).abs() < 1e-5,
            "logit {i}: {} vs {fd}",
            grad.data()[i]
        );
    }
    let (fl, fg) = fast::softmax_cross_entropy(&logits, &labels).unwrap();
    assert!((fl - loss).abs() < 1e-5);
    assert_close("fast cross-entropy gradient", &fg, &grad, 1e-7, 1e-5);

    let pred = rng.tensor([3, 2, 4, 5]);
    let target = rng.tensor([3, 2, 4, 5]);
    let (mse, mgrad) = cpu::mse_loss(&pred, &target).unwrap();
    let d64: Vec<f64> = pred
        .data()
        .iter()
        .zip(target.data())
        .map(|(&a, &b)| a as f64 - b as f64)
        .collect();
    let want = d64.iter().map(|d| d * d).sum::<f64>() / d64.len() as f64;
    assert!((mse as f64 - want).abs() < 1e-6);
    for (i, d) in d64.iter().enumerate() {
        // d/dp of mean((p − t)²) is exactly 2(p − t)/len: the finite difference of a quadratic.
        assert!((mgrad.data()[i] as f64 - 2.0 * d / d64.len() as f64).abs() < 1e-7);
    }
    let (fm, fmg) = fast::mse_loss(&pred, &target).unwrap();
    assert!((fm - mse).abs() < 1e-6);
    assert_close("fast mse gradient", &fmg, &mgrad, 1e-7, 1e-5);

    let Some(g) = gpu() else { return };
    let (gl, gg) = g
        .softmax_cross_entropy(&g.upload(&logits).unwrap(), &g.upload(&labels).unwrap())
        .unwrap();
    let gl = gl.download().unwrap().data()[0];
    assert!((gl - loss).abs() < 1e-5, "gpu loss {gl} vs {loss}");
    assert_close(
        "gpu cross-entropy gradient",
        &gg.download().unwrap(),
        &grad,
        1e-7,
        1e-4,
    );
    let (gm, gmg) = g
        .mse_loss(&g.upload(&pred).unwrap(), &g.upload(&target).unwrap())
        .unwrap();
    assert!((gm.download().unwrap().data()[0] - mse).abs() < 1e-6);
    assert_close(
        "gpu mse gradient",
        &gmg.download().unwrap(),
        &mgrad,
        1e-7,
        1e-5,
    );
    // A loss over more than one 4,096-value block sums level by level, the same bits each time.
    let big = rng.tensor([1, 5, 91, 97]);
    let zeros = Tensor::zeros([1, 5, 91, 97]).unwrap();
    let (bl, _) = cpu::mse_loss(&big, &zeros).unwrap();
    let (gb, gz) = (g.upload(&big).unwrap(), g.upload(&zeros).unwrap());
    let first = g.mse_loss(&gb, &gz).unwrap().0.download().unwrap();
    assert!(
        (first.data()[0] - bl).abs() < 1e-5,
        "{} vs {bl}",
        first.data()[0]
    );
    assert_exact(
        "gpu loss twice",
        &g.mse_loss(&gb, &gz).unwrap().0.download().unwrap(),
        &first,
    );
}

#[test]
fn sgd_and_add_follow_their_definitions_on_every_backend() {
    let mut rng = Rng::new(23);
    let (w, grad, v) = (
        rng.tensor([4, 3, 3, 3]),
        rng.tensor([4, 3, 3, 3]),
        rng.tensor([4, 3, 3, 3]),
    );
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-2,
    };
    let (nw, nv) = cpu::sgd_update(&w, &grad, &v, &sgd).unwrap();
    for i in 0..w.len() {
        let want_v = 0.9 * v.data()[i] as f64 + grad.data()[i] as f64 + 1e-2 * w.data()[i] as f64;
        let want_w = w.data()[i] as f64 - 0.1 * want_v;
        assert!(
            (nv.data()[i] as f64 - want_v).abs() < 1e-6
                && (nw.data()[i] as f64 - want_w).abs() < 1e-6
        );
    }
    let (fw, fv) = fast::sgd_update(&w, &grad, &v, &sgd).unwrap();
    assert_exact("fast weight", &fw, &nw);
    assert_exact("fast velocity", &fv, &nv);
    let sum = cpu::add(&w, &grad).unwrap();
    assert_exact("fast add", &fast::add(&w, &grad).unwrap(), &sum);
    let Some(g) = gpu() else { return };
    let (gw, gg, gv) = (
        g.upload(&w).unwrap(),
        g.upload(&grad).unwrap(),
        g.upload(&v).unwrap(),
    );
    let (a, b) = g.sgd_update(&gw, &gg, &gv, &sgd).unwrap();
    assert_close("gpu weight", &a.download().unwrap(), &nw, 1e-6, 1e-6);
    assert_close("gpu velocity", &b.download().unwrap(), &nv, 1e-6, 1e-6);
    assert_exact(
        "gpu add",
        &g.add(&gw, &gg).unwrap().download().unwrap(),
        &sum,
    );
}

#[test]
fn bad_training_input_is_an_err_naming_the_values() {
    let x = Tensor::zeros([1, 2, 5, 5]).unwrap();
    let w = Tensor::zeros([3, 2, 3, 3]).unwrap();
    let gy = Tensor::zeros([1, 3, 3, 3]).unwrap();
    let spec = Conv2d::default();
    expect_invalid(
        cpu::conv2d_backward_input(&gy, &w, [6, 5], &spec),
        "conv2d_backward_input",
        "[1, 3, 4, 3]",
    );
    expect_invalid(
        cpu::conv2d_backward_weight(&gy, &x, [2, 3], &spec),
        "conv2d_backward_weight",
        "[1, 3, 3, 3]",
    );
    expect_invalid(
        fast::conv2d_backward_weight(&gy, &x, [2, 3], &spec),
        "conv2d_backward_weight",
        "[1, 3, 4, 3]",
    );
    expect_invalid(
        cpu::bias_backward(&Tensor::zeros([3, 3]).unwrap()),
        "bias_backward",
        "rank 4",
    );
    let bad = [
        Activation::LeakyRelu { slope: -0.1 },
        Activation::LeakyRelu { slope: f32::NAN },
        Activation::Clamp { min: 1.0, max: 0.0 },
        Activation::Clamp {
            min: f32::NAN,
            max: 1.0,
        },
    ];
    for a in bad {
        expect_invalid(cpu::activation(&x, a), "activation", "");
        expect_invalid(fast::conv2d_act(&x, &w, None, &spec, a), "conv2d_act", "");
    }
    expect_invalid(
        cpu::activation_backward(&x, &gy, Activation::Relu),
        "activation_backward",
        "[1, 3, 3, 3]",
    );
    let logits = Tensor::zeros([1, 3, 2, 2]).unwrap();
    let labels = Tensor::<u32>::new([1, 2, 2], vec![0, 1, 3, 2]).unwrap();
    expect_invalid(
        cpu::softmax_cross_entropy(&logits, &labels),
        "softmax_cross_entropy",
        "label 3 at [0, 1, 0]",
    );
    expect_invalid(
        fast::softmax_cross_entropy(&logits, &labels),
        "softmax_cross_entropy",
        "label 3",
    );
    let wrong = Tensor::<u32>::zeros([1, 2, 3]).unwrap();
    expect_invalid(
        cpu::softmax_cross_entropy(&logits, &wrong),
        "softmax_cross_entropy",
        "[1, 2, 3]",
    );
    expect_invalid(cpu::mse_loss(&x, &gy), "mse_loss", "[1, 3, 3, 3]");
    expect_invalid(cpu::add(&x, &gy), "add", "[1, 2, 5, 5]");
    let sgd = Sgd {
        lr: -1.0,
        ..Sgd::default()
    };
    expect_invalid(cpu::sgd_update(&w, &w, &w, &sgd), "sgd_update", "lr");
    expect_invalid(
        cpu::sgd_update(&w, &x, &w, &Sgd::default()),
        "sgd_update",
        "[1, 2, 5, 5]",
    );
    let Some(g) = gpu() else { return };
    let (gx, gw, ggy) = (
        g.upload(&x).unwrap(),
        g.upload(&w).unwrap(),
        g.upload(&gy).unwrap(),
    );
    expect_invalid(
        g.conv2d_backward_input(&ggy, &gw, [6, 5], &spec),
        "conv2d_backward_input",
        "[1, 3, 4, 3]",
    );
    expect_invalid(
        g.conv2d_backward_weight(&ggy, &gx, [2, 3], &spec),
        "conv2d_backward_weight",
        "[1, 3, 4, 3]",
    );
    expect_invalid(
        g.conv2d_act(&gx, &gw, None, &spec, bad[0]),
        "conv2d_act",
        "slope",
    );
    let (gl, glab) = (g.upload(&logits).unwrap(), g.upload(&labels).unwrap());
    expect_invalid(
        g.softmax_cross_entropy(&gl, &glab),
        "softmax_cross_entropy",
        "label 3",
    );
    expect_invalid(g.add(&gx, &ggy), "add", "[1, 2, 5, 5]");
    expect_invalid(g.sgd_update(&gw, &gw, &gw, &sgd), "sgd_update", "lr");
}

#[test]
fn max_unpool2d_backward_gathers_on_the_gpu_as_on_the_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(24);
    for (i, (xs, p)) in common::sweep(&mut rng).into_iter().enumerate().step_by(3) {
        let x = rng.tensor(xs);
        let (_, idx) = cpu::max_pool2d(&x, &p).unwrap();
        let grad = rng.tensor(xs);
        let want = cpu::max_unpool2d_backward(&grad, &idx).unwrap();
        let gg = g.upload(&grad).unwrap();
        // Indices from the GPU's pooling (their origin is known) and uploaded ones (their bound).
        let (_, pooled) = g.max_pool2d(&g.upload(&x).unwrap(), &p).unwrap();
        for (what, gi) in [("pooled", pooled), ("uploaded", g.upload(&idx).unwrap())] {
            let got = g
                .max_unpool2d_backward(&gg, &gi)
                .unwrap()
                .download()
                .unwrap();
            assert_exact(&format!("case {i} {xs:?} {p:?} {what}"), &got, &want);
        }
    }
    // Indices pooled from a larger plane than the gradient's are checked on the device.
    let x = Tensor::from_fn([1, 1, 4, 4], |i| i as f32).unwrap();
    let (_, idx) = g
        .max_pool2d(&g.upload(&x).unwrap(), &convpool::Pool2d::new([2, 2]))
        .unwrap();
    let small = g.upload(&Tensor::zeros([1, 1, 2, 2]).unwrap()).unwrap();
    expect_invalid(
        g.max_unpool2d_backward(&small, &idx),
        "max_unpool2d_backward",
        "index 5",
    );
}
