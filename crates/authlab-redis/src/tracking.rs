//! Server-assisted client-side caching: Redis answers from process memory, and Redis itself
//! says when an answer goes stale (RESP3 `CLIENT TRACKING`).
//!
//! A revocable token needs a lookup on every request, the articles say, so it costs a round
//! trip. Since Redis 6 the lookup can stay in process: a connection that turns tracking on is
//! told by Redis (an `invalidate` push message) whenever a key it has read changes. A logout on
//! any instance is a `DEL`; Redis pushes the invalidation to every instance's tracking connection
//! within microseconds, and each forgets the key. Almost no request leaves the process, and a
//! revocation still takes effect everywhere at once. The hard part is not the cache but knowing
//! when it may have missed an invalidation, and answering from Redis then.
//!
//! # Why our own cache, not redis-rs's `cache-aio`
//! A prototype of `cache-aio` (redis-rs 1.8.1) served values Redis no longer held in four ways:
//! a miss racing an invalidation stored the old value after its only invalidation; a killed or
//! restarted connection kept answering hits forever; a reconnect flushed only after the driver
//! noticed; a hung Redis kept hits answering. Each needs a hook that crate does not offer (a
//! marker per miss, a flush on disconnect, a heartbeat), so this module builds the cache on the
//! RESP3 push messages redis-rs hands over, about 300 lines with the map (`cache`).
//!
//! # The guarantees, and what keeps each
//! - **A racing miss never leaves a stale entry**: a miss puts a pending marker under its key
//!   before it is sent and keeps its reply only if the marker survived (see `cache`). Pushes are
//!   handled on the connection's reader, in order with replies, so an invalidation Redis sent
//!   before the reply is applied before the reply is seen.
//! - **Every miss is read on the tracking connection**, so Redis tracks exactly the keys this
//!   cache holds, and their invalidations come back on the connection whose pushes we read.
//! - **The tracking connection runs on its own thread** (a current-thread Tokio runtime): actix
//!   workers are single-threaded runtimes, and a worker busy answering hits would never read the
//!   invalidation that ends them.
//! - **Flush on every disconnect**: redis-rs reports a closed connection (a `CLIENT KILL`, a
//!   restart, a reset) as a push; the cache is emptied right there, and again before a new
//!   connection serves anything. A restarted Redis is a new connection, so nothing read from the
//!   old one survives it.
//! - **Trust is a proof, earned on demand, and it bounds what a silent failure can cost.** Any
//!   reply on the tracking connection comes after every push Redis queued before it, so an
//!   acknowledged command sent at `s` (a miss's read, or a heartbeat) proves that every write
//!   acknowledged before `s` has been applied here. Hits are served only while the newest such
//!   proof was sent less than the staleness bound W ([`CacheConfig::staleness_bound`],
//!   `--redis-cache-staleness`) ago: a hung or partitioned Redis (or a starved thread) stops hits
//!   within W, and requests fall through to Redis, which answers or times out (503). Nothing
//!   ticks: a hit that finds the proof older than W/2 wakes one heartbeat (one in flight at a
//!   time), and a miss carries its own proof. An idle instance sends Redis nothing at all; a busy
//!   one at most 2/W heartbeats a second, fewer when its misses bring the proof. A failed heartbeat
//!   drops the connection (flush, reconnect); so does a failed miss, after a heartbeat confirms it.
//! - **A silently replaced dataset empties the cache**: `SWAPDB` (and anything else that swaps
//!   the data under a live connection without an invalidation) is caught by the *dataset mark*,
//!   a random value kept under one key ([`CacheConfig::dataset_mark_key`]). Every proof reads it
//!   (the heartbeat is `GET` of the mark, and a miss reads it with the key); a proof is believed
//!   only if the mark is the one this cache has seen. A different or missing mark flushes the
//!   cache, and the next heartbeat writes a new mark (`SET NX`) if there is none.
//! - **No entry outlives its key**: an entry's deadline is its key's `PTTL`, read in the same
//!   round trip as the value and counted from before the request was sent, and at most
//!   [`CacheConfig::max_entry_life`].
//! - **This instance's own writes** remove their entries at once ([`TrackedCache::forget`]),
//!   without waiting for the push.
//! - **Memory is bounded**: at most [`CacheConfig::capacity`] entries (see `cache`).
//!
//! Redis Cluster and Sentinel are refused for now: on a cluster each node tracks only its own
//! keys (one tracking connection per node, flushed per node, would be needed), and after a
//! Sentinel failover the tracking connection must follow the new master and flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::Notify;

use crate::cache::{Entries, Nanos, Stored};
use crate::{RedisBackendError, RedisConnection, RedisTimeouts};

/// How the cache behaves. [`CacheConfig::new`] gives the defaults for a capacity.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries kept (`--redis-cache-size`); 0 keeps nothing, so every lookup goes to Redis.
    pub capacity: usize,
    /// Longest an entry is kept, whatever its key's TTL. Also the life of a remembered "the key
    /// does not exist" (for the JWT denylist, whose "not revoked" is a missing key).
    pub max_entry_life: Duration,
    /// The staleness bound W: hits are served only while the newest acknowledged reply on the
    /// tracking connection was sent less than this long ago, so it is the longest a silent
    /// failure (hung Redis, lost network, starved thread) can let a revocation go unseen.
    /// Default 5 ms (`--redis-cache-staleness`). A hit that finds the proof older than W/2 wakes
    /// one heartbeat.
    pub staleness_bound: Duration,
    /// Connect and reply timeouts of the tracking connection; a heartbeat that times out drops it.
    pub timeouts: RedisTimeouts,
    /// The key of the dataset mark (see the module docs): under the key prefix, shared by every
    /// instance on that prefix. It has no TTL, like the JWT denylist's epoch: it must outlive
    /// every cached entry.
    pub dataset_mark_key: String,
}

impl CacheConfig {
    /// The defaults: a staleness bound of 5 ms, entries kept at most 15 minutes.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            max_entry_life: Duration::from_secs(15 * 60),
            staleness_bound: Duration::from_millis(5),
            timeouts: RedisTimeouts::default(),
            dataset_mark_key: "authlab:dataset-mark".to_owned(),
        }
    }
}

/// What the cache has done so far (counters since start), for `/metrics` and `authlab compare`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that went to Redis (not cached, expired, or the cache not trusted at the moment).
    pub misses: u64,
    /// Keys removed because Redis said they changed (or this instance changed them).
    pub invalidations: u64,
    /// Times the whole cache was emptied: a disconnect, a failed heartbeat, `FLUSHALL`.
    pub flushes: u64,
    /// Heartbeats (`GET`s of the dataset mark) sent: woken by hits whose proof was getting old, or by a failure.
    pub heartbeats: u64,
    /// Entries removed to stay within the capacity.
    pub evictions: u64,
    /// Entries held now (misses in flight included).
    pub entries: u64,
    /// The most entries it holds.
    pub capacity: u64,
}

impl CacheStats {
    /// Hits over all lookups, 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A read-through cache of Redis keys, kept coherent by Redis invalidations (see the module
/// docs). Owns a thread with the tracking connection; dropping the cache stops it.
pub struct TrackedCache {
    shared: Arc<Shared>,
    /// Where lookups go, uncached, while there is no tracking connection (before the first
    /// connect, or between a failure and the reconnect): a Redis that is down answers 503 there.
    fallback: Arc<RedisConnection>,
}

/// What the push handler touches: the entries, the clock, the proof and the counters.
struct Local {
    entries: Entries,
    /// The cache clock's zero.
    base: Instant,
    /// When the newest acknowledged command on the tracking connection was sent (cache clock);
    /// 0: not trusted now.
    beat: AtomicU64,
    /// Bumped on every flush: a proof of an older generation is not believed.
    generation: AtomicU64,
    /// A heartbeat has been asked for and not yet answered (one in flight at a time).
    beat_wanted: AtomicBool,
    /// Wakes the tracking thread for a heartbeat (or to stop).
    wake: Notify,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
    heartbeats: AtomicU64,
    staleness_bound: Nanos,
    /// The dataset mark this cache's entries were read under (`None`: not seen yet).
    mark: std::sync::Mutex<Option<String>>,
}

/// The live tracking connection and the generation it was opened in.
struct Live {
    conn: MultiplexedConnection,
    generation: u64,
}

struct Shared {
    local: Arc<Local>,
    live: ArcSwapOption<Live>,
    stop: AtomicBool,
    config: CacheConfig,
}

impl Local {
    /// Now on the cache clock (never 0, which means "no heartbeat").
    fn now(&self) -> Nanos {
        nanos(self.base.elapsed()).saturating_add(1)
    }

    /// Whether hits may be served at `now`: a command sent less than the staleness bound ago
    /// was acknowledged. A proof past half its life asks for a heartbeat, so that a steady
    /// stream of hits never finds it expired.
    fn trusted(&self, now: Nanos) -> bool {
        let beat = self.beat.load(Ordering::Acquire);
        let age = now.saturating_sub(beat);
        if beat == 0 || age >= self.staleness_bound {
            return false;
        }
        if age > self.staleness_bound / 2 {
            self.want_beat();
        }
        true
    }

    /// Asks the tracking thread for one heartbeat, unless one is already asked for.
    fn want_beat(&self) {
        // A plain load first: while a heartbeat is already asked for, the hits that follow read
        // a shared flag instead of all writing it.
        if !self.beat_wanted.load(Ordering::Acquire)
            && !self.beat_wanted.swap(true, Ordering::AcqRel)
        {
            self.wake.notify_one();
        }
    }

    /// A command sent at `sent` on the tracking connection of `generation` was acknowledged,
    /// and Redis's dataset mark was `mark` then: every invalidation Redis queued before it has
    /// been applied, unless the data itself was swapped (a different or missing mark), which
    /// empties the cache instead.
    fn proven(&self, sent: Nanos, generation: u64, mark: Option<&str>) {
        {
            let mut known = self
                .mark
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match (known.as_deref(), mark) {
                (_, None) => {
                    // Forgotten, so the next heartbeat writes a new mark.
                    *known = None;
                    drop(known);
                    self.flush("the dataset mark is missing: the data was replaced");
                    self.want_beat();
                    return;
                }
                (Some(seen), Some(now)) if seen != now => {
                    *known = Some(now.to_owned());
                    drop(known);
                    // Entries read under the old mark are gone; this reply proves nothing
                    // about them, so the next proof must come from a new read.
                    self.flush("the dataset mark changed: the data was swapped (SWAPDB?)");
                    return;
                }
                (None, Some(now)) => *known = Some(now.to_owned()),
                (Some(_), Some(_)) => {}
            }
        }
        self.beat.fetch_max(sent, Ordering::AcqRel);
        // A flush (disconnect) since that connection opened: its replies prove nothing.
        if self.generation.load(Ordering::Acquire) != generation {
            self.beat.store(0, Ordering::Release);
        }
    }

    /// Empties the cache and distrusts it until the next heartbeat of a new generation.
    fn flush(&self, why: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.beat.store(0, Ordering::Release);
        self.entries.clear();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why, "flushed the Redis client-side cache");
    }

    fn invalidate(&self, key: &[u8]) {
        match std::str::from_utf8(key) {
            Ok(key) => {
                self.entries.remove(key);
                self.invalidations.fetch_add(1, Ordering::Relaxed);
            }
            // We only ever read UTF-8 keys; anything else means we misunderstand the message.
            Err(_) => self.flush("an invalidation for a key that is not UTF-8"),
        }
    }

    /// Handles one push message, on the connection's reader, before any reply after it.
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) | Some(Value::Set(keys)) => {
                    for key in keys {
                        match key {
                            Value::BulkString(key) => self.invalidate(key),
                            _ => self.flush("an invalidation of an unexpected shape"),
                        }
                    }
                }
                // `FLUSHALL`/`FLUSHDB` (a null key list), or a shape we do not know: forget all.
                _ => self.flush("Redis invalidated every key"),
            },
            PushKind::Disconnection => {
                self.flush("the tracking connection closed");
                // The thread finds out at once (its heartbeat fails) and reconnects.
                self.want_beat();
            }
            _ => {}
        }
    }
}

fn nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl TrackedCache {
    /// Starts the tracking thread for the Redis at `url` (standalone only; see the module docs).
    /// Nothing connects before the thread does, so this never needs Redis to be up; until the
    /// tracking connection is open, lookups go uncached to `fallback` (the backend's own
    /// connection to the same Redis).
    pub fn start(
        url: &str,
        config: CacheConfig,
        fallback: Arc<RedisConnection>,
    ) -> Result<Self, RedisBackendError> {
        if let Some((scheme, _)) = url.split_once("://")
            && scheme.contains('+')
        {
            return Err(RedisBackendError::CacheTopology(scheme.to_owned()));
        }
        let info = url
            .into_connection_info()
            .map_err(RedisBackendError::InvalidUrl)?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        // Push messages need RESP3.
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(redis_settings);
        let client = Client::open(info).map_err(RedisBackendError::InvalidUrl)?;
        let local = Arc::new(Local {
            entries: Entries::new(config.capacity),
            base: Instant::now(),
            beat: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            beat_wanted: AtomicBool::new(false),
            wake: Notify::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            staleness_bound: nanos(config.staleness_bound),
            mark: std::sync::Mutex::new(None),
        });
        let shared = Arc::new(Shared {
            local,
            live: ArcSwapOption::empty(),
            stop: AtomicBool::new(false),
            config,
        });
        let thread_shared = shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RedisBackendError::TrackingThread)?;
        std::thread::Builder::new()
            .name("redis-tracking".into())
            .spawn(move || runtime.block_on(track(client, thread_shared)))
            .map_err(RedisBackendError::TrackingThread)?;
        Ok(Self { shared, fallback })
    }

    /// The value stored under `key` (`None`: no such key), from memory when the cache holds it
    /// and is trusted, else read from Redis on the tracking connection and kept (see the module
    /// docs). `remember_missing` also keeps "no such key" (for the JWT denylist); a token store
    /// does not, so that random guesses cannot fill the cache.
    ///
    /// A hit never creates the miss's future: that future holds a Redis pipeline's state and is
    /// boxed, so the future of `get` itself, and of every caller that awaits it inline, stays
    /// small (see [`TrackedCache::peek`]).
    pub async fn get(
        &self,
        key: &str,
        remember_missing: bool,
    ) -> Result<Stored, RedisBackendError> {
        if let Some(value) = self.peek(key) {
            self.record_hits(1);
            return Ok(value);
        }
        Box::pin(self.read_through(key, remember_missing)).await
    }

    /// The value under `key` if the cache holds it and is trusted now, without going to Redis
    /// and without counting a hit or a miss (the caller decides what it was: see
    /// [`TrackedCache::record_hits`]).
    ///
    /// This is the hot path of a cached verify, and it is synchronous on purpose. An `async`
    /// caller that awaited a Redis command inline would carry that command's state in its own
    /// future, hit or miss, and actix moves every request's handler future into a box: on this
    /// machine that was a 22 KB `memcpy` per request, more than the HMAC of a JWT.
    pub fn peek(&self, key: &str) -> Option<Stored> {
        self.peek_all([key]).map(|[value]| value)
    }

    /// [`TrackedCache::peek`] for several keys at once, judged at one instant (one clock read,
    /// one trust check): all of them, or `None` if any one is not held.
    pub fn peek_all<const N: usize>(&self, keys: [&str; N]) -> Option<[Stored; N]> {
        let local = &self.shared.local;
        let now = local.now();
        if !local.trusted(now) {
            return None;
        }
        let mut values = [const { None }; N];
        for (value, key) in values.iter_mut().zip(keys) {
            *value = Some(local.entries.get(key, now)?);
        }
        Some(values.map(|value| value.unwrap_or_default()))
    }

    /// Counts `n` answers served by [`TrackedCache::peek`] as hits.
    pub fn record_hits(&self, n: u64) {
        self.shared.local.hits.fetch_add(n, Ordering::Relaxed);
    }

    /// A miss: read `key` on the tracking connection and keep the answer if nothing changed it
    /// in between (see the module docs).
    async fn read_through(
        &self,
        key: &str,
        remember_missing: bool,
    ) -> Result<Stored, RedisBackendError> {
        let local = &self.shared.local;
        let now = local.now();
        local.misses.fetch_add(1, Ordering::Relaxed);
        let Some(live) = self.shared.live.load_full() else {
            let value: Option<String> = self.fallback.query(redis::cmd("GET").arg(key)).await?;
            return Ok(value.map(Arc::from));
        };
        // A connection of an older generation is on its way out: read on it, keep nothing.
        let ticket = if live.generation == local.generation.load(Ordering::Acquire) {
            local.entries.begin(key, now)
        } else {
            None
        };
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        pipe.cmd("GET").arg(&self.shared.config.dataset_mark_key);
        let mut conn = live.conn.clone();
        let reply: redis::RedisResult<(Option<String>, i64, Option<String>)> =
            pipe.query_async(&mut conn).await;
        let (value, pttl, mark) = match reply {
            Ok(reply) => reply,
            Err(err) => {
                if let Some(ticket) = ticket {
                    local.entries.abandon(key, ticket);
                }
                // A heartbeat tells a slow reply from a dead connection (and replaces the latter).
                local.want_beat();
                return Err(RedisBackendError::Unreachable(err));
            }
        };
        // The reply came after every push queued before the read: a proof, like a heartbeat's.
        local.proven(now, live.generation, mark.as_deref());
        let value: Stored = value.map(Arc::from);
        if let Some(ticket) = ticket {
            let max = self.shared.config.max_entry_life;
            let life = match (&value, pttl) {
                (Some(_), ms) if ms > 0 => Some(Duration::from_millis(ms.unsigned_abs()).min(max)),
                // A key without a TTL (the denylist's epoch).
                (Some(_), -1) => Some(max),
                (None, _) if remember_missing => Some(max),
                _ => None,
            };
            // Counted from before the request was sent: an entry never outlives its key.
            let kept = life.is_some_and(|life| {
                local
                    .entries
                    .fill(key, ticket, value.clone(), now.saturating_add(nanos(life)))
            });
            if !kept {
                local.entries.abandon(key, ticket);
            }
        }
        Ok(value)
    }

    /// Forgets `key` at once: this instance just changed it (a logout), so its own next request
    /// must not wait for Redis's push.
    pub fn forget(&self, key: &str) {
        let local = &self.shared.local;
        if local.entries.remove(key) {
            local.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether hits would be served now (a command sent within the staleness bound was
    /// acknowledged).
    pub fn is_trusted(&self) -> bool {
        let local = &self.shared.local;
        local.trusted(local.now())
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let local = &self.shared.local;
        CacheStats {
            hits: local.hits.load(Ordering::Relaxed),
            misses: local.misses.load(Ordering::Relaxed),
            invalidations: local.invalidations.load(Ordering::Relaxed),
            flushes: local.flushes.load(Ordering::Relaxed),
            heartbeats: local.heartbeats.load(Ordering::Relaxed),
            evictions: local.entries.evictions.load(Ordering::Relaxed),
            entries: local.entries.len() as u64,
            capacity: local.entries.capacity() as u64,
        }
    }
}

impl Drop for TrackedCache {
    fn drop(&mut self) {
        // The thread wakes, sees this and closes the connection.
        self.shared.stop.store(true, Ordering::Release);
        self.shared.local.wake.notify_one();
    }
}

/// The tracking thread: connect, turn tracking on, answer heartbeat requests until one fails,
/// flush, wait a moment, again; until the cache is dropped.
async fn track(client: Client, shared: Arc<Shared>) {
    let config = &shared.config;
    let local = &shared.local;
    let mut last_sweep = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        match connect(&client, &shared).await {
            Ok(()) => {
                let failure = heartbeat(&shared, &mut last_sweep).await;
                if let Some(err) = failure {
                    tracing::warn!(error = %err, "lost the Redis tracking connection; cache flushed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot open the Redis tracking connection"),
        }
        shared.live.store(None);
        local.flush("the tracking connection is being replaced");
        if !shared.stop.load(Ordering::Acquire) {
            tokio::time::sleep(config.timeouts.retry_after).await;
        }
    }
}

/// Opens the tracking connection and turns tracking on; publishes it for misses.
async fn connect(client: &Client, shared: &Shared) -> Result<(), redis::RedisError> {
    let local = shared.local.clone();
    let timeouts = &shared.config.timeouts;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_push_sender(move |push: PushInfo| {
            local.on_push(push);
            Ok::<(), std::convert::Infallible>(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // Anything cached before this point came from an older connection.
    shared.local.flush("a new tracking connection");
    let generation = shared.local.generation.load(Ordering::Acquire);
    let sent = shared.local.now();
    let () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .query_async(&mut conn)
        .await?;
    // Tracking starts with an empty cache: this reply, with the dataset mark (written if there
    // is none yet), is the first proof.
    let mark = read_mark(&mut conn, &shared.config.dataset_mark_key, true).await?;
    shared.local.proven(sent, generation, mark.as_deref());
    shared.live.store(Some(Arc::new(Live { conn, generation })));
    Ok(())
}

/// Reads the dataset mark; with `write_if_missing`, first writes a new random one if there is
/// none (`SET NX`, so every instance ends up with the same mark).
async fn read_mark(
    conn: &mut MultiplexedConnection,
    key: &str,
    write_if_missing: bool,
) -> redis::RedisResult<Option<String>> {
    if !write_if_missing {
        return redis::cmd("GET").arg(key).query_async(conn).await;
    }
    let bytes: [u8; 16] = authlab_core::random::bytes();
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(key)
        .arg(fresh)
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(key);
    let (mark,): (Option<String>,) = pipe.query_async(conn).await?;
    Ok(mark)
}

/// How often the thread wakes on its own to drop expired entries (process memory only: it sends
/// Redis nothing).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Answers heartbeat requests until a heartbeat fails or the cache is dropped; returns the
/// failure. Nothing is sent unless a lookup asked for it.
async fn heartbeat(shared: &Shared, last_sweep: &mut Instant) -> Option<redis::RedisError> {
    let local = &shared.local;
    let live = shared.live.load_full()?;
    let mut conn = live.conn.clone();
    while !shared.stop.load(Ordering::Acquire) {
        let woken = tokio::time::timeout(SWEEP_EVERY, local.wake.notified()).await;
        if woken.is_ok() && local.beat_wanted.load(Ordering::Acquire) {
            let sent = local.now();
            local.heartbeats.fetch_add(1, Ordering::Relaxed);
            // The heartbeat reads the dataset mark (and writes one if a flush or a swap left
            // none): its reply is the proof, and the mark says the data is still the same.
            let missing = local
                .mark
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_none();
            let beat = read_mark(&mut conn, &shared.config.dataset_mark_key, missing).await;
            if let Ok(mark) = &beat {
                local.proven(sent, live.generation, mark.as_deref());
            }
            // Answered (or failed): the next lookup that needs one may ask again.
            local.beat_wanted.store(false, Ordering::Release);
            if let Err(err) = beat {
                return Some(err);
            }
            if local.generation.load(Ordering::Acquire) != live.generation {
                return None;
            }
        }
        if last_sweep.elapsed() > SWEEP_EVERY {
            local.entries.sweep(local.now());
            *last_sweep = Instant::now();
        }
    }
    None
}
