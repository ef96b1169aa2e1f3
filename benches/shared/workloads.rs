//! The standard workloads W1–W10 of BENCHMARKS.md — shapes, costs, inputs and one run on each
//! backend — shared by the criterion benches (`benches/ops.rs`) and the report
//! (`examples/bench_report.rs`), which include this file as a module.

use convpool::{
    cpu, fast, Conv2d, ConvTranspose2d, Gpu, GpuTensor, Padding, Pool2d, Result, Tensor,
};

/// What a workload does on each backend.
pub enum Work {
    Conv {
        x: [usize; 4],
        w: [usize; 4],
        spec: Conv2d,
    },
    ConvT {
        x: [usize; 4],
        w: [usize; 4],
        spec: ConvTranspose2d,
    },
    MaxPool {
        x: [usize; 4],
        p: Pool2d,
    },
    MaxPoolUnpool {
        x: [usize; 4],
        p: Pool2d,
    },
    AvgPool {
        x: [usize; 4],
        p: Pool2d,
    },
    /// conv2d's backward pass: input, weight and bias gradients.
    ConvBackward {
        x: [usize; 4],
        w: [usize; 4],
        spec: Conv2d,
    },
    /// conv_transpose2d's backward pass: input, weight and bias gradients.
    ConvTBackward {
        x: [usize; 4],
        w: [usize; 4],
        spec: ConvTranspose2d,
    },
}

pub struct Workload {
    pub id: &'static str,
    pub op: &'static str,
    pub work: Work,
}

pub fn workloads() -> Vec<Workload> {
    let same = |p| Conv2d {
        padding: Padding::uniform(p),
        ..Default::default()
    };
    vec![
        Workload {
            id: "W1",
            op: "conv2d",
            work: Work::Conv {
                x: [1, 64, 56, 56],
                w: [64, 64, 3, 3],
                spec: same(1),
            },
        },
        Workload {
            id: "W2",
            op: "conv2d",
            work: Work::Conv {
                x: [8, 64, 56, 56],
                w: [64, 64, 3, 3],
                spec: same(1),
            },
        },
        Workload {
            id: "W3",
            op: "conv2d",
            work: Work::Conv {
                x: [1, 3, 224, 224],
                w: [64, 3, 7, 7],
                spec: Conv2d {
                    stride: [2, 2],
                    ..same(3)
                },
            },
        },
        Workload {
            id: "W4",
            op: "conv2d",
            work: Work::Conv {
                x: [1, 256, 14, 14],
                w: [256, 256, 3, 3],
                spec: same(1),
            },
        },
        Workload {
            id: "W5",
            op: "conv_transpose2d",
            work: Work::ConvT {
                x: [1, 64, 28, 28],
                w: [64, 32, 4, 4],
                spec: ConvTranspose2d {
                    stride: [2, 2],
                    padding: [1, 1],
                    ..Default::default()
                },
            },
        },
        Workload {
            id: "W6",
            op: "max_pool2d+indices",
            work: Work::MaxPool {
                x: [8, 64, 112, 112],
                p: Pool2d {
                    stride: [2, 2],
                    padding: [1, 1],
                    ..Pool2d::new([3, 3])
                },
            },
        },
        Workload {
            id: "W7",
            op: "max_pool2d+indices, max_unpool2d",
            work: Work::MaxPoolUnpool {
                x: [8, 64, 112, 112],
                p: Pool2d::new([2, 2]),
            },
        },
        Workload {
            id: "W8",
            op: "avg_pool2d",
            work: Work::AvgPool {
                x: [8, 64, 112, 112],
                p: Pool2d::new([2, 2]),
            },
        },
        Workload {
            id: "W9",
            op: "conv2d backward (input+weight+bias)",
            work: Work::ConvBackward {
                x: [8, 64, 56, 56],
                w: [64, 64, 3, 3],
                spec: same(1),
            },
        },
        Workload {
            id: "W10",
            op: "conv_transpose2d backward",
            work: Work::ConvTBackward {
                x: [1, 64, 28, 28],
                w: [64, 32, 4, 4],
                spec: ConvTranspose2d {
                    stride: [2, 2],
                    padding: [1, 1],
                    ..Default::default()
                },
            },
        },
    ]
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// (GFLOP, GB) of one run.
pub fn cost(w: &Work) -> Result<(Option<f64>, Option<f64>)> {
    Ok(match w {
        Work::Conv { x, w, spec } => {
            let g = spec.geometry(x, w, None)?;
            let f =
                2.0 * numel(&g.output_shape()) as f64 * (g.c_in_per_group() * w[2] * w[3]) as f64;
            (Some(f / 1e9), None)
        }
        Work::ConvT { x, w, .. } => {
            // C_out/groups = w[1].
            let f = 2.0 * numel(x) as f64 * (w[1] * w[2] * w[3]) as f64;
            (Some(f / 1e9), None)
        }
        // The input and the weight gradient each cost the forward's multiply-adds.
        Work::ConvBackward { x, w, spec } => {
            let forward = cost(&Work::Conv {
                x: *x,
                w: *w,
                spec: *spec,
            })?
            .0;
            (forward.map(|f| 2.0 * f), None)
        }
        Work::ConvTBackward { x, w, spec } => {
            let forward = cost(&Work::ConvT {
                x: *x,
                w: *w,
                spec: *spec,
            })?
            .0;
            (forward.map(|f| 2.0 * f), None)
        }
        Work::MaxPool { x, p } => {
            let g = p.geometry("bench", x)?;
            (
                None,
                Some((numel(x) + 2 * numel(&g.output_shape())) as f64 * 4.0 / 1e9),
            )
        }
        Work::MaxPoolUnpool { x, p } => {
            let g = p.geometry("bench", x)?;
            (
                None,
                Some((2 * numel(x) + 2 * numel(&g.output_shape())) as f64 * 4.0 / 1e9),
            )
        }
        Work::AvgPool { x, p } => {
            let g = p.geometry("bench", x)?;
            (
                None,
                Some((numel(x) + numel(&g.output_shape())) as f64 * 4.0 / 1e9),
            )
        }
    })
}

/// Deterministic pseudo-random data in [-1, 1).
pub fn data(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Tensor::from_fn(shape.to_vec(), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

/// One CPU run of a workload (`fast` picks the fast path, else the reference).
pub fn run_cpu(work: &Work, ins: &[Tensor], fast_path: bool) -> Result<()> {
    match work {
        Work::Conv { spec, .. } => if fast_path {
            fast::conv2d(&ins[0], &ins[1], None, spec)
        } else {
            cpu::conv2d(&ins[0], &ins[1], None, spec)
        }
        .map(drop),
        Work::ConvT { spec, .. } => if fast_path {
            fast::conv_transpose2d(&ins[0], &ins[1], None, spec)
        } else {
            cpu::conv_transpose2d(&ins[0], &ins[1], None, spec)
        }
        .map(drop),
        Work::MaxPool { p, .. } => if fast_path {
            fast::max_pool2d(&ins[0], p)
        } else {
            cpu::max_pool2d(&ins[0], p)
        }
        .map(drop),
        Work::MaxPoolUnpool { p, x } => {
            let size = [x[2], x[3]];
            if fast_path {
                let (v, i) = fast::max_pool2d(&ins[0], p)?;
                fast::max_unpool2d(&v, &i, size).map(drop)
            } else {
                let (v, i) = cpu::max_pool2d(&ins[0], p)?;
                cpu::max_unpool2d(&v, &i, size).map(drop)
            }
        }
        Work::AvgPool { p, .. } => if fast_path {
            fast::avg_pool2d(&ins[0], p)
        } else {
            cpu::avg_pool2d(&ins[0], p)
        }
        .map(drop),
        // ins: x, w, gy.
        Work::ConvBackward { x, w, spec } => {
            let (hw, k) = ([x[2], x[3]], [w[2], w[3]]);
            if fast_path {
                fast::conv2d_backward_input(&ins[2], &ins[1], hw, spec)?;
                fast::conv2d_backward_weight(&ins[2], &ins[0], k, spec)?;
                fast::bias_backward(&ins[2]).map(drop)
            } else {
                cpu::conv2d_backward_input(&ins[2], &ins[1], hw, spec)?;
                cpu::conv2d_backward_weight(&ins[2], &ins[0], k, spec)?;
                cpu::bias_backward(&ins[2]).map(drop)
            }
        }
        Work::ConvTBackward { x, w, spec } => {
            let (hw, k) = ([x[2], x[3]], [w[2], w[3]]);
            if fast_path {
                fast::conv_transpose2d_backward_input(&ins[2], &ins[1], hw, spec)?;
                fast::conv_transpose2d_backward_weight(&ins[2], &ins[0], k, spec)?;
                fast::bias_backward(&ins[2]).map(drop)
            } else {
                cpu::conv_transpose2d_backward_input(&ins[2], &ins[1], hw, spec)?;
                cpu::conv_transpose2d_backward_weight(&ins[2], &ins[0], k, spec)?;
                cpu::bias_backward(&ins[2]).map(drop)
            }
        }
    }
}

/// One GPU run of a workload, submitted but not waited for.
pub fn run_gpu(gpu: &Gpu, work: &Work, ins: &[GpuTensor]) -> Result<()> {
    match work {
        Work::Conv { spec, .. } => gpu.conv2d(&ins[0], &ins[1], None, spec).map(drop),
        Work::ConvT { spec, .. } => gpu.conv_transpose2d(&ins[0], &ins[1], None, spec).map(drop),
        Work::MaxPool { p, .. } => gpu.max_pool2d(&ins[0], p).map(drop),
        Work::MaxPoolUnpool { p, x } => {
            let (v, i) = gpu.max_pool2d(&ins[0], p)?;
            gpu.max_unpool2d(&v, &i, [x[2], x[3]]).map(drop)
        }
        Work::AvgPool { p, .. } => gpu.avg_pool2d(&ins[0], p).map(drop),
        Work::ConvBackward { x, w, spec } => {
            let (hw, k) = ([x[2], x[3]], [w[2], w[3]]);
            gpu.conv2d_backward_input(&ins[2], &ins[1], hw, spec)?;
            gpu.conv2d_backward_weight(&ins[2], &ins[0], k, spec)?;
            gpu.bias_backward(&ins[2]).map(drop)
        }
        Work::ConvTBackward { x, w, spec } => {
            let (hw, k) = ([x[2], x[3]], [w[2], w[3]]);
            gpu.conv_transpose2d_backward_input(&ins[2], &ins[1], hw, spec)?;
            gpu.conv_transpose2d_backward_weight(&ins[2], &ins[0], k, spec)?;
            gpu.bias_backward(&ins[2]).map(drop)
        }
    }
}

pub fn inputs(work: &Work) -> Result<Vec<Tensor>> {
    Ok(match work {
        Work::Conv { x, w, .. } | Work::ConvT { x, w, .. } => vec![data(x, 1)?, data(w, 2)?],
        Work::MaxPool { x, .. } | Work::MaxPoolUnpool { x, .. } | Work::AvgPool { x, .. } => {
            vec![data(x, 1)?]
        }
        // The forward input, the weight and an upstream gradient of the output's shape.
        Work::ConvBackward { x, w, spec } => {
            let y = spec.geometry(x, w, None)?.output_shape();
            vec![data(x, 1)?, data(w, 2)?, data(&y, 3)?]
        }
        Work::ConvTBackward { x, w, spec } => {
            let y = spec.geometry(x, w, None)?.input_shape();
            vec![data(x, 1)?, data(w, 2)?, data(&y, 3)?]
        }
    })
}
