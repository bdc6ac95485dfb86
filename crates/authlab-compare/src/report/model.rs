//! The data model of a comparison: what `report.json` holds. Every number's key carries its unit
//! (`p99_us`, `bytes_per_session`); the JSON Schema beside it is generated from these types.

use std::collections::BTreeMap;

use authlab_loadgen::LoadReport;
use serde::Serialize;

use super::machine;
use super::stats::median;
use crate::CompareArgs;
use crate::probes::{CacheActivity, RedisPerRequest, RedisTokenMemory, SessionPopulation};
use crate::revocation::RevocationLatency;
use crate::setup::{CredentialHeader, ScaleOutCheck};

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
    /// Connections of the login-cost run.
    pub login_connections: usize,
}

/// One route's row, over every round of the run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RouteResult {
    /// Row label.
    pub name: String,
    /// The mode's `--modes` name (`None` for `/hello`).
    pub mode: Option<String>,
    /// The `authlab serve` flags of the mode's instance, `(defaults)` for none (`None` for
    /// `/hello`, and against `--target`, whose flags are its own).
    pub flags: Option<String>,
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
    /// The ratio to `/hello` asked of this route.
    pub target_ratio: Option<f64>,
    /// Where `target_ratio` comes from (the issue that set it, and what it was based on).
    pub target_source: Option<String>,
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
    /// The capacity line's last step: how many instances serving this route at this row's
    /// `requests_per_sec` one Redis core can carry before it is the bottleneck (a cluster of N
    /// masters: about N times as many, if the keys spread evenly). `None` where the route costs
    /// Redis no measurable CPU.
    pub instances_per_redis_core: Option<f64>,
    /// What the instance's client-side cache did (all rounds), from its `/metrics`
    /// `authlab_redis_cache_*` series; `None` where the instance has none.
    pub cache: Option<CacheActivity>,
}

impl RouteResult {
    /// A row from its rounds (at least one), before the ratios are known.
    pub fn new(
        name: &str,
        path: &str,
        credential: Option<&CredentialHeader>,
        target: Option<(f64, &str)>,
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
            mode: None,
            flags: None,
            path: path.to_owned(),
            credential_bytes: credential.map_or(0, CredentialHeader::credential_bytes),
            credential_header_bytes: credential.map_or(0, CredentialHeader::header_bytes),
            requests_per_sec,
            ratio_to_hello: None,
            ratio_per_round: Vec::new(),
            target_ratio: target.map(|(ratio, _)| ratio),
            target_source: target.map(|(_, source)| source.to_owned()),
            target_met: None,
            errors: rounds.iter().map(LoadReport::errors).sum(),
            status_counts,
            transport_errors: rounds.iter().map(|r| r.transport_errors).sum(),
            load,
            rounds,
            instances_per_redis_core: redis
                .as_ref()
                .and_then(|r| r.requests_per_redis_core)
                .filter(|_| requests_per_sec > 0.0)
                .map(|capacity| capacity / requests_per_sec),
            redis,
            cache: None,
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
    /// Revocation latency across two instances, per revocable mode.
    pub revocation: Vec<RevocationLatency>,
    /// Redis commands per second that no request sent (about 0: an idle cache sends no heartbeat),
    /// measured while `/hello` ran and subtracted from every row's commands per request.
    pub redis_background_per_second: BTreeMap<String, f64>,
    /// The baseline the ratios divide by: the mean of the `/hello` runs.
    pub baseline_requests_per_sec: Option<f64>,
}

impl Report {
    /// An empty report for a run with `args`.
    pub fn new(args: &CompareArgs) -> Self {
        Self {
            schema: SCHEMA_FILE.to_owned(),
            machine: machine::probe(),
            settings: RunSettings {
                command: std::env::args().collect::<Vec<_>>().join(" "),
                target: args
                    .target
                    .clone()
                    .unwrap_or_else(|| "in-process (an instance per mode)".to_owned()),
                connections: args.connections,
                threads: args.threads,
                workers: args.workers,
                warmup_s: args.warmup.as_secs_f64(),
                duration_s: args.duration.as_secs_f64(),
                rounds: args.rounds.max(1),
                login_connections: args.login_connections,
            },
            redis_version: None,
            routes: Vec::new(),
            login: None,
            sessions: Vec::new(),
            redis_memory: None,
            scale_out: Vec::new(),
            revocation: Vec::new(),
            redis_background_per_second: BTreeMap::new(),
            baseline_requests_per_sec: None,
        }
    }
    /// Requests without a 2xx answer, over every route and round.
    pub fn total_errors(&self) -> u64 {
        self.routes.iter().map(|r| r.errors).sum()
    }
}
