//! The `ndarray` feature: conversions between `Tensor` and ndarray arrays keep the shape and
//! the logical row-major order, whatever the array's layout.
#![cfg(feature = "ndarray")]

use convpool::{cpu, Conv2d, Error, Tensor};
use ndarray::{s, Array4, ArrayD, ArrayViewD, Axis, IxDyn, ShapeBuilder};

fn sample() -> Array4<f32> {
    Array4::from_shape_fn((2, 3, 4, 5), |(n, c, h, w)| {
        (n * 1000 + c * 100 + h * 10 + w) as f32
    })
}

#[test]
fn arrays_of_every_layout_become_row_major_tensors() {
    let a = sample();
    let want: Vec<f32> = a.iter().copied().collect();
    let owned = Tensor::from(a.clone());
    assert_eq!(owned.shape(), &[2, 3, 4, 5]);
    assert_eq!(owned.data(), want.as_slice());
    assert_eq!(Tensor::from(a.view()).data(), want.as_slice());
    // Column-major and permuted axes: the logical order, not the memory order.
    let fortran = Array4::from_shape_vec((2, 3, 4, 5).f(), vec![0.0; 120]).unwrap();
    let mut fortran = fortran;
    fortran.assign(&a);
    assert_eq!(Tensor::from(fortran).data(), want.as_slice());
    let permuted = a.view().permuted_axes([0, 1, 3, 2]);
    let t = Tensor::from(permuted);
    assert_eq!(t.shape(), &[2, 3, 5, 4]);
    assert_eq!(t.data()[1], a[[0, 0, 1, 0]]);
    // A slice that starts past its buffer's first element, in standard layout.
    let sliced = a.slice_move(s![1.., 1.., .., ..]);
    assert!(sliced.is_standard_layout());
    let t = Tensor::from(sliced.clone());
    assert_eq!(t.shape(), &[1, 2, 4, 5]);
    assert_eq!(
        t.data(),
        sliced.iter().copied().collect::<Vec<_>>().as_slice()
    );
    // Any rank, u32 too.
    let idx = ArrayD::from_shape_fn(IxDyn(&[3, 2]), |i| (i[0] * 2 + i[1]) as u32);
    assert_eq!(Tensor::from(idx).data(), &[0, 1, 2, 3, 4, 5]);
}

#[test]
fn tensors_become_arrays_and_round_trip_through_an_op() {
    let a = sample();
    let t = Tensor::from(a.clone());
    let view = ArrayViewD::try_from(&t).unwrap();
    assert_eq!(view.shape(), &[2, 3, 4, 5]);
    assert_eq!(view[[1, 2, 3, 4]], 1234.0);
    let dynamic = ArrayD::try_from(t.clone()).unwrap();
    assert_eq!(dynamic.into_dimensionality::<ndarray::Ix4>().unwrap(), a);
    let back = Array4::try_from(t).unwrap();
    assert_eq!(back, a);

    // A convolution over an ndarray input, compared with the same sum done by ndarray.
    let w = Tensor::new([1, 3, 1, 1], vec![1.0, 2.0, 3.0]).unwrap();
    let y = cpu::conv2d(&Tensor::from(a.view()), &w, None, &Conv2d::default()).unwrap();
    let y = Array4::try_from(y).unwrap();
    let want = &a.index_axis(Axis(1), 0)
        + &(&a.index_axis(Axis(1), 1) * 2.0)
        + &(&a.index_axis(Axis(1), 2) * 3.0);
    assert_eq!(y.index_axis(Axis(1), 0), want);
}

#[test]
fn a_tensor_of_another_rank_is_not_an_array4() {
    let t = Tensor::new([2, 3], vec![0.0f32; 6]).unwrap();
    let err = Array4::try_from(t).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("rank 4"), "{err}");
    let odd = Tensor::<f32>::new([0, usize::MAX], vec![]).unwrap();
    assert!(
        ArrayD::try_from(odd).is_err(),
        "a shape ndarray cannot hold is an Err"
    );
}
