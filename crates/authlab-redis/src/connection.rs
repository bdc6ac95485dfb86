//! Multiplexed Redis connections, one per worker thread, re-established after a failure (or, with
//! `--redis-pool deadpool`, a deadpool-redis pool instead: [`crate::pool`]).
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
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, IntoConnectionInfo};
use thread_local::ThreadLocal;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::pool::{Lent, PoolSettings, RedisPool};

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum RedisBackendError {
    /// The configured URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// Redis could not be reached, or did not answer in time.
    #[error("Redis is unreachable")]
    Unreachable(#[source] redis::RedisError),
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
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
            retry_after: Duration::from_millis(200),
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

/// One multiplexed Redis connection per worker thread, re-established after a failure.
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
pub struct RedisConnection {
    client: Client,
    config: AsyncConnectionConfig,
    retry_after: Duration,
    slots: ThreadLocal<Slot>,
    metrics: RedisMetrics,
    /// How many connections have been established so far: the next one's [`ConnectionId`].
    established: AtomicU64,
    /// With `--redis-pool deadpool*`: a pool that lends a connection per command, used instead
    /// of the per-thread connections (see [`crate::pool`]).
    pool: Option<RedisPool>,
    /// How long a command may wait for a pooled connection.
    pool_wait: Duration,
}

/// Which established connection answered a command: every (re)connection gets a new id.
///
/// Redis drops its clients when it restarts, so two answers with the same id came from the same
/// Redis process, with no restart (and no data lost to one) in between. The JWT denylist relies
/// on this to notice a restart without asking Redis anything more on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionId(u64);

impl ConnectionId {
    pub(crate) fn new(n: u64) -> Self {
        Self(n)
    }
}

/// A live connection and its id.
struct Live {
    conn: MultiplexedConnection,
    id: ConnectionId,
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
    /// Prepares connections to `url` (for example `redis://127.0.0.1:6379`) without connecting.
    pub fn new(url: &str, timeouts: RedisTimeouts) -> Result<Self, RedisBackendError> {
        let info = url
            .into_connection_info()
            .map_err(RedisBackendError::InvalidUrl)?
            // Small request/response pairs: Nagle's algorithm would only add latency.
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = Client::open(info).map_err(RedisBackendError::InvalidUrl)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response));
        Ok(Self {
            client,
            config,
            retry_after: timeouts.retry_after,
            slots: ThreadLocal::new(),
            metrics: RedisMetrics::default(),
            established: AtomicU64::new(0),
            pool: None,
            pool_wait: timeouts.connect,
        })
    }

    /// Lends connections from a deadpool-redis pool instead of keeping one multiplexed
    /// connection per thread: the measured alternative (`--redis-pool deadpool`), not the
    /// default. Nothing connects until the first command.
    pub fn with_pool(mut self, settings: PoolSettings) -> Result<Self, RedisBackendError> {
        self.pool = Some(RedisPool::new(
            self.client.get_connection_info().clone(),
            self.config.clone(),
            self.pool_wait,
            settings,
        )?);
        Ok(self)
    }

    /// Reports every command's latency and failures to `metrics` from now on.
    pub fn with_metrics(mut self, metrics: RedisMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// This thread's slot. The caller keeps the reference for the whole command, so a task that
    /// resumes on another thread still reports a failure to the slot whose connection failed.
    fn slot(&self) -> &Slot {
        self.slots.get_or_default()
    }

    async fn connection(
        &self,
        slot: &Slot,
    ) -> Result<(MultiplexedConnection, ConnectionId), RedisBackendError> {
        if let Some(live) = slot.current.load_full() {
            return Ok((live.conn.clone(), live.id));
        }
        let mut last_failure = slot.connecting.lock().await;
        // Somebody else may have connected while we waited for the lock.
        if let Some(live) = slot.current.load_full() {
            return Ok((live.conn.clone(), live.id));
        }
        if let Some(at) = *last_failure
            && at.elapsed() < self.retry_after
        {
            return Err(RedisBackendError::BackingOff);
        }
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            Ok(conn) => {
                tracing::debug!("connected to Redis");
                *last_failure = None;
                let id = ConnectionId(self.established.fetch_add(1, Ordering::Relaxed));
                slot.current.store(Some(Arc::new(Live {
                    conn: conn.clone(),
                    id,
                })));
                Ok((conn, id))
            }
            Err(err) => {
                *last_failure = Some(Instant::now());
                Err(RedisBackendError::Unreachable(err))
            }
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
        let observed = &self.metrics.query;
        if let Some(pool) = &self.pool {
            let mut lent = pool
                .get()
                .await
                .inspect_err(|_| observed.errors.increment(1))?;
            let started = self.metrics.timed.then(StdInstant::now);
            let result = cmd.query_async(lent.conn()).await;
            let id = lent.id();
            return observe(observed, started, classify_lent(lent, result)).map(|v| (v, id));
        }
        let slot = self.slot();
        let (mut conn, id) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = cmd.query_async(&mut conn).await;
        observe(observed, started, classify(slot, result)).map(|value| (value, id))
    }

    /// Runs a pipeline (several commands, one round trip), with the same failure handling.
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
        let observed = &self.metrics.pipeline;
        if let Some(pool) = &self.pool {
            let mut lent = pool
                .get()
                .await
                .inspect_err(|_| observed.errors.increment(1))?;
            let started = self.metrics.timed.then(StdInstant::now);
            let result = pipe.query_async(lent.conn()).await;
            let id = lent.id();
            return observe(observed, started, classify_lent(lent, result)).map(|v| (v, id));
        }
        let slot = self.slot();
        let (mut conn, id) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = pipe.query_async(&mut conn).await;
        observe(observed, started, classify(slot, result)).map(|value| (value, id))
    }

    /// Runs a Lua script (`EVALSHA`, loading it on first use), with the same failure handling.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        let observed = &self.metrics.script;
        if let Some(pool) = &self.pool {
            let mut lent = pool
                .get()
                .await
                .inspect_err(|_| observed.errors.increment(1))?;
            let started = self.metrics.timed.then(StdInstant::now);
            let result = script.invoke_async(lent.conn()).await;
            return observe(observed, started, classify_lent(lent, result));
        }
        let slot = self.slot();
        let (mut conn, _) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = script.invoke_async(&mut conn).await;
        observe(observed, started, classify(slot, result))
    }

    /// Deletes every key under `prefix` (`SCAN` + `UNLINK`), for tooling and test clean-up
    /// (`authlab compare`, the benches). It walks the whole keyspace, so it never runs on a
    /// request path, and an empty prefix deletes nothing.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), RedisBackendError> {
        if prefix.is_empty() {
            return Ok(());
        }
        let pattern = format!("{prefix}*");
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

    /// Asks Redis for `PONG`: the readiness check.
    pub async fn ping(&self) -> Result<(), RedisBackendError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
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

fn classify<T>(slot: &Slot, result: redis::RedisResult<T>) -> Result<T, RedisBackendError> {
    match result {
        Ok(value) => Ok(value),
        Err(err) if is_connection_failure(&err) => {
            if slot.current.swap(None).is_some() {
                tracing::warn!(error = %err, "lost the Redis connection");
            }
            Err(RedisBackendError::Unreachable(err))
        }
        Err(err) => Err(RedisBackendError::Command(err)),
    }
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
