//! The train_segnet network: one training step on the GPU and on the fast CPU path from the
//! same weights gives the same gradients within tolerance, and a few steps lower the loss.

mod common;

#[path = "../examples/train_segnet/data.rs"]
mod data;
#[path = "../examples/train_segnet/net.rs"]
mod net;

use common::{assert_close, gpu};
use convpool::{Sgd, Tensor};
use net::{Backend, Fast, Net};

/// The gradients of every weight and bias after one forward and backward pass on `b`, and the
/// losses of six SGD steps from the same weights, all read back to the host.
fn one_step_and_six<B: Backend>(
    b: &B,
    weights: &[(Tensor, Tensor)],
    (x, y): (&Tensor, &Tensor<u32>),
) -> (Vec<Tensor>, Vec<f32>) {
    let hw = [data::SIDE, data::SIDE];
    let (x, y) = (b.put(x).unwrap(), b.put_u32(y).unwrap());
    let n = Net::new(b, weights).unwrap();
    let (logits, saved) = n.forward(b, &x, hw).unwrap();
    let (_, gl) = b.cross_entropy(&logits, &y).unwrap();
    let grads = n.backward(b, &gl, &saved, hw).unwrap();
    let grads = grads
        .into_iter()
        .flat_map(|(w, bias)| [w, bias])
        .map(|t| b.get(&t).unwrap())
        .collect();
    let mut n = Net::new(b, weights).unwrap();
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let losses = (0..6)
        .map(|_| b.get(&n.step(b, &x, &y, hw, &sgd).unwrap()).unwrap().data()[0])
        .collect();
    (grads, losses)
}

#[test]
fn one_step_gives_the_same_gradients_on_gpu_and_cpu_and_a_few_steps_lower_the_loss() {
    let set = data::generate(8, 3);
    let (x, y) = set.batch(0, 8);
    let weights = net::init_weights(7);
    let (fast_grads, losses) = one_step_and_six(&Fast, &weights, (&x, &y));
    assert!(losses[5] < 0.8 * losses[0], "losses {losses:?}");
    let Some(g) = gpu() else { return };
    let (gpu_grads, gpu_losses) = one_step_and_six(&g, &weights, (&x, &y));
    for (i, (got, b)) in gpu_grads.iter().zip(&fast_grads).enumerate() {
        let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(
            &format!("parameter {i} gradient"),
            got,
            b,
            1e-3 * scale.max(1e-3),
            1e-3,
        );
    }
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
