//! The worked example of the classic description of convolution, computed on the default GPU
//! adapter and on the CPU reference side by side, then pooled and unpooled.
//!
//! `cargo run --release --example quickstart`

use convpool::{cpu, Conv2d, ConvTranspose2d, Gpu, Padding, Pool2d, Tensor};

fn show(title: &str, t: &Tensor) {
    let [_, _, h, w] = <[usize; 4]>::try_from(t.shape()).expect("rank 4");
    println!("{title} {:?}", t.shape());
    for row in t.data().chunks(w).take(h) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:6.2}")).collect();
        println!("    {}", cells.join(" "));
    }
}

fn main() -> convpool::Result<()> {
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
    let (gx, gk) = (gpu.upload(&x)?, gpu.upload(&k)?);
    show("input", &x);
    show("kernel", &k);

    for (name, spec) in [
        ("conv2d valid, stride 1", Conv2d::default()),
        (
            "conv2d valid, stride 2",
            Conv2d {
                stride: [2, 2],
                ..Default::default()
            },
        ),
        (
            "conv2d same",
            Conv2d {
                padding: Padding::Same,
                ..Default::default()
            },
        ),
    ] {
        let on_gpu = gpu.conv2d(&gx, &gk, None, &spec)?.download()?;
        let on_cpu = cpu::conv2d(&x, &k, None, &spec)?;
        show(&format!("{name} (GPU)"), &on_gpu);
        show(&format!("{name} (CPU)"), &on_cpu);
    }

    let y = cpu::conv2d(&x, &k, None, &Conv2d::default())?;
    let up = gpu.conv_transpose2d(&gpu.upload(&y)?, &gk, None, &ConvTranspose2d::default())?;
    show("conv_transpose2d of the 3×3 map (GPU)", &up.download()?);

    let p = Pool2d::new([2, 2]);
    let x4 = Tensor::new(
        [1, 1, 4, 4],
        (0..16).map(|v| ((v * 7) % 11) as f32).collect(),
    )?;
    let g4 = gpu.upload(&x4)?;
    show("4×4 input", &x4);
    let (m, idx) = gpu.max_pool2d(&g4, &p)?;
    show("max_pool2d 2×2 (GPU)", &m.download()?);
    println!("argmax indices {:?}", idx.download()?.data());
    show(
        "max_unpool2d back to 4×4 (GPU)",
        &gpu.max_unpool2d(&m, &idx, [4, 4])?.download()?,
    );
    let a = gpu.avg_pool2d(&g4, &p)?;
    show("avg_pool2d 2×2 (GPU)", &a.download()?);
    show(
        "avg_unpool2d back to 4×4 (GPU)",
        &gpu.avg_unpool2d(&a, &p, [4, 4])?.download()?,
    );
    let (s, sidx) = gpu.stochastic_pool2d(&g4, &p, 42)?;
    show("stochastic_pool2d, seed 42 (GPU)", &s.download()?);
    println!("sampled indices {:?}", sidx.download()?.data());
    Ok(())
}
