//! Tensors larger than one storage binding: every op runs them in chunks (images for the
//! convolutions, planes for pooling) and matches the CPU reference. The chunked paths are swept
//! on small tensors with a lowered binding limit, then run for real on an input over 300 MiB.

mod common;

use common::{assert_close, assert_exact, gpu, Rng};
use convpool::{cpu, Conv2d, ConvTranspose2d, Error, Gpu, Padding, Pool2d, Tensor};

/// A private `Gpu` whose kernels may bind at most `bytes` per buffer.
fn gpu_with_binding_limit(bytes: u64) -> Option<Gpu> {
    gpu()?;
    let gpu = Gpu::new().unwrap();
    gpu.set_binding_limit_for_tests(bytes);
    Some(gpu)
}

#[test]
fn every_op_runs_in_chunks_when_tensors_exceed_a_binding() {
    let Some(gpu) = gpu_with_binding_limit(2048) else {
        return;
    };
    let mut rng = Rng::new(77);
    // conv2d: 4 images of 1,188 bytes in, 1,584 out: one image per chunk.
    let (x, w, b) = (
        rng.tensor([4, 3, 9, 11]),
        rng.tensor([4, 3, 3, 3]),
        rng.tensor([4]),
    );
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let (gx, gw, gb) = (
        gpu.upload(&x).unwrap(),
        gpu.upload(&w).unwrap(),
        gpu.upload(&b).unwrap(),
    );
    for &algo in convpool::ConvAlgo::ALL {
        let got = gpu
            .conv2d_with(&gx, &gw, Some(&gb), &same, algo)
            .unwrap()
            .download()
            .unwrap();
        assert_close(
            &format!("chunked conv2d {algo:?}"),
            &got,
            &cpu::conv2d(&x, &w, Some(&b), &same).unwrap(),
            1e-5,
            1e-4,
        );
    }
    // conv_transpose2d: 4 images of 504 bytes in, 1,344 out.
    let (xt, wt) = (rng.tensor([4, 3, 6, 7]), rng.tensor([3, 2, 4, 4]));
    let t = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    let got = gpu
        .conv_transpose2d(
            &gpu.upload(&xt).unwrap(),
            &gpu.upload(&wt).unwrap(),
            None,
            &t,
        )
        .unwrap()
        .download()
        .unwrap();
    assert_close(
        "chunked conv_transpose2d",
        &got,
        &cpu::conv_transpose2d(&xt, &wt, None, &t).unwrap(),
        1e-5,
        1e-4,
    );
    // Pooling: 15 planes of 396 bytes, 5 per chunk; overlapping and non-overlapping windows.
    let xp = rng.tensor([3, 5, 9, 11]);
    let gp = gpu.upload(&xp).unwrap();
    let size = [9, 11];
    for p in [
        Pool2d {
            stride: [2, 2],
            padding: [1, 1],
            ..Pool2d::new([3, 3])
        },
        Pool2d::new([2, 2]),
    ] {
        let what = |op: &str| format!("chunked {op} {p:?}");
        let (v, i) = cpu::max_pool2d(&xp, &p).unwrap();
        let (gv, gi) = gpu.max_pool2d(&gp, &p).unwrap();
        assert_exact(&what("max_pool2d"), &gv.download().unwrap(), &v);
        assert_exact(&what("indices"), &gi.download().unwrap(), &i);
        let a = cpu::avg_pool2d(&xp, &p).unwrap();
        let ga = gpu.avg_pool2d(&gp, &p).unwrap();
        assert_close(&what("avg_pool2d"), &ga.download().unwrap(), &a, 1e-6, 1e-5);
        let (s, si) = cpu::stochastic_pool2d(&xp, &p, 5).unwrap();
        let (gs, gsi) = gpu.stochastic_pool2d(&gp, &p, 5).unwrap();
        assert_exact(&what("stochastic values"), &gs.download().unwrap(), &s);
        assert_exact(&what("stochastic indices"), &gsi.download().unwrap(), &si);
        assert_close(
            &what("expectation"),
            &gpu.stochastic_pool2d_expectation(&gp, &p)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::stochastic_pool2d_expectation(&xp, &p).unwrap(),
            1e-6,
            1e-5,
        );
        let want = cpu::max_unpool2d(&v, &i, size).unwrap();
        assert_exact(
            &what("max_unpool2d"),
            &gpu.max_unpool2d(&gv, &gi, size)
                .unwrap()
                .download()
                .unwrap(),
            &want,
        );
        let plain = gpu.upload(&i).unwrap();
        assert_exact(
            &what("max_unpool2d (uploaded indices)"),
            &gpu.max_unpool2d(&gv, &plain, size)
                .unwrap()
                .download()
                .unwrap(),
            &want,
        );
        assert_exact(
            &what("max_pool2d_backward"),
            &gpu.max_pool2d_backward(&ga, &gi, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_pool2d_backward(&a, &i, size).unwrap(),
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
            &gpu.avg_pool2d_backward(&ga, &p, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::avg_pool2d_backward(&a, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
    }
    // An out-of-range index in a later chunk is reported with its position in the whole tensor.
    let (v, i) = cpu::max_pool2d(&xp, &Pool2d::new([2, 2])).unwrap();
    let mut bad = i.clone();
    let last = bad.len() - 1;
    bad.data_mut()[last] = 99;
    let r = gpu.max_unpool2d(&gpu.upload(&v).unwrap(), &gpu.upload(&bad).unwrap(), size);
    assert!(
        matches!(&r, Err(Error::Invalid { msg, .. }) if msg.contains(&format!("index 99 at position {last}"))),
        "{r:?}"
    );
    // A single plane over the limit runs in bands of rows (swept in tests/bands.rs); only one
    // output row over the limit is refused, naming the size and the limit.
    let big = rng.tensor([1, 1, 30, 30]);
    let a = gpu.avg_pool2d(&gpu.upload(&big).unwrap(), &Pool2d::new([2, 2]));
    assert_close(
        "avg_pool2d of a plane over the limit",
        &a.unwrap().download().unwrap(),
        &cpu::avg_pool2d(&big, &Pool2d::new([2, 2])).unwrap(),
        1e-6,
        1e-5,
    );
    let wide = gpu.upload(&rng.tensor([1, 1, 2, 600])).unwrap();
    let r = gpu.avg_pool2d(&wide, &Pool2d::new([1, 1]));
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                what: "one output row",
                bytes: 2400,
                limit: 2048,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn an_input_over_300_mib_runs_through_every_op() {
    let Some(gpu) = gpu() else { return };
    // 4 × 8 × 1600 × 1600 f32 = 312.5 MiB, over the 128 MiB binding of lavapipe and many GPUs.
    let shape = [4, 8, 1600, 1600];
    let x = Tensor::from_fn(shape, |i| {
        ((i.wrapping_mul(2_654_435_761) >> 7) % 97) as f32 - 48.0
    })
    .unwrap();
    assert!(x.len() * 4 >= 300 << 20);
    let gx = gpu.upload(&x).unwrap();
    // Image `n` of a tensor as its own tensor, for the sampled checks.
    fn image<T: convpool::Element>(t: &Tensor<T>, n: usize) -> Tensor<T> {
        let per = t.len() / t.shape()[0];
        Tensor::new(
            [1, t.shape()[1], t.shape()[2], t.shape()[3]],
            t.data()[n * per..][..per].to_vec(),
        )
        .unwrap()
    }

    // conv2d 1×1 (8 → 1 channel): the input is split by image.
    let w = Tensor::new(
        [1, 8, 1, 1],
        vec![0.5, -1.0, 0.25, 2.0, -0.5, 1.0, 0.125, -2.0],
    )
    .unwrap();
    let y = gpu
        .conv2d(&gx, &gpu.upload(&w).unwrap(), None, &Conv2d::default())
        .unwrap()
        .download()
        .unwrap();
    for n in [0, 3] {
        let want = cpu::conv2d(&image(&x, n), &w, None, &Conv2d::default()).unwrap();
        assert_close(
            &format!("conv2d image {n}"),
            &image(&y, n),
            &want,
            1e-4,
            1e-5,
        );
    }

    // max_pool2d with indices (split by planes), then max_unpool2d back to 1600 × 1600.
    let p = Pool2d::new([2, 2]);
    let (v, i) = gpu.max_pool2d(&gx, &p).unwrap();
    let up = gpu
        .max_unpool2d(&v, &i, [1600, 1600])
        .unwrap()
        .download()
        .unwrap();
    let (hv, hi) = (v.download().unwrap(), i.download().unwrap());
    for n in [0, 3] {
        let (cv, ci) = cpu::max_pool2d(&image(&x, n), &p).unwrap();
        assert_exact(&format!("max_pool2d image {n}"), &image(&hv, n), &cv);
        assert_exact(&format!("indices image {n}"), &image(&hi, n), &ci);
        assert_exact(
            &format!("max_unpool2d image {n}"),
            &image(&up, n),
            &cpu::max_unpool2d(&cv, &ci, [1600, 1600]).unwrap(),
        );
    }
    drop(up);

    // conv_transpose2d (depthwise 2×2, stride 2) from the pooled map back to 312.5 MiB.
    let wt = Tensor::from_fn([8, 1, 2, 2], |i| i as f32 * 0.25 - 3.0).unwrap();
    let t = ConvTranspose2d {
        stride: [2, 2],
        groups: 8,
        ..Default::default()
    };
    let yt = gpu
        .conv_transpose2d(&v, &gpu.upload(&wt).unwrap(), None, &t)
        .unwrap()
        .download()
        .unwrap();
    assert_eq!(yt.shape(), &shape);
    for n in [0, 3] {
        let want = cpu::conv_transpose2d(&image(&hv, n), &wt, None, &t).unwrap();
        assert_close(
            &format!("conv_transpose2d image {n}"),
            &image(&yt, n),
            &want,
            1e-4,
            1e-5,
        );
    }
    println!("large input: {} bytes ({:.1} MiB) through conv2d, max_pool2d, max_unpool2d, conv_transpose2d", x.len() * 4, (x.len() * 4) as f64 / 1048576.0);
}

#[test]
fn a_single_image_over_one_binding_runs_in_bands() {
    let Some(gpu) = gpu() else { return };
    // One 6000 × 6000 plane: 144,000,000 bytes (137.3 MiB), over the 128 MiB binding.
    let (h, w) = (6000, 6000);
    let x = Tensor::from_fn([1, 1, h, w], |i| {
        ((i.wrapping_mul(2_654_435_761) >> 9) % 61) as f32 - 30.0
    })
    .unwrap();
    let limit = gpu.limits().max_storage_buffer_binding_size as usize;
    if x.len() * 4 <= limit {
        eprintln!("binding limit {limit} holds the whole plane; nothing to band here");
    }
    let gx = gpu.upload(&x).unwrap();
    // conv2d 3×3, padding 1: bands of rows with a one-row halo on each side.
    let k = Tensor::new(
        [1, 1, 3, 3],
        vec![0.5, -1.0, 0.25, 2.0, -0.5, 1.0, 0.125, -2.0, 1.5],
    )
    .unwrap();
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let y = gpu
        .conv2d(&gx, &gpu.upload(&k).unwrap(), None, &same)
        .unwrap()
        .download()
        .unwrap();
    assert_exact(
        "conv2d of one 137 MiB image",
        &y,
        &cpu::conv2d(&x, &k, None, &same).unwrap(),
    );
    drop(y);
    // Overlapping max pooling, then max_unpool2d through the windows (both banded).
    let p = Pool2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Pool2d::new([3, 3])
    };
    let (v, i) = gpu.max_pool2d(&gx, &p).unwrap();
    let (cv, ci) = cpu::max_pool2d(&x, &p).unwrap();
    assert_exact(
        "max_pool2d of one 137 MiB plane",
        &v.download().unwrap(),
        &cv,
    );
    assert_exact("its indices", &i.download().unwrap(), &ci);
    let up = gpu
        .max_unpool2d(&v, &i, [h, w])
        .unwrap()
        .download()
        .unwrap();
    assert_exact(
        "max_unpool2d to one 137 MiB plane",
        &up,
        &cpu::max_unpool2d(&cv, &ci, [h, w]).unwrap(),
    );
    drop(up);
    // conv_transpose2d 4×4, stride 2, padding 1 from the pooled map back to 6000 × 6000.
    let kt = Tensor::from_fn([1, 1, 4, 4], |i| i as f32 * 0.25 - 2.0).unwrap();
    let t = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    let yt = gpu
        .conv_transpose2d(&v, &gpu.upload(&kt).unwrap(), None, &t)
        .unwrap()
        .download()
        .unwrap();
    assert_exact(
        "conv_transpose2d to one 137 MiB image",
        &yt,
        &cpu::conv_transpose2d(&cv, &kt, None, &t).unwrap(),
    );
    println!("single image: {} bytes ({:.1} MiB) through conv2d, max_pool2d, max_unpool2d, conv_transpose2d", x.len() * 4, (x.len() * 4) as f64 / 1048576.0);
}
