//! The two SVG charts (`throughput.svg`, `latency.svg`), drawn with plotters' SVG backend (no
//! font libraries needed).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::model::Report;
use crate::CompareError;

fn chart_err(chart: &'static str) -> impl Fn(Box<dyn std::error::Error + '_>) -> CompareError {
    move |err| CompareError::Chart {
        chart,
        message: err.to_string(),
    }
}

/// Requests per second per route, as bars.
pub fn throughput_chart(report: &Report, path: &Path) -> Result<(), CompareError> {
    let err = chart_err("throughput.svg");
    let root = SVGBackend::new(path, (1100, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let n = report.routes.len();
    let top = report
        .routes
        .iter()
        .map(|r| r.requests_per_sec)
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Requests per second (higher is better)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // An integer range is inclusive as a discrete axis: `0..n - 1` is n segments.
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..top)
        .map_err(|e| err(Box::new(e)))?;
    let names: Vec<String> = report.routes.iter().map(|r| r.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("requests/s")
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .margin(14)
                .style_func(|x, _| match x {
                    SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                        Palette99::pick(*i).filled()
                    }
                    SegmentValue::Last => BLACK.filled(),
                })
                .data(
                    report
                        .routes
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (i, r.requests_per_sec)),
                ),
        )
        .map_err(|e| err(Box::new(e)))?;
    let label_style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(report.routes.iter().enumerate().map(|(i, r)| {
            let label = match r.ratio_to_hello {
                Some(ratio) => format!("{:.0} ({ratio:.2}x)", r.requests_per_sec),
                None => format!("{:.0}", r.requests_per_sec),
            };
            Text::new(
                label,
                (SegmentValue::CenterOf(i), r.requests_per_sec + top * 0.01),
                label_style.clone(),
            )
        }))
        .map_err(|e| err(Box::new(e)))?;
    root.present().map_err(|e| err(Box::new(e)))?;
    Ok(())
}

/// Latency at each percentile, one line per route, log scale.
pub fn latency_chart(report: &Report, path: &Path) -> Result<(), CompareError> {
    let err = chart_err("latency.svg");
    let root = SVGBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let points = authlab_loadgen::PERCENTILE_CURVE.len();
    let top = report
        .routes
        .iter()
        .flat_map(|r| r.load.curve.iter().map(|(_, us)| *us))
        .max()
        .unwrap_or(1)
        .max(10) as f64
        * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency by percentile (microseconds, log scale; lower is better)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0..points - 1, (1.0..top).log_scale())
        .map_err(|e| err(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_labels(points)
        .x_label_formatter(&|i| {
            authlab_loadgen::PERCENTILE_CURVE
                .get(*i)
                .map_or(String::new(), |p| format!("p{p}"))
        })
        .y_desc("us")
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    for (i, route) in report.routes.iter().enumerate() {
        let color = Palette99::pick(i);
        chart
            .draw_series(LineSeries::new(
                route
                    .load
                    .curve
                    .iter()
                    .enumerate()
                    .map(|(x, (_, us))| (x, (*us).max(1) as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(Box::new(e)))?
            .label(route.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    root.present().map_err(|e| err(Box::new(e)))?;
    Ok(())
}
