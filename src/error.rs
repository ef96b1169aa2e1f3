//! The one error type of the crate. Every message names the operation and the values at fault.

/// Result alias used throughout convpool.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in convpool. The public API returns these instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shape, a parameter or a combination of them that the operation does not accept.
    #[error("{op}: {msg}")]
    Invalid {
        /// The operation that refused its input (`"conv2d"`, `"Tensor::new"`, …).
        op: &'static str,
        /// What was wrong, with the values.
        msg: String,
    },
    /// No GPU adapter could be found (or none matched `WGPU_ADAPTER_NAME`).
    #[error("no GPU adapter: {0}. On Debian/Ubuntu the software Vulkan driver lavapipe comes with `apt-get install mesa-vulkan-drivers`")]
    NoAdapter(String),
    /// A buffer the operation needs is larger than the device allows.
    #[error("{op}: {what} needs {bytes} bytes, over the device limit of {limit} bytes")]
    TooLarge {
        /// The operation.
        op: &'static str,
        /// Which buffer.
        what: &'static str,
        /// Requested size in bytes.
        bytes: u64,
        /// The device's limit in bytes.
        limit: u64,
    },
    /// A `GpuTensor` created by one `Gpu` was passed to another.
    #[error("{op}: {what} belongs to another Gpu (device #{found}, this is device #{expected})")]
    WrongDevice {
        /// The operation.
        op: &'static str,
        /// Which argument.
        what: &'static str,
        /// The id of the Gpu the tensor came from.
        found: u64,
        /// The id of the Gpu it was passed to.
        expected: u64,
    },
    /// An error reported by wgpu (validation, out of memory, device lost, mapping failure).
    #[error("{op}: GPU error: {msg}")]
    Gpu {
        /// The operation.
        op: &'static str,
        /// wgpu's message.
        msg: String,
    },
    /// The device was lost; create a new `Gpu`.
    #[error("{op}: the GPU device was lost ({msg}); create a new Gpu with Gpu::new()")]
    DeviceLost {
        /// The operation.
        op: &'static str,
        /// The reason wgpu gave.
        msg: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

/// `ensure!(cond, op, "fmt", args…)`: return `Error::Invalid` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Error::invalid($op, format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;
