//! The example's pictures: the loss curves of both backends (SVG) and held-out images with
//! their truth and prediction side by side (PNG).

use std::error::Error;

use super::data::SIDE;

/// Loss per training step of each backend: `(name, losses)`.
pub fn loss_svg(path: &str, curves: &[(&str, Vec<f32>)]) -> Result<(), Box<dyn Error>> {
    use plotters::prelude::*;
    let steps = curves.iter().map(|c| c.1.len()).max().unwrap_or(1).max(2);
    let top = curves
        .iter()
        .flat_map(|c| c.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.1f32, f32::max) as f64;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("train_segnet: training loss per step", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..steps as f64, (1e-3..top * 1.2).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("step (batch of 32)")
        .y_desc("softmax cross-entropy (log scale)")
        .draw()?;
    let colors = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xff, 0x7f, 0x0e)];
    for ((name, losses), c) in curves.iter().zip(colors) {
        let pts: Vec<_> = losses
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, (v as f64).max(1e-3)))
            .collect();
        chart
            .draw_series(std::iter::once(PathElement::new(pts, c.stroke_width(1))))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Colours of the classes: background, rectangle, disk.
const PALETTE: [[u8; 3]; 3] = [[20, 20, 20], [230, 120, 30], [40, 140, 230]];

/// One row per image: the image (grey), the true labels and the predicted ones, each scaled
/// 4× with a 4-pixel gap.
pub fn predictions_png(
    path: &str,
    images: &[f32],
    truth: &[u32],
    pred: &[u8],
) -> Result<(), Box<dyn Error>> {
    let (scale, gap) = (4, 4);
    let n = truth.len() / (SIDE * SIDE);
    let cell = SIDE * scale;
    let (w, h) = (3 * cell + 4 * gap, n * (cell + gap) + gap);
    let mut rgb = vec![255u8; w * h * 3];
    for i in 0..n {
        for y in 0..cell {
            for x in 0..cell {
                let at = i * SIDE * SIDE + (y / scale) * SIDE + x / scale;
                let grey = (images[at].clamp(-0.2, 1.2) + 0.2) / 1.4 * 255.0;
                let panels = [
                    [grey as u8; 3],
                    PALETTE[truth[at] as usize],
                    PALETTE[pred[at] as usize],
                ];
                for (k, c) in panels.iter().enumerate() {
                    let (px, py) = (gap + k * (cell + gap) + x, gap + i * (cell + gap) + y);
                    rgb[(py * w + px) * 3..][..3].copy_from_slice(c);
                }
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgb)?;
    Ok(())
}
