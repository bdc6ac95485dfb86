//! Multiplexed Redis connections, one per worker thread, re-established after a failure.
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
use redis::{
    AsyncConnectionConfig, Client, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo, Value,
};
use thread_local::ThreadLocal;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::confirm::WriteConfirmation;
use crate::sentinel::SentinelMaster;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum RedisBackendError {
    /// The configured URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
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
    /// would be dropped as timed out while Redis is still waiting for replicas.
    #[error(
        "the write-confirmation timeout ({confirm:?}) must be shorter than the Redis response \
         timeout ({response:?})"
    )]
    ConfirmationTooSlow {
        /// The confirmation timeout asked for.
        confirm: Duration,
        /// The response timeout.
        response: Duration,
    },
    /// A recent attempt to connect failed; we are waiting before trying again.
    #[error("Redis was unreachable moments ago; not retrying yet")]
    BackingOff,
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
    target: Target,
    config: AsyncConnectionConfig,
    /// Bumped when every connection must go (the master changed): a connection made in an
    /// earlier generation is not used again.
    generation: Arc<AtomicU64>,
    /// What a write that ends a credential waits for.
    confirmation: WriteConfirmation,
    /// The response timeout, which a confirmation's `WAIT` must stay below.
    response_timeout: Duration,
    retry_after: Duration,
    slots: ThreadLocal<Slot>,
    /// A second connection per thread for the writes that are confirmed with `WAIT`: Redis holds
    /// a connection's later commands back while its `WAIT` waits, and the hot path's reads must
    /// not queue behind a revocation waiting for a replica.
    confirming: ThreadLocal<Slot>,
    metrics: RedisMetrics,
    /// How many connections have been established so far: the next one's [`ConnectionId`].
    established: AtomicU64,
}

/// Where connections go.
enum Target {
    /// One Redis server.
    Standalone(Client),
    /// The master a set of sentinels names, followed across failovers (see [`crate::sentinel`]).
    Sentinel(SentinelMaster),
}

/// Which established connection answered a command: every (re)connection gets a new id.
///
/// Redis drops its clients when it restarts, so two answers with the same id came from the same
/// Redis process, with no restart (and no data lost to one) in between. The JWT denylist relies
/// on this to notice a restart without asking Redis anything more on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionId(u64);

/// A live connection and its id.
struct Live {
    conn: MultiplexedConnection,
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
    /// Prepares connections to `url` (for example `redis://127.0.0.1:6379`, or
    /// `redis+sentinel://h:p,h:p/MASTER`) without connecting.
    pub fn new(url: &str, timeouts: RedisTimeouts) -> Result<Self, RedisBackendError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response));
        let generation = Arc::new(AtomicU64::new(0));
        let target = match url.strip_prefix("redis+sentinel://") {
            Some(rest) => {
                let (sentinels, master, node) = sentinel_parts(rest)?;
                Target::Sentinel(SentinelMaster::new(
                    &sentinels,
                    &master,
                    node,
                    Arc::clone(&generation),
                    config.clone(),
                )?)
            }
            None => Target::Standalone(Self::standalone_client(url)?),
        };
        Ok(Self {
            target,
            config,
            generation,
            confirmation: WriteConfirmation::NONE,
            response_timeout: timeouts.response,
            retry_after: timeouts.retry_after,
            slots: ThreadLocal::new(),
            confirming: ThreadLocal::new(),
            metrics: RedisMetrics::default(),
            established: AtomicU64::new(0),
        })
    }

    fn standalone_client(url: &str) -> Result<Client, RedisBackendError> {
        let info = url
            .into_connection_info()
            .map_err(RedisBackendError::InvalidUrl)?
            // Small request/response pairs: Nagle's algorithm would only add latency.
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        Client::open(info).map_err(RedisBackendError::InvalidUrl)
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

    /// Whether this is a master followed through Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.target, Target::Sentinel(_))
    }

    /// Drops every thread's connection: the next command on each resolves the master again.
    fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A connection of the current generation, if this slot has one.
    fn current(&self, slot: &Slot) -> Option<(MultiplexedConnection, ConnectionId)> {
        let live = slot.current.load_full()?;
        (live.generation == self.generation.load(Ordering::Acquire))
            .then(|| (live.conn.clone(), live.id))
    }

    async fn open(&self) -> Result<MultiplexedConnection, RedisBackendError> {
        match &self.target {
            Target::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
                .map_err(RedisBackendError::Unreachable),
            Target::Sentinel(master) => master.connect(&self.config).await,
        }
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

    /// This thread's slot for confirmed writes.
    fn confirming_slot(&self) -> &Slot {
        self.confirming.get_or_default()
    }

    async fn connection(
        &self,
        slot: &Slot,
    ) -> Result<(MultiplexedConnection, ConnectionId), RedisBackendError> {
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
        match self.open().await {
            Ok(conn) => {
                tracing::debug!("connected to Redis");
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
        let slot = self.slot();
        let (mut conn, id) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = cmd.query_async(&mut conn).await;
        observe(observed, started, self.classify(slot, result)).map(|value| (value, id))
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
        self.pipeline_in(self.slot(), pipe).await
    }

    async fn pipeline_in<T: FromRedisValue>(
        &self,
        slot: &Slot,
        pipe: &redis::Pipeline,
    ) -> Result<(T, ConnectionId), RedisBackendError> {
        let observed = &self.metrics.pipeline;
        let (mut conn, id) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = pipe.query_async(&mut conn).await;
        observe(observed, started, self.classify(slot, result)).map(|value| (value, id))
    }

    /// Runs a Lua script (`EVALSHA`, loading it on first use), with the same failure handling.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        let observed = &self.metrics.script;
        let slot = self.slot();
        let (mut conn, _) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = script.invoke_async(&mut conn).await;
        observe(observed, started, self.classify(slot, result))
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

    /// Runs one command that ends a credential, then confirms it (see
    /// [`crate::WriteConfirmation`]): `WAIT` rides in the same pipeline, on the same connection.
    pub async fn query_confirmed<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisBackendError> {
        if !self.confirmation.is_required() {
            return self.query(cmd).await;
        }
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        let reply = self
            .confirmed_replies(&pipe)
            .await?
            .pop()
            .ok_or_else(|| RedisBackendError::Command(unexpected("the command's reply")))?;
        T::from_redis_value(reply).map_err(|e| RedisBackendError::Command(e.into()))
    }

    /// Runs a pipeline of writes that end credentials, with `WAIT` appended to it: one round
    /// trip, one connection. Not for `MULTI` pipelines (`WAIT` does not block in a transaction).
    pub async fn pipeline_confirmed<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisBackendError> {
        if !self.confirmation.is_required() {
            return self.pipeline(pipe).await;
        }
        let replies = self.confirmed_replies(pipe).await?;
        T::from_redis_value(Value::Array(replies)).map_err(|e| RedisBackendError::Command(e.into()))
    }

    /// The pipeline's own replies, once `WAIT` (sent after it) has confirmed them.
    async fn confirmed_replies(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<Value>, RedisBackendError> {
        let mut confirmed = pipe.clone();
        confirmed.add_command(self.confirmation.wait_command());
        let (reply, _) = self
            .pipeline_in::<Value>(self.confirming_slot(), &confirmed)
            .await?;
        let Value::Array(mut replies) = reply else {
            return Err(RedisBackendError::Command(unexpected(
                "a pipeline's replies",
            )));
        };
        self.judge_wait(replies.pop())?;
        Ok(replies)
    }

    /// Runs a Lua script that ends credentials, then `WAIT` on the connection the script ran on
    /// (a script cannot call `WAIT` itself).
    pub async fn invoke_confirmed<T: FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        if !self.confirmation.is_required() {
            return self.invoke(script).await;
        }
        let observed = &self.metrics.script;
        let slot = self.confirming_slot();
        let (mut conn, _) = self
            .connection(slot)
            .await
            .inspect_err(|_| observed.errors.increment(1))?;
        let started = self.metrics.timed.then(StdInstant::now);
        let result = script.invoke_async(&mut conn).await;
        let value: T = observe(observed, started, self.classify(slot, result))?;
        // The same `conn`, even if this thread's slot has moved on to a new one meanwhile:
        // `WAIT` counts only this connection's writes.
        let acknowledged = self
            .confirmation
            .wait_command()
            .query_async(&mut conn)
            .await;
        let acknowledged = self.classify(slot, acknowledged)?;
        self.judge_wait(Some(acknowledged))?;
        Ok(value)
    }

    fn judge_wait(&self, reply: Option<Value>) -> Result<(), RedisBackendError> {
        match reply {
            Some(Value::Int(confirmed)) => {
                let judged = self.confirmation.judge(confirmed);
                if judged.is_err() {
                    tracing::warn!(
                        confirmed,
                        wanted = self.confirmation.replicas,
                        "a revocation was not confirmed by enough Redis replicas: answering 503"
                    );
                }
                judged
            }
            _ => Err(RedisBackendError::Command(unexpected("WAIT's count"))),
        }
    }

    /// Asks Redis for `PONG`: the readiness check.
    pub async fn ping(&self) -> Result<(), RedisBackendError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}

impl RedisConnection {
    /// Sorts a command's failure: a broken connection is dropped (the next command reconnects),
    /// and a `READONLY` reply (the node was demoted to a replica) drops *every* connection, so
    /// that each thread finds the master again; an error reply leaves the connection in place.
    fn classify<T>(
        &self,
        slot: &Slot,
        result: redis::RedisResult<T>,
    ) -> Result<T, RedisBackendError> {
        match result {
            Ok(value) => Ok(value),
            Err(err) if is_connection_failure(&err) => {
                if slot.current.swap(None).is_some() {
                    tracing::warn!(error = %err, "lost the Redis connection");
                }
                Err(RedisBackendError::Unreachable(err))
            }
            Err(err) if is_read_only(&err) => {
                slot.current.store(None);
                self.invalidate_all();
                tracing::warn!("Redis answered READONLY (a demoted master): reconnecting");
                Err(RedisBackendError::NotMaster)
            }
            Err(err) => Err(RedisBackendError::Command(err)),
        }
    }
}

fn is_read_only(err: &redis::RedisError) -> bool {
    err.code() == Some("READONLY")
}

fn unexpected(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply", what.to_owned()))
}

/// The sentinels, master name and node settings of `h:p,h:p/MASTER` (after
/// `redis+sentinel://`, with an optional `:PASSWORD@` in front).
fn sentinel_parts(
    rest: &str,
) -> Result<(Vec<(String, u16)>, String, RedisConnectionInfo), RedisBackendError> {
    let invalid = |why: &'static str| {
        RedisBackendError::InvalidUrl(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            why,
        )))
    };
    let (authority, master) = rest
        .rsplit_once('/')
        .ok_or_else(|| invalid("a sentinel URL ends with /MASTER-NAME"))?;
    let (password, hosts) = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => (user_info.split_once(':').map(|(_, p)| p), hosts),
        None => (None, authority),
    };
    let sentinels = hosts
        .split(',')
        .map(|host| {
            let (name, port) = host.rsplit_once(':')?;
            let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
            (!name.is_empty()).then(|| (name.to_owned(), port))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("every sentinel is HOST:PORT"))?;
    if master.is_empty() {
        return Err(invalid("a sentinel URL ends with /MASTER-NAME"));
    }
    let mut node = RedisConnectionInfo::default();
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        node = node.set_password(password);
    }
    Ok((sentinels, master.to_owned(), node))
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

fn is_connection_failure(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}
