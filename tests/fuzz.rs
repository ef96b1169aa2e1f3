//! A timed random search over every public op's specs and shapes (degenerate ones included):
//! `fast::` and the GPU against `cpu::`, requiring the same answer — `Ok` with values within
//! tolerance (indices exactly), or `Err` — never a panic. A GPU refusal with `TooLarge` is
//! allowed where the reference accepts. After every case a small op recorded on the same `Gpu`
//! must still come out right (a call's failure may not spoil its neighbours).
//!
//! Not in the default run (`#[ignore]`): `benchmarks/fuzz.sh MINUTES` runs it in the test
//! profile, debug assertions on (`CONVPOOL_FUZZ_SECONDS`, `CONVPOOL_FUZZ_SEED`), printing a
//! tally of cases per op.

mod common;

use std::collections::BTreeMap;

use common::{gpu, Rng};
use convpool::{
    cpu, fast, Activation, Conv2d, ConvTranspose2d, Error, Gpu, Padding, Pool2d, Result, Sgd,
    Tensor,
};

/// Outcome of one path: values (f32 as-is, indices as f32) or the refusal.
type Out = Result<Vec<Tensor>>;

fn small(rng: &mut Rng, max: usize) -> usize {
    // Zero about one time in twelve: degenerate shapes are where paths disagree.
    if rng.range(0, 11) == 0 {
        0
    } else {
        rng.range(1, max)
    }
}

fn pair(rng: &mut Rng, lo: usize, hi: usize) -> [usize; 2] {
    [rng.range(lo, hi), rng.range(lo, hi)]
}

fn act(rng: &mut Rng) -> Activation {
    match rng.range(0, 5) {
        0 => Activation::Identity,
        1 => Activation::Relu,
        2 => Activation::LeakyRelu { slope: 0.1 },
        3 => Activation::Clamp {
            min: -0.5,
            max: 0.5,
        },
        4 => Activation::Sigmoid,
        _ => Activation::Tanh,
    }
}

fn conv_spec(rng: &mut Rng, groups: usize) -> Conv2d {
    let padding = match rng.range(0, 4) {
        0 => Padding::Valid,
        1 => Padding::Same,
        2 => Padding::Full,
        _ => Padding::Explicit {
            top: rng.range(0, 3),
            bottom: rng.range(0, 3),
            left: rng.range(0, 3),
            right: rng.range(0, 3),
        },
    };
    Conv2d {
        stride: pair(rng, 1, 3),
        padding,
        dilation: pair(rng, 1, 2),
        groups,
    }
}

fn pool_spec(rng: &mut Rng) -> Pool2d {
    let kernel = pair(rng, 1, 4);
    Pool2d {
        kernel,
        stride: pair(rng, 1, 4),
        padding: [rng.range(0, kernel[0] / 2), rng.range(0, kernel[1] / 2)],
        dilation: pair(rng, 1, 2),
        ceil_mode: rng.bool(),
        count_include_pad: rng.bool(),
    }
}

fn idx_f32(t: Tensor<u32>) -> Tensor {
    let data = t.data().iter().map(|&v| v as f32).collect();
    Tensor::new(t.shape().to_vec(), data).unwrap()
}

/// One random case: its op name and what each of the three paths gives.
struct Case {
    op: &'static str,
    cpu: Out,
    fast: Option<Out>,
    gpu: Option<Out>,
    /// Terms per output (for the tolerance).
    terms: usize,
}

fn up(g: &Gpu, t: &Tensor) -> convpool::GpuTensor {
    g.upload(t).unwrap()
}

fn down(r: Result<convpool::GpuTensor>) -> Result<Tensor> {
    r?.download()
}

fn conv_case(rng: &mut Rng, g: &Gpu) -> Case {
    let groups = rng.range(1, 3);
    let (cin, cout) = (small(rng, 3) * groups, rng.range(1, 3) * groups);
    let xs = [rng.range(0, 2), cin, small(rng, 9), small(rng, 9)];
    let ws = [cout, cin / groups, rng.range(1, 4), rng.range(1, 4)];
    let spec = conv_spec(rng, groups);
    let (x, w, b) = (rng.tensor(xs), rng.tensor(ws), rng.tensor([cout]));
    let bias = rng.bool().then_some(&b);
    let a = act(rng);
    let terms = ws[1] * ws[2] * ws[3] + 1;
    match rng.range(0, 3) {
        0 => Case {
            op: "conv2d_act",
            cpu: cpu::conv2d_act(&x, &w, bias, &spec, a).map(|t| vec![t]),
            fast: Some(fast::conv2d_act(&x, &w, bias, &spec, a).map(|t| vec![t])),
            gpu: Some(
                down(g.conv2d_act(
                    &up(g, &x),
                    &up(g, &w),
                    bias.map(|b| up(g, b)).as_ref(),
                    &spec,
                    a,
                ))
                .map(|t| vec![t]),
            ),
            terms,
        },
        1 => {
            // Gradients over the forward's output shape (when the forward is defined).
            let Ok(y) = cpu::conv2d(&x, &w, None, &spec) else {
                let r = cpu::conv2d_backward_input(&x, &w, [xs[2], xs[3]], &spec);
                return Case {
                    op: "conv2d_backward_input",
                    cpu: r.map(|t| vec![t]),
                    fast: Some(
                        fast::conv2d_backward_input(&x, &w, [xs[2], xs[3]], &spec).map(|t| vec![t]),
                    ),
                    gpu: Some(
                        down(g.conv2d_backward_input(
                            &up(g, &x),
                            &up(g, &w),
                            [xs[2], xs[3]],
                            &spec,
                        ))
                        .map(|t| vec![t]),
                    ),
                    terms,
                };
            };
            let gy = rng.tensor(y.shape().to_vec());
            let k = [ws[2], ws[3]];
            // The same gradients through a host path (`cpu` or `fast`).
            macro_rules! host {
                ($m:ident) => {
                    || -> Out {
                        Ok(vec![
                            $m::conv2d_backward_input(&gy, &w, [xs[2], xs[3]], &spec)?,
                            $m::conv2d_backward_weight(&gy, &x, k, &spec)?,
                            $m::bias_backward(&gy)?,
                        ])
                    }
                };
            }
            let (c, f) = (host!(cpu), host!(fast));
            let gg = || -> Out {
                let ggy = up(g, &gy);
                Ok(vec![
                    g.conv2d_backward_input(&ggy, &up(g, &w), [xs[2], xs[3]], &spec)?
                        .download()?,
                    g.conv2d_backward_weight(&ggy, &up(g, &x), k, &spec)?
                        .download()?,
                    g.bias_backward(&ggy)?.download()?,
                ])
            };
            Case {
                op: "conv2d backward",
                cpu: c(),
                fast: Some(f()),
                gpu: Some(gg()),
                terms: terms.max(y.len()),
            }
        }
        _ => {
            let tspec = ConvTranspose2d {
                stride: spec.stride,
                padding: pair(rng, 0, 2),
                output_padding: [rng.range(0, 2), rng.range(0, 2)],
                dilation: spec.dilation,
                groups,
            };
            // conv_transpose2d's weight is [C_in, C_out/groups, kH, kW].
            let wt = rng.tensor([cin, cout / groups, ws[2], ws[3]]);
            let bt = rng.tensor([cout]);
            let bias = bias.map(|_| &bt);
            Case {
                op: "conv_transpose2d_act",
                cpu: cpu::conv_transpose2d_act(&x, &wt, bias, &tspec, a).map(|t| vec![t]),
                fast: Some(fast::conv_transpose2d_act(&x, &wt, bias, &tspec, a).map(|t| vec![t])),
                gpu: Some(
                    down(g.conv_transpose2d_act(
                        &up(g, &x),
                        &up(g, &wt),
                        bias.map(|b| up(g, b)).as_ref(),
                        &tspec,
                        a,
                    ))
                    .map(|t| vec![t]),
                ),
                terms: cin * ws[2] * ws[3] + 1,
            }
        }
    }
}

fn pool_case(rng: &mut Rng, g: &Gpu) -> Case {
    let xs = [rng.range(0, 2), small(rng, 3), small(rng, 9), small(rng, 9)];
    let x = rng.int_tensor(xs, 3);
    let p = pool_spec(rng);
    let size = [xs[2], xs[3]];
    match rng.range(0, 4) {
        0 => {
            // The same ops through a host path (`cpu` or `fast`).
            macro_rules! host {
                ($m:ident) => {
                    || -> Out {
                        let (v, i) = $m::max_pool2d(&x, &p)?;
                        let up = $m::max_unpool2d(&v, &i, size)?;
                        let back = $m::max_pool2d_backward(&v, &i, size)?;
                        let unback = $m::max_unpool2d_backward(&up, &i)?;
                        Ok(vec![v, idx_f32(i), up, back, unback])
                    }
                };
            }
            let (c, f) = (host!(cpu), host!(fast));
            let gg = || -> Out {
                let (v, i) = g.max_pool2d(&up(g, &x), &p)?;
                let u = g.max_unpool2d(&v, &i, size)?;
                let back = g.max_pool2d_backward(&v, &i, size)?;
                let unback = g.max_unpool2d_backward(&u, &i)?;
                Ok(vec![
                    v.download()?,
                    idx_f32(i.download()?),
                    u.download()?,
                    back.download()?,
                    unback.download()?,
                ])
            };
            Case {
                op: "max pooling family",
                cpu: c(),
                fast: Some(f()),
                gpu: Some(gg()),
                terms: 64,
            }
        }
        1 => {
            let c = || -> Out {
                let a = cpu::avg_pool2d(&x, &p)?;
                let back = cpu::avg_pool2d_backward(&a, &p, size)?;
                let un = cpu::avg_unpool2d(&a, &p, size)?;
                Ok(vec![a, back, un])
            };
            let gg = || -> Out {
                let a = g.avg_pool2d(&up(g, &x), &p)?;
                let back = g.avg_pool2d_backward(&a, &p, size)?;
                let un = g.avg_unpool2d(&a, &p, size)?;
                Ok(vec![a.download()?, back.download()?, un.download()?])
            };
            let f = fast::avg_pool2d(&x, &p).map(|t| vec![t]);
            let c_out = c();
            // fast has the forward only: compare it with the reference's first output.
            let fast_vs = match (&c_out, f) {
                (Ok(v), Ok(f)) => Some(Ok(vec![f[0].clone(), v[1].clone(), v[2].clone()])),
                (_, f) => Some(f),
            };
            Case {
                op: "average pooling family",
                cpu: c_out,
                fast: fast_vs,
                gpu: Some(gg()),
                terms: 64,
            }
        }
        2 => {
            let seed = rng.next_u64();
            let x = Tensor::new(xs.to_vec(), x.data().iter().map(|v| v.abs()).collect()).unwrap();
            let c = || -> Out {
                let (v, i) = cpu::stochastic_pool2d(&x, &p, seed)?;
                Ok(vec![
                    v,
                    idx_f32(i),
                    cpu::stochastic_pool2d_expectation(&x, &p)?,
                ])
            };
            let gg = || -> Out {
                let gx = up(g, &x);
                let (v, i) = g.stochastic_pool2d(&gx, &p, seed)?;
                Ok(vec![
                    v.download()?,
                    idx_f32(i.download()?),
                    g.stochastic_pool2d_expectation(&gx, &p)?.download()?,
                ])
            };
            Case {
                op: "stochastic pooling",
                cpu: c(),
                fast: None,
                gpu: Some(gg()),
                terms: 64,
            }
        }
        _ => {
            // Unpooling from indices of any origin (uploaded: some out of range) into any size.
            let size = [small(rng, 6), small(rng, 6)];
            let plane = (size[0] * size[1]).max(1) as u64;
            let n = xs.iter().product::<usize>();
            let idx = Tensor::<u32>::new(
                xs.to_vec(),
                (0..n)
                    .map(|_| (rng.next_u64() % (plane + 1)) as u32)
                    .collect(),
            )
            .unwrap();
            Case {
                op: "max_unpool2d (host indices)",
                cpu: cpu::max_unpool2d(&x, &idx, size).map(|t| vec![t]),
                fast: Some(fast::max_unpool2d(&x, &idx, size).map(|t| vec![t])),
                gpu: Some(
                    down(g.max_unpool2d(&up(g, &x), &g.upload(&idx).unwrap(), size))
                        .map(|t| vec![t]),
                ),
                terms: 1,
            }
        }
    }
}

fn train_case(rng: &mut Rng, g: &Gpu) -> Case {
    let s = [rng.range(0, 2), small(rng, 4), small(rng, 5), small(rng, 5)];
    let (a, b) = (rng.tensor(s), rng.tensor(s));
    let classes = s[1].max(1) as u64;
    let n = s[0] * s[2] * s[3];
    let labels = Tensor::<u32>::new(
        [s[0], s[2], s[3]],
        (0..n)
            .map(|_| (rng.next_u64() % (classes + u64::from(rng.bool()))) as u32)
            .collect(),
    )
    .unwrap();
    let f = act(rng);
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    // The same ops through a host path (`cpu` or `fast`).
    macro_rules! host {
        ($m:ident) => {
            || -> Out {
                let y = $m::activation(&a, f)?;
                let (ce, dce) = $m::softmax_cross_entropy(&a, &labels)?;
                let (mse, dmse) = $m::mse_loss(&a, &b)?;
                let (w, v) = $m::sgd_update(&a, &b, &a, &sgd)?;
                Ok(vec![
                    $m::activation_backward(&b, &y, f)?,
                    y,
                    $m::add(&a, &b)?,
                    Tensor::new([2], vec![ce, mse])?,
                    dce,
                    dmse,
                    w,
                    v,
                ])
            }
        };
    }
    let (c, ff) = (host!(cpu), host!(fast));
    let gg = || -> Out {
        let (ga, gb) = (up(g, &a), up(g, &b));
        let y = g.activation(&ga, f)?;
        let (ce, dce) = g.softmax_cross_entropy(&ga, &g.upload(&labels).unwrap())?;
        let (mse, dmse) = g.mse_loss(&ga, &gb)?;
        let (w, v) = g.sgd_update(&ga, &gb, &ga, &sgd)?;
        let losses = vec![ce.download()?.data()[0], mse.download()?.data()[0]];
        Ok(vec![
            g.activation_backward(&gb, &y, f)?.download()?,
            y.download()?,
            g.add(&ga, &gb)?.download()?,
            Tensor::new([2], losses)?,
            dce.download()?,
            dmse.download()?,
            w.download()?,
            v.download()?,
        ])
    };
    Case {
        op: "training ops",
        cpu: c(),
        fast: Some(ff()),
        gpu: Some(gg()),
        terms: 64,
    }
}

/// `None` when `got` gives the reference's answer, else what differs.
fn differs(path: &str, want: &Out, got: &Out, terms: usize) -> Option<String> {
    match (want, got) {
        (Err(_), Err(_)) => None,
        (Ok(_), Err(Error::TooLarge { .. })) if path == "gpu" => None,
        (Ok(_), Err(e)) => Some(format!("{path} refused what the reference accepts: {e}")),
        (Err(e), Ok(_)) => Some(format!("{path} accepted what the reference refuses ({e})")),
        (Ok(w), Ok(g)) => {
            let atol = 1e-5 * (terms as f32 / 64.0).sqrt().max(1.0);
            for (k, (w, g)) in w.iter().zip(g).enumerate() {
                if w.shape() != g.shape() {
                    return Some(format!(
                        "{path} output {k}: shape {:?}, want {:?}",
                        g.shape(),
                        w.shape()
                    ));
                }
                for (i, (&a, &b)) in g.data().iter().zip(w.data()).enumerate() {
                    let same = (a.is_nan() && b.is_nan()) || a == b;
                    if !same && (a - b).abs() > atol + 1e-4 * b.abs() {
                        return Some(format!("{path} output {k} at {i}: got {a}, want {b}"));
                    }
                }
            }
            None
        }
    }
}

#[test]
#[ignore = "a timed search: benchmarks/fuzz.sh runs it"]
fn fuzz_every_op_against_the_reference() {
    let Some(g) = gpu() else { return };
    let seconds: u64 = std::env::var("CONVPOOL_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("CONVPOOL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let canary = Tensor::new([1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let (mut tally, mut refused): (BTreeMap<&str, usize>, BTreeMap<&str, usize>) =
        Default::default();
    let mut findings = Vec::new();
    let start = std::time::Instant::now();
    let mut cases = 0usize;
    while start.elapsed().as_secs() < seconds {
        cases += 1;
        // A neighbour recorded before the case must survive whatever the case does.
        let before = g.add(&up(&g, &canary), &up(&g, &canary)).unwrap();
        let case = match cases % 5 {
            0 => train_case(&mut rng, &g),
            1 | 2 => conv_case(&mut rng, &g),
            _ => pool_case(&mut rng, &g),
        };
        *tally.entry(case.op).or_default() += 1;
        if case.cpu.is_err() {
            *refused.entry(case.op).or_default() += 1;
        }
        for (path, got) in [("fast", &case.fast), ("gpu", &case.gpu)] {
            if let Some(got) = got {
                if let Some(d) = differs(path, &case.cpu, got, case.terms) {
                    findings.push(format!("case {cases} ({}): {d}", case.op));
                }
            }
        }
        let canary_sum = before.download().map(|t| t.data().to_vec());
        if canary_sum.as_deref() != Ok(&[2.0, 4.0, 6.0, 8.0][..]) {
            findings.push(format!(
                "case {cases} ({}): the op before it came back as {canary_sum:?}",
                case.op
            ));
        }
        if findings.len() >= 20 {
            break;
        }
    }
    println!(
        "fuzz: seed {seed}, {cases} cases in {:.0} s; per op (refused by the reference): {}",
        start.elapsed().as_secs_f64(),
        tally
            .iter()
            .map(|(op, n)| format!("{op} {n} ({})", refused.get(op).unwrap_or(&0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
