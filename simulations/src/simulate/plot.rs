//! PNG plots a researcher would put in a paper: accuracy per round per run, the fairness gap
//! per round per run for each protected attribute, and final accuracy against the fairness gap
//! across the runs of a sweep. Drawn with plotters and a font shipped in the repository
//! (DejaVu Sans, `assets/`), so no system font or download is needed.

use super::output::{FrontierPoint, FrontierTarget, OutputError, RoundRow, SummaryRow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (960, 600);

fn register() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font: a failure here is a broken build.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn failed(path: &Path) -> impl Fn(String) -> OutputError + '_ {
    move |message| OutputError::Write {
        path: path.into(),
        message,
    }
}

/// A series: its label and (x, y) points.
type Series = (String, Vec<(f64, f64)>);

fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
    baseline: Option<(&str, f64)>,
) -> Result<(), OutputError> {
    let fail = failed(path);
    let points = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .chain(baseline.map(|(_, y)| (1.0, y)));
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::MAX, f64::MIN);
    for (x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if y_min > y_max {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.1).max(0.005);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(1.0..x_max.max(2.0), (y_min - pad)..(y_max + pad))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("round")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(e.to_string()))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| fail(e.to_string()))?;
    }
    if let Some((label, y)) = baseline {
        let grey = RGBColor(90, 90, 90);
        chart
            .draw_series(DashedLineSeries::new(
                [(1.0, y), (x_max.max(2.0), y)],
                8,
                5,
                grey.stroke_width(2),
            ))
            .map_err(|e| fail(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}

fn scatter(
    path: &Path,
    title: &str,
    x_label: &str,
    points: &[(String, f64, f64)],
) -> Result<(), OutputError> {
    let fail = failed(path);
    let xs = points.iter().map(|p| p.1);
    let ys = points.iter().map(|p| p.2);
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (y_min, y_max) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let x_pad = ((x_max - x_min) * 0.15).max(0.005);
    let y_pad = ((y_max - y_min) * 0.15).max(0.005);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        // Room on the right for the labels, which start at their points.
        .build_cartesian_2d(
            (x_min - x_pad)..(x_max + 3.0 * x_pad),
            (y_min - y_pad)..(y_max + y_pad),
        )
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("final accuracy")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (i, (label, x, y)) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series([Circle::new((*x, *y), 6, color.filled())])
            .map_err(|e| fail(e.to_string()))?;
        chart
            .draw_series([Text::new(label.clone(), (*x, *y), ("sans-serif", 13))])
            .map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))
}

/// Draws the plots into `out`; returns their paths.
pub(crate) fn draw(
    out: &Path,
    title: &str,
    rounds: &[RoundRow],
    summary: &[SummaryRow],
    attributes: &[String],
) -> Result<Vec<PathBuf>, OutputError> {
    register();
    let label = |run: &str| {
        summary
            .iter()
            .find(|s| s.run == run)
            .map_or(run.to_owned(), SummaryRow::label)
    };
    let per_run = |value: &dyn Fn(&RoundRow) -> Option<f64>| -> Vec<Series> {
        summary
            .iter()
            .map(|s| {
                let points = rounds
                    .iter()
                    .filter(|r| r.run == s.run)
                    .filter_map(|r| value(r).map(|v| (f64::from(r.outcome.round), v)))
                    .collect();
                (label(&s.run), points)
            })
            .collect()
    };
    let mut plots = Vec::new();
    let path = out.join("accuracy.png");
    let accuracy = per_run(&|r| r.outcome.quality.map(|q| q.accuracy));
    let pooled = summary
        .first()
        .map(|s| ("same model on the pooled data", s.centralized_accuracy));
    line_chart(
        &path,
        &format!("{title}: accuracy per round"),
        "accuracy",
        &accuracy,
        pooled,
    )?;
    plots.push(path);
    for (i, attribute) in attributes.iter().enumerate() {
        let path = out.join(format!("fairness_gap_{attribute}.png"));
        let gaps = per_run(&|r| r.outcome.gaps.get(i).and_then(|g| g.1));
        line_chart(
            &path,
            &format!("{title}: demographic-parity gap by {attribute}"),
            "selection-rate difference (max − min)",
            &gaps,
            None,
        )?;
        plots.push(path);
        if summary.len() > 1 {
            let points: Vec<(String, f64, f64)> = summary
                .iter()
                .filter_map(|s| {
                    let gap = s
                        .gaps
                        .iter()
                        .find(|g| &g.0 == attribute)
                        .and_then(|g| g.1)?;
                    s.final_accuracy.map(|accuracy| (s.label(), gap, accuracy))
                })
                .collect();
            if !points.is_empty() {
                let path = out.join(format!("accuracy_vs_fairness_gap_{attribute}.png"));
                scatter(
                    &path,
                    &format!("{title}: accuracy against the {attribute} gap"),
                    &format!("demographic-parity gap by {attribute}"),
                    &points,
                )?;
                plots.push(path);
            }
        }
    }
    Ok(plots)
}

/// `frontier.png`: seed-averaged final accuracy against the targeted gap, one labelled point per
/// mitigation setting (Pareto-optimal ones marked with *).
pub(crate) fn frontier(
    out: &Path,
    title: &str,
    points: &[FrontierPoint],
    target: &FrontierTarget,
) -> Result<PathBuf, OutputError> {
    register();
    let path = out.join("frontier.png");
    let seeds = points.iter().map(|p| p.seeds).max().unwrap_or(0);
    let labelled: Vec<(String, f64, f64)> = points
        .iter()
        .filter_map(|p| {
            let mark = if p.pareto { "*" } else { "" };
            Some((format!("{mark}{}", p.label), p.gap?, p.accuracy?))
        })
        .collect();
    scatter(
        &path,
        &format!("{title}: accuracy against fairness (mean of {seeds} seeds)"),
        &format!(
            "{} gap by {}",
            target.metric.replace('_', " "),
            target.attribute
        ),
        &labelled,
    )?;
    Ok(path)
}
