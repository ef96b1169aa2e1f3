//! The fast path gives the same bits whatever the thread count: its work is split by shape
//! (bands of rows, blocks of channels), and its band counts follow the rayon pool's size, but
//! every reduction is summed in an order fixed by the shape alone. Each op of the standard
//! workloads' layers (W1–W10 of BENCHMARKS.md, at batch 1 or 2 to keep the test short) runs
//! in rayon pools of 1, 2, 3 and 5 threads, and every output must equal the 1-thread one bit
//! for bit.

mod common;

use common::{assert_exact, Rng};
use convpool::{fast, Activation, Conv2d, ConvTranspose2d, Padding, Pool2d, Result, Sgd, Tensor};

/// Every output of one workload's ops, in a fixed order.
fn outputs(rng_seed: u64) -> Result<Vec<(String, Tensor)>> {
    let mut rng = Rng::new(rng_seed);
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let same = |p| Conv2d {
        padding: Padding::uniform(p),
        ..Default::default()
    };
    let stem = Conv2d {
        stride: [2, 2],
        ..same(3)
    };
    // W1/W2 (3×3, 64 channels), W3 (the 7×7 stride-2 stem), W4 (3×3, 256 channels), each
    // forward with bias and ReLU, and W9's backward pass (both gradients and the bias's).
    let convs = [
        ("W1", [1, 64, 56, 56], [64, 64, 3, 3], same(1)),
        ("W2", [2, 64, 28, 28], [64, 64, 3, 3], same(1)),
        ("W3", [1, 3, 112, 112], [64, 3, 7, 7], stem),
        ("W4", [1, 256, 14, 14], [256, 256, 3, 3], same(1)),
    ];
    for (id, xs, ws, spec) in convs {
        let (x, w, b) = (rng.tensor(xs), rng.tensor(ws), rng.tensor([ws[0]]));
        let y = fast::conv2d_act(&x, &w, Some(&b), &spec, Activation::Relu)?;
        let gy = rng.tensor(y.shape().to_vec());
        out.push((
            format!("{id} dx"),
            fast::conv2d_backward_input(&gy, &w, [xs[2], xs[3]], &spec)?,
        ));
        out.push((
            format!("{id} dw"),
            fast::conv2d_backward_weight(&gy, &x, [ws[2], ws[3]], &spec)?,
        ));
        out.push((format!("{id} db"), fast::bias_backward(&gy)?));
        out.push((format!("{id} forward"), y));
    }
    // W5/W10: the ×2 transposed convolution, forward and backward.
    let t = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    let (x, w, b) = (
        rng.tensor([1, 64, 28, 28]),
        rng.tensor([64, 32, 4, 4]),
        rng.tensor([32]),
    );
    let y = fast::conv_transpose2d(&x, &w, Some(&b), &t)?;
    let gy = rng.tensor(y.shape().to_vec());
    out.push((
        "W10 dx".into(),
        fast::conv_transpose2d_backward_input(&gy, &w, [28, 28], &t)?,
    ));
    out.push((
        "W10 dw".into(),
        fast::conv_transpose2d_backward_weight(&gy, &x, [4, 4], &t)?,
    ));
    out.push(("W10 db".into(), fast::bias_backward(&gy)?));
    out.push(("W5 forward".into(), y));
    // W6–W8: pooling with indices (overlapping and disjoint windows), unpooling, averages, and
    // the pooling gradients.
    let x = rng.tensor([1, 64, 112, 112]);
    let overlapping = Pool2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Pool2d::new([3, 3])
    };
    for (id, p) in [("W6", overlapping), ("W7", Pool2d::new([2, 2]))] {
        let (v, i) = fast::max_pool2d(&x, &p)?;
        let up = fast::max_unpool2d(&v, &i, [112, 112])?;
        let back = fast::max_pool2d_backward(&v, &i, [112, 112])?;
        let unback = fast::max_unpool2d_backward(&up, &i)?;
        let idx = i.data().iter().map(|&k| k as f32).collect();
        out.push((
            format!("{id} indices"),
            Tensor::new(i.shape().to_vec(), idx)?,
        ));
        out.push((format!("{id} values"), v));
        out.push((format!("{id} unpooled"), up));
        out.push((format!("{id} backward"), back));
        out.push((format!("{id} unpool backward"), unback));
    }
    out.push(("W8 avg".into(), fast::avg_pool2d(&x, &Pool2d::new([2, 2]))?));
    // A training step's tail: the losses and their gradients, an update.
    let logits = rng.tensor([2, 5, 32, 32]);
    let labels = Tensor::<u32>::from_fn([2, 32, 32], |i| (i * 7 % 5) as u32)?;
    let (ce, dce) = fast::softmax_cross_entropy(&logits, &labels)?;
    let target = rng.tensor([2, 5, 32, 32]);
    let (mse, dmse) = fast::mse_loss(&logits, &target)?;
    out.push(("losses".into(), Tensor::new([2], vec![ce, mse])?));
    out.push(("cross-entropy gradient".into(), dce));
    out.push(("mse gradient".into(), dmse));
    let (w, g, v) = (
        rng.tensor([64, 64, 3, 3]),
        rng.tensor([64, 64, 3, 3]),
        rng.tensor([64, 64, 3, 3]),
    );
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    let (w2, v2) = fast::sgd_update(&w, &g, &v, &sgd)?;
    out.push(("sgd weights".into(), w2));
    out.push(("sgd velocity".into(), v2));
    Ok(out)
}

#[test]
fn every_fast_op_gives_the_same_bits_on_1_2_3_and_5_threads() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(rayon::current_num_threads(), threads);
            outputs(27).unwrap()
        })
    };
    let one = run(1);
    for threads in [2, 3, 5] {
        let other = run(threads);
        assert_eq!(one.len(), other.len());
        for ((name, a), (_, b)) in one.iter().zip(&other) {
            assert_exact(&format!("{name} on {threads} threads against 1"), b, a);
        }
    }
    println!(
        "{} outputs bitwise equal on 1, 2, 3 and 5 threads",
        one.len()
    );
}
