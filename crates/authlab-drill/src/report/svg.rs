//! `timeline.svg`: requests per second by status, one panel per backend, the fault marked with a
//! red vertical line (plotters' SVG backend, as `authlab compare` draws its charts).

use std::path::Path;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{BUCKET_MS, DrillReport};
use crate::DrillError;
use crate::load::Backend;

/// The status classes drawn, with their colours.
const CLASSES: [(&str, RGBColor); 5] = [
    ("2xx", RGBColor(46, 139, 87)),
    ("401", RGBColor(255, 140, 0)),
    ("503", RGBColor(200, 30, 30)),
    ("other", RGBColor(120, 60, 160)),
    ("no answer", RGBColor(60, 60, 60)),
];

fn class_of(status: &str) -> usize {
    match status {
        s if s.starts_with('2') => 0,
        "401" => 1,
        "503" => 2,
        "none" => 4,
        _ => 3,
    }
}

fn chart_err(err: impl std::fmt::Display) -> DrillError {
    DrillError::Chart(err.to_string())
}

/// How many buckets the timeline draws: those that start within the load. One more would hold
/// no scheduled request and draw every line down to 0 at the end, which reads as an outage.
fn buckets_within(duration_ms: u32) -> u32 {
    duration_ms.div_ceil(BUCKET_MS)
}

/// Draws the timeline to `path`.
pub fn timeline(report: &DrillReport, path: &Path) -> Result<(), DrillError> {
    let root = SVGBackend::new(path, (1000, 780)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let panels = root.split_evenly((3, 1));
    let seconds = f64::from(report.run.duration_ms) / 1000.0;
    // requests per second of each class, per 100 ms bucket
    let per_second = 1000.0 / f64::from(BUCKET_MS);
    let top = report
        .buckets
        .iter()
        .map(|b| b.by_status.values().sum::<u64>() as f64 * per_second)
        .fold(10.0, f64::max)
        * 1.1;
    for (panel, backend) in panels.iter().zip(Backend::ALL) {
        let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); CLASSES.len()];
        let buckets: Vec<_> = report
            .buckets
            .iter()
            .filter(|b| b.backend == backend)
            .collect();
        let count = buckets_within(report.run.duration_ms);
        for i in 0..count {
            let t = f64::from(i * BUCKET_MS) / 1000.0;
            let mut values = [0f64; CLASSES.len()];
            if let Some(bucket) = buckets.iter().find(|b| b.t_ms == i * BUCKET_MS) {
                for (status, n) in &bucket.by_status {
                    values[class_of(status)] += *n as f64 * per_second;
                }
            }
            for (s, v) in series.iter_mut().zip(values) {
                s.push((t, v));
            }
        }
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("/{} (requests/s by status, scheduled time)", backend.name()),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..seconds.max(0.1), 0f64..top)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("s")
            .disable_x_mesh()
            .draw()
            .map_err(chart_err)?;
        for ((name, colour), points) in CLASSES.iter().zip(series) {
            if points.iter().all(|(_, v)| *v == 0.0) {
                continue;
            }
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(chart_err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        if let Some(fault) = &report.fault {
            let x = f64::from(fault.at_ms) / 1000.0;
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    vec![(x, 0.0), (x, top)],
                    5,
                    3,
                    RED.stroke_width(2),
                )))
                .map_err(chart_err)?
                .label(format!("fault: {}", report.run.scenario.name()))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(chart_err)?;
    }
    root.present().map_err(chart_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_ends_with_the_load_and_never_draws_an_empty_last_bucket() {
        // 10 s of load: buckets start at 0 ms ... 9,900 ms; none at 10,000 ms.
        assert_eq!(buckets_within(10_000), 100);
        assert!((buckets_within(10_000) - 1) * BUCKET_MS < 10_000);
        // A load that ends inside a bucket still draws that bucket.
        assert_eq!(buckets_within(10_050), 101);
    }
}
