//! Multiplexed Redis connections, one per worker thread, to one Redis, a Redis Cluster or the
//! master Sentinel names, re-established after a failure; and the confirmed writes (`WAIT`) that
//! end credentials (see [`crate::WriteConfirmation`]).
//!
//! With `--redis-pool deadpool`, one Redis is reached through a deadpool-redis pool instead
//! ([`crate::pool`]), for measuring against the default.
//!
//! Every command can be observed through [`RedisMetrics`]: handles of the `metrics` facade (a
//! latency histogram and an error counter per kind of command), which the server registers with its
//! own recorder and this crate only updates. No exporter and no HTTP here; without handles (the
//! default) nothing is timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::time::Instant as StdInstant;

use arc_swap::ArcSwapOption;
use authlab_core::AuthError;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{FromRedisValue, RedisFuture, Value};
use thread_local::ThreadLocal;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cluster::{Cluster, ClusterTuning};
use crate::confirm::WriteConfirmation;
use crate::pool::{Lent, PoolSettings, RedisPool};
use crate::sentinel::SentinelMaster;
use crate::standalone::Standalone;
use crate::topology::{RedisTarget, TargetError};

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum RedisBackendError {
    /// The configured URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// The configured URL is none of the accepted forms.
    #[error("invalid Redis URL")]
    InvalidTarget(#[source] TargetError),
    /// The URL names a topology this build cannot connect to yet.
    #[error("{0} support: not built")]
    NotBuilt(&'static str),
    /// Redis could not be reached, or did not answer in time.
    #[error("Redis is unreachable")]
    Unreachable(#[source] redis::RedisError),
    /// The node Sentinel named is not (or no longer) a master: it was demoted, or Sentinel's
    /// answer was stale. Auth state is never read from a replica.
    #[error("the Redis node Sentinel named is not a master")]
    NotMaster,
    /// A write that ends a credential reached fewer replicas than required within the timeout,
    /// so a failover could undo it (see [`crate::WriteConfirmation`]).
    #[error("only {confirmed} of {wanted} Redis replicas confirmed the write in time")]
    NotConfirmed {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that acknowledged the write.
        confirmed: i64,
    },
    /// The write-confirmation wait is not shorter than the response timeout, so the connection
    /// would give up on `WAIT` while Redis is still waiting for replicas.
    #[error(
        "the write-confirmation timeout ({confirm:?}) must be shorter than the Redis response \
         timeout ({response:?})"
    )]
    ConfirmationTooSlow {
        /// The confirmation timeout asked for.
        confirm: Duration,
        /// The response timeout it must stay below.
        response: Duration,
    },
    /// A recent attempt to connect failed; we are waiting before trying again.
    #[error("Redis was unreachable moments ago; not retrying yet")]
    BackingOff,
    /// No pooled connection could be had in time (`--redis-pool deadpool`), or the pool could
    /// not be set up.
    #[error("no pooled Redis connection was available")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Redis answered with an error (wrong type, out of memory, ...).
    #[error("Redis answered with an error")]
    Command(#[source] redis::RedisError),
    /// The JWT denylist's epoch marker was deleted again while it was being recreated, so no
    /// token can be judged yet.
    #[error("the denylist's epoch marker vanished while it was being recreated")]
    EpochVanished,
    /// This machine's clock is more than a moment behind the denylist's epoch (set by another
    /// instance's clock), so a token signed now would be refused as older than the epoch.
    #[error("the clock ({now}) is behind the denylist's epoch ({epoch}); synchronise the clocks")]
    EpochAhead {
        /// The epoch, Unix seconds.
        epoch: u64,
        /// This machine's time, Unix seconds.
        now: u64,
    },
    /// The client-side cache's tracking thread could not be started.
    #[error("cannot start the Redis tracking thread")]
    TrackingThread(#[source] std::io::Error),
}

impl From<RedisBackendError> for AuthError {
    fn from(err: RedisBackendError) -> Self {
        AuthError::unavailable(err)
    }
}

/// Timeouts for talking to Redis. Short on purpose: a request waiting on a dead Redis should hear
/// "unavailable" in well under a second, not hang until the client gives up.
#[derive(Debug, Clone)]
pub struct RedisTimeouts {
    /// How long to wait for a TCP connection and the handshake.
    pub connect: Duration,
    /// How long to wait for the answer to one command.
    pub response: Duration,
    /// After a failed connection attempt, requests fail at once for this long instead of each
    /// trying again (so an outage does not turn every request into a connection attempt).
    pub retry_after: Duration,
    /// How a cluster connection waits and retries (ignored by the other topologies).
    pub cluster: ClusterTuning,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
            retry_after: Duration::from_millis(200),
            cluster: ClusterTuning::default(),
        }
    }
}

/// What one kind of command reports: its latency and its failures.
#[derive(Clone, Debug)]
pub struct CommandMetrics {
    /// Seconds from sending the command to its reply (or its failure), for every command that
    /// reached a connection.
    pub seconds: metrics::Histogram,
    /// Commands that failed: no connection, a broken or timed-out one, or an error reply.
    pub errors: metrics::Counter,
}

impl CommandMetrics {
    /// Handles that record nothing.
    pub fn noop() -> Self {
        Self {
            seconds: metrics::Histogram::noop(),
            errors: metrics::Counter::noop(),
        }
    }
}

/// The handles [`RedisConnection`] updates, one set per kind of command. Registered once by the
/// caller (the server), so that a command pays for an `Instant` and an atomic update, not for a
/// lookup by name.
#[derive(Clone, Debug)]
pub struct RedisMetrics {
    /// Single commands ([`RedisConnection::query`]).
    pub query: CommandMetrics,
    /// Pipelines ([`RedisConnection::pipeline`]).
    pub pipeline: CommandMetrics,
    /// Lua scripts ([`RedisConnection::invoke`]).
    pub script: CommandMetrics,
    /// Whether to read the clock around each command at all (off: the handles are no-ops).
    pub timed: bool,
}

impl Default for RedisMetrics {
    fn default() -> Self {
        Self {
            query: CommandMetrics::noop(),
            pipeline: CommandMetrics::noop(),
            script: CommandMetrics::noop(),
            timed: false,
        }
    }
}

/// One connection per worker thread, to whichever topology the URL names, re-established after a
/// failure.
///
/// Nothing connects at construction: the server starts even when Redis is down, and the first
/// command connects. A command that fails because the connection broke drops it, and the next
/// command connects again; so the service recovers by itself when Redis comes back.
///
/// Why one per thread? actix runs a single-threaded runtime per worker. A connection's reader task
/// lives on the runtime that opened it, so one connection shared by all workers makes every other
/// worker's requests hop threads twice (measured in the architecture notes: 0.55x of `/hello` for a
/// shared connection against 0.70x for one per worker). With a connection per thread, a request,
/// its Redis round trip and its reply stay on one thread, and each connection still pipelines all
/// of that worker's in-flight commands.
///
/// The same holds for a Redis Cluster: redis-rs's `ClusterConnection` is a multiplexed connection
/// per node driven by one task on the runtime that built it, so this type keeps one per worker
/// too (W workers and N masters make W x N sockets, a handful). Unlike a standalone connection, a
/// cluster connection is never dropped after a failed command: it reconnects to a failed node and
/// refreshes its slot map by itself, and rebuilding it would stall the users of every other shard
/// while it connects to all of them again (see `cluster.rs` and [`crate::ClusterTuning`]).
///
/// Which topology is chosen by the URL ([`RedisTarget`]); the public API is the same for all, so
/// no backend knows which one it runs on. What the backends must respect on a cluster is the slot
/// rule: one command, pipeline or script touches keys of one hash slot (see `docs/backends.md`).
pub struct RedisConnection {
    topology: Topology,
    retry_after: Duration,
    slots: ThreadLocal<Slot>,
    /// A second connection per thread for the writes that are confirmed with `WAIT`: Redis holds
    /// a connection's later commands back while its `WAIT` waits, and the hot path's reads must
    /// not queue behind a revocation waiting for a replica.
    confirming: ThreadLocal<Slot>,
    /// Bumped when every connection must go (the Sentinel master changed): a connection made in
    /// an earlier generation is not used again.
    generation: Arc<AtomicU64>,
    /// What a write that ends a credential waits for.
    confirmation: WriteConfirmation,
    /// The response timeout a confirmation's `WAIT` must stay below.
    response_timeout: Duration,
    metrics: RedisMetrics,
    /// How many connections have been established so far: the next one's [`ConnectionId`].
    established: AtomicU64,
    /// With `--redis-pool deadpool*`: a pool that lends a connection per command, used instead
    /// of the per-thread connections (see [`crate::pool`]).
    pool: Option<RedisPool>,
    /// How long a command may wait for a pooled connection.
    pool_wait: Duration,
}

/// How connections are made, per topology.
enum Topology {
    /// One Redis: a multiplexed connection per thread.
    Standalone(Standalone),
    /// A Redis Cluster: a cluster connection (one multiplexed connection per node) per thread.
    Cluster(Cluster),
    /// The master a set of sentinels names, followed across failovers (see [`crate::sentinel`]).
    /// Its connections are plain multiplexed ones ([`Conn::Standalone`]).
    Sentinel(SentinelMaster),
}

/// A live connection of any topology. Each arm is a cheap, cloneable handle to a multiplexed
/// connection, so a command clones it out of the slot without locking.
#[derive(Clone)]
pub(crate) enum Conn {
    /// To one Redis.
    Standalone(MultiplexedConnection),
    /// To a Redis Cluster.
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Which established connection answered a command: every (re)connection gets a new id.
///
/// Redis drops its clients when it restarts, so two answers with the same id came from the same
/// Redis process, with no restart (and no data lost to one) in between. The JWT denylist relies
/// on this to notice a restart without asking Redis anything more on the hot path. On a cluster
/// the id names the cluster connection, which outlives a node's restart or failover: there the
/// denylist's one-second refresh of its epoch is what bounds an unnoticed loss (see
/// `denylist.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionId(u64);

impl ConnectionId {
    pub(crate) fn new(n: u64) -> Self {
        Self(n)
    }
}

/// A live connection and its id.
struct Live {
    conn: Conn,
    id: ConnectionId,
    /// The generation it was made in (see [`RedisConnection::invalidate_all`]).
    generation: u64,
}

/// One thread's connection.
#[derive(Default)]
struct Slot {
    /// The live connection, read without locking on the hot path.
    current: ArcSwapOption<Live>,
    /// Held while connecting, so a burst of requests makes one attempt, not one each. Holds the
    /// time of the last failed attempt.
    connecting: Mutex<Option<Instant>>,
}

impl RedisConnection {
    /// Prepares connections to `url` (any form [`RedisTarget::parse`] accepts, for example
    /// `redis://127.0.0.1:6379` or `redis+cluster://10.0.0.1:7000,10.0.0.2:7000`) without
    /// connecting.
    pub fn new(url: &str, timeouts: RedisTimeouts) -> Result<Self, RedisBackendError> {
        let target = RedisTarget::parse(url).map_err(RedisBackendError::InvalidTarget)?;
        Self::to(&target, timeouts)
    }

    /// Prepares connections to a parsed target without connecting.
    pub fn to(target: &RedisTarget, timeouts: RedisTimeouts) -> Result<Self, RedisBackendError> {
        let generation = Arc::new(AtomicU64::new(0));
        let (topology, response_timeout) = match target {
            RedisTarget::Standalone(target) => (
                Topology::Standalone(Standalone::new(target, &timeouts)?),
                timeouts.response,
            ),
            RedisTarget::Cluster(target) => (
                Topology::Cluster(Cluster::new(target, &timeouts)?),
                timeouts.response.min(timeouts.cluster.response_timeout),
            ),
            RedisTarget::Sentinel(target) => (
                Topology::Sentinel(SentinelMaster::new(
                    target,
                    &timeouts,
                    Arc::clone(&generation),
                )?),
                timeouts.response,
            ),
        };
        Ok(Self {
            topology,
            retry_after: timeouts.retry_after,
            slots: ThreadLocal::new(),
            confirming: ThreadLocal::new(),
            generation,
            confirmation: WriteConfirmation::NONE,
            response_timeout,
            metrics: RedisMetrics::default(),
            established: AtomicU64::new(0),
            pool: None,
            pool_wait: timeouts.connect,
        })
    }

    /// Lends connections from a deadpool-redis pool instead of keeping one multiplexed
    /// connection per thread: the measured alternative (`--redis-pool deadpool`), not the
    /// default. Nothing connects until the first command.
    ///
    /// Only for one Redis (`redis://`): deadpool-redis's cluster and sentinel pools expose no
    /// timeouts or retries and never notice a demoted master, so a pool on those topologies is
    /// refused at start-up.
    pub fn with_pool(mut self, settings: PoolSettings) -> Result<Self, RedisBackendError> {
        let Topology::Standalone(standalone) = &self.topology else {
            return Err(RedisBackendError::NotBuilt(
                "a deadpool pool on a cluster or sentinel URL",
            ));
        };
        let (info, config) = standalone.connection_parts();
        self.pool = Some(RedisPool::new(info, config, self.pool_wait, settings)?);
        Ok(self)
    }

    /// Reports every command's latency and failures to `metrics` from now on.
    pub fn with_metrics(mut self, metrics: RedisMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The topology's name: `standalone`, `cluster` (or `sentinel`).
    pub fn topology(&self) -> &'static str {
        match self.topology {
            Topology::Standalone(_) => "standalone",
            Topology::Cluster(_) => "cluster",
            Topology::Sentinel(_) => "sentinel",
        }
    }

    /// Confirms every write that ends a credential with `confirmation` from now on (see
    /// [`crate::WriteConfirmation`]). Its timeout must be shorter than the response timeout.
    pub fn with_confirmation(
        mut self,
        confirmation: WriteConfirmation,
    ) -> Result<Self, RedisBackendError> {
        if confirmation.is_required() && confirmation.timeout >= self.response_timeout {
            return Err(RedisBackendError::ConfirmationTooSlow {
                confirm: confirmation.timeout,
                response: self.response_timeout,
            });
        }
        self.confirmation = confirmation;
        Ok(self)
    }

    /// What a write that ends a credential waits for.
    pub fn confirmation(&self) -> WriteConfirmation {
        self.confirmation
    }

    /// Drops every thread's connections: the next command on each finds the master again.
    fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// This slot's connection, if it has one of the current generation.
    fn current(&self, slot: &Slot) -> Option<(Conn, ConnectionId)> {
        let live = slot.current.load_full()?;
        (live.generation == self.generation.load(Ordering::Acquire))
            .then(|| (live.conn.clone(), live.id))
    }

    /// This thread's slot. The caller keeps the reference for the whole command, so a task that
    /// resumes on another thread still reports a failure to the slot whose connection failed.
    fn slot(&self) -> &Slot {
        self.slots.get_or_default()
    }

    /// This thread's slot for confirmed writes.
    fn confirming_slot(&self) -> &Slot {
        self.confirming.get_or_default()
    }

    async fn connection(&self, slot: &Slot) -> Result<(Conn, ConnectionId), RedisBackendError> {
        if let Some(current) = self.current(slot) {
            return Ok(current);
        }
        let mut last_failure = slot.connecting.lock().await;
        // Somebody else may have connected while we waited for the lock.
        if let Some(current) = self.current(slot) {
            return Ok(current);
        }
        if let Some(at) = *last_failure
            && at.elapsed() < self.retry_after
        {
            return Err(RedisBackendError::BackingOff);
        }
        // Read before resolving: if the master changes while we connect, this connection is
        // already of an old generation and will not be used again.
        let generation = self.generation.load(Ordering::Acquire);
        let connected = match &self.topology {
            Topology::Standalone(standalone) => standalone
                .connect()
                .await
                .map(Conn::Standalone)
                .map_err(RedisBackendError::Unreachable),
            Topology::Cluster(cluster) => cluster
                .connect()
                .await
                .map(Conn::Cluster)
                .map_err(RedisBackendError::Unreachable),
            Topology::Sentinel(master) => master.connect().await.map(Conn::Standalone),
        };
        match connected {
            Ok(conn) => {
                tracing::debug!(topology = self.topology(), "connected to Redis");
                *last_failure = None;
                let id = ConnectionId(self.established.fetch_add(1, Ordering::Relaxed));
                slot.current.store(Some(Arc::new(Live {
                    conn: conn.clone(),
                    id,
                    generation,
                })));
                Ok((conn, id))
            }
            Err(err) => {
                *last_failure = Some(Instant::now());
                Err(err)
            }
        }
    }

    /// This thread's cluster connection, for the few operations that address nodes rather than
    /// keys (`delete_prefix`). `None` on other topologies.
    async fn cluster_connection(&self) -> Result<Option<ClusterConnection>, RedisBackendError> {
        match self.connection(self.slot()).await? {
            (Conn::Cluster(conn), _) => Ok(Some(conn)),
            _ => Ok(None),
        }
    }

    /// Runs one command. A failure of the connection itself (I/O, timeout, dropped) discards the
    /// connection so that the next command reconnects; an error *reply* leaves it in place.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisBackendError> {
        self.query_traced(cmd).await.map(|(value, _)| value)
    }

    /// Like [`RedisConnection::query`], and says which connection answered.
    pub async fn query_traced<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<(T, ConnectionId), RedisBackendError> {
        self.run(cmd).await
    }

    /// Runs a pipeline (several commands, one round trip), with the same failure handling. On a
    /// cluster every command of the pipeline must touch the same hash slot.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisBackendError> {
        self.pipeline_traced(pipe).await.map(|(value, _)| value)
    }

    /// Like [`RedisConnection::pipeline`], and says which connection answered.
    pub async fn pipeline_traced<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<(T, ConnectionId), RedisBackendError> {
        self.run(pipe).await
    }

    /// Runs a Lua script (`EVALSHA`, loading it on first use), with the same failure handling. On
    /// a cluster the script runs on the node of its first key, so every key it touches must be
    /// declared in `KEYS` and share that key's hash slot.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        self.run(script).await.map(|(value, _)| value)
    }

    /// The one way a request reaches Redis: on a connection lent by the pool, if there is one,
    /// else on this thread's connection (connecting first if it has none). The request's
    /// [`CommandMetrics`] count a failure to get a connection, time the round trip and count a
    /// failed one, after the failure is sorted ([`Self::classify`], [`classify_lent`]) so that a
    /// broken connection is not used again.
    async fn run<R: Request, T: FromRedisValue>(
        &self,
        request: &R,
    ) -> Result<(T, ConnectionId), RedisBackendError> {
        let observed = R::metrics(&self.metrics);
        if let Some(pool) = &self.pool {
            let mut lent = pool
                .get()
                .await
                .inspect_err(|_| observed.errors.increment(1))?;
            let started = self.metrics.timed.then(StdInstant::now);
            let result = request.send(lent.conn()).await;
            let id = lent.id();
            return observe(observed, started, classify_lent(lent, result)).map(|v| (v, id));
        }
        let slot = self.slot();
        let (mut conn, id) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = request.send(&mut conn).await;
        observe(observed, started, self.classify(slot, result)).map(|value| (value, id))
    }

    /// Sorts a failed command: a broken standalone or Sentinel connection is dropped (the next
    /// command reconnects, through Sentinel for the latter); a cluster connection is kept (it
    /// heals itself, node by node). A `READONLY` reply from a Sentinel master (it was demoted)
    /// drops *every* thread's connection, so that each finds the new master.
    fn classify<T>(
        &self,
        slot: &Slot,
        result: redis::RedisResult<T>,
    ) -> Result<T, RedisBackendError> {
        let follows_one_node = !matches!(self.topology, Topology::Cluster(_));
        match result {
            Ok(value) => Ok(value),
            Err(err) if is_connection_failure(&err) => {
                if follows_one_node && slot.current.swap(None).is_some() {
                    tracing::warn!(error = %err, "lost the Redis connection");
                }
                Err(RedisBackendError::Unreachable(err))
            }
            Err(err) if follows_one_node && err.code() == Some("READONLY") => {
                slot.current.store(None);
                if matches!(self.topology, Topology::Sentinel(_)) {
                    self.invalidate_all();
                }
                tracing::warn!("Redis answered READONLY (a demoted master): reconnecting");
                Err(RedisBackendError::NotMaster)
            }
            Err(err) => Err(RedisBackendError::Command(err)),
        }
    }

    /// Runs one command that ends a credential on `key`, and confirms it (see
    /// [`crate::WriteConfirmation`]) before returning: `WAIT` follows it in the same pipeline,
    /// on the same connection, a connection kept for confirmed writes. On a cluster the pipeline
    /// goes as a whole to the master of `key`'s slot, where the write lands. Without a
    /// confirmation policy this is [`RedisConnection::query`].
    pub async fn query_confirmed<T: FromRedisValue>(
        &self,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisBackendError> {
        if !self.confirmation.is_required() {
            return self.query(cmd).await;
        }
        let observed = &self.metrics.pipeline;
        let slot = self.confirming_slot();
        let (conn, _) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone())
            .add_command(self.confirmation.wait_command());
        let started = self.metrics.timed.then(StdInstant::now);
        let result = match conn {
            Conn::Cluster(mut conn) => {
                let master = Route::with_key(key, SlotAddr::Master);
                conn.route_pipeline(pipe, 0, 2, SingleNodeRoutingInfo::SpecificNode(master))
                    .await
            }
            mut conn @ Conn::Standalone(_) => pipe.query_async::<Vec<Value>>(&mut conn).await,
        };
        let mut replies = observe(observed, started, self.classify(slot, result))?;
        let acknowledged = replies.pop();
        let reply = replies.pop();
        self.judge_wait(acknowledged)?;
        let reply = reply.ok_or_else(|| RedisBackendError::Command(unexpected("a reply")))?;
        T::from_redis_value(reply).map_err(|err| RedisBackendError::Command(err.into()))
    }

    /// Judges `WAIT`'s answer, and says so in the log when it falls short.
    fn judge_wait(&self, reply: Option<Value>) -> Result<(), RedisBackendError> {
        let Some(Value::Int(confirmed)) = reply else {
            return Err(RedisBackendError::Command(unexpected("WAIT's count")));
        };
        self.confirmation.judge(confirmed).inspect_err(|_| {
            tracing::warn!(
                confirmed,
                wanted = self.confirmation.replicas,
                "a revocation was not confirmed by enough Redis replicas: answering 503"
            );
        })
    }

    /// Deletes every key under `prefix` (`SCAN` + `UNLINK`), for tooling and test clean-up
    /// (`authlab compare`, the benches). It walks the whole keyspace, so it never runs on a
    /// request path, and an empty prefix deletes nothing.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), RedisBackendError> {
        if prefix.is_empty() {
            return Ok(());
        }
        let pattern = format!("{prefix}*");
        if let Some(conn) = self.cluster_connection().await? {
            return crate::cluster::delete_matching(conn, &pattern)
                .await
                .map_err(RedisBackendError::Command);
        }
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            if !keys.is_empty() {
                let _: i64 = self.query(redis::cmd("UNLINK").arg(&keys)).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Asks Redis for `PONG`: the readiness check. On a cluster every master must answer.
    pub async fn ping(&self) -> Result<(), RedisBackendError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}

/// What [`RedisConnection::run`] sends: a single command, a pipeline or a Lua script. Each kind
/// is sent its own way and reported under its own [`CommandMetrics`] (`query`, `pipeline`,
/// `script`); everything else about running it is the same.
trait Request {
    /// This kind's handles among `metrics`.
    fn metrics(metrics: &RedisMetrics) -> &CommandMetrics;

    /// Sends it on `conn` and reads the reply as a `T`.
    fn send<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> impl Future<Output = redis::RedisResult<T>>;
}

impl Request for redis::Cmd {
    fn metrics(metrics: &RedisMetrics) -> &CommandMetrics {
        &metrics.query
    }

    fn send<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> impl Future<Output = redis::RedisResult<T>> {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn metrics(metrics: &RedisMetrics) -> &CommandMetrics {
        &metrics.pipeline
    }

    fn send<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> impl Future<Output = redis::RedisResult<T>> {
        self.query_async(conn)
    }
}

impl Request for redis::ScriptInvocation<'_> {
    fn metrics(metrics: &RedisMetrics) -> &CommandMetrics {
        &metrics.script
    }

    fn send<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> impl Future<Output = redis::RedisResult<T>> {
        self.invoke_async(conn)
    }
}

/// Records one command's latency (if timed) and failure (if it failed).
fn observe<T>(
    metrics: &CommandMetrics,
    started: Option<StdInstant>,
    result: Result<T, RedisBackendError>,
) -> Result<T, RedisBackendError> {
    if let Some(started) = started {
        metrics.seconds.record(started.elapsed().as_secs_f64());
    }
    if result.is_err() {
        metrics.errors.increment(1);
    }
    result
}

fn unexpected(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply", what.to_owned()))
}

/// [`classify`] for a pooled connection: one that broke leaves the pool for good.
fn classify_lent<T>(lent: Lent, result: redis::RedisResult<T>) -> Result<T, RedisBackendError> {
    match result {
        Ok(value) => Ok(value),
        Err(err) if is_connection_failure(&err) => {
            tracing::warn!(error = %err, "lost a pooled Redis connection");
            lent.discard();
            Err(RedisBackendError::Unreachable(err))
        }
        Err(err) => Err(RedisBackendError::Command(err)),
    }
}

pub(crate) fn is_connection_failure(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}
