//! Measurements taken beside HTTP: process memory, Redis's own counters, the session population.
//!
//! - **RSS per live session.** A [`SessionAuthenticator`] is filled in this process with
//!   `issue` (one distinct user per session, as in life), and `VmRSS` from `/proc/self/status` is
//!   read before and after. RSS counts pages the allocator has touched, so it includes the map's
//!   spare capacity and allocator overhead: the honest "what does the process cost" figure, not a
//!   `size_of` sum. Populations grow cumulatively (10k, then 100k, then 1M), and this runs before
//!   any server starts, so no freed memory from earlier work is being reused.
//! - **Verify time at that population**: `verify` on ids spread over the whole map, timed in a
//!   loop (a rough in-process figure; `cargo bench` has the careful one).
//! - **Redis commands per request**: `INFO commandstats` before and after a route, so the count is
//!   what Redis executed, not what the code is believed to send (on a Cluster, every master's
//!   counters, summed). Other clients of the same Redis would add to it: run the comparison on a
//!   quiet Redis.
//! - **Redis memory per login**: `INFO memory` `used_memory` before and after N logins through
//!   `RedisTokenAuthenticator::issue`, built as the server builds it, (each one an access-token key plus a refresh-token family
//!   and its entry in the user's index; every login a distinct user, the worst case for the index)
//!   under a throw-away prefix, removed afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authlab::backends;
use authlab::config::{RedisSettings, Settings};
use authlab_core::{Authenticator, ClientInfo, Identity, SystemClock};
use authlab_jwt::JwtSecret;
use authlab_redis::RedisBackendError;
use authlab_session::{SESSION_ID_LEN, SessionAuthenticator};
use secrecy::ExposeSecret;
use serde::Serialize;

/// Ids kept for the verify loop, spread evenly over the population.
const VERIFY_SAMPLE: usize = 16_384;
/// Verify calls timed at each population.
const VERIFY_CALLS: usize = 400_000;

/// Memory and verify time at one live-session population.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SessionPopulation {
    /// Live sessions in the map.
    pub sessions: usize,
    /// Growth of the process's resident set since the map was empty, in bytes.
    pub rss_delta_bytes: u64,
    /// `rss_delta_bytes / sessions`.
    pub bytes_per_session: f64,
    /// Mean time of one `verify` of a live session, in nanoseconds (in-process loop).
    pub verify_ns: f64,
}

/// The resident set size of this process, in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// Issues one session for user `n` (each session its own user, as in a real population).
async fn issue_session(store: &SessionAuthenticator, n: usize) -> Option<String> {
    let identity = Identity::new(n as i64, format!("user{n:07}"));
    let issued = store.issue(&identity, &ClientInfo::default()).await.ok()?;
    Some(issued.credential.expose_secret().to_owned())
}

/// Fills a session map to each of `sizes` in turn and measures RSS and verify time, handing each
/// population to `measured` as it is done. Stops early (with what it has) once `cancel` is set.
pub async fn session_population(
    sizes: &[usize],
    cancel: &AtomicBool,
    mut measured: impl FnMut(&SessionPopulation),
) -> Vec<SessionPopulation> {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    let largest = sizes.last().copied().unwrap_or(0);
    // The sample of ids lives in a buffer allocated (and touched) before the baseline, so it is
    // not counted as session memory.
    let stride = (largest / VERIFY_SAMPLE).max(1);
    let mut sample: Vec<[u8; SESSION_ID_LEN]> = vec![[0u8; SESSION_ID_LEN]; VERIFY_SAMPLE];
    let mut sampled = 0usize;
    // As the server builds it, with an hour of idle time so nothing expires during the run.
    let mut settings = Settings::defaults();
    settings.session_ttl = Duration::from_secs(3600);
    let store = backends::session_backend(&settings, Arc::new(SystemClock));
    let baseline = rss_bytes();
    let mut results = Vec::new();
    let mut issued = 0usize;
    for size in sizes {
        while issued < size {
            if issued.is_multiple_of(4096) && cancel.load(Ordering::Relaxed) {
                return results;
            }
            let Some(id) = issue_session(&store, issued).await else {
                break;
            };
            if issued.is_multiple_of(stride)
                && sampled < VERIFY_SAMPLE
                && id.len() == SESSION_ID_LEN
            {
                sample[sampled].copy_from_slice(id.as_bytes());
                sampled += 1;
            }
            issued += 1;
        }
        let rss_delta_bytes = rss_bytes().saturating_sub(baseline);
        let ids: Vec<&str> = sample[..sampled]
            .iter()
            .filter_map(|raw| std::str::from_utf8(raw).ok())
            .collect();
        let verify_ns = time_verify(&store, &ids).await;
        drop(ids);
        let population = SessionPopulation {
            sessions: issued,
            rss_delta_bytes,
            bytes_per_session: rss_delta_bytes as f64 / issued.max(1) as f64,
            verify_ns,
        };
        measured(&population);
        results.push(population);
    }
    results
}

async fn time_verify(store: &SessionAuthenticator, ids: &[&str]) -> f64 {
    if ids.is_empty() {
        return 0.0;
    }
    let started = Instant::now();
    let mut accepted = 0usize;
    for i in 0..VERIFY_CALLS {
        let id = ids[i % ids.len()];
        accepted +=
            usize::from(std::hint::black_box(store.verify(std::hint::black_box(id)).await).is_ok());
    }
    let elapsed = started.elapsed();
    // A loop of refusals would time the wrong path: no figure is better than that one.
    if accepted != VERIFY_CALLS {
        return f64::NAN;
    }
    elapsed.as_nanos() as f64 / VERIFY_CALLS as f64
}

async fn redis(url: &str) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn info(url: &str, section: &str) -> Result<String, redis::RedisError> {
    let mut conn = redis(&node_urls(url).await?[0]).await?;
    redis::cmd("INFO").arg(section).query_async(&mut conn).await
}

/// `INFO section` of every node that serves the run's requests: the one Redis, or every master
/// of a Cluster (whose counters must be summed: each master counts only its own commands).
async fn infos(url: &str, section: &str) -> Result<Vec<String>, redis::RedisError> {
    let mut infos = Vec::new();
    for node in node_urls(url).await? {
        let mut conn = redis(&node).await?;
        infos.push(
            redis::cmd("INFO")
                .arg(section)
                .query_async(&mut conn)
                .await?,
        );
    }
    Ok(infos)
}

/// The plain `redis://` URLs of the nodes behind `url`: itself for one Redis; for a
/// `redis+cluster://` URL, every master that holds slots, as the first seed that answers
/// `CLUSTER NODES` lists them (with the URL's credentials). A Sentinel URL is not read (its
/// master moves; `INFO` of a sentinel says nothing of the data).
async fn node_urls(url: &str) -> Result<Vec<String>, redis::RedisError> {
    let Some(rest) = url.strip_prefix("redis+cluster://") else {
        return Ok(vec![url.to_owned()]);
    };
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.split('/').next().unwrap_or(hosts);
    let mut last_error = None;
    for seed in hosts.split(',') {
        let seed_url = format!("redis://{userinfo}{seed}");
        let nodes: Result<String, _> = async {
            let mut conn = redis(&seed_url).await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await
        }
        .await;
        match nodes {
            Ok(nodes) => {
                let masters = masters_of(&nodes, &userinfo);
                if !masters.is_empty() {
                    return Ok(masters);
                }
            }
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "no seed of the cluster URL listed a master",
        ))
    }))
}

/// The `redis://` URL of every master holding slots in a `CLUSTER NODES` reply (`<id>
/// <host:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`).
fn masters_of(nodes: &str, userinfo: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_master = fields.get(2)?.split(',').any(|flag| flag == "master");
            let holds_slots = fields.len() > 8;
            let addr = fields.get(1)?.split('@').next()?;
            (is_master && holds_slots).then(|| format!("redis://{userinfo}{addr}"))
        })
        .collect()
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The server's version, from `INFO server`.
pub async fn redis_version(url: &str) -> Result<String, redis::RedisError> {
    let info = info(url, "server").await?;
    Ok(info_field(&info, "redis_version").unwrap_or("?").to_owned())
}

/// Calls per command, as `INFO commandstats` reports them.
pub type CommandStats = BTreeMap<String, u64>;

/// Reads `INFO commandstats` (`cmdstat_get:calls=12,...` lines; on a Cluster, summed over the
/// masters).
pub async fn command_stats(url: &str) -> Result<CommandStats, redis::RedisError> {
    let mut stats = CommandStats::new();
    for info in infos(url, "commandstats").await? {
        let calls = info.lines().filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse::<u64>().ok()?))
        });
        for (name, calls) in calls {
            *stats.entry(name).or_default() += calls;
        }
    }
    Ok(stats)
}

/// The CPU time Redis has used since it started (`INFO cpu`: `used_cpu_sys` + `used_cpu_user`),
/// in seconds: its own work, the system calls of every reply included (on a Cluster, summed over
/// the masters).
pub async fn redis_cpu_seconds(url: &str) -> Result<f64, redis::RedisError> {
    let mut seconds = 0.0;
    for info in infos(url, "cpu").await? {
        let field = |name| {
            info_field(&info, name)
                .and_then(|value| value.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        seconds += field("used_cpu_sys") + field("used_cpu_user");
    }
    Ok(seconds)
}

/// Redis commands per HTTP request for one route, and what they cost Redis.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RedisPerRequest {
    /// All commands (except our own `INFO`) divided by the requests sent, warm-up included.
    pub commands_per_request: f64,
    /// The same, per command name (only those that ran).
    pub by_command: BTreeMap<String, f64>,
    /// Redis's CPU time (user + system, `INFO cpu`) per request, in microseconds, less what it
    /// used at the same rate while only `/hello` ran. `None` where it could not be read.
    pub cpu_us_per_request: Option<f64>,
    /// The capacity line: requests per second of this route that one Redis core sustains
    /// (1,000,000 / `cpu_us_per_request`). `None` where the route costs Redis no measurable CPU.
    pub requests_per_redis_core: Option<f64>,
}

impl RedisPerRequest {
    /// Sets the CPU figures from Redis's CPU seconds spent on `requests` requests. Below
    /// [`MIN_CPU_US_PER_REQUEST`] the route is taken to cost Redis nothing measurable.
    pub fn with_cpu(mut self, cpu_seconds: f64, requests: u64) -> Self {
        let per_request = cpu_seconds.max(0.0) * 1e6 / requests.max(1) as f64;
        self.cpu_us_per_request = Some(per_request);
        self.requests_per_redis_core =
            (per_request >= MIN_CPU_US_PER_REQUEST).then(|| 1e6 / per_request);
        self
    }
}

/// Below this much Redis CPU per request a route is taken to cost Redis nothing: `INFO cpu`
/// counts in microseconds of whole-process time, and its background (Redis's own cron) is
/// subtracted at an average rate.
pub const MIN_CPU_US_PER_REQUEST: f64 = 0.05;

/// The commands Redis ran between two snapshots, per request sent.
pub fn per_request(before: &CommandStats, after: &CommandStats, requests: u64) -> RedisPerRequest {
    let requests = requests.max(1) as f64;
    let mut by_command = BTreeMap::new();
    let mut total = 0u64;
    for (name, &calls) in after {
        // Our own probes (INFO, and the HELLO/CLIENT of connecting to read it) are not the route's.
        if matches!(
            name.as_str(),
            "info" | "hello" | "client|setinfo" | "client"
        ) {
            continue;
        }
        let delta = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
        if delta > 0 {
            total += delta;
            by_command.insert(name.clone(), delta as f64 / requests);
        }
    }
    RedisPerRequest {
        commands_per_request: total as f64 / requests,
        by_command,
        cpu_us_per_request: None,
        requests_per_redis_core: None,
    }
}

/// The prefix of the client-side caches' series at `/metrics` (the redis backend's
/// `--redis-cache on`, label `cache="redis"`, and `--jwt-denylist cached`, `cache="jwt_denylist"`).
pub const CACHE_SERIES_PREFIX: &str = "authlab_redis_cache_";

/// Series values by name, as `/metrics` shows them.
pub type Counters = BTreeMap<String, f64>;

/// Reads the `authlab_redis_cache_*` samples of one cache (`cache="<cache>"`) from Prometheus
/// text: the series name and its value. Comments, other series and other caches are skipped.
pub fn cache_counters(text: &str, cache: &str) -> Counters {
    let label = format!("cache=\"{cache}\"");
    let mut counters = Counters::new();
    for line in text.lines() {
        if !line.starts_with(CACHE_SERIES_PREFIX) {
            continue;
        }
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        if !labels.split(',').any(|l| l.trim() == label) {
            continue;
        }
        if let Ok(value) = value.trim().parse::<f64>() {
            counters.insert(name.to_owned(), value);
        }
    }
    counters
}

/// What a mode's client-side cache did while its row was measured (every round, warm-ups
/// included), from its `/metrics` series.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct CacheActivity {
    /// Lookups answered from memory (`authlab_redis_cache_hits_total` growth).
    pub hits: u64,
    /// Lookups that went to Redis (`authlab_redis_cache_misses_total` growth).
    pub misses: u64,
    /// Hits over lookups; `None` if there was no lookup.
    pub hit_ratio: Option<f64>,
    /// Keys Redis (or the instance) invalidated.
    pub invalidations: u64,
    /// Times the whole cache was emptied (a disconnect, a failed heartbeat, `FLUSHALL`).
    pub flushes: u64,
    /// Entries dropped to stay within `--redis-cache-size`.
    pub evictions: u64,
    /// Entries held at the end of the last round.
    pub entries: u64,
}

impl CacheActivity {
    /// Adds what changed between two scrapes of the same cache.
    pub fn add(&mut self, before: &Counters, after: &Counters) {
        let grown = |name: &str| {
            let (b, a) = (before.get(name), after.get(name));
            a.zip(b).map_or(0, |(a, b)| (a - b).max(0.0) as u64)
        };
        self.hits += grown("authlab_redis_cache_hits_total");
        self.misses += grown("authlab_redis_cache_misses_total");
        self.invalidations += grown("authlab_redis_cache_invalidations_total");
        self.flushes += grown("authlab_redis_cache_flushes_total");
        self.evictions += grown("authlab_redis_cache_evictions_total");
        self.entries = after
            .get("authlab_redis_cache_entries")
            .map_or(self.entries, |e| *e as u64);
        let lookups = self.hits + self.misses;
        self.hit_ratio = (lookups > 0).then(|| self.hits as f64 / lookups as f64);
    }
}

/// What `used_memory` grew by per login (access token + refresh family + user index entry).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RedisTokenMemory {
    /// Logins (opaque access tokens issued, each with its refresh family).
    pub tokens: usize,
    /// `used_memory` growth, in bytes.
    pub used_memory_delta_bytes: i64,
    /// Per token.
    pub bytes_per_token: f64,
}

/// Issues `tokens` opaque tokens under a throw-away prefix and reads Redis's memory growth.
/// Stops issuing early once `cancel` is set (the keys issued so far are still removed).
pub async fn redis_token_memory(
    redis: &RedisSettings,
    tokens: usize,
    cancel: &Arc<AtomicBool>,
) -> Result<RedisTokenMemory, ProbeError> {
    let url = redis.url.as_str();
    let mut settings = Settings::defaults();
    settings.redis = redis.clone();
    settings.redis_prefix = format!("authlab-compare-mem:{}:", uuid::Uuid::new_v4().simple());
    settings.access_ttl = Duration::from_secs(600);
    settings.refresh_ttl = Duration::from_secs(600);
    let connection = backends::redis_connection(&settings.redis)?;
    let secret = JwtSecret::generate().map_err(|e| ProbeError::Secret(Box::new(e)))?;
    // As the server builds it: every login is an access token plus a refresh-token family.
    let auth = Arc::new(backends::redis_backend(&settings, &connection, &secret)?);
    let used = |info: String| -> i64 {
        info_field(&info, "used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = used(info(url, "memory").await?);
    // 64 issuers in flight, pipelined over the one multiplexed connection.
    let mut tasks = tokio::task::JoinSet::new();
    let lanes = 64usize;
    for lane in 0..lanes {
        let auth = auth.clone();
        let cancel = cancel.clone();
        let count = tokens / lanes + usize::from(lane < tokens % lanes);
        tasks.spawn(async move {
            let mut ok = 0usize;
            for n in 0..count {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                let identity = Identity::new((lane * 1_000_000 + n) as i64, format!("user{n:07}"));
                if auth.issue(&identity, &ClientInfo::default()).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        });
    }
    let mut issued = 0usize;
    while let Some(done) = tasks.join_next().await {
        issued += done.unwrap_or(0);
    }
    let after = used(info(url, "memory").await?);
    connection.delete_prefix(&settings.redis_prefix).await?;
    let delta = after - before;
    Ok(RedisTokenMemory {
        tokens: issued,
        used_memory_delta_bytes: delta,
        bytes_per_token: delta as f64 / issued.max(1) as f64,
    })
}

/// Deletes every key under `prefix` (cleanup only, never on a request path).
pub async fn remove_prefix(redis: &RedisSettings, prefix: &str) -> Result<(), ProbeError> {
    Ok(backends::redis_connection(redis)?
        .delete_prefix(prefix)
        .await?)
}

/// Why a measurement beside HTTP failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading Redis's own statistics failed.
    #[error("reading Redis statistics failed")]
    Info(#[from] redis::RedisError),
    /// authlab's Redis connection failed (or the URL does not parse).
    #[error("Redis failed")]
    Backend(#[from] RedisBackendError),
    /// No JWT secret could be generated for the refresh families.
    #[error("no secret could be generated")]
    Secret(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_request_counts_only_the_commands_that_ran_and_not_our_probes() {
        let before = CommandStats::from([("get".into(), 10), ("info".into(), 3)]);
        let after = CommandStats::from([
            ("get".into(), 210),
            ("info".into(), 5),
            ("exists".into(), 100),
        ]);
        let per = per_request(&before, &after, 200);
        assert_eq!(per.commands_per_request, 1.5);
        // 2 ms of Redis CPU over those 200 requests: 10 us each, 100,000 a second per core.
        let per = per.with_cpu(0.002, 200);
        assert_eq!(per.cpu_us_per_request.map(|us| us.round()), Some(10.0));
        assert_eq!(per.requests_per_redis_core.map(f64::round), Some(100_000.0));
        // A route that costs Redis nothing measurable has no capacity line.
        assert_eq!(per.clone().with_cpu(0.0, 200).requests_per_redis_core, None);
        assert_eq!(per.by_command.get("get"), Some(&1.0));
        assert_eq!(per.by_command.get("exists"), Some(&0.5));
        assert!(!per.by_command.contains_key("info"));
    }

    #[test]
    fn a_caches_series_are_read_by_its_label_and_its_activity_is_the_growth() {
        let scrape = |hits: u64, misses: u64| {
            format!(
                "# TYPE authlab_redis_cache_hits_total counter\n\
                 authlab_redis_cache_hits_total{{cache=\"redis\"}} {hits}\n\
                 authlab_redis_cache_hits_total{{cache=\"jwt_denylist\"}} 7\n\
                 authlab_redis_cache_misses_total{{cache=\"redis\"}} {misses}\n\
                 authlab_redis_cache_hit_ratio{{cache=\"redis\"}} 0.5\n\
                 authlab_redis_cache_entries{{cache=\"redis\"}} 3\n\
                 authlab_redis_errors_total{{command=\"query\"}} 3\n"
            )
        };
        let before = cache_counters(&scrape(10, 10), "redis");
        assert_eq!(before.len(), 4, "{before:?}");
        assert_eq!(before["authlab_redis_cache_hits_total"], 10.0);
        let after = cache_counters(&scrape(105, 15), "redis");
        let mut activity = CacheActivity::default();
        activity.add(&before, &after);
        assert_eq!((activity.hits, activity.misses), (95, 5));
        assert_eq!(activity.hit_ratio, Some(0.95));
        assert_eq!(activity.entries, 3);
        assert!(cache_counters(&scrape(1, 1), "none").is_empty());
    }

    #[test]
    fn the_masters_holding_slots_are_read_from_cluster_nodes() {
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b2 127.0.0.1:7001@17001 slave a1 0 1 1 connected\n\
                     c3 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-16383\n\
                     d4 127.0.0.1:7003@17003 master,fail - 0 1 3 disconnected\n";
        assert_eq!(
            masters_of(nodes, ":secret@"),
            [
                "redis://:secret@127.0.0.1:7000",
                "redis://:secret@127.0.0.1:7002"
            ]
        );
    }

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_rss:4096\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1024"));
        assert_eq!(info_field(info, "used_memory_rss"), Some("4096"));
        assert_eq!(info_field(info, "nope"), None);
    }
}
