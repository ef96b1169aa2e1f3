//! Criterion benches of every op family on the standard workloads (W1–W8 of BENCHMARKS.md),
//! for per-change tracking: `cargo bench` (or `cargo bench -- gpu/W1`). GPU times stop after the
//! device has finished (`synchronize`); bench names say which backend ran. The one-shot report
//! with tables and a plot is `cargo run --release --example bench_report`.

use std::time::{Duration, Instant};

use convpool::{fast, Conv2d, ConvTranspose2d, Gpu, Padding, Pool2d, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn data(shape: [usize; 4]) -> Tensor {
    Tensor::from_fn(shape, |i| ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0).unwrap()
}

fn pad(p: usize) -> Conv2d {
    Conv2d {
        padding: Padding::uniform(p),
        ..Default::default()
    }
}

fn convs() -> Vec<(&'static str, [usize; 4], [usize; 4], Conv2d)> {
    vec![
        ("W1", [1, 64, 56, 56], [64, 64, 3, 3], pad(1)),
        ("W2", [8, 64, 56, 56], [64, 64, 3, 3], pad(1)),
        (
            "W3",
            [1, 3, 224, 224],
            [64, 3, 7, 7],
            Conv2d {
                stride: [2, 2],
                ..pad(3)
            },
        ),
        ("W4", [1, 256, 14, 14], [256, 256, 3, 3], pad(1)),
    ]
}

fn benches(c: &mut Criterion) {
    let gpu = Gpu::new()
        .map_err(|e| eprintln!("no GPU adapter ({e}); CPU benches only"))
        .ok();
    let mut g = c.benchmark_group("convpool");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let time_gpu = |gpu: &Gpu, iters: u64, f: &dyn Fn()| {
        gpu.synchronize().unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        gpu.synchronize().unwrap();
        t.elapsed()
    };
    for (id, xs, ws, spec) in convs() {
        let (x, w) = (data(xs), data(ws));
        let flops = 2
            * spec
                .geometry(&xs, &ws, None)
                .unwrap()
                .output_shape()
                .iter()
                .product::<usize>()
            * ws[1]
            * ws[2]
            * ws[3];
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(format!("cpu-fast/{id}/conv2d"), |b| {
            b.iter(|| fast::conv2d(&x, &w, None, &spec).unwrap())
        });
        if let Some(gpu) = &gpu {
            let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
            g.bench_function(format!("gpu/{id}/conv2d"), |b| {
                b.iter_custom(|n| {
                    time_gpu(gpu, n, &|| drop(gpu.conv2d(&gx, &gw, None, &spec).unwrap()))
                })
            });
        }
    }
    let (x5, w5) = (data([1, 64, 28, 28]), data([64, 32, 4, 4]));
    let t5 = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    g.throughput(Throughput::Elements(2 * 64 * 28 * 28 * 32 * 16));
    g.bench_function("cpu-fast/W5/conv_transpose2d", |b| {
        b.iter(|| fast::conv_transpose2d(&x5, &w5, None, &t5).unwrap())
    });
    let xp = data([8, 64, 112, 112]);
    let (p6, p2) = (
        Pool2d {
            stride: [2, 2],
            padding: [1, 1],
            ..Pool2d::new([3, 3])
        },
        Pool2d::new([2, 2]),
    );
    g.throughput(Throughput::Bytes((xp.len() * 4) as u64));
    g.bench_function("cpu-fast/W6/max_pool2d", |b| {
        b.iter(|| fast::max_pool2d(&xp, &p6).unwrap())
    });
    g.bench_function("cpu-fast/W7/max_pool2d+max_unpool2d", |b| {
        b.iter(|| {
            let (v, i) = fast::max_pool2d(&xp, &p2).unwrap();
            fast::max_unpool2d(&v, &i, [112, 112]).unwrap()
        })
    });
    g.bench_function("cpu-fast/W8/avg_pool2d", |b| {
        b.iter(|| fast::avg_pool2d(&xp, &p2).unwrap())
    });
    if let Some(gpu) = &gpu {
        let (gx5, gw5) = (gpu.upload(&x5).unwrap(), gpu.upload(&w5).unwrap());
        g.throughput(Throughput::Elements(2 * 64 * 28 * 28 * 32 * 16));
        g.bench_function("gpu/W5/conv_transpose2d", |b| {
            b.iter_custom(|n| {
                time_gpu(gpu, n, &|| {
                    drop(gpu.conv_transpose2d(&gx5, &gw5, None, &t5).unwrap())
                })
            })
        });
        let gp = gpu.upload(&xp).unwrap();
        g.throughput(Throughput::Bytes((xp.len() * 4) as u64));
        g.bench_function("gpu/W6/max_pool2d", |b| {
            b.iter_custom(|n| time_gpu(gpu, n, &|| drop(gpu.max_pool2d(&gp, &p6).unwrap())))
        });
        g.bench_function("gpu/W7/max_pool2d+max_unpool2d", |b| {
            b.iter_custom(|n| {
                time_gpu(gpu, n, &|| {
                    let (v, i) = gpu.max_pool2d(&gp, &p2).unwrap();
                    drop(gpu.max_unpool2d(&v, &i, [112, 112]).unwrap());
                })
            })
        });
        g.bench_function("gpu/W8/avg_pool2d", |b| {
            b.iter_custom(|n| time_gpu(gpu, n, &|| drop(gpu.avg_pool2d(&gp, &p2).unwrap())))
        });
    }
    g.finish();
}

criterion_group!(ops, benches);
criterion_main!(ops);
