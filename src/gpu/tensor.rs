//! `GpuTensor`: a buffer on a `Gpu` with a shape; wrapping an application's buffer, reshaping,
//! downloading, and the return of convpool's own buffers to the pool when the last handle drops.

use std::marker::PhantomData;
use std::sync::Arc;

use super::record::BufferCopy;
use super::Gpu;
use crate::error::{Error, Result};
use crate::params::pool::PoolGeometry;
use crate::tensor::{numel, Element, Tensor};

/// A tensor on a `Gpu`: a storage buffer and a shape (row-major, the first `len()` elements of
/// the buffer). Cloning and [`reshape`](GpuTensor::reshape) share the buffer. Ops never write
/// into their inputs: every op writes a new tensor.
///
/// Tensors are made by [`Gpu::upload`], by ops, or around an application's own buffer by
/// [`GpuTensor::from_buffer`].
pub struct GpuTensor<T: Element = f32> {
    gpu: Gpu,
    buffer: Arc<wgpu::Buffer>,
    shape: Vec<usize>,
    /// Wraps an application's buffer (`from_buffer`): never recycled into the pool, and never
    /// taken to be unchanged between calls (no packed copy of it is kept).
    pub(crate) external: bool,
    /// For indices made by a pooling op: the window geometry that produced them. Lets
    /// unpooling skip the index range check and gather instead of scatter.
    pub(crate) origin: Option<PoolGeometry>,
    /// For `u32` tensors uploaded from the host: `Element::bound` of their data.
    pub(crate) bound: Option<u64>,
    _t: PhantomData<T>,
}

impl<T: Element> Clone for GpuTensor<T> {
    fn clone(&self) -> Self {
        GpuTensor {
            gpu: self.gpu.clone(),
            buffer: self.buffer.clone(),
            shape: self.shape.clone(),
            external: self.external,
            origin: self.origin,
            bound: self.bound,
            _t: PhantomData,
        }
    }
}

impl<T: Element> Drop for GpuTensor<T> {
    /// The last handle to one of convpool's buffers gives it back to its `Gpu`'s pool (an
    /// application's buffer is left to the application).
    fn drop(&mut self) {
        if !self.external && Arc::strong_count(&self.buffer) == 1 {
            let mut pool = self
                .gpu
                .inner
                .pool
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pool.put((*self.buffer).clone());
        }
    }
}

impl<T: Element> std::fmt::Debug for GpuTensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuTensor<{}>{:?} on Gpu #{}",
            T::NAME,
            self.shape,
            self.gpu.inner.id
        )
    }
}

impl<T: Element> GpuTensor<T> {
    pub(crate) fn from_parts(gpu: &Gpu, buffer: wgpu::Buffer, shape: Vec<usize>) -> Self {
        GpuTensor {
            gpu: gpu.clone(),
            buffer: Arc::new(buffer),
            shape,
            external: false,
            origin: None,
            bound: None,
            _t: PhantomData,
        }
    }

    /// Wraps `buffer`, a buffer the application made on `gpu`'s device, as a tensor of
    /// `shape` without copying: its first `len() · 4` bytes are the elements, row-major. The
    /// buffer needs `BufferUsages::STORAGE`; `COPY_SRC` as well for [`download`] and for ops
    /// on tensors over one storage binding (those run in chunks copied out of it; without it
    /// such an op is an `Err` before anything is recorded). It must be a buffer of `gpu`'s
    /// device: wrapping binds it once, inside an error scope, to check (a few microseconds;
    /// nothing is recorded or submitted).
    ///
    /// The buffer stays the application's: convpool never recycles it, and keeps no packed
    /// copy of it, so the application may write new contents between calls. Destroy it only
    /// after [`Gpu::flush`] has submitted the ops recorded on it: wgpu fails a submission that
    /// uses a destroyed buffer whole, with every op in it. Calls made after it was destroyed
    /// are an `Err` and leave other ops alone. Ordering is the
    /// queue's: convpool's ops reach the queue at [`Gpu::flush`], so flush before submitting
    /// a write that must come after the ops that read the buffer.
    ///
    /// `Err` if the shape's bytes exceed the buffer, the buffer's size is not a multiple of 4,
    /// it lacks `STORAGE`, or it belongs to another device (or was destroyed).
    ///
    /// [`download`]: GpuTensor::download
    pub fn from_buffer(
        gpu: &Gpu,
        buffer: wgpu::Buffer,
        shape: impl Into<Vec<usize>>,
    ) -> Result<GpuTensor<T>> {
        let op = "GpuTensor::from_buffer";
        let shape = shape.into();
        let len = numel(op, &shape)?;
        let need = (len as u128 * std::mem::size_of::<T>() as u128).max(4);
        let size = buffer.size();
        if need > size as u128 {
            return Err(Error::invalid(
                op,
                format!(
                    "shape {shape:?} of {} needs {need} bytes, the buffer holds {size}",
                    T::NAME
                ),
            ));
        }
        if !size.is_multiple_of(4) {
            return Err(Error::invalid(
                op,
                format!("the buffer's size {size} is not a multiple of 4 bytes"),
            ));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::invalid(
                op,
                format!(
                    "the buffer's usage {:?} lacks STORAGE, which every op binds",
                    buffer.usage()
                ),
            ));
        }
        gpu.check_buffer_device(op, &buffer)?;
        let mut t = GpuTensor::from_parts(gpu, buffer, shape);
        t.external = true;
        Ok(t)
    }

    /// The same elements with another shape of the same element count, sharing the buffer:
    /// no copy, nothing recorded. `Err` if the counts differ. A flatten before a dense layer
    /// (a 1×1 convolution over `[N, C·H·W, 1, 1]`) is `y.reshape([n, c * h * w, 1, 1])`.
    pub fn reshape(&self, shape: impl Into<Vec<usize>>) -> Result<GpuTensor<T>> {
        let op = "GpuTensor::reshape";
        let shape = shape.into();
        let len = numel(op, &shape)?;
        if len != self.len() {
            return Err(Error::invalid(
                op,
                format!(
                    "shape {shape:?} has {len} elements, the tensor {:?} has {}",
                    self.shape,
                    self.len()
                ),
            ));
        }
        let mut t = self.clone();
        if t.shape != shape {
            // Pooling indices know the window geometry of their shape only.
            t.origin = None;
        }
        t.shape = shape;
        Ok(t)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `Gpu` this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The underlying buffer (at least 4 bytes; the first `len() · 4` are the elements), for
    /// the application's own passes. convpool's writes to it are complete, as seen from the
    /// host, after [`Gpu::synchronize`]; for work the application submits on the same queue,
    /// [`Gpu::flush`] is enough (the queue runs submissions in order).
    ///
    /// Read it freely. Do not write into a buffer convpool made (from `upload` or an op): ops
    /// take such a tensor to be unchanged once made (a convolution may keep a packed copy of
    /// its weights for later calls with the same weight tensor), and its buffer returns to
    /// convpool's pool when the last handle drops. To feed data of your own passes into
    /// convpool, wrap your buffer with [`GpuTensor::from_buffer`].
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The buffer's shared handle: its address names this tensor (and its clones) while any
    /// of them lives.
    pub(crate) fn shared_buffer(&self) -> &Arc<wgpu::Buffer> {
        &self.buffer
    }

    /// Copies the tensor back to the host, waiting for every op that produced it.
    pub fn download(&self) -> Result<Tensor<T>> {
        let op = "download";
        let len = self.len();
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Tensor::new(self.shape.clone(), Vec::new());
        }
        if !self.buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::invalid(
                op,
                format!(
                    "the buffer's usage {:?} lacks COPY_SRC, which a download copies from",
                    self.buffer.usage()
                ),
            ));
        }
        let gpu = &self.gpu;
        if self.external {
            // The application may have destroyed it since it was wrapped: a copy from a
            // destroyed buffer fails the whole submission, not just this download.
            gpu.check_buffer_device(op, &self.buffer)?;
        }
        let d = &gpu.inner.device;
        let staging = gpu.scoped(op, || {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("convpool download"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        // The copy follows every op recorded so far, in the same submission.
        gpu.record_copies(op, &[BufferCopy::new(&self.buffer, 0, &staging, 0, bytes)])?;
        gpu.flush()?;
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.synchronize()?;
        let mapped = pollster::block_on(rx.receive()).ok_or_else(|| Error::Gpu {
            op,
            msg: "the map callback never ran".into(),
        })?;
        mapped.map_err(|e| Error::Gpu {
            op,
            msg: e.to_string(),
        })?;
        gpu.check_lost(op)?;
        let data = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu {
                    op,
                    msg: e.to_string(),
                })?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        Tensor::new(self.shape.clone(), data)
    }
}

impl GpuTensor<u32> {
    /// True when every index is known to be below `plane` without reading it: the tensor
    /// comes from this library's pooling over planes of at most `plane` positions, or from an
    /// upload whose largest value was below it.
    pub(crate) fn indices_known_within(&self, plane: usize) -> bool {
        match (self.origin, self.bound) {
            (Some(g), _) => g.input[0] * g.input[1] <= plane,
            (None, Some(bound)) => bound <= plane as u64,
            _ => false,
        }
    }
}
