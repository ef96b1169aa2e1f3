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

/// In a child process (this test binary re-run on one test): opens `Gpu::new()`, which reads
/// `CONVPOOL_AUTOTUNE` and `CONVPOOL_TUNE_CACHE`, runs conv2d over channel counts `channels`
/// (each a new key) and prints what it tuned. Does nothing in the parent process.
#[test]
fn child_tunes_from_the_environment() {
    let Ok(channels) = std::env::var("CONVPOOL_TEST_CHILD_CHANNELS") else {
        return;
    };
    let gpu = Gpu::new().unwrap();
    let mut rng = Rng::new(4);
    for c in channels.split(',').map(|c| c.parse::<usize>().unwrap()) {
        let x = rng.tensor([1, c, 6, 6]);
        let w = rng.tensor([c, c, 3, 3]);
        let y = gpu
            .conv2d(
                &gpu.upload(&x).unwrap(),
                &gpu.upload(&w).unwrap(),
                None,
                &Conv2d::default(),
            )
            .unwrap();
        let want = cpu::conv2d(&x, &w, None, &Conv2d::default()).unwrap();
        assert_close(
            "child conv2d",
            &y.download().unwrap(),
            &want,
            sum_atol(9 * c),
            1e-4,
        );
    }
    println!(
        "child: autotuning={} timed={}",
        gpu.autotuning(),
        gpu.tuned_keys_for_tests()
    );
}

/// Runs `child_tunes_from_the_environment` in a new process with `env` set.
fn child(env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_tunes_from_the_environment", "--nocapture"])
        .env_remove("CONVPOOL_AUTOTUNE")
        .env_remove("CONVPOOL_TUNE_CACHE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn finish(c: std::process::Child) -> String {
    let out = c.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    text
}

/// The tuned keys of the cache file at `path` (the file must be a valid cache).
fn keys(path: &PathBuf) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["entries"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_environment_turns_the_tuner_on_and_names_its_cache() {
    if gpu().is_none() {
        return;
    }
    let path = cache("env");
    let p = path.to_str().unwrap();
    let on = finish(child(&[
        ("CONVPOOL_TEST_CHILD_CHANNELS", "3"),
        ("CONVPOOL_AUTOTUNE", "1"),
        ("CONVPOOL_TUNE_CACHE", p),
    ]));
    assert!(on.contains("child: autotuning=true timed=1"), "{on}");
    assert_eq!(keys(&path).len(), 1, "the key is in the named file");
    // Off unless asked: no timing and the file untouched.
    let before = std::fs::read(&path).unwrap();
    let off = finish(child(&[
        ("CONVPOOL_TEST_CHILD_CHANNELS", "5"),
        ("CONVPOOL_AUTOTUNE", "0"),
        ("CONVPOOL_TUNE_CACHE", p),
    ]));
    assert!(off.contains("child: autotuning=false timed=0"), "{off}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A second tuned process finds the key and times nothing.
    let again = finish(child(&[
        ("CONVPOOL_TEST_CHILD_CHANNELS", "3"),
        ("CONVPOOL_AUTOTUNE", "true"),
        ("CONVPOOL_TUNE_CACHE", p),
    ]));
    assert!(again.contains("child: autotuning=true timed=0"), "{again}");
    // An unreadable cache (a directory) is ignored with a warning.
    let dir = path.parent().unwrap().join("a-directory.json");
    std::fs::create_dir_all(&dir).unwrap();
    let warned = finish(child(&[
        ("CONVPOOL_TEST_CHILD_CHANNELS", "3"),
        ("CONVPOOL_AUTOTUNE", "1"),
        ("CONVPOOL_TUNE_CACHE", dir.to_str().unwrap()),
    ]));
    assert!(
        warned.contains("ignoring the tuning cache") && warned.contains("cannot be read"),
        "{warned}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}

#[test]
fn two_processes_tuning_different_keys_at_once_keep_every_entry() {
    if gpu().is_none() {
        return;
    }
    let path = cache("concurrent");
    let p = path.to_str().unwrap();
    // Each writes its keys one by one while the other does, into the same file; each write
    // holds the file for 150 ms between reading it and renaming the new one over it.
    let (a, b) = (
        child(&[
            ("CONVPOOL_TEST_CHILD_CHANNELS", "1,3,9,33"),
            ("CONVPOOL_TUNE_TEST_DELAY_MS", "150"),
            ("CONVPOOL_AUTOTUNE", "1"),
            ("CONVPOOL_TUNE_CACHE", p),
        ]),
        child(&[
            ("CONVPOOL_TEST_CHILD_CHANNELS", "2,5,17,65"),
            ("CONVPOOL_TUNE_TEST_DELAY_MS", "150"),
            ("CONVPOOL_AUTOTUNE", "1"),
            ("CONVPOOL_TUNE_CACHE", p),
        ]),
    );
    let (a, b) = (finish(a), finish(b));
    // Channel counts round up to powers of two in the key: 1, 4, 16, 64 and 2, 8, 32, 128.
    let timed = "child: autotuning=true timed=4";
    assert!(a.contains(timed) && b.contains(timed), "{a}\n{b}");
    let found = keys(&path);
    assert_eq!(
        found.len(),
        8,
        "entries lost between the writers: {found:#?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}
