//! What a comparison found, in three shapes: `report.json` (every number, keys carrying their
//! units: `p99_us`, `bytes_per_session`; its `$schema` key names `report.schema.json`, generated
//! from these types with schemars), a terminal table, and `report.md` with two SVG charts
//! (`throughput.svg`, `latency.svg`) drawn with plotters' SVG backend (no font libraries needed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use authlab_loadgen::LoadReport;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use super::probes::{RedisPerRequest, RedisTokenMemory, SessionPopulation};
use super::setup::{Credential, ScaleOutCheck};
use super::{CompareArgs, CompareError};

/// The name of the JSON Schema file written beside `report.json`.
pub const SCHEMA_FILE: &str = "report.schema.json";

/// Where and how the run happened.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// authlab's version.
    pub authlab_version: String,
    /// `git rev-parse --short HEAD`, when run from a checkout.
    pub git_sha: Option<String>,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// The 1-minute load average when the run started (anything well above 0 means the numbers
    /// share the CPUs with something else).
    pub load_average_1m: Option<f64>,
}

/// The run's settings, so a reader can reproduce it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunSettings {
    /// The command line.
    pub command: String,
    /// In-process or the `--target`.
    pub target: String,
    /// Connections per route.
    pub connections: usize,
    /// Load generator threads.
    pub threads: usize,
    /// Workers per in-process server.
    pub workers: usize,
    /// Warm-up per route, seconds.
    pub warmup_s: f64,
    /// Measured time per route, seconds.
    pub duration_s: f64,
    /// Rounds: every route is run once per round, in the same order.
    pub rounds: usize,
}

/// One route's row, over every round of the run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RouteResult {
    /// Row label.
    pub name: String,
    /// Request path.
    pub path: String,
    /// Bytes of the credential itself (0 for `/hello`).
    pub credential_bytes: usize,
    /// Bytes the credential's header line adds to every request.
    pub credential_header_bytes: usize,
    /// Median over the rounds.
    pub requests_per_sec: f64,
    /// Median over the rounds of (this route's requests/s / that round's `/hello` baseline).
    pub ratio_to_hello: Option<f64>,
    /// The per-round ratios the median is taken from.
    pub ratio_per_round: Vec<f64>,
    /// The ratio issue #4 asks for.
    pub target_ratio: Option<f64>,
    /// Whether the median ratio meets the target (and no request failed).
    pub target_met: Option<bool>,
    /// Requests without a 2xx answer, summed over every round (warm-ups included).
    pub errors: u64,
    /// Every status code seen, summed over every round.
    pub status_counts: BTreeMap<u16, u64>,
    /// Transport failures, summed over every round.
    pub transport_errors: u64,
    /// The round with the median requests/s (its latencies are the ones shown).
    pub load: LoadReport,
    /// Every round, in order.
    pub rounds: Vec<LoadReport>,
    /// Redis commands per request (all rounds), if Redis statistics could be read.
    pub redis: Option<RedisPerRequest>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl RouteResult {
    /// A row from its rounds (at least one), before the ratios are known.
    pub fn new(
        name: &str,
        path: &str,
        credential: Option<&Credential>,
        target_ratio: Option<f64>,
        rounds: Vec<LoadReport>,
        redis: Option<RedisPerRequest>,
    ) -> Self {
        let rps: Vec<f64> = rounds.iter().map(|r| r.requests_per_sec).collect();
        let requests_per_sec = median(&rps);
        let load = rounds
            .iter()
            .min_by(|a, b| {
                (a.requests_per_sec - requests_per_sec)
                    .abs()
                    .total_cmp(&(b.requests_per_sec - requests_per_sec).abs())
            })
            .cloned()
            .unwrap_or_else(|| unreachable!("a route has at least one round"));
        let mut status_counts = BTreeMap::new();
        for round in &rounds {
            for (status, count) in &round.status_counts {
                *status_counts.entry(*status).or_default() += count;
            }
        }
        Self {
            name: name.to_owned(),
            path: path.to_owned(),
            credential_bytes: credential.map_or(0, Credential::credential_bytes),
            credential_header_bytes: credential.map_or(0, Credential::header_bytes),
            requests_per_sec,
            ratio_to_hello: None,
            ratio_per_round: Vec::new(),
            target_ratio,
            target_met: None,
            errors: rounds.iter().map(LoadReport::errors).sum(),
            status_counts,
            transport_errors: rounds.iter().map(|r| r.transport_errors).sum(),
            load,
            rounds,
            redis,
        }
    }
}

/// Everything `authlab compare` measured (`report.json`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// The JSON Schema this document follows (`report.schema.json`, written beside it).
    #[serde(rename = "$schema")]
    pub schema: String,
    /// Where.
    pub machine: Machine,
    /// How.
    pub settings: RunSettings,
    /// Redis server version.
    pub redis_version: Option<String>,
    /// One row per route, `/hello` first.
    pub routes: Vec<RouteResult>,
    /// The login-cost run (`POST /jwt/login`).
    pub login: Option<LoadReport>,
    /// RSS per live session and verify time, per population.
    pub sessions: Vec<SessionPopulation>,
    /// Redis memory per opaque token.
    pub redis_memory: Option<RedisTokenMemory>,
    /// Credentials presented to the other instance, and logouts.
    pub scale_out: Vec<ScaleOutCheck>,
    /// The baseline the ratios divide by: the mean of the `/hello` runs.
    pub baseline_requests_per_sec: Option<f64>,
}

fn first_line(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|text| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    })
}

impl Report {
    /// An empty report for a run with `args`.
    pub fn new(args: &CompareArgs) -> Self {
        let git_sha = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
        Self {
            schema: SCHEMA_FILE.to_owned(),
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                cpu_model: first_line("/proc/cpuinfo", "model name")
                    .unwrap_or_else(|| "unknown".to_owned()),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "unknown".to_owned()),
                authlab_version: env!("CARGO_PKG_VERSION").to_owned(),
                git_sha,
                started_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                load_average_1m: std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok()),
            },
            settings: RunSettings {
                command: std::env::args().collect::<Vec<_>>().join(" "),
                target: args
                    .target
                    .clone()
                    .unwrap_or_else(|| "in-process (instances A and B)".to_owned()),
                connections: args.connections,
                threads: args.threads,
                workers: args.workers,
                warmup_s: args.warmup.as_secs_f64(),
                duration_s: args.duration.as_secs_f64(),
                rounds: args.rounds.max(1),
            },
            redis_version: None,
            routes: Vec::new(),
            login: None,
            sessions: Vec::new(),
            redis_memory: None,
            scale_out: Vec::new(),
            baseline_requests_per_sec: None,
        }
    }

    /// Fills in the ratios to `/hello` and whether each target is met.
    ///
    /// `/hello` runs first and last in every round; a round's baseline is the mean of its two
    /// `/hello` runs, each route's ratio in a round divides by that round's baseline, and the
    /// reported ratio is the median over the rounds. A machine that speeds up or slows down
    /// during the run (frequency, a busy neighbour) so shifts the ratios as little as it can.
    pub fn finish(&mut self) {
        let rounds = self
            .routes
            .iter()
            .map(|r| r.rounds.len())
            .min()
            .unwrap_or(0);
        let baselines: Vec<f64> = (0..rounds)
            .map(|round| {
                let hellos: Vec<f64> = self
                    .routes
                    .iter()
                    .filter(|r| r.path == "/hello")
                    .map(|r| r.rounds[round].requests_per_sec)
                    .collect();
                hellos.iter().sum::<f64>() / hellos.len().max(1) as f64
            })
            .collect();
        self.baseline_requests_per_sec = Some(median(&baselines)).filter(|b| *b > 0.0);
        for route in &mut self.routes {
            route.ratio_per_round = baselines
                .iter()
                .zip(&route.rounds)
                .filter(|(base, _)| **base > 0.0)
                .map(|(base, round)| round.requests_per_sec / base)
                .collect();
            route.ratio_to_hello =
                (!route.ratio_per_round.is_empty()).then(|| median(&route.ratio_per_round));
            route.target_met = route
                .target_ratio
                .zip(route.ratio_to_hello)
                .map(|(target, ratio)| ratio >= target && route.errors == 0);
        }
    }

    /// Requests without a 2xx answer, over every route and round.
    pub fn total_errors(&self) -> u64 {
        self.routes.iter().map(|r| r.errors).sum()
    }
}

fn redis_cell(redis: Option<&RedisPerRequest>) -> String {
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

fn errors_cell(route: &RouteResult) -> String {
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

fn ratio_cell(route: &RouteResult) -> String {
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

/// `report.md`: the same table and the rest of the measurements, as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let s = &report.settings;
    let _ = writeln!(md, "# authlab compare\n");
    let _ = writeln!(md, "Command: `{}`\n", s.command);
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), Linux {}, authlab {} ({}), Redis {}.  ",
        m.cpus,
        m.cpu_model,
        m.kernel,
        m.authlab_version,
        m.git_sha.as_deref().unwrap_or("no git"),
        report.redis_version.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        md,
        "Load: {} keep-alive connections, {} generator thread(s), {} server worker(s), {:.0} s warm-up + {:.0} s measured per route and round, {} round(s); target: {}; 1-minute load average at start: {}.\n",
        s.connections,
        s.threads,
        s.workers,
        s.warmup_s,
        s.duration_s,
        s.rounds,
        s.target,
        m.load_average_1m
            .map_or("unknown".to_owned(), |l| format!("{l:.2}"))
    );
    let _ = writeln!(
        md,
        "Each round runs every route in this order; a round's baseline is the mean of its first and last `/hello`, each ratio is the median over rounds of the route's requests/s over its round's baseline, [min-max] over rounds beside it. req/s is the median over rounds, latencies are from the median round, errors are summed over all rounds. Median baseline: {}.\n",
        report
            .baseline_requests_per_sec
            .map_or("n/a".to_owned(), |b| format!("{b:.0} req/s"))
    );
    let _ = writeln!(
        md,
        "| route | req/s | ratio to /hello (target) | p50 us | p99 us | p99.9 us | errors | credential bytes | Redis cmds/req |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---|---:|---|");
    for r in &report.routes {
        let _ = writeln!(
            md,
            "| `{}` | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.requests_per_sec,
            ratio_cell(r),
            r.load.latency.p50_us,
            r.load.latency.p99_us,
            r.load.latency.p999_us,
            errors_cell(r),
            r.credential_bytes,
            redis_cell(r.redis.as_ref())
        );
    }
    let _ = writeln!(md, "\n![requests per second](throughput.svg)\n");
    let _ = writeln!(md, "![latency percentiles](latency.svg)\n");

    if let Some(login) = &report.login {
        let _ = writeln!(
            md,
            "## Login cost\n\n`POST /jwt/login` (argon2id verify + issue): **{:.1} logins/s**, p50 {:.1} ms, p99 {:.1} ms, {} errors. Verify, by contrast, runs at the rates above on every request.\n",
            login.requests_per_sec,
            login.latency.p50_us as f64 / 1000.0,
            login.latency.p99_us as f64 / 1000.0,
            login.errors()
        );
    }
    if !report.sessions.is_empty() {
        let _ = writeln!(
            md,
            "## Memory per live session (in-process map)\n\n| live sessions | RSS growth | bytes/session | verify (ns, in-process loop) |\n|---:|---:|---:|---:|"
        );
        for p in &report.sessions {
            let _ = writeln!(
                md,
                "| {} | {:.1} MiB | {:.0} | {:.0} |",
                p.sessions,
                p.rss_delta_bytes as f64 / (1024.0 * 1024.0),
                p.bytes_per_session,
                p.verify_ns
            );
        }
        md.push('\n');
    }
    if let Some(r) = &report.redis_memory {
        let _ = writeln!(
            md,
            "## Redis memory per login (redis backend)\n\n{} logins, each an opaque access-token key plus a refresh-token family and its entry in the user's index (every login a distinct user): `used_memory` grew by {:.1} MiB, **{:.0} bytes per login**.\n",
            r.tokens,
            r.used_memory_delta_bytes as f64 / (1024.0 * 1024.0),
            r.bytes_per_token
        );
    }
    if !report.scale_out.is_empty() {
        let _ = writeln!(
            md,
            "## Scale-out and revocation (two instances: A denylist off, B denylist on; shared Redis and JWT secret)\n\n| credential | issuer /me | other /me | logout | issuer /me after | other /me after | logout -> first rejection |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for c in &report.scale_out {
            let revocation = c
                .revocation_us
                .map_or("never (still 200 after 1 s)".to_owned(), |us| {
                    format!("{:.1} ms", us as f64 / 1000.0)
                });
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                c.backend,
                c.issuer_before,
                c.other_before,
                c.logout,
                c.issuer_after,
                c.other_after,
                revocation
            );
        }
        let _ = writeln!(
            md,
            "\nA session lives in one process's memory, so the other instance has never heard of it (401): \
             sessions need sticky routing or a shared store. Opaque tokens live in the shared Redis and work \
             everywhere; logout deletes the key for everyone. A JWT verifies on any instance with the key; \
             it is revoked only where a denylist is checked, so a token logged out on A (no denylist) stays valid \
             until it expires, everywhere."
        );
    }
    md
}

fn chart_err(chart: &'static str) -> impl Fn(Box<dyn std::error::Error + '_>) -> CompareError {
    move |err| CompareError::Chart {
        chart,
        message: err.to_string(),
    }
}

/// Requests per second per route, as bars.
fn throughput_chart(report: &Report, path: &Path) -> Result<(), CompareError> {
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
fn latency_chart(report: &Report, path: &Path) -> Result<(), CompareError> {
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
    std::fs::write(dir.join("report.md"), markdown(report)).map_err(CompareError::Io)?;
    throughput_chart(report, &dir.join("throughput.svg"))?;
    latency_chart(report, &dir.join("latency.svg"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use authlab_loadgen::{Latency, PERCENTILE_CURVE};

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
