//! The CPU reference path: the simplest loops that are obviously right. They are the oracle
//! every GPU kernel is tested against, so nothing here is shared with, or tuned like, the GPU
//! path.

mod conv;
mod pool;
mod rng;

pub use conv::{conv2d, conv2d_matrix, conv_transpose2d};
pub use pool::{
    avg_pool2d, avg_pool2d_backward, avg_unpool2d, max_pool2d, max_pool2d_backward, max_unpool2d,
    stochastic_pool2d, stochastic_pool2d_expectation,
};
pub use rng::stochastic_uniform;
