//! Reliability: concurrent use of one `Gpu`, cross-instance determinism, foreign tensors,
//! oversized buffers, device loss, the NaN/inf policy of convolutions, and kernel timing.

mod common;

use common::{assert_close, gpu, mixed_op, Rng};
use convpool::{cpu, Conv2d, ConvAlgo, ConvTranspose2d, Error, Gpu, Padding, Pool2d, Tensor};

#[test]
fn four_threads_share_one_gpu() {
    let Some(gpu) = gpu() else { return };
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let gpu = gpu.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + t);
                for k in 0..200 {
                    let (x, w) = (
                        rng.int_tensor([1, 4, 8, 8], 4),
                        rng.int_tensor([4, 4, 3, 3], 2),
                    );
                    let (got, want) = mixed_op(&gpu, k + t as usize, &x, &w, k as u64);
                    assert_close(&format!("thread {t} op {k}"), &got, &want, 1e-5, 1e-5);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a worker thread failed");
    }
}

#[test]
fn foreign_tensors_are_refused_by_every_op() {
    let Some(gpu) = gpu() else { return };
    let other = Gpu::new().unwrap();
    let x = Tensor::new([1, 1, 4, 4], vec![1.0; 16]).unwrap();
    let w = Tensor::new([1, 1, 2, 2], vec![1.0; 4]).unwrap();
    let (mine, theirs) = (gpu.upload(&x).unwrap(), other.upload(&x).unwrap());
    let mw = gpu.upload(&w).unwrap();
    let p = Pool2d::new([2, 2]);
    let (v, i) = gpu.max_pool2d(&mine, &p).unwrap();
    let (tv, ti) = other.max_pool2d(&theirs, &p).unwrap();
    let foreign = |r: convpool::Result<_>| matches!(r, Err(Error::WrongDevice { .. }));
    assert!(foreign(
        gpu.conv2d(&theirs, &mw, None, &Conv2d::default()).map(drop)
    ));
    assert!(foreign(
        gpu.conv_transpose2d(&theirs, &mw, None, &ConvTranspose2d::default())
            .map(drop)
    ));
    assert!(foreign(gpu.max_pool2d(&theirs, &p).map(drop)));
    assert!(foreign(gpu.avg_pool2d(&theirs, &p).map(drop)));
    assert!(foreign(gpu.stochastic_pool2d(&theirs, &p, 1).map(drop)));
    assert!(foreign(
        gpu.stochastic_pool2d_expectation(&theirs, &p).map(drop)
    ));
    assert!(foreign(gpu.max_unpool2d(&tv, &i, [4, 4]).map(drop)));
    assert!(foreign(gpu.max_unpool2d(&v, &ti, [4, 4]).map(drop)));
    assert!(foreign(gpu.max_pool2d_backward(&v, &ti, [4, 4]).map(drop)));
    assert!(foreign(gpu.avg_unpool2d(&tv, &p, [4, 4]).map(drop)));
    assert!(foreign(gpu.avg_pool2d_backward(&tv, &p, [4, 4]).map(drop)));
}

#[test]
fn oversized_outputs_are_refused_and_the_gpu_stays_usable() {
    let Some(gpu) = gpu() else { return };
    let x = Tensor::new([1, 1, 1, 2], vec![1.0, 2.0]).unwrap();
    let w = Tensor::new([1, 1, 1, 2], vec![1.0, 1.0]).unwrap();
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    // Full padding with a dilation of 2^28: an output row of 2^28 + 1 floats (over 1 GiB).
    let huge = Conv2d {
        padding: Padding::Full,
        dilation: [1, 1 << 28],
        ..Default::default()
    };
    match gpu.conv2d(&gx, &gw, None, &huge) {
        Err(Error::TooLarge {
            op: "conv2d",
            bytes,
            limit,
            ..
        }) => assert!(bytes > limit),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let y = gpu
        .conv2d(&gx, &gw, None, &Conv2d::default())
        .unwrap()
        .download()
        .unwrap();
    assert_eq!(y.data(), &[3.0]);
}

#[test]
fn a_lost_device_is_an_err_from_every_later_call() {
    if gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    let x = gpu
        .upload(&Tensor::new([1, 1, 2, 2], vec![1.0; 4]).unwrap())
        .unwrap();
    gpu.device().destroy();
    let _ = gpu.synchronize();
    assert!(matches!(
        gpu.max_pool2d(&x, &Pool2d::new([2, 2])),
        Err(Error::DeviceLost { .. })
    ));
    assert!(matches!(
        gpu.upload(&Tensor::new([1], vec![1.0]).unwrap()),
        Err(Error::DeviceLost { .. })
    ));
    assert!(matches!(
        x.download(),
        Err(Error::DeviceLost { .. }) | Err(Error::Gpu { .. })
    ));
    // A fresh Gpu works.
    let fresh = Gpu::new().unwrap();
    let t = fresh
        .upload(&Tensor::new([1, 1, 2, 2], vec![1.0, 5.0, 2.0, 3.0]).unwrap())
        .unwrap();
    assert_eq!(
        fresh
            .max_pool2d(&t, &Pool2d::new([2, 2]))
            .unwrap()
            .0
            .download()
            .unwrap()
            .data(),
        &[5.0]
    );
}

#[test]
fn convolutions_propagate_nan_and_infinities() {
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let x = Tensor::new(
        [1, 1, 3, 3],
        vec![1.0, nan, 1.0, 1.0, 1.0, 1.0, inf, 1.0, 1.0],
    )
    .unwrap();
    let w = Tensor::new([1, 1, 2, 2], vec![1.0; 4]).unwrap();
    let want = cpu::conv2d(&x, &w, None, &Conv2d::default()).unwrap();
    assert!(want.data()[0].is_nan() && want.data()[1].is_nan());
    assert_eq!(want.data()[2], inf);
    assert_eq!(want.data()[3], 4.0);
    let Some(gpu) = gpu() else { return };
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    for &algo in convpool::ConvAlgo::ALL {
        let got = gpu
            .conv2d_with(&gx, &gw, None, &Conv2d::default(), algo)
            .unwrap()
            .download()
            .unwrap();
        assert_close(&format!("conv2d {algo:?}"), &got, &want, 0.0, 0.0);
        let t = cpu::conv_transpose2d(&x, &w, None, &ConvTranspose2d::default()).unwrap();
        let gt = gpu
            .conv_transpose2d_with(&gx, &gw, None, &ConvTranspose2d::default(), algo)
            .unwrap()
            .download()
            .unwrap();
        assert_close(&format!("conv_transpose2d {algo:?}"), &gt, &t, 0.0, 0.0);
    }
}

#[test]
fn profile_reports_kernel_time_and_keeps_results() {
    let Some(gpu) = gpu() else { return };
    let x = Tensor::new([1, 2, 6, 6], (0..72).map(|v| v as f32).collect()).unwrap();
    let w = Tensor::new([2, 2, 3, 3], vec![0.5; 36]).unwrap();
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    for _ in 0..2 {
        let (y, ms) = gpu
            .profile(|| gpu.conv2d(&gx, &gw, None, &Conv2d::default()))
            .unwrap();
        assert_close(
            "profiled conv2d",
            &y.download().unwrap(),
            &cpu::conv2d(&x, &w, None, &Conv2d::default()).unwrap(),
            1e-5,
            1e-5,
        );
        let has_timestamps = gpu
            .device()
            .features()
            .contains(convpool::wgpu::Features::TIMESTAMP_QUERY);
        assert_eq!(ms.is_some(), has_timestamps);
        if let Some(ms) = ms {
            assert!(ms > 0.0 && ms.is_finite(), "kernel time {ms} ms");
        }
    }
}

#[test]
fn two_gpu_instances_give_the_same_bits() {
    if gpu().is_none() {
        return;
    }
    let (a, b) = (Gpu::new().unwrap(), Gpu::new().unwrap());
    let mut rng = Rng::new(21);
    for k in 0..8 {
        let (x, w) = (rng.tensor([1, 4, 8, 8]), rng.tensor([4, 4, 3, 3]));
        let (ra, _) = mixed_op(&a, k, &x, &w, 3);
        let (rb, _) = mixed_op(&b, k, &x, &w, 3);
        assert_eq!(
            ra.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            rb.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "op {k} differs between two Gpu instances"
        );
    }
}

/// Launches of hundreds of passes, chained without a download in between (a transposed
/// convolution of stride 16 runs 256 phase passes, 64 KiB of params at 256-byte alignment;
/// stride 17, 289): every result must still be the CPU's.
#[test]
fn launches_of_hundreds_of_passes_chain() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(77);
    let mut pending = Vec::new();
    for (s, round) in [(16, 0), (17, 0), (16, 1), (3, 0), (17, 1)] {
        let spec = ConvTranspose2d {
            stride: [s, s],
            ..Default::default()
        };
        let (x, w) = (rng.tensor([1, 2, 2, 3]), rng.tensor([2, 1, 2, 2]));
        let want = cpu::conv_transpose2d(&x, &w, None, &spec).unwrap();
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        let y = gpu
            .conv_transpose2d_with(&gx, &gw, None, &spec, ConvAlgo::Gemm)
            .unwrap();
        pending.push((format!("stride {s} round {round}"), y, want));
    }
    for (what, y, want) in pending {
        assert_close(&what, &y.download().unwrap(), &want, 1e-5, 1e-4);
    }
}
