//! `Conv2d` and `ConvTranspose2d`: parameters, validation and output-size arithmetic.

use super::{ensure_positive, wide};
use crate::error::{ensure, Error, Result};
use crate::tensor::dims4;

/// How a convolution pads its input (zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: every window lies inside the input.
    #[default]
    Valid,
    /// TensorFlow's / PyTorch's "same": output size `ceil(n / stride)`, total padding
    /// `max((ceil(n/s) - 1)*s + (k-1)*d + 1 - n, 0)`, the odd one at the bottom/right.
    Same,
    /// Every position where the window touches the input: `(k-1)*d` on each side.
    Full,
    /// Asymmetric explicit padding.
    Explicit {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
}

impl Padding {
    /// `p` rows/columns of zeros on every side: PyTorch's `padding=p`.
    pub const fn uniform(p: usize) -> Self {
        Padding::Explicit {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

/// A 2-D convolution (cross-correlation, as PyTorch's `conv2d`).
/// Input `[N, C_in, H, W]`, weight `[C_out, C_in/groups, kH, kW]`, bias `[C_out]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Step between windows, `[h, w]`.
    pub stride: [usize; 2],
    /// Zero padding.
    pub padding: Padding,
    /// Spacing between kernel taps, `[h, w]`.
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into `groups` independent parts.
    pub groups: usize,
}

impl Default for Conv2d {
    fn default() -> Self {
        Conv2d {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// A fully resolved convolution: every size the kernels need. Made only by the specs'
/// validating methods ([`Conv2d::geometry`] and the like), so its sizes always agree (groups
/// divide the channels, the output size follows from the rest); `#[non_exhaustive]` keeps
/// other crates from building one by hand:
///
/// ```compile_fail
/// let g = convpool::ConvGeometry {
///     n: 1, c_in: 2, c_out: 2, groups: 0, input: [4, 4], kernel: [3, 3], stride: [1, 1],
///     dilation: [1, 1], pad_before: [0, 0], pad_after: [0, 0], output: [2, 2],
/// };
/// ```
///
/// ```
/// let g = convpool::Conv2d { groups: 2, ..Default::default() }
///     .geometry(&[1, 4, 5, 5], &[6, 2, 3, 3], None)?;
/// assert_eq!((g.c_in_per_group(), g.c_out_per_group(), g.output), (2, 3, [3, 3]));
/// # Ok::<(), convpool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConvGeometry {
    /// Batch.
    pub n: usize,
    /// Input channels (all groups).
    pub c_in: usize,
    /// Output channels (all groups).
    pub c_out: usize,
    /// Groups.
    pub groups: usize,
    /// Input spatial size `[H, W]`.
    pub input: [usize; 2],
    /// Kernel size `[kH, kW]`.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Padding before (top, left).
    pub pad_before: [usize; 2],
    /// Padding after (bottom, right).
    pub pad_after: [usize; 2],
    /// Output spatial size `[H_out, W_out]`.
    pub output: [usize; 2],
}

impl ConvGeometry {
    /// Input channels per group.
    pub fn c_in_per_group(&self) -> usize {
        self.c_in.checked_div(self.groups).unwrap_or(0)
    }
    /// Output channels per group.
    pub fn c_out_per_group(&self) -> usize {
        self.c_out.checked_div(self.groups).unwrap_or(0)
    }
    /// Shape of the convolution's input.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c_in, self.input[0], self.input[1]]
    }
    /// Shape of the convolution's output.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.output[0], self.output[1]]
    }
}

impl Padding {
    /// Padding `(before, after)` along one axis of size `n` for kernel `k`, stride `s`, dilation `d`.
    fn resolve(self, axis: usize, n: usize, k: usize, s: usize, d: usize) -> (i128, i128) {
        let span = (wide(k) - 1).saturating_mul(wide(d)); // (k-1)*d
        match self {
            Padding::Valid => (0, 0),
            Padding::Full => (span, span),
            Padding::Same => {
                let out = (wide(n) + wide(s) - 1) / wide(s);
                let total =
                    ((out - 1).saturating_mul(wide(s)).saturating_add(span) + 1 - wide(n)).max(0);
                (total / 2, total - total / 2)
            }
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => {
                if axis == 0 {
                    (wide(top), wide(bottom))
                } else {
                    (wide(left), wide(right))
                }
            }
        }
    }
}

/// `floor((n + before + after - d*(k-1) - 1) / s) + 1`, or `None` when that is below 1.
fn conv_out(n: usize, before: i128, after: i128, k: usize, s: usize, d: usize) -> Option<i128> {
    let room = (wide(n) + before.saturating_add(after)) - wide(d).saturating_mul(wide(k) - 1) - 1;
    (room >= 0).then(|| room / wide(s) + 1)
}

/// Converts a wide size back to `usize`, or `Err` naming what overflowed.
fn narrow(op: &'static str, what: &str, v: i128) -> Result<usize> {
    usize::try_from(v)
        .map_err(|_| Error::invalid(op, format!("{what} = {v} does not fit in usize")))
}

/// Checks shared by both convolutions: ranks, positive stride/dilation/groups, kernel size.
/// Returns (x dims, w dims).
fn check_common(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Result<([usize; 4], [usize; 4])> {
    let x = dims4(op, "input", x)?;
    let w = dims4(op, "weight", w)?;
    ensure_positive(op, "stride", stride)?;
    ensure_positive(op, "dilation", dilation)?;
    ensure!(groups >= 1, op, "groups must be at least 1, got {groups}");
    ensure!(
        w[2] >= 1 && w[3] >= 1,
        op,
        "kernel size must be at least 1 on each axis, got weight shape {w:?}"
    );
    Ok((x, w))
}

fn check_bias(op: &'static str, bias: Option<&[usize]>, c_out: usize) -> Result<()> {
    if let Some(b) = bias {
        ensure!(
            b == [c_out],
            op,
            "bias must have shape [{c_out}] (one per output channel), got {b:?}"
        );
    }
    Ok(())
}

impl Conv2d {
    /// Validates the shapes of input `x`, weight `w` and optional bias, and resolves the
    /// padding and output size. Every bad combination is an `Err` naming the values.
    pub fn geometry(
        &self,
        x: &[usize],
        w: &[usize],
        bias: Option<&[usize]>,
    ) -> Result<ConvGeometry> {
        let op = "conv2d";
        let (x, w) = check_common(op, x, w, self.stride, self.dilation, self.groups)?;
        let [n, c_in, h, wd] = x;
        let [c_out, cig, kh, kw] = w;
        let g = self.groups;
        ensure!(
            c_in % g == 0,
            op,
            "groups = {g} does not divide the {c_in} input channels"
        );
        ensure!(
            c_out % g == 0,
            op,
            "groups = {g} does not divide the {c_out} output channels (weight shape {w:?})"
        );
        ensure!(
            cig == c_in / g,
            op,
            "weight shape {w:?} expects {} input channels ({cig} per group × {g} groups), input has {c_in}",
            wide(cig) * wide(g)
        );
        check_bias(op, bias, c_out)?;
        let mut pad_before = [0; 2];
        let mut pad_after = [0; 2];
        let mut output = [0; 2];
        for a in 0..2 {
            let (size, k) = ([h, wd][a], [kh, kw][a]);
            let (s, d) = (self.stride[a], self.dilation[a]);
            let (b, e) = self.padding.resolve(a, size, k, s, d);
            let axis = ["height", "width"][a];
            let out = conv_out(size, b, e, k, s, d).ok_or_else(|| {
                Error::invalid(
                    op,
                    format!(
                        "kernel {axis} {k} (dilated: {}) is larger than the padded input {axis} {size} + {b} + {e}",
                        (wide(k) - 1).saturating_mul(wide(d)).saturating_add(1)
                    ),
                )
            })?;
            pad_before[a] = narrow(op, "padding", b)?;
            pad_after[a] = narrow(op, "padding", e)?;
            output[a] = narrow(op, "output size", out)?;
        }
        Ok(ConvGeometry {
            n,
            c_in,
            c_out,
            groups: g,
            input: [h, wd],
            kernel: [kh, kw],
            stride: self.stride,
            dilation: self.dilation,
            pad_before,
            pad_after,
            output,
        })
    }
}

/// A 2-D transposed convolution, as PyTorch's `conv_transpose2d`.
/// Input `[N, C_in, H, W]`, weight `[C_in, C_out/groups, kH, kW]`, bias `[C_out]`,
/// output `(n-1)*s - 2p + d*(k-1) + output_padding + 1` per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2d {
    /// Stride of the convolution this is the transpose of.
    pub stride: [usize; 2],
    /// Padding of the convolution this is the transpose of (removed from both sides of the output).
    pub padding: [usize; 2],
    /// Extra rows/columns added at the bottom/right of the output; must be below `max(stride, dilation)`.
    pub output_padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

impl Default for ConvTranspose2d {
    fn default() -> Self {
        ConvTranspose2d {
            stride: [1, 1],
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl ConvTranspose2d {
    /// Validates the shapes and resolves the output size. The returned geometry describes the
    /// *forward* convolution whose transpose this is: its `input` is this op's output and its
    /// `output` is this op's input, with `c_in`/`c_out` swapped accordingly
    /// (`geometry.c_out` = this op's input channels).
    pub fn geometry(
        &self,
        x: &[usize],
        w: &[usize],
        bias: Option<&[usize]>,
    ) -> Result<ConvGeometry> {
        let op = "conv_transpose2d";
        let (x, w) = check_common(op, x, w, self.stride, self.dilation, self.groups)?;
        let [n, c_in, h, wd] = x;
        let [wc_in, cog, kh, kw] = w;
        let g = self.groups;
        ensure!(
            c_in % g == 0,
            op,
            "groups = {g} does not divide the {c_in} input channels"
        );
        ensure!(
            wc_in == c_in,
            op,
            "weight shape {w:?} expects {wc_in} input channels, input has {c_in}"
        );
        let c_out = cog
            .checked_mul(g)
            .ok_or_else(|| Error::invalid(op, format!("{cog} × {g} output channels overflow")))?;
        check_bias(op, bias, c_out)?;
        let mut output = [0; 2];
        for a in 0..2 {
            let (size, k) = ([h, wd][a], [kh, kw][a]);
            let (s, d, p, op_) = (
                self.stride[a],
                self.dilation[a],
                self.padding[a],
                self.output_padding[a],
            );
            let axis = ["height", "width"][a];
            ensure!(
                op_ < s.max(d),
                op,
                "output_padding {axis} {op_} must be smaller than max(stride, dilation) = {}",
                s.max(d)
            );
            ensure!(size >= 1, op, "input {axis} must be at least 1, got 0");
            let out = (wide(size) - 1).saturating_mul(wide(s)) - 2 * wide(p)
                + wide(d).saturating_mul(wide(k) - 1)
                + wide(op_)
                + 1;
            ensure!(
                out >= 1,
                op,
                "output {axis} (n-1)*s - 2p + d*(k-1) + output_padding + 1 = ({size}-1)*{s} - 2*{p} + {d}*({k}-1) + {op_} + 1 = {out} is below 1"
            );
            output[a] = narrow(op, "output size", out)?;
        }
        Ok(ConvGeometry {
            n,
            c_in: c_out,
            c_out: c_in,
            groups: g,
            input: output,
            kernel: [kh, kw],
            stride: self.stride,
            dilation: self.dilation,
            pad_before: self.padding,
            pad_after: self.padding,
            output: [h, wd],
        })
    }
}
