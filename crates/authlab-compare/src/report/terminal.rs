//! The terminal table.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};

use super::model::{Report, RouteResult};
use crate::probes::RedisPerRequest;

pub(super) fn redis_cell(redis: Option<&RedisPerRequest>) -> String {
    match redis {
        None => "n/a".to_owned(),
        Some(r) if r.by_command.is_empty() => "0".to_owned(),
        Some(r) => {
            // Commands below 0.005 per request are other clients of the same Redis, not this route.
            let detail: Vec<String> = r
                .by_command
                .iter()
                .filter(|(_, per)| **per >= 0.005)
                .map(|(name, per)| format!("{name} {per:.2}"))
                .collect();
            format!("{:.2} ({})", r.commands_per_request, detail.join(", "))
        }
    }
}

pub(super) fn errors_cell(route: &RouteResult) -> String {
    if route.errors == 0 {
        return "0".to_owned();
    }
    let statuses: Vec<String> = route
        .status_counts
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(s, n)| format!("{n}x{s}"))
        .collect();
    let mut cell = format!("{}", route.errors);
    if !statuses.is_empty() {
        let _ = write!(cell, " ({})", statuses.join(", "));
    }
    if route.transport_errors > 0 {
        let _ = write!(cell, " ({} transport)", route.transport_errors);
    }
    cell
}

pub(super) fn ratio_cell(route: &RouteResult) -> String {
    let ratio = route
        .ratio_to_hello
        .map_or("n/a".to_owned(), |r| format!("{r:.2}x"));
    // The spread over rounds, so a reader sees how much the machine moved.
    let spread = route.ratio_per_round.iter().copied();
    let ratio = match (
        spread.clone().reduce(f64::min),
        spread.reduce(f64::max),
        route.ratio_per_round.len(),
    ) {
        (Some(lo), Some(hi), n) if n > 1 => format!("{ratio} [{lo:.2}-{hi:.2}]"),
        _ => ratio,
    };
    match (route.target_ratio, route.target_met) {
        (Some(target), Some(true)) => format!("{ratio} (>= {target:.2}: met)"),
        (Some(target), Some(false)) => format!("{ratio} (>= {target:.2}: MISSED)"),
        _ => ratio,
    }
}

/// The main table, for the terminal.
pub fn table(report: &Report) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "route",
        "req/s",
        "ratio to /hello (target)",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "errors",
        "credential B",
        "Redis cmds/req",
    ]);
    for route in &report.routes {
        table.add_row(vec![
            route.name.clone(),
            format!("{:.0}", route.requests_per_sec),
            ratio_cell(route),
            route.load.latency.p50_us.to_string(),
            route.load.latency.p99_us.to_string(),
            route.load.latency.p999_us.to_string(),
            errors_cell(route),
            route.credential_bytes.to_string(),
            redis_cell(route.redis.as_ref()),
        ]);
    }
    for column in [1, 3, 4, 5, 7] {
        if let Some(c) = table.column_mut(column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}
