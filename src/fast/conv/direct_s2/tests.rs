//! The stride-2 direct conv2d kernel against the plain reference, called directly.

use super::super::kernel_check::{check, strided};
use super::*;
use crate::params::conv::{Conv2d, Padding};

/// A stride-2 spec.
fn spec(padding: Padding, groups: usize) -> Conv2d {
    strided([2, 2], padding, groups)
}

#[test]
fn direct_s2_matches_the_reference() {
    if !avx512f() {
        eprintln!("direct_s2_matches_the_reference: no AVX-512F here; the kernel never runs");
        return;
    }
    let mut seed = 23;
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    for (xs, ws, spec) in [
        // W10's input gradient on a small image, and a 3×3 downsampling layer.
        ([1, 8, 14, 30], [16, 8, 4, 4], spec(Padding::uniform(1), 1)),
        ([2, 9, 15, 29], [32, 9, 3, 3], spec(Padding::uniform(1), 1)),
        // Odd sizes, no or asymmetric padding; rows of 1 to 31 columns (a last block of
        // 1–13, several blocks); 1 input channel and 3 (fewer than `applies` takes).
        ([1, 3, 9, 63], [16, 3, 4, 4], spec(asym, 1)),
        ([1, 1, 5, 7], [16, 1, 3, 3], spec(Padding::Valid, 1)),
        ([1, 2, 4, 2], [48, 2, 4, 4], spec(Padding::uniform(2), 1)),
        ([1, 5, 7, 20], [16, 5, 3, 3], spec(asym, 1)),
        // Groups of 16 output channels.
        ([1, 8, 9, 17], [32, 4, 4, 4], spec(Padding::uniform(1), 2)),
        ([2, 6, 6, 33], [48, 2, 3, 3], spec(Padding::Same, 3)),
        // Rows that no tap reaches (the padding's): bias alone.
        ([1, 2, 2, 4], [16, 2, 3, 3], spec(Padding::uniform(4), 1)),
    ] {
        let g = spec.geometry(&xs, &ws, Some(&[ws[0]])).unwrap();
        assert!(fits(&g), "{xs:?} {ws:?} {spec:?} should fit the kernel");
        check(conv2d, xs, ws, spec, &mut seed);
    }
}

#[test]
fn it_runs_on_stride_2_layers_with_channels_to_fill_vectors() {
    let geometry = |xs: [usize; 4], ws: [usize; 4], stride, k| {
        strided(stride, Padding::uniform(1), 1)
            .geometry(&xs, &[ws[0], ws[1], k, k], None)
            .unwrap()
    };
    // W10's input gradient and a ResNet downsampling 3×3.
    assert_eq!(
        applies(&geometry([1, 32, 56, 56], [64, 32, 4, 4], [2, 2], 4)),
        avx512f()
    );
    assert_eq!(
        applies(&geometry([1, 64, 56, 56], [128, 64, 3, 3], [2, 2], 3)),
        avx512f()
    );
    // Too few input channels (the stem's), too many (256 of 3×3), rows under one block, not
    // whole vectors of output channels, stride 1, 5×5 kernels.
    for (xs, ws, stride, k) in [
        ([1, 3, 56, 56], [64, 3, 4, 4], [2, 2], 4),
        ([1, 256, 56, 56], [256, 256, 3, 3], [2, 2], 3),
        ([1, 64, 24, 24], [64, 64, 3, 3], [2, 2], 3),
        ([1, 32, 56, 56], [40, 32, 4, 4], [2, 2], 4),
        ([1, 32, 56, 56], [64, 32, 4, 4], [1, 1], 4),
        ([1, 32, 56, 56], [64, 32, 5, 5], [2, 2], 5),
    ] {
        assert!(!applies(&geometry(xs, ws, stride, k)), "{xs:?} {ws:?}");
    }
}
