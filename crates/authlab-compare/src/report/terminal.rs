//! What `authlab compare` prints on stdout at the end: compact tables and the "which should I
//! choose" section, every line within [`COLUMNS`] (comfy-table wraps a cell rather than widen a
//! table past it).

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use super::choose;
use super::format::{self, COLUMNS};
use super::model::{Report, RouteResult};
use crate::probes::RedisPerRequest;

/// `1.00 (get 1.00)`: commands per request, and per command name (for `report.md`).
pub(super) fn redis_cell(redis: Option<&RedisPerRequest>) -> String {
    match redis {
        None => "n/a".to_owned(),
        Some(r) if r.by_command.is_empty() => "0".to_owned(),
        Some(r) => format!("{:.2} ({})", r.commands_per_request, redis_detail(r)),
    }
}

/// `get 1.00, exists 1.00`. Commands below 0.005 per request are other clients of the same
/// Redis, not this route.
fn redis_detail(r: &RedisPerRequest) -> String {
    let detail: Vec<String> = r
        .by_command
        .iter()
        .filter(|(_, per)| **per >= 0.005)
        .map(|(name, per)| format!("{name} {per:.2}"))
        .collect();
    detail.join(", ")
}

/// The same, shorter, for the screen: `get 1.00` (the total only when several commands ran).
fn redis_screen_cell(redis: Option<&RedisPerRequest>) -> String {
    match redis {
        None => "n/a".to_owned(),
        Some(r) if r.commands_per_request < 0.005 => "0".to_owned(),
        Some(r) if r.by_command.values().filter(|per| **per >= 0.005).count() == 1 => {
            redis_detail(r)
        }
        Some(r) => format!("{:.2}: {}", r.commands_per_request, redis_detail(r)),
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
    let mut cell = format::thousands(route.errors);
    if !statuses.is_empty() {
        let _ = write!(cell, " ({})", statuses.join(", "));
    }
    if route.transport_errors > 0 {
        let _ = write!(cell, " ({} transport)", route.transport_errors);
    }
    cell
}

/// `0.94x`, or `n/a` before the ratios are known.
pub(super) fn ratio(route: &RouteResult) -> String {
    route
        .ratio_to_hello
        .map_or("n/a".to_owned(), |r| format!("{r:.2}x"))
}

/// `0.91-0.97`: the ratio's spread over rounds, so a reader sees how much the machine moved.
pub(super) fn spread(route: &RouteResult) -> String {
    let lo = route.ratio_per_round.iter().copied().reduce(f64::min);
    let hi = route.ratio_per_round.iter().copied().reduce(f64::max);
    match (lo, hi) {
        (Some(lo), Some(hi)) if route.ratio_per_round.len() > 1 => format!("{lo:.2}-{hi:.2}"),
        _ => String::new(),
    }
}

/// `0.95 met` / `0.95 MISSED` (under the header `>= target`).
pub(super) fn target(route: &RouteResult) -> String {
    match (route.target_ratio, route.target_met) {
        (Some(target), Some(true)) => format!("{target:.2} met"),
        (Some(target), Some(false)) => format!("{target:.2} MISSED"),
        (Some(target), None) => format!("{target:.2}"),
        _ => String::new(),
    }
}

/// `0.94x [0.91-0.97] (>= 0.95: met)`: ratio, spread and target in one cell (for `report.md`).
pub(super) fn ratio_cell(route: &RouteResult) -> String {
    let mut cell = ratio(route);
    let spread = spread(route);
    if !spread.is_empty() {
        let _ = write!(cell, " [{spread}]");
    }
    match (route.target_ratio, route.target_met) {
        (Some(target), Some(true)) => format!("{cell} (>= {target:.2}: met)"),
        (Some(target), Some(false)) => format!("{cell} (>= {target:.2}: MISSED)"),
        _ => cell,
    }
}

fn new_table(header: Vec<&str>) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(COLUMNS as u16)
        .set_header(header);
    table
}

fn align_right(table: &mut Table, columns: &[usize]) {
    for column in columns {
        if let Some(c) = table.column_mut(*column) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Requests/s, the ratio to `/hello` with its spread over rounds, the target, errors.
pub fn throughput_table(report: &Report) -> Table {
    let mut table = new_table(vec![
        "route",
        "req/s",
        "ratio",
        "min-max",
        ">= target",
        "errors",
    ]);
    for route in &report.routes {
        table.add_row(vec![
            route.name.clone(),
            format::thousands_f(route.requests_per_sec),
            ratio(route),
            spread(route),
            target(route),
            errors_cell(route),
        ]);
    }
    align_right(&mut table, &[1, 2, 5]);
    table
}

/// `97.1%`: the share of cache lookups that hit, or `n/a` where the instance has no cache.
pub(super) fn hit_ratio_cell(route: &RouteResult) -> String {
    route
        .cache
        .as_ref()
        .and_then(|c| c.hit_ratio)
        .map_or("n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// Latency percentiles of the median round, and what each request carries and costs (and, when
/// any mode has a cache, its hit ratio).
pub fn latency_table(report: &Report) -> Table {
    let cached = report.routes.iter().any(|r| r.cache.is_some());
    let mut header = vec!["route", "p50", "p99", "p99.9", "credential", "Redis/req"];
    if cached {
        header.push("cache hits");
    }
    let mut table = new_table(header);
    for route in &report.routes {
        let l = &route.load.latency;
        let mut row = vec![
            route.name.clone(),
            format::thousands(l.p50_us),
            format::thousands(l.p99_us),
            format::thousands(l.p999_us),
            format!("{} B", route.credential_bytes),
            redis_screen_cell(route.redis.as_ref()),
        ];
        if cached {
            row.push(hit_ratio_cell(route));
        }
        table.add_row(row);
    }
    align_right(&mut table, &[1, 2, 3, 4]);
    table
}

/// `Not counted above: 4,012 Redis commands/s that no request sent (ping 4,012/s: ...)`, when
/// the run had any.
pub(super) fn background_line(report: &Report) -> Option<String> {
    let total: f64 = report.redis_background_per_second.values().sum();
    if total < 1.0 {
        return None;
    }
    let detail: Vec<String> = report
        .redis_background_per_second
        .iter()
        .filter(|(_, per_second)| **per_second >= 1.0)
        .map(|(name, per_second)| format!("{name} {}/s", format::thousands_f(*per_second)))
        .collect();
    Some(format!(
        "Not counted in Redis/req: {}/s Redis commands that no request sent ({}), measured while only /hello ran (nothing of authlab's own: an idle cache sends no heartbeat), subtracted from every row; what is left of them below 0.5 per request is their jitter.",
        format::thousands_f(total),
        detail.join(", ")
    ))
}

/// The capacity line of every route that costs Redis CPU: `INFO cpu` per request, the requests
/// per second one Redis core sustains at that cost, and how many instances at the row's own
/// rate that is. Empty when no route costs Redis measurable CPU (or it could not be read).
pub fn capacity_lines(report: &Report) -> Vec<String> {
    report
        .routes
        .iter()
        .filter_map(|route| {
            let redis = route.redis.as_ref()?;
            let per_core = redis.requests_per_redis_core?;
            let cpu = redis.cpu_us_per_request?;
            let instances = route.instances_per_redis_core?;
            Some(format!(
                "{}: {:.1} us of Redis CPU per request, so one Redis core sustains about {}/s of it: {:.1} instances at this instance's {}/s (a cluster of N masters: about N times as many).",
                route.name,
                cpu,
                format::thousands_f(per_core),
                instances,
                format::thousands_f(route.requests_per_sec),
            ))
        })
        .collect()
}

/// Each mode's `--modes` name and the `authlab serve` flags of its instance.
pub fn modes_table(report: &Report) -> Option<Table> {
    let rows: Vec<_> = report
        .routes
        .iter()
        .filter_map(|r| Some((r, r.mode.as_deref()?, r.flags.as_deref()?)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut table = new_table(vec!["route", "--modes", "authlab serve flags"]);
    for (route, mode, flags) in rows {
        table.add_row(vec![route.name.as_str(), mode, flags]);
    }
    Some(table)
}

/// Revocation latency across two instances, one row per revocable mode.
pub fn revocation_table(report: &Report) -> Option<Table> {
    if report.revocation.is_empty() {
        return None;
    }
    let mut table = new_table(vec![
        "route",
        "samples",
        "accepted\nfor p50",
        "p99",
        "max",
        "refused\nafter p99",
        "never\nrefused",
    ]);
    for r in &report.revocation {
        table.add_row(vec![
            r.route.clone().unwrap_or_default(),
            format::thousands(r.samples as u64),
            format::latency(r.p50_us),
            format::latency(r.p99_us),
            format::latency(r.max_us),
            format::latency(r.answered_p99_us),
            format::thousands(r.never_refused as u64),
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5, 6]);
    Some(table)
}

/// Login cost, memory and scale-out, as short tables (empty where the run did not measure them).
fn other_sections(report: &Report, out: &mut String) {
    if let Some(login) = &report.login {
        let _ = writeln!(
            out,
            "\nLogin cost: POST /jwt/login, {} connections, {:.1} s measured",
            report.settings.login_connections, login.duration_s
        );
        let mut table = new_table(vec!["logins/s", "p50", "p99", "errors"]);
        table.add_row(vec![
            format!("{:.1}", login.requests_per_sec),
            format::latency(login.latency.p50_us),
            format::latency(login.latency.p99_us),
            format::thousands(login.errors()),
        ]);
        align_right(&mut table, &[0, 1, 2, 3]);
        let _ = writeln!(out, "{table}");
    }
    if !report.sessions.is_empty() || report.redis_memory.is_some() {
        let _ = writeln!(
            out,
            "\nMemory: process RSS per live session (in-process map)"
        );
    }
    if !report.sessions.is_empty() {
        let mut table = new_table(vec![
            "live sessions",
            "RSS growth",
            "per session",
            "verify ns",
        ]);
        for p in &report.sessions {
            table.add_row(vec![
                format::thousands(p.sessions as u64),
                format::bytes(p.rss_delta_bytes as f64),
                format::bytes(p.bytes_per_session),
                format::thousands_f(p.verify_ns),
            ]);
        }
        align_right(&mut table, &[0, 1, 2, 3]);
        let _ = writeln!(out, "{table}");
    }
    if let Some(r) = &report.redis_memory {
        let text = format!(
            "Redis: {} logins (token + refresh family + user index) grew used_memory by {}: {} per login.",
            format::thousands(r.tokens as u64),
            format::bytes(r.used_memory_delta_bytes.max(0) as f64),
            format::bytes(r.bytes_per_token)
        );
        let _ = writeln!(out, "{}", format::wrap(&text, COLUMNS, ""));
    }
    let costs = super::stats::metrics_cost_lines(report);
    if !costs.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            format::wrap(
                "Metrics cost: fewer requests/s with --metrics on than the same route with it off, median of the rounds [min to max] (target <= 2%; a busy machine moves it more):",
                COLUMNS,
                ""
            )
        );
        for line in costs {
            let _ = writeln!(out, "{}", format::wrap(&format!("- {line}"), COLUMNS, "  "));
        }
    }
    if !report.scale_out.is_empty() {
        let _ = writeln!(
            out,
            "\nScale-out and revocation (each mode's instance and a second one with its flags;\nshared Redis and JWT key)"
        );
        let mut table = new_table(vec![
            "credential",
            "issuer\n/me",
            "other\n/me",
            "logout",
            "issuer\nafter",
            "other\nafter",
            "logout ->\nrejected",
        ]);
        for c in &report.scale_out {
            table.add_row(vec![
                c.route.clone(),
                c.issuer_before.to_string(),
                c.other_before.to_string(),
                c.logout.to_string(),
                c.issuer_after.to_string(),
                c.other_after.to_string(),
                c.revocation_us.map_or("never".to_owned(), format::latency),
            ]);
        }
        align_right(&mut table, &[1, 2, 3, 4, 5, 6]);
        let _ = writeln!(out, "{table}");
    }
    if let Some(table) = revocation_table(report) {
        let _ = writeln!(
            out,
            "\n{}",
            format::wrap(
                "Revocation latency across two instances: revoke a token on one, probe the other until it refuses. Accepted for: from the revocation's answer until the first refused probe was sent (0: the first probe was refused); refused after: until its answer (one round trip more):",
                COLUMNS,
                ""
            )
        );
        let _ = writeln!(out, "{table}");
    }
}

/// Everything printed at the end of a run, in the order a reader needs it.
pub fn screen(report: &Report) -> String {
    let mut out = String::new();
    let baseline = report
        .baseline_requests_per_sec
        .map_or("n/a".to_owned(), format::thousands_f);
    let _ = writeln!(
        out,
        "{}",
        format::wrap(
            &format!(
                "Throughput: median of {} round(s), {} connections. One baseline for every ratio: /hello at {} req/s (each round's first and last /hello, averaged, median over rounds); ratio = the row's req/s over it, and its spread divides each round by that round's own /hello.",
                report.settings.rounds, report.settings.connections, baseline
            ),
            COLUMNS,
            ""
        )
    );
    let _ = writeln!(out, "{}", throughput_table(report));
    if let Some(table) = modes_table(report) {
        let _ = writeln!(
            out,
            "\nModes: each row is its own instance, started with these flags"
        );
        let _ = writeln!(out, "{table}");
    }
    let _ = writeln!(
        out,
        "\nLatency in us (the median round), credential size, Redis commands per request"
    );
    let _ = writeln!(out, "{}", latency_table(report));
    if let Some(line) = background_line(report) {
        let _ = writeln!(out, "{}", format::wrap(&line, COLUMNS, ""));
    }
    let capacity = capacity_lines(report);
    if !capacity.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat Redis can carry (its CPU per request, INFO cpu, less what it used while only /hello ran):"
        );
        for line in capacity {
            let _ = writeln!(out, "{}", format::wrap(&format!("- {line}"), COLUMNS, "  "));
        }
    }
    other_sections(report, &mut out);
    let statements = choose::statements(report);
    if !statements.is_empty() {
        let _ = writeln!(
            out,
            "\nWhich should I choose? Trade-offs measured in this run, not a ranking:"
        );
        for s in statements {
            let _ = writeln!(out, "{}", format::wrap(&format!("- {s}"), COLUMNS, "  "));
        }
    }
    if report.routes.iter().any(|r| r.target_source.is_some()) {
        let _ = writeln!(
            out,
            "\n{}",
            format::wrap(
                "Targets: the ratios the project set for each mode; report.md (and target_source in report.json) gives each one's source.",
                COLUMNS,
                ""
            )
        );
    }
    out
}
