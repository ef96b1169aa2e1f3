//! convpool inside a program that has its own wgpu device: `Gpu::from_wgpu` on a device made
//! with WebGPU's default limits and no optional features, `GpuTensor::from_buffer` around the
//! application's buffers (with the application's own kernel in a chain), `reshape`, and
//! picking the adapter in code with `Gpu::builder`.

mod common;

use common::{assert_close, assert_exact, gpu, sum_atol, Rng};
use convpool::wgpu::{self, util::DeviceExt};
use convpool::{
    cpu, Activation, Conv2d, ConvAlgo, ConvTranspose2d, Error, Gpu, GpuTensor, KernelFamily,
    Padding, Pool2d, Tensor,
};

/// The application's side: an adapter, and a device it made itself with WebGPU's default
/// limits and no optional features. `None` (the test skips) where `common::gpu` skips.
fn app_device() -> Option<(wgpu::Adapter, wgpu::Device, wgpu::Queue)> {
    let shared = gpu()?;
    let adapter = shared.adapter().clone();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("application"),
        required_features: wgpu::Features::empty(),
        required_limits: wgpu::Limits::default(),
        ..Default::default()
    }))
    .expect("the adapter gives a device with WebGPU's default limits");
    Some((adapter, device, queue))
}

/// A buffer the application made and filled.
fn app_buffer(device: &wgpu::Device, data: &[f32], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("application data"),
        contents: bytemuck::cast_slice(data),
        usage,
    })
}

const APP_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[test]
fn every_op_family_runs_on_a_device_with_webgpu_default_limits_and_no_features() {
    let Some((adapter, device, queue)) = app_device() else {
        return;
    };
    let gpu = Gpu::from_wgpu(adapter, device, queue).unwrap();
    assert_eq!(gpu.limits(), &wgpu::Limits::default());
    assert!(!gpu.device().features().contains(wgpu::Features::SUBGROUP));
    let (_, kernel_ms) = gpu
        .profile(|| gpu.upload(&Tensor::new([4], vec![1.0; 4])?))
        .unwrap();
    assert_eq!(kernel_ms, None, "no timestamp queries on this device");
    let mut rng = Rng::new(15);
    let atol = sum_atol(200);

    // Convolutions, forward and backward, through every kernel choice.
    let x = rng.tensor([2, 6, 9, 11]);
    let w = rng.tensor([8, 3, 3, 2]);
    let b = rng.tensor([8]);
    let spec = Conv2d {
        stride: [2, 1],
        padding: Padding::Same,
        dilation: [1, 2],
        groups: 2,
    };
    let want = cpu::conv2d(&x, &w, Some(&b), &spec).unwrap();
    let gy = rng.tensor(want.shape().to_vec());
    let (gx, gw, gb) = (
        gpu.upload(&x).unwrap(),
        gpu.upload(&w).unwrap(),
        gpu.upload(&b).unwrap(),
    );
    let ggy = gpu.upload(&gy).unwrap();
    for &algo in ConvAlgo::ALL {
        let what = format!("conv2d {algo:?}");
        let y = gpu.conv2d_with(&gx, &gw, Some(&gb), &spec, algo).unwrap();
        assert_close(&what, &y.download().unwrap(), &want, atol, 1e-4);
        let dx = gpu
            .conv2d_backward_input_with(&ggy, &gw, [9, 11], &spec, algo)
            .unwrap();
        let want_dx = cpu::conv2d_backward_input(&gy, &w, [9, 11], &spec).unwrap();
        assert_close(
            &format!("{what} dx"),
            &dx.download().unwrap(),
            &want_dx,
            atol,
            1e-4,
        );
        let dw = gpu
            .conv2d_backward_weight_with(&ggy, &gx, [3, 2], &spec, algo)
            .unwrap();
        let want_dw = cpu::conv2d_backward_weight(&gy, &x, [3, 2], &spec).unwrap();
        assert_close(
            &format!("{what} dw"),
            &dw.download().unwrap(),
            &want_dw,
            atol,
            1e-4,
        );
    }
    let tspec = ConvTranspose2d {
        stride: [2, 3],
        padding: [1, 0],
        output_padding: [1, 2],
        ..Default::default()
    };
    let wt = rng.tensor([6, 4, 3, 3]);
    let want = cpu::conv_transpose2d(&x, &wt, None, &tspec).unwrap();
    let gwt = gpu.upload(&wt).unwrap();
    for &algo in ConvAlgo::ALL {
        let y = gpu
            .conv_transpose2d_with(&gx, &gwt, None, &tspec, algo)
            .unwrap();
        assert_close(
            &format!("conv_transpose2d {algo:?}"),
            &y.download().unwrap(),
            &want,
            atol,
            1e-4,
        );
    }
    let act = Activation::LeakyRelu { slope: 0.1 };
    let y = gpu.conv2d_act(&gx, &gw, Some(&gb), &spec, act).unwrap();
    let want = cpu::conv2d_act(&x, &w, Some(&b), &spec, act).unwrap();
    assert_close("conv2d_act", &y.download().unwrap(), &want, atol, 1e-4);

    // Pooling and unpooling, with and without indices of known origin.
    let p = Pool2d {
        stride: [2, 1],
        padding: [1, 0],
        ceil_mode: true,
        ..Pool2d::new([3, 2])
    };
    let (v, i) = gpu.max_pool2d(&gx, &p).unwrap();
    let (want_v, want_i) = cpu::max_pool2d(&x, &p).unwrap();
    assert_exact("max_pool2d values", &v.download().unwrap(), &want_v);
    assert_exact("max_pool2d indices", &i.download().unwrap(), &want_i);
    let up = gpu.max_unpool2d(&v, &i, [9, 11]).unwrap();
    assert_exact(
        "max_unpool2d",
        &up.download().unwrap(),
        &cpu::max_unpool2d(&want_v, &want_i, [9, 11]).unwrap(),
    );
    let foreign = gpu.upload(&want_i).unwrap();
    let back = gpu.max_pool2d_backward(&v, &foreign, [9, 11]).unwrap();
    let want_back = cpu::max_pool2d_backward(&want_v, &want_i, [9, 11]).unwrap();
    assert_exact(
        "max_pool2d_backward, uploaded indices",
        &back.download().unwrap(),
        &want_back,
    );
    let a = gpu.avg_pool2d(&gx, &p).unwrap();
    assert_close(
        "avg_pool2d",
        &a.download().unwrap(),
        &cpu::avg_pool2d(&x, &p).unwrap(),
        1e-6,
        1e-5,
    );
    let (s, si) = gpu.stochastic_pool2d(&gx, &p, 7).unwrap();
    let (want_s, want_si) = cpu::stochastic_pool2d(&x, &p, 7).unwrap();
    assert_exact("stochastic_pool2d values", &s.download().unwrap(), &want_s);
    assert_exact(
        "stochastic_pool2d indices",
        &si.download().unwrap(),
        &want_si,
    );
    let square = Pool2d::new([2, 2]);
    let x4 = rng.tensor([1, 3, 8, 16]);
    let (v4, i4) = gpu.max_pool2d(&gpu.upload(&x4).unwrap(), &square).unwrap();
    let (want_v4, want_i4) = cpu::max_pool2d(&x4, &square).unwrap();
    assert_exact(
        "max_pool2d, four outputs per invocation",
        &v4.download().unwrap(),
        &want_v4,
    );
    let up4 = gpu.max_unpool2d(&v4, &i4, [8, 16]).unwrap();
    assert_exact(
        "max_unpool2d, tiling windows",
        &up4.download().unwrap(),
        &cpu::max_unpool2d(&want_v4, &want_i4, [8, 16]).unwrap(),
    );

    // A training step's own ops.
    let labels = Tensor::new([2, 9, 11], (0..198).map(|v| (v * 7 % 6) as u32).collect()).unwrap();
    let (loss, grad) = gpu
        .softmax_cross_entropy(&gx, &gpu.upload(&labels).unwrap())
        .unwrap();
    let (want_loss, want_grad) = cpu::softmax_cross_entropy(&x, &labels).unwrap();
    assert_close(
        "cross-entropy loss",
        &loss.download().unwrap(),
        &Tensor::new([1], vec![want_loss]).unwrap(),
        1e-5,
        1e-5,
    );
    assert_close(
        "cross-entropy grad",
        &grad.download().unwrap(),
        &want_grad,
        1e-6,
        1e-4,
    );
}

#[test]
fn an_application_buffer_runs_through_a_chain_with_the_applications_own_kernel() {
    let Some((adapter, device, queue)) = app_device() else {
        return;
    };
    let gpu = Gpu::from_wgpu(adapter, device.clone(), queue.clone()).unwrap();
    let mut rng = Rng::new(16);
    let x = rng.tensor([1, 4, 10, 12]);
    let w = rng.tensor([6, 4, 3, 3]);
    let spec = Conv2d::default();
    // The application's input buffer, wrapped without a copy.
    let gx = GpuTensor::<f32>::from_buffer(
        &gpu,
        app_buffer(&device, x.data(), APP_USAGE),
        [1, 4, 10, 12],
    )
    .unwrap();
    let y = gpu
        .conv2d(&gx, &gpu.upload(&w).unwrap(), None, &spec)
        .unwrap();

    // The application's kernel doubles convpool's output into a buffer of its own.
    let len = y.len();
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("application output"),
        size: (len * 4) as u64,
        usage: APP_USAGE,
        mapped_at_creation: false,
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("double"),
        source: wgpu::ShaderSource::Wgsl(
            "@group(0) @binding(0) var<storage, read> src: array<f32>;
             @group(0) @binding(1) var<storage, read_write> dst: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                 if id.x < arrayLength(&dst) { dst[id.x] = 2.0 * src[id.x]; }
             }"
            .into(),
        ),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("double"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: y.buffer().as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: out.as_entire_binding(),
            },
        ],
    });
    gpu.flush().unwrap(); // convpool's conv2d reaches the queue before the application's pass
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(len.div_ceil(64) as u32, 1, 1);
    }
    queue.submit([encoder.finish()]);

    // Back into convpool: a flatten (reshape, no copy) and a dense layer as a 1×1 convolution.
    let doubled = GpuTensor::<f32>::from_buffer(&gpu, out, y.shape().to_vec()).unwrap();
    let flat = doubled.reshape([1, len, 1, 1]).unwrap();
    let dense = rng.tensor([5, len, 1, 1]);
    let z = gpu
        .conv2d(&flat, &gpu.upload(&dense).unwrap(), None, &spec)
        .unwrap();

    let y_cpu = cpu::conv2d(&x, &w, None, &spec).unwrap();
    let doubled_cpu = Tensor::new(
        [1, len, 1, 1],
        y_cpu.data().iter().map(|v| 2.0 * v).collect(),
    )
    .unwrap();
    let want = cpu::conv2d(&doubled_cpu, &dense, None, &spec).unwrap();
    assert_close(
        "conv2d → application kernel → reshape → 1×1 conv2d",
        &z.download().unwrap(),
        &want,
        sum_atol(len),
        1e-4,
    );
    assert_exact(
        "the wrapped output reads back",
        &doubled.download().unwrap(),
        &doubled_cpu.reshape(y.shape()).unwrap(),
    );
}

#[test]
fn a_wrapped_buffer_written_between_calls_gives_new_results_and_is_never_recycled() {
    let Some(gpu) = gpu() else { return };
    let device = gpu.device().clone();
    let mut rng = Rng::new(17);
    // Large enough that `Gemm` runs its row-segment variant, which packs the weights.
    let x = rng.tensor([1, 8, 16, 16]);
    let (w1, w2) = (rng.tensor([8, 8, 3, 3]), rng.tensor([8, 8, 3, 3]));
    let spec = Conv2d::default();
    let wbuf = app_buffer(&device, w1.data(), APP_USAGE);
    let gw = GpuTensor::<f32>::from_buffer(&gpu, wbuf.clone(), [8, 8, 3, 3]).unwrap();
    let gx = gpu.upload(&x).unwrap();
    for (round, w) in [&w1, &w2, &w1].into_iter().enumerate() {
        gpu.flush().unwrap(); // the previous round's reads reach the queue before the write
        gpu.queue()
            .write_buffer(&wbuf, 0, bytemuck::cast_slice(w.data()));
        for &algo in ConvAlgo::ALL {
            let y = gpu.conv2d_with(&gx, &gw, None, &spec, algo).unwrap();
            let want = cpu::conv2d(&x, w, None, &spec).unwrap();
            assert_close(
                &format!("round {round}, {algo:?}"),
                &y.download().unwrap(),
                &want,
                sum_atol(72),
                1e-4,
            );
        }
    }
    // Dropped, the wrapped buffer stays the application's: outputs of its size never land in it.
    drop(gw);
    let ones = vec![1.0; 8 * 8 * 9];
    let before = GpuTensor::<f32>::from_buffer(&gpu, wbuf.clone(), [8 * 8 * 9])
        .unwrap()
        .download()
        .unwrap();
    for _ in 0..4 {
        let t = gpu
            .upload(&Tensor::new([8 * 8 * 9], ones.clone()).unwrap())
            .unwrap();
        let _sum = gpu.add(&t, &t).unwrap().download().unwrap();
    }
    let after = GpuTensor::<f32>::from_buffer(&gpu, wbuf, [8 * 8 * 9])
        .unwrap()
        .download()
        .unwrap();
    assert_exact(
        "the application's buffer after convpool reused its pool",
        &after,
        &before,
    );
}

#[test]
fn from_buffer_and_reshape_refuse_what_does_not_fit() {
    let Some(gpu) = gpu() else { return };
    let device = gpu.device();
    let data = vec![0.5f32; 12];
    let ok = app_buffer(device, &data, APP_USAGE);
    let err = GpuTensor::<f32>::from_buffer(&gpu, ok.clone(), [2, 7]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                op: "GpuTensor::from_buffer",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("needs 56 bytes, the buffer holds 48"),
        "{err}"
    );
    let uniform = app_buffer(
        device,
        &data,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_SRC,
    );
    let err = GpuTensor::<f32>::from_buffer(&gpu, uniform, [12]).unwrap_err();
    assert!(err.to_string().contains("lacks STORAGE"), "{err}");
    let no_copy = app_buffer(device, &data, wgpu::BufferUsages::STORAGE);
    let t = GpuTensor::<f32>::from_buffer(&gpu, no_copy, [3, 4]).unwrap();
    let err = t.download().unwrap_err();
    assert!(err.to_string().contains("lacks COPY_SRC"), "{err}");
    // Ops still take it: the result is convpool's, and downloads.
    let doubled = gpu.add(&t, &t).unwrap().download().unwrap();
    assert_eq!(doubled.data(), &[1.0; 12]);

    let t = GpuTensor::<f32>::from_buffer(&gpu, ok, [3, 4]).unwrap();
    let r = t.reshape([2, 1, 6]).unwrap();
    assert_eq!(r.shape(), &[2, 1, 6]);
    assert_eq!(r.download().unwrap().data(), data.as_slice());
    let err = t.reshape([5, 2]).unwrap_err();
    assert!(
        err.to_string()
            .contains("has 10 elements, the tensor [3, 4] has 12"),
        "{err}"
    );
    let err = t.reshape([usize::MAX, 2]).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}

#[test]
fn reshaped_pooling_indices_still_unpool_correctly() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(18);
    let x = rng.tensor([2, 3, 6, 8]);
    let p = Pool2d::new([2, 2]);
    let (v, i) = gpu.max_pool2d(&gpu.upload(&x).unwrap(), &p).unwrap();
    // Two images of three channels as one of six: the indices are still per plane.
    let (v6, i6) = (
        v.reshape([1, 6, 3, 4]).unwrap(),
        i.reshape([1, 6, 3, 4]).unwrap(),
    );
    let up = gpu
        .max_unpool2d(&v6, &i6, [6, 8])
        .unwrap()
        .download()
        .unwrap();
    let (want_v, want_i) = cpu::max_pool2d(&x, &p).unwrap();
    let want = cpu::max_unpool2d(&want_v, &want_i, [6, 8]).unwrap();
    assert_exact(
        "unpooling through reshaped indices",
        &up,
        &want.reshape([1, 6, 6, 8]).unwrap(),
    );
}

#[test]
fn the_builder_picks_adapters_in_code() {
    let Some(shared) = gpu() else { return };
    let adapters = Gpu::builder().adapters();
    assert!(
        !adapters.is_empty(),
        "the shared Gpu's adapter is among them"
    );
    let name = shared.adapter_info().name.clone();
    let again = Gpu::builder()
        .adapter_name(name.to_uppercase())
        .build()
        .unwrap();
    assert_eq!(again.adapter_info().name, name);
    let err = Gpu::builder()
        .adapter_name("no adapter is called this")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::NoAdapter(_)), "{err}");
    assert!(
        err.to_string().contains(&name),
        "the error lists the adapters: {err}"
    );
    let backend = shared.adapter_info().backend;
    let on_backend = Gpu::builder()
        .backends(wgpu::Backends::from(backend))
        .power_preference(wgpu::PowerPreference::HighPerformance)
        .build()
        .unwrap();
    assert_eq!(on_backend.adapter_info().backend, backend);
}

#[test]
fn the_builder_sets_the_kernel_family_and_the_autotuner_of_an_applications_device() {
    let Some(shared) = gpu() else { return };
    let dir = std::env::temp_dir().join(format!("convpool-interop-{}", std::process::id()));
    for family in [KernelFamily::Cpu, KernelFamily::Gpu] {
        let Some((adapter, device, queue)) = app_device() else {
            return;
        };
        let g = Gpu::builder()
            .kernels(family)
            .autotune(true)
            .tune_cache(dir.join("tune.json"))
            .from_wgpu(adapter, device, queue)
            .unwrap();
        assert_eq!(g.kernel_family(), family);
        assert!(g.autotuning());
        assert_eq!(
            g.limits(),
            &wgpu::Limits::default(),
            "the application's limits"
        );
        // And it runs: an Auto convolution, tuned on this device.
        let mut rng = Rng::new(44);
        let (x, w) = (rng.tensor([1, 4, 6, 6]), rng.tensor([8, 4, 3, 3]));
        let spec = Conv2d::default();
        let y = g
            .conv2d(&g.upload(&x).unwrap(), &g.upload(&w).unwrap(), None, &spec)
            .unwrap();
        let want = cpu::conv2d(&x, &w, None, &spec).unwrap();
        assert_close(
            "tuned on the application's device",
            &y.download().unwrap(),
            &want,
            sum_atol(36),
            1e-4,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    // An adapter that is not the device's is refused: a stub device of wgpu's noop backend.
    let (device, queue) = wgpu::Device::noop(&wgpu::DeviceDescriptor::default());
    let err = Gpu::from_wgpu(shared.adapter().clone(), device, queue).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not the one the device was opened on"),
        "{err}"
    );
}

#[test]
fn a_buffer_of_another_device_is_an_err_not_a_panic() {
    let Some((_, other, _)) = app_device() else {
        return;
    };
    let Some(gpu) = gpu() else { return };
    let foreign = app_buffer(&other, &[1.0; 8], APP_USAGE);
    // An op recorded just before, not yet submitted, survives the refusal.
    let before = gpu
        .upload(&Tensor::new([2], vec![3.0, 4.0]).unwrap())
        .unwrap();
    let pending = gpu.add(&before, &before).unwrap();
    // Wrapping checks the buffer's device (tests/wrapped.rs has the rest).
    let r = GpuTensor::<f32>::from_buffer(&gpu, foreign, [8]);
    assert!(
        matches!(&r, Err(Error::Invalid { op: "GpuTensor::from_buffer", msg }) if msg.contains("another wgpu device")),
        "{r:?}"
    );
    assert_eq!(pending.download().unwrap().data(), &[6.0, 8.0]);
    // The Gpu stays usable.
    let ok = gpu
        .upload(&Tensor::new([2], vec![1.0, 2.0]).unwrap())
        .unwrap();
    assert_eq!(
        gpu.add(&ok, &ok).unwrap().download().unwrap().data(),
        &[2.0, 4.0]
    );
}
