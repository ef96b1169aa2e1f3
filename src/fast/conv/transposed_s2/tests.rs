//! The stride-2 4×4 transposed convolution kernel against the plain reference, called
//! directly.

use super::super::kernel_check::{check_runs, tensor};
use super::*;
use crate::params::conv::ConvTranspose2d;
use crate::tensor::Tensor;

/// Runs the kernel on seeded inputs of shapes `xs` (input) and `ws` (`[C_in, C_out/groups,
/// 4, 4]`) under `spec`, without a bias and with one and a fused activation, against the
/// reference; every element written; twice for bitwise equality.
fn check(xs: [usize; 4], ws: [usize; 4], spec: ConvTranspose2d, seed: &mut u64) {
    let cout = ws[1] * spec.groups;
    let (x, w, b) = (tensor(&xs, seed), tensor(&ws, seed), tensor(&[cout], seed));
    let g = spec.geometry(&xs, &ws, Some(&[cout])).unwrap();
    assert!(applies(&g), "{xs:?} {ws:?} {spec:?} should run here");
    let leaky = Activation::LeakyRelu { slope: 0.25 };
    for (bias, act) in [(None, Activation::Identity), (Some(&b), leaky)] {
        let conv = crate::cpu::conv_transpose2d(&x, &w, bias, &spec).unwrap();
        let want = crate::cpu::activation(&conv, act).unwrap();
        let what = format!("{xs:?} {ws:?} {spec:?} bias {}", bias.is_some());
        check_runs(&what, &want, (g.input[1], xs[1] / spec.groups * 4), |dst| {
            conv_transpose2d(&g, x.data(), w.data(), bias.map(Tensor::data), (dst, act))
        });
    }
}

fn spec(padding: [usize; 2], output_padding: [usize; 2], groups: usize) -> ConvTranspose2d {
    ConvTranspose2d {
        stride: [2, 2],
        padding,
        output_padding,
        groups,
        ..Default::default()
    }
}

#[test]
fn transposed_s2_matches_the_reference() {
    if !avx512f() {
        eprintln!("transposed_s2_matches_the_reference: no AVX-512F here; the kernel never runs");
        return;
    }
    let mut seed = 17;
    for (xs, ws, spec) in [
        // W5's layer on a small image: 28-column blocks, both parities of padding.
        ([1, 8, 7, 14], [8, 16, 4, 4], spec([1, 1], [0, 0], 1)),
        ([1, 5, 9, 15], [5, 16, 4, 4], spec([0, 0], [0, 0], 1)),
        // Odd sizes, asymmetric padding (0–3), output padding; rows of 3 to 61 columns
        // (a last block of 1–27 columns, blocks of 28 and a row under one vector).
        ([2, 3, 5, 31], [3, 32, 4, 4], spec([2, 3], [1, 0], 1)),
        ([1, 4, 6, 3], [4, 16, 4, 4], spec([3, 0], [0, 1], 1)),
        ([1, 2, 1, 1], [2, 16, 4, 4], spec([0, 1], [1, 1], 1)),
        // A band whose last row no tap reaches (the output padding's): bias alone.
        ([1, 1, 1, 1], [1, 16, 4, 4], spec([0, 0], [1, 1], 1)),
        ([1, 1, 1, 2], [1, 16, 4, 4], spec([0, 2], [1, 1], 1)),
        ([1, 1, 4, 30], [1, 48, 4, 4], spec([1, 2], [0, 0], 1)),
        // Groups: two groups of 16 output channels, three of 16 from 2 inputs each.
        ([1, 6, 5, 9], [6, 16, 4, 4], spec([1, 1], [0, 0], 2)),
        ([2, 6, 3, 20], [6, 16, 4, 4], spec([1, 0], [1, 1], 3)),
    ] {
        check(xs, ws, spec, &mut seed);
    }
}

#[test]
fn it_runs_on_stride_2_4x4_layers_with_whole_vectors_of_channels() {
    let geometry = |ws: [usize; 4], stride, groups| {
        let spec = ConvTranspose2d {
            stride,
            padding: [1, 1],
            groups,
            ..Default::default()
        };
        spec.geometry(&[1, ws[0], 8, 8], &ws, None).unwrap()
    };
    // W5, and two groups of 16.
    assert_eq!(applies(&geometry([64, 32, 4, 4], [2, 2], 1)), avx512f());
    assert_eq!(applies(&geometry([64, 16, 4, 4], [2, 2], 2)), avx512f());
    // Not whole vectors of output channels, stride 1, 3×3 kernels.
    assert!(!applies(&geometry([64, 24, 4, 4], [2, 2], 1)));
    assert!(!applies(&geometry([64, 32, 4, 4], [1, 1], 1)));
    assert!(!applies(&geometry([64, 32, 3, 3], [2, 2], 1)));
}
