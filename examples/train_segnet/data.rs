//! The example's data: 32×32 single-channel images, each with one to three rectangles and
//! disks (6–12 px) on a noisy background, and per-pixel labels 0 background, 1 rectangle,
//! 2 disk. Fixed seeds.
#![allow(dead_code)]

use convpool::Tensor;

/// Image side.
pub const SIDE: usize = 32;

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// A set of `n` images `[n, 1, 32, 32]` and their labels `[n, 32, 32]`.
pub struct Set {
    pub images: Tensor,
    pub labels: Tensor<u32>,
}

impl Set {
    pub fn len(&self) -> usize {
        self.labels.shape()[0]
    }

    /// Images and labels `i0 .. i0 + n`.
    pub fn batch(&self, i0: usize, n: usize) -> (Tensor, Tensor<u32>) {
        let px = SIDE * SIDE;
        let x = self.images.data()[i0 * px..(i0 + n) * px].to_vec();
        let y = self.labels.data()[i0 * px..(i0 + n) * px].to_vec();
        (
            Tensor::new([n, 1, SIDE, SIDE], x).unwrap(),
            Tensor::new([n, SIDE, SIDE], y).unwrap(),
        )
    }
}

/// `n` images from `seed`. Shapes are drawn one after another; a later one covers an earlier.
pub fn generate(n: usize, seed: u64) -> Set {
    let mut rng = Rng::new(seed);
    let px = SIDE * SIDE;
    let mut images = vec![0.0f32; n * px];
    let mut labels = vec![0u32; n * px];
    for i in 0..n {
        let img = &mut images[i * px..][..px];
        let lab = &mut labels[i * px..][..px];
        for v in img.iter_mut() {
            *v = 0.3 * (rng.unit() - 0.5);
        }
        for _ in 0..rng.range(1, 3) {
            let disk = rng.unit() < 0.5;
            let (sh, sw) = (rng.range(6, 12), rng.range(6, 12));
            let size = if disk { sh } else { 0 };
            let (y0, x0) = (rng.range(0, SIDE - sh), rng.range(0, SIDE - sw));
            let level = 0.7 + 0.3 * rng.unit();
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let inside = if disk {
                        let r = size as f32 / 2.0;
                        let (cy, cx) = (y0 as f32 + r, x0 as f32 + r);
                        let (dy, dx) = (y as f32 + 0.5 - cy, x as f32 + 0.5 - cx);
                        dy * dy + dx * dx <= r * r
                    } else {
                        (y0..y0 + sh).contains(&y) && (x0..x0 + sw).contains(&x)
                    };
                    if inside {
                        img[y * SIDE + x] = level + 0.3 * (rng.unit() - 0.5);
                        lab[y * SIDE + x] = if disk { 2 } else { 1 };
                    }
                }
            }
        }
    }
    Set {
        images: Tensor::new([n, 1, SIDE, SIDE], images).unwrap(),
        labels: Tensor::new([n, SIDE, SIDE], labels).unwrap(),
    }
}
