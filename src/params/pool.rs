//! `Pool2d`: parameters, validation and output-size arithmetic for every pooling and
//! unpooling op.

use super::{ensure_positive, wide};
use crate::error::{ensure, Error, Result};
use crate::tensor::dims4;

/// A 2-D pooling window, as PyTorch's `max_pool2d` / `avg_pool2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Window size `[kH, kW]`.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding on both sides; at most `kernel / 2`. Padding is never selected by max
    /// pooling and counts as zeros in average pooling only with `count_include_pad`.
    pub padding: [usize; 2],
    /// Spacing between window taps.
    pub dilation: [usize; 2],
    /// Round the output size up instead of down (a window must still start inside the input or
    /// the top/left padding).
    pub ceil_mode: bool,
    /// Average pooling divides by the whole window (padding included) instead of the taps that
    /// fall inside the input.
    pub count_include_pad: bool,
}

impl Pool2d {
    /// A `kernel`-sized window with stride = kernel, no padding, dilation 1, floor mode,
    /// `count_include_pad` true (PyTorch's defaults).
    pub fn new(kernel: [usize; 2]) -> Self {
        Pool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
}

/// A fully resolved pooling: every size the kernels need. Made only by [`Pool2d::geometry`]
/// (and the unpooling form), which validate it; `#[non_exhaustive]` keeps other crates from
/// building one by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolGeometry {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input (unpooled) spatial size.
    pub input: [usize; 2],
    /// Output (pooled) spatial size.
    pub output: [usize; 2],
    /// Window.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Whether padding counts in the average's divisor.
    pub count_include_pad: bool,
}

impl PoolGeometry {
    /// `[N, C, H, W]` of the unpooled side.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.input[0], self.input[1]]
    }
    /// `[N, C, H_out, W_out]` of the pooled side.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.output[0], self.output[1]]
    }
    /// The input coordinates (possibly negative or past the end) of the taps of window `o`
    /// along axis `a`.
    pub fn taps(&self, a: usize, o: usize) -> impl Iterator<Item = isize> + Clone {
        let start = (o * self.stride[a]) as isize - self.padding[a] as isize;
        let d = self.dilation[a] as isize;
        (0..self.kernel[a] as isize).map(move |i| start + i * d)
    }
    /// Average pooling's divisor for window `(oh, ow)`: taps inside the input, or with
    /// `count_include_pad` taps inside the padded input `[-p, n + p)`.
    pub fn divisor(&self, oh: usize, ow: usize) -> usize {
        let count = |a: usize, o: usize| {
            let (lo, hi) = if self.count_include_pad {
                (
                    -(self.padding[a] as isize),
                    (self.input[a] + self.padding[a]) as isize,
                )
            } else {
                (0, self.input[a] as isize)
            };
            self.taps(a, o).filter(|&t| t >= lo && t < hi).count()
        };
        count(0, oh) * count(1, ow)
    }
    /// Whether every window is whole and no two overlap: stride = kernel, no padding, no
    /// dilation, and the last window of each axis inside the input (rows or columns past it
    /// are in no window). Then every divisor is `kH·kW`.
    pub fn windows_whole_and_disjoint(&self) -> bool {
        (0..2).all(|a| {
            self.stride[a] == self.kernel[a]
                && self.padding[a] == 0
                && self.dilation[a] == 1
                && self.output[a] * self.kernel[a] <= self.input[a]
        })
    }
    /// Whether the windows tile the input exactly: each input element lies in exactly one
    /// window (whole, disjoint windows, and input = output · kernel per axis).
    pub fn tiles_exactly(&self) -> bool {
        self.windows_whole_and_disjoint()
            && (0..2).all(|a| self.input[a] == self.output[a] * self.kernel[a])
    }
}

/// PyTorch's `pooling_output_shape`: `floor` or `ceil` of `(n + 2p - d*(k-1) - 1)/s + 1`, where
/// in ceil mode the last window must start inside the input or the left padding.
fn pool_out(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<i128> {
    let room = wide(n) + 2 * wide(p) - wide(d).saturating_mul(wide(k) - 1) - 1;
    if room < 0 {
        return None;
    }
    let mut out = (room + if ceil { wide(s) - 1 } else { 0 }) / wide(s) + 1;
    if ceil && (out - 1).saturating_mul(wide(s)) >= wide(n) + wide(p) {
        out -= 1;
    }
    Some(out)
}

impl Pool2d {
    /// Validates the window against an unpooled `[N, C, H, W]` shape and resolves the pooled size.
    pub fn geometry(&self, op: &'static str, x: &[usize]) -> Result<PoolGeometry> {
        let [n, c, h, w] = dims4(op, "input", x)?;
        ensure_positive(op, "kernel", self.kernel)?;
        ensure_positive(op, "stride", self.stride)?;
        ensure_positive(op, "dilation", self.dilation)?;
        let mut output = [0usize; 2];
        for a in 0..2 {
            let axis = ["height", "width"][a];
            let (size, k, s, p, d) = (
                [h, w][a],
                self.kernel[a],
                self.stride[a],
                self.padding[a],
                self.dilation[a],
            );
            ensure!(
                p <= k / 2,
                op,
                "padding {axis} {p} must be at most half the kernel {axis} {k} (PyTorch's rule)"
            );
            let out = pool_out(size, k, s, p, d, self.ceil_mode).ok_or_else(|| {
                Error::invalid(
                    op,
                    format!(
                        "window {axis} {k} (dilated: {}) is larger than the padded input {axis} {size} + 2*{p}",
                        (wide(k) - 1).saturating_mul(wide(d)).saturating_add(1)
                    ),
                )
            })?;
            output[a] = usize::try_from(out)
                .map_err(|_| Error::invalid(op, format!("output {axis} {out} does not fit")))?;
        }
        let g = PoolGeometry {
            n,
            c,
            input: [h, w],
            output,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            count_include_pad: self.count_include_pad,
        };
        // A window that holds no input element (possible with dilation larger than the input)
        // has no maximum and no average: refuse it rather than invent a value. Only windows
        // that start in the top/left padding can be empty (the output-size rule makes every
        // other window start inside the input), so the loop is short.
        for a in 0..2 {
            let (s, p, d, k) = (g.stride[a], g.padding[a], g.dilation[a], g.kernel[a]);
            for o in (0..output[a]).take_while(|&o| o.checked_mul(s).is_some_and(|v| v < p)) {
                let before = p - o * s; // distance of the window start above row 0
                let first = before.div_ceil(d); // first tap at or past row 0
                let empty = first >= k || first * d - before >= g.input[a];
                ensure!(
                    !empty,
                    op,
                    "window {o} along {} covers only padding (input {:?}, kernel {:?}, dilation {:?}, padding {:?})",
                    ["height", "width"][a],
                    g.input,
                    self.kernel,
                    self.dilation,
                    self.padding
                );
            }
        }
        Ok(g)
    }

    /// Validates that pooling an `[N, C, H, W]` input of spatial size `unpooled` with this window
    /// gives exactly the `pooled` shape (used by unpooling and the backward passes).
    pub fn geometry_for(
        &self,
        op: &'static str,
        pooled: &[usize],
        unpooled: [usize; 2],
    ) -> Result<PoolGeometry> {
        let [n, c, ph, pw] = dims4(op, "pooled tensor", pooled)?;
        let g = self.geometry(op, &[n, c, unpooled[0], unpooled[1]])?;
        ensure!(
            g.output == [ph, pw],
            op,
            "pooling a {}×{} input with this window gives {}×{}, but the pooled tensor is {ph}×{pw}",
            unpooled[0],
            unpooled[1],
            g.output[0],
            g.output[1]
        );
        Ok(g)
    }
}

/// Checks the shapes of max_unpool2d / max_pool2d_backward: rank-4 values, indices of the same
/// shape, and an unpooled `size` whose plane length fits `usize`. Returns the values' dims and
/// the unpooled plane length. (The index values are checked by each path.)
pub fn unpool_shape(
    op: &'static str,
    vals: &[usize],
    idx: &[usize],
    size: [usize; 2],
) -> Result<([usize; 4], usize)> {
    let d = dims4(op, "values", vals)?;
    ensure!(
        idx == vals,
        op,
        "indices shape {idx:?} differs from values shape {vals:?}"
    );
    let plane_len = size[0]
        .checked_mul(size[1])
        .ok_or_else(|| Error::invalid(op, format!("output size {size:?} overflows")))?;
    // Every index is out of range for a plane of no position.
    ensure!(
        plane_len > 0 || d.contains(&0),
        op,
        "the {}×{} output plane has no position for the {} indices of each plane",
        size[0],
        size[1],
        d[2] * d[3]
    );
    Ok((d, plane_len))
}

/// The shapes of `max_unpool2d_backward`: gradient `[N, C, H, W]` and indices `[N, C, h, w]`.
/// Returns the indices' dims and the unpooled plane size `[H, W]`.
pub fn unpool_backward_shape(
    op: &'static str,
    grad: &[usize],
    idx: &[usize],
) -> Result<([usize; 4], [usize; 2])> {
    let g = dims4(op, "gradient", grad)?;
    let d = dims4(op, "indices", idx)?;
    ensure!(
        g[..2] == d[..2],
        op,
        "indices shape {d:?} and gradient shape {g:?} differ in batch or channels"
    );
    ensure!(
        g[2].checked_mul(g[3]).is_some(),
        op,
        "gradient plane {}×{} overflows",
        g[2],
        g[3]
    );
    Ok((d, [g[2], g[3]]))
}
