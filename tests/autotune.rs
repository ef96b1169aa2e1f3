//! The opt-in autotuner: a new key is timed once and persisted; a later `Gpu` with the same
//! cache times nothing and gives bitwise the same results; a corrupt or foreign cache is
//! ignored, never a panic; off by default.

mod common;

use std::path::PathBuf;

use common::{assert_close, gpu, sum_atol, Rng};
use convpool::{cpu, Conv2d, ConvTranspose2d, Gpu, Padding, Tensor};

/// A fresh cache path of this test's own.
fn cache(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convpool-autotune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("nested").join("tune.json")
}

fn tuned_gpu(shared: &Gpu, path: &PathBuf) -> Gpu {
    Gpu::builder()
        .adapter_name(shared.adapter_info().name.clone())
        .autotune(true)
        .tune_cache(path)
        .build()
        .unwrap()
}

/// conv2d and conv_transpose2d through `Auto` on `gpu`, checked against the reference.
fn run(gpu: &Gpu, rng: &mut Rng) -> Vec<Tensor> {
    let x = rng.tensor([2, 8, 12, 10]);
    let w = rng.tensor([16, 8, 3, 3]);
    let same = Conv2d {
        padding: Padding::Same,
        ..Default::default()
    };
    let y = gpu
        .conv2d(
            &gpu.upload(&x).unwrap(),
            &gpu.upload(&w).unwrap(),
            None,
            &same,
        )
        .unwrap();
    let y = y.download().unwrap();
    assert_close(
        "tuned conv2d",
        &y,
        &cpu::conv2d(&x, &w, None, &same).unwrap(),
        sum_atol(72),
        1e-4,
    );
    let wt = rng.tensor([8, 4, 4, 4]);
    let spec = ConvTranspose2d {
        stride: [2, 2],
        padding: [1, 1],
        ..Default::default()
    };
    let t = gpu
        .conv_transpose2d(
            &gpu.upload(&x).unwrap(),
            &gpu.upload(&wt).unwrap(),
            None,
            &spec,
        )
        .unwrap();
    let t = t.download().unwrap();
    assert_close(
        "tuned conv_transpose2d",
        &t,
        &cpu::conv_transpose2d(&x, &wt, None, &spec).unwrap(),
        sum_atol(32),
        1e-4,
    );
    vec![y, t]
}

#[test]
fn a_tuned_key_is_timed_once_persisted_and_reused_bit_for_bit() {
    let Some(shared) = gpu() else { return };
    let path = cache("reuse");
    let first = tuned_gpu(&shared, &path);
    assert!(first.autotuning());
    let a = run(&first, &mut Rng::new(7));
    assert_eq!(first.tuned_keys_for_tests(), 2, "one key per op");
    let text = std::fs::read_to_string(&path).expect("the cache was written");
    assert!(
        text.contains("convpool-tune-1")
            && text.contains("op=conv2d")
            && text.contains("op=conv_transpose2d"),
        "{text}"
    );
    // The same keys again on this Gpu, and on a new one over the same cache: no timing.
    let again = run(&first, &mut Rng::new(7));
    assert_eq!(first.tuned_keys_for_tests(), 2);
    let second = tuned_gpu(&shared, &path);
    let b = run(&second, &mut Rng::new(7));
    assert_eq!(
        second.tuned_keys_for_tests(),
        0,
        "a full cache times nothing"
    );
    for ((x, y), z) in a.iter().zip(&again).zip(&b) {
        assert_eq!(x, y);
        assert_eq!(x, z, "the same choices give the same bits");
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}

#[test]
fn a_corrupt_or_foreign_cache_is_ignored_and_replaced() {
    let Some(shared) = gpu() else { return };
    for (i, junk) in [
        "{{{ not json",
        r#"{"format": "convpool-tune-0", "entries": {}}"#,
        r#"{"format": "convpool-tune-1", "entries": {"adapter=elsewhere|op=conv2d": "NoSuchKernel"}}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let path = cache(&format!("junk{i}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, junk).unwrap();
        let g = tuned_gpu(&shared, &path);
        run(&g, &mut Rng::new(8));
        assert_eq!(g.tuned_keys_for_tests(), 2, "case {i}: the keys were timed afresh");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("convpool-tune-1") && text.contains("op=conv2d"), "case {i}: {text}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}

#[test]
fn autotuning_is_off_by_default() {
    let Some(shared) = gpu() else { return };
    if std::env::var_os("CONVPOOL_AUTOTUNE").is_some() {
        return; // the environment asked for it
    }
    assert!(!shared.autotuning());
    run(&shared, &mut Rng::new(9));
    assert_eq!(shared.tuned_keys_for_tests(), 0);
}
