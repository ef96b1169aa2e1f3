//! The column-Winograd stem kernel against the plain reference, called directly.

use super::super::kernel_check::{check, strided as spec};
use super::*;
use crate::params::conv::Padding;

#[test]
fn stem_winograd_matches_the_reference() {
    if !avx512f() {
        eprintln!("stem_winograd_matches_the_reference: no AVX-512F here; the kernel never runs");
        return;
    }
    let mut seed = 11;
    let asym = Padding::Explicit {
        top: 3,
        bottom: 0,
        left: 1,
        right: 4,
    };
    for (xs, ws, spec) in [
        // The ResNet stem's geometry on a small image: 7×7, stride 2, padding 3.
        (
            [1, 3, 40, 70],
            [16, 3, 7, 7],
            spec([2, 2], Padding::uniform(3), 1),
        ),
        // Odd output sizes: a last run partly and a last tile half outside the row.
        (
            [2, 3, 37, 75],
            [8, 3, 7, 7],
            spec([2, 2], Padding::uniform(3), 1),
        ),
        // Non-square kernels of 5×8 and 3×7, asymmetric padding, row strides of 1 and 3;
        // 1, 2 and 4 input channels, 8×8 kernels.
        ([1, 1, 20, 80], [8, 1, 5, 8], spec([1, 2], asym, 1)),
        (
            [1, 2, 30, 90],
            [24, 2, 3, 7],
            spec([3, 2], Padding::Valid, 1),
        ),
        (
            [1, 4, 20, 90],
            [8, 4, 8, 8],
            spec([2, 2], Padding::uniform(2), 1),
        ),
        // Groups: two RGB-like inputs.
        (
            [1, 6, 24, 80],
            [16, 3, 7, 7],
            spec([2, 2], Padding::uniform(3), 2),
        ),
    ] {
        let g = spec.geometry(&xs, &ws, Some(&[ws[0]])).unwrap();
        assert!(fits(&g), "{xs:?} {ws:?} {spec:?} should fit the kernel");
        check(conv2d, xs, ws, spec, &mut seed);
    }
}

#[test]
fn the_stem_runs_here_and_other_layers_do_not() {
    let geometry = |xs: [usize; 4], ws: [usize; 4], stride: [usize; 2]| {
        spec(stride, Padding::uniform(3), 1)
            .geometry(&xs, &ws, None)
            .unwrap()
    };
    let stem = geometry([1, 3, 224, 224], [64, 3, 7, 7], [2, 2]);
    assert!(fits(&stem));
    assert_eq!(applies(&stem), avx512f());
    // Fit, but run on the direct kernel: 1 input channel, 16 output channels, 32-pixel rows.
    for (xs, ws) in [
        ([1, 1, 224, 224], [64, 1, 7, 7]),
        ([1, 3, 224, 224], [16, 3, 7, 7]),
        ([1, 3, 64, 64], [64, 3, 7, 7]),
    ] {
        let g = geometry(xs, ws, [2, 2]);
        assert!(fits(&g) && !applies(&g), "{xs:?} {ws:?}");
    }
    for (xs, ws, stride) in [
        ([1, 3, 64, 64], [64, 3, 7, 7], [2, 1]), // column stride 1
        ([1, 3, 64, 64], [64, 3, 7, 5], [2, 2]), // 5 columns: 3 taps per phase
        ([1, 5, 64, 64], [64, 5, 7, 7], [2, 2]), // 5 input channels
        ([1, 3, 64, 64], [60, 3, 7, 7], [2, 2]), // not whole blocks of 8
        ([1, 3, 60, 60], [64, 3, 7, 7], [2, 2]), // rows of 30 pixels
    ] {
        assert!(!fits(&geometry(xs, ws, stride)), "{xs:?} {ws:?} {stride:?}");
    }
}
