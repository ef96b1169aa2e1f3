//! The AVX-512 Winograd kernel against the reference, on its edge shapes, and its choice.

use super::super::kernel_check::{check, spec};
use super::*;
use crate::params::conv::Padding;

#[test]
fn winograd_avx512_matches_the_reference() {
    if !avx512f() {
        eprintln!("winograd_avx512_matches_the_reference: no AVX-512F here; never runs");
        return;
    }
    let mut seed = 17;
    let asym = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    let (same, valid) = (Padding::uniform(1), Padding::Valid);
    for (xs, ws, spec) in [
        // One image: each chunk transforms its own weights. 49 tiles (8 blocks of 6 and a
        // block of 1), 4 + 2 output channels (a block of 4 and one channel by channel).
        ([1, 3, 14, 14], [6, 3, 3, 3], spec(same, 1)),
        // Odd sizes both ways (outputs cut at the bottom and right), every remainder of
        // tiles (1 … 5 in the last block), channels in blocks of 4 and of 1.
        ([1, 2, 5, 7], [9, 2, 3, 3], spec(same, 1)),
        ([1, 5, 4, 9], [4, 5, 3, 3], spec(valid, 1)),
        ([1, 1, 3, 3], [5, 1, 3, 3], spec(Padding::Full, 1)),
        ([1, 4, 9, 4], [7, 4, 3, 3], spec(asym, 1)),
        ([1, 2, 1, 1], [4, 2, 3, 3], spec(Padding::uniform(2), 1)),
        // Several images: the weights transformed once, shared; groups.
        ([3, 6, 6, 5], [10, 3, 3, 3], spec(same, 2)),
        ([2, 8, 7, 7], [12, 8, 3, 3], spec(asym, 1)),
        // Enough channels for several chunks of each pass.
        ([1, 40, 6, 6], [36, 40, 3, 3], spec(same, 1)),
        ([2, 33, 5, 6], [20, 33, 3, 3], spec(valid, 1)),
    ] {
        check(conv2d, xs, ws, spec, &mut seed);
    }
    // Every size of register block: 1 … 6 and 13 tiles, by 5 = 4 + 1 output channels.
    for tiles in [1, 2, 3, 4, 5, 6, 13] {
        check(
            conv2d,
            [1, 3, 2, 2 * tiles],
            [5, 3, 3, 3],
            spec(same, 1),
            &mut seed,
        );
    }
}

#[test]
fn winograd_avx512_runs_where_its_inputs_fit() {
    let same = spec(Padding::uniform(1), 1);
    for (xs, ws, want) in [
        // The benchmark's W4, a batch of it, 512 channels on 14×14; W1 and W2 (3.2 MB of
        // transformed input per image).
        ([1, 256, 14, 14], [256, 256, 3, 3], true),
        ([8, 256, 14, 14], [256, 256, 3, 3], true),
        ([1, 512, 14, 14], [512, 512, 3, 3], true),
        ([1, 64, 56, 56], [64, 64, 3, 3], true),
        ([8, 64, 56, 56], [64, 64, 3, 3], true),
        // More than 4 MB per image (64 channels at 112×112) runs the portable kernel, and
        // layers that are no Winograd layers neither.
        ([1, 64, 112, 112], [64, 64, 3, 3], false),
        ([1, 8, 14, 14], [64, 8, 3, 3], false),
        // From 16 channels each way (the portable kernel: 32).
        ([32, 16, 32, 32], [16, 16, 3, 3], true),
        ([32, 16, 16, 16], [32, 16, 3, 3], true),
    ] {
        let g = same.geometry(&xs, &ws, None).unwrap();
        assert_eq!(applies(&g), want && avx512f(), "{xs:?} {ws:?}");
    }
}
