//! Wrapped buffers that wgpu would refuse: another device's, or one without `COPY_SRC` where an
//! op must copy from it. wgpu validates copies only when the encoder holding them is finished,
//! and a refused copy discards that whole encoder, so each such call must be an `Err` before
//! anything is recorded, and the ops recorded before and after it must come out right.

mod common;

use common::{assert_close, assert_exact, gpu, sum_atol, Rng};
use convpool::wgpu::{self, util::DeviceExt};
use convpool::{cpu, Conv2d, ConvTranspose2d, Error, Gpu, GpuTensor, Pool2d, Tensor};

/// A `Gpu` on an application device whose storage bindings hold at most 1 MiB, so a 4 MiB
/// tensor runs in bands; and a second application device on the same adapter.
fn app_gpu() -> Option<(Gpu, wgpu::Device)> {
    let shared = gpu()?;
    let adapter = shared.adapter().clone();
    let open = || {
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("application"),
            required_limits: wgpu::Limits {
                max_storage_buffer_binding_size: 1 << 20,
                ..wgpu::Limits::default()
            },
            ..Default::default()
        }))
        .expect("a device with a 1 MiB binding limit")
    };
    let (device, queue) = open();
    let (other, _) = open();
    let gpu = Gpu::from_wgpu(adapter.clone(), device, queue).unwrap();
    Some((gpu, other))
}

fn app_buffer(device: &wgpu::Device, data: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("application data"),
        contents: data,
        usage,
    })
}

/// A small convolution recorded (not yet submitted) on `gpu`, and what it must download as.
struct Neighbour {
    y: GpuTensor,
    want: Tensor,
}

fn neighbour(gpu: &Gpu, seed: u64) -> Neighbour {
    let mut rng = Rng::new(seed);
    let (x, w) = (rng.tensor([2, 3, 7, 6]), rng.tensor([4, 3, 3, 2]));
    let spec = Conv2d::default();
    let want = cpu::conv2d(&x, &w, None, &spec).unwrap();
    let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    let y = gpu.conv2d(&gx, &gw, None, &spec).unwrap();
    Neighbour { y, want }
}

impl Neighbour {
    #[track_caller]
    fn check(&self, what: &str) {
        assert_close(
            what,
            &self.y.download().unwrap(),
            &self.want,
            sum_atol(18),
            1e-4,
        );
    }
}

#[track_caller]
fn expect_refusal<T: std::fmt::Debug>(r: convpool::Result<T>, op: &str, needle: &str) {
    match r {
        Err(Error::Invalid { op: got, msg }) => {
            assert_eq!(got, op, "{msg}");
            assert!(
                msg.contains(needle),
                "{op}: {msg:?} does not say {needle:?}"
            );
        }
        other => panic!("{op}: expected Error::Invalid saying {needle:?}, got {other:?}"),
    }
}

#[test]
fn a_buffer_of_another_device_is_refused_when_wrapped_and_its_neighbours_survive() {
    let Some((gpu, other)) = app_gpu() else {
        return;
    };
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let foreign = app_buffer(&other, bytemuck::cast_slice(&[1.0f32; 64]), usage);
    let before = neighbour(&gpu, 1);
    let r = GpuTensor::<f32>::from_buffer(&gpu, foreign.clone(), [64]);
    expect_refusal(r, "GpuTensor::from_buffer", "another wgpu device");
    let r = GpuTensor::<u32>::from_buffer(&gpu, foreign, [4, 16]);
    expect_refusal(r, "GpuTensor::from_buffer", "another wgpu device");
    let after = neighbour(&gpu, 2);
    before.check("the conv2d recorded before the refused wrap");
    after.check("the conv2d recorded after the refused wrap");

    // A destroyed buffer of this device is refused the same way.
    let gone = app_buffer(gpu.device(), &[0; 16], usage);
    gone.destroy();
    let r = GpuTensor::<f32>::from_buffer(&gpu, gone, [4]);
    expect_refusal(r, "GpuTensor::from_buffer", "destroyed");
}

/// A 4 MiB wrapped input without `COPY_SRC` on a device of 1 MiB bindings: every op that
/// would copy it in bands or chunks refuses it, naming the op, and nothing else is lost.
#[test]
fn ops_that_would_copy_a_wrapped_buffer_without_copy_src_refuse_it_before_recording() {
    let Some((gpu, _)) = app_gpu() else {
        return;
    };
    let storage_only = wgpu::BufferUsages::STORAGE;
    let big: Vec<f32> = (0..1 << 20).map(|i| (i % 7) as f32).collect();
    let x = GpuTensor::<f32>::from_buffer(
        &gpu,
        app_buffer(gpu.device(), bytemuck::cast_slice(&big), storage_only),
        [1, 4, 512, 512],
    )
    .unwrap();
    let w = gpu
        .upload(&Tensor::new([1, 4, 1, 1], vec![1.0; 4]).unwrap())
        .unwrap();
    let many: Vec<f32> = (0..1 << 20).map(|i| (i % 5) as f32).collect();
    let planes = GpuTensor::<f32>::from_buffer(
        &gpu,
        app_buffer(gpu.device(), bytemuck::cast_slice(&many), storage_only),
        [64, 64, 16, 16],
    )
    .unwrap();
    let idx: Vec<u32> = (0..1 << 18).map(|i| i % 4).collect();
    let indices = GpuTensor::<u32>::from_buffer(
        &gpu,
        app_buffer(gpu.device(), bytemuck::cast_slice(&idx), storage_only),
        [64, 64, 8, 8],
    )
    .unwrap();
    let vals = gpu
        .upload(&Tensor::new([64, 64, 8, 8], vec![1.0; 1 << 18]).unwrap())
        .unwrap();

    let before = neighbour(&gpu, 3);
    let spec = Conv2d::default();
    expect_refusal(gpu.conv2d(&x, &w, None, &spec), "conv2d", "COPY_SRC");
    let wt = gpu
        .upload(&Tensor::new([4, 1, 1, 1], vec![1.0; 4]).unwrap())
        .unwrap();
    let tspec = ConvTranspose2d::default();
    expect_refusal(
        gpu.conv_transpose2d(&x, &wt, None, &tspec),
        "conv_transpose2d",
        "COPY_SRC",
    );
    expect_refusal(
        gpu.conv2d_backward_input(&x, &wt, [512, 512], &spec),
        "conv2d_backward_input",
        "COPY_SRC",
    );
    let middle = neighbour(&gpu, 4);
    let pool = Pool2d::new([2, 2]);
    expect_refusal(gpu.max_pool2d(&x, &pool), "max_pool2d", "COPY_SRC");
    expect_refusal(gpu.avg_pool2d(&planes, &pool), "avg_pool2d", "COPY_SRC");
    expect_refusal(
        gpu.max_unpool2d(&vals, &indices, [16, 16]),
        "max_unpool2d",
        "COPY_SRC",
    );
    expect_refusal(
        gpu.avg_unpool2d(&planes, &pool, [32, 32]),
        "avg_unpool2d",
        "COPY_SRC",
    );
    expect_refusal(x.download(), "download", "COPY_SRC");
    let after = neighbour(&gpu, 5);
    before.check("the conv2d recorded before the refusals");
    middle.check("the conv2d recorded between them");
    after.check("the conv2d recorded after them");

    // Ops that bind the buffer whole still take it; a small one needs no copy.
    let small = GpuTensor::<f32>::from_buffer(
        &gpu,
        app_buffer(
            gpu.device(),
            bytemuck::cast_slice(&[2.0f32; 8]),
            storage_only,
        ),
        [1, 2, 2, 2],
    )
    .unwrap();
    let sum = gpu.add(&small, &small).unwrap().download().unwrap();
    assert_exact(
        "add over a storage-only buffer",
        &sum,
        &Tensor::new([1, 2, 2, 2], vec![4.0; 8]).unwrap(),
    );
}

/// A wrapped buffer the application destroyed: every later call that uses it is an `Err`
/// before anything is recorded, and the ops around it come out right.
#[test]
fn a_wrapped_buffer_destroyed_after_wrapping_is_refused_by_later_calls() {
    let Some((gpu, _)) = app_gpu() else {
        return;
    };
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let big: Vec<f32> = (0..1 << 20).map(|i| (i % 3) as f32).collect();
    let buffer = app_buffer(gpu.device(), bytemuck::cast_slice(&big), usage);
    let x = GpuTensor::<f32>::from_buffer(&gpu, buffer.clone(), [1, 4, 512, 512]).unwrap();
    let small = GpuTensor::<f32>::from_buffer(&gpu, buffer.clone(), [1, 4, 4, 4]).unwrap();
    buffer.destroy();
    let before = neighbour(&gpu, 8);
    expect_refusal(x.download(), "download", "destroyed");
    let w = gpu
        .upload(&Tensor::new([1, 4, 1, 1], vec![1.0; 4]).unwrap())
        .unwrap();
    // Over the binding limit (copied in bands) and within it (bound whole).
    expect_refusal(
        gpu.conv2d(&x, &w, None, &Conv2d::default()),
        "conv2d",
        "destroyed",
    );
    let r = gpu.conv2d(&small, &w, None, &Conv2d::default());
    assert!(matches!(r, Err(Error::Gpu { op: "conv2d", .. })), "{r:?}");
    let after = neighbour(&gpu, 9);
    before.check("the conv2d recorded before the calls on the destroyed buffer");
    after.check("the conv2d recorded after them");
}

/// Out-of-range indices in a wrapped buffer without `COPY_SRC`: the error names the position
/// (the value cannot be copied out to name it), and nothing else is lost.
#[test]
fn a_bad_index_in_a_storage_only_buffer_is_an_err_that_names_its_position() {
    let Some((gpu, _)) = app_gpu() else {
        return;
    };
    let before = neighbour(&gpu, 6);
    let idx = GpuTensor::<u32>::from_buffer(
        &gpu,
        app_buffer(
            gpu.device(),
            bytemuck::cast_slice(&[0u32, 1, 99, 2]),
            wgpu::BufferUsages::STORAGE,
        ),
        [1, 1, 2, 2],
    )
    .unwrap();
    let vals = gpu
        .upload(&Tensor::new([1, 1, 2, 2], vec![1.0; 4]).unwrap())
        .unwrap();
    let err = gpu.max_unpool2d(&vals, &idx, [4, 4]).unwrap_err();
    assert!(err.to_string().contains("at position 2"), "{err}");
    let after = neighbour(&gpu, 7);
    before.check("the conv2d recorded before the bad indices");
    after.check("the conv2d recorded after them");
}
