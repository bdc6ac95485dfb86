//! Opaque tokens in Redis: the credential is a random UUID, the state is a Redis key with a TTL.
//!
//! - **State** lives in Redis, shared by every instance: `<prefix>tok:<uuid>` -> `"<user id>:<name>"`.
//! - **Verify** is one `GET`: a network round trip on every authenticated request.
//! - **Revocation** is instant and exact: `DEL` the key (logout), or let its `EX` run out.
//! - **Scaling out** is free for the application (any instance can verify any token); the cost
//!   moves to Redis, which every request now depends on: when it is down, nobody is authenticated.
//!
//! # Layout
//! - [`RedisConnection`]: one multiplexed connection to Redis, shared by all requests, reconnecting
//!   by itself after a failure, with short timeouts so an outage answers "unavailable" quickly.
//! - [`RedisTokenAuthenticator`]: the backend itself.
//! - [`RedisDenylist`]: the revoked-JWT set that the JWT backend can consult, kept here so that the
//!   JWT crate never needs to know where the set lives.
//!
//! Why not a connection pool? A pool lends one connection per request, so throughput is capped at
//! pool size divided by the round-trip time, and deadpool-redis also sends `UNWATCH` + `PING` at
//! every checkout. A multiplexed connection pipelines every in-flight command over one socket.
//! (`docs/backends.md` has the measured difference.)
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use authlab_core::{AuthError, Authenticator, Denylist, Identity, Issued};
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, IntoConnectionInfo};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

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
    /// Redis answered with an error (wrong type, out of memory, ...).
    #[error("Redis answered with an error")]
    Command(#[source] redis::RedisError),
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

/// One multiplexed Redis connection shared by every request, re-established after a failure.
///
/// Nothing connects at construction: the server starts even when Redis is down, and the first
/// command connects. A command that fails because the connection broke drops it, and the next
/// command connects again; so the service recovers by itself when Redis comes back.
pub struct RedisConnection {
    client: Client,
    config: AsyncConnectionConfig,
    retry_after: Duration,
    /// The live connection, read without locking on the hot path.
    current: ArcSwapOption<MultiplexedConnection>,
    /// Held while connecting, so a burst of requests makes one attempt, not one each. Holds the
    /// time of the last failed attempt.
    connecting: Mutex<Option<Instant>>,
}

impl RedisConnection {
    /// Prepares a connection to `url` (for example `redis://127.0.0.1:6379`) without connecting.
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
            current: ArcSwapOption::empty(),
            connecting: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisBackendError> {
        if let Some(conn) = self.current.load_full() {
            return Ok((*conn).clone());
        }
        let mut last_failure = self.connecting.lock().await;
        // Somebody else may have connected while we waited for the lock.
        if let Some(conn) = self.current.load_full() {
            return Ok((*conn).clone());
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
                tracing::info!("connected to Redis");
                *last_failure = None;
                self.current.store(Some(Arc::new(conn.clone())));
                Ok(conn)
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
        let mut conn = self.connection().await?;
        match cmd.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(err) if is_connection_failure(&err) => {
                if self.current.swap(None).is_some() {
                    tracing::warn!(error = %err, "lost the Redis connection");
                }
                Err(RedisBackendError::Unreachable(err))
            }
            Err(err) => Err(RedisBackendError::Command(err)),
        }
    }

    /// Asks Redis for `PONG`: the readiness check.
    pub async fn ping(&self) -> Result<(), RedisBackendError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}

fn is_connection_failure(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}

/// Settings for [`RedisTokenAuthenticator`].
#[derive(Debug, Clone)]
pub struct RedisTokenConfig {
    /// Put in front of every key, so several runs (or apps) can share one Redis. Default `authlab:`.
    pub prefix: String,
    /// How long a token lives; it becomes the key's `EX`, so Redis itself forgets it.
    pub ttl: Duration,
}

/// Opaque random tokens whose meaning is stored in Redis.
pub struct RedisTokenAuthenticator {
    conn: Arc<RedisConnection>,
    token_prefix: String,
    ttl: Duration,
}

impl RedisTokenAuthenticator {
    /// The backend, over a (possibly shared) connection.
    pub fn new(conn: Arc<RedisConnection>, config: RedisTokenConfig) -> Self {
        Self {
            conn,
            token_prefix: format!("{}tok:", config.prefix),
            ttl: config.ttl,
        }
    }

    /// The Redis key for a token: `<prefix>tok:<uuid>`.
    fn key(&self, token: &Uuid) -> String {
        let mut key = String::with_capacity(self.token_prefix.len() + 36);
        key.push_str(&self.token_prefix);
        key.push_str(token.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        key
    }

    /// Reads a presented token. Only the canonical form we issue (36 characters, lower-case,
    /// hyphenated) is accepted, so a malformed token costs no round trip.
    fn parse(token: &str) -> Result<Uuid, AuthError> {
        let uuid = Uuid::try_parse(token).map_err(|_| AuthError::Invalid)?;
        let mut buf = Uuid::encode_buffer();
        if token.len() != 36 || uuid.hyphenated().encode_lower(&mut buf) != token {
            return Err(AuthError::Invalid);
        }
        Ok(uuid)
    }
}

/// The stored value is `"<user id>:<user name>"`: one string, so verify is a plain `GET`. The id
/// is digits, so the first `:` separates the two even when the name contains one.
fn encode_identity(identity: &Identity) -> String {
    format!("{}:{}", identity.user_id, identity.username)
}

fn decode_identity(value: &str) -> Option<Identity> {
    let (id, name) = value.split_once(':')?;
    Some(Identity::new(id.parse().ok()?, name))
}

impl Authenticator for RedisTokenAuthenticator {
    async fn issue(&self, identity: &Identity) -> Result<Issued, AuthError> {
        let value = encode_identity(identity);
        loop {
            // UUID v4: 122 random bits from the OS generator (the `getrandom` crate).
            let token = Uuid::new_v4();
            // `NX`: never overwrite an existing token. A v4 collision will not happen, but if it
            // did, silently handing one user's key to another would be the worst outcome.
            let stored: Option<String> = self
                .conn
                .query(
                    redis::cmd("SET")
                        .arg(self.key(&token))
                        .arg(&value)
                        .arg("NX")
                        .arg("EX")
                        .arg(self.ttl.as_secs().max(1)),
                )
                .await?;
            if stored.is_some() {
                return Ok(Issued {
                    credential: token.hyphenated().to_string().into(),
                    expires_in: self.ttl,
                });
            }
        }
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        let token = Self::parse(credential)?;
        let value: Option<String> = self
            .conn
            .query(redis::cmd("GET").arg(self.key(&token)))
            .await?;
        // An expired token is simply gone: Redis cannot tell "expired" from "never existed".
        value
            .as_deref()
            .and_then(decode_identity)
            .ok_or(AuthError::Invalid)
    }

    async fn revoke(&self, credential: &str) -> Result<(), AuthError> {
        let token = Self::parse(credential)?;
        let deleted: i64 = self
            .conn
            .query(redis::cmd("DEL").arg(self.key(&token)))
            .await?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// Revoked JWT ids, as Redis keys `<prefix>deny:<jti>` that expire when the token would have.
pub struct RedisDenylist {
    conn: Arc<RedisConnection>,
    deny_prefix: String,
}

impl RedisDenylist {
    /// The denylist, over a (possibly shared) connection, under `<prefix>deny:`.
    pub fn new(conn: Arc<RedisConnection>, prefix: &str) -> Self {
        Self {
            conn,
            deny_prefix: format!("{prefix}deny:"),
        }
    }

    fn key(&self, id: &str) -> String {
        let mut key = String::with_capacity(self.deny_prefix.len() + id.len());
        key.push_str(&self.deny_prefix);
        key.push_str(id);
        key
    }
}

impl Denylist for RedisDenylist {
    async fn deny(&self, id: &str, ttl: Duration) -> Result<(), AuthError> {
        // The entry only has to outlive the token; one second more covers rounding down.
        let seconds = ttl.as_secs().saturating_add(1);
        let _: String = self
            .conn
            .query(
                redis::cmd("SET")
                    .arg(self.key(id))
                    .arg(1)
                    .arg("EX")
                    .arg(seconds),
            )
            .await?;
        Ok(())
    }

    async fn is_denied(&self, id: &str) -> Result<bool, AuthError> {
        let found: i64 = self
            .conn
            .query(redis::cmd("EXISTS").arg(self.key(id)))
            .await?;
        Ok(found == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_token_form_is_accepted() {
        let token = Uuid::new_v4();
        let canonical = token.hyphenated().to_string();
        assert_eq!(RedisTokenAuthenticator::parse(&canonical).ok(), Some(token));
        for other in [
            canonical.to_uppercase(),
            token.simple().to_string(),
            token.braced().to_string(),
            token.urn().to_string(),
            String::new(),
            "not-a-uuid".to_owned(),
        ] {
            assert!(
                matches!(
                    RedisTokenAuthenticator::parse(&other),
                    Err(AuthError::Invalid)
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn identity_round_trips_through_the_stored_value_even_with_colons() {
        let who = Identity::new(42, "a:b:c");
        assert_eq!(decode_identity(&encode_identity(&who)), Some(who));
        assert_eq!(decode_identity("no-colon"), None);
        assert_eq!(decode_identity("x:name"), None);
    }

    #[test]
    fn a_bad_url_is_rejected_at_construction() {
        assert!(matches!(
            RedisConnection::new("http://nope", RedisTimeouts::default()),
            Err(RedisBackendError::InvalidUrl(_))
        ));
    }
}
