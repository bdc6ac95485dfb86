//! One Redis server: a multiplexed connection per thread, with short timeouts.

use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};
use secrecy::ExposeSecret;

use crate::topology::StandaloneTarget;
use crate::{RedisBackendError, RedisTimeouts};

/// How to connect to one Redis.
pub(crate) struct Standalone {
    client: Client,
    config: AsyncConnectionConfig,
}

impl Standalone {
    /// Reads the URL (redis-rs's own reading of `redis://` and `rediss://`) without connecting.
    pub(crate) fn new(
        target: &StandaloneTarget,
        timeouts: &RedisTimeouts,
    ) -> Result<Self, RedisBackendError> {
        let info = target
            .url
            .expose_secret()
            .into_connection_info()
            .map_err(RedisBackendError::InvalidUrl)?
            // Small request/response pairs: Nagle's algorithm would only add latency.
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = Client::open(info).map_err(RedisBackendError::InvalidUrl)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response));
        Ok(Self { client, config })
    }

    /// What a pool needs to open connections of its own the same way ([`crate::pool`]).
    pub(crate) fn connection_parts(&self) -> (redis::ConnectionInfo, AsyncConnectionConfig) {
        (
            self.client.get_connection_info().clone(),
            self.config.clone(),
        )
    }

    /// Opens a multiplexed connection on the current runtime.
    pub(crate) async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }
}
