//! conv2d and conv_transpose2d on bad input: every refusal is an `Err` naming the op and the
//! values, and empty batches give empty outputs.

mod common;

use common::{expect_invalid, gpu};
use convpool::{cpu, Conv2d, ConvTranspose2d, Error, Tensor};

#[test]
fn bad_input_is_an_err_naming_the_values() {
    expect_invalid(
        Tensor::new([2, 3], vec![0.0f32; 5]),
        "Tensor::new",
        "holds 6 elements but data has 5",
    );
    expect_invalid(
        Tensor::<f32>::new([usize::MAX, 3], vec![]),
        "Tensor::new",
        "usize::MAX",
    );
    let x = Tensor::new([1, 2, 5, 5], vec![0.0; 50]).unwrap();
    let w = Tensor::new([4, 2, 3, 3], vec![0.0; 72]).unwrap();
    let d = Conv2d::default();
    let x3 = Tensor::new([2, 5, 5], vec![0.0; 50]).unwrap();
    let cases: Vec<(Result<Tensor, Error>, &str)> = vec![
        (cpu::conv2d(&x3, &w, None, &d), "rank 4"),
        (cpu::conv2d(&x, &x3, None, &d), "rank 4"),
        (
            cpu::conv2d(
                &x,
                &Tensor::new([4, 3, 3, 3], vec![0.0; 108]).unwrap(),
                None,
                &d,
            ),
            "input has 2",
        ),
        (
            cpu::conv2d(&x, &w, None, &Conv2d { groups: 3, ..d }),
            "groups = 3 does not divide the 2 input channels",
        ),
        (
            cpu::conv2d(
                &x,
                &Tensor::new([3, 1, 3, 3], vec![0.0; 27]).unwrap(),
                None,
                &Conv2d { groups: 2, ..d },
            ),
            "does not divide the 3 output",
        ),
        (
            cpu::conv2d(
                &x,
                &w,
                None,
                &Conv2d {
                    stride: [0, 1],
                    ..d
                },
            ),
            "stride must be at least 1",
        ),
        (
            cpu::conv2d(
                &x,
                &w,
                None,
                &Conv2d {
                    dilation: [1, 0],
                    ..d
                },
            ),
            "dilation must be at least 1",
        ),
        (
            cpu::conv2d(&x, &w, None, &Conv2d { groups: 0, ..d }),
            "groups must be at least 1",
        ),
        (
            cpu::conv2d(
                &x,
                &w,
                None,
                &Conv2d {
                    dilation: [3, 1],
                    ..d
                },
            ),
            "larger than the padded input",
        ),
        (
            cpu::conv2d(
                &x,
                &Tensor::new([4, 2, 6, 3], vec![0.0; 144]).unwrap(),
                None,
                &d,
            ),
            "kernel height 6",
        ),
        (
            cpu::conv2d(&x, &w, Some(&Tensor::new([3], vec![0.0; 3]).unwrap()), &d),
            "bias must have shape [4]",
        ),
        (
            cpu::conv2d(&x, &Tensor::new([4, 2, 0, 3], vec![]).unwrap(), None, &d),
            "kernel size must be at least 1",
        ),
    ];
    for (r, needle) in cases {
        expect_invalid(r, "conv2d", needle);
    }
    let wt = Tensor::new([2, 3, 3, 3], vec![0.0; 54]).unwrap();
    let t = ConvTranspose2d::default();
    let tcases: Vec<(Result<Tensor, Error>, &str)> = vec![
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    output_padding: [1, 0],
                    ..t
                },
            ),
            "output_padding height 1 must be smaller than max(stride, dilation) = 1",
        ),
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    stride: [2, 2],
                    output_padding: [0, 2],
                    ..t
                },
            ),
            "output_padding width 2",
        ),
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    padding: [4, 0],
                    ..t
                },
            ),
            "is below 1",
        ),
        (
            cpu::conv_transpose2d(&x, &wt, Some(&Tensor::new([2], vec![0.0; 2]).unwrap()), &t),
            "bias must have shape [3]",
        ),
        (
            cpu::conv_transpose2d(&x, &w, None, &t),
            "expects 4 input channels, input has 2",
        ),
        (
            cpu::conv_transpose2d(&x, &wt, None, &ConvTranspose2d { groups: 0, ..t }),
            "groups must be at least 1",
        ),
        (
            cpu::conv_transpose2d(
                &x,
                &wt,
                None,
                &ConvTranspose2d {
                    stride: [1, 0],
                    ..t
                },
            ),
            "stride must be at least 1",
        ),
        (cpu::conv_transpose2d(&x3, &wt, None, &t), "rank 4"),
    ];
    for (r, needle) in tcases {
        expect_invalid(r, "conv_transpose2d", needle);
    }
    // The same refusals on the GPU, and a tensor from another Gpu.
    let Some(gpu) = gpu() else { return };
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    expect_invalid(
        gpu.conv2d(&gx, &gw, None, &Conv2d { groups: 3, ..d }),
        "conv2d",
        "groups = 3",
    );
    expect_invalid(
        gpu.conv2d(
            &gx,
            &gw,
            None,
            &Conv2d {
                dilation: [3, 1],
                ..d
            },
        ),
        "conv2d",
        "larger than the padded input",
    );
    expect_invalid(
        gpu.conv_transpose2d(
            &gx,
            &gpu.upload(&wt).unwrap(),
            None,
            &ConvTranspose2d {
                output_padding: [1, 0],
                ..t
            },
        ),
        "conv_transpose2d",
        "output_padding",
    );
    let other = convpool::Gpu::new().unwrap();
    let foreign = other.upload(&w).unwrap();
    assert!(matches!(
        gpu.conv2d(&gx, &foreign, None, &d),
        Err(Error::WrongDevice { what: "weight", .. })
    ));
}

#[test]
fn empty_batch_gives_an_empty_output() {
    let x = Tensor::new([0, 2, 5, 5], vec![]).unwrap();
    let w = Tensor::new([3, 2, 3, 3], vec![0.5; 54]).unwrap();
    let y = cpu::conv2d(&x, &w, None, &Conv2d::default()).unwrap();
    assert_eq!((y.shape(), y.len()), (&[0, 3, 3, 3][..], 0));
    let Some(gpu) = gpu() else { return };
    let gw = gpu.upload(&w).unwrap();
    let y = gpu
        .conv2d(&gpu.upload(&x).unwrap(), &gw, None, &Conv2d::default())
        .unwrap()
        .download()
        .unwrap();
    assert_eq!((y.shape(), y.len()), (&[0, 3, 3, 3][..], 0));
    let t = gpu
        .conv_transpose2d(
            &gpu.upload(&Tensor::new([0, 3, 2, 2], vec![]).unwrap())
                .unwrap(),
            &gpu.upload(&Tensor::new([3, 2, 2, 2], vec![1.0; 24]).unwrap())
                .unwrap(),
            None,
            &ConvTranspose2d::default(),
        )
        .unwrap();
    assert_eq!(t.download().unwrap().shape(), &[0, 2, 3, 3]);
    let (v, i) = gpu
        .max_pool2d(&gpu.upload(&x).unwrap(), &convpool::Pool2d::new([2, 2]))
        .unwrap();
    assert_eq!(
        gpu.max_unpool2d(&v, &i, [5, 5])
            .unwrap()
            .download()
            .unwrap()
            .shape(),
        &[0, 2, 5, 5]
    );
}
