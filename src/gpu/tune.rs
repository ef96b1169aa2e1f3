//! The opt-in autotuner of the convolutions' kernel choice: on the first `Auto` call of a new
//! key it times every candidate kernel on the real inputs, pins the winner for the life of the
//! `Gpu` and persists it to a JSON cache, so a later process with the same cache times nothing
//! and makes the same choices.
//!
//! Off by default: then every choice is a pure function of the shape and the device. A key is
//! the adapter (vendor, device, driver, backend), the crate version, a hash of the candidate
//! set, the op, its exact geometry (kernel, stride, dilation, padding, groups) and its batch,
//! channel and spatial sizes rounded up to powers of two. The heuristic (`Auto`) is kept
//! unless a candidate beats it by at least 5%.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::{ConvAlgo, Gpu};
use crate::error::Result;
use crate::params::conv::ConvGeometry;

/// What the cache file says it is; another value makes the whole file foreign.
const FORMAT: &str = "convpool-tune-1";
/// Timed runs per candidate, after one warm-up run.
const SAMPLES: usize = 5;
/// A candidate replaces the heuristic only if its median is at most this fraction of it.
const MARGIN: f64 = 0.95;

thread_local! {
    /// Set while this thread times candidates: their own calls (`Auto` among them, the
    /// heuristic) run as asked, untuned.
    static TIMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The tuner's state in a `Gpu`.
#[derive(Default)]
pub(crate) struct Tuner {
    /// `None`: autotuning is off.
    cache: Option<PathBuf>,
    /// Choices pinned for the life of the `Gpu`, by key: from the file or timed here.
    pinned: Mutex<HashMap<String, ConvAlgo>>,
    /// Keys timed by this `Gpu` (for tests: a process with a full cache times none).
    timed: AtomicUsize,
    /// The part of every key that is this `Gpu`'s (see `Gpu::tune_key`).
    prefix: std::sync::OnceLock<String>,
}

/// Where the cache lives by default: `$XDG_CACHE_HOME/convpool/tune.json`, else
/// `$HOME/.cache/convpool/tune.json` (`%LOCALAPPDATA%` on Windows), else the temp directory.
pub(crate) fn default_cache() -> PathBuf {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .or_else(|| env("LOCALAPPDATA"))
        .unwrap_or_else(std::env::temp_dir);
    base.join("convpool").join("tune.json")
}

/// Whether `CONVPOOL_AUTOTUNE` asks for autotuning (`1`, `true`, `on`, `yes`).
pub(crate) fn autotune_from_env() -> bool {
    std::env::var("CONVPOOL_AUTOTUNE")
        .is_ok_and(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "on" | "yes"))
}

/// The cache file named by `CONVPOOL_TUNE_CACHE`, else the default.
pub(crate) fn cache_from_env() -> PathBuf {
    std::env::var_os("CONVPOOL_TUNE_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_cache)
}

/// The entries of the cache file at `path`, printing a warning for whatever is ignored.
fn read_cache(path: &Path) -> HashMap<String, ConvAlgo> {
    let (entries, warnings) = read_entries(path);
    for w in warnings {
        eprintln!("convpool: {w}");
    }
    entries
}

/// The entries of the cache file at `path`, and a warning for each thing ignored: a missing
/// file is empty (no warning); one that cannot be read, is not UTF-8, not JSON or not a cache
/// of this format is ignored whole; an entry that names no kernel choice is skipped.
fn read_entries(path: &Path) -> (HashMap<String, ConvAlgo>, Vec<String>) {
    let file = |why: &str| {
        let w = format!("ignoring the tuning cache {}: {why}", path.display());
        (HashMap::new(), vec![w])
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (HashMap::new(), vec![]),
        Err(e) => return file(&format!("it cannot be read ({e})")),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return file("not UTF-8");
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return file("not JSON");
    };
    if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return file("not a convpool tuning cache of this format");
    }
    let Some(entries) = v.get("entries").and_then(|e| e.as_object()) else {
        return file("no entries");
    };
    let (mut out, mut warnings) = (HashMap::new(), Vec::new());
    for (k, v) in entries {
        match v.as_str().and_then(algo_named) {
            Some(a) => {
                out.insert(k.clone(), a);
            }
            None => warnings.push(format!(
                "ignoring tuning cache entry {k:?} of {}: {v} is no kernel choice",
                path.display()
            )),
        }
    }
    (out, warnings)
}

/// Temporary files of this process get distinct names (two tuned `Gpu`s may write at once).
static TEMP_FILES: AtomicUsize = AtomicUsize::new(0);

/// Adds `key → algo` to the cache file, merged with what other writers put there, without
/// losing theirs: under an advisory lock on `<cache>.lock` (held by one writer at a time,
/// across processes), the file is read, merged, written whole to a temporary file of a name
/// of its own and renamed over the cache (so readers, who take no lock, see the old file or
/// the new one, never half of one). Failures are warnings; where the lock cannot be had (a
/// file system without locks) the write goes ahead unlocked.
fn write_cache(path: &Path, key: &str, algo: ConvAlgo) {
    let fail = |what: &str, e: std::io::Error| {
        eprintln!(
            "convpool: could not {what} the tuning cache {}: {e}",
            path.display()
        );
    };
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail("create the directory of", e);
        }
    }
    let lock_path = path.with_extension("json.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|f| f.lock().map(|()| f));
    if let Err(e) = &lock {
        eprintln!(
            "convpool: could not lock the tuning cache {} ({e}); writing it unlocked",
            lock_path.display()
        );
    }
    let mut entries = read_cache(path);
    entries.insert(key.to_string(), algo);
    // For the concurrency test alone: widen the window between reading and renaming, where
    // writers without the lock would lose each other's entries.
    if let Some(ms) = std::env::var("CONVPOOL_TUNE_TEST_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut sorted: Vec<_> = entries.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let map: serde_json::Map<_, _> = sorted
        .into_iter()
        .map(|(k, a)| (k, serde_json::Value::from(format!("{a:?}"))))
        .collect();
    let doc = serde_json::json!({ "format": FORMAT, "entries": map });
    let tmp = path.with_extension(format!(
        "json.{}.{}.tmp",
        std::process::id(),
        TEMP_FILES.fetch_add(1, Ordering::Relaxed)
    ));
    let written =
        std::fs::write(&tmp, format!("{doc:#}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        fail("write", e);
        let _ = std::fs::remove_file(&tmp);
    }
    // Dropping the lock file's handle releases the lock.
    drop(lock);
}

fn algo_named(name: &str) -> Option<ConvAlgo> {
    ConvAlgo::ALL
        .iter()
        .copied()
        .find(|a| format!("{a:?}") == name)
}

impl Tuner {
    /// A tuner persisting to `cache`, with the entries already there; `None`: off.
    pub(crate) fn new(cache: Option<PathBuf>) -> Tuner {
        let pinned = cache.as_deref().map(read_cache).unwrap_or_default();
        Tuner {
            cache,
            pinned: Mutex::new(pinned),
            timed: AtomicUsize::new(0),
            prefix: Default::default(),
        }
    }
}

/// FNV-1a, for the candidate set's hash (stable across processes and builds).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Gpu {
    /// Whether automatic kernel choices are autotuned on this `Gpu`.
    pub fn autotuning(&self) -> bool {
        self.inner.tuner.cache.is_some()
    }

    /// How many keys this `Gpu` has timed (a `Gpu` whose cache holds every key times none).
    #[doc(hidden)]
    pub fn tuned_keys_for_tests(&self) -> usize {
        self.inner.tuner.timed.load(Ordering::Relaxed)
    }

    /// The candidates timed here: every choice that runs its own kernels on this device.
    fn candidates(&self) -> Vec<ConvAlgo> {
        ConvAlgo::ALL
            .iter()
            .copied()
            .filter(|&a| a != ConvAlgo::Gemm || self.inner.subgroup_gemm)
            .collect()
    }

    /// The key of convolution `op` of geometry `g`: this `Gpu`'s part (adapter, crate version,
    /// candidate set; made once), then the op's.
    fn tune_key(&self, op: &str, g: &ConvGeometry) -> String {
        let prefix = self.inner.tuner.prefix.get_or_init(|| {
            let i = &self.inner.info;
            let names: Vec<String> = self.candidates().iter().map(|a| format!("{a:?}")).collect();
            format!(
                "adapter={:#x}:{:#x}:{}:{}:{:?}|convpool={}|candidates={:016x}",
                i.vendor,
                i.device,
                i.driver,
                i.driver_info,
                i.backend,
                env!("CARGO_PKG_VERSION"),
                fnv(&names.join(",")),
            )
        });
        let b = |v: usize| v.next_power_of_two();
        format!(
            "{prefix}|op={op}|kernel={:?}|stride={:?}|dilation={:?}|pad={:?}/{:?}|groups={}|n={}|c={}x{}|hw={}x{}",
            g.kernel,
            g.stride,
            g.dilation,
            g.pad_before,
            g.pad_after,
            g.groups,
            b(g.n),
            b(g.c_in),
            b(g.c_out),
            b(g.input[0]),
            b(g.input[1]),
        )
    }

    /// The median time of each candidate that runs: one warm-up run, then [`SAMPLES`].
    fn time_candidates(
        &self,
        timestamps: bool,
        run: &impl Fn(ConvAlgo) -> Result<()>,
    ) -> Vec<(ConvAlgo, f64)> {
        let mut scores = Vec::new();
        for a in self.candidates() {
            let sample = || -> Result<f64> {
                if timestamps {
                    if let (_, Some(ms)) = self.profile(|| run(a))? {
                        return Ok(ms);
                    }
                }
                let start = Instant::now();
                run(a)?;
                self.synchronize()?;
                Ok(start.elapsed().as_secs_f64() * 1e3)
            };
            // A candidate that fails (a device limit, say) is skipped.
            if sample().is_err() {
                continue;
            }
            let mut times: Vec<f64> = (0..SAMPLES).filter_map(|_| sample().ok()).collect();
            if times.len() < SAMPLES {
                continue;
            }
            times.sort_by(f64::total_cmp);
            scores.push((a, times[SAMPLES / 2]));
        }
        scores
    }

    /// The kernel for a convolution `op` of geometry `g` asked to run with `algo`: `algo`
    /// itself unless it is `Auto` and autotuning is on; then the pinned choice for its key, or
    /// the winner of timing every candidate with `run` (the heuristic, `Auto`, unless another
    /// is at least 5% faster), pinned and persisted.
    pub(super) fn tuned(
        &self,
        op: &'static str,
        g: &ConvGeometry,
        algo: ConvAlgo,
        run: impl Fn(ConvAlgo) -> Result<()>,
    ) -> Result<ConvAlgo> {
        let t = &self.inner.tuner;
        let Some(path) = &t.cache else {
            return Ok(algo);
        };
        if algo != ConvAlgo::Auto || TIMING.get() {
            return Ok(algo);
        }
        let key = self.tune_key(op, g);
        if let Some(&a) = t.pinned.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(a);
        }
        // Kernel time from timestamps where a hardware device has them (unless the caller is
        // inside a `profile` of its own), else wall time from submit to done (lavapipe's
        // timestamps stop bracketing passes once a texture-binding kernel has run).
        let timestamps = !self.inner.profiler.active()
            && self.inner.info.device_type != wgpu::DeviceType::Cpu
            && self
                .inner
                .device
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY);
        self.synchronize()?;
        TIMING.set(true);
        let scores = self.time_candidates(timestamps, &run);
        TIMING.set(false);
        let heuristic = scores.iter().find(|s| s.0 == ConvAlgo::Auto).map(|s| s.1);
        let best = scores
            .iter()
            .filter(|s| s.0 != ConvAlgo::Auto)
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .copied();
        let choice = match (best, heuristic) {
            (Some((a, ms)), Some(h)) if ms <= MARGIN * h => a,
            (Some((a, _)), None) => a,
            _ => ConvAlgo::Auto,
        };
        t.timed.fetch_add(1, Ordering::Relaxed);
        t.pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), choice);
        write_cache(path, &key, choice);
        Ok(choice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_and_refuses_what_it_does_not_know() {
        let dir = std::env::temp_dir().join(format!("convpool-tune-unit-{}", std::process::id()));
        let path = dir.join("t.json");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read_cache(&path).is_empty(), "a missing file is empty");
        write_cache(&path, "k1", ConvAlgo::GemmWide64);
        write_cache(&path, "k2", ConvAlgo::Auto);
        let back = read_cache(&path);
        assert_eq!(back.get("k1"), Some(&ConvAlgo::GemmWide64));
        assert_eq!(back.get("k2"), Some(&ConvAlgo::Auto));
        for (bad, why) in [
            (&b"not json at all"[..], "not JSON"),
            (&b"{\"format\": \"convpool-tune-1\", \xff}"[..], "not UTF-8"),
            (
                br#"{"format": "someone-else-1", "entries": {"k1": "Direct"}}"#,
                "format",
            ),
            (br#"{"format": "convpool-tune-1"}"#, "no entries"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let (entries, warnings) = read_entries(&path);
            assert!(entries.is_empty(), "{why}");
            assert_eq!(warnings.len(), 1, "{why}: {warnings:?}");
            assert!(warnings[0].contains(why), "{why}: {warnings:?}");
        }
        // A directory where the file should be cannot be read: a warning too.
        let (entries, warnings) = read_entries(&dir);
        assert!(entries.is_empty());
        assert!(warnings[0].contains("cannot be read"), "{warnings:?}");
        std::fs::write(
            &path,
            r#"{"format": "convpool-tune-1", "entries": {"a": "Direct", "b": "Warp9", "c": 3}}"#,
        )
        .unwrap();
        let (some, warnings) = read_entries(&path);
        assert_eq!(some.len(), 1);
        assert_eq!(some.get("a"), Some(&ConvAlgo::Direct));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
