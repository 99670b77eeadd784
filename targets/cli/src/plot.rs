//! PNG charts of a run (plotters, bitmap backend): training and held-out loss
//! with held-out accuracy, and the learning-rate range test.
//!
//! Text needs a TrueType font. The file named by `EMBER_FONT`, or the first of
//! a few common system fonts (DejaVu, Liberation, Noto, Arial), is used; with
//! none, the charts are drawn without text.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

const FONT_PATHS: [&str; 9] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font once; whether one was found.
fn have_font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let candidates = std::env::var("EMBER_FONT")
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // Registered fonts live as long as the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Training loss per step and held-out loss per evaluation (left), held-out
/// accuracy per evaluation (right).
pub fn training_curves(
    path: &Path,
    train_loss: &[(f64, f64)],
    eval_loss: &[(f64, f64)],
    eval_accuracy: &[(f64, f64)],
) -> Result<(), String> {
    let text = have_font();
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (left, right) = root.split_horizontally(640);
    let max_step = train_loss
        .iter()
        .chain(eval_loss)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let (lo, hi) = range(train_loss.iter().chain(eval_loss).map(|p| p.1));

    let mut chart = ChartBuilder::on(&left);
    chart
        .margin(12)
        .x_label_area_size(if text { 36 } else { 8 })
        .y_label_area_size(if text { 56 } else { 8 });
    if text {
        chart.caption("loss", ("sans-serif", 20));
    }
    let mut chart = chart
        .build_cartesian_2d(0.0..max_step, lo.max(0.0)..hi)
        .map_err(|e| err(path, e))?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("step")
        .x_label_formatter(&|v| format!("{v:.0}"));
    if !text {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(path, e))?;
    let train = chart
        .draw_series(LineSeries::new(
            train_loss.iter().copied(),
            BLUE.stroke_width(1),
        ))
        .map_err(|e| err(path, e))?;
    if text {
        train
            .label("training (per step)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    }
    let eval = chart
        .draw_series(LineSeries::new(eval_loss.iter().copied(), RED.stroke_width(2)).point_size(3))
        .map_err(|e| err(path, e))?;
    if text {
        eval.label("held-out")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(path, e))?;
    }

    let mut chart = ChartBuilder::on(&right);
    chart
        .margin(12)
        .x_label_area_size(if text { 36 } else { 8 })
        .y_label_area_size(if text { 56 } else { 8 });
    if text {
        chart.caption("held-out accuracy", ("sans-serif", 20));
    }
    let mut chart = chart
        .build_cartesian_2d(0.0..max_step, 0.0..1.0)
        .map_err(|e| err(path, e))?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("step")
        .x_label_formatter(&|v| format!("{v:.0}"));
    if !text {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(path, e))?;
    chart
        .draw_series(
            LineSeries::new(eval_accuracy.iter().copied(), GREEN.stroke_width(2)).point_size(3),
        )
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Smoothed loss against the learning rate (log scale), with the suggested
/// rate marked.
pub fn lr_curve(path: &Path, points: &[(f64, f64)], suggested: Option<f64>) -> Result<(), String> {
    let text = have_font();
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let lr_lo = points.first().map_or(1e-7, |p| p.0);
    let lr_hi = points.last().map_or(10.0, |p| p.0).max(lr_lo * 10.0);
    let (lo, hi) = range(points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root);
    chart
        .margin(12)
        .x_label_area_size(if text { 36 } else { 8 })
        .y_label_area_size(if text { 56 } else { 8 });
    if text {
        chart.caption("learning-rate range test", ("sans-serif", 20));
    }
    let mut chart = chart
        .build_cartesian_2d((lr_lo..lr_hi).log_scale(), lo..hi)
        .map_err(|e| err(path, e))?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("learning rate")
        .y_desc("smoothed loss")
        .x_label_formatter(&|v| format!("{v:.0e}"));
    if !text {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| err(path, e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(path, e))?;
    if let Some(lr) = suggested {
        chart
            .draw_series(LineSeries::new([(lr, lo), (lr, hi)], RED.stroke_width(1)))
            .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}
