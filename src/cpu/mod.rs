//! The CPU reference path: the simplest loops that are obviously right. They are the oracle
//! every GPU kernel is tested against, so nothing here is shared with, or tuned like, the GPU
//! path.

mod conv;
mod conv_backward;
mod pool;
mod rng;
mod train;

pub use conv::{conv2d, conv2d_act, conv2d_matrix, conv_transpose2d, conv_transpose2d_act};
pub use conv_backward::{
    bias_backward, conv2d_backward_input, conv2d_backward_weight, conv_transpose2d_backward_input,
    conv_transpose2d_backward_weight,
};
pub use pool::{
    avg_pool2d, avg_pool2d_backward, avg_unpool2d, max_pool2d, max_pool2d_backward, max_unpool2d,
    max_unpool2d_backward, stochastic_pool2d, stochastic_pool2d_expectation,
};
pub use rng::stochastic_uniform;
pub use train::{
    activation, activation_backward, add, mse_loss, sgd_update, softmax_cross_entropy,
};
