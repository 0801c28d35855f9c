//! PNG plots drawn in-process (plotters, with a vendored DejaVu Sans so nothing depends on the
//! host's fonts): the 2-D t-SNE scatter of a training set, coloured by class.

use std::path::Path;

use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../../static/fonts/DejaVuSans.ttf");
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A scatter plot of `points` with one colour and legend entry per class.
pub fn scatter_png(
    path: &Path,
    title: &str,
    points: &[(f32, f32)],
    labels: &[usize],
    classes: &[String],
) -> anyhow::Result<()> {
    register_font();
    let (mut x0, mut x1, mut y0, mut y1) = (
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !(x0.is_finite() && y0.is_finite()) {
        anyhow::bail!("no points to plot");
    }
    let pad = |a: f32, b: f32| ((b - a) * 0.05).max(1e-3);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let root = BitMapBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (c, name) in classes.iter().enumerate() {
        let colour = COLOURS[c % COLOURS.len()];
        let count = labels.iter().filter(|&&l| l == c).count();
        chart
            .draw_series(
                points
                    .iter()
                    .zip(labels)
                    .filter(|(_, l)| **l == c)
                    .map(|(&(x, y), _)| Circle::new((x, y), 4, colour.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("{name} ({count})"))
            .legend(move |(x, y)| Circle::new((x, y), 5, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scatter_plot_is_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.png");
        let classes = vec!["other".to_string(), "single peak".to_string()];
        scatter_png(
            &p,
            "t-SNE",
            &[(0.0, 0.0), (1.0, 2.0), (3.0, 1.0)],
            &[0, 1, 1],
            &classes,
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5000);
    }
}
