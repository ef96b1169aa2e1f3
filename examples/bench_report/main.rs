//! The GPU-vs-CPU benchmark report: the standard workloads W1–W10 on the default GPU adapter,
//! the fast CPU path and the CPU reference, one training step of the train_segnet network (T1),
//! plus a chaining benchmark.
//!
//! ```text
//! cargo run --release --example bench_report -- [--quick] [--no-reference] [--peers] [--json FILE] [--md FILE] [--svg FILE]
//! ```
//!
//! Times are medians over several runs (inputs already on the device for the GPU; the clock
//! stops after the device has finished). `kernel_ms` is the GPU time of the compute passes from
//! timestamp queries, where the adapter has them. Throughput: GFLOP/s for the convolutions
//! (`2·N·C_out·H_out·W_out·C_in·kH·kW/groups`, transposed: over the input), GB/s for pooling
//! (bytes of the input read plus the outputs written, indices as 4-byte u32).

use std::time::Instant;

use convpool::{Conv2d, ConvTranspose2d, Gpu, GpuTensor, Padding, Pool2d, Result};
use serde::Serialize;

mod machine;
#[path = "../train_segnet/net.rs"]
mod net;
mod output;
mod peers;
#[path = "../../benches/shared/workloads.rs"]
mod workloads;
use machine::{copy_bandwidth, fma_rate};
use output::{markdown, svg};
use workloads::{cost, data, inputs, run_cpu, run_gpu, workloads};

#[derive(Serialize, serde::Deserialize, Clone)]
struct Row {
    workload: String,
    op: String,
    backend: String,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    gflops: Option<f64>,
    gbps: Option<f64>,
    kernel_ms: Option<f64>,
    adapter: String,
    /// A peer's timed runs (ms), merged over the rounds; not written out.
    #[serde(default, skip_serializing)]
    runs_ms: Vec<f64>,
}

/// A workload's inputs and the runs timed so far: gpu, cpu-fast, cpu-ref.
struct Cell {
    wl: workloads::Workload,
    ins: Vec<convpool::Tensor>,
    gins: Vec<GpuTensor>,
    times: [Vec<f64>; 3],
    kernel: Vec<f64>,
}

fn stats(mut t: Vec<f64>) -> (f64, f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0], t[t.len() - 1])
}

/// Times `f` after `warm` warm-up runs, at least `reps` times and until the runs add up to
/// `budget_ms` (at most `max_runs` runs): a cell of a fraction of a millisecond gets enough
/// runs that a passing hiccup of the machine does not move its median. Milliseconds.
fn time(
    warm: usize,
    (reps, budget_ms, max_runs): (usize, f64, usize),
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warm {
        f()?;
    }
    let mut t = Vec::new();
    while t.len() < reps || (t.iter().sum::<f64>() < budget_ms && t.len() < max_runs) {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(t)
}

/// Timed runs of a cell add up to at least this many milliseconds (unless [`MAX_RUNS`]).
const CELL_MS: f64 = 100.0;
/// At most this many timed runs per cell (split evenly over the rounds, rounding down).
const MAX_RUNS: usize = 101;
/// A full report times every cell in this many rounds, each round going through all the
/// workloads (and T1) on one backend after the other (the GPU, the fast path, the reference,
/// then the peers with `--peers`): the runs of a cell are spread over the whole report, so a slow spell
/// of the machine (this VM has spells of seconds to minutes) weighs a little on every cell
/// instead of wholly on the few it falls on. Each cell's median is over all its runs.
const ROUNDS: usize = 3;

/// The 10-op chain: conv → max_pool → max_unpool → avg_pool → avg_unpool → conv_transpose →
/// conv → max_pool → max_unpool → conv_transpose, on `x` `[1, C, S, S]`. With `sync`, each op's
/// result is downloaded before the next starts (ten CPU round trips); without, once at the end.
fn chain(gpu: &Gpu, x: &GpuTensor, w: &GpuTensor, sync: bool) -> Result<()> {
    let s = x.shape()[2];
    let conv = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let convt = ConvTranspose2d {
        padding: [1, 1],
        ..Default::default()
    };
    let p = Pool2d::new([2, 2]);
    let wait = |t: &GpuTensor| -> Result<()> {
        if sync {
            t.download()?;
        }
        Ok(())
    };
    let a = gpu.conv2d(x, w, None, &conv)?;
    wait(&a)?;
    let (m, i) = gpu.max_pool2d(&a, &p)?;
    wait(&m)?;
    let u = gpu.max_unpool2d(&m, &i, [s, s])?;
    wait(&u)?;
    let v = gpu.avg_pool2d(&u, &p)?;
    wait(&v)?;
    let au = gpu.avg_unpool2d(&v, &p, [s, s])?;
    wait(&au)?;
    let t = gpu.conv_transpose2d(&au, w, None, &convt)?;
    wait(&t)?;
    let c = gpu.conv2d(&t, w, None, &conv)?;
    wait(&c)?;
    let (m2, i2) = gpu.max_pool2d(&c, &p)?;
    wait(&m2)?;
    let u2 = gpu.max_unpool2d(&m2, &i2, [s, s])?;
    wait(&u2)?;
    gpu.conv_transpose2d(&u2, w, None, &convt)?
        .download()
        .map(drop)
}

struct Args {
    quick: bool,
    /// Run `benchmarks/cpu_peers.py` after our cells and compare (`--peers`).
    peers: bool,
    /// Time the plain reference too (off with `--no-reference`, for short GPU runs).
    reference: bool,
    json: Option<String>,
    md: Option<String>,
    svg: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        peers: false,
        reference: true,
        json: None,
        md: None,
        svg: None,
    };
    let usage = "usage: bench_report [--quick] [--no-reference] [--peers] [--json FILE] [--md FILE] [--svg FILE]";
    let fail = |msg: String| -> ! {
        eprintln!("bench_report: {msg}\n{usage}");
        std::process::exit(2);
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut file = |flag: &str| match it.next() {
            Some(f) if !f.is_empty() && !f.starts_with("--") => Some(f),
            _ => fail(format!("{flag} needs a file name")),
        };
        match s.as_str() {
            "--quick" => a.quick = true,
            "--no-reference" => a.reference = false,
            "--peers" => a.peers = true,
            "--json" => a.json = file("--json"),
            "--md" => a.md = file("--md"),
            "--svg" => a.svg = file("--svg"),
            "--bench" => {} // passed by `cargo bench`-style runners
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    a
}

/// One training step (forward, loss, backward, SGD) of the train_segnet network on a backend,
/// batch 32 (T1): the model and its batch, made once and stepped by every timed run.
struct TrainStep<B: net::Backend> {
    model: net::Net<B>,
    x: B::T,
    y: B::U,
    sgd: convpool::Sgd,
}

impl<B: net::Backend> TrainStep<B> {
    fn new(b: &B) -> Result<Self> {
        let labels = convpool::Tensor::<u32>::from_fn([32, 32, 32], |i| (i * 7 % 3) as u32)?;
        Ok(Self {
            model: net::Net::new(b, &net::init_weights(7))?,
            x: b.put(&data(&[32, 1, 32, 32], 5)?)?,
            y: b.put_u32(&labels)?,
            sgd: convpool::Sgd {
                lr: 0.01,
                momentum: 0.9,
                weight_decay: 0.0,
            },
        })
    }

    /// Times of steps on `b` as [`time`] takes them; `sync` waits for the backend.
    fn times(
        &mut self,
        b: &B,
        sync: impl Fn() -> Result<()>,
        warm: usize,
        budget: (usize, f64, usize),
    ) -> Result<Vec<f64>> {
        time(warm, budget, || {
            self.model.step(b, &self.x, &self.y, [32, 32], &self.sgd)?;
            sync()
        })
    }
}

fn main() -> Result<()> {
    let a = args();
    let gpu = match Gpu::new() {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("bench_report: {e}; reporting the CPU backends only");
            None
        }
    };
    let adapter = gpu.as_ref().map_or("none".to_string(), |g| {
        let i = g.adapter_info();
        format!("{} ({:?})", i.name, i.backend)
    });
    let cpu_name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = rayon::current_num_threads();
    let (warm, reps): (usize, usize) = if a.quick { (1, 3) } else { (2, 7) };
    println!("convpool bench_report: GPU adapter {adapter}; CPU {cpu_name}, {threads} threads; at least {reps} runs per cell{}", if a.quick { " (quick)" } else { "" });
    // The pooling workloads (GB/s) run first: on lavapipe, once a kernel that binds a texture
    // (the row-segment conv GEMM) has run on a device, its timestamps stop bracketing later
    // texture-free passes; so kernel times are taken in the first round only. The rows are
    // reported in workload order.
    let mut cells = Vec::new();
    for wl in workloads() {
        let ins = inputs(&wl.work)?;
        let gins = match &gpu {
            Some(gpu) => ins.iter().map(|t| gpu.upload(t)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        cells.push(Cell {
            wl,
            ins,
            gins,
            times: Default::default(),
            kernel: Vec::new(),
        });
    }
    cells.sort_by_key(|c| cost(&c.wl.work).map_or(true, |(gflop, _)| gflop.is_some()));
    let rounds = if a.quick { 1 } else { ROUNDS };
    let per_round = |reps: usize| {
        (
            reps.div_ceil(rounds),
            CELL_MS / rounds as f64,
            MAX_RUNS / rounds,
        )
    };
    let (ref_warm, ref_reps): (usize, usize) = if a.quick { (0, 1) } else { (1, 3) };
    let mut fma = Vec::new();
    let mut copy = vec![copy_bandwidth()];
    // The peers' timed runs per cell, in all (split over the rounds), their rows so far, and
    // whether they ran (`None` without `--peers`).
    let peer_runs: usize = if a.quick { 7 } else { 21 };
    let mut peer_rows = Vec::new();
    let mut peer_state: Option<Result<(), String>> = None;
    // T1 on each backend, timed in every round after that backend's workloads, with three
    // cells' budget (a step takes as long as several workloads).
    let t1_round = (
        reps.div_ceil(rounds),
        3.0 * CELL_MS / rounds as f64,
        MAX_RUNS / rounds,
    );
    let mut gpu_step = gpu.as_ref().map(TrainStep::new).transpose()?;
    let mut fast_step = TrainStep::new(&net::Fast)?;
    let mut t1: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        fma.push(fma_rate());
        eprintln!(
            "round {} of {rounds} (machine FMA rate {:.0} GFLOP/s)",
            round + 1,
            fma[round]
        );
        let warm = if round == 0 { warm } else { 1 };
        // One backend at a time through all the workloads: a CPU cell timed right after a
        // lavapipe cell shares the cores with the driver's threads winding down.
        if let Some(gpu) = &gpu {
            for c in &mut cells {
                gpu.synchronize()?;
                let t = time(warm, per_round(reps), || {
                    run_gpu(gpu, &c.wl.work, &c.gins)?;
                    gpu.synchronize()
                })?;
                c.times[0].extend(t);
                if round == 0 {
                    for _ in 0..if a.quick { 1 } else { 3 } {
                        let (_, k) = gpu.profile(|| run_gpu(gpu, &c.wl.work, &c.gins))?;
                        c.kernel.extend(k);
                    }
                }
            }
            if let Some(step) = &mut gpu_step {
                t1[0].extend(step.times(gpu, || gpu.synchronize(), warm, t1_round)?);
            }
        }
        // The copy bandwidth right before the fast path's cells (its pooling cells come
        // first), so that the anchor of their GB/s samples the same stretches of time.
        copy.push(copy_bandwidth());
        for c in &mut cells {
            let t = time(warm, per_round(reps), || run_cpu(&c.wl.work, &c.ins, true))?;
            c.times[1].extend(t);
        }
        t1[1].extend(fast_step.times(&net::Fast, || Ok(()), warm, t1_round)?);
        for c in cells.iter_mut().filter(|_| a.reference) {
            let t = time(
                if round == 0 { ref_warm } else { 0 },
                (ref_reps.div_ceil(rounds), 0.0, 0),
                || run_cpu(&c.wl.work, &c.ins, false),
            )?;
            c.times[2].extend(t);
        }
        // The CPU peers after each round's cells, so that they are timed over the same
        // stretch of the machine's time as ours (it drifts by 15% over minutes).
        if a.peers && peer_state.as_ref().is_none_or(Result::is_ok) {
            peer_state = Some(peers::run(threads, peer_runs.div_ceil(rounds)).map(|rows| {
                peer_rows.extend(rows);
            }));
        }
    }
    fma.push(fma_rate());
    copy.push(copy_bandwidth());
    // The pooling cells' anchor: the median measurement, as each cell's time is its median
    // over the rounds (the bandwidth of this VM moves by a third within minutes).
    let (copy_gbps, copy_lo, copy_hi) = stats(copy.clone());
    let (fma_lo, fma_hi) = fma
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let mut rows = Vec::new();
    for c in cells {
        let (gflop, gb) = cost(&c.wl.work)?;
        let [gpu_t, fast_t, ref_t] = c.times;
        let kernel_ms = (!c.kernel.is_empty()).then(|| stats(c.kernel).0);
        for (backend, t) in [("gpu", gpu_t), ("cpu-fast", fast_t), ("cpu-ref", ref_t)] {
            if t.is_empty() {
                continue;
            }
            let (median, min, max) = stats(t);
            let r = Row {
                workload: c.wl.id.into(),
                op: c.wl.op.into(),
                backend: backend.into(),
                median_ms: median,
                min_ms: min,
                max_ms: max,
                gflops: gflop.map(|f| f / (median / 1e3)),
                gbps: gb.map(|b| b / (median / 1e3)),
                kernel_ms: if backend == "gpu" { kernel_ms } else { None },
                runs_ms: Vec::new(),
                adapter: if backend == "gpu" {
                    adapter.clone()
                } else {
                    format!("cpu: {cpu_name}")
                },
            };
            println!(
                "{:<3} {:<33} {:<8} median {:>9.2} ms  (min {:>8.2}, max {:>8.2}){}{}{}",
                r.workload,
                r.op,
                r.backend,
                r.median_ms,
                r.min_ms,
                r.max_ms,
                r.gflops
                    .map_or(String::new(), |v| format!("  {v:8.2} GFLOP/s")),
                r.gbps.map_or(String::new(), |v| format!("  {v:8.2} GB/s")),
                r.kernel_ms
                    .map_or(String::new(), |v| format!("  kernel {v:.2} ms")),
            );
            rows.push(r);
        }
    }
    for (backend, t) in ["gpu", "cpu-fast"].into_iter().zip(t1) {
        if t.is_empty() {
            continue;
        }
        let (median, min, max) = stats(t);
        println!("T1  training step (train_segnet, batch 32) {backend:<8} median {median:>9.2} ms  (min {min:>8.2}, max {max:>8.2})");
        rows.push(Row {
            workload: "T1".into(),
            op: "training step (train_segnet, batch 32)".into(),
            backend: backend.into(),
            median_ms: median,
            min_ms: min,
            max_ms: max,
            gflops: None,
            gbps: None,
            kernel_ms: None,
            runs_ms: Vec::new(),
            adapter: if backend == "gpu" {
                adapter.clone()
            } else {
                format!("cpu: {cpu_name}")
            },
        });
    }
    // The peers' rows of all rounds merged: one per (workload, backend), over all its runs.
    let peer_state = peer_state.map(|state| {
        state
            .map(|()| {
                for r in peers::merge(std::mem::take(&mut peer_rows)) {
                    println!(
                        "{:<3} {:<33} {:<15} median {:>9.2} ms  (min {:>8.2}, max {:>8.2})",
                        r.workload, r.op, r.backend, r.median_ms, r.min_ms, r.max_ms
                    );
                    rows.push(r);
                }
            })
            .inspect_err(|why| eprintln!("bench_report: no CPU peers: {why}"))
    });
    rows.sort_by_key(|r| {
        let (kind, num) = r.workload.split_at(1);
        (kind.to_string(), num.parse::<u32>().unwrap_or(0))
    });
    let mut chain_line = String::from("Chaining: no GPU adapter, not measured.");
    if let Some(gpu) = &gpu {
        let n = if a.quick { 9 } else { 41 };
        let mut parts = Vec::new();
        for (c, s) in [(4, 8), (16, 32)] {
            let x = gpu.upload(&data(&[1, c, s, s], 3)?)?;
            let w = gpu.upload(&data(&[c, c, 3, 3], 4)?)?;
            // Interleaved, so that both variants see the same machine state (this VM drifts).
            let (mut c_runs, mut s_runs) = (Vec::new(), Vec::new());
            for rep in 0..n + 3 {
                let c = time(0, (1, 0.0, 1), || chain(gpu, &x, &w, false))?;
                let s = time(0, (1, 0.0, 1), || chain(gpu, &x, &w, true))?;
                if rep >= 3 {
                    c_runs.extend(c);
                    s_runs.extend(s);
                }
            }
            let (chained, ..) = stats(c_runs);
            let (synced, ..) = stats(s_runs);
            parts.push(format!(
                "on [1, {c}, {s}, {s}] {chained:.2} ms chained vs {synced:.2} ms with each op downloaded (ratio {:.2})",
                chained / synced
            ));
        }
        chain_line = format!("Chaining, 10 ops (conv, max_pool, max_unpool, avg_pool, avg_unpool, conv_transpose, conv, max_pool, max_unpool, conv_transpose), median of {n}: {}.", parts.join("; "));
        println!("{chain_line}");
    }
    let header = format!("GPU adapter: {adapter}. CPU: {cpu_name}, {threads} threads. At least {reps} timed runs per cell (cpu-ref: {ref_reps}) and {CELL_MS} ms of them (at most {} runs), spread over {rounds} round{} through the report, medians. The machine's FP32 multiply-add rate (all threads, register-only, 8 lanes), measured before each round and at the end: {fma_lo:.0}–{fma_hi:.0} GFLOP/s. Its copy bandwidth (a 256 MiB buffer copied on all threads, read + write, best of five passes), measured at the start, before the fast path's cells in each round and at the end: {copy_lo:.1}–{copy_hi:.1} GB/s, median {copy_gbps:.1} GB/s, of which the pooling cells' GB/s are given.", per_round(reps).2 * rounds, if rounds > 1 { "s" } else { "" });
    if let Some(path) = &a.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&rows).expect("rows serialise"),
        )
        .map_err(|e| convpool::Error::Invalid {
            op: "bench_report",
            msg: format!("{path}: {e}"),
        })?;
    }
    if let Some(path) = &a.md {
        std::fs::write(
            path,
            markdown(&rows, &chain_line, &header, copy_gbps, peer_state.as_ref()),
        )
        .map_err(|e| convpool::Error::Invalid {
            op: "bench_report",
            msg: format!("{path}: {e}"),
        })?;
    }
    if let Some(path) = &a.svg {
        if let Err(e) = svg(path, &rows, &adapter) {
            eprintln!("bench_report: could not draw {path}: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "\n{}",
        markdown(&rows, &chain_line, &header, copy_gbps, peer_state.as_ref())
    );
    Ok(())
}
