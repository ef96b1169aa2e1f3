//! Pooling, unpooling and the pooling backward passes: GPU vs CPU sweeps, ties, NaN and
//! infinities, the classic pictures, adjoint identities, stochastic sampling and determinism
//! (bad input and the kernels past their limits: pool_limits.rs).

mod common;

use common::{assert_close, assert_exact, dot, gpu, sweep, Rng};
use convpool::{cpu, Gpu, Pool2d, Tensor};

#[test]
fn pooling_gpu_matches_cpu_on_a_seeded_sweep() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(17);
    for (i, (xs, p)) in sweep(&mut rng).into_iter().enumerate() {
        let what = |op: &str| format!("case {i} {op}: x {xs:?} {p:?}");
        // Small integers: many exact ties in max pooling, and exact sums.
        let x = if i % 2 == 0 {
            rng.int_tensor(xs, 3)
        } else {
            rng.tensor(xs)
        };
        let gx = gpu.upload(&x).unwrap();
        let (v, idx) = cpu::max_pool2d(&x, &p).unwrap();
        let (gv, gidx) = gpu.max_pool2d(&gx, &p).unwrap();
        assert_exact(&what("max values"), &gv.download().unwrap(), &v);
        assert_exact(&what("max indices"), &gidx.download().unwrap(), &idx);
        let a = cpu::avg_pool2d(&x, &p).unwrap();
        let ga = gpu.avg_pool2d(&gx, &p).unwrap();
        assert_close(&what("avg"), &ga.download().unwrap(), &a, 1e-6, 1e-5);
        let (s, sidx) = cpu::stochastic_pool2d(&x, &p, i as u64).unwrap();
        let (gs, gsidx) = gpu.stochastic_pool2d(&gx, &p, i as u64).unwrap();
        assert_exact(&what("stochastic values"), &gs.download().unwrap(), &s);
        assert_exact(
            &what("stochastic indices"),
            &gsidx.download().unwrap(),
            &sidx,
        );
        let e = cpu::stochastic_pool2d_expectation(&x, &p).unwrap();
        assert_close(
            &what("expectation"),
            &gpu.stochastic_pool2d_expectation(&gx, &p)
                .unwrap()
                .download()
                .unwrap(),
            &e,
            1e-6,
            1e-5,
        );

        let size = [xs[2], xs[3]];
        let g = rng.tensor(v.shape());
        let gg = gpu.upload(&g).unwrap();
        assert_exact(
            &what("max_unpool2d"),
            &gpu.max_unpool2d(&gv, &gidx, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_unpool2d(&v, &idx, size).unwrap(),
        );
        assert_exact(
            &what("max_pool2d_backward"),
            &gpu.max_pool2d_backward(&gg, &gidx, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_pool2d_backward(&g, &idx, size).unwrap(),
        );
        // The same indices without their origin take the checked per-plane scatter: same result.
        let plain_idx = gpu.upload(&idx).unwrap();
        assert_exact(
            &what("max_unpool2d (uploaded indices)"),
            &gpu.max_unpool2d(&gv, &plain_idx, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_unpool2d(&v, &idx, size).unwrap(),
        );
        assert_exact(
            &what("max_pool2d_backward (uploaded indices)"),
            &gpu.max_pool2d_backward(&gg, &plain_idx, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_pool2d_backward(&g, &idx, size).unwrap(),
        );
        assert_close(
            &what("avg_unpool2d"),
            &gpu.avg_unpool2d(&ga, &p, size).unwrap().download().unwrap(),
            &cpu::avg_unpool2d(&a, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
        assert_close(
            &what("avg_pool2d_backward"),
            &gpu.avg_pool2d_backward(&gg, &p, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::avg_pool2d_backward(&g, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn ties_take_the_first_maximum_and_padding_is_never_selected() {
    let x = Tensor::new([1, 1, 3, 3], vec![5.0; 9]).unwrap();
    let p = Pool2d {
        stride: [1, 1],
        padding: [1, 1],
        ..Pool2d::new([3, 3])
    };
    let (v, idx) = cpu::max_pool2d(&x, &p).unwrap();
    assert_eq!(v.data(), &[5.0; 9]);
    // Each window's first in-bounds tap in row-major order.
    assert_eq!(idx.data(), &[0, 0, 1, 0, 0, 1, 3, 3, 4]);
    // All-negative input with padding: padding (which would be 0) is never selected.
    let neg = Tensor::new([1, 1, 2, 2], vec![-3.0, -1.0, -2.0, -4.0]).unwrap();
    let (v, idx) = cpu::max_pool2d(
        &neg,
        &Pool2d {
            stride: [1, 1],
            padding: [1, 1],
            ..Pool2d::new([2, 2])
        },
    )
    .unwrap();
    assert_eq!(
        v.data(),
        &[-3.0, -1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -2.0, -4.0]
    );
    assert_eq!(idx.data(), &[0, 1, 1, 2, 1, 1, 2, 2, 3]);
    let Some(gpu) = gpu() else { return };
    let (gv, gi) = gpu.max_pool2d(&gpu.upload(&x).unwrap(), &p).unwrap();
    assert_eq!(gv.download().unwrap().data(), &[5.0; 9]);
    assert_eq!(gi.download().unwrap().data(), &[0, 0, 1, 0, 0, 1, 3, 3, 4]);
}

#[test]
fn nan_and_infinities() {
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    #[rustfmt::skip]
    let x = Tensor::new([1, 1, 4, 4], vec![
        1.0, nan, -inf, -inf,
        nan, 2.0, -inf, -inf,
        inf, 3.0, 0.0, 7.0,
        -1.0, inf, 7.0, 0.0,
    ]).unwrap();
    let p = Pool2d::new([2, 2]);
    let (v, idx) = cpu::max_pool2d(&x, &p).unwrap();
    assert!(v.data()[0].is_nan());
    assert_eq!(idx.data()[0], 4, "the last NaN wins, as in PyTorch");
    assert_eq!(v.data()[1], -inf);
    assert_eq!(idx.data()[1], 2, "an all -inf window keeps its first tap");
    assert_eq!((v.data()[2], idx.data()[2]), (inf, 8));
    assert_eq!((v.data()[3], idx.data()[3]), (7.0, 11));
    let a = cpu::avg_pool2d(&x, &p).unwrap();
    assert!(
        a.data()[0].is_nan() && a.data()[1] == -inf && a.data()[2] == inf && a.data()[3] == 3.5
    );
    let (s, sidx) = cpu::stochastic_pool2d(&x, &p, 1).unwrap();
    assert!(
        s.data()[0].is_nan() && sidx.data()[0] == 1,
        "stochastic: first NaN"
    );
    assert_eq!(
        (s.data()[1], sidx.data()[1]),
        (0.0, 2),
        "stochastic: zero sum gives 0 and the first tap"
    );
    assert_eq!(
        (s.data()[2], sidx.data()[2]),
        (inf, 8),
        "stochastic: an infinite sum takes the first maximum"
    );
    let Some(gpu) = gpu() else { return };
    let gx = gpu.upload(&x).unwrap();
    let (gv, gi) = gpu.max_pool2d(&gx, &p).unwrap();
    assert_exact("max values", &gv.download().unwrap(), &v);
    assert_exact("max indices", &gi.download().unwrap(), &idx);
    assert_close(
        "avg",
        &gpu.avg_pool2d(&gx, &p).unwrap().download().unwrap(),
        &a,
        0.0,
        0.0,
    );
    let (gs, gsi) = gpu.stochastic_pool2d(&gx, &p, 1).unwrap();
    assert_close("stochastic values", &gs.download().unwrap(), &s, 0.0, 0.0);
    assert_exact("stochastic indices", &gsi.download().unwrap(), &sidx);
    assert_close(
        "expectation",
        &gpu.stochastic_pool2d_expectation(&gx, &p)
            .unwrap()
            .download()
            .unwrap(),
        &cpu::stochastic_pool2d_expectation(&x, &p).unwrap(),
        0.0,
        0.0,
    );
    // A sweep with NaN and infinities sprinkled in.
    let mut rng = Rng::new(8);
    for (i, (xs, p)) in sweep(&mut rng).into_iter().enumerate().take(12) {
        let mut x = rng.tensor(xs);
        for v in x.data_mut().iter_mut() {
            match rng.range(0, 9) {
                0 => *v = nan,
                1 => *v = inf,
                2 => *v = -inf,
                _ => {}
            }
        }
        let gx = gpu.upload(&x).unwrap();
        let (v, idx) = cpu::max_pool2d(&x, &p).unwrap();
        let (gv, gi) = gpu.max_pool2d(&gx, &p).unwrap();
        assert_close(
            &format!("case {i} max"),
            &gv.download().unwrap(),
            &v,
            0.0,
            0.0,
        );
        assert_exact(
            &format!("case {i} max indices"),
            &gi.download().unwrap(),
            &idx,
        );
        assert_close(
            &format!("case {i} avg"),
            &gpu.avg_pool2d(&gx, &p).unwrap().download().unwrap(),
            &cpu::avg_pool2d(&x, &p).unwrap(),
            1e-6,
            1e-5,
        );
        let (s, si) = cpu::stochastic_pool2d(&x, &p, 5).unwrap();
        let (gs, gsi) = gpu.stochastic_pool2d(&gx, &p, 5).unwrap();
        assert_close(
            &format!("case {i} stochastic"),
            &gs.download().unwrap(),
            &s,
            0.0,
            0.0,
        );
        assert_exact(
            &format!("case {i} stochastic indices"),
            &gsi.download().unwrap(),
            &si,
        );
    }
}

#[test]
fn classic_pictures_pool_and_unpool_a_4x4() {
    #[rustfmt::skip]
    let x = Tensor::new([1, 1, 4, 4], vec![
        1., 1., 2., 4.,
        5., 6., 7., 8.,
        3., 2., 1., 0.,
        1., 2., 3., 4.,
    ]).unwrap();
    let p = Pool2d::new([2, 2]);
    let (m, idx) = cpu::max_pool2d(&x, &p).unwrap();
    assert_eq!(m.data(), &[6., 8., 3., 4.]);
    assert_eq!(idx.data(), &[5, 7, 8, 15]);
    #[rustfmt::skip]
    let unpooled = vec![
        0., 0., 0., 0.,
        0., 6., 0., 8.,
        3., 0., 0., 0.,
        0., 0., 0., 4.,
    ];
    assert_eq!(
        cpu::max_unpool2d(&m, &idx, [4, 4]).unwrap().data(),
        unpooled.as_slice()
    );
    let a = cpu::avg_pool2d(&x, &p).unwrap();
    assert_eq!(a.data(), &[3.25, 5.25, 2.0, 2.0]);
    #[rustfmt::skip]
    let filled = vec![
        3.25, 3.25, 5.25, 5.25,
        3.25, 3.25, 5.25, 5.25,
        2.0, 2.0, 2.0, 2.0,
        2.0, 2.0, 2.0, 2.0,
    ];
    assert_eq!(
        cpu::avg_unpool2d(&a, &p, [4, 4]).unwrap().data(),
        filled.as_slice()
    );
    let Some(gpu) = gpu() else { return };
    let gx = gpu.upload(&x).unwrap();
    let (gm, gi) = gpu.max_pool2d(&gx, &p).unwrap();
    assert_eq!(gm.download().unwrap().data(), &[6., 8., 3., 4.]);
    assert_eq!(gi.download().unwrap().data(), &[5, 7, 8, 15]);
    assert_eq!(
        gpu.max_unpool2d(&gm, &gi, [4, 4])
            .unwrap()
            .download()
            .unwrap()
            .data(),
        unpooled.as_slice()
    );
    let ga = gpu.avg_pool2d(&gx, &p).unwrap();
    assert_eq!(ga.download().unwrap().data(), &[3.25, 5.25, 2.0, 2.0]);
    assert_eq!(
        gpu.avg_unpool2d(&ga, &p, [4, 4])
            .unwrap()
            .download()
            .unwrap()
            .data(),
        filled.as_slice()
    );
}

#[test]
fn avg_unpool_takes_the_mean_of_overlapping_windows() {
    // 1x3 input, windows of 2 with stride 1: position 1 is covered by both windows.
    let a = Tensor::new([1, 1, 1, 2], vec![2.0, 4.0]).unwrap();
    let p = Pool2d {
        stride: [1, 1],
        ..Pool2d::new([1, 2])
    };
    assert_eq!(
        cpu::avg_unpool2d(&a, &p, [1, 3]).unwrap().data(),
        &[2.0, 3.0, 4.0]
    );
    // Gapped windows leave uncovered positions at 0.
    let p = Pool2d {
        stride: [1, 3],
        ..Pool2d::new([1, 2])
    };
    assert_eq!(
        cpu::avg_unpool2d(&a, &p, [1, 5]).unwrap().data(),
        &[2.0, 2.0, 0.0, 4.0, 4.0]
    );
    // Max unpool with colliding indices: the last window in row-major order wins.
    let v = Tensor::new([1, 1, 1, 3], vec![1.0, 2.0, 3.0]).unwrap();
    let idx = Tensor::<u32>::new([1, 1, 1, 3], vec![1, 1, 0]).unwrap();
    assert_eq!(
        cpu::max_unpool2d(&v, &idx, [1, 2]).unwrap().data(),
        &[3.0, 2.0]
    );
    assert_eq!(
        cpu::max_pool2d_backward(&v, &idx, [1, 2]).unwrap().data(),
        &[3.0, 3.0]
    );
    let Some(gpu) = gpu() else { return };
    let (gv, gi) = (gpu.upload(&v).unwrap(), gpu.upload(&idx).unwrap());
    assert_eq!(
        gpu.max_unpool2d(&gv, &gi, [1, 2])
            .unwrap()
            .download()
            .unwrap()
            .data(),
        &[3.0, 2.0]
    );
    assert_eq!(
        gpu.max_pool2d_backward(&gv, &gi, [1, 2])
            .unwrap()
            .download()
            .unwrap()
            .data(),
        &[3.0, 3.0]
    );
    let p = Pool2d {
        stride: [1, 1],
        ..Pool2d::new([1, 2])
    };
    assert_eq!(
        gpu.avg_unpool2d(&gpu.upload(&a).unwrap(), &p, [1, 3])
            .unwrap()
            .download()
            .unwrap()
            .data(),
        &[2.0, 3.0, 4.0]
    );
}

#[test]
fn adjoint_identities_of_the_backward_passes() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(23);
    for (i, (xs, p)) in sweep(&mut rng).into_iter().enumerate() {
        let x = rng.tensor(xs);
        let gx = gpu.upload(&x).unwrap();
        let size = [xs[2], xs[3]];
        // <avg_pool2d(x), g> == <x, avg_pool2d_backward(g)>
        let a = gpu.avg_pool2d(&gx, &p).unwrap().download().unwrap();
        let g = rng.tensor(a.shape());
        let back = gpu
            .avg_pool2d_backward(&gpu.upload(&g).unwrap(), &p, size)
            .unwrap()
            .download()
            .unwrap();
        let (l, r) = (dot(&a, &g), dot(&x, &back));
        assert!(
            (l - r).abs() <= 1e-5 * (1.0 + l.abs()),
            "case {i} {p:?}: avg {l} vs {r}"
        );
        // <max_pool2d_backward(g, idx), x> == <g, x gathered at idx> (indices collide when
        // windows overlap).
        let (_, idx) = gpu.max_pool2d(&gx, &p).unwrap();
        let back = gpu
            .max_pool2d_backward(&gpu.upload(&g).unwrap(), &idx, size)
            .unwrap()
            .download()
            .unwrap();
        let idx = idx.download().unwrap();
        let plane = size[0] * size[1];
        let per = g.shape()[2] * g.shape()[3];
        let gathered: Vec<f32> = idx
            .data()
            .iter()
            .enumerate()
            .map(|(j, &t)| x.data()[(j / per) * plane + t as usize])
            .collect();
        let gathered = Tensor::new(g.shape(), gathered).unwrap();
        let (l, r) = (dot(&back, &x), dot(&g, &gathered));
        assert!(
            (l - r).abs() <= 1e-5 * (1.0 + l.abs()),
            "case {i} {p:?}: max {l} vs {r}"
        );
    }
}

/// Pearson's chi-square of `counts` against probabilities `p`.
fn chi_square(counts: &[usize], p: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(p)
        .map(|(&c, &pi)| (c as f64 - n as f64 * pi).powi(2) / (n as f64 * pi))
        .sum()
}

#[test]
fn stochastic_pooling_samples_in_proportion_to_activations() {
    // One 2x2 window [1, 2, 3, 4] (and a negative, treated as 0): p = a / sum(a).
    let window = [1.0f32, 2.0, -5.0, 4.0];
    let probs = [1.0 / 7.0, 2.0 / 7.0, 0.0, 4.0 / 7.0];
    let x = Tensor::new([1, 1, 2, 2], window.to_vec()).unwrap();
    let p = Pool2d::new([2, 2]);
    let mut counts = [0usize; 4];
    for seed in 0..4000u64 {
        let (v, i) = cpu::stochastic_pool2d(&x, &p, seed).unwrap();
        let i = i.data()[0] as usize;
        assert_eq!(v.data()[0], window[i], "the value is the chosen element");
        counts[i] += 1;
    }
    assert_eq!(counts[2], 0, "a negative activation is never chosen");
    let chi = chi_square(
        &[counts[0], counts[1], counts[3]],
        &[probs[0], probs[1], probs[3]],
    );
    // 2 degrees of freedom: 13.8 is the 0.999 quantile. Fixed seeds, so this cannot flake.
    assert!(
        chi < 13.8,
        "seed sweep: counts {counts:?}, chi-square {chi}"
    );
    // Expectation mode: sum a^2 / sum a = (1 + 4 + 16) / 7.
    let e = cpu::stochastic_pool2d_expectation(&x, &p).unwrap();
    assert!((e.data()[0] - 3.0).abs() < 1e-6);

    let Some(gpu) = gpu() else { return };
    // 4000 copies of the window in one call: each output position has its own counter.
    let planes = 4000;
    let many = Tensor::new([1, planes, 2, 2], window.repeat(planes)).unwrap();
    let gm = gpu.upload(&many).unwrap();
    let (gv, gi) = gpu.stochastic_pool2d(&gm, &p, 77).unwrap();
    let (cv, ci) = cpu::stochastic_pool2d(&many, &p, 77).unwrap();
    assert_exact("GPU picks the CPU's indices", &gi.download().unwrap(), &ci);
    assert_exact("GPU picks the CPU's values", &gv.download().unwrap(), &cv);
    let mut counts = [0usize; 4];
    for &i in ci.data() {
        counts[i as usize] += 1;
    }
    let chi = chi_square(
        &[counts[0], counts[1], counts[3]],
        &[probs[0], probs[1], probs[3]],
    );
    assert!(
        chi < 13.8 && counts[2] == 0,
        "position sweep: counts {counts:?}, chi-square {chi}"
    );
    // Different seeds pick differently.
    let (_, other) = gpu.stochastic_pool2d(&gm, &p, 78).unwrap();
    assert_ne!(other.download().unwrap().data(), ci.data());
    assert!(
        (gpu.stochastic_pool2d_expectation(&gm, &p)
            .unwrap()
            .download()
            .unwrap()
            .data()[0]
            - 3.0)
            .abs()
            < 1e-6
    );
}

#[test]
fn every_pooling_op_is_bitwise_deterministic() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(31);
    let x = gpu.upload(&rng.tensor([2, 3, 9, 8])).unwrap();
    let p = Pool2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Pool2d::new([3, 3])
    };
    let size = [9, 8];
    let run = |gpu: &Gpu| {
        let (v, i) = gpu.max_pool2d(&x, &p).unwrap();
        let a = gpu.avg_pool2d(&x, &p).unwrap();
        let (s, si) = gpu.stochastic_pool2d(&x, &p, 9).unwrap();
        let f: Vec<Tensor> = [
            v.clone(),
            a.clone(),
            s,
            gpu.stochastic_pool2d_expectation(&x, &p).unwrap(),
            gpu.max_unpool2d(&v, &i, size).unwrap(),
            gpu.max_pool2d_backward(&a, &i, size).unwrap(),
            gpu.avg_unpool2d(&a, &p, size).unwrap(),
            gpu.avg_pool2d_backward(&v, &p, size).unwrap(),
        ]
        .iter()
        .map(|t| t.download().unwrap())
        .collect();
        (f, i.download().unwrap(), si.download().unwrap())
    };
    let (a, ai, asi) = run(&gpu);
    let (b, bi, bsi) = run(&gpu);
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_exact(&format!("output {k}"), y, x);
    }
    assert_exact("max indices", &bi, &ai);
    assert_exact("stochastic indices", &bsi, &asi);
}
