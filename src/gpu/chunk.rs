//! Tensors larger than one storage binding: ops whose tensors do not fit
//! `max_storage_buffer_binding_size` run chunk by chunk — over images for the convolutions,
//! over (n, c) planes for pooling and unpooling — with each chunk copied into a tensor that
//! fits, run through the ordinary kernels, and its result copied into place. Only a single image
//! or plane over the limit (or a weight tensor) is refused, with `Error::TooLarge`.

use std::sync::atomic::Ordering;

use super::{Gpu, GpuTensor};
use crate::error::{Error, Result};
use crate::tensor::Element;

impl Gpu {
    /// The largest number of bytes one kernel binding may hold here.
    pub(crate) fn binding_limit(&self) -> u64 {
        self.inner.binding_limit.load(Ordering::Relaxed)
    }

    /// Lowers the per-binding limit that triggers chunking (clamped to `4..=` the device's), so
    /// tests can run the chunked paths on small tensors.
    #[doc(hidden)]
    pub fn set_binding_limit_for_tests(&self, bytes: u64) {
        let l = &self.inner.limits;
        let max = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        self.inner
            .binding_limit
            .store(bytes.clamp(4, max), Ordering::Relaxed);
    }

    /// How many units (images or planes) of `units` to run per chunk, given the bytes each
    /// tensor of the op holds per unit: `None` when everything fits in one go, else a chunk
    /// length of at least 1, or `Err` when a single unit is over the limit.
    pub(crate) fn chunk_len(
        &self,
        op: &'static str,
        what: &'static str,
        units: usize,
        per_unit: &[u64],
    ) -> Result<Option<usize>> {
        let limit = self.binding_limit();
        let widest = per_unit.iter().copied().max().unwrap_or(0).max(1);
        if (units as u128) * (widest as u128) <= limit as u128 {
            return Ok(None);
        }
        if widest > limit {
            return Err(Error::TooLarge {
                op,
                what,
                bytes: widest,
                limit,
            });
        }
        Ok(Some(((limit / widest) as usize).max(1)))
    }

    /// For a convolution whose input `x` or output `y` exceeds one binding: runs `f` on chunks
    /// of images of `x` and copies each result into `y`. Returns false (and does nothing) when
    /// both fit, so the caller runs the op directly.
    pub(crate) fn by_images(
        &self,
        op: &'static str,
        x: &GpuTensor,
        y: &GpuTensor,
        f: impl Fn(&GpuTensor) -> Result<GpuTensor>,
    ) -> Result<bool> {
        let n = x.shape()[0];
        let (x_img, y_img) = (x.len() / n, y.len() / n);
        let Some(k) = self.chunk_len(op, "one image", n, &[x_img as u64 * 4, y_img as u64 * 4])?
        else {
            return Ok(false);
        };
        for b0 in (0..n).step_by(k) {
            let mut shape = x.shape().to_vec();
            shape[0] = k.min(n - b0);
            let part = self.copy_out(op, x, b0 * x_img, &shape)?;
            self.copy_in(op, &f(&part)?, y, b0 * y_img)?;
        }
        Ok(true)
    }

    /// `Err` when a tensor the op binds whole (a weight, a bias) is over the binding limit.
    pub(crate) fn check_binding(
        &self,
        op: &'static str,
        what: &'static str,
        elements: usize,
    ) -> Result<()> {
        let bytes = elements as u64 * 4;
        let limit = self.binding_limit();
        if bytes > limit {
            return Err(Error::TooLarge {
                op,
                what,
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// A new tensor of `shape` holding elements `start..` of `t` (flat, row-major).
    pub(crate) fn copy_out<T: Element>(
        &self,
        op: &'static str,
        t: &GpuTensor<T>,
        start: usize,
        shape: &[usize],
    ) -> Result<GpuTensor<T>> {
        let part = self.alloc::<T>(op, shape)?;
        let bytes = part.len() as u64 * 4;
        if bytes > 0 {
            self.record(op, |e| {
                e.copy_buffer_to_buffer(t.buffer(), start as u64 * 4, part.buffer(), 0, bytes)
            })?;
        }
        Ok(part)
    }

    /// Copies all of `part` into `dst` from flat element `start`.
    pub(crate) fn copy_in<T: Element>(
        &self,
        op: &'static str,
        part: &GpuTensor<T>,
        dst: &GpuTensor<T>,
        start: usize,
    ) -> Result<()> {
        let bytes = part.len() as u64 * 4;
        if bytes > 0 {
            self.record(op, |e| {
                e.copy_buffer_to_buffer(part.buffer(), 0, dst.buffer(), start as u64 * 4, bytes)
            })?;
        }
        Ok(())
    }
}
