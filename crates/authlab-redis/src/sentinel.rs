//! A Redis master found and followed through Sentinel.
//!
//! # What Sentinel gives, and what it does not
//! Sentinel watches a master and its replicas and, when the master fails (or is asked to, with
//! `SENTINEL FAILOVER`), promotes a replica. Clients ask a sentinel where the master is. But a
//! connection, once made, is to an *address*: redis-rs's `SentinelClient` resolves the master
//! when it connects and never again, so after a failover its connections keep talking to the
//! old master. That old master may be dead (errors), demoted to a replica (writes refused with
//! `READONLY`, reads answered from replicated, possibly stale data), or, in a planned switchover,
//! still a master for a while and still accepting writes that its new master will never see.
//!
//! # How the master is followed here
//! - **Resolve and check.** Each connection is made to the master Sentinel names (the first
//!   sentinel that answers), and then asked `ROLE` on that very connection: it is used only if
//!   the node says it is a master. A replica never serves auth state.
//! - **Re-resolve on trouble.** A broken connection is dropped and the next command resolves the
//!   master again; a `READONLY` reply drops *every* thread's connection at once (they all point
//!   at the demoted node).
//! - **Listen for `+switch-master`.** A background task subscribes to `+switch-master` on one
//!   sentinel (the next one if it fails) and drops every connection when it names our master.
//!   A message can be missed (the sentinel restarts, the subscription drops), so the task also
//!   asks `SENTINEL GET-MASTER-ADDR-BY-NAME` every [`POLL_INTERVAL`] and does the same if the
//!   answer is not the address the connections were made to.
//!
//! None of this closes the window in which the old master still accepts writes before it learns
//! it was demoted: write confirmation does (see [`crate::WriteConfirmation`]).
//!
//! Connections are "dropped" by bumping a generation counter that every connection carries: a
//! connection of an older generation is not used again, so the hot path pays one atomic load,
//! and nothing has to reach into other threads' connection slots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, Role,
};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use crate::topology::SentinelTarget;
use crate::{RedisBackendError, RedisTimeouts};

/// How often the watcher asks a sentinel where the master is, in case a `+switch-master`
/// message was missed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// After the watcher lost its sentinel, how long before it tries the next one.
const WATCH_RETRY: Duration = Duration::from_millis(250);

/// TCP connection info for each sentinel, `TCP_NODELAY` on.
fn sentinel_infos(target: &SentinelTarget) -> Vec<ConnectionInfo> {
    target
        .sentinels
        .iter()
        .map(|node| {
            ConnectionAddr::Tcp(node.host.clone(), node.port)
                .into_connection_info()
                .unwrap_or_else(|_| unreachable!("a TCP address is connection info"))
                .set_tcp_settings(TcpSettings::default().set_nodelay(true))
        })
        .collect()
}

/// The address the live connections were made to, shared with the watcher.
type Resolved = Arc<StdMutex<Option<(String, u16)>>>;

/// The master behind a set of sentinels, resolved for each new connection and followed by a
/// background watcher (see the module docs).
pub(crate) struct SentinelMaster {
    sentinels: Vec<ConnectionInfo>,
    master: String,
    client: tokio::sync::Mutex<SentinelClient>,
    /// Bumped whenever the master may have changed; shared with the connection slots.
    generation: Arc<AtomicU64>,
    resolved: Resolved,
    sentinel_config: AsyncConnectionConfig,
    watcher: StdMutex<Option<JoinHandle<()>>>,
}

impl SentinelMaster {
    /// Prepares the client; nothing connects until the first command. The sentinels are asked
    /// in the order given; the URL's credentials are the master's.
    pub(crate) fn new(
        target: &SentinelTarget,
        timeouts: &RedisTimeouts,
        generation: Arc<AtomicU64>,
    ) -> Result<Self, RedisBackendError> {
        if target.tls {
            return Err(RedisBackendError::NotBuilt("rediss+sentinel (TLS)"));
        }
        let mut node = RedisConnectionInfo::default();
        if let Some(username) = &target.credentials.username {
            node = node.set_username(username.as_str());
        }
        if let Some(password) = &target.credentials.password {
            node = node.set_password(password.expose_secret());
        }
        let sentinel_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response));
        let master = target.master_name.as_str();
        let sentinels = sentinel_infos(target);
        let node_info = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(node)
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = SentinelClient::build(
            sentinels.clone(),
            master.to_owned(),
            Some(node_info),
            SentinelServerType::Master,
        )
        .map_err(RedisBackendError::InvalidUrl)?;
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            client: tokio::sync::Mutex::new(client),
            generation,
            resolved: Arc::default(),
            sentinel_config,
            watcher: StdMutex::new(None),
        })
    }

    /// A new connection to the current master, checked with `ROLE` on the connection itself.
    pub(crate) async fn connect(&self) -> Result<MultiplexedConnection, RedisBackendError> {
        self.connect_with(&self.sentinel_config.clone(), false)
            .await
    }

    /// [`SentinelMaster::connect`] with a connection config of the caller's (the client-side
    /// cache's push handler), speaking RESP3 if `resp3`.
    pub(crate) async fn connect_with(
        &self,
        config: &AsyncConnectionConfig,
        resp3: bool,
    ) -> Result<MultiplexedConnection, RedisBackendError> {
        self.ensure_watcher();
        let mut client: Client = {
            let mut sentinel = self.client.lock().await;
            sentinel
                .async_get_client()
                .await
                .map_err(RedisBackendError::Unreachable)?
        };
        if resp3 {
            let info = client.get_connection_info().clone();
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            client = Client::open(info.set_redis_settings(settings))
                .map_err(RedisBackendError::InvalidUrl)?;
        }
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await
            .map_err(RedisBackendError::Unreachable)?;
        // Sentinel's answer may already be stale: the node itself must say it is the master.
        let role: Role = redis::cmd("ROLE")
            .query_async(&mut conn)
            .await
            .map_err(RedisBackendError::Unreachable)?;
        if !matches!(role, Role::Primary { .. }) {
            return Err(RedisBackendError::NotMaster);
        }
        if let ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr() {
            let address = Some((host.clone(), *port));
            let mut resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            if *resolved != address {
                tracing::info!(master = %self.master, host, port, "following the Redis master");
                *resolved = address;
            }
        }
        Ok(conn)
    }

    /// Starts the `+switch-master` watcher on the current runtime if it is not running.
    fn ensure_watcher(&self) {
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if watcher.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *watcher = Some(runtime.spawn(watch(
            self.sentinels.clone(),
            self.master.clone(),
            Arc::clone(&self.generation),
            Arc::clone(&self.resolved),
            self.sentinel_config.clone(),
        )));
    }
}

impl Drop for SentinelMaster {
    fn drop(&mut self) {
        if let Some(task) = self
            .watcher
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Drops every connection: the next command on each thread resolves the master again.
fn invalidate(generation: &AtomicU64, resolved: &Resolved, why: &str) {
    generation.fetch_add(1, Ordering::AcqRel);
    *resolved.lock().unwrap_or_else(|e| e.into_inner()) = None;
    tracing::warn!(why, "the Redis master changed: dropping every connection");
}

/// The watcher: one sentinel at a time, round robin, for as long as the connection lives.
async fn watch(
    sentinels: Vec<ConnectionInfo>,
    master: String,
    generation: Arc<AtomicU64>,
    resolved: Resolved,
    config: AsyncConnectionConfig,
) {
    for sentinel in sentinels.iter().cycle() {
        if let Err(err) = listen(sentinel, &master, &generation, &resolved, &config).await {
            tracing::debug!(error = %err, "lost the sentinel; trying the next one");
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

/// Subscribes to `+switch-master` on one sentinel and polls it for the master's address, until
/// that sentinel fails.
async fn listen(
    sentinel: &ConnectionInfo,
    master: &str,
    generation: &AtomicU64,
    resolved: &Resolved,
    config: &AsyncConnectionConfig,
) -> redis::RedisResult<()> {
    let client = Client::open(sentinel.clone())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("+switch-master").await?;
    let mut poll = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    let mut messages = pubsub.on_message();
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the sentinel closed the subscription",
                    )));
                };
                // "<master name> <old ip> <old port> <new ip> <new port>"
                let payload: String = message.get_payload()?;
                if payload.split(' ').next() == Some(master) {
                    invalidate(generation, resolved, "+switch-master");
                }
            }
            _ = ticks.tick() => {
                let named: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(master)
                    .query_async(&mut poll)
                    .await?;
                let current = resolved.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let (Some(named), Some(current)) = (named, current)
                    && named != current
                {
                    invalidate(generation, resolved, "the sentinel names another master");
                }
            }
        }
    }
}
