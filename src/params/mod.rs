//! Op parameters. Each params struct owns its shape arithmetic: it validates the input shapes
//! once, with checked arithmetic, and resolves them into a geometry that the CPU reference and
//! the GPU launchers both use.

pub mod backward;
pub mod conv;
pub mod pool;
pub mod train;

/// `a` as an `i128`, so that shape arithmetic on `usize` cannot overflow: sums and differences
/// of a few such values fit, and every product saturates (a saturated value is refused later as
/// a size that does not fit).
pub(crate) fn wide(a: usize) -> i128 {
    a as i128
}

/// Checks that both values of `vals` are at least 1; `what` says what they are.
pub(crate) fn ensure_positive(op: &'static str, what: &str, vals: [usize; 2]) -> crate::Result<()> {
    crate::error::ensure!(
        vals[0] >= 1 && vals[1] >= 1,
        op,
        "{what} must be at least 1 on each axis, got {vals:?}"
    );
    Ok(())
}
