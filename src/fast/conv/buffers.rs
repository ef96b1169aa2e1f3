//! The fast path's per-thread scratch buffers, reused across tasks and calls: a fresh large
//! buffer costs a page fault per 4 KiB on first touch.

use std::cell::RefCell;
use std::thread::LocalKey;

thread_local! {
    /// Each worker's im2col / col2im block (Winograd's work block), reused across tasks and calls.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The calling thread's whole-image im2col matrix (conv2d's channel-chunk path), reused
    /// across calls: a fresh one costs a page fault per 4 KiB on first touch (W4: 1.8 MB).
    static MATRIX: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each worker's stride-phase rows for `im2col_taps`.
    static PHASES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The calling thread's packed weights for the direct kernels, reused across calls: a
    /// fresh buffer (W5's is 128 KB) costs its page faults on every call.
    #[cfg(target_arch = "x86_64")]
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's `buffer`, or a fresh one while the thread's own is in use (a
/// caller running on a rayon worker can pick up another such call while it waits).
fn with_buffer<R>(
    buffer: &'static LocalKey<RefCell<Vec<f32>>>,
    f: impl FnOnce(&mut Vec<f32>) -> R,
) -> R {
    buffer.with(|b| match b.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Runs `f` with this thread's phase-row buffer.
pub(in crate::fast) fn with_phases<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&PHASES, f)
}

/// Runs `f` with this thread's packed-weight buffer (the direct kernels pack their weights on
/// the calling thread before their tasks start).
#[cfg(target_arch = "x86_64")]
pub(in crate::fast) fn with_packed<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&PACKED, f)
}

/// Runs `f` with this thread's im2col matrix, at least `len` floats long (contents
/// unspecified).
pub(in crate::fast) fn with_matrix<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&MATRIX, |m| {
        if m.len() < len {
            m.resize(len, 0.0);
        }
        f(&mut m[..len])
    })
}

/// Runs `f` with this thread's block, at least `len` floats long (contents unspecified).
pub(in crate::fast) fn with_block<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    BLOCK.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < len {
            b.resize(len, 0.0);
        }
        f(&mut b[..len])
    })
}
