//! The kernel family for hardware GPUs, run on whatever adapter is here (lavapipe in CI): the
//! wide GEMMs on shapes that take their whole-tile and padding-free paths, and every op
//! through `Auto` on a `Gpu` forced to the GPU family.

mod common;

use common::{
    assert_close, fixed_conv_cases, gpu, random_case, random_transpose_case, sum_atol, Rng,
};
use convpool::{
    cpu, Activation, Conv2d, ConvAlgo, ConvTranspose2d, Gpu, KernelFamily, Padding, Pool2d,
};

/// A `Gpu` on the shared adapter that chooses from the GPU family.
fn gpu_family() -> Option<Gpu> {
    let shared = gpu()?;
    let g = Gpu::builder()
        .adapter_name(shared.adapter_info().name.clone())
        .kernels(KernelFamily::Gpu)
        .build()
        .unwrap();
    assert_eq!(g.kernel_family(), KernelFamily::Gpu);
    Some(g)
}

/// conv2d with bias and `act` of an `xs` input and a `ws` weight through both wide GEMMs,
/// against the reference, and bitwise equal to itself on a second call.
fn conv_through_wide_gemms(
    gpu: &Gpu,
    rng: &mut Rng,
    (xs, ws, spec, act): ([usize; 4], [usize; 4], Conv2d, Activation),
) {
    let (x, w, b) = (rng.tensor(xs), rng.tensor(ws), rng.tensor([ws[0]]));
    let want = cpu::conv2d_act(&x, &w, Some(&b), &spec, act).unwrap();
    let (gx, gw, gb) = (
        gpu.upload(&x).unwrap(),
        gpu.upload(&w).unwrap(),
        gpu.upload(&b).unwrap(),
    );
    for algo in [ConvAlgo::GemmWide32, ConvAlgo::GemmWide64] {
        let run = || {
            gpu.conv2d_act_with(&gx, &gw, Some(&gb), &spec, act, algo)
                .unwrap()
                .download()
                .unwrap()
        };
        let got = run();
        let what = format!("{algo:?} {xs:?} {ws:?} {spec:?} {act:?}");
        assert_close(&what, &got, &want, sum_atol(ws[1] * ws[2] * ws[3]), 1e-4);
        assert_eq!(run(), got, "{what}: the same bits twice");
    }
}

/// conv_transpose2d (4×4 kernel, stride 2, padding 1) of an `xs` input and a `ws` weight
/// through both wide GEMMs, against the reference.
fn transposed_through_wide_gemms(
    gpu: &Gpu,
    rng: &mut Rng,
    xs: [usize; 4],
    ws: [usize; 4],
    what: &str,
) {
    let (x, w) = (rng.tensor(xs), rng.tensor(ws));
    let spec = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    let want = cpu::conv_transpose2d(&x, &w, None, &spec).unwrap();
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    for algo in [ConvAlgo::GemmWide32, ConvAlgo::GemmWide64] {
        let y = gpu
            .conv_transpose2d_with(&gx, &gw, None, &spec, algo)
            .unwrap();
        let got = y.download().unwrap();
        assert_close(
            &format!("transposed, {what}, {algo:?}"),
            &got,
            &want,
            sum_atol(ws[0] * 4),
            1e-4,
        );
    }
}

/// A `Gpu` of its own on the shared adapter that counts the wide GEMM variants it launches.
fn counting_gpu() -> Option<Gpu> {
    let shared = gpu()?;
    let g = Gpu::builder()
        .adapter_name(shared.adapter_info().name.clone())
        .build()
        .unwrap();
    g.count_variants_for_tests();
    Some(g)
}

/// Every wide GEMM variant that must have run on `gpu`: for both tiles, the vec4 kernel (whole
/// tiles of conv2d) and the scalar one on partial tiles, each with and without padding checks;
/// the scalar one on whole tiles (transposed phases); and every count of parts over K.
#[track_caller]
fn assert_every_wide_variant_ran(gpu: &Gpu) {
    let ran = gpu.variants_for_tests();
    let line: Vec<String> = ran.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!("wide GEMM coverage: {}", line.join(", "));
    let mut missing = Vec::new();
    for tile in [32, 64] {
        let mut want = vec![];
        for pad_free in [0, 1] {
            want.push(format!("wide{tile} v4 full_tiles=1 pad_free={pad_free}"));
            want.push(format!(
                "wide{tile} scalar full_tiles=0 pad_free={pad_free}"
            ));
        }
        // Whole tiles take the scalar kernel in transposed phases alone, which have padding.
        want.push(format!("wide{tile} scalar full_tiles=1 pad_free=0"));
        want.extend((2..=8).map(|parts| format!("wide{tile} split parts={parts}")));
        missing.extend(want.into_iter().filter(|k| !ran.contains_key(k)));
    }
    assert!(
        missing.is_empty(),
        "wide GEMM variants never run: {missing:?}"
    );
}

#[test]
fn every_wide_gemm_variant_matches_the_reference_and_each_is_reached() {
    let Some(gpu) = counting_gpu() else { return };
    whole_tiles_and_windows_inside_the_input(&gpu);
    splits_over_k_where_a_layer_has_few_output_tiles(&gpu);
    // A conv2d whose windows stay inside the input, on partial tiles.
    let mut rng = Rng::new(143);
    let valid = Conv2d::default();
    conv_through_wide_gemms(
        &gpu,
        &mut rng,
        ([1, 8, 5, 7], [12, 8, 3, 3], valid, Activation::Identity),
    );
    assert_every_wide_variant_ran(&gpu);
}

fn whole_tiles_and_windows_inside_the_input(gpu: &Gpu) {
    let mut rng = Rng::new(140);
    let valid = Conv2d::default();
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let bottom = Conv2d {
        padding: Padding::Explicit {
            top: 0,
            bottom: 2,
            left: 0,
            right: 0,
        },
        ..Default::default()
    };
    // (x, w, spec): m, n and k whole tiles of both sizes (64 channels, 64 or 128 pixels,
    // k = 16·…) with and without padding; a tile of one size only; padding on one side only
    // (windows leave the input although the top-left padding is 0).
    let cases = [
        ([1, 16, 8, 8], [64, 16, 1, 1], valid),
        ([2, 16, 10, 18], [64, 16, 3, 3], valid),
        ([1, 16, 8, 16], [64, 16, 3, 3], same),
        ([1, 32, 8, 8], [32, 32, 1, 1], valid),
        ([1, 16, 6, 10], [64, 16, 3, 3], bottom),
        ([2, 32, 9, 9], [96, 16, 2, 2], Conv2d { groups: 2, ..valid }),
    ];
    for (i, (xs, ws, spec)) in cases.into_iter().enumerate() {
        // The fused activation too, on the vec4 store of whole tiles.
        let act = if i % 2 == 0 {
            Activation::Identity
        } else {
            Activation::LeakyRelu { slope: 0.25 }
        };
        conv_through_wide_gemms(gpu, &mut rng, (xs, ws, spec, act));
    }
    // conv_transpose2d phases with whole tiles: 64 output channels, 8×8 per phase, k = 16·4.
    transposed_through_wide_gemms(gpu, &mut rng, [1, 16, 8, 8], [16, 64, 4, 4], "whole tiles");
}

fn splits_over_k_where_a_layer_has_few_output_tiles(gpu: &Gpu) {
    let mut rng = Rng::new(142);
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    // (x, w, spec, act): 2 and 4 parts over K (576 and 1152 deep), a short last part, groups.
    let relu = Activation::Relu;
    let cases = [
        ([1, 64, 4, 4], [32, 64, 3, 3], same, Activation::Identity),
        ([2, 128, 5, 5], [48, 128, 3, 3], Conv2d::default(), relu),
        (
            [1, 132, 3, 7],
            [20, 66, 3, 3],
            Conv2d { groups: 2, ..same },
            relu,
        ),
    ];
    for (xs, ws, spec, act) in cases {
        conv_through_wide_gemms(gpu, &mut rng, (xs, ws, spec, act));
    }
    // A transposed convolution whose phases split: 256 input channels, 4 taps per phase.
    transposed_through_wide_gemms(gpu, &mut rng, [1, 256, 3, 3], [256, 16, 4, 4], "split");
    // Every count of parts: one output tile, k = 256·parts deep (parts of 256).
    for parts in 2..=8 {
        let c = 256 * parts;
        conv_through_wide_gemms(
            gpu,
            &mut rng,
            (
                [1, c, 3, 4],
                [8, c, 1, 1],
                Conv2d::default(),
                Activation::Identity,
            ),
        );
    }
}

#[test]
fn every_op_through_auto_on_the_gpu_family_matches_the_reference() {
    let Some(gpu) = gpu_family() else { return };
    let mut rng = Rng::new(141);
    let mut cases = fixed_conv_cases();
    cases.extend((0..20).map(|_| random_case(&mut rng)));
    for (i, (xs, ws, spec, bias)) in cases.into_iter().enumerate() {
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = bias.then(|| rng.tensor([ws[0]]));
        let want = cpu::conv2d(&x, &w, b.as_ref(), &spec).unwrap();
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
        let y = gpu.conv2d(&gx, &gw, gb.as_ref(), &spec).unwrap();
        let terms = ws[1] * ws[2] * ws[3];
        assert_close(
            &format!("case {i} conv2d {xs:?} {ws:?} {spec:?}"),
            &y.download().unwrap(),
            &want,
            sum_atol(terms),
            1e-4,
        );
        // The gradients: the weight gradient takes the workgroup-memory kernel here.
        let gy = rng.tensor(want.shape().to_vec());
        let ggy = gpu.upload(&gy).unwrap();
        let size = [xs[2], xs[3]];
        let dx = gpu.conv2d_backward_input(&ggy, &gw, size, &spec).unwrap();
        let want_dx = cpu::conv2d_backward_input(&gy, &w, size, &spec).unwrap();
        assert_close(
            &format!("case {i} dx"),
            &dx.download().unwrap(),
            &want_dx,
            sum_atol(terms * 4),
            1e-4,
        );
        let dw = gpu
            .conv2d_backward_weight(&ggy, &gx, [ws[2], ws[3]], &spec)
            .unwrap();
        let want_dw = cpu::conv2d_backward_weight(&gy, &x, [ws[2], ws[3]], &spec).unwrap();
        let pixels = want.len() / want.shape()[1];
        assert_close(
            &format!("case {i} dw"),
            &dw.download().unwrap(),
            &want_dw,
            sum_atol(pixels),
            1e-4,
        );
    }
    for i in 0..12 {
        let (xs, ws, spec, bias) = random_transpose_case(&mut rng);
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = bias.then(|| rng.tensor([ws[1] * spec.groups]));
        let want = cpu::conv_transpose2d(&x, &w, b.as_ref(), &spec).unwrap();
        let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
        let y = gpu
            .conv_transpose2d(
                &gpu.upload(&x).unwrap(),
                &gpu.upload(&w).unwrap(),
                gb.as_ref(),
                &spec,
            )
            .unwrap();
        assert_close(
            &format!("case {i} conv_transpose2d {xs:?} {ws:?} {spec:?}"),
            &y.download().unwrap(),
            &want,
            sum_atol(ws[0] * ws[2] * ws[3]),
            1e-4,
        );
    }
    // Pooling and unpooling have one kernel set for both families: they run here too.
    let x = rng.tensor([2, 3, 9, 12]);
    let p = Pool2d {
        stride: [2, 3],
        ..Pool2d::new([3, 3])
    };
    let (v, idx) = gpu.max_pool2d(&gpu.upload(&x).unwrap(), &p).unwrap();
    let (want_v, want_i) = cpu::max_pool2d(&x, &p).unwrap();
    assert_eq!(v.download().unwrap(), want_v);
    assert_eq!(idx.download().unwrap(), want_i);
}
