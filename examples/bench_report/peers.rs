//! The CPU peers (`--peers`): `benchmarks/cpu_peers.py` times the same workloads in ONNX
//! Runtime and PyTorch with the report's thread count, and its JSON rows join the report's.

use super::Row;

/// The peers' rows of `runs` timed runs per cell, or why there are none (no python3, no
/// script, or no peer installed).
pub fn run(threads: usize, runs: usize) -> Result<Vec<Row>, String> {
    let script = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/benchmarks/cpu_peers.py"),
        "benchmarks/cpu_peers.py",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .ok_or("benchmarks/cpu_peers.py not found")?;
    let json = std::env::temp_dir().join(format!("convpool-peers-{}.json", std::process::id()));
    eprintln!("bench_report: timing the CPU peers ({script})");
    let status = std::process::Command::new("python3")
        .args([
            script,
            "--threads",
            &threads.to_string(),
            "--runs",
            &runs.to_string(),
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !status.success() {
        return Err(format!("{script} failed ({status})"));
    }
    let text = std::fs::read_to_string(&json).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&json);
    let rows: Vec<Row> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Err("no peer installed (pip install onnx onnxruntime torch)".into());
    }
    Ok(rows)
}

/// One row per (workload, backend) of the rows of several runs of the peers: the median,
/// min and max of all their timed runs, the rates scaled to that median.
pub fn merge(rows: Vec<Row>) -> Vec<Row> {
    let mut merged: Vec<Row> = Vec::new();
    for r in rows {
        match merged
            .iter_mut()
            .find(|m| m.workload == r.workload && m.backend == r.backend)
        {
            Some(m) => m.runs_ms.extend(r.runs_ms),
            None => merged.push(r),
        }
    }
    for m in &mut merged {
        if m.runs_ms.is_empty() {
            continue;
        }
        let (median, min, max) = super::stats(m.runs_ms.clone());
        let scale = m.median_ms / median;
        m.gflops = m.gflops.map(|g| g * scale);
        m.gbps = m.gbps.map(|g| g * scale);
        (m.median_ms, m.min_ms, m.max_ms) = (median, min, max);
    }
    merged
}

/// The fastest peer's median for `workload`, if any peer ran it.
pub fn best(rows: &[Row], workload: &str) -> Option<f64> {
    rows.iter()
        .filter(|r| r.workload == workload && is_peer(r))
        .map(|r| r.median_ms)
        .min_by(f64::total_cmp)
}

/// Whether `r` is a peer's row.
pub fn is_peer(r: &Row) -> bool {
    r.backend == "onnxruntime-cpu" || r.backend == "pytorch-cpu"
}
