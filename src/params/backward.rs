//! The shapes of the convolutions' backward passes: each resolves the forward geometry from
//! the gradient's shape, the other operand and the forward size it is given (`[H, W]` of the
//! input, `[kH, kW]` of the weight), and refuses a size that does not give the gradient's shape.

use super::conv::{Conv2d, ConvGeometry, ConvTranspose2d};
use crate::error::{ensure, Error, Result};
use crate::tensor::dims4;

/// `r` with its error renamed to `op` (the forward op's checks name the forward op).
fn renamed<T>(op: &'static str, r: Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        Error::Invalid { msg, .. } => Error::invalid(op, msg),
        e => e,
    })
}

/// `Err` unless the forward size gives `gy`'s shape.
fn check_gy(op: &'static str, gy: [usize; 4], want: [usize; 4], what: &str) -> Result<()> {
    ensure!(
        gy == want,
        op,
        "gradient shape {gy:?} does not match the shape {want:?} that {what} gives"
    );
    Ok(())
}

/// Channels per group of `c` for `groups`, or `Err`.
fn per_group(op: &'static str, what: &str, c: usize, groups: usize) -> Result<usize> {
    ensure!(groups >= 1, op, "groups must be at least 1, got {groups}");
    ensure!(
        c.is_multiple_of(groups),
        op,
        "groups = {groups} does not divide the {c} {what} channels"
    );
    Ok(c / groups)
}

impl Conv2d {
    /// The forward geometry of `conv2d_backward_input`: `gy` `[N, C_out, H_out, W_out]`,
    /// weight `w` `[C_out, C_in/groups, kH, kW]`, forward input size `[H, W]`.
    pub fn backward_input_geometry(
        &self,
        gy: &[usize],
        w: &[usize],
        size: [usize; 2],
    ) -> Result<ConvGeometry> {
        let op = "conv2d_backward_input";
        let gyd = dims4(op, "gradient", gy)?;
        let wd = dims4(op, "weight", w)?;
        let c_in = wd[1].saturating_mul(self.groups);
        let x = [gyd[0], c_in, size[0], size[1]];
        let g = renamed(op, self.geometry(&x, w, None))?;
        check_gy(op, gyd, g.output_shape(), &format!("input size {size:?}"))?;
        Ok(g)
    }

    /// The forward geometry of `conv2d_backward_weight`: `gy` `[N, C_out, H_out, W_out]`, input
    /// `x` `[N, C_in, H, W]`, kernel size `[kH, kW]`.
    pub fn backward_weight_geometry(
        &self,
        gy: &[usize],
        x: &[usize],
        kernel: [usize; 2],
    ) -> Result<ConvGeometry> {
        let op = "conv2d_backward_weight";
        let gyd = dims4(op, "gradient", gy)?;
        let xd = dims4(op, "input", x)?;
        let cig = per_group(op, "input", xd[1], self.groups)?;
        let w = [gyd[1], cig, kernel[0], kernel[1]];
        let g = renamed(op, self.geometry(x, &w, None))?;
        check_gy(
            op,
            gyd,
            g.output_shape(),
            &format!("kernel size {kernel:?}"),
        )?;
        Ok(g)
    }
}

impl ConvTranspose2d {
    /// The forward geometry (see [`ConvTranspose2d::geometry`]) of
    /// `conv_transpose2d_backward_input`: `gy` `[N, C_out, H_out, W_out]`, weight `w`
    /// `[C_in, C_out/groups, kH, kW]`, the op's input size `[H, W]`.
    pub fn backward_input_geometry(
        &self,
        gy: &[usize],
        w: &[usize],
        size: [usize; 2],
    ) -> Result<ConvGeometry> {
        let op = "conv_transpose2d_backward_input";
        let gyd = dims4(op, "gradient", gy)?;
        let wd = dims4(op, "weight", w)?;
        let x = [gyd[0], wd[0], size[0], size[1]];
        let g = renamed(op, self.geometry(&x, w, None))?;
        check_gy(op, gyd, g.input_shape(), &format!("input size {size:?}"))?;
        Ok(g)
    }

    /// The forward geometry of `conv_transpose2d_backward_weight`: `gy`
    /// `[N, C_out, H_out, W_out]`, the op's input `x` `[N, C_in, H, W]`, kernel size `[kH, kW]`.
    pub fn backward_weight_geometry(
        &self,
        gy: &[usize],
        x: &[usize],
        kernel: [usize; 2],
    ) -> Result<ConvGeometry> {
        let op = "conv_transpose2d_backward_weight";
        let gyd = dims4(op, "gradient", gy)?;
        let xd = dims4(op, "input", x)?;
        let cog = per_group(op, "output", gyd[1], self.groups)?;
        let w = [xd[1], cog, kernel[0], kernel[1]];
        let g = renamed(op, self.geometry(x, &w, None))?;
        check_gy(op, gyd, g.input_shape(), &format!("kernel size {kernel:?}"))?;
        Ok(g)
    }
}
