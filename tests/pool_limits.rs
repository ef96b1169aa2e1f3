//! Pooling, unpooling and their backward passes on bad input, and their kernels past their
//! limits: every refusal an `Err` naming the op and the values; dispatches folded beyond
//! 65,535 workgroups; unpooling through windows that tile the plane.

mod common;

use common::{assert_close, assert_exact, expect_invalid, gpu, sweep, Rng};
use convpool::{cpu, Gpu, Pool2d, Tensor};

#[test]
fn pooling_beyond_65535_workgroups() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(12);
    let x = rng.int_tensor([1, 1, 2100, 2100], 5);
    let p = Pool2d {
        stride: [1, 1],
        ..Pool2d::new([1, 1])
    };
    let gx = gpu.upload(&x).unwrap();
    let (v, i) = gpu.max_pool2d(&gx, &p).unwrap();
    let (cv, ci) = cpu::max_pool2d(&x, &p).unwrap();
    assert_exact("max values", &v.download().unwrap(), &cv);
    assert_exact("max indices", &i.download().unwrap(), &ci);
    assert_exact(
        "max_unpool2d",
        &gpu.max_unpool2d(&v, &i, [2100, 2100])
            .unwrap()
            .download()
            .unwrap(),
        &x,
    );
    assert_exact(
        "avg",
        &gpu.avg_pool2d(&gx, &p).unwrap().download().unwrap(),
        &x,
    );
}

#[test]
fn bad_input_is_an_err() {
    let x = Tensor::new([1, 1, 4, 4], vec![1.0; 16]).unwrap();
    let k = Pool2d::new([2, 2]);
    expect_invalid(
        cpu::max_pool2d(&x, &Pool2d::new([0, 2])),
        "max_pool2d",
        "kernel must be at least 1",
    );
    expect_invalid(
        cpu::avg_pool2d(
            &x,
            &Pool2d {
                stride: [2, 0],
                ..k
            },
        ),
        "avg_pool2d",
        "stride must be at least 1",
    );
    expect_invalid(
        cpu::max_pool2d(
            &x,
            &Pool2d {
                padding: [2, 0],
                ..k
            },
        ),
        "max_pool2d",
        "padding height 2 must be at most half the kernel height 2",
    );
    expect_invalid(
        cpu::max_pool2d(&x, &Pool2d::new([5, 1])),
        "max_pool2d",
        "larger than the padded input",
    );
    expect_invalid(
        cpu::max_pool2d(
            &x,
            &Pool2d {
                dilation: [1, 0],
                ..k
            },
        ),
        "max_pool2d",
        "dilation must be at least 1",
    );
    expect_invalid(
        cpu::stochastic_pool2d(&Tensor::new([4, 4], vec![1.0; 16]).unwrap(), &k, 0),
        "stochastic_pool2d",
        "rank 4",
    );
    // A window that holds only padding.
    let tiny = Tensor::new([1, 1, 2, 2], vec![1.0; 4]).unwrap();
    expect_invalid(
        cpu::max_pool2d(
            &tiny,
            &Pool2d {
                padding: [1, 1],
                dilation: [3, 3],
                stride: [1, 1],
                ..k
            },
        ),
        "max_pool2d",
        "covers only padding",
    );
    let (v, idx) = cpu::max_pool2d(&x, &k).unwrap();
    let bad_shape = Tensor::<u32>::new([1, 1, 4, 1], vec![0; 4]).unwrap();
    expect_invalid(
        cpu::max_unpool2d(&v, &bad_shape, [4, 4]),
        "max_unpool2d",
        "differs from values shape",
    );
    let out_of_range = Tensor::<u32>::new([1, 1, 2, 2], vec![0, 3, 16, 2]).unwrap();
    expect_invalid(
        cpu::max_unpool2d(&v, &out_of_range, [4, 4]),
        "max_unpool2d",
        "index 16 at position 2",
    );
    expect_invalid(
        cpu::max_pool2d_backward(&v, &out_of_range, [4, 4]),
        "max_pool2d_backward",
        "index 16",
    );
    expect_invalid(
        cpu::max_unpool2d(&v, &idx, [3, 3]),
        "max_unpool2d",
        "out of range for a 3×3 output plane",
    );
    expect_invalid(
        cpu::avg_unpool2d(&v, &k, [5, 6]),
        "avg_unpool2d",
        "gives 2×3, but the pooled tensor is 2×2",
    );
    expect_invalid(
        cpu::avg_pool2d_backward(&v, &k, [6, 4]),
        "avg_pool2d_backward",
        "pooled tensor is 2×2",
    );
    let Some(gpu) = gpu() else { return };
    let gx = gpu.upload(&x).unwrap();
    expect_invalid(
        gpu.max_pool2d(
            &gx,
            &Pool2d {
                padding: [2, 0],
                ..k
            },
        ),
        "max_pool2d",
        "padding height 2",
    );
    expect_invalid(
        gpu.avg_pool2d(&gx, &Pool2d::new([0, 2])),
        "avg_pool2d",
        "kernel must be at least 1",
    );
    let (gv, gi) = gpu.max_pool2d(&gx, &k).unwrap();
    expect_invalid(
        gpu.max_unpool2d(&gv, &gpu.upload(&bad_shape).unwrap(), [4, 4]),
        "max_unpool2d",
        "differs from values shape",
    );
    let bad = gpu.upload(&out_of_range).unwrap();
    expect_invalid(
        gpu.max_unpool2d(&gv, &bad, [4, 4]),
        "max_unpool2d",
        "index 16 at position 2",
    );
    expect_invalid(
        gpu.max_pool2d_backward(&gv, &bad, [4, 4]),
        "max_pool2d_backward",
        "index 16 at position 2",
    );
    // Indices made by max_pool2d on a 4x4 input no longer fit a 3x3 plane: checked on the device.
    expect_invalid(
        gpu.max_unpool2d(&gv, &gi, [3, 3]),
        "max_unpool2d",
        "out of range for a 3×3 output plane",
    );
    expect_invalid(
        gpu.avg_unpool2d(&gv, &k, [5, 6]),
        "avg_unpool2d",
        "pooled tensor is 2×2",
    );
    expect_invalid(
        gpu.avg_pool2d_backward(&gv, &k, [6, 4]),
        "avg_pool2d_backward",
        "pooled tensor is 2×2",
    );
    // Bigger output planes are fine (PyTorch allows them): indices keep their flat meaning.
    let up = gpu
        .max_unpool2d(&gv, &gi, [5, 5])
        .unwrap()
        .download()
        .unwrap();
    assert_eq!(up, cpu::max_unpool2d(&v, &idx, [5, 5]).unwrap());
}

#[test]
fn folded_dispatch_of_every_pooling_kernel() {
    // Folding at 6 workgroups per dimension sends these dispatches through the 2-D/3-D grid.
    if gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    gpu.set_fold_limit_for_tests(6);
    let mut rng = Rng::new(606);
    for (i, (xs, p)) in sweep(&mut rng).into_iter().enumerate().take(10) {
        let xs = [xs[0], xs[1] + 2, xs[2] + 8, xs[3] + 8];
        let x = rng.tensor(xs);
        let gx = gpu.upload(&x).unwrap();
        let size = [xs[2], xs[3]];
        let (v, idx) = cpu::max_pool2d(&x, &p).unwrap();
        let (gv, gi) = gpu.max_pool2d(&gx, &p).unwrap();
        assert_exact(&format!("case {i} max"), &gv.download().unwrap(), &v);
        assert_exact(&format!("case {i} idx"), &gi.download().unwrap(), &idx);
        let want = cpu::max_unpool2d(&v, &idx, size).unwrap();
        assert_exact(
            &format!("case {i} unpool"),
            &gpu.max_unpool2d(&gv, &gi, size)
                .unwrap()
                .download()
                .unwrap(),
            &want,
        );
        let plain = gpu.upload(&idx).unwrap();
        assert_exact(
            &format!("case {i} unpool (planes)"),
            &gpu.max_unpool2d(&gv, &plain, size)
                .unwrap()
                .download()
                .unwrap(),
            &want,
        );
        let a = cpu::avg_pool2d(&x, &p).unwrap();
        let ga = gpu.avg_pool2d(&gx, &p).unwrap();
        assert_close(
            &format!("case {i} avg"),
            &ga.download().unwrap(),
            &a,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("case {i} avg_unpool"),
            &gpu.avg_unpool2d(&ga, &p, size).unwrap().download().unwrap(),
            &cpu::avg_unpool2d(&a, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("case {i} avg backward"),
            &gpu.avg_pool2d_backward(&ga, &p, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::avg_pool2d_backward(&a, &p, size).unwrap(),
            1e-6,
            1e-5,
        );
        let (s, si) = cpu::stochastic_pool2d(&x, &p, 3).unwrap();
        let (gs, gsi) = gpu.stochastic_pool2d(&gx, &p, 3).unwrap();
        assert_exact(&format!("case {i} stochastic"), &gs.download().unwrap(), &s);
        assert_exact(
            &format!("case {i} stochastic idx"),
            &gsi.download().unwrap(),
            &si,
        );
    }
}

#[test]
fn unpooling_through_windows_that_tile_the_plane() {
    // Stride = kernel and sizes divisible by it (W7's case), across planes and axes: pooled
    // rows a multiple of 4 wide run the tile kernel (shaders/unpool_tiles.wgsl), the others
    // and planes with rows or columns outside every window the owned scatter.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(31);
    for (xs, k) in [
        ([2, 3, 6, 8], [2, 2]),
        ([1, 2, 9, 12], [3, 3]),
        ([1, 1, 4, 12], [2, 3]),
        ([1, 2, 5, 8], [1, 2]),
        ([2, 1, 6, 16], [3, 2]),
        ([1, 2, 9, 6], [3, 3]),
        ([1, 1, 4, 9], [2, 3]),
        ([1, 2, 5, 4], [1, 2]),
        ([1, 2, 7, 9], [2, 2]),
    ] {
        let x = rng.int_tensor(xs, 4);
        let p = Pool2d::new(k);
        let size = [xs[2], xs[3]];
        let (v, i) = cpu::max_pool2d(&x, &p).unwrap();
        let (gv, gi) = gpu.max_pool2d(&gpu.upload(&x).unwrap(), &p).unwrap();
        let what = format!("{xs:?} {k:?}");
        assert_exact(
            &format!("max_unpool2d {what}"),
            &gpu.max_unpool2d(&gv, &gi, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_unpool2d(&v, &i, size).unwrap(),
        );
        let grad = rng.tensor(v.shape().to_vec());
        assert_exact(
            &format!("max_pool2d_backward {what}"),
            &gpu.max_pool2d_backward(&gpu.upload(&grad).unwrap(), &gi, size)
                .unwrap()
                .download()
                .unwrap(),
            &cpu::max_pool2d_backward(&grad, &i, size).unwrap(),
        );
    }
}
