//! The pooled alternative to the per-thread multiplexed connections: deadpool-redis
//! (`--redis-pool deadpool` or `deadpool-fast`), measured beside the default by `authlab compare`.
//!
//! A pool lends one connection to one request at a time: `get()` takes an idle connection (or
//! waits for one), the command runs, and the connection goes back when the request drops it. Two
//! things follow, and the comparison shows both:
//! - **A ceiling of pool size / round trip.** While a connection is lent, nobody else sends on
//!   it. With `N` connections and a round trip of `t`, at most `N / t` commands per second go out
//!   however many requests wait: deadpool's default `N` is four per CPU (8 on two cores), and at
//!   ~65 us per loopback round trip that is ~120k commands per second at best, less once the
//!   requests queue for a slot. A multiplexed connection has no such ceiling: it pipelines every
//!   in-flight command of its worker over one socket.
//! - **A round trip per checkout.** deadpool-redis *recycles* a connection at every `get()` by
//!   sending `UNWATCH` and `PING` and waiting for the answer, so a request pays two round trips
//!   instead of one (the `PING`s show in Redis's `INFO commandstats`).
//!
//! deadpool-redis has no setting to skip that check (deadpool-postgres's `RecyclingMethod::Fast`
//! has no Redis counterpart in 0.23), but deadpool lets any manager decide how to recycle: with
//! `deadpool-fast` this module's manager hands an idle connection out unchecked, and a connection
//! whose command failed on I/O is taken out of the pool instead ([`Lent::discard`]), which is how
//! a broken one is still never lent twice. With a pool as large as the number of requests in
//! flight (`--redis-pool-size`), that is the best deadpool can do: one round trip per command,
//! but still one connection per request, so `N` sockets, `N` reader tasks and no pipelining.
//!
//! Each pooled connection gets its own [`ConnectionId`] when it is created, so the JWT denylist's
//! restart detection (an answer on the connection that read the epoch came from the same Redis
//! process) holds as it does for the per-thread connections; a request that lands on another
//! pooled connection than its thread's last epoch reading pays one more `GET` for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleResult};
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{AsyncConnectionConfig, ConnectionInfo, RedisError};

use crate::{ConnectionId, RedisBackendError};

/// How `--redis-pool deadpool*` is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once (deadpool's default: four per CPU).
    pub max_size: usize,
    /// Send `UNWATCH` + `PING` and wait for the answer before lending an idle connection, as
    /// deadpool-redis does (`true`); or lend it unchecked and discard a connection that failed
    /// (`false`, `deadpool-fast`).
    pub ping_on_checkout: bool,
}

impl PoolSettings {
    /// deadpool's own default size: four connections per CPU.
    pub fn default_size() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from) * 4
    }
}

/// One pooled connection and the id it was numbered with at creation.
pub(crate) struct Pooled {
    conn: MultiplexedConnection,
    id: ConnectionId,
}

/// Creates connections as deadpool-redis does and recycles them as [`PoolSettings`] says.
struct Manager {
    inner: deadpool_redis::Manager,
    ping_on_checkout: bool,
    created: AtomicU64,
}

impl managed::Manager for Manager {
    type Type = Pooled;
    type Error = RedisError;

    async fn create(&self) -> Result<Pooled, RedisError> {
        let conn = managed::Manager::create(&self.inner).await?;
        let id = ConnectionId::new(self.created.fetch_add(1, Ordering::Relaxed));
        Ok(Pooled { conn, id })
    }

    async fn recycle(&self, pooled: &mut Pooled, metrics: &Metrics) -> RecycleResult<RedisError> {
        if self.ping_on_checkout {
            managed::Manager::recycle(&self.inner, &mut pooled.conn, metrics).await
        } else {
            Ok(())
        }
    }
}

/// A deadpool of multiplexed connections, each lent to one command at a time.
pub(crate) struct RedisPool {
    pool: managed::Pool<Manager>,
}

/// A connection on loan for one command.
pub(crate) struct Lent(Object<Manager>);

impl RedisPool {
    /// A pool that connects to `info` with `config` (timeouts, `TCP_NODELAY`), waiting at most
    /// `wait` for a free connection. Nothing connects until the first `get`.
    pub(crate) fn new(
        info: ConnectionInfo,
        config: AsyncConnectionConfig,
        wait: Duration,
        settings: PoolSettings,
    ) -> Result<Self, RedisBackendError> {
        let inner = deadpool_redis::Manager::new_with_config(info, config)
            .map_err(RedisBackendError::InvalidUrl)?;
        let manager = Manager {
            inner,
            ping_on_checkout: settings.ping_on_checkout,
            created: AtomicU64::new(0),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(settings.max_size.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            // Without a wait timeout a request would queue for a free connection forever.
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(wait))
            .build()
            .map_err(|err| RedisBackendError::Pool(Box::new(err)))?;
        Ok(Self { pool })
    }

    /// Borrows a connection (with deadpool-redis's `UNWATCH` + `PING` first, if so set up).
    pub(crate) async fn get(&self) -> Result<Lent, RedisBackendError> {
        self.pool.get().await.map(Lent).map_err(|err| match err {
            managed::PoolError::Backend(err) => RedisBackendError::Unreachable(err),
            other => RedisBackendError::Pool(Box::new(other)),
        })
    }
}

impl Lent {
    /// The connection, to send a command on.
    pub(crate) fn conn(&mut self) -> &mut MultiplexedConnection {
        &mut self.0.conn
    }

    /// Which pooled connection this is.
    pub(crate) fn id(&self) -> ConnectionId {
        self.0.id
    }

    /// Takes a connection that failed out of the pool for good (it is closed when dropped), so
    /// that it is never lent again, whether or not checkouts `PING`.
    pub(crate) fn discard(self) {
        drop(Object::take(self.0));
    }
}
