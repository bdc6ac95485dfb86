//! The two SVG charts (`throughput.svg`, `latency.svg`), drawn with plotters' SVG backend (no
//! font libraries needed).
//!
//! - **Throughput**: a bar per route at its median requests/s, a whisker over the spread of its
//!   rounds (min to max), and a dashed red line at its target (target ratio x the run's `/hello`
//!   baseline). Axis and labels carry thousands separators (`140,000`).
//! - **Latency**: each route's latency at every percentile of the median round, on a log axis that
//!   starts just below the fastest answer measured (not at 1 us, which left half the chart
//!   empty). The `/hello` baselines are dashed, thinner and drawn last, so a route that lies on
//!   top of them (`/session/me`, often) stays visible.

use std::path::Path;

use plotters::coord::combinators::BindKeyPoints;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format;
use super::model::{Report, RouteResult};
use crate::CompareError;

fn chart_err(chart: &'static str) -> impl Fn(Box<dyn std::error::Error + '_>) -> CompareError {
    move |err| CompareError::Chart {
        chart,
        message: err.to_string(),
    }
}

/// The colour of route `i`, the same in both charts.
fn color(i: usize) -> PaletteColor<Palette99> {
    Palette99::pick(i)
}

/// The lowest and highest requests/s over a route's rounds.
fn round_range(route: &RouteResult) -> Option<(f64, f64)> {
    let rps = route.rounds.iter().map(|r| r.requests_per_sec);
    Some((rps.clone().reduce(f64::min)?, rps.reduce(f64::max)?))
}

/// Where a route's target lies in requests/s: its target ratio x the run's baseline.
fn target_rps(report: &Report, route: &RouteResult) -> Option<f64> {
    Some(route.target_ratio? * report.baseline_requests_per_sec?)
}

/// Requests per second per route, as bars, with the spread over rounds and the targets.
pub fn throughput_chart(report: &Report, path: &Path) -> Result<(), CompareError> {
    let err = chart_err("throughput.svg");
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let n = report.routes.len();
    let top = report
        .routes
        .iter()
        .flat_map(|r| {
            let spread = round_range(r).map(|(_, hi)| hi);
            [Some(r.requests_per_sec), spread, target_rps(report, r)]
        })
        .flatten()
        .fold(1.0, f64::max)
        // Headroom for the labels above the bars and the key, top right.
        * 1.3;
    let caption = format!(
        "Requests per second, median of {} round(s) (higher is better)",
        report.settings.rounds
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
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
        .y_label_formatter(&|y| format::thousands_f(*y))
        .y_desc("requests/s")
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .margin(14)
                .style_func(|x, _| match x {
                    SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                        color(*i).mix(0.85).filled()
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

    // The spread over rounds: a whisker from the slowest round to the fastest, with caps.
    let whisker = BLACK.stroke_width(2);
    for (i, route) in report.routes.iter().enumerate() {
        let Some((lo, hi)) = round_range(route).filter(|_| route.rounds.len() > 1) else {
            continue;
        };
        let x = SegmentValue::CenterOf(i);
        chart
            .draw_series([PathElement::new(
                vec![(x.clone(), lo), (x.clone(), hi)],
                whisker,
            )])
            .map_err(|e| err(Box::new(e)))?;
        chart
            .draw_series([lo, hi].map(|y| {
                EmptyElement::at((x.clone(), y)) + PathElement::new(vec![(-8, 0), (8, 0)], whisker)
            }))
            .map_err(|e| err(Box::new(e)))?;
    }

    // The targets: a dashed red line across the bar, at target ratio x baseline.
    let target_style = RED.stroke_width(3);
    for (i, route) in report.routes.iter().enumerate() {
        let Some(y) = target_rps(report, route) else {
            continue;
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((SegmentValue::CenterOf(i), y))
                    + DashedPathElement::new(vec![(-62, 0), (62, 0)], 8, 5, target_style),
            ))
            .map_err(|e| err(Box::new(e)))?;
    }

    let label_style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(report.routes.iter().enumerate().map(|(i, r)| {
            let label = match r.ratio_to_hello {
                Some(ratio) => format!("{} ({ratio:.2}x)", format::thousands_f(r.requests_per_sec)),
                None => format::thousands_f(r.requests_per_sec),
            };
            // Above the whisker or the target, whichever is higher, so nothing covers the text.
            let above = [
                Some(r.requests_per_sec),
                round_range(r).map(|(_, hi)| hi),
                target_rps(report, r),
            ]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max);
            Text::new(
                label,
                (SegmentValue::CenterOf(i), above + top * 0.01),
                label_style.clone(),
            )
        }))
        .map_err(|e| err(Box::new(e)))?;

    // A key for the whisker and the target line, top right.
    let key_style = TextStyle::from(("sans-serif", 13).into_font());
    let (key_x, key_y) = (760, 44);
    root.draw(&PathElement::new(
        vec![(key_x, key_y), (key_x, key_y + 14)],
        whisker,
    ))
    .map_err(|e| err(Box::new(e)))?;
    root.draw(&Text::new(
        "min-max over rounds",
        (key_x + 12, key_y),
        key_style.clone(),
    ))
    .map_err(|e| err(Box::new(e)))?;
    root.draw(&DashedPathElement::new(
        vec![(key_x - 12, key_y + 28), (key_x + 8, key_y + 28)],
        8,
        5,
        target_style,
    ))
    .map_err(|e| err(Box::new(e)))?;
    root.draw(&Text::new(
        "target (ratio x /hello baseline)",
        (key_x + 12, key_y + 21),
        key_style,
    ))
    .map_err(|e| err(Box::new(e)))?;
    root.present().map_err(|e| err(Box::new(e)))?;
    Ok(())
}

/// The bottom of the latency axis: a little below the fastest answer of any route, on a round
/// value (10, 20, 50, 100, 200, ... us), so the lines fill the chart instead of its top half.
pub fn latency_floor(report: &Report) -> f64 {
    let fastest = report
        .routes
        .iter()
        .flat_map(|r| r.load.curve.iter().map(|(_, us)| *us))
        .filter(|us| *us > 0)
        .min()
        .unwrap_or(1) as f64;
    let target = fastest * 0.8;
    let decade = 10f64.powf(target.log10().floor());
    [5.0, 2.0, 1.0]
        .iter()
        .map(|k| k * decade)
        .find(|v| *v <= target)
        .unwrap_or(decade)
        .max(1.0)
}

/// The ticks of a log axis from `lo` to `hi`: 1, 2 and 5 times each power of ten (plotters
/// alone labels only the powers of ten, two labels on a typical chart).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let first = lo.max(1.0).log10().floor() as i32;
    let last = hi.max(1.0).log10().ceil() as i32;
    (first..=last)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// Latency at each percentile, one line per route, log scale.
pub fn latency_chart(report: &Report, path: &Path) -> Result<(), CompareError> {
    let err = chart_err("latency.svg");
    let root = SVGBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let points = authlab_loadgen::PERCENTILE_CURVE.len();
    let floor = latency_floor(report);
    let top = report
        .routes
        .iter()
        .flat_map(|r| r.load.curve.iter().map(|(_, us)| *us))
        .max()
        .unwrap_or(1)
        .max(10) as f64
        * 1.5;
    let top = top.max(floor * 10.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency by percentile, median round (microseconds, log scale; lower is better)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0..points - 1,
            (floor..top)
                .log_scale()
                .with_key_points(log_ticks(floor, top)),
        )
        .map_err(|e| err(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_labels(points)
        .x_label_formatter(&|i| {
            authlab_loadgen::PERCENTILE_CURVE
                .get(*i)
                .map_or(String::new(), |p| format!("p{p}"))
        })
        .y_label_formatter(&|us| format::thousands_f(*us))
        .y_desc("us")
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    // The routes first, the `/hello` baselines last (dashed, thinner): on top, yet see-through.
    let (baselines, routes): (Vec<_>, Vec<_>) = report
        .routes
        .iter()
        .enumerate()
        .partition(|(_, r)| r.path == "/hello");
    for (i, route) in routes.into_iter().chain(baselines) {
        let line: Vec<(usize, f64)> = route
            .load
            .curve
            .iter()
            .enumerate()
            .map(|(x, (_, us))| (x, (*us as f64).max(floor)))
            .collect();
        let color = color(i);
        if route.path == "/hello" {
            let style = color.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(line, 6, 4, style))
                .map_err(|e| err(Box::new(e)))?
                .label(route.name.clone())
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 16, y)], 4, 3, style)
                });
        } else {
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(|e| err(Box::new(e)))?
                .label(route.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
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

#[cfg(test)]
mod tests {
    use super::super::tests::{Figures, report_with};
    use super::*;

    fn draw(report: &Report) -> (String, String) {
        let dir = std::env::temp_dir().join(format!("authlab-svg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        throughput_chart(report, &dir.join("t.svg")).unwrap();
        latency_chart(report, &dir.join("l.svg")).unwrap();
        let charts = (
            std::fs::read_to_string(dir.join("t.svg")).unwrap(),
            std::fs::read_to_string(dir.join("l.svg")).unwrap(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        charts
    }

    #[test]
    fn axis_and_bar_labels_carry_thousands_separators() {
        let (throughput, latency) = draw(&report_with(&Figures::default()));
        // plotters writes each text on a line of its own.
        assert!(throughput.contains("\n115,000 (1.00x)\n"), "bar label");
        assert!(throughput.contains("\n100,000\n"), "y axis tick");
        assert!(!throughput.contains("100000"), "a tick without separators");
        assert!(latency.contains("\n1,000\n"), "latency tick");
    }

    #[test]
    fn the_throughput_chart_has_a_key_for_the_spread_and_the_targets() {
        let (throughput, _) = draw(&report_with(&Figures::default()));
        assert!(throughput.contains("min-max over rounds"));
        assert!(throughput.contains("target (ratio x /hello baseline)"));
        assert!(throughput.contains("median of 3 round(s)"));
    }

    #[test]
    fn the_latency_axis_is_labelled_at_1_2_and_5_times_each_power_of_ten() {
        assert_eq!(
            log_ticks(150.0, 2_500.0),
            vec![200.0, 500.0, 1_000.0, 2_000.0]
        );
        let (_, latency) = draw(&report_with(&Figures::default()));
        for tick in ["\n200\n", "\n500\n", "\n1,000\n"] {
            assert!(latency.contains(tick), "no tick {tick:?}");
        }
    }

    #[test]
    fn the_latency_axis_starts_just_below_the_fastest_answer() {
        let report = report_with(&Figures::default());
        let fastest = report
            .routes
            .iter()
            .flat_map(|r| r.load.curve.iter().map(|(_, us)| *us))
            .min()
            .unwrap() as f64;
        let floor = latency_floor(&report);
        assert!(floor < fastest, "{floor} >= {fastest}");
        assert!(floor >= fastest / 2.5, "{floor} is far below {fastest}");
    }
}
