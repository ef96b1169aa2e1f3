//! Criterion benches of every op family on the standard workloads (W1–W8 of BENCHMARKS.md,
//! defined in `shared/workloads.rs` with the report), for per-change tracking: `cargo bench`
//! (or `cargo bench -- gpu/W1`). GPU times stop after the device has finished
//! (`synchronize`); bench names say which backend ran. The one-shot report with tables and a
//! plot is `cargo run --release --example bench_report`.

use std::time::{Duration, Instant};

use convpool::{Gpu, GpuTensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod shared {
    pub mod workloads;
}
use shared::workloads::{cost, inputs, run_cpu, run_gpu, workloads};

fn benches(c: &mut Criterion) {
    let gpu = Gpu::new()
        .map_err(|e| eprintln!("no GPU adapter ({e}); CPU benches only"))
        .ok();
    let mut g = c.benchmark_group("convpool");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for wl in workloads() {
        let (gflop, gb) = cost(&wl.work).unwrap();
        g.throughput(match (gflop, gb) {
            (Some(f), _) => Throughput::Elements((f * 1e9) as u64), // FLOPs
            (_, b) => Throughput::Bytes((b.unwrap_or(0.0) * 1e9) as u64),
        });
        let ins = inputs(&wl.work).unwrap();
        g.bench_function(format!("cpu-fast/{}/{}", wl.id, wl.op), |b| {
            b.iter(|| run_cpu(&wl.work, &ins, true).unwrap())
        });
        let Some(gpu) = &gpu else { continue };
        let gins: Vec<GpuTensor> = ins.iter().map(|t| gpu.upload(t).unwrap()).collect();
        g.bench_function(format!("gpu/{}/{}", wl.id, wl.op), |b| {
            b.iter_custom(|n| {
                gpu.synchronize().unwrap();
                let t = Instant::now();
                for _ in 0..n {
                    run_gpu(gpu, &wl.work, &gins).unwrap();
                }
                gpu.synchronize().unwrap();
                t.elapsed()
            })
        });
    }
    g.finish();
    if let Some(gpu) = &gpu {
        wrap(c, gpu);
    }
}

/// The cost of `GpuTensor::from_buffer`, which binds the buffer once in an error scope to
/// learn whether it belongs to the device, beside an upload of the same 4 bytes.
fn wrap(c: &mut Criterion, gpu: &Gpu) {
    let buffer = gpu
        .device()
        .create_buffer(&convpool::wgpu::BufferDescriptor {
            label: Some("application buffer"),
            size: 1 << 20,
            usage: convpool::wgpu::BufferUsages::STORAGE | convpool::wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
    let one = convpool::Tensor::new([1], vec![1.0f32]).unwrap();
    let mut g = c.benchmark_group("interop");
    g.bench_function("gpu/from_buffer", |b| {
        b.iter(|| GpuTensor::<f32>::from_buffer(gpu, buffer.clone(), [1 << 18]).unwrap())
    });
    g.bench_function("gpu/upload of one element", |b| {
        b.iter(|| gpu.upload(&one).unwrap())
    });
    g.finish();
}

criterion_group!(ops, benches);
criterion_main!(ops);
