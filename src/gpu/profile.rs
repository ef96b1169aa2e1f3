//! Kernel timing from timestamp queries, for benchmarks: `Gpu::profile` brackets every compute
//! pass launched inside it with two timestamps and sums their differences.

use std::sync::Mutex;

use super::Gpu;
use crate::error::{Error, Result};

/// The timestamp pair of one compute pass: the query set and the buffers it resolves into.
pub(crate) struct PassTimer {
    pub query: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
}

/// The timers of the passes recorded while a `profile` call is active.
#[derive(Default)]
pub(crate) struct Profiler {
    active: Mutex<Option<Vec<wgpu::Buffer>>>,
}

impl Profiler {
    /// Whether a `profile` call is running.
    pub(crate) fn active(&self) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// A timer for the next pass, when profiling is active and the device has timestamps.
    pub(crate) fn timer(&self, device: &wgpu::Device) -> Option<PassTimer> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.is_none() || !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let buffer = |usage, label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(PassTimer {
            query: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("convpool timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: buffer(
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                "timer resolve",
            ),
            read: buffer(
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                "timer read",
            ),
        })
    }

    /// Records the resolve of `t` after its pass and keeps it for `profile` to read.
    pub(crate) fn finish(&self, encoder: &mut wgpu::CommandEncoder, t: PassTimer) {
        encoder.resolve_query_set(&t.query, 0..2, &t.resolve, 0);
        encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.read, 0, 16);
        if let Some(v) = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            v.push(t.read);
        }
    }
}

impl Gpu {
    /// Runs `f` and returns its result with the GPU time, in milliseconds, of every compute pass
    /// it launched (from timestamp queries), or `None` where the adapter has no timestamps.
    /// Waits for the device. Meant for benchmarks: run one `profile` at a time per `Gpu`.
    pub fn profile<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, Option<f64>)> {
        let op = "profile";
        let p = &self.inner.profiler;
        let timed = self
            .inner
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY);
        *p.active.lock().unwrap_or_else(|e| e.into_inner()) = timed.then(Vec::new);
        let r = f();
        let reads = p.active.lock().unwrap_or_else(|e| e.into_inner()).take();
        let r = r?;
        let Some(reads) = reads else {
            return Ok((r, None));
        };
        // The timer copies must be submitted before their buffers are mapped.
        self.flush()?;
        for b in &reads {
            b.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
        self.synchronize()?;
        let period = self.inner.queue.get_timestamp_period() as f64;
        let mut ns = 0.0;
        for b in &reads {
            let view = b.slice(..).get_mapped_range().map_err(|e| Error::Gpu {
                op,
                msg: e.to_string(),
            })?;
            let t: &[u64] = bytemuck::cast_slice(&view);
            ns += t[1].saturating_sub(t[0]) as f64 * period;
        }
        Ok((r, Some(ns / 1e6)))
    }
}
