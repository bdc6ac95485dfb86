//! What a comparison found, in three shapes: `report.json` (every number, keys carrying their
//! units: `p99_us`, `bytes_per_session`; its `$schema` key names `report.schema.json`, generated
//! from these types with schemars), a terminal table, and `report.md` with two SVG charts
//! (`throughput.svg`, `latency.svg`).
//!
//! # Layout
//! - [`model`]: the data (`report.json`);
//! - [`machine`]: where the run happened;
//! - [`stats`]: medians and ratios to `/hello`;
//! - [`terminal`], [`markdown`], [`svg`]: the three renderings.

pub mod machine;
pub mod markdown;
pub mod model;
pub mod stats;
pub mod svg;
pub mod terminal;

use std::path::Path;

pub use model::{Machine, Report, RouteResult, RunSettings, SCHEMA_FILE};
pub use terminal::table;

use crate::CompareError;

/// Writes `report.json` (and its `report.schema.json`, JSON Schema draft 2020-12), `report.md`,
/// `throughput.svg` and `latency.svg` under `dir`.
pub fn write_all(report: &Report, dir: &Path) -> Result<(), CompareError> {
    std::fs::create_dir_all(dir).map_err(CompareError::Io)?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| CompareError::Io(std::io::Error::other(e)))?;
    std::fs::write(dir.join("report.json"), json).map_err(CompareError::Io)?;
    let schema = serde_json::to_string_pretty(&schemars::schema_for!(Report))
        .map_err(|e| CompareError::Io(std::io::Error::other(e)))?;
    std::fs::write(dir.join(SCHEMA_FILE), schema).map_err(CompareError::Io)?;
    std::fs::write(dir.join("report.md"), markdown::markdown(report)).map_err(CompareError::Io)?;
    svg::throughput_chart(report, &dir.join("throughput.svg"))?;
    svg::latency_chart(report, &dir.join("latency.svg"))?;
    Ok(())
}

#[cfg(test)]
mod tests {

    use std::collections::BTreeMap;

    use super::*;
    use crate::CompareArgs;
    use authlab_loadgen::{Latency, LoadReport, PERCENTILE_CURVE};

    fn load(rps: f64, p50: u64) -> LoadReport {
        LoadReport {
            requests: (rps * 5.0) as u64,
            warmup_requests: 0,
            duration_s: 5.0,
            requests_per_sec: rps,
            latency: Latency {
                mean_us: p50 as f64,
                p50_us: p50,
                p90_us: p50 * 2,
                p99_us: p50 * 3,
                p999_us: p50 * 5,
                max_us: p50 * 9,
            },
            status_counts: BTreeMap::from([(200, (rps * 5.0) as u64)]),
            non_2xx: 0,
            transport_errors: 0,
            body_bytes: 0,
            curve: PERCENTILE_CURVE
                .iter()
                .map(|p| (*p, p50 + (*p as u64) * 3))
                .collect(),
        }
    }

    fn report() -> Report {
        let args = <CompareArgs as clap::FromArgMatches>::from_arg_matches(
            &<CompareArgs as clap::Args>::augment_args(clap::Command::new("compare"))
                .get_matches_from(["compare"]),
        )
        .unwrap();
        let mut report = Report::new(&args);
        for (name, path, rounds) in [
            ("/hello", "/hello", [100.0, 110.0, 90.0]),
            ("/session/me", "/session/me", [95.0, 100.0, 99.0]),
            ("/hello (again)", "/hello", [100.0, 90.0, 110.0]),
        ] {
            let loads = rounds.iter().map(|rps| load(*rps, 250)).collect();
            report
                .routes
                .push(RouteResult::new(name, path, None, Some(0.95), loads, None));
        }
        report.finish();
        report
    }

    #[test]
    fn ratios_are_medians_of_per_round_ratios_to_that_rounds_baseline() {
        let report = report();
        let session = &report.routes[1];
        // Baselines per round: 100, 100, 100 -> ratios 0.95, 1.00, 0.99 -> median 0.99.
        assert_eq!(session.ratio_per_round, vec![0.95, 1.0, 0.99]);
        assert_eq!(session.ratio_to_hello, Some(0.99));
        assert_eq!(session.requests_per_sec, 99.0);
        assert_eq!(session.target_met, Some(true));
        assert_eq!(report.baseline_requests_per_sec, Some(100.0));
    }

    #[test]
    fn the_report_is_written_as_json_markdown_and_two_svg_charts() {
        let dir = std::env::temp_dir().join(format!("authlab-report-{}", uuid::Uuid::new_v4()));
        write_all(&report(), &dir).unwrap();
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(SCHEMA_FILE)).unwrap()).unwrap();
        assert_eq!(schema["title"], "Report");
        assert!(schema["properties"]["routes"].is_object());
        for file in ["report.json", "report.md", "throughput.svg", "latency.svg"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(text.contains("/session/me"), "{file} names the routes");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
