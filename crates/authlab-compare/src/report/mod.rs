//! What a comparison found, in three shapes: `report.json` (every number, keys carrying their
//! units: `p99_us`, `bytes_per_session`; its `$schema` key names `report.schema.json`, generated
//! from these types with schemars), a terminal table, and `report.md` with two SVG charts
//! (`throughput.svg`, `latency.svg`).
//!
//! # Layout
//! - [`model`]: the data (`report.json`);
//! - [`machine`]: where the run happened;
//! - [`stats`]: medians and ratios to `/hello`;
//! - [`choose`]: the "which should I choose" statements, from the report's own figures;
//! - [`mod@format`]: numbers for people (`140,000`, `1m05s`, `761 us`), 80-column wrapping;
//! - [`terminal`], [`markdown`], [`svg`]: the three renderings.

pub mod choose;
pub mod format;
pub mod machine;
pub mod markdown;
pub mod model;
pub mod stats;
pub mod svg;
pub mod terminal;

use std::path::Path;

pub use model::{Machine, Report, RouteResult, RunSettings, SCHEMA_FILE};
pub use terminal::screen;

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
pub(crate) mod tests {

    use std::collections::BTreeMap;

    use super::*;
    use crate::CompareArgs;
    use crate::probes::{RedisPerRequest, RedisTokenMemory, SessionPopulation};
    use crate::setup::{self, ScaleOutCheck};
    use authlab_loadgen::{Latency, LoadReport, PERCENTILE_CURVE};

    fn load(rps: f64, p50: u64, p99: u64) -> LoadReport {
        LoadReport {
            requests: (rps * 5.0) as u64,
            warmup_requests: 0,
            duration_s: 5.0,
            requests_per_sec: rps,
            latency: Latency {
                mean_us: p50 as f64,
                p50_us: p50,
                p90_us: p50 * 2,
                p99_us: p99,
                p999_us: p99 * 2,
                max_us: p99 * 4,
            },
            status_counts: BTreeMap::from([(200, (rps * 5.0) as u64)]),
            non_2xx: 0,
            transport_errors: 0,
            body_bytes: 0,
            curve: PERCENTILE_CURVE
                .iter()
                .map(|p| (*p, p50 + (*p as u64) * (p99 - p50) / 100))
                .collect(),
        }
    }

    fn args() -> CompareArgs {
        <CompareArgs as clap::FromArgMatches>::from_arg_matches(
            &<CompareArgs as clap::Args>::augment_args(clap::Command::new("compare"))
                .get_matches_from(["compare"]),
        )
        .unwrap()
    }

    fn report() -> Report {
        let mut report = Report::new(&args());
        for (name, path, rounds) in [
            ("/hello", "/hello", [100.0, 110.0, 90.0]),
            ("/session/me", "/session/me", [95.0, 100.0, 99.0]),
            ("/hello (again)", "/hello", [100.0, 90.0, 110.0]),
        ] {
            let loads = rounds.iter().map(|rps| load(*rps, 250, 750)).collect();
            report.routes.push(RouteResult::new(
                name,
                path,
                None,
                Some((0.95, "issue #4")),
                loads,
                None,
            ));
        }
        report.finish();
        report
    }

    #[test]
    fn the_metrics_cost_compares_each_round_with_the_metrics_off_run_beside_it() {
        let mut report = Report::new(&args());
        for (name, path, rounds) in [
            ("/hello", "/hello", [100.0, 100.0, 100.0]),
            (setup::JWT_OFF, "/jwt/me", [98.0, 90.0, 101.0]),
            (setup::JWT_METRICS_OFF, "/jwt/me", [100.0, 90.0, 100.0]),
            ("/hello (again)", "/hello", [100.0, 100.0, 100.0]),
        ] {
            let loads = rounds.iter().map(|rps| load(*rps, 250, 750)).collect();
            report
                .routes
                .push(RouteResult::new(name, path, None, None, loads, None));
        }
        report.finish();
        let costs = stats::metrics_costs(&report);
        assert_eq!(costs.len(), 1, "no session pair in this report");
        assert_eq!(costs[0].route, setup::JWT_OFF);
        assert!((costs[0].median - 0.0).abs() < 1e-9, "{costs:?}");
        assert!((costs[0].max - 0.02).abs() < 1e-9, "{costs:?}");
        assert!((costs[0].min + 0.01).abs() < 1e-9, "{costs:?}");
        assert_eq!(
            stats::metrics_cost_lines(&report),
            vec!["/jwt/me (denylist off): 0.0% [-1.0% to 2.0%]".to_owned()]
        );
        assert!(markdown::markdown(&report).contains("## Metrics cost"));
        assert!(screen(&report).contains("Metrics cost:"));
    }

    /// The figures a synthetic full report is built from (defaults: docs/RESULTS.md's run).
    pub(crate) struct Figures {
        pub hello_rps: f64,
        pub session_rps: f64,
        pub redis_rps: f64,
        pub jwt_off_rps: f64,
        pub jwt_on_rps: f64,
        pub session_bytes: f64,
        pub redis_bytes: f64,
        pub login_rps: f64,
    }

    impl Default for Figures {
        fn default() -> Self {
            Self {
                hello_rps: 115_000.0,
                session_rps: 108_100.0,
                redis_rps: 70_150.0,
                jwt_off_rps: 94_300.0,
                jwt_on_rps: 64_400.0,
                session_bytes: 451.0,
                redis_bytes: 1190.0,
                login_rps: 107.0,
            }
        }
    }

    fn redis(commands: &[(&str, f64)]) -> Option<RedisPerRequest> {
        Some(RedisPerRequest {
            commands_per_request: commands.iter().map(|(_, n)| n).sum(),
            by_command: commands
                .iter()
                .map(|(c, n)| ((*c).to_owned(), *n))
                .collect(),
            cpu_us_per_request: None,
            requests_per_redis_core: None,
        })
    }

    fn check(
        backend: &str,
        route: &str,
        other_before: u16,
        after: (u16, u16),
        revocation_us: Option<u64>,
    ) -> ScaleOutCheck {
        ScaleOutCheck {
            backend: backend.to_owned(),
            route: route.to_owned(),
            issuer_before: 200,
            other_before,
            logout: 204,
            issuer_after: after.0,
            other_after: after.1,
            revocation_us,
        }
    }

    /// One route of a synthetic report.
    struct Row {
        name: &'static str,
        path: &'static str,
        rps: f64,
        p99: u64,
        target: Option<(f64, &'static str)>,
        credential_bytes: usize,
        redis: Option<RedisPerRequest>,
    }

    /// A whole in-process report (three rounds, every section) built from `f`.
    pub(crate) fn report_with(f: &Figures) -> Report {
        let mut report = Report::new(&args());
        let row = |name, path, rps, p99, target, credential_bytes, commands: &[(&str, f64)]| Row {
            name,
            path,
            rps,
            p99,
            target,
            credential_bytes,
            redis: redis(commands),
        };
        let rows = [
            row("/hello", "/hello", f.hello_rps, 392, None, 0, &[]),
            row(
                setup::SESSION,
                "/session/me",
                f.session_rps,
                510,
                Some((0.95, "issue #4 (session)")),
                22,
                &[],
            ),
            row(
                setup::REDIS,
                "/redis/me",
                f.redis_rps,
                761,
                Some((0.60, "issue #4 (redis)")),
                36,
                &[("get", 1.0)],
            ),
            row(
                setup::JWT_OFF,
                "/jwt/me",
                f.jwt_off_rps,
                514,
                Some((0.90, "issue #4 (jwt)")),
                312,
                &[],
            ),
            row(
                setup::JWT_ON,
                "/jwt/me",
                f.jwt_on_rps,
                702,
                Some((0.60, "issue #4 (denylist)")),
                312,
                &[("exists", 1.0)],
            ),
            row("/hello (again)", "/hello", f.hello_rps, 482, None, 0, &[]),
        ];
        for r in rows {
            // Three rounds around the figure: -3%, as given, +2%.
            let loads = [0.97, 1.0, 1.02]
                .iter()
                .map(|k| load(r.rps * k, r.p99 / 2, r.p99))
                .collect();
            let mut route = RouteResult::new(r.name, r.path, None, r.target, loads, r.redis);
            route.credential_bytes = r.credential_bytes;
            report.routes.push(route);
        }
        report.finish();
        report.login = Some(load(f.login_rps, 35_000, 60_000));
        report.sessions = [10_000usize, 100_000, 1_000_000]
            .iter()
            .map(|n| SessionPopulation {
                sessions: *n,
                rss_delta_bytes: (f.session_bytes * *n as f64) as u64,
                bytes_per_session: f.session_bytes,
                verify_ns: 150.0,
            })
            .collect();
        report.redis_memory = Some(RedisTokenMemory {
            tokens: 20_000,
            used_memory_delta_bytes: (f.redis_bytes * 20_000.0) as i64,
            bytes_per_token: f.redis_bytes,
        });
        report.scale_out = vec![
            check(
                "session (issued by A)",
                setup::SESSION,
                401,
                (401, 401),
                Some(500),
            ),
            check(
                "redis (issued by A)",
                setup::REDIS,
                200,
                (401, 401),
                Some(800),
            ),
            check(
                "jwt (A, denylist off)",
                setup::JWT_OFF,
                200,
                (200, 200),
                None,
            ),
            check(
                "jwt (B, denylist on)",
                setup::JWT_ON,
                200,
                (401, 200),
                Some(800),
            ),
        ];
        report
    }

    #[test]
    fn ratios_divide_by_one_baseline_and_the_spread_by_each_rounds_own() {
        let report = report();
        let session = &report.routes[1];
        // Baselines per round: 100, 100, 100 -> one baseline 100; the route's median 99 req/s
        // -> 0.99; its rounds 95, 100, 99 over their own baselines -> the spread.
        assert_eq!(session.ratio_per_round, vec![0.95, 1.0, 0.99]);
        assert_eq!(session.ratio_to_hello, Some(0.99));
        assert_eq!(session.requests_per_sec, 99.0);
        assert_eq!(session.target_met, Some(true));
        assert_eq!(report.baseline_requests_per_sec, Some(100.0));
    }

    #[test]
    fn the_report_is_written_as_json_markdown_and_two_svg_charts() {
        let dir = std::env::temp_dir().join(format!("authlab-report-{}", uuid::Uuid::new_v4()));
        write_all(&report_with(&Figures::default()), &dir).unwrap();
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

    #[test]
    fn each_target_carries_its_source_into_the_json_and_the_markdown() {
        let report = report_with(&Figures::default());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["routes"][1]["target_source"], "issue #4 (session)");
        assert_eq!(json["routes"][0]["target_source"], serde_json::Value::Null);
        let md = markdown::markdown(&report);
        assert!(md.contains("## Where the targets come from"));
        assert!(
            md.contains("| `/redis/me` | >= 0.60 | issue #4 (redis) |"),
            "{md}"
        );
    }

    #[test]
    fn the_markdown_has_the_which_should_i_choose_section() {
        let md = markdown::markdown(&report_with(&Figures::default()));
        let section = md
            .split("## Which should I choose")
            .nth(1)
            .expect("the section");
        assert!(section.contains("- session: 0.94x of /hello"), "{section}");
    }

    #[test]
    fn every_line_printed_at_the_end_fits_80_columns() {
        let screen = screen(&report_with(&Figures::default()));
        for line in screen.lines() {
            assert!(
                line.chars().count() <= format::COLUMNS,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        for section in [
            "Throughput:",
            "Latency",
            "Login cost",
            "Memory",
            "Redis: 20,000 logins",
            "Scale-out and revocation",
            "Which should I choose?",
            "Targets:",
        ] {
            assert!(screen.contains(section), "no {section} in\n{screen}");
        }
    }

    #[test]
    fn the_screen_shows_login_cost_memory_and_scale_out_figures() {
        let screen = screen(&report_with(&Figures::default()));
        assert!(screen.contains("107.0"), "login rate:\n{screen}");
        assert!(screen.contains("1,000,000"), "population:\n{screen}");
        assert!(screen.contains("1,190 B per login"), "{screen}");
        assert!(
            screen.contains("never"),
            "the JWT that no logout ends:\n{screen}"
        );
        assert!(
            screen.contains("115,000"),
            "baseline with separators:\n{screen}"
        );
    }
}
