//! Prometheus metrics, served at `GET /metrics` in the text format (see docs/observability.md).
//!
//! Each app has its own recorder (no global one): two instances in one process (`authlab
//! compare`, the tests) count separately. Every series is registered once, when the app is built,
//! and the handles are kept where they are used ([`BackendMetrics`] in each mounted backend,
//! [`RedisMetrics`] in the Redis connection), so a request pays an atomic add per counter and,
//! for a verification, two clock reads and a histogram sample: no lookup by name or label.
//!
//! | series | labels | what it counts |
//! |---|---|---|
//! | `authlab_auth_decisions_total` | `backend`, `outcome` | credentials judged, refused logins throttled, requests refused as cross-site |
//! | `authlab_verify_seconds` (histogram) | `backend` | time to find and verify a credential |
//! | `authlab_logins_total` | `backend`, `outcome` (`ok`, `invalid`) | password logins |
//! | `authlab_redis_command_seconds` (histogram) | `command` (`query`, `pipeline`, `script`) | Redis round trips |
//! | `authlab_redis_errors_total` | `command` | failed Redis commands (unreachable, timed out, error reply) |
//! | `authlab_live_sessions` (gauge) | | sessions in this instance's memory, read at each scrape |
//! | `authlab_redis_cache_hits_total`, `_misses_total` | `cache` (`redis`, `jwt_denylist`) | lookups of a client-side cache answered from memory / from Redis |
//! | `authlab_redis_cache_invalidations_total`, `_flushes_total`, `_evictions_total` | `cache` | keys Redis (or this instance) invalidated; times the cache was emptied (disconnect, failed heartbeat, `FLUSHALL`); entries dropped for room |
//! | `authlab_redis_cache_entries`, `authlab_redis_cache_hit_ratio` (gauges) | `cache` | entries held; hits over lookups since start |
//!
//! Refresh-token reuse events are `authlab_auth_decisions_total{outcome="reused"}`. The cache
//! series exist only for a cache that is on (`--redis-cache on`, `--jwt-denylist cached`); they
//! are read from the cache's own counters at each scrape.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use authlab_core::{AuthError, Identity};
use authlab_redis::{CacheStats, CommandMetrics, RedisMetrics};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::backend_kind::{BackendKind, RouteGroup};
use crate::error::ApiError;

/// Histogram buckets for every `_seconds` series, in seconds: 10 us to 2.5 s, so that both a map
/// lookup (a few us) and a Redis timeout (500 ms) land in a bucket of their own.
pub const BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 2.5,
];

/// How often histogram samples are folded into their buckets between scrapes (keeps memory flat
/// under load when nobody scrapes).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What a credential check (or a refusal before one) came to: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Ok,
    /// No credential was presented.
    Missing,
    /// Malformed, forged, unknown, or not supported here.
    Invalid,
    /// Genuine but past its lifetime.
    Expired,
    /// Genuine but revoked (logged out).
    Revoked,
    /// A spent refresh token presented again: its whole family was revoked.
    Reused,
    /// The backend's store could not answer.
    Unavailable,
    /// Refused by login throttling (`429 too_many_attempts`).
    Throttled,
    /// Refused as cross-site by the CSRF defence.
    Csrf,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 9] = [
        Self::Ok,
        Self::Missing,
        Self::Invalid,
        Self::Expired,
        Self::Revoked,
        Self::Reused,
        Self::Unavailable,
        Self::Throttled,
        Self::Csrf,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Reused => "reused",
            Self::Unavailable => "unavailable",
            Self::Throttled => "throttled",
            Self::Csrf => "csrf",
        }
    }

    /// The outcome of a verification.
    pub fn of<T>(result: &Result<T, AuthError>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(err) => Self::of_error(err),
        }
    }

    /// The outcome of a refusal.
    pub fn of_error(err: &AuthError) -> Self {
        match err {
            AuthError::Missing => Self::Missing,
            AuthError::Expired => Self::Expired,
            AuthError::Revoked => Self::Revoked,
            AuthError::Reused => Self::Reused,
            AuthError::Unavailable(_) => Self::Unavailable,
            _ => Self::Invalid,
        }
    }
}

/// One backend's handles, kept with the mounted backend: the per-request hot path uses only these.
#[derive(Clone, Debug)]
pub struct BackendMetrics {
    decisions: [Counter; Outcome::ALL.len()],
    verify_seconds: Histogram,
    logins_ok: Counter,
    logins_invalid: Counter,
    timed: bool,
}

impl BackendMetrics {
    /// Handles that record nothing (metrics off, or a backend built outside an app).
    pub fn noop() -> Self {
        Self {
            decisions: std::array::from_fn(|_| Counter::noop()),
            verify_seconds: Histogram::noop(),
            logins_ok: Counter::noop(),
            logins_invalid: Counter::noop(),
            timed: false,
        }
    }

    /// The clock reading a verification starts from, if metrics are on.
    pub fn start(&self) -> Option<Instant> {
        self.timed.then(Instant::now)
    }

    /// Counts a verification's outcome and, if it was timed, its latency.
    pub fn verified(&self, result: &Result<Identity, AuthError>, started: Option<Instant>) {
        if let Some(started) = started {
            self.verify_seconds.record(started.elapsed().as_secs_f64());
        }
        self.decided(Outcome::of(result));
    }

    /// Counts one decision.
    pub fn decided(&self, outcome: Outcome) {
        self.decisions[outcome as usize].increment(1);
    }

    /// Counts a password login: accepted, or refused for a wrong name or password.
    pub fn login(&self, accepted: bool) {
        if accepted {
            self.logins_ok.increment(1);
        } else {
            self.logins_invalid.increment(1);
        }
    }
}

/// Why the metrics could not be set up (only a programming error: empty buckets).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Prometheus recorder")]
pub struct MetricsError(#[source] BuildError);

/// One app's metrics: the recorder, the handles it gave out, and what is read at each scrape.
pub struct Metrics {
    recorder: Option<PrometheusRecorder>,
    groups: [BackendMetrics; RouteGroup::COUNT],
    redis: RedisMetrics,
    live_sessions: Gauge,
    read_live_sessions: Option<ReadCount>,
    caches: Vec<CacheSeries>,
}

/// Reads a client-side cache's counters (`None` if the cache is off).
pub type ReadStats = Box<dyn Fn() -> Option<CacheStats> + Send + Sync>;

/// Reads a count (the live sessions) at a scrape.
pub type ReadCount = Box<dyn Fn() -> usize + Send + Sync>;

/// One client-side cache's series, set from its counters at each scrape.
struct CacheSeries {
    read: ReadStats,
    hits: Counter,
    misses: Counter,
    invalidations: Counter,
    flushes: Counter,
    evictions: Counter,
    entries: Gauge,
    hit_ratio: Gauge,
}

impl CacheSeries {
    fn register(recorder: &PrometheusRecorder, cache: &'static str, read: ReadStats) -> Self {
        let key = |name: &'static str| Key::from_parts(name, vec![Label::new("cache", cache)]);
        let counter = |name| recorder.register_counter(&key(name), &METADATA);
        let gauge = |name| recorder.register_gauge(&key(name), &METADATA);
        Self {
            read,
            hits: counter("authlab_redis_cache_hits_total"),
            misses: counter("authlab_redis_cache_misses_total"),
            invalidations: counter("authlab_redis_cache_invalidations_total"),
            flushes: counter("authlab_redis_cache_flushes_total"),
            evictions: counter("authlab_redis_cache_evictions_total"),
            entries: gauge("authlab_redis_cache_entries"),
            hit_ratio: gauge("authlab_redis_cache_hit_ratio"),
        }
    }

    fn update(&self) {
        if let Some(stats) = (self.read)() {
            self.hits.absolute(stats.hits);
            self.misses.absolute(stats.misses);
            self.invalidations.absolute(stats.invalidations);
            self.flushes.absolute(stats.flushes);
            self.evictions.absolute(stats.evictions);
            self.entries.set(stats.entries as f64);
            self.hit_ratio.set(stats.hit_ratio());
        }
    }
}

/// Where registered series say they come from (the Prometheus recorder ignores it).
static METADATA: Metadata<'static> =
    Metadata::new("authlab", Level::INFO, Some("authlab::metrics"));

impl Metrics {
    /// Registers every series with a fresh recorder (`enabled`), or hands out no-op handles.
    pub fn new(enabled: bool) -> Result<Self, MetricsError> {
        if !enabled {
            return Ok(Self {
                recorder: None,
                groups: std::array::from_fn(|_| BackendMetrics::noop()),
                redis: RedisMetrics::default(),
                live_sessions: Gauge::noop(),
                read_live_sessions: None,
                caches: Vec::new(),
            });
        }
        let recorder = PrometheusBuilder::new()
            // Buckets, so that the `_seconds` series are histograms and not summaries: buckets
            // add up across instances, quantiles do not.
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .map_err(MetricsError)?
            .build_recorder();
        register_help(&recorder);
        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        let groups = RouteGroup::ALL.map(|group| {
            let backend = group.label();
            let is_scope = matches!(group, RouteGroup::Backend(_));
            BackendMetrics {
                decisions: std::array::from_fn(|o| {
                    let outcome = Outcome::ALL[o];
                    // Only the series a backend can produce: `reused` only where refresh tokens
                    // are issued, and outside the scopes only the refusals that happen before
                    // any credential.
                    let possible = match (group, outcome) {
                        (RouteGroup::Backend(kind), Outcome::Reused) => {
                            kind.issues_refresh_tokens()
                        }
                        (_, Outcome::Throttled | Outcome::Csrf) => true,
                        _ => is_scope,
                    };
                    if !possible {
                        return Counter::noop();
                    }
                    counter(
                        "authlab_auth_decisions_total",
                        vec![
                            Label::new("backend", backend),
                            Label::new("outcome", outcome.as_str()),
                        ],
                    )
                }),
                verify_seconds: if is_scope {
                    recorder.register_histogram(
                        &Key::from_parts(
                            "authlab_verify_seconds",
                            vec![Label::new("backend", backend)],
                        ),
                        &METADATA,
                    )
                } else {
                    Histogram::noop()
                },
                logins_ok: if is_scope {
                    counter(
                        "authlab_logins_total",
                        vec![Label::new("backend", backend), Label::new("outcome", "ok")],
                    )
                } else {
                    Counter::noop()
                },
                logins_invalid: if is_scope {
                    counter(
                        "authlab_logins_total",
                        vec![
                            Label::new("backend", backend),
                            Label::new("outcome", "invalid"),
                        ],
                    )
                } else {
                    Counter::noop()
                },
                timed: is_scope,
            }
        });
        let command = |kind: &'static str| CommandMetrics {
            seconds: recorder.register_histogram(
                &Key::from_parts(
                    "authlab_redis_command_seconds",
                    vec![Label::new("command", kind)],
                ),
                &METADATA,
            ),
            errors: counter(
                "authlab_redis_errors_total",
                vec![Label::new("command", kind)],
            ),
        };
        let redis = RedisMetrics {
            query: command("query"),
            pipeline: command("pipeline"),
            script: command("script"),
            timed: true,
        };
        let live_sessions =
            recorder.register_gauge(&Key::from_name("authlab_live_sessions"), &METADATA);
        Ok(Self {
            recorder: Some(recorder),
            groups,
            redis,
            live_sessions,
            read_live_sessions: None,
            caches: Vec::new(),
        })
    }

    /// Whether `/metrics` has anything to show.
    pub fn enabled(&self) -> bool {
        self.recorder.is_some()
    }

    /// The handles of the backend `kind`.
    pub fn backend(&self, kind: BackendKind) -> BackendMetrics {
        self.groups[RouteGroup::Backend(kind).index()].clone()
    }

    /// The handles the Redis connection updates.
    pub fn redis(&self) -> RedisMetrics {
        self.redis.clone()
    }

    /// Sets the live-session gauge from `read` at each scrape.
    pub fn watch_live_sessions(&mut self, read: ReadCount) {
        self.read_live_sessions = Some(read);
    }

    /// Reports a client-side cache's counters, read with `read` at each scrape, under the label
    /// `cache="{name}"`. A cache that is off (`read` gives `None` now) gets no series.
    pub fn watch_cache(&mut self, name: &'static str, read: ReadStats) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        if read().is_some() {
            self.caches
                .push(CacheSeries::register(recorder, name, read));
        }
    }

    /// A handle for the periodic upkeep, if metrics are on.
    pub fn handle(&self) -> Option<PrometheusHandle> {
        self.recorder.as_ref().map(PrometheusRecorder::handle)
    }

    /// The text exposition of every series, with the gauges read now.
    fn render(&self) -> Option<String> {
        let recorder = self.recorder.as_ref()?;
        if let Some(read) = &self.read_live_sessions {
            self.live_sessions.set(read() as f64);
        }
        for cache in &self.caches {
            cache.update();
        }
        Some(recorder.handle().render())
    }

    /// Counts a refusal that happened before any credential was judged (throttled, cross-site),
    /// under the group the request was for.
    pub fn refused(&self, group: RouteGroup, outcome: Outcome) {
        self.groups[group.index()].decided(outcome);
    }
}

/// The `# HELP` and `# TYPE` lines.
fn register_help(recorder: &PrometheusRecorder) {
    let help = |name: &'static str, unit: Option<Unit>, text: &'static str| {
        (KeyName::from_const_str(name), unit, text.into())
    };
    for (name, unit, text) in [
        help(
            "authlab_auth_decisions_total",
            None,
            "Credentials judged, by backend and outcome (also throttled logins and cross-site refusals).",
        ),
        help(
            "authlab_logins_total",
            None,
            "Password logins, by backend and outcome (ok, invalid).",
        ),
        help(
            "authlab_redis_errors_total",
            None,
            "Redis commands that failed (no connection, timeout, error reply), by kind.",
        ),
    ] {
        recorder.describe_counter(name, unit, text);
    }
    for (name, unit, text) in [
        help(
            "authlab_verify_seconds",
            Some(Unit::Seconds),
            "Time to find and verify a presented credential, by backend.",
        ),
        help(
            "authlab_redis_command_seconds",
            Some(Unit::Seconds),
            "Redis round trips (command, pipeline or script), by kind.",
        ),
    ] {
        recorder.describe_histogram(name, unit, text);
    }
    for (name, unit, text) in [
        help(
            "authlab_redis_cache_hits_total",
            None,
            "Lookups a Redis client-side cache answered from memory, by cache.",
        ),
        help(
            "authlab_redis_cache_misses_total",
            None,
            "Lookups a Redis client-side cache sent to Redis, by cache.",
        ),
        help(
            "authlab_redis_cache_invalidations_total",
            None,
            "Keys a Redis client-side cache forgot because Redis (or this instance) changed them.",
        ),
        help(
            "authlab_redis_cache_flushes_total",
            None,
            "Times a Redis client-side cache was emptied (disconnect, failed heartbeat, FLUSHALL).",
        ),
        help(
            "authlab_redis_cache_evictions_total",
            None,
            "Entries a Redis client-side cache dropped to stay within --redis-cache-size.",
        ),
    ] {
        recorder.describe_counter(name, unit, text);
    }
    for (name, unit, text) in [
        help(
            "authlab_live_sessions",
            None,
            "Sessions in this instance's memory (the session backend), read at each scrape.",
        ),
        help(
            "authlab_redis_cache_entries",
            None,
            "Entries a Redis client-side cache holds now, by cache.",
        ),
        help(
            "authlab_redis_cache_hit_ratio",
            None,
            "Hits over lookups of a Redis client-side cache since start, by cache.",
        ),
    ] {
        recorder.describe_gauge(name, unit, text);
    }
}

crate::error::refusals!(
    /// What `/metrics` answers with `--metrics off`.
    ScrapeRefusals: NotFound
);

/// `GET /metrics`: every series in the Prometheus text format (404 with `--metrics off`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "The text exposition format (see docs/observability.md). `404 not_found` with \
                   `--metrics off`.",
    responses((status = 200, description = "Every series"), ScrapeRefusals)
)]
pub async fn scrape(metrics: web::Data<Metrics>) -> Result<HttpResponse, ApiError> {
    let body = metrics.render().ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(body))
}
