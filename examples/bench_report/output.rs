//! The report's Markdown table and SVG chart.

use super::Row;

pub fn markdown(rows: &[Row], chain_line: &str, header: &str) -> String {
    let mut s = format!("{header}\n\n| workload | op | backend | median ms | min ms | max ms | GFLOP/s | GB/s | kernel ms | speedup vs cpu-fast |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let opt = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |v| format!("{v:.d$}"));
    for r in rows {
        let fast = rows
            .iter()
            .find(|f| f.workload == r.workload && f.backend == "cpu-fast")
            .map(|f| f.median_ms);
        let speedup = fast.map(|f| f / r.median_ms);
        s += &format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
            r.workload,
            r.op,
            r.backend,
            r.median_ms,
            r.min_ms,
            r.max_ms,
            opt(r.gflops, 2),
            opt(r.gbps, 2),
            opt(r.kernel_ms, 2),
            opt(speedup, 2)
        );
    }
    s + "\n" + chain_line + "\n"
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
