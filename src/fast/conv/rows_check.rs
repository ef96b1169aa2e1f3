//! `strided_row` (the strided copy behind im2col and the stem kernels' column phases) against
//! its definition, on every stride it special-cases and one it does not.

use super::strided_row;

#[test]
fn strided_row_matches_its_definition() {
    for s in 1..=5 {
        for w in [1, 2, 3, 7, 16, 31, 64] {
            for off in -9..=9 {
                for n in [0, 1, 5, 17, 40] {
                    let src: Vec<f32> = (0..w).map(|i| i as f32 + 1.0).collect();
                    let mut dst = vec![f32::NAN; n];
                    strided_row(&src, off, s, &mut dst);
                    let want: Vec<f32> = (0..n)
                        .map(|j| {
                            let at = (j * s) as isize + off;
                            if (0..w as isize).contains(&at) {
                                src[at as usize]
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    assert_eq!(dst, want, "s = {s}, w = {w}, off = {off}, n = {n}");
                }
            }
        }
    }
}
