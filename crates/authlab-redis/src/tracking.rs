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
//! - **A lapsed proof is renewed, not thrown away with the entries.** When requests are further
//!   apart than W, nearly every lookup finds the proof lapsed. Treating that as a miss cost a
//!   sparse request more than no cache at all (a miss is `GET`, `PTTL` and the mark's `GET` per
//!   key, and a JWT check looks up four keys). So a lookup that finds the proof lapsed but its
//!   entry present (flushes empty the entries, so it is of the current generation) waits for
//!   **one heartbeat started after it**, shared by every lookup waiting at the time (on a
//!   cluster, the heartbeat of the key's master), and is then served from memory if that
//!   heartbeat proved trust and the entry is still there. Why that is safe: the heartbeat sent
//!   at `s` is answered after every invalidation Redis queued before `s`, and those are applied
//!   before the answer is seen; an entry still present after the answer was therefore valid at
//!   `s`, so serving it is as safe as a miss sent at `s` (whose reply, too, is only as fresh as
//!   `s`). The proof is looked at before the entry, never after. If the entry is absent, or the
//!   heartbeat fails, flushes the entries or is not answered within the connection's response
//!   timeout, the lookup is a miss as before (which answers, or fails with 503). A sparse request
//!   costs one round trip and one command (the heartbeat) instead of three per key. The wait is
//!   its own boxed future, created only after the synchronous hit path (see
//!   [`TrackedCache::peek`]) has failed, so a hit costs what it did.
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
//!
//! # On Sentinel and Cluster: the proof must also say *who* answered
//! On one Redis, an acknowledged reply is all a proof needs. Behind Sentinel or on a Cluster the
//! node that answers can stop being the one writes go to (a failover, a switchover, a slot that
//! moves), and a node that is no longer written to sends no invalidation for what it no longer
//! sees. So there a proof counts only if the node, in the same reply, says it is still the one:
//! - **Sentinel**: one tracker follows the master Sentinel names (`sentinel`: resolved, checked
//!   with `ROLE`, watched for `+switch-master`). Its heartbeat pipelines `ROLE` with the dataset
//!   mark's `GET`; a reply that is not `master` ends the generation (flush) and the tracker
//!   reconnects through Sentinel. A hit also requires that the watcher has seen no change of
//!   master since the connection was made, so a switchover ends the generation before the new
//!   master's data is served from memory.
//! - **Cluster**: one tracker per master (`cluster_cache`), each with its own entries, proof and
//!   generation. Its heartbeat is `CLUSTER NODES`, whose `myself` line is the node's own view:
//!   whether it is a master, the slots it owns and the ones it is migrating away. A hit for a key
//!   requires the tracker its slot maps to be trusted *and* that same proof to say the node owns
//!   the slot and is not migrating it. A view that gave up a slot, or began migrating one, drops
//!   the tracker's entries. A miss that meets `MOVED` or `ASK` is answered by the cluster
//!   connection, not cached, and refreshes the slot map (starting trackers for new masters,
//!   stopping the ones for masters gone).
//! - On both, **a proof comes only from a heartbeat**, never from a miss's reply: a demoted node
//!   still answers `GET`. And **a silence longer than [`SILENCE_LIMIT`] drops the entries** when
//!   the next proof arrives: a failover needs the master to be silent to its peers for at least
//!   the cluster node timeout (or Sentinel's `down-after-milliseconds`), so a node that answered
//!   two heartbeats less than that apart cannot have been replaced in between, while a stalled
//!   (`SIGSTOP`) node that wakes up still believing it is the master cannot vouch for what it
//!   cached before it slept.
//!
//! No topology ticks: the heartbeats are asked for by hits, one in flight per tracker, so an idle
//! instance sends no node anything, and a busy one at most 2/W heartbeats a second per master
//! it reads from.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Role,
    Value,
};
use secrecy::ExposeSecret;
use tokio::sync::Notify;

use crate::cache::{Entries, Nanos, Stored};
use crate::cluster_cache::{ClusterTrackers, Signal, SlotView, slot_of};
use crate::sentinel::SentinelMaster;
use crate::topology::RedisTarget;
use crate::{RedisBackendError, RedisConnection, RedisTimeouts};

/// On Sentinel and Cluster, the longest gap between two heartbeats over which entries survive
/// (see the module docs): shorter than any failover's detection time (the cluster node timeout,
/// Sentinel's `down-after-milliseconds`; keep those at 1 s or more).
pub const SILENCE_LIMIT: Duration = Duration::from_millis(500);

/// How the cache behaves. [`CacheConfig::new`] gives the defaults for a capacity.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries kept (`--redis-cache-size`); 0 keeps nothing, so every lookup goes to Redis.
    /// On a cluster, split evenly between the masters' trackers.
    pub capacity: usize,
    /// Longest an entry is kept, whatever its key's TTL. Also the life of a remembered "the key
    /// does not exist" (for the JWT denylist, whose "not revoked" is a missing key).
    pub max_entry_life: Duration,
    /// The staleness bound W: hits are served only while the newest acknowledged reply on the
    /// tracking connection was sent less than this long ago, so it is the longest a silent
    /// failure (hung Redis, lost network, starved thread) can let a revocation go unseen.
    /// Default 5 ms (`--redis-cache-staleness`). A hit that finds the proof older than W/2 wakes
    /// one heartbeat; a lookup that finds it lapsed waits for one (see the module docs).
    pub staleness_bound: Duration,
    /// Connect and reply timeouts of the tracking connection; a heartbeat that times out drops it.
    pub timeouts: RedisTimeouts,
    /// The key of the dataset mark (see the module docs): under the key prefix, shared by every
    /// instance on that prefix. It has no TTL, like the JWT denylist's epoch: it must outlive
    /// every cached entry. Not used on a cluster, where `SWAPDB` does not exist.
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
/// On a cluster, the sums over the masters' trackers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory (some after a heartbeat, when the proof had lapsed).
    pub hits: u64,
    /// Lookups that went to Redis (not cached, expired, or the cache not trusted at the moment).
    pub misses: u64,
    /// Keys removed because Redis said they changed (or this instance changed them).
    pub invalidations: u64,
    /// Times a tracker's entries were emptied: a disconnect, a failed heartbeat, `FLUSHALL`, a
    /// node that gave up slots or was silent too long.
    pub flushes: u64,
    /// Heartbeats sent: woken by hits whose proof was getting old, by lookups that found it
    /// lapsed, or by a failure.
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

/// The counters every tracker of one cache adds to, and the cache's clock.
pub(crate) struct Counters {
    /// The cache clock's zero, shared by every tracker so one reading serves several keys.
    pub(crate) base: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
    heartbeats: AtomicU64,
    /// Evictions of trackers that were stopped (a master gone from the cluster).
    pub(crate) retired_evictions: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            retired_evictions: AtomicU64::new(0),
        }
    }

    /// Now on the cache clock (never 0, which means "no heartbeat").
    pub(crate) fn now(&self) -> Nanos {
        nanos(self.base.elapsed()).saturating_add(1)
    }
}

/// A read-through cache of Redis keys, kept coherent by Redis invalidations (see the module
/// docs). Owns the tracking threads; dropping the cache stops them.
pub struct TrackedCache {
    trackers: Trackers,
    counters: Arc<Counters>,
    capacity: usize,
    /// Where lookups go, uncached, while there is no tracking connection (before the first
    /// connect, or between a failure and the reconnect) or the slot moved: a Redis that is down
    /// answers 503 there.
    fallback: Arc<RedisConnection>,
}

/// The trackers of one cache, by topology.
enum Trackers {
    /// One Redis, or the master Sentinel names: one tracker.
    One(Arc<Tracker>),
    /// A cluster: one tracker per master, found from the slot map.
    Cluster(Arc<ClusterTrackers>),
}

/// How a tracker reaches its node, and so which heartbeat it sends.
pub(crate) enum Connector {
    /// One Redis: the heartbeat is the dataset mark's `GET`.
    Standalone(Client),
    /// The master Sentinel names: `ROLE` and the dataset mark.
    Sentinel(Box<SentinelMaster>),
    /// One master of a cluster: `CLUSTER NODES`, for the node's own slot view.
    ClusterNode(Client),
}

impl Connector {
    /// A connector for one node of a cluster, at `url` (RESP3, `TCP_NODELAY`).
    pub(crate) fn cluster_node(url: &str) -> Result<Self, RedisBackendError> {
        Ok(Self::ClusterNode(resp3_client(url)?))
    }
}

/// A client for `url` that speaks RESP3 (push messages need it), `TCP_NODELAY` on.
fn resp3_client(url: &str) -> Result<Client, RedisBackendError> {
    let info = url
        .into_connection_info()
        .map_err(RedisBackendError::InvalidUrl)?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let redis_settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(redis_settings);
    Client::open(info).map_err(RedisBackendError::InvalidUrl)
}

/// What the push handler touches: the entries, the proof, the node's view and the counters.
pub(crate) struct Local {
    pub(crate) entries: Entries,
    pub(crate) counters: Arc<Counters>,
    /// When the newest acknowledged proof on the tracking connection was sent (cache clock);
    /// 0: not trusted now.
    beat: AtomicU64,
    /// When the newest heartbeat was sent, whatever became of the entries (for the silence
    /// rule; 0: none yet).
    last_beat: AtomicU64,
    /// Bumped on every flush: a proof of an older generation is not believed.
    generation: AtomicU64,
    /// A heartbeat has been asked for and not yet answered (one in flight at a time).
    beat_wanted: AtomicBool,
    /// When the newest heartbeat that has finished (answered or failed) was started (cache
    /// clock; 0: none yet): a lookup waiting on a lapsed proof stops waiting once a heartbeat
    /// started after it has finished.
    answered: AtomicU64,
    /// Wakes the lookups waiting on a lapsed proof: a heartbeat finished, or the connection went.
    beaten: Notify,
    /// Wakes the tracking thread for a heartbeat (or to stop).
    pub(crate) wake: Notify,
    staleness_bound: Nanos,
    /// The dataset mark this cache's entries were read under (`None`: not seen yet).
    mark: std::sync::Mutex<Option<String>>,
    /// Whether a miss's reply is a proof (one Redis only: elsewhere a demoted node still
    /// answers reads, so only a heartbeat that asked the node's role counts).
    proves_on_miss: bool,
    /// Sentinel: the watcher's count of master changes, and its value when the live
    /// connection was made. A hit requires them equal.
    master_generation: Option<Arc<AtomicU64>>,
    master_seen: AtomicU64,
    /// Cluster: the node's own view (master? which slots, stable?) from the newest heartbeat.
    view: ArcSwapOption<SlotView>,
    /// Cluster: asks for the slot map to be read again.
    trouble: Option<Arc<Signal>>,
}

/// The live tracking connection and the generation it was opened in.
struct Live {
    conn: MultiplexedConnection,
    generation: u64,
}

/// One tracking connection, its thread and its entries.
pub(crate) struct Tracker {
    pub(crate) local: Arc<Local>,
    live: ArcSwapOption<Live>,
    pub(crate) stop: AtomicBool,
    config: CacheConfig,
    connector: Connector,
}

/// Why a miss was not answered by the tracker.
pub(crate) enum Miss {
    /// The node no longer serves the key's slot (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`): ask
    /// the cluster connection.
    Redirected,
    /// The read failed.
    Failed(RedisBackendError),
}

impl Local {
    fn now(&self) -> Nanos {
        self.counters.now()
    }

    /// Whether hits may be served at `now`: a command sent less than the staleness bound ago
    /// was acknowledged (and, behind Sentinel, the master has not changed since the connection
    /// was made). A proof past half its life asks for a heartbeat, so that a steady stream of
    /// hits never finds it expired.
    pub(crate) fn trusted(&self, now: Nanos) -> bool {
        let beat = self.beat.load(Ordering::Acquire);
        let age = now.saturating_sub(beat);
        if beat == 0 || age >= self.staleness_bound {
            return false;
        }
        if let Some(master) = &self.master_generation
            && master.load(Ordering::Acquire) != self.master_seen.load(Ordering::Acquire)
        {
            self.want_beat();
            return false;
        }
        if age > self.staleness_bound / 2 {
            self.want_beat();
        }
        true
    }

    /// Whether the newest heartbeat's view says this node serves `slot` (owns it and is not
    /// migrating it). Read after [`Local::trusted`]: the view is stored before its proof.
    pub(crate) fn serves(&self, slot: u16) -> bool {
        self.view
            .load()
            .as_ref()
            .is_some_and(|view| view.serves(slot))
    }

    /// Whether a lookup that began at `asked` may be served from the entries at `now`: a proof
    /// sent at or after `asked` was acknowledged (the lapsed path: see the module docs), or the
    /// newest proof is younger than the staleness bound (the rule of a hit). Read before the
    /// entries, like [`Local::trusted`]. Unlike it, asks for no heartbeat.
    fn proven_since(&self, asked: Nanos, now: Nanos) -> bool {
        let beat = self.beat.load(Ordering::Acquire);
        beat != 0
            && (beat >= asked || now.saturating_sub(beat) < self.staleness_bound)
            && !self.master_moved()
    }

    /// Behind Sentinel: the watcher saw the master change since the live connection was made.
    fn master_moved(&self) -> bool {
        self.master_generation.as_ref().is_some_and(|master| {
            master.load(Ordering::Acquire) != self.master_seen.load(Ordering::Acquire)
        })
    }

    /// Asks the tracking thread for one heartbeat, unless one is already asked for.
    pub(crate) fn want_beat(&self) {
        // A plain load first: while a heartbeat is already asked for, the hits that follow read
        // a shared flag instead of all writing it.
        if !self.beat_wanted.load(Ordering::Acquire)
            && !self.beat_wanted.swap(true, Ordering::AcqRel)
        {
            self.wake.notify_one();
        }
    }

    /// Cluster: the slot map may have changed.
    fn report_trouble(&self) {
        if let Some(trouble) = &self.trouble {
            trouble.raise();
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
        self.believe(sent, generation);
    }

    /// Takes `sent` as the newest proof, unless the generation it was sent in has ended.
    fn believe(&self, sent: Nanos, generation: u64) {
        self.beat.fetch_max(sent, Ordering::AcqRel);
        // A flush (disconnect) since that connection opened: its replies prove nothing.
        if self.generation.load(Ordering::Acquire) != generation {
            self.beat.store(0, Ordering::Release);
        }
    }

    /// The silence rule (see the module docs): a heartbeat sent more than [`SILENCE_LIMIT`]
    /// after the one before drops the entries read before it.
    fn after_silence(&self, sent: Nanos) {
        let last = self.last_beat.swap(sent, Ordering::AcqRel);
        if last != 0 && sent.saturating_sub(last) > nanos(SILENCE_LIMIT) {
            self.drop_entries("no heartbeat for longer than a failover needs");
        }
    }

    /// Cluster: a heartbeat sent at `sent` says the node's view is `view`. A view that no
    /// longer serves a slot the last one served drops the entries (whichever slot they are in).
    fn proven_view(&self, sent: Nanos, generation: u64, view: SlotView) {
        self.after_silence(sent);
        let kept = self.view.load().as_ref().is_none_or(|old| view.keeps(old));
        if !kept {
            self.drop_entries("the node gave up or began migrating slots");
            self.report_trouble();
        }
        // The view before the proof: a hit that reads this proof reads this view (or newer).
        self.view.store(Some(Arc::new(view)));
        self.believe(sent, generation);
    }

    /// Empties the entries without ending the generation: the connection is still good, but
    /// what was read before may not be.
    fn drop_entries(&self, why: &str) {
        self.entries.clear();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why, "emptied the Redis client-side cache");
    }

    /// Empties the cache and distrusts it until the next heartbeat of a new generation.
    fn flush(&self, why: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.beat.store(0, Ordering::Release);
        self.entries.clear();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why, "flushed the Redis client-side cache");
    }

    fn invalidate(&self, key: &[u8]) {
        match std::str::from_utf8(key) {
            Ok(key) => {
                self.entries.remove(key);
                self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
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

impl Tracker {
    /// Starts a tracker's thread; nothing connects before the thread does.
    pub(crate) fn spawn(
        connector: Connector,
        config: CacheConfig,
        capacity: usize,
        counters: Arc<Counters>,
        trouble: Option<Arc<Signal>>,
        master_generation: Option<Arc<AtomicU64>>,
    ) -> Result<Arc<Self>, RedisBackendError> {
        let local = Arc::new(Local {
            entries: Entries::new(capacity),
            counters,
            beat: AtomicU64::new(0),
            last_beat: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            beat_wanted: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            beaten: Notify::new(),
            wake: Notify::new(),
            staleness_bound: nanos(config.staleness_bound),
            mark: std::sync::Mutex::new(None),
            proves_on_miss: matches!(connector, Connector::Standalone(_)),
            master_generation,
            master_seen: AtomicU64::new(0),
            view: ArcSwapOption::empty(),
            trouble,
        });
        let tracker = Arc::new(Self {
            local,
            live: ArcSwapOption::empty(),
            stop: AtomicBool::new(false),
            config,
            connector,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RedisBackendError::TrackingThread)?;
        let thread_tracker = tracker.clone();
        std::thread::Builder::new()
            .name("redis-tracking".into())
            .spawn(move || runtime.block_on(track(thread_tracker)))
            .map_err(RedisBackendError::TrackingThread)?;
        Ok(tracker)
    }

    /// Stops the thread (it closes the connection) and empties the entries.
    pub(crate) fn retire(&self) {
        self.stop.store(true, Ordering::Release);
        self.local.entries.clear();
        self.local.wake.notify_one();
    }

    /// Whether a tracking connection is up (misses are read on it).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load().is_some()
    }

    /// The lapsed path (see the module docs): the proof has lapsed but `key`'s entry is here.
    /// Waits for one heartbeat started after this call (shared with every other waiter) and
    /// returns the entry if that heartbeat proved trust and left it in place. `None` sends the
    /// lookup to Redis: the entry is absent, the heartbeat failed or flushed the entries, or no
    /// answer came within the response timeout. `slot`: on a cluster, the key's, which the
    /// proof's view must serve.
    pub(crate) async fn await_proof(&self, key: &str, slot: Option<u16>) -> Option<Stored> {
        let local = &self.local;
        let asked = local.now();
        let deadline = tokio::time::Instant::now() + self.config.timeouts.response;
        loop {
            // Listening before looking, so a heartbeat that ends in between still wakes us.
            let beaten = local.beaten.notified();
            tokio::pin!(beaten);
            beaten.as_mut().enable();
            let now = local.now();
            // The proof first, then the entry: an invalidation applied before the proof's
            // reply has removed the entry by the time the proof is seen.
            if local.proven_since(asked, now) {
                return match slot {
                    Some(slot) if !local.serves(slot) => None,
                    _ => local.entries.get(key, now),
                };
            }
            let started = local.answered.load(Ordering::Acquire);
            if local.entries.get(key, now).is_none() || !self.is_live() || started >= asked {
                return None;
            }
            local.want_beat();
            tokio::time::timeout_at(deadline, beaten).await.ok()?;
        }
    }

    /// A miss: read `key` on the tracking connection and keep the answer if nothing changed it
    /// in between (see the module docs). Without a live connection, the fallback answers.
    pub(crate) async fn read_through(
        &self,
        key: &str,
        remember_missing: bool,
        fallback: &RedisConnection,
    ) -> Result<Stored, Miss> {
        let local = &self.local;
        let now = local.now();
        // Where a miss proves nothing, the heartbeat it needs is asked for here (a trusted
        // proof past half its life asks by itself).
        if !local.proves_on_miss && !local.trusted(now) {
            local.want_beat();
        }
        let Some(live) = self.live.load_full() else {
            local.report_trouble();
            let value: Option<String> = fallback
                .query(redis::cmd("GET").arg(key))
                .await
                .map_err(Miss::Failed)?;
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
        if local.proves_on_miss {
            pipe.cmd("GET").arg(&self.config.dataset_mark_key);
        }
        let mut conn = live.conn.clone();
        let reply: redis::RedisResult<(Option<String>, i64, Option<String>)> =
            if local.proves_on_miss {
                pipe.query_async(&mut conn).await
            } else {
                pipe.query_async(&mut conn)
                    .await
                    .map(|(value, pttl): (Option<String>, i64)| (value, pttl, None))
            };
        let (value, pttl, mark) = match reply {
            Ok(reply) => reply,
            Err(err) => {
                if let Some(ticket) = ticket {
                    local.entries.abandon(key, ticket);
                }
                if err.is_cluster_error() {
                    local.report_trouble();
                    return Err(Miss::Redirected);
                }
                // A heartbeat tells a slow reply from a dead connection (and replaces the latter).
                local.want_beat();
                return Err(Miss::Failed(RedisBackendError::Unreachable(err)));
            }
        };
        if local.proves_on_miss {
            // The reply came after every push queued before the read: a proof, like a
            // heartbeat's.
            local.proven(now, live.generation, mark.as_deref());
        }
        let value: Stored = value.map(Arc::from);
        if let Some(ticket) = ticket {
            let max = self.config.max_entry_life;
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
}

impl TrackedCache {
    /// Starts the tracking thread(s) for the Redis at `url`: one Redis, the master behind
    /// Sentinel, or every master of a cluster (see the module docs). Nothing connects before
    /// the threads do, so this never needs Redis to be up; until a tracking connection is open,
    /// lookups go uncached to `fallback` (the backend's own connection to the same Redis).
    pub fn start(
        url: &str,
        config: CacheConfig,
        fallback: Arc<RedisConnection>,
    ) -> Result<Self, RedisBackendError> {
        let target = RedisTarget::parse(url).map_err(RedisBackendError::InvalidTarget)?;
        let counters = Arc::new(Counters::new());
        let capacity = config.capacity;
        let trackers = match &target {
            RedisTarget::Standalone(target) => Trackers::One(Tracker::spawn(
                Connector::Standalone(resp3_client(target.url.expose_secret())?),
                config,
                capacity,
                counters.clone(),
                None,
                None,
            )?),
            RedisTarget::Sentinel(target) => {
                let master_generation = Arc::new(AtomicU64::new(0));
                let master =
                    SentinelMaster::new(target, &config.timeouts, master_generation.clone())?;
                Trackers::One(Tracker::spawn(
                    Connector::Sentinel(Box::new(master)),
                    config,
                    capacity,
                    counters.clone(),
                    None,
                    Some(master_generation),
                )?)
            }
            RedisTarget::Cluster(target) => Trackers::Cluster(ClusterTrackers::start(
                target,
                config,
                counters.clone(),
                fallback.clone(),
            )?),
        };
        Ok(Self {
            trackers,
            counters,
            capacity,
            fallback,
        })
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
        Box::pin(self.after_lapse(key, remember_missing)).await
    }

    /// Not a hit: if the proof has lapsed but the entry is here, one heartbeat (shared with
    /// every concurrent lookup) may prove it still good (see [`Tracker::await_proof`]); else,
    /// or if it does not, a miss.
    async fn after_lapse(
        &self,
        key: &str,
        remember_missing: bool,
    ) -> Result<Stored, RedisBackendError> {
        let tracker = match &self.trackers {
            Trackers::One(tracker) => Some((tracker.clone(), None)),
            Trackers::Cluster(cluster) => cluster
                .tracker_for(key)
                .map(|tracker| (tracker, Some(slot_of(key)))),
        };
        if let Some((tracker, slot)) = tracker
            && let Some(value) = tracker.await_proof(key, slot).await
        {
            self.record_hits(1);
            return Ok(value);
        }
        self.read_through(key, remember_missing).await
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
    /// one trust check per tracker): all of them, or `None` if any one is not held.
    pub fn peek_all<const N: usize>(&self, keys: [&str; N]) -> Option<[Stored; N]> {
        let now = self.counters.now();
        match &self.trackers {
            Trackers::One(tracker) => {
                let local = &tracker.local;
                if !local.trusted(now) {
                    return None;
                }
                let mut values = [const { None }; N];
                for (value, key) in values.iter_mut().zip(keys) {
                    *value = Some(local.entries.get(key, now)?);
                }
                Some(values.map(|value| value.unwrap_or_default()))
            }
            Trackers::Cluster(cluster) => cluster.peek_all(keys, now),
        }
    }

    /// Counts `n` answers served by [`TrackedCache::peek`] as hits.
    pub fn record_hits(&self, n: u64) {
        self.counters.hits.fetch_add(n, Ordering::Relaxed);
    }

    /// A miss: read on the tracker of the key's node (see [`Tracker::read_through`]); a key
    /// whose slot moved is read, uncached, through the cluster connection.
    async fn read_through(
        &self,
        key: &str,
        remember_missing: bool,
    ) -> Result<Stored, RedisBackendError> {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let tracker = match &self.trackers {
            Trackers::One(tracker) => Some(tracker.clone()),
            Trackers::Cluster(cluster) => cluster.tracker_for(key),
        };
        let read = match tracker {
            Some(tracker) => {
                tracker
                    .read_through(key, remember_missing, &self.fallback)
                    .await
            }
            None => Err(Miss::Redirected),
        };
        match read {
            Ok(value) => Ok(value),
            Err(Miss::Failed(err)) => Err(err),
            Err(Miss::Redirected) => {
                let value: Option<String> = self.fallback.query(redis::cmd("GET").arg(key)).await?;
                Ok(value.map(Arc::from))
            }
        }
    }

    /// Forgets `key` at once: this instance just changed it (a logout), so its own next request
    /// must not wait for Redis's push.
    pub fn forget(&self, key: &str) {
        let removed = match &self.trackers {
            Trackers::One(tracker) => tracker.local.entries.remove(key),
            Trackers::Cluster(cluster) => cluster.forget(key),
        };
        if removed {
            self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether hits would be served now (a command sent within the staleness bound was
    /// acknowledged; on a cluster, by every master's tracker).
    pub fn is_trusted(&self) -> bool {
        let now = self.counters.now();
        match &self.trackers {
            Trackers::One(tracker) => tracker.local.trusted(now),
            Trackers::Cluster(cluster) => cluster.all_trusted(now),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let counters = &self.counters;
        let (entries, evictions) = match &self.trackers {
            Trackers::One(tracker) => (
                tracker.local.entries.len() as u64,
                tracker.local.entries.evictions.load(Ordering::Relaxed),
            ),
            Trackers::Cluster(cluster) => cluster.entries_and_evictions(),
        };
        CacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            invalidations: counters.invalidations.load(Ordering::Relaxed),
            flushes: counters.flushes.load(Ordering::Relaxed),
            heartbeats: counters.heartbeats.load(Ordering::Relaxed),
            evictions: evictions + counters.retired_evictions.load(Ordering::Relaxed),
            entries,
            capacity: match &self.trackers {
                Trackers::One(tracker) => tracker.local.entries.capacity() as u64,
                Trackers::Cluster(_) => self.capacity as u64,
            },
        }
    }
}

impl Drop for TrackedCache {
    fn drop(&mut self) {
        // The threads wake, see this and close their connections.
        match &self.trackers {
            Trackers::One(tracker) => tracker.retire(),
            Trackers::Cluster(cluster) => cluster.stop(),
        }
    }
}

/// The tracking thread: connect, turn tracking on, answer heartbeat requests until one fails,
/// flush, wait a moment, again; until the tracker is retired.
async fn track(tracker: Arc<Tracker>) {
    let local = &tracker.local;
    let mut last_sweep = Instant::now();
    while !tracker.stop.load(Ordering::Acquire) {
        match connect(&tracker).await {
            Ok(()) => {
                let failure = heartbeat(&tracker, &mut last_sweep).await;
                if let Some(err) = failure {
                    tracing::warn!(error = %err, "lost the Redis tracking connection; cache flushed");
                    local.report_trouble();
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the Redis tracking connection");
                local.report_trouble();
            }
        }
        tracker.live.store(None);
        local.flush("the tracking connection is being replaced");
        // Lookups waiting on a lapsed proof find their entries gone: they go to Redis.
        local.beaten.notify_waiters();
        if !tracker.stop.load(Ordering::Acquire) {
            tokio::time::sleep(tracker.config.timeouts.retry_after).await;
        }
    }
}

/// Opens the tracking connection and turns tracking on; publishes it for misses.
async fn connect(tracker: &Tracker) -> Result<(), RedisBackendError> {
    let local = tracker.local.clone();
    let timeouts = &tracker.config.timeouts;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_push_sender(move |push: PushInfo| {
            local.on_push(push);
            Ok::<(), std::convert::Infallible>(())
        });
    // Read before connecting: a change of master while we connect shows as a difference.
    let master_seen = tracker
        .local
        .master_generation
        .as_ref()
        .map(|master| master.load(Ordering::Acquire));
    let mut conn = match &tracker.connector {
        Connector::Standalone(client) | Connector::ClusterNode(client) => client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(RedisBackendError::Unreachable)?,
        Connector::Sentinel(master) => master.connect_with(&config, true).await?,
    };
    // Anything cached before this point came from an older connection.
    tracker.local.flush("a new tracking connection");
    let generation = tracker.local.generation.load(Ordering::Acquire);
    if let Some(seen) = master_seen {
        tracker.local.master_seen.store(seen, Ordering::Release);
    }
    let () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .query_async(&mut conn)
        .await
        .map_err(RedisBackendError::Unreachable)?;
    // Tracking starts with an empty cache: the first heartbeat's reply is the first proof.
    beat(tracker, &mut conn, generation)
        .await
        .map_err(RedisBackendError::Unreachable)?;
    // That was the heartbeat any lookup asked for while there was no connection.
    tracker.local.beat_wanted.store(false, Ordering::Release);
    tracker
        .live
        .store(Some(Arc::new(Live { conn, generation })));
    Ok(())
}

/// One heartbeat, by topology: its reply is the proof (see the module docs). A node that is
/// no longer a master fails it.
async fn beat(
    tracker: &Tracker,
    conn: &mut MultiplexedConnection,
    generation: u64,
) -> redis::RedisResult<()> {
    let local = &tracker.local;
    let mark_key = &tracker.config.dataset_mark_key;
    let sent = local.now();
    // A flush or a swap left no mark: write a new one (`SET NX`) with this heartbeat.
    let missing = local
        .mark
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_none();
    match &tracker.connector {
        Connector::Standalone(_) => {
            let mark: Option<String> = read_mark(conn, None, mark_key, missing).await?;
            local.proven(sent, generation, mark.as_deref());
        }
        Connector::Sentinel(_) => {
            let mut role = redis::cmd("ROLE");
            let mark = read_mark(conn, Some(&mut role), mark_key, missing).await;
            let (role, mark) = mark?;
            if !matches!(role, Some(Role::Primary { .. })) {
                return Err(not_master(
                    "the Redis node Sentinel named is no longer a master",
                ));
            }
            local.after_silence(sent);
            local.proven(sent, generation, mark.as_deref());
        }
        Connector::ClusterNode(_) => {
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
            let view = SlotView::of_myself(&nodes).ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "CLUSTER NODES has no line for the node itself",
                ))
            })?;
            if !view.is_master() {
                return Err(not_master("the cluster node is no longer a master"));
            }
            local.proven_view(sent, generation, view);
        }
    }
    Ok(())
}

fn not_master(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, why))
}

/// Reads the dataset mark (after `first`, in the same pipeline, if given); with
/// `write_if_missing`, first writes a new random one if there is none (`SET NX`, so every
/// instance ends up with the same mark).
async fn read_mark<R>(
    conn: &mut MultiplexedConnection,
    first: Option<&mut redis::Cmd>,
    key: &str,
    write_if_missing: bool,
) -> redis::RedisResult<R>
where
    R: MarkReply,
{
    let mut pipe = redis::pipe();
    if let Some(first) = first {
        pipe.add_command(first.clone());
    }
    if write_if_missing {
        let bytes: [u8; 16] = authlab_core::random::bytes();
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        pipe.cmd("SET").arg(key).arg(fresh).arg("NX").ignore();
    }
    pipe.cmd("GET").arg(key);
    R::query(pipe, conn).await
}

/// The reply of [`read_mark`]: the mark alone, or a role and the mark.
trait MarkReply: Sized {
    async fn query(
        pipe: redis::Pipeline,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Self>;
}

impl MarkReply for Option<String> {
    async fn query(
        pipe: redis::Pipeline,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Self> {
        let (mark,): (Option<String>,) = pipe.query_async(conn).await?;
        Ok(mark)
    }
}

impl MarkReply for (Option<Role>, Option<String>) {
    async fn query(
        pipe: redis::Pipeline,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Self> {
        let (role, mark): (Role, Option<String>) = pipe.query_async(conn).await?;
        Ok((Some(role), mark))
    }
}

/// How often the thread wakes on its own to drop expired entries (process memory only: it sends
/// Redis nothing).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Answers heartbeat requests until a heartbeat fails, the generation ends or the tracker is
/// retired; returns the failure. Nothing is sent unless a lookup asked for it.
async fn heartbeat(tracker: &Tracker, last_sweep: &mut Instant) -> Option<redis::RedisError> {
    let local = &tracker.local;
    let live = tracker.live.load_full()?;
    let mut conn = live.conn.clone();
    while !tracker.stop.load(Ordering::Acquire) {
        let woken = tokio::time::timeout(SWEEP_EVERY, local.wake.notified()).await;
        if local.master_moved() {
            // Sentinel named another master: this connection's generation ends here.
            return None;
        }
        // The flag, not the wake-up, says a heartbeat is wanted: a request left from a
        // connection that ended before answering it is answered here.
        let _ = woken;
        if local.beat_wanted.load(Ordering::Acquire) {
            local.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            let started = local.now();
            let beat = beat(tracker, &mut conn, live.generation).await;
            // Answered (or failed): the next lookup that needs one may ask again, and the
            // lookups waiting on this one look at what it proved.
            local.beat_wanted.store(false, Ordering::Release);
            local.answered.fetch_max(started, Ordering::AcqRel);
            local.beaten.notify_waiters();
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
