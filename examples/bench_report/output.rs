//! The report's Markdown table and SVG chart.

use super::Row;

/// The report's table. `copy_gbps`: the machine's copy bandwidth, against which each pooling
/// cell's GB/s is shown; `peers`: `None` when not asked for, else whether the CPU peers ran
/// (their rows are in `rows`) or why not.
pub fn markdown(
    rows: &[Row],
    chain_line: &str,
    header: &str,
    copy_gbps: f64,
    peers: Option<&Result<(), String>>,
) -> String {
    let mut s = format!("{header}\n\n| workload | op | backend | median ms | min ms | max ms | GFLOP/s | GB/s | of copy BW | kernel ms | speedup vs cpu-fast | vs best CPU peer |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let opt = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |v| format!("{v:.d$}"));
    for r in rows {
        let fast = rows
            .iter()
            .find(|f| f.workload == r.workload && f.backend == "cpu-fast")
            .map(|f| f.median_ms);
        let speedup = fast.map(|f| f / r.median_ms);
        let vs_peer = match peers {
            Some(Ok(())) if r.backend == "cpu-fast" => opt(
                super::peers::best(rows, &r.workload).map(|b| b / r.median_ms),
                2,
            ),
            Some(Err(_)) if r.backend == "cpu-fast" => "no peers".into(),
            _ => "–".into(),
        };
        let of_copy = r.gbps.map(|g| format!("{:.0}%", 100.0 * g / copy_gbps));
        s += &format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.op,
            r.backend,
            r.median_ms,
            r.min_ms,
            r.max_ms,
            opt(r.gflops, 2),
            opt(r.gbps, 2),
            of_copy.unwrap_or_else(|| "–".into()),
            opt(r.kernel_ms, 2),
            opt(speedup, 2),
            vs_peer,
        );
    }
    let note = match peers {
        None => "CPU peers: not run (`--peers` runs ONNX Runtime and PyTorch on the same workloads).".to_string(),
        Some(Ok(())) => "vs best CPU peer: the faster of ONNX Runtime and PyTorch, divided by the fast path's time (above 1: the fast path is faster).".to_string(),
        Some(Err(why)) => format!("CPU peers: none ran ({why}; `pip install onnx onnxruntime torch`)."),
    };
    s + "\n" + chain_line + "\n\n" + &note + "\n"
}

pub fn svg(
    path: &str,
    rows: &[Row],
    adapter: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.workload.clone())
        .fold(Vec::new(), |mut v, w| {
            if !v.contains(&w) {
                v.push(w);
            }
            v
        });
    let backends = ["gpu", "cpu-fast", "cpu-ref"];
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    let value = |r: &Row| r.gflops.or(r.gbps).unwrap_or(0.0).max(1e-3);
    let top = rows.iter().map(value).fold(1.0f64, f64::max) * 2.0;
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("convpool throughput per workload (log scale) — {adapter}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..ids.len() as f64, (1e-3..top).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("GFLOP/s (W1–W5), GB/s (W6–W8)")
        .draw()?;
    for (bi, (b, c)) in backends.iter().zip(colors).enumerate() {
        let bars: Vec<_> = rows
            .iter()
            .filter(|r| r.backend == *b)
            .filter_map(|r| {
                ids.iter()
                    .position(|i| *i == r.workload)
                    .map(|x| (x, value(r)))
            })
            .map(|(x, v)| {
                let x0 = x as f64 + 0.1 + bi as f64 * 0.27;
                Rectangle::new([(x0, 1e-3), (x0 + 0.25, v)], c.filled())
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(*b)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    for (i, id) in ids.iter().enumerate() {
        root.draw(&Text::new(
            id.clone(),
            chart.backend_coord(&(i as f64 + 0.4, 1e-3)),
            ("sans-serif", 15),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
