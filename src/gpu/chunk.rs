//! Tensors larger than one storage binding: ops whose tensors do not fit
//! `max_storage_buffer_binding_size` run chunk by chunk — over images for the convolutions,
//! over (n, c) planes for pooling and unpooling — with each chunk copied into a tensor that
//! fits, run through the ordinary kernels, and its result copied into place. A single image or
//! plane over the limit is split further into bands of output rows, each with the input rows
//! its windows reach (the halo). Only what cannot be split that way — one output row, or the
//! input rows one output row reads, or a weight tensor over the limit — is refused with
//! `Error::TooLarge`.

use std::ops::Range;
use std::sync::atomic::Ordering;

use super::record::BufferCopy;
use super::{Gpu, GpuTensor};
use crate::error::{Error, Result};
use crate::tensor::Element;

/// How an op's tensors fit the per-binding limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunks {
    /// Everything fits: one pass.
    Whole,
    /// Run this many images or planes at a time.
    Units(usize),
    /// A single image or plane is over the limit: split it into bands of rows.
    Rows,
}

/// Output rows `out` of an image or plane and the input rows `input` they read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Band {
    pub out: Range<usize>,
    pub input: Range<usize>,
}

/// The row axis of a window geometry: kernel rows, stride, padding above, dilation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowAxis {
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub d: usize,
}

/// Which input rows a band of output rows reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reach {
    /// Output row `o` is a window over input rows `o*s - p + j*d`, `j < k` (convolution,
    /// pooling).
    Windows(RowAxis),
    /// Output row `r` is fed by the windows (input rows) that cover it: the transposed
    /// convolution, unpooling and the pooling backward passes.
    Covering(RowAxis),
}

impl Reach {
    /// The span of input rows (unclipped) that output rows `[o0, o1)` read.
    fn span(self, o0: usize, o1: usize) -> (i128, i128) {
        let w = |v: usize| v as i128;
        match self {
            Reach::Windows(RowAxis { k, s, p, d }) => {
                let lo = w(o0) * w(s) - w(p);
                (lo, w(o1 - 1) * w(s) - w(p) + w(k - 1) * w(d) + 1)
            }
            Reach::Covering(RowAxis { k, s, p, d }) => {
                // The first window whose last tap reaches o0, the last whose first tap does o1 - 1.
                let first = w(o0) + w(p) - w(k - 1) * w(d);
                let lo = first.div_euclid(w(s)) + i128::from(first.rem_euclid(w(s)) != 0);
                (lo, (w(o1 - 1) + w(p)).div_euclid(w(s)) + 1)
            }
        }
    }
}

impl Gpu {
    /// The largest number of bytes one kernel binding may hold here.
    pub(crate) fn binding_limit(&self) -> u64 {
        self.inner.binding_limit.load(Ordering::Relaxed)
    }

    /// Lowers the per-binding limit that triggers chunking (clamped to `4..=` the device's), so
    /// tests can run the chunked paths on small tensors.
    #[doc(hidden)]
    pub fn set_binding_limit_for_tests(&self, bytes: u64) {
        let l = &self.inner.limits;
        let max = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        self.inner
            .binding_limit
            .store(bytes.clamp(4, max), Ordering::Relaxed);
    }

    /// How to split an op over `units` (images or planes), given the bytes each tensor of the
    /// op holds per unit. A split run copies its chunks out of `sources` (the op's inputs, by
    /// name), so it needs `COPY_SRC` on each: without it (a wrapped buffer) the op is an `Err`
    /// here, before anything is recorded.
    pub(crate) fn chunks(
        &self,
        op: &'static str,
        units: usize,
        per_unit: &[u64],
        sources: &[(&'static str, &wgpu::Buffer)],
    ) -> Result<Chunks> {
        let limit = self.binding_limit();
        let widest = per_unit.iter().copied().max().unwrap_or(0).max(1);
        let chunks = if (units as u128) * (widest as u128) <= limit as u128 {
            Chunks::Whole
        } else if widest > limit {
            Chunks::Rows
        } else {
            Chunks::Units(((limit / widest) as usize).max(1))
        };
        if chunks != Chunks::Whole {
            for &(what, buffer) in sources {
                // Bindable here (not another device's, not destroyed since it was wrapped):
                // a copy from a destroyed buffer would fail the whole submission.
                self.check_buffer_device(op, buffer)?;
                if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
                    return Err(Error::invalid(
                        op,
                        format!(
                            "the {what}'s buffer (usage {:?}) lacks COPY_SRC: it is over the \
                             binding limit of {limit} bytes, so the op copies it in chunks",
                            buffer.usage()
                        ),
                    ));
                }
            }
        }
        Ok(chunks)
    }

    /// For a convolution whose input `x` or output `y` exceeds one binding while single images
    /// fit: runs `f` on chunks of `k` images of `x` and copies each result into `y`.
    pub(crate) fn by_images(
        &self,
        op: &'static str,
        x: &GpuTensor,
        y: &GpuTensor,
        k: usize,
        f: impl Fn(&GpuTensor) -> Result<GpuTensor>,
    ) -> Result<()> {
        let n = x.shape()[0];
        let (x_img, y_img) = (x.len() / n, y.len() / n);
        for b0 in (0..n).step_by(k) {
            let mut shape = x.shape().to_vec();
            shape[0] = k.min(n - b0);
            let part = self.copy_out(op, x, b0 * x_img, &shape)?;
            self.copy_in(op, &f(&part)?, y, b0 * y_img)?;
        }
        Ok(())
    }

    /// For a convolution whose single images exceed one binding: for each image and band, copies
    /// the band's input rows of every `x` plane (`x_planes` planes of `x_hw` per image), runs
    /// `f` on them and copies its result into the band's rows of `y` (`y_planes` of `y_hw`).
    pub(crate) fn by_rows(
        &self,
        op: &'static str,
        (x, x_planes, x_hw): (&GpuTensor, usize, [usize; 2]),
        (y, y_planes, y_hw): (&GpuTensor, usize, [usize; 2]),
        bands: &[Band],
        f: impl Fn(&GpuTensor, &Band) -> Result<GpuTensor>,
    ) -> Result<()> {
        let at = |i, planes, [h, w]: [usize; 2]| Planes {
            plane0: i * planes,
            planes,
            h,
            w,
        };
        for i in 0..x.shape()[0] {
            for band in bands {
                let xs = self.copy_rows_out(op, x, at(i, x_planes, x_hw), band.input.clone())?;
                let ys = f(&xs, band)?;
                self.copy_rows_in(op, &ys, y, at(i, y_planes, y_hw), band.out.start)?;
            }
        }
        Ok(())
    }

    /// Splits `out_rows` output rows into bands such that each band's output (`out_row` bytes
    /// a row) and the input rows it reads (`in_row` bytes a row, per `reach`) each fit one
    /// binding. A band's input range is the span clipped to the `in_rows` rows that exist, and
    /// never empty (a band that reads no row gets one it ignores). `Err(TooLarge)` when one
    /// output row cannot fit.
    pub(crate) fn row_bands(
        &self,
        op: &'static str,
        (out_rows, out_row): (usize, u64),
        (in_rows, in_row): (usize, u64),
        reach: Reach,
    ) -> Result<Vec<Band>> {
        let limit = self.binding_limit();
        let too_large = |what, bytes| Error::TooLarge {
            op,
            what,
            bytes,
            limit,
        };
        if out_row > limit {
            return Err(too_large("one output row", out_row));
        }
        let max_out = ((limit / out_row.max(1)) as usize).max(1);
        let input = |o0: usize, o1: usize| {
            let (lo, hi) = reach.span(o0, o1);
            let n = in_rows as i128;
            let a = lo.clamp(0, n - 1);
            a as usize..hi.clamp(a + 1, n) as usize
        };
        let fits = |r: &Range<usize>| r.len() as u64 * in_row <= limit;
        let mut bands = Vec::new();
        let mut o0 = 0;
        while o0 < out_rows {
            let first = input(o0, o0 + 1);
            if !fits(&first) {
                let bytes = first.len() as u64 * in_row;
                return Err(too_large("the input rows one output row reads", bytes));
            }
            // The largest o1 whose band fits (the input span grows with o1).
            let (mut ok, mut bad) = (o0 + 1, (o0 + max_out).min(out_rows) + 1);
            while bad - ok > 1 {
                let mid = ok + (bad - ok) / 2;
                if fits(&input(o0, mid)) {
                    ok = mid;
                } else {
                    bad = mid;
                }
            }
            bands.push(Band {
                out: o0..ok,
                input: input(o0, ok),
            });
            o0 = ok;
        }
        Ok(bands)
    }

    /// `Err` when a tensor the op binds whole (a weight, a bias) is over the binding limit.
    pub(crate) fn check_binding(
        &self,
        op: &'static str,
        what: &'static str,
        elements: usize,
    ) -> Result<()> {
        let bytes = elements as u64 * 4;
        let limit = self.binding_limit();
        if bytes > limit {
            return Err(Error::TooLarge {
                op,
                what,
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// A new tensor of `shape` holding elements `start..` of `t` (flat, row-major).
    pub(crate) fn copy_out<T: Element>(
        &self,
        op: &'static str,
        t: &GpuTensor<T>,
        start: usize,
        shape: &[usize],
    ) -> Result<GpuTensor<T>> {
        let part = self.alloc::<T>(op, shape)?;
        let bytes = part.len() as u64 * 4;
        if bytes > 0 {
            self.record_copies(
                op,
                &[BufferCopy::new(
                    t.buffer(),
                    start as u64 * 4,
                    part.buffer(),
                    0,
                    bytes,
                )],
            )?;
        }
        Ok(part)
    }

    /// Copies all of `part` into `dst` from flat element `start`.
    pub(crate) fn copy_in<T: Element>(
        &self,
        op: &'static str,
        part: &GpuTensor<T>,
        dst: &GpuTensor<T>,
        start: usize,
    ) -> Result<()> {
        let bytes = part.len() as u64 * 4;
        if bytes > 0 {
            self.record_copies(
                op,
                &[BufferCopy::new(
                    part.buffer(),
                    0,
                    dst.buffer(),
                    start as u64 * 4,
                    bytes,
                )],
            )?;
        }
        Ok(())
    }
}

/// `planes` consecutive planes of `h × w` elements starting at plane `plane0` of a tensor:
/// where a band of rows lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planes {
    pub plane0: usize,
    pub planes: usize,
    pub h: usize,
    pub w: usize,
}

impl Planes {
    /// Flat element of row `row` of plane `i` (counted from `plane0`).
    fn at(&self, i: usize, row: usize) -> u64 {
        (((self.plane0 + i) * self.h + row) * self.w) as u64
    }
}

impl Gpu {
    /// Rows `rows` of each of the planes `at` of `t`, as a new `[1, planes, rows, w]` tensor.
    pub(crate) fn copy_rows_out<T: Element>(
        &self,
        op: &'static str,
        t: &GpuTensor<T>,
        at: Planes,
        rows: Range<usize>,
    ) -> Result<GpuTensor<T>> {
        let part = self.alloc::<T>(op, &[1, at.planes, rows.len(), at.w])?;
        self.copy_band(op, t, &part, at, rows.start, true)?;
        Ok(part)
    }

    /// Copies `part` (`[1, planes, rows, w]`) into rows `row0..` of the planes `at` of `dst`.
    pub(crate) fn copy_rows_in<T: Element>(
        &self,
        op: &'static str,
        part: &GpuTensor<T>,
        dst: &GpuTensor<T>,
        at: Planes,
        row0: usize,
    ) -> Result<()> {
        self.copy_band(op, dst, part, at, row0, false)
    }

    /// Copies between rows `row0..` of the planes `at` of `t` and the band tensor `part`
    /// (`[1, planes, rows, w]`): from `t` into `part` when `out`, the other way otherwise.
    fn copy_band<T: Element>(
        &self,
        op: &'static str,
        t: &GpuTensor<T>,
        part: &GpuTensor<T>,
        at: Planes,
        row0: usize,
        out: bool,
    ) -> Result<()> {
        let band = (part.len() / at.planes.max(1)) as u64 * 4;
        if band == 0 {
            return Ok(());
        }
        let copies: Vec<BufferCopy<'_>> = (0..at.planes)
            .map(|i| {
                let (whole, piece) = (at.at(i, row0) * 4, i as u64 * band);
                if out {
                    BufferCopy::new(t.buffer(), whole, part.buffer(), piece, band)
                } else {
                    BufferCopy::new(part.buffer(), piece, t.buffer(), whole, band)
                }
            })
            .collect();
        self.record_copies(op, &copies)
    }
}
