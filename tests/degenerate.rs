//! Degenerate shapes found by fuzzing the public ops (benchmarks/fuzz.sh): zero channels, zero
//! positions. `cpu::`, `fast::` and the GPU must agree on `Ok` (with the same values) or `Err`,
//! and an op over such shapes must leave the ops recorded beside it intact.

mod common;

use common::{assert_close, assert_exact, gpu, Rng};
use convpool::{cpu, fast, Conv2d, ConvAlgo, ConvTranspose2d, Pool2d, Tensor};

/// A small conv2d recorded on the GPU before and after the case: both must come out right.
fn with_neighbours(gpu: &convpool::Gpu, case: impl FnOnce()) {
    let mut rng = Rng::new(9);
    let (x, w) = (rng.tensor([1, 2, 5, 4]), rng.tensor([3, 2, 2, 2]));
    let spec = Conv2d::default();
    let want = cpu::conv2d(&x, &w, None, &spec).unwrap();
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    let before = gpu.conv2d(&gx, &gw, None, &spec).unwrap();
    case();
    let after = gpu.conv2d(&gx, &gw, None, &spec).unwrap();
    gpu.synchronize().unwrap();
    assert_close(
        "the op before",
        &before.download().unwrap(),
        &want,
        1e-5,
        1e-4,
    );
    assert_close(
        "the op after",
        &after.download().unwrap(),
        &want,
        1e-5,
        1e-4,
    );
}

#[test]
fn max_unpool2d_into_planes_of_no_position_is_refused_on_every_path() {
    let vals = Tensor::new([1, 2, 2, 2], vec![1.0; 8]).unwrap();
    let idx = Tensor::<u32>::new([1, 2, 2, 2], vec![0; 8]).unwrap();
    for size in [[5, 0], [0, 3], [0, 0]] {
        let want = cpu::max_unpool2d(&vals, &idx, size);
        assert!(want.is_err(), "cpu: {size:?} gave {want:?}");
        let got = fast::max_unpool2d(&vals, &idx, size);
        assert!(got.is_err(), "fast: {size:?} gave {got:?}");
        let Some(gpu) = gpu() else { continue };
        with_neighbours(&gpu, || {
            let (gv, gi) = (gpu.upload(&vals).unwrap(), gpu.upload(&idx).unwrap());
            let got = gpu.max_unpool2d(&gv, &gi, size);
            assert!(got.is_err(), "gpu: {size:?} gave {got:?}");
            // Indices of this library's pooling, reshaped so that they claim nothing.
            let got = gpu.max_pool2d_backward(&gv, &gi, size);
            assert!(got.is_err(), "gpu backward: {size:?} gave {got:?}");
        });
    }
    // With no value either, an empty plane is fine everywhere (nothing to place).
    let (vals, idx) = (
        Tensor::zeros([1, 2, 0, 2]).unwrap(),
        Tensor::<u32>::zeros([1, 2, 0, 2]).unwrap(),
    );
    let want = cpu::max_unpool2d(&vals, &idx, [5, 0]).unwrap();
    assert_exact(
        "fast",
        &fast::max_unpool2d(&vals, &idx, [5, 0]).unwrap(),
        &want,
    );
    if let Some(gpu) = gpu() {
        let (gv, gi) = (gpu.upload(&vals).unwrap(), gpu.upload(&idx).unwrap());
        let got = gpu
            .max_unpool2d(&gv, &gi, [5, 0])
            .unwrap()
            .download()
            .unwrap();
        assert_exact("gpu", &got, &want);
    }
}

#[test]
fn convolutions_with_zero_input_channels_give_the_bias_on_every_path_and_kernel() {
    let mut rng = Rng::new(3);
    let conv = Conv2d {
        groups: 2,
        ..Default::default()
    };
    let (x, w, b) = (
        Tensor::zeros([2, 0, 8, 5]).unwrap(),
        Tensor::zeros([4, 0, 1, 5]).unwrap(),
        rng.tensor([4]),
    );
    let tspec = ConvTranspose2d::default();
    let (tx, tw, tb) = (
        Tensor::zeros([1, 0, 9, 4]).unwrap(),
        Tensor::zeros([0, 3, 1, 4]).unwrap(),
        rng.tensor([3]),
    );
    for bias in [None, Some(&b)] {
        let want = cpu::conv2d(&x, &w, bias, &conv).unwrap();
        assert_eq!(want.shape(), &[2, 4, 8, 1]);
        assert_exact(
            "fast conv2d",
            &fast::conv2d(&x, &w, bias, &conv).unwrap(),
            &want,
        );
        let tbias = bias.map(|_| &tb);
        let twant = cpu::conv_transpose2d(&tx, &tw, tbias, &tspec).unwrap();
        assert_eq!(twant.shape(), &[1, 3, 9, 7]);
        let tfast = fast::conv_transpose2d(&tx, &tw, tbias, &tspec).unwrap();
        assert_exact("fast conv_transpose2d", &tfast, &twant);
        let Some(gpu) = gpu() else { continue };
        let up = |t: &Tensor| gpu.upload(t).unwrap();
        for &algo in ConvAlgo::ALL {
            with_neighbours(&gpu, || {
                let got = gpu.conv2d_with(&up(&x), &up(&w), bias.map(up).as_ref(), &conv, algo);
                let got = got.unwrap().download().unwrap();
                assert_exact(&format!("gpu conv2d {algo:?}"), &got, &want);
                // A recycled buffer full of stale values must not come back as the output.
                let stale = up(&Tensor::new([1, 3, 9, 7], vec![7.0; 189]).unwrap());
                drop(stale);
                let got = gpu.conv_transpose2d_with(
                    &up(&tx),
                    &up(&tw),
                    tbias.map(up).as_ref(),
                    &tspec,
                    algo,
                );
                let got = got.unwrap().download().unwrap();
                assert_exact(&format!("gpu conv_transpose2d {algo:?}"), &got, &twant);
            });
        }
    }
}

#[test]
fn pooling_with_zero_positions_agrees_on_every_path() {
    let x = Tensor::zeros([0, 2, 3, 4]).unwrap();
    let p = Pool2d::new([1, 1]);
    let want = cpu::max_pool2d(&x, &p).unwrap();
    let got = fast::max_pool2d(&x, &p).unwrap();
    assert_exact("fast values", &got.0, &want.0);
    assert_exact("fast indices", &got.1, &want.1);
    if let Some(gpu) = gpu() {
        let (v, i) = gpu.max_pool2d(&gpu.upload(&x).unwrap(), &p).unwrap();
        assert_exact("gpu values", &v.download().unwrap(), &want.0);
        assert_exact("gpu indices", &i.download().unwrap(), &want.1);
    }
}
