//! Recording: ops record their dispatches into one pending command encoder (and a compute
//! pass left open in it), submitted by `flush`; every recording runs inside error scopes.

use std::sync::atomic::Ordering;

use wgpu::util::DeviceExt;

use super::kernels::{self, Kernel, WORKGROUP};
use super::Gpu;
use crate::error::{Error, Result};

/// The command encoder that ops record into, the compute pass left open in it for the next
/// op's dispatches, and how many ops it holds.
#[derive(Default)]
pub(super) struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Consecutive ops' dispatches share one compute pass, since a pass has a fixed cost of its
    /// own on some drivers (docs/DESIGN.md has lavapipe's). wgpu orders the dispatches within it by their resource uses, as it does across passes.
    /// Ended before anything else is recorded in the encoder and before it is finished.
    pass: Option<wgpu::ComputePass<'static>>,
    ops: usize,
}

impl Pending {
    /// The encoder, with the open pass (if any) ended.
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("convpool"),
            })
        })
    }

    /// The open compute pass, begun if none is.
    fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(device)
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("convpool"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("just set")
    }

    /// The finished encoder, if anything was recorded.
    fn finish(&mut self) -> Option<wgpu::CommandBuffer> {
        self.pass = None;
        self.ops = 0;
        self.encoder.take().map(wgpu::CommandEncoder::finish)
    }
}

/// Ops recorded before the pending encoder is submitted even if nobody waits: keeps the device
/// busy during long chains and bounds what an unsubmitted encoder holds on to.
const FLUSH_EVERY: usize = 32;

/// One dispatch of a launch: a kernel, its params (a `#[repr(C)]` Pod struct as bytes), its
/// storage buffers in binding order, and how many workgroups it needs.
pub(crate) struct Pass<'a> {
    pub kernel: Kernel,
    /// The window size compiled into the pipeline (see `PipelineCache::get`); `[0, 0]`: none.
    pub window: [u32; 2],
    pub params: Vec<u8>,
    pub buffers: Vec<&'a wgpu::Buffer>,
    pub workgroups: u64,
    /// Where the kernel's `Binding::Uniform` window starts in its buffer.
    pub uniform_offset: u64,
    /// The kernel's `Binding::Texture` or `Binding::StorageTexture`.
    pub texture: Option<&'a wgpu::TextureView>,
    /// The activation kind compiled into the pipeline: `kernels::compiled_act` of the `act`
    /// of the pass's params where its kernel applies it, else [`kernels::DYNAMIC_ACT`] (see
    /// `PipelineCache::get`).
    pub act: u32,
}

impl<'a> Pass<'a> {
    /// A pass of `threads` invocations, one per element (workgroups of [`WORKGROUP`]).
    pub fn new<P: bytemuck::Pod>(
        kernel: Kernel,
        params: &P,
        buffers: Vec<&'a wgpu::Buffer>,
        threads: usize,
    ) -> Self {
        let groups = (threads as u64).div_ceil(WORKGROUP as u64);
        Self::tiled(kernel, params, buffers, groups)
    }

    /// A pass of `workgroups` workgroups, for kernels that work tile by tile.
    pub fn tiled<P: bytemuck::Pod>(
        kernel: Kernel,
        params: &P,
        buffers: Vec<&'a wgpu::Buffer>,
        workgroups: u64,
    ) -> Self {
        Pass {
            kernel,
            window: [0, 0],
            params: bytemuck::bytes_of(params).to_vec(),
            buffers,
            workgroups,
            uniform_offset: 0,
            texture: None,
            act: kernels::DYNAMIC_ACT,
        }
    }
}

/// One buffer-to-buffer copy: `size` bytes from `src` at `src_offset` to `dst` at `dst_offset`.
#[derive(Clone, Copy)]
pub(crate) struct BufferCopy<'a> {
    pub src: &'a wgpu::Buffer,
    pub src_offset: u64,
    pub dst: &'a wgpu::Buffer,
    pub dst_offset: u64,
    pub size: u64,
}

impl<'a> BufferCopy<'a> {
    pub fn new(
        src: &'a wgpu::Buffer,
        src_offset: u64,
        dst: &'a wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) -> Self {
        BufferCopy {
            src,
            src_offset,
            dst,
            dst_offset,
            size,
        }
    }

    /// `Err` naming `op` unless wgpu will accept the copy: usages, 4-byte alignment, ranges.
    /// wgpu validates a copy only when the encoder holding it is finished, and a refused copy
    /// invalidates that whole encoder, every op recorded in it with it: so every copy is
    /// checked here, before it is recorded.
    fn check(&self, op: &'static str) -> Result<()> {
        use wgpu::BufferUsages as U;
        let lacks = |b: &wgpu::Buffer, u: U, what: &str| {
            Error::invalid(
                op,
                format!(
                    "a buffer with usage {:?} lacks {u:?}, which a copy {what} it needs \
                     (wrap application buffers with COPY_SRC to download them or to run ops \
                     over them in chunks)",
                    b.usage()
                ),
            )
        };
        if !self.src.usage().contains(U::COPY_SRC) {
            return Err(lacks(self.src, U::COPY_SRC, "from"));
        }
        if !self.dst.usage().contains(U::COPY_DST) {
            return Err(lacks(self.dst, U::COPY_DST, "into"));
        }
        let aligned = (self.src_offset | self.dst_offset | self.size).is_multiple_of(4);
        let within = |offset: u64, b: &wgpu::Buffer| {
            offset
                .checked_add(self.size)
                .is_some_and(|end| end <= b.size())
        };
        if !aligned || !within(self.src_offset, self.src) || !within(self.dst_offset, self.dst) {
            return Err(Error::Gpu {
                op,
                msg: format!(
                    "internal: a copy of {} bytes from {} of {} into {} of {} is out of range \
                     or unaligned",
                    self.size,
                    self.src_offset,
                    self.src.size(),
                    self.dst_offset,
                    self.dst.size()
                ),
            });
        }
        Ok(())
    }
}

impl Gpu {
    /// Records `copies` into the pending encoder after checking every one of them (see
    /// [`BufferCopy::check`]): a copy wgpu would refuse is an `Err` and nothing is recorded.
    pub(crate) fn record_copies(&self, op: &'static str, copies: &[BufferCopy<'_>]) -> Result<()> {
        for c in copies {
            c.check(op)?;
        }
        self.record(op, |encoder| {
            for c in copies {
                encoder.copy_buffer_to_buffer(c.src, c.src_offset, c.dst, c.dst_offset, c.size);
            }
        })
    }
}

impl Gpu {
    /// Records into the pending command encoder (inside error scopes naming `op`); submits it
    /// once `FLUSH_EVERY` ops are pending. Recording never waits for the device.
    pub(crate) fn record(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        self.record_with(op, |p, d| f(p.encoder(d)))
    }

    /// Records dispatches into the pending encoder's shared compute pass (see [`Pending`]),
    /// like [`Gpu::record`]. A validation error of a dispatch surfaces when the pass ends, in
    /// the call that ends it: such errors are internal ones (ops check their inputs first).
    pub(crate) fn record_dispatches(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut wgpu::ComputePass<'static>),
    ) -> Result<()> {
        self.record_with(op, |p, d| f(p.pass(d)))
    }

    pub(super) fn record_with(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Pending, &wgpu::Device),
    ) -> Result<()> {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.scoped(op, || {
            f(&mut pending, &self.inner.device);
            pending.ops += 1;
            if pending.ops >= FLUSH_EVERY {
                if let Some(commands) = pending.finish() {
                    self.inner.queue.submit([commands]);
                }
            }
        })
    }

    /// Submits everything recorded so far, without waiting for it.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.scoped("flush", || {
            if let Some(commands) = pending.finish() {
                self.inner.queue.submit([commands]);
            }
        })
    }

    /// Submits everything recorded so far and waits until the device has finished it.
    pub fn synchronize(&self) -> Result<()> {
        self.flush()?;
        self.check_lost("synchronize")?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu {
                op: "synchronize",
                msg: e.to_string(),
            })
    }

    pub(super) fn check_lost(&self, op: &'static str) -> Result<()> {
        match &*self.inner.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(msg) => Err(Error::DeviceLost {
                op,
                msg: msg.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes: any wgpu error it
    /// raises becomes an `Err` naming `op` instead of a panic.
    pub(super) fn scoped<R>(&self, op: &'static str, f: impl FnOnce() -> R) -> Result<R> {
        self.check_lost(op)?;
        let d = &self.inner.device;
        let internal = d.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = d.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let errors = [
            pollster::block_on(validation.pop()),
            pollster::block_on(oom.pop()),
            pollster::block_on(internal.pop()),
        ];
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(Error::Gpu {
                op,
                msg: e.to_string(),
            });
        }
        self.check_lost(op)?;
        Ok(r)
    }

    /// The dispatch grid for `groups` workgroups, folded into two or three dimensions when one
    /// would exceed the per-dimension limit (the shaders rebuild the linear index).
    pub(super) fn grid(&self, op: &'static str, groups: u64) -> Result<(u32, u32, u32)> {
        let max = self.inner.fold_limit.load(Ordering::Relaxed) as u64;
        let x = groups.min(max);
        let rest = groups.div_ceil(x.max(1));
        let y = rest.min(max);
        let z = rest.div_ceil(y.max(1));
        if z > max {
            return Err(Error::invalid(
                op,
                format!("{groups} workgroups are more than {max}³"),
            ));
        }
        Ok((x as u32, y as u32, z as u32))
    }

    /// Records and submits the passes, in order, in one compute pass. `clear` buffers are
    /// zeroed first. Returns without waiting for the device.
    pub(crate) fn launch(
        &self,
        op: &'static str,
        clear: &[&wgpu::Buffer],
        passes: &[Pass<'_>],
    ) -> Result<()> {
        let align = self.inner.limits.min_uniform_buffer_offset_alignment as usize;
        let mut uniforms = Vec::new();
        let mut offsets = Vec::new();
        let mut grids = Vec::new();
        for p in passes {
            // The shaders index invocations with u32.
            if p.workgroups * WORKGROUP as u64 > u32::MAX as u64 {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{} workgroups of {WORKGROUP} exceed 2^32 invocations",
                        p.workgroups
                    ),
                ));
            }
            let (mut buffers, mut textures) = (0, 0);
            for b in p.kernel.bindings() {
                match b {
                    kernels::Binding::Texture(_) | kernels::Binding::StorageTexture(_) => {
                        textures += 1
                    }
                    _ => buffers += 1,
                }
            }
            if buffers != p.buffers.len() || (textures > 0) != p.texture.is_some() {
                return Err(Error::Gpu {
                    op,
                    msg: format!("internal: {:?} given the wrong resources", p.kernel),
                });
            }
            grids.push(self.grid(op, p.workgroups)?);
            uniforms.resize(uniforms.len().next_multiple_of(align), 0);
            offsets.push(uniforms.len() as u64);
            uniforms.extend_from_slice(&p.params);
        }
        let d = &self.inner.device;
        let params = || {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("convpool params"),
                contents: if uniforms.is_empty() {
                    &[0; 16]
                } else {
                    &uniforms
                },
                usage: wgpu::BufferUsages::UNIFORM,
            })
        };
        // Pipelines and bind groups first, in error scopes of their own: a resource the
        // device refuses (another device's buffer, say) is an `Err` before anything is
        // recorded, so the pending encoder, which holds earlier ops' work, stays valid.
        let (_params, bound) = self.scoped(op, || {
            let params = params();
            let bound = self.bind(op, passes, &params, &offsets);
            (params, bound)
        })?;
        let timer = self.inner.profiler.timer(d);
        if clear.is_empty() && timer.is_none() {
            // Into the pass left open by the previous op (see `Pending`).
            return self.record_dispatches(op, |cpass| dispatch(cpass, &bound, &grids));
        }
        self.record(op, |encoder| {
            for b in clear {
                encoder.clear_buffer(b, 0, None);
            }
            {
                let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(op),
                    timestamp_writes: timer.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
                        query_set: &t.query,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }),
                });
                dispatch(&mut cpass, &bound, &grids);
            }
            if let Some(t) = timer {
                self.inner.profiler.finish(encoder, t);
            }
        })
    }

    /// The pipeline and bind group of each pass (params at `offsets` in `params`, resources
    /// counted by `launch`); `None` for a pass of no workgroups.
    fn bind(
        &self,
        op: &'static str,
        passes: &[Pass<'_>],
        params: &wgpu::Buffer,
        offsets: &[u64],
    ) -> Vec<Option<(std::sync::Arc<kernels::Pipeline>, wgpu::BindGroup)>> {
        let d = &self.inner.device;
        passes
            .iter()
            .zip(offsets)
            .map(|(p, &offset)| {
                if p.workgroups == 0 {
                    return None;
                }
                let pipe = self.inner.cache.get(d, p.kernel, p.window, p.act);
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: params,
                        offset,
                        size: std::num::NonZeroU64::new(p.params.len() as u64),
                    }),
                }];
                let mut buffers = p.buffers.iter();
                for slot in p.kernel.bindings() {
                    use kernels::Binding::*;
                    // Counted against the bindings in `launch`.
                    let resource = match (slot, p.texture) {
                        (Texture(_) | StorageTexture(_), Some(view)) => {
                            wgpu::BindingResource::TextureView(view)
                        }
                        (Uniform(_), _) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: buffers.next().expect("checked"),
                            offset: p.uniform_offset,
                            size: std::num::NonZeroU64::new(kernels::UNIFORM_WINDOW),
                        }),
                        _ => buffers.next().expect("checked").as_entire_binding(),
                    };
                    entries.push(wgpu::BindGroupEntry {
                        binding: slot.index(),
                        resource,
                    });
                }
                let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(op),
                    layout: &pipe.layout,
                    entries: &entries,
                });
                Some((pipe, bind))
            })
            .collect()
    }
}

/// Records the bound passes into `cpass`, `grids` workgroups each.
fn dispatch(
    cpass: &mut wgpu::ComputePass<'_>,
    bound: &[Option<(std::sync::Arc<kernels::Pipeline>, wgpu::BindGroup)>],
    grids: &[(u32, u32, u32)],
) {
    for (b, &(x, y, z)) in bound.iter().zip(grids) {
        if let Some((pipe, bind)) = b {
            cpass.set_pipeline(&pipe.pipeline);
            cpass.set_bind_group(0, bind, &[]);
            cpass.dispatch_workgroups(x, y, z);
        }
    }
}
