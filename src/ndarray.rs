//! Conversions between [`Tensor`] and [`ndarray`] arrays (the `ndarray` feature): any array
//! (any layout, any rank) into a `Tensor`, a `Tensor` into an owned `ArrayD` or `Array4` or a
//! borrowed `ArrayViewD`. Elements keep their logical row-major order.
//!
//! ```
//! # fn main() -> convpool::Result<()> {
//! use convpool::Tensor;
//! let a = ndarray::Array4::<f32>::from_shape_fn((1, 2, 3, 4), |(_, c, h, w)| (c * 100 + h * 10 + w) as f32);
//! let t = Tensor::from(a.view());
//! assert_eq!(t.shape(), &[1, 2, 3, 4]);
//! let back = ndarray::Array4::try_from(t)?;
//! assert_eq!(back, a);
//! # Ok(()) }
//! ```

use ndarray::{Array4, ArrayBase, ArrayD, ArrayViewD, Data, Dimension, IxDyn};

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};

impl<T: Element, S: Data<Elem = T>, D: Dimension> From<ArrayBase<S, D>> for Tensor<T> {
    /// The array's elements in row-major order (moved without a copy where the array owns
    /// them in standard layout).
    fn from(a: ArrayBase<S, D>) -> Tensor<T> {
        let shape = a.shape().to_vec();
        let len = a.len();
        let data = if a.is_standard_layout() {
            // Contiguous from the offset on, in row-major order.
            let (mut v, offset) = a.into_owned().into_raw_vec_and_offset();
            v.drain(..offset.unwrap_or(0).min(v.len()));
            v.truncate(len);
            v
        } else {
            a.iter().copied().collect()
        };
        // An array holds the product of its shape.
        Tensor { shape, data }
    }
}

impl<T: Element> TryFrom<Tensor<T>> for ArrayD<T> {
    type Error = Error;

    /// `Err` only for shapes ndarray cannot represent (a zero axis beside axes whose product
    /// exceeds `isize::MAX`).
    fn try_from(t: Tensor<T>) -> Result<ArrayD<T>> {
        let shape = t.shape().to_vec();
        ArrayD::from_shape_vec(IxDyn(&shape), t.into_data()).map_err(|e| {
            Error::invalid("ArrayD::try_from(Tensor)", format!("shape {shape:?}: {e}"))
        })
    }
}

impl<T: Element> TryFrom<Tensor<T>> for Array4<T> {
    type Error = Error;

    /// `Err` unless the tensor has rank 4.
    fn try_from(t: Tensor<T>) -> Result<Array4<T>> {
        let op = "Array4::try_from(Tensor)";
        let shape = crate::tensor::dims4(op, "the tensor", t.shape())?;
        Array4::from_shape_vec(shape, t.into_data())
            .map_err(|e| Error::invalid(op, format!("shape {shape:?}: {e}")))
    }
}

impl<'a, T: Element> TryFrom<&'a Tensor<T>> for ArrayViewD<'a, T> {
    type Error = Error;

    /// A view of the tensor's elements, no copy.
    fn try_from(t: &'a Tensor<T>) -> Result<ArrayViewD<'a, T>> {
        ArrayViewD::from_shape(IxDyn(t.shape()), t.data()).map_err(|e| {
            Error::invalid(
                "ArrayViewD::try_from(&Tensor)",
                format!("shape {:?}: {e}", t.shape()),
            )
        })
    }
}
