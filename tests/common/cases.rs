//! The seeded case generators the GPU, fast-path and battery tests sweep: convolutions (random
//! and fixed awkward ones), transposed convolutions and pooling windows.

use super::Rng;
use convpool::{Conv2d, ConvTranspose2d, Padding, Pool2d};

/// A random convolution case: (x shape, w shape, Conv2d, bias?).
pub fn random_case(rng: &mut Rng) -> ([usize; 4], [usize; 4], Conv2d, bool) {
    let groups = [1, 1, 2, 3][rng.range(0, 3)];
    let cig = rng.range(1, 3);
    let cog = rng.range(1, 3);
    let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
    let stride = [rng.range(1, 3), rng.range(1, 3)];
    let dilation = [rng.range(1, 2), rng.range(1, 2)];
    let padding = match rng.range(0, 3) {
        0 => Padding::Valid,
        1 => Padding::Same,
        2 => Padding::Full,
        _ => Padding::Explicit {
            top: rng.range(0, 2),
            bottom: rng.range(0, 2),
            left: rng.range(0, 2),
            right: rng.range(0, 2),
        },
    };
    let h = rng.range((kh - 1) * dilation[0] + 1, 11);
    let w = rng.range((kw - 1) * dilation[1] + 1, 11);
    let x = [rng.range(1, 2), cig * groups, h, w];
    let wt = [cog * groups, cig, kh, kw];
    (
        x,
        wt,
        Conv2d {
            stride,
            padding,
            dilation,
            groups,
        },
        rng.bool(),
    )
}

/// `Conv2d` with the same explicit padding on every side.
fn pad(p: usize) -> Conv2d {
    Conv2d {
        padding: Padding::uniform(p),
        ..Default::default()
    }
}

/// Fixed awkward conv2d cases (x shape, w shape, spec, bias?) for every backend's sweep:
/// stride (2,3) vs (3,2), asymmetric padding, depthwise, 1×1, channel counts that are no
/// multiple of any tile, wide non-square kernels, and the fast CPU path's task splits.
pub fn fixed_conv_cases() -> Vec<([usize; 4], [usize; 4], Conv2d, bool)> {
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    vec![
        (
            [1, 3, 9, 11],
            [5, 3, 3, 2],
            Conv2d {
                stride: [2, 3],
                ..Default::default()
            },
            true,
        ),
        (
            [1, 3, 11, 9],
            [5, 3, 2, 3],
            Conv2d {
                stride: [3, 2],
                ..Default::default()
            },
            false,
        ),
        (
            [2, 4, 7, 8],
            [6, 4, 3, 3],
            Conv2d {
                padding: asym,
                ..Default::default()
            },
            true,
        ),
        (
            [2, 8, 9, 7],
            [8, 1, 3, 3],
            Conv2d {
                groups: 8,
                padding: Padding::Same,
                ..Default::default()
            },
            true,
        ),
        ([1, 7, 6, 5], [13, 7, 1, 1], Conv2d::default(), true),
        (
            [1, 67, 5, 6],
            [33, 67, 3, 3],
            Conv2d {
                padding: Padding::Same,
                ..Default::default()
            },
            true,
        ),
        (
            [1, 2, 13, 17],
            [3, 2, 1, 7],
            Conv2d {
                dilation: [1, 2],
                padding: Padding::Full,
                ..Default::default()
            },
            false,
        ),
        (
            [3, 6, 10, 10],
            [9, 2, 3, 3],
            Conv2d {
                groups: 3,
                stride: [2, 1],
                dilation: [2, 1],
                ..Default::default()
            },
            true,
        ),
        // Depthwise, 8 outputs of a row per invocation: a partial last group, stride 2 with
        // asymmetric padding and a 5-wide kernel; row dilation with "same" padding.
        (
            [2, 6, 11, 19],
            [6, 1, 3, 5],
            Conv2d {
                groups: 6,
                stride: [2, 2],
                padding: asym,
                ..Default::default()
            },
            true,
        ),
        (
            [1, 4, 9, 17],
            [4, 1, 3, 3],
            Conv2d {
                groups: 4,
                dilation: [2, 1],
                padding: Padding::Same,
                ..Default::default()
            },
            false,
        ),
        // Row segments with a column step: 5 taps, stride 3 (26 values per lane), and the
        // longest, 8 taps at stride 7 (57 values).
        (
            [2, 3, 7, 23],
            [4, 3, 3, 5],
            Conv2d {
                stride: [2, 3],
                padding: asym,
                ..Default::default()
            },
            true,
        ),
        (
            [1, 2, 5, 90],
            [3, 2, 2, 8],
            Conv2d {
                stride: [1, 7],
                ..Default::default()
            },
            false,
        ),
        ([2, 16, 9, 9], [24, 16, 1, 1], Conv2d::default(), true), // 1×1: input read directly
        (
            [1, 8, 12, 11],
            [8, 1, 3, 3],
            Conv2d {
                groups: 8,
                padding: Padding::Same,
                ..Default::default()
            },
            true,
        ),
        (
            [2, 6, 15, 13],
            [10, 3, 5, 3],
            Conv2d {
                groups: 2,
                stride: [2, 3],
                dilation: [2, 1],
                padding: Padding::Full,
            },
            false,
        ),
        // Bands of output rows (about 256 columns each, the last one shorter), one task each.
        ([1, 3, 30, 29], [5, 3, 3, 3], pad(1), true),
        ([2, 4, 20, 20], [6, 4, 1, 1], Conv2d::default(), true), // 1×1 read directly, banded
        ([1, 300, 12, 10], [1, 300, 3, 3], pad(1), true),        // a long reduction: narrower bands
        // One image, one band: lowered whole, the product split over chunks of output channels.
        ([1, 8, 6, 6], [70, 8, 3, 3], pad(1), true),
        (
            [1, 8, 6, 7],
            [70, 4, 3, 2],
            Conv2d {
                groups: 2,
                ..pad(1)
            },
            true,
        ),
    ]
}

/// A random transposed convolution: (x shape, w shape, spec, bias?).
pub fn random_transpose_case(rng: &mut Rng) -> ([usize; 4], [usize; 4], ConvTranspose2d, bool) {
    let groups = [1, 1, 2, 3][rng.range(0, 3)];
    let (cig, cog) = (rng.range(1, 3), rng.range(1, 3));
    let (kh, kw) = (rng.range(1, 4), rng.range(1, 4));
    let stride = [rng.range(1, 3), rng.range(1, 3)];
    let dilation = [rng.range(1, 2), rng.range(1, 2)];
    let padding = [
        rng.range(0, (kh - 1) * dilation[0] / 2),
        rng.range(0, (kw - 1) * dilation[1] / 2),
    ];
    let output_padding = [
        rng.range(0, stride[0].max(dilation[0]) - 1),
        rng.range(0, stride[1].max(dilation[1]) - 1),
    ];
    let x = [
        rng.range(1, 2),
        cig * groups,
        rng.range(1, 8),
        rng.range(1, 8),
    ];
    let w = [cig * groups, cog, kh, kw];
    (
        x,
        w,
        ConvTranspose2d {
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        },
        rng.bool(),
    )
}

/// A random window that fits an input of spatial size `hw`, or `None`.
pub fn random_pool(rng: &mut Rng, hw: [usize; 2]) -> Option<Pool2d> {
    let kernel = [rng.range(1, 4), rng.range(1, 4)];
    let p = Pool2d {
        kernel,
        stride: [rng.range(1, 3), rng.range(1, 3)],
        padding: [rng.range(0, kernel[0] / 2), rng.range(0, kernel[1] / 2)],
        dilation: [rng.range(1, 2), rng.range(1, 2)],
        ceil_mode: rng.bool(),
        count_include_pad: rng.bool(),
    };
    p.geometry("test", &[1, 1, hw[0], hw[1]]).ok().map(|_| p)
}

/// The sweep: random windows plus the awkward fixed ones.
pub fn sweep(rng: &mut Rng) -> Vec<([usize; 4], Pool2d)> {
    let mut cases = Vec::new();
    while cases.len() < 30 {
        let xs = [
            rng.range(1, 2),
            rng.range(1, 3),
            rng.range(1, 11),
            rng.range(1, 11),
        ];
        if let Some(p) = random_pool(rng, [xs[2], xs[3]]) {
            cases.push((xs, p));
        }
    }
    let base = Pool2d::new([3, 3]);
    // Rows whose input and output widths are multiples of 4: the GPU's four-outputs-per-
    // invocation pooling kernels (every column shift into a vec4, dilation, ceil mode).
    let s2 = |k: usize, p: usize| Pool2d {
        stride: [2, 2],
        padding: [p, p],
        ..Pool2d::new([k, k])
    };
    cases.extend([
        ([1, 2, 8, 16], s2(2, 0)),
        ([2, 1, 9, 16], s2(3, 1)),
        (
            [1, 2, 5, 12],
            Pool2d {
                padding: [1, 1],
                ..base
            },
        ),
        (
            [1, 1, 6, 12],
            Pool2d {
                dilation: [2, 2],
                padding: [1, 1],
                ..Pool2d::new([2, 2])
            },
        ),
        (
            [1, 2, 7, 12],
            Pool2d {
                stride: [3, 3],
                ..base
            },
        ),
        (
            [1, 1, 8, 16],
            Pool2d {
                count_include_pad: false,
                ..s2(5, 2)
            },
        ),
        (
            [1, 1, 7, 16],
            Pool2d {
                ceil_mode: true,
                ..s2(3, 0)
            },
        ),
    ]);
    cases.extend([
        (
            [1, 2, 9, 11],
            Pool2d {
                stride: [2, 3],
                ..Pool2d::new([3, 2])
            },
        ),
        (
            [1, 2, 11, 9],
            Pool2d {
                stride: [3, 2],
                ..Pool2d::new([2, 3])
            },
        ),
        (
            [2, 3, 7, 7],
            Pool2d {
                stride: [2, 2],
                padding: [1, 1],
                ..base
            },
        ), // overlapping
        (
            [1, 2, 8, 8],
            Pool2d {
                stride: [3, 3],
                ..Pool2d::new([2, 2])
            },
        ), // gapped
        (
            [1, 2, 8, 7],
            Pool2d {
                stride: [2, 2],
                ceil_mode: true,
                ..base
            },
        ),
        (
            [1, 1, 6, 6],
            Pool2d {
                stride: [2, 2],
                padding: [1, 1],
                ceil_mode: true,
                count_include_pad: false,
                ..base
            },
        ),
        (
            [1, 2, 9, 10],
            Pool2d {
                dilation: [2, 3],
                padding: [1, 0],
                ..base
            },
        ),
        (
            [1, 1, 5, 13],
            Pool2d {
                padding: [0, 2],
                ..Pool2d::new([1, 5])
            },
        ),
    ]);
    cases
}
