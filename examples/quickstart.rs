//! convpool in one screen: the adapter, the worked example of convolution computed on the GPU
//! and on the CPU reference, and a short pipeline chained on the GPU, timed beside the fast
//! CPU path.
//!
//! `cargo run --release --example quickstart`

use std::time::Instant;

use convpool::{cpu, fast, Activation, Conv2d, Gpu, Padding, Pool2d, Tensor};

/// The largest elementwise difference of two tensors of one shape.
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The median wall time of `runs` calls of `f`, in milliseconds, after one warm-up call.
fn median_ms<T>(
    runs: usize,
    mut f: impl FnMut() -> convpool::Result<T>,
) -> convpool::Result<(f64, T)> {
    let mut out = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        out = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[runs / 2], out))
}

fn main() -> convpool::Result<()> {
    // Mesa's Vulkan drivers complain on stderr when this is unset (headless machines, CI).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let gpu = match Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("quickstart: {e}");
            eprintln!("Any Vulkan, Metal or DX12 GPU works; without one, install the software driver lavapipe:");
            eprintln!("    sudo apt-get install -y mesa-vulkan-drivers");
            std::process::exit(1);
        }
    };
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    );

    // The classic worked example: a 5×5 binary image, a 3×3 kernel, valid padding.
    #[rustfmt::skip]
    let image = vec![
        1., 1., 1., 0., 0.,
        0., 1., 1., 1., 0.,
        0., 0., 1., 1., 1.,
        0., 0., 1., 1., 0.,
        0., 1., 1., 0., 0.,
    ];
    let x = Tensor::new([1, 1, 5, 5], image)?;
    let k = Tensor::new([1, 1, 3, 3], vec![1., 0., 1., 0., 1., 0., 1., 0., 1.])?;
    let spec = Conv2d::default();
    let on_gpu = gpu
        .conv2d(&gpu.upload(&x)?, &gpu.upload(&k)?, None, &spec)?
        .download()?;
    let on_cpu = cpu::conv2d(&x, &k, None, &spec)?;
    println!(
        "\nconv2d of the 5×5 image with the 3×3 kernel [1 0 1; 0 1 0; 1 0 1], valid, stride 1:"
    );
    for row in on_gpu.data().chunks(3) {
        println!(
            "    {}",
            row.iter()
                .map(|v| format!("{v:2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "GPU and CPU reference agree: largest difference {}",
        max_diff(&on_gpu, &on_cpu)
    );

    // A small encoder–decoder chained on the GPU (nothing waits until the download), and the
    // same on the fast CPU path.
    let input = Tensor::from_fn([4, 8, 64, 64], |i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)?;
    let weights = |shape: [usize; 4], seed: usize| {
        let fan_in = (shape[1] * 9) as f32;
        Tensor::from_fn(shape, |i| {
            (((i + seed) * 7907) % 997) as f32 / 997.0 / fan_in.sqrt() - 0.5 / fan_in.sqrt()
        })
    };
    let (w1, w2, w3) = (
        weights([32, 8, 3, 3], 1)?,
        weights([32, 32, 3, 3], 2)?,
        weights([8, 32, 3, 3], 3)?,
    );
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let pool = Pool2d::new([2, 2]);
    let relu = Activation::Relu;
    let (gx, g1, g2, g3) = (
        gpu.upload(&input)?,
        gpu.upload(&w1)?,
        gpu.upload(&w2)?,
        gpu.upload(&w3)?,
    );
    let (gpu_ms, on_gpu) = median_ms(5, || {
        let y = gpu.conv2d_act(&gx, &g1, None, &same, relu)?;
        let (p, idx) = gpu.max_pool2d(&y, &pool)?;
        let z = gpu.conv2d_act(&p, &g2, None, &same, relu)?;
        let u = gpu.max_unpool2d(&z, &idx, [64, 64])?;
        gpu.conv2d(&u, &g3, None, &same)?.download()
    })?;
    let (fast_ms, on_cpu) = median_ms(5, || {
        let y = fast::conv2d_act(&input, &w1, None, &same, relu)?;
        let (p, idx) = fast::max_pool2d(&y, &pool)?;
        let z = fast::conv2d_act(&p, &w2, None, &same, relu)?;
        let u = fast::max_unpool2d(&z, &idx, [64, 64])?;
        fast::conv2d(&u, &w3, None, &same)
    })?;
    println!("\nconv2d+ReLU → max_pool2d → conv2d+ReLU → max_unpool2d → conv2d on [4, 8, 64, 64]:");
    println!("    GPU (chained, one download) {gpu_ms:7.2} ms");
    println!("    fast CPU path               {fast_ms:7.2} ms");
    println!(
        "GPU and fast CPU path agree: largest difference {:.1e}",
        max_diff(&on_gpu, &on_cpu)
    );
    if info.device_type == convpool::wgpu::DeviceType::Cpu {
        println!(
            "\nThis adapter is a CPU ({}): here `convpool::fast` is the faster choice.",
            info.name
        );
    }
    Ok(())
}
