//! The train_segnet network: one training step on the GPU and on the fast CPU path from the
//! same weights gives the same gradients within tolerance, and a few steps lower the loss.

mod common;

#[path = "../examples/train_segnet/data.rs"]
mod data;
#[path = "../examples/train_segnet/net.rs"]
mod net;

use common::{assert_close, gpu};
use convpool::Sgd;
use net::{Backend, Fast, Net};

#[test]
fn one_step_gives_the_same_gradients_on_gpu_and_cpu_and_a_few_steps_lower_the_loss() {
    let set = data::generate(8, 3);
    let (x, y) = set.batch(0, 8);
    let weights = net::init_weights(7);
    let hw = [data::SIDE, data::SIDE];
    let grads = |b: &dyn Fn() -> Vec<convpool::Tensor>| b();
    let fast_grads = grads(&|| {
        let n = Net::new(&Fast, &weights).unwrap();
        let (logits, saved) = n.forward(&Fast, &x, hw).unwrap();
        let (_, gl) = Fast.cross_entropy(&logits, &y).unwrap();
        let g = n.backward(&Fast, &gl, &saved, hw).unwrap();
        g.into_iter().flat_map(|(w, b)| [w, b]).collect()
    });
    // A few steps on the fast path lower the loss.
    let mut n = Net::new(&Fast, &weights).unwrap();
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let losses: Vec<f32> = (0..6)
        .map(|_| n.step(&Fast, &x, &y, hw, &sgd).unwrap().data()[0])
        .collect();
    assert!(losses[5] < 0.8 * losses[0], "losses {losses:?}");
    let Some(g) = gpu() else { return };
    let (gx, gy) = (g.upload(&x).unwrap(), g.upload(&y).unwrap());
    let n = Net::new(&g, &weights).unwrap();
    let (logits, saved) = n.forward(&g, &gx, hw).unwrap();
    let (_, gl) = g.cross_entropy(&logits, &gy).unwrap();
    let gpu_grads = n.backward(&g, &gl, &saved, hw).unwrap();
    let gpu_grads: Vec<_> = gpu_grads.into_iter().flat_map(|(w, b)| [w, b]).collect();
    for (i, (a, b)) in gpu_grads.iter().zip(&fast_grads).enumerate() {
        let got = a.download().unwrap();
        let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(
            &format!("parameter {i} gradient"),
            &got,
            b,
            1e-3 * scale.max(1e-3),
            1e-3,
        );
    }
    let mut n = Net::new(&g, &weights).unwrap();
    let gpu_losses: Vec<f32> = (0..6)
        .map(|_| {
            n.step(&g, &gx, &gy, hw, &sgd)
                .unwrap()
                .download()
                .unwrap()
                .data()[0]
        })
        .collect();
    assert!(
        gpu_losses[5] < 0.8 * gpu_losses[0],
        "gpu losses {gpu_losses:?}"
    );
    for (a, b) in gpu_losses.iter().zip(&losses) {
        assert!(
            (a - b).abs() < 1e-3 * b.abs().max(1.0),
            "gpu {gpu_losses:?} vs cpu {losses:?}"
        );
    }
}
