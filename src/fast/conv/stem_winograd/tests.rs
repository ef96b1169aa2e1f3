//! The stride-2 Winograd stem kernel against the plain reference, called directly.

use super::super::kernel_check::check;
use super::*;
use crate::params::conv::{Conv2d, Padding};

#[test]
fn stem_winograd_matches_the_reference() {
    if !avx512f() {
        eprintln!("stem_winograd_matches_the_reference: no AVX-512F here; the kernel never runs");
        return;
    }
    let mut seed = 11;
    let spec = |padding: Padding, groups| Conv2d {
        stride: [2, 2],
        padding,
        groups,
        ..Default::default()
    };
    let asym = Padding::Explicit {
        top: 3,
        bottom: 0,
        left: 1,
        right: 4,
    };
    for (xs, ws, spec) in [
        // The ResNet stem's geometry on a small image: 7×7, stride 2, padding 3.
        ([1, 3, 40, 38], [16, 3, 7, 7], spec(Padding::uniform(3), 1)),
        // Odd output sizes (a last tile row and column half outside), partial runs.
        ([2, 3, 37, 45], [8, 3, 7, 7], spec(Padding::uniform(3), 1)),
        // Kernels of 5, 6 and 8, non-square; asymmetric padding; 1, 2 and 4 channels.
        ([1, 1, 30, 70], [8, 1, 5, 8], spec(asym, 1)),
        ([1, 2, 35, 37], [24, 2, 6, 5], spec(Padding::Valid, 1)),
        ([1, 4, 20, 90], [8, 4, 8, 8], spec(Padding::uniform(2), 1)),
        // Groups: two RGB-like inputs.
        ([1, 6, 24, 40], [16, 3, 7, 7], spec(Padding::uniform(3), 2)),
    ] {
        let g = spec.geometry(&xs, &ws, Some(&[ws[0]])).unwrap();
        assert!(fits(&g), "{xs:?} {ws:?} {spec:?} should fit the kernel");
        check(conv2d, xs, ws, spec, &mut seed);
    }
}

#[test]
fn the_resnet_stem_runs_here_and_small_or_narrow_layers_do_not() {
    let geometry = |xs: [usize; 4], ws: [usize; 4], pad: usize| {
        let spec = Conv2d {
            stride: [2, 2],
            padding: Padding::uniform(pad),
            ..Default::default()
        };
        spec.geometry(&xs, &ws, None).unwrap()
    };
    let stem = geometry([1, 3, 224, 224], [64, 3, 7, 7], 3);
    assert!(fits(&stem));
    assert_eq!(applies(&stem), avx512f());
    for (xs, ws, pad) in [
        ([1, 3, 112, 112], [64, 3, 7, 7], 3), // 56×56 outputs
        ([1, 1, 224, 224], [64, 1, 7, 7], 3), // one input channel
        ([1, 3, 224, 224], [32, 3, 7, 7], 3), // 32 output channels
        ([1, 3, 224, 224], [64, 3, 5, 5], 2), // 3 taps per phase
    ] {
        let g = geometry(xs, ws, pad);
        assert!(fits(&g) && !applies(&g), "{xs:?} {ws:?}");
    }
    let stride1 = Conv2d {
        padding: Padding::uniform(3),
        ..Default::default()
    };
    assert!(!fits(
        &stride1
            .geometry(&[1, 3, 64, 64], &[64, 3, 7, 7], None)
            .unwrap()
    ));
}
