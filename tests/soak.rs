//! The soak: 10,000 mixed ops on one `Gpu` with bounded memory. Alone in its test binary, so
//! that no other test's allocations blur the resident-set figures.

mod common;

use common::{assert_close, gpu, mixed_op, Rng};
use convpool::{Conv2d, Gpu, Pool2d, Tensor};

/// Resident set size of this process in bytes (Linux), or 0 elsewhere.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[test]
fn soak_of_ten_thousand_ops_keeps_memory_bounded() {
    let Some(_) = gpu() else { return };
    // A private Gpu, so the other tests' work does not blur the memory figures.
    let gpu = Gpu::new().unwrap();
    let mut rng = Rng::new(9);
    let inputs: Vec<(Tensor, Tensor)> = (0..8)
        .map(|_| {
            (
                rng.int_tensor([1, 4, 8, 8], 4),
                rng.int_tensor([4, 4, 3, 3], 2),
            )
        })
        .collect();
    let (mut before, total, warm_up) = (0, 10_000, 1_000);
    for k in 0..total {
        if k == warm_up {
            before = rss();
        }
        let (x, w) = &inputs[k % inputs.len()];
        if k % 50 == 0 {
            let (got, want) = mixed_op(&gpu, k / 50, x, w, k as u64);
            assert_close(&format!("soak op {k}"), &got, &want, 1e-5, 1e-5);
        } else {
            // Submitted and dropped without a download: the library must not hold on to them.
            let gx = gpu.upload(x).unwrap();
            let p = Pool2d::new([2, 2]);
            match k % 3 {
                0 => drop(
                    gpu.conv2d(&gx, &gpu.upload(w).unwrap(), None, &Conv2d::default())
                        .unwrap(),
                ),
                1 => drop(gpu.max_pool2d(&gx, &p).unwrap()),
                _ => drop(
                    gpu.avg_unpool2d(&gpu.avg_pool2d(&gx, &p).unwrap(), &p, [8, 8])
                        .unwrap(),
                ),
            }
        }
        if k % 200 == 0 {
            gpu.synchronize().unwrap();
        }
    }
    gpu.synchronize().unwrap();
    let after = rss();
    println!("soak: {total} ops; resident set {:.1} MiB after {warm_up} warm-up ops, {:.1} MiB at the end", before as f64 / 1048576.0, after as f64 / 1048576.0);
    assert!(
        after <= before + (16 << 20),
        "resident set grew from {before} to {after} bytes over the soak"
    );
}
