//! conv2d and conv_transpose2d kernel variants past their limits: dispatches folded beyond
//! 65,535 workgroups, the row-segment GEMM split into uniform windows and past the texture
//! limits, and its packed weights following the weight tensor.

mod common;

use common::{assert_close, assert_exact, gpu, random_case, random_transpose_case, Rng};
use convpool::{cpu, Conv2d, ConvAlgo, ConvTranspose2d, Padding};

/// Every kernel variant: each is checked against the CPU reference.
const ALGOS: &[ConvAlgo] = ConvAlgo::ALL;

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
        for &algo in ALGOS {
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
        for &algo in ALGOS {
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
