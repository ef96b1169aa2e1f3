//! A single image (convolutions) or plane (pooling, unpooling) larger than one storage binding
//! runs in bands of output rows, each with the input rows its windows reach. Swept here with a
//! binding limit lowered per case to just what one output row needs, so every case runs in
//! bands of one or a few rows; each result must equal the unbanded GPU result bit for bit and
//! the CPU reference.

mod common;

use common::{assert_close, assert_exact, gpu, random_case, random_transpose_case, sweep, Rng};
use convpool::{cpu, ConvAlgo, ConvTranspose2d, Gpu, Padding, Pool2d, Tensor};

/// A private `Gpu` (its binding limit is changed per case), or `None` without an adapter.
fn banded_gpu() -> Option<(Gpu, Gpu)> {
    let shared = gpu()?;
    Some((shared, Gpu::new().unwrap()))
}

/// The bytes of `rows` rows of `planes` planes `w` wide.
fn rows(rows: usize, planes: usize, w: usize) -> u64 {
    (rows * planes * w * 4) as u64
}

/// Runs `f` on the banded `Gpu` and on the shared one; asserts the results are bitwise equal
/// and returns them.
fn same_on_both<T: convpool::Element>(
    what: &str,
    banded: &Gpu,
    shared: &Gpu,
    f: impl Fn(&Gpu) -> Tensor<T>,
) -> Tensor<T> {
    let got = f(banded);
    assert_exact(&format!("{what}: banded vs whole"), &got, &f(shared));
    got
}

/// Lowers `gpu`'s binding limit to what one output row of a convolution needs: `halo` rows
/// of its input side `[planes, rows, width]`, one row of its output side, and the weight.
/// Returns whether one image is then over the limit (the case runs in bands).
fn set_band_limit(
    gpu: &Gpu,
    ([xc, xh, xw], [yc, yh, yw]): ([usize; 3], [usize; 3]),
    halo: usize,
    weight: usize,
) -> bool {
    let need = [
        rows(halo.min(xh), xc, xw),
        rows(1, yc, yw),
        weight as u64 * 4,
    ];
    let limit = need.into_iter().max().unwrap();
    gpu.set_binding_limit_for_tests(limit);
    limit < rows(xh, xc, xw).max(rows(yh, yc, yw))
}

/// Runs one convolution case with each of `algos` on both `Gpu`s (bitwise equal) and against
/// the CPU result `want`.
fn check_conv(
    what: &str,
    (banded, shared): (&Gpu, &Gpu),
    algos: &[ConvAlgo],
    want: &Tensor,
    run: impl Fn(&Gpu, ConvAlgo) -> convpool::Result<convpool::GpuTensor>,
) {
    for &algo in algos {
        let what = format!("{what} {algo:?}");
        let got = same_on_both(&what, banded, shared, |gpu| {
            run(gpu, algo).unwrap().download().unwrap()
        });
        assert_close(&what, &got, want, 1e-5, 1e-4);
    }
}

#[test]
fn convolutions_run_in_bands_of_rows() {
    let Some((shared, banded)) = banded_gpu() else {
        return;
    };
    let mut rng = Rng::new(4242);
    let mut cases: Vec<_> = (0..40).map(|_| random_case(&mut rng)).collect();
    // Padding beyond the kernel's reach: bands of output rows that read no input row at all.
    cases.push((
        [1, 2, 5, 6],
        [3, 2, 2, 3],
        convpool::Conv2d {
            stride: [2, 1],
            padding: Padding::Explicit {
                top: 5,
                bottom: 6,
                left: 1,
                right: 0,
            },
            ..Default::default()
        },
        true,
    ));
    let mut banded_runs = 0;
    for (i, (xs, ws, spec, with_bias)) in cases.into_iter().enumerate() {
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = with_bias.then(|| rng.tensor([ws[0]]));
        let g = spec
            .geometry(&xs, &ws, b.as_ref().map(|b| b.shape()))
            .unwrap();
        let halo = (g.kernel[0] - 1) * g.dilation[0] + 1;
        let sides = (
            [g.c_in, g.input[0], g.input[1]],
            [g.c_out, g.output[0], g.output[1]],
        );
        banded_runs += usize::from(set_band_limit(&banded, sides, halo, w.len()));
        let want = cpu::conv2d(&x, &w, b.as_ref(), &spec).unwrap();
        let what = format!("case {i} conv2d {xs:?} {ws:?} {spec:?}");
        check_conv(
            &what,
            (&banded, &shared),
            ConvAlgo::ALL,
            &want,
            |gpu, algo| {
                let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
                let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
                gpu.conv2d_with(&gx, &gw, gb.as_ref(), &spec, algo)
            },
        );
    }
    for i in 0..40 {
        let (xs, ws, spec, with_bias) = if i == 0 {
            // Stride beyond the kernel: output rows no input row reaches (bias only).
            let spec = ConvTranspose2d {
                stride: [4, 1],
                ..Default::default()
            };
            ([1, 2, 3, 4], [2, 3, 2, 2], spec, true)
        } else {
            random_transpose_case(&mut rng)
        };
        let (x, w) = (rng.tensor(xs), rng.tensor(ws));
        let b = with_bias.then(|| rng.tensor([ws[1] * spec.groups]));
        let g = spec
            .geometry(&xs, &ws, b.as_ref().map(|b| b.shape()))
            .unwrap();
        // Our output rows are the forward input; our input rows the forward output.
        let reach = ((g.kernel[0] - 1) * g.dilation[0]) / g.stride[0] + 1;
        let sides = (
            [g.c_out, g.output[0], g.output[1]],
            [g.c_in, g.input[0], g.input[1]],
        );
        banded_runs += usize::from(set_band_limit(&banded, sides, reach, w.len()));
        let want = cpu::conv_transpose2d(&x, &w, b.as_ref(), &spec).unwrap();
        // The GEMM kernel's per-tap passes are slow on lavapipe: every fifth case takes it.
        let algos: &[_] = if i % 5 == 0 {
            ConvAlgo::ALL
        } else {
            &[ConvAlgo::Direct]
        };
        let what = format!("case {i} conv_transpose2d {xs:?} {ws:?} {spec:?}");
        check_conv(&what, (&banded, &shared), algos, &want, |gpu, algo| {
            let gb = b.as_ref().map(|b| gpu.upload(b).unwrap());
            let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
            gpu.conv_transpose2d_with(&gx, &gw, gb.as_ref(), &spec, algo)
        });
    }
    assert!(
        banded_runs >= 60,
        "only {banded_runs} of 81 cases ran in bands"
    );
}

#[test]
fn pooling_and_unpooling_run_in_bands_of_rows() {
    let Some((shared, banded)) = banded_gpu() else {
        return;
    };
    let mut rng = Rng::new(2424);
    let mut banded_runs = 0;
    let cases = sweep(&mut rng);
    let n_cases = cases.len();
    for (i, (xs, p)) in cases.into_iter().enumerate() {
        let x = rng.int_tensor(xs, 3);
        let g = p.geometry("test", &xs).unwrap();
        let size = g.input;
        let halo = (g.kernel[0] - 1) * g.dilation[0] + 1;
        let limit = rows(halo, 1, (g.input[1] + 1).max(g.output[1]));
        banded_runs += usize::from(limit < rows(g.input[0], 1, g.input[1]));
        banded.set_binding_limit_for_tests(limit);
        let what = |op: &str| format!("case {i} {op} {xs:?} {p:?}");
        let on_both =
            |op: &str, f: &dyn Fn(&Gpu) -> Tensor| same_on_both(&what(op), &banded, &shared, f);
        let on_both_u32 = |op: &str, f: &dyn Fn(&Gpu) -> Tensor<u32>| {
            same_on_both(&what(op), &banded, &shared, f)
        };

        let (v, idx) = cpu::max_pool2d(&x, &p).unwrap();
        let max = |gpu: &Gpu| gpu.max_pool2d(&gpu.upload(&x).unwrap(), &p).unwrap();
        assert_exact(
            &what("max_pool2d"),
            &on_both("max_pool2d", &|gpu| max(gpu).0.download().unwrap()),
            &v,
        );
        assert_exact(
            &what("indices"),
            &on_both_u32("indices", &|gpu| max(gpu).1.download().unwrap()),
            &idx,
        );
        let a = cpu::avg_pool2d(&x, &p).unwrap();
        let got = on_both("avg_pool2d", &|gpu| {
            gpu.avg_pool2d(&gpu.upload(&x).unwrap(), &p)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_close(&what("avg_pool2d"), &got, &a, 1e-6, 1e-5);
        let (s, si) = cpu::stochastic_pool2d(&x, &p, 9).unwrap();
        let st = |gpu: &Gpu| {
            gpu.stochastic_pool2d(&gpu.upload(&x).unwrap(), &p, 9)
                .unwrap()
        };
        assert_exact(
            &what("stochastic"),
            &on_both("stochastic", &|gpu| st(gpu).0.download().unwrap()),
            &s,
        );
        assert_exact(
            &what("stochastic idx"),
            &on_both_u32("stochastic idx", &|gpu| st(gpu).1.download().unwrap()),
            &si,
        );
        let got = on_both("expectation", &|gpu| {
            gpu.stochastic_pool2d_expectation(&gpu.upload(&x).unwrap(), &p)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_close(
            &what("expectation"),
            &got,
            &cpu::stochastic_pool2d_expectation(&x, &p).unwrap(),
            1e-6,
            1e-5,
        );

        // Unpooling with the pooling's own indices (gathers), with plain uploaded indices
        // (the range-checked scatter), and into a larger plane than the pooled input.
        let want = cpu::max_unpool2d(&v, &idx, size).unwrap();
        let got = on_both("max_unpool2d", &|gpu| {
            let (gv, gi) = max(gpu);
            gpu.max_unpool2d(&gv, &gi, size)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_exact(&what("max_unpool2d"), &got, &want);
        let got = on_both("max_unpool2d (uploaded)", &|gpu| {
            gpu.max_unpool2d(&gpu.upload(&v).unwrap(), &gpu.upload(&idx).unwrap(), size)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_exact(&what("max_unpool2d (uploaded)"), &got, &want);
        let wide = [size[0] + 2, size[1] + 1];
        let got = on_both("max_unpool2d (larger)", &|gpu| {
            let (gv, gi) = max(gpu);
            gpu.max_unpool2d(&gv, &gi, wide)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_exact(
            &what("max_unpool2d (larger)"),
            &got,
            &cpu::max_unpool2d(&v, &idx, wide).unwrap(),
        );
        let got = on_both("max_pool2d_backward", &|gpu| {
            let (_, gi) = max(gpu);
            gpu.max_pool2d_backward(&gpu.upload(&a).unwrap(), &gi, size)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_exact(
            &what("max_pool2d_backward"),
            &got,
            &cpu::max_pool2d_backward(&a, &idx, size).unwrap(),
        );
        let got = on_both("max_pool2d_backward (uploaded)", &|gpu| {
            gpu.max_pool2d_backward(&gpu.upload(&a).unwrap(), &gpu.upload(&idx).unwrap(), size)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_exact(
            &what("max_pool2d_backward (uploaded)"),
            &got,
            &cpu::max_pool2d_backward(&a, &idx, size).unwrap(),
        );
        let got = on_both("avg_unpool2d", &|gpu| {
            gpu.avg_unpool2d(&gpu.upload(&a).unwrap(), &p, size)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_close(
            &what("avg_unpool2d"),
            &got,
            &cpu::avg_unpool2d(&a, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
        let got = on_both("avg_pool2d_backward", &|gpu| {
            gpu.avg_pool2d_backward(&gpu.upload(&a).unwrap(), &p, size)
                .unwrap()
                .download()
                .unwrap()
        });
        assert_close(
            &what("avg_pool2d_backward"),
            &got,
            &cpu::avg_pool2d_backward(&a, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
    }
    assert!(
        banded_runs * 2 >= n_cases,
        "only {banded_runs} of {n_cases} cases ran in bands"
    );
}

#[test]
fn banded_unpooling_checks_indices_and_names_their_global_position() {
    let Some((_, banded)) = banded_gpu() else {
        return;
    };
    let mut rng = Rng::new(7);
    let x = rng.tensor([1, 2, 8, 10]);
    let (v, mut idx) = cpu::max_pool2d(&x, &Pool2d::new([2, 2])).unwrap();
    // Pooled planes of 80 bytes, output rows of 40: pooled chunks of 10 elements, bands of 1 row.
    banded.set_binding_limit_for_tests(40);
    let last = idx.len() - 1;
    idx.data_mut()[last] = 80;
    let r = banded.max_unpool2d(
        &banded.upload(&v).unwrap(),
        &banded.upload(&idx).unwrap(),
        [8, 10],
    );
    common::expect_invalid(
        r,
        "max_unpool2d",
        &format!("index 80 at position {last} (plane 1)"),
    );
    // One output row over the limit cannot be split further.
    banded.set_binding_limit_for_tests(36);
    let r = banded.max_unpool2d(
        &banded.upload(&v).unwrap(),
        &banded.upload(&idx).unwrap(),
        [8, 10],
    );
    assert!(
        matches!(
            r,
            Err(convpool::Error::TooLarge {
                what: "one output row",
                bytes: 40,
                limit: 36,
                ..
            })
        ),
        "{r:?}"
    );
}
