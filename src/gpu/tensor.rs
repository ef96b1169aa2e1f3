//! `GpuTensor`: a buffer on a `Gpu` with a shape; its download, and the return of its buffer
//! to the pool when the last handle drops.

use std::marker::PhantomData;
use std::sync::Arc;

use super::Gpu;
use crate::error::{Error, Result};
use crate::params::pool::PoolGeometry;
use crate::tensor::{Element, Tensor};

/// A tensor on a `Gpu`: a storage buffer and a shape. Cloning shares the buffer (ops never
/// write into their inputs, so a `GpuTensor` is immutable once made).
pub struct GpuTensor<T: Element = f32> {
    gpu: Gpu,
    buffer: Arc<wgpu::Buffer>,
    shape: Vec<usize>,
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
            origin: self.origin,
            bound: self.bound,
            _t: PhantomData,
        }
    }
}

impl<T: Element> Drop for GpuTensor<T> {
    /// The last handle to a buffer gives it back to its `Gpu`'s pool.
    fn drop(&mut self) {
        if Arc::strong_count(&self.buffer) == 1 {
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
            origin: None,
            bound: None,
            _t: PhantomData,
        }
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

    /// The underlying buffer (at least 4 bytes; the first `len() * 4` are the elements), for
    /// reading in your own passes. Do not write into it: ops take a tensor to be immutable
    /// once made, and a convolution keeps a packed copy of its weights for later calls with
    /// the same weight tensor.
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
        let gpu = &self.gpu;
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
        gpu.record(op, |encoder| {
            encoder.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, bytes)
        })?;
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
