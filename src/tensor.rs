//! Host tensors: a shape and a row-major `Vec` of `f32` or `u32`.

use crate::error::{ensure, Error, Result};

mod sealed {
    /// Only convpool's own element types implement [`Element`](super::Element): the kernels
    /// exist for those alone.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
}

/// Element types a tensor can hold: `f32` for data, `u32` for pooling indices. Sealed: it is
/// implemented for these types only.
///
/// ```compile_fail
/// #[derive(Clone, Copy, Default, PartialEq, Debug, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(transparent)]
/// struct Mine(f32);
/// impl convpool::Element for Mine {
///     const NAME: &'static str = "mine";
/// }
/// ```
pub trait Element:
    sealed::Sealed + bytemuck::Pod + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// Name used in messages.
    const NAME: &'static str;

    /// For index types: one more than the largest of `data` (0 when empty), kept by an upload so
    /// that labels and indices can be range-checked without reading them back.
    #[doc(hidden)]
    fn bound(_data: &[Self]) -> Option<u64> {
        None
    }
}
impl Element for f32 {
    const NAME: &'static str = "f32";
}
impl Element for u32 {
    const NAME: &'static str = "u32";
    fn bound(data: &[u32]) -> Option<u64> {
        Some(data.iter().map(|&v| v as u64 + 1).max().unwrap_or(0))
    }
}

/// A dense row-major tensor on the host. Ops expect rank 4, NCHW.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T: Element = f32> {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<T>,
}

/// The number of elements of `shape`, or an error naming `op` if the product overflows.
pub(crate) fn numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::invalid(
                op,
                format!("shape {shape:?} has more than usize::MAX elements"),
            )
        })
}

/// The number of elements of `shape`, or an error naming `op` if a `Vec<T>` of them could not
/// exist (more than `isize::MAX` bytes).
fn addressable<T>(op: &'static str, shape: &[usize]) -> Result<usize> {
    let n = numel(op, shape)?;
    ensure!(
        n.checked_mul(std::mem::size_of::<T>())
            .is_some_and(|b| b <= isize::MAX as usize),
        op,
        "shape {shape:?} needs more memory than can be addressed"
    );
    Ok(n)
}

impl<T: Element> Tensor<T> {
    /// A tensor of `shape` holding `data` in row-major order.
    /// `Err` if `data.len()` is not the product of `shape`.
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Self> {
        let shape = shape.into();
        let n = numel("Tensor::new", &shape)?;
        ensure!(
            n == data.len(),
            "Tensor::new",
            "shape {shape:?} holds {n} elements but data has {}",
            data.len()
        );
        Ok(Tensor { shape, data })
    }

    /// A tensor of `shape` filled with zeros. `Err` if it could not be addressed.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        let n = addressable::<T>("Tensor::zeros", &shape)?;
        Ok(Tensor {
            shape,
            data: vec![T::default(); n],
        })
    }

    /// A tensor whose element at flat index `i` is `f(i)`.
    pub fn from_fn(shape: impl Into<Vec<usize>>, f: impl FnMut(usize) -> T) -> Result<Self> {
        let shape = shape.into();
        let n = addressable::<T>("Tensor::from_fn", &shape)?;
        Ok(Tensor {
            shape,
            data: (0..n).map(f).collect(),
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Gives back the elements.
    pub fn into_data(mut self) -> Vec<T> {
        std::mem::take(&mut self.data)
    }

    /// The same elements under another shape of the same element count (no copy). `Err` if
    /// the counts differ.
    pub fn reshape(self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        let n = numel("Tensor::reshape", &shape)?;
        ensure!(
            n == self.data.len(),
            "Tensor::reshape",
            "shape {shape:?} has {n} elements, the tensor {:?} has {}",
            self.shape,
            self.data.len()
        );
        let data = self.into_data();
        Ok(Tensor { shape, data })
    }
}

/// A dropped tensor's elements go to the recycled storage (`src/recycle.rs`), which the fast
/// path's next outputs draw on.
impl<T: Element> Drop for Tensor<T> {
    fn drop(&mut self) {
        crate::recycle::give(std::mem::take(&mut self.data));
    }
}

/// The four dimensions of `shape`, or `Err` when its rank is not 4.
pub(crate) fn dims4(op: &'static str, what: &str, shape: &[usize]) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(shape).map_err(|_| {
        Error::invalid(
            op,
            format!(
                "{what} must have rank 4 (NCHW), got shape {shape:?} of rank {}",
                shape.len()
            ),
        )
    })
}
