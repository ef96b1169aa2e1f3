//! Device memory: tensor buffers (recycled through a bounded pool), uploads, and the kept
//! im2col tables and input textures of the GEMM kernels.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::kernels;
use super::{Gpu, GpuTensor};
use crate::error::{Error, Result};
use crate::tensor::{numel, Element, Tensor};

/// An rgba32float 2-D array texture and its view.
pub(crate) struct XTexture {
    pub size: wgpu::Extent3d,
    pub _texture: wgpu::Texture,
    pub view: wgpu::TextureView,
}

/// How many input textures `Gpu::x_texture` keeps (the oldest goes first).
const TEXTURES_KEPT: usize = 4;

/// How many im2col tables `Gpu::table` keeps (it starts afresh when full).
const TABLES_KEPT: usize = 64;

/// Buffers of dropped tensors, kept for later outputs of the same size. Bounded in bytes
/// (`POOL_BYTES`) and in count (`POOL_PER_SIZE` per size, `POOL_BUFFERS` in all), since every
/// buffer also costs the driver some memory of its own. Reuse is safe: a new output is written
/// by commands recorded after every use of the old tensor, on the same queue.
#[derive(Default)]
pub(super) struct BufferPool {
    free: std::collections::HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
    count: usize,
}

/// At most this many bytes of idle buffers are kept for reuse.
const POOL_BYTES: u64 = 256 << 20;
/// At most this many idle buffers of one size.
const POOL_PER_SIZE: usize = 16;
/// At most this many idle buffers in all.
const POOL_BUFFERS: usize = 256;

impl BufferPool {
    pub(super) fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&size)?.pop()?;
        self.bytes -= size;
        self.count -= 1;
        Some(b)
    }

    pub(super) fn put(&mut self, b: wgpu::Buffer) {
        let same = self.free.entry(b.size()).or_default();
        if self.bytes + b.size() <= POOL_BYTES
            && same.len() < POOL_PER_SIZE
            && self.count < POOL_BUFFERS
        {
            self.bytes += b.size();
            self.count += 1;
            same.push(b);
        }
    }
}

impl Gpu {
    /// `table` on the device, uploaded once and kept (up to [`TABLES_KEPT`] of them): a chain
    /// of convolutions of one shape then records no upload per call.
    pub(crate) fn table(&self, table: &Tensor<u32>) -> Result<Arc<GpuTensor<u32>>> {
        let mut tables = self.inner.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.get(table.data()) {
            return Ok(t.clone());
        }
        if tables.len() >= TABLES_KEPT {
            tables.clear();
        }
        let t = Arc::new(self.upload(table)?);
        tables.insert(table.data().to_vec(), t.clone());
        Ok(t)
    }

    /// An rgba32float 2-D array texture of `size` to stage a kernel's input in: a kept one of
    /// that size (work on one queue runs in order, so each use sees its own contents), or a
    /// new one. `None` when the device's texture limits do not allow the size.
    pub(crate) fn x_texture(
        &self,
        op: &'static str,
        size: wgpu::Extent3d,
    ) -> Result<Option<Arc<XTexture>>> {
        let l = &self.inner.limits;
        if size.width > l.max_texture_dimension_2d
            || size.height > l.max_texture_dimension_2d
            || size.depth_or_array_layers > l.max_texture_array_layers
        {
            return Ok(None);
        }
        let mut kept = self
            .inner
            .textures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = kept.iter().find(|t| t.size == size) {
            return Ok(Some(t.clone()));
        }
        let texture = self.scoped(op, || {
            self.inner.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("convpool input texture"),
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: kernels::X_TEXTURE_FORMAT,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
                view_formats: &[],
            })
        })?;
        let view = texture.create_view(&wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2Array),
            ..Default::default()
        });
        let t = Arc::new(XTexture {
            size,
            _texture: texture,
            view,
        });
        if kept.len() >= TEXTURES_KEPT {
            kept.remove(0);
        }
        kept.push(t.clone());
        Ok(Some(t))
    }

    /// Copies a host tensor to the device.
    pub fn upload<T: Element>(&self, t: &Tensor<T>) -> Result<GpuTensor<T>> {
        let op = "upload";
        let bytes = self.buffer_bytes::<T>(op, "tensor", t.len())?;
        let mut contents = bytemuck::cast_slice::<T, u8>(t.data()).to_vec();
        contents.resize(bytes as usize, 0);
        let buffer = self.scoped(op, || {
            self.inner
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("convpool tensor"),
                    contents: &contents,
                    usage: tensor_usage(),
                })
        })?;
        let mut out = GpuTensor::from_parts(self, buffer, t.shape().to_vec());
        out.bound = T::bound(t.data());
        Ok(out)
    }

    /// Size in bytes of a storage buffer for `len` elements of `T` (at least 4), or `Err` when it
    /// exceeds what one buffer may hold on this device (ops split tensors larger than one
    /// binding, see chunk.rs).
    pub(super) fn buffer_bytes<T: Element>(
        &self,
        op: &'static str,
        what: &'static str,
        len: usize,
    ) -> Result<u64> {
        // At least one vec4, so that no buffer is too small for a vec4 binding.
        let bytes = (len as u128 * std::mem::size_of::<T>() as u128).max(16);
        let l = &self.inner.limits;
        let limit = l.max_buffer_size;
        if bytes > limit as u128 {
            return Err(Error::TooLarge {
                op,
                what,
                bytes: bytes.min(u64::MAX as u128) as u64,
                limit,
            });
        }
        Ok(bytes as u64)
    }

    /// A device tensor of `shape` for the output of `op`: a recycled buffer of the same size if
    /// one is idle, else a new one. Its contents are unspecified: kernels write every element
    /// or clear it first.
    pub(crate) fn alloc<T: Element>(
        &self,
        op: &'static str,
        shape: &[usize],
    ) -> Result<GpuTensor<T>> {
        let len = numel(op, shape)?;
        let bytes = self.buffer_bytes::<T>(op, "output", len)?;
        let recycled = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(bytes);
        if let Some(buffer) = recycled {
            return Ok(GpuTensor::from_parts(self, buffer, shape.to_vec()));
        }
        let buffer = self.scoped(op, || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(op),
                size: bytes,
                usage: tensor_usage(),
                mapped_at_creation: false,
            })
        })?;
        Ok(GpuTensor::from_parts(self, buffer, shape.to_vec()))
    }
}

impl Gpu {
    /// `Err` naming `op` unless `buffer` belongs to this `Gpu`'s device. wgpu has no query
    /// for a buffer's device, and refuses another device's buffer only where it is used —
    /// for a copy, when the encoder holding it is finished, which discards every op recorded
    /// in it. Binding its first 4 bytes in a bind group of this device, inside an error
    /// scope, asks the same question at once: nothing is recorded or submitted.
    pub(crate) fn check_buffer_device(
        &self,
        op: &'static str,
        buffer: &wgpu::Buffer,
    ) -> Result<()> {
        let d = &self.inner.device;
        let layout = self.inner.probe.get_or_init(|| {
            d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("convpool buffer probe"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            })
        });
        let probe = self.scoped(op, || {
            d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("convpool buffer probe"),
                layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: 0,
                        size: std::num::NonZeroU64::new(4),
                    }),
                }],
            })
        });
        match probe {
            Ok(_) => Ok(()),
            Err(Error::Gpu { msg, .. }) => Err(Error::invalid(
                op,
                format!(
                    "the buffer cannot be bound on this Gpu's device (#{}): it belongs to \
                     another wgpu device, or was destroyed ({msg})",
                    self.inner.id
                ),
            )),
            Err(e) => Err(e),
        }
    }
}

/// Every device buffer's usage: storage, copies, and uniform windows (the row-segment GEMM's
/// packed weights; one kind for all keeps the recycling pool simple).
fn tensor_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE
        | wgpu::BufferUsages::UNIFORM
        | wgpu::BufferUsages::COPY_SRC
        | wgpu::BufferUsages::COPY_DST
}
