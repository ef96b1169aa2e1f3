//! In-process A/B of two convpool versions on the default adapter: W1–W8's GPU ops (the
//! shapes of benches/shared/workloads.rs), the two versions' calls alternating (which goes
//! first alternates by round), each call waited for. Prints each side's median, the ratio and
//! in how many pairs the current code was faster. `benchmarks/ab.sh REV [ROUNDS]` builds it
//! (`old` is REV, `new` the working tree); an A/A run (REV = HEAD, clean tree) shows the
//! harness's own spread.
use std::time::Instant;

macro_rules! side {
    ($name:ident, $c:ident) => {
        mod $name {
            use $c::{Conv2d, ConvTranspose2d, Gpu, GpuTensor, Padding, Pool2d, Tensor};
            pub struct S { pub gpu: Gpu, t: Vec<Vec<GpuTensor>> }
            fn data(shape: [usize; 4], seed: usize) -> Tensor {
                Tensor::from_fn(shape, |i| ((i * 7919 + seed) % 1000) as f32 / 500.0 - 1.0).unwrap()
            }
            impl S {
                pub fn new() -> S {
                    let gpu = Gpu::new().unwrap();
                    let up = |s, k| gpu.upload(&data(s, k)).unwrap();
                    let t = vec![
                        vec![up([1, 64, 56, 56], 1), up([64, 64, 3, 3], 2)],
                        vec![up([8, 64, 56, 56], 1), up([64, 64, 3, 3], 2)],
                        vec![up([1, 3, 224, 224], 1), up([64, 3, 7, 7], 2)],
                        vec![up([1, 256, 14, 14], 1), up([256, 256, 3, 3], 2)],
                        vec![up([1, 64, 28, 28], 1), up([64, 32, 4, 4], 2)],
                        vec![up([8, 64, 112, 112], 1)],
                    ];
                    S { gpu, t }
                }
                /// Runs workload `w` (0-based: W1..W8) once and waits.
                pub fn run(&self, w: usize) {
                    let g = &self.gpu;
                    let same = |p| Conv2d { padding: Padding::uniform(p), ..Default::default() };
                    match w {
                        0 | 1 | 3 => { g.conv2d(&self.t[w][0], &self.t[w][1], None, &same(1)).unwrap(); }
                        2 => { g.conv2d(&self.t[2][0], &self.t[2][1], None, &Conv2d { stride: [2, 2], ..same(3) }).unwrap(); }
                        4 => { g.conv_transpose2d(&self.t[4][0], &self.t[4][1], None, &ConvTranspose2d { stride: [2, 2], padding: [1, 1], ..Default::default() }).unwrap(); }
                        5 => { g.max_pool2d(&self.t[5][0], &Pool2d { stride: [2, 2], padding: [1, 1], ..Pool2d::new([3, 3]) }).unwrap(); }
                        6 => { let (v, i) = g.max_pool2d(&self.t[5][0], &Pool2d::new([2, 2])).unwrap(); g.max_unpool2d(&v, &i, [112, 112]).unwrap(); }
                        _ => { g.avg_pool2d(&self.t[5][0], &Pool2d::new([2, 2])).unwrap(); }
                    }
                    g.synchronize().unwrap();
                }
            }
        }
    };
}
side!(a, old);
side!(b, new);

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|v| v.parse().ok()).unwrap_or(20);
    let (old, new) = (a::S::new(), b::S::new());
    let mut t = vec![[Vec::new(), Vec::new()]; 8];
    for w in 0..8 { old.run(w); new.run(w); }
    for r in 0..rounds {
        for w in 0..8 {
            for k in 0..2 {
                let side = (k + r) % 2; // alternate which goes first
                let s = Instant::now();
                if side == 0 { old.run(w) } else { new.run(w) }
                t[w][side].push(s.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let med = |v: &mut Vec<f64>| { v.sort_by(|a, b| a.partial_cmp(b).unwrap()); v[v.len() / 2] };
    println!("| workload | old ms | new ms | new / old | new faster in |");
    println!("|---|---|---|---|---|");
    for (w, [o, n]) in t.iter_mut().enumerate() {
        let wins = o.iter().zip(n.iter()).filter(|(a, b)| b < a).count();
        let total = o.len();
        let (mo, mn) = (med(o), med(n));
        println!("| W{} | {mo:.2} | {mn:.2} | {:.3} | {wins}/{total} |", w + 1, mn / mo);
    }
}
