//! How the direct kernels split their work: bands of output rows per (image, group), about
//! two per thread, each task writing its band's rows of its group's output planes alone. Each
//! output is then summed whole by one task, so the split (which follows the thread count)
//! leaves the results' bits alone.

use std::ops::Range;

use rayon::prelude::*;

use super::Dst;
use crate::activation::Activation;
use crate::params::conv::ConvGeometry;

/// Tasks per thread: each thread runs about two equal bands, so that none waits long for
/// the last.
const TASKS_PER_THREAD: usize = 2;

/// What [`for_each_band`] splits: per image, `c_in` input planes of `in_plane` floats and
/// `c_out` output planes of `oh` rows, in `groups` groups, with `k` weights per output channel
/// of a group (the weights of a group being consecutive).
#[derive(Clone, Copy)]
pub(super) struct Layout {
    n: usize,
    groups: usize,
    c_in: usize,
    c_out: usize,
    in_plane: usize,
    oh: usize,
    k: usize,
}

impl Layout {
    /// conv2d of geometry `g` (weights `[C_out, C_in/groups, kH, kW]`).
    pub(super) fn conv2d(g: &ConvGeometry) -> Self {
        Layout {
            n: g.n,
            groups: g.groups,
            c_in: g.c_in,
            c_out: g.c_out,
            in_plane: g.input[0] * g.input[1],
            oh: g.output[0],
            k: g.c_in_per_group() * g.kernel[0] * g.kernel[1],
        }
    }

    /// conv_transpose2d whose forward convolution is `g` (its input is our output; weights
    /// `[C_in, C_out/groups, kH, kW]`, so a group's `C_out/groups` channels have `k` =
    /// `C_in/groups·kH·kW` weights between them each).
    pub(super) fn conv_transpose2d(g: &ConvGeometry) -> Self {
        Layout {
            n: g.n,
            groups: g.groups,
            c_in: g.c_out,
            c_out: g.c_in,
            in_plane: g.output[0] * g.output[1],
            oh: g.input[0],
            k: g.c_out_per_group() * g.kernel[0] * g.kernel[1],
        }
    }

    /// Bands per (image, group): the fewest equal bands that give each thread about
    /// `TASKS_PER_THREAD` of them (callers that need smaller bands start from here).
    pub(super) fn min_bands(&self) -> usize {
        let tasks = TASKS_PER_THREAD * rayon::current_num_threads();
        tasks.div_ceil(self.n * self.groups).clamp(1, self.oh)
    }
}

/// One task's share: a band of output rows of one (image, group).
pub(super) struct Band<'a> {
    /// Its output rows.
    pub(super) rows: Range<usize>,
    /// Its group's input planes, weights and biases.
    pub(super) input: &'a [f32],
    pub(super) weights: &'a [f32],
    pub(super) bias: Option<&'a [f32]>,
    /// Its group's first output plane (row `oc·H_out + oy` is output row `oy` of channel `oc`).
    pub(super) planes: Dst,
}

impl Band<'_> {
    /// Applies `act` to the band's rows of the group's `channels` output planes of `[oh, ow]`.
    ///
    /// # Safety
    /// This task has written those rows whole, and no other thread reads or writes them.
    pub(super) unsafe fn activate(&self, act: Activation, channels: usize, [oh, ow]: [usize; 2]) {
        if act == Activation::Identity {
            return;
        }
        for oc in 0..channels {
            for oy in self.rows.clone() {
                // SAFETY: this task's rows, written (the caller's promise).
                act.apply_slice(unsafe { self.planes.row(oc * oh + oy, ow) });
            }
        }
    }
}

/// Runs `task` on every [`Band`] of `band_rows` output rows of every (image, group) of layout
/// `l`, from the input `x`, weights `w`, `bias` and output `out`, in parallel.
pub(super) fn for_each_band(
    l: Layout,
    (x, w, bias, out): (&[f32], &[f32], Option<&[f32]>, Dst),
    band_rows: usize,
    task: impl Fn(Band) + Sync,
) {
    let bands = l.oh.div_ceil(band_rows);
    let (cig, cog) = (l.c_in / l.groups, l.c_out / l.groups);
    (0..l.n * l.groups * bands).into_par_iter().for_each(|t| {
        let (u, band) = (t / bands, t % bands);
        let (b, group) = (u / l.groups, u % l.groups);
        let first = group * cog;
        task(Band {
            rows: band * band_rows..((band + 1) * band_rows).min(l.oh),
            input: &x[(b * l.c_in + group * cig) * l.in_plane..][..cig * l.in_plane],
            weights: &w[first * l.k..][..cog * l.k],
            bias: bias.map(|v| &v[first..][..cog]),
            planes: out.at((b * l.c_out + first) * l.oh, 0),
        })
    });
}
