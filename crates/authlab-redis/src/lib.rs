//! Opaque tokens in Redis: the credential is a random string, the state is a Redis key with a TTL.
//!
//! - **State** lives in Redis, shared by every instance: `<prefix>tok:<sha256(token)>` ->
//!   `"<user id>:<family>:<name>"`. Redis holds hashes of tokens, never tokens.
//! - **Verify** is one `GET` per request; none for a token already seen, with the cache on.
//! - **Revocation** is instant and exact: `DEL` the key (logout), or let its `EX` run out. A
//!   logout that failed half way is finished by its retry (see `families`: the tombstone).
//! - **Scaling out** is free for the application (any instance can verify any token); the cost
//!   moves to Redis, which every request now depends on: when it is down, nobody is authenticated.
//!
//! # Layout
//! - [`RedisConnection`]: a multiplexed connection to Redis per worker thread, shared by all of
//!   that worker's requests, reconnecting by itself after a failure, with short timeouts so an
//!   outage answers "unavailable" quickly.
//! - [`RedisTokenAuthenticator`]: the backend itself. A login starts a refresh-token family
//!   ([`RedisFamilies`]); each access token is attached to its family, so logout (or a detected
//!   refresh-token theft) revokes the access tokens and the refresh token together.
//! - `token`: the token formats ([`TokenFormat`]: UUID v4 or 256 random bits), their strict
//!   parsers, and the SHA-256 that stands for a token in Redis (about 87 ns per request by
//!   `cargo bench --bench costs`, against a round trip of tens of microseconds).
//! - [`RedisFamilies`]: refresh-token rotation with reuse detection, and the per-user registry
//!   behind "log out everywhere". The JWT backend keeps its families here too.
//! - [`RedisDenylist`]: the revoked-JWT set that the JWT backend can consult, kept here so that the
//!   JWT crate never needs to know where the set lives, with the epoch marker that keeps a logout
//!   from un-happening when Redis loses its data.
//! - [`TrackedCache`] (`tracking`, `cache`): server-assisted client-side caching (RESP3 client
//!   tracking), so that a verified token, or a denylist answer, is served from process memory
//!   while a logout anywhere still ends it everywhere within milliseconds (`--redis-cache on`,
//!   `--jwt-denylist cached`). The module docs list its guarantees and what keeps each.
//! - [`AttemptCounters`]: the login-throttling counters every instance shares (one atomic Lua
//!   script over one key per call).
//! - `sentinel`: the master found through Sentinel and followed across failovers (connections
//!   checked with `ROLE`, dropped on `READONLY` and on `+switch-master`).
//! - [`WriteConfirmation`]: every write that ends a credential waits (`WAIT`) for a replica before
//!   it is acknowledged, so a failover cannot bring a logged-out credential back.
//!
//! Why not a connection pool? A pool lends one connection per request, so throughput is capped at
//! pool size divided by the round-trip time, and deadpool-redis also sends `UNWATCH` + `PING` at
//! every checkout. A multiplexed connection pipelines every in-flight command over one socket.
//! (`docs/backends.md` has the measured difference.) To measure it, [`RedisConnection::with_pool`]
//! swaps in deadpool-redis ([`PoolSettings`], `--redis-pool deadpool`); `pool` says what it costs.
//!
//! A Redis that loses its data (a restart without persistence, a flush) takes every opaque token
//! with it: their keys are gone, so they are refused (`invalid_token`) and users log in again.
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use authlab_core::{
    AuthError, Authenticator, ClientInfo, Clock, FamilyAccess, FamilyLifecycle, Identity, Issued,
    IssuedRefresh, RefreshFamilies, Refreshed, RevokedFamily, SessionInfo, SessionRegistry,
    SystemClock, TokenEndpoints, TokenInfo, TokenKind,
};

mod cache;
mod cluster;
mod cluster_cache;
mod confirm;
mod connection;
mod denylist;
mod families;
mod pool;
mod sentinel;
#[cfg(test)]
mod slot_rule;
mod standalone;
mod throttle;
mod token;
pub mod topology;
mod tracking;

pub use cluster::ClusterTuning;
pub use confirm::WriteConfirmation;
pub use connection::{
    CommandMetrics, ConnectionId, RedisBackendError, RedisConnection, RedisMetrics, RedisTimeouts,
};
pub use denylist::{EPOCH_REFRESH, RedisDenylist};
pub use families::{FamilyConfig, LiveMarkers, RedisFamilies, looks_like_refresh_token};
pub use pool::PoolSettings;
pub use throttle::{AttemptCounters, Verdict};
pub use token::{TokenFormat, hash as token_hash};
pub use topology::{REDIS_URL_FORMS, RedisTarget, TargetError};
pub use tracking::{CacheConfig, CacheStats, SILENCE_LIMIT, TrackedCache};

/// Settings for [`RedisTokenAuthenticator`].
#[derive(Debug, Clone)]
pub struct RedisTokenConfig {
    /// Put in front of every key, so several runs (or apps) can share one Redis. Default `authlab:`.
    pub prefix: String,
    /// How long an access token lives; it becomes the key's `EX`, so Redis itself forgets it.
    pub ttl: Duration,
    /// How new access tokens are written (both formats are accepted).
    pub format: TokenFormat,
}

/// Opaque random tokens whose meaning is stored in Redis.
pub struct RedisTokenAuthenticator {
    conn: Arc<RedisConnection>,
    /// Verified tokens in process memory, kept coherent by Redis (`--redis-cache on`).
    cache: Option<TrackedCache>,
    families: RedisFamilies,
    token_prefix: String,
    ttl: Duration,
    format: TokenFormat,
}

impl RedisTokenAuthenticator {
    /// The backend, over a (possibly shared) connection, with its refresh-token families.
    pub fn new(
        conn: Arc<RedisConnection>,
        families: RedisFamilies,
        config: RedisTokenConfig,
    ) -> Self {
        Self {
            conn,
            cache: None,
            families,
            token_prefix: format!("{}tok:", config.prefix),
            ttl: config.ttl,
            format: config.format,
        }
    }

    /// Serves verified tokens from `cache` (see [`TrackedCache`]): a hit costs no round trip,
    /// and a logout anywhere still ends the token everywhere within the cache's staleness bound.
    pub fn with_cache(mut self, cache: TrackedCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The cache's counters, if the cache is on.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(TrackedCache::stats)
    }

    /// This instance just deleted `key`: its own cache forgets it now, without waiting for
    /// Redis's invalidation.
    fn forget(&self, key: &str) {
        if let Some(cache) = &self.cache {
            cache.forget(key);
        }
    }

    /// The Redis key for a token: `<prefix>tok:<hex sha256(token)>`. The token itself is never
    /// written to Redis, so nothing read out of Redis can be presented as a token.
    pub(crate) fn key(&self, token: &str) -> String {
        self.hash_key(|key| token::push_hash(key, token))
    }

    /// The Redis key for a token's stored hash (as the family's `acc` set holds it).
    fn hash_key(&self, push: impl FnOnce(&mut String)) -> String {
        let mut key = String::with_capacity(self.token_prefix.len() + token::HASH_LEN);
        key.push_str(&self.token_prefix);
        push(&mut key);
        key
    }

    /// Reads a presented token: only the exact shapes we issue (see [`TokenFormat`]) go on to
    /// Redis, so a malformed token costs no round trip.
    fn parse(token: &str) -> Result<&str, AuthError> {
        if token::is_well_formed(token) {
            Ok(token)
        } else {
            Err(AuthError::Invalid)
        }
    }

    /// Mints an access token for a family: `SET NX EX` under its hash, then attach the hash to
    /// the family.
    ///
    /// The token's key and the family sit in different Cluster slots, so no script can do both
    /// at once; the order makes it safe against a concurrent logout (which ends the family, then
    /// deletes the tokens it lists). `ATTACH` refuses when the family is gone: if the logout ran
    /// first, the attach fails and the token is deleted here before anyone has seen it; if it
    /// ran after, it finds the hash in the family and deletes the token itself. Attaching first
    /// would not do: a logout between the attach and the `SET` would delete a key that does not
    /// exist yet, and the `SET` would then bring a token of an ended family to life.
    async fn mint(&self, identity: &Identity, family: &str) -> Result<String, AuthError> {
        let value = encode_identity(identity, family);
        loop {
            let token = self.format.generate()?;
            let hash = token::hash(&token);
            let key = self.hash_key(|key| key.push_str(&hash));
            // `NX`: never overwrite an existing token. A collision of 122 (or 256) random bits
            // will not happen, but if it did, silently handing one user's key to another would
            // be the worst outcome.
            let stored: Option<String> = self
                .conn
                .query(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("NX")
                        .arg("EX")
                        .arg(self.ttl.as_secs().max(1)),
                )
                .await?;
            if stored.is_some() {
                // The family remembers the hash, not the token (a dump of `acc` is useless too).
                if let Err(refused) = self.families.attach(family, &hash, self.ttl).await {
                    // The family died while we minted: so does the token.
                    self.delete_key(key).await?;
                    return Err(refused);
                }
                return Ok(token);
            }
        }
    }

    /// The family logic shared with the JWT backend, with this backend's access side.
    fn lifecycle(&self) -> FamilyLifecycle<'_, RedisFamilies, Self> {
        FamilyLifecycle {
            families: &self.families,
            access: self,
        }
    }

    /// Deletes one access token's key, confirmed where it survives a failover.
    async fn delete_key(&self, key: String) -> Result<(), AuthError> {
        let _: i64 = self
            .conn
            .query_confirmed(&key, redis::cmd("DEL").arg(&key))
            .await?;
        self.forget(&key);
        Ok(())
    }

    /// Looks a token up: one `GET` of its hash's key. Returns the key and who it belongs to.
    async fn lookup(&self, credential: &str) -> Result<(String, Identity), AuthError> {
        let key = self.key(Self::parse(credential)?);
        let value: Option<Arc<str>> = match &self.cache {
            // A token that does not exist is not remembered: random guesses must not fill it.
            // `get` serves a hit without creating a Redis future (see `TrackedCache::peek`).
            Some(cache) => cache.get(&key, false).await?,
            // Boxed, so that the verify future and every future that holds it inline stay
            // small: actix moves each request's handler future into a box, and a Redis
            // command's state inline would be kilobytes copied per request.
            None => Box::pin(
                self.conn
                    .query::<Option<String>>(redis::cmd("GET").arg(&key)),
            )
            .await?
            .map(Arc::from),
        };
        // An expired token is simply gone: Redis cannot tell "expired" from "never existed".
        let identity = value
            .as_deref()
            .and_then(decode_identity)
            .ok_or(AuthError::Invalid)?;
        Ok((key, identity))
    }
}

/// The stored value is `"<user id>:<family>:<user name>"`: one string, so verify is a plain `GET`.
/// The id is digits and the family hex, so the first two `:` split it even when the name has one.
fn encode_identity(identity: &Identity, family: &str) -> String {
    format!("{}:{family}:{}", identity.user_id, identity.username)
}

fn decode_identity(value: &str) -> Option<Identity> {
    let (id, rest) = value.split_once(':')?;
    let (family, name) = rest.split_once(':')?;
    Some(Identity::new(id.parse().ok()?, name).in_session(family))
}

impl RedisTokenAuthenticator {
    /// Deletes the access tokens attached to an ended family, but `spared` (the key of the
    /// token a logout presented, which goes last).
    ///
    /// One `DEL` per key, sent at once: each token's key hashes to its own Cluster slot, so
    /// neither a multi-key `DEL` nor a pipeline of them may group them (the slot rule). The family
    /// already ended (its script ran first), so no new token can join it meanwhile. Each `DEL` is
    /// confirmed (`delete_key`) before the revocation is answered. Deleting a key that is already
    /// gone is a no-op, so a retry that runs it again is harmless.
    async fn delete_attached(
        &self,
        ended: &RevokedFamily,
        spared: Option<&str>,
    ) -> Result<(), AuthError> {
        let deletes = ended
            .attached
            .iter()
            .filter(|h| token::is_hash(h))
            .map(|hash| self.hash_key(|key| key.push_str(hash)))
            .filter(|key| Some(key.as_str()) != spared)
            .map(|key| self.delete_key(key));
        for deleted in futures_util::future::join_all(deletes).await {
            deleted?;
        }
        Ok(())
    }
}

impl FamilyAccess for RedisTokenAuthenticator {
    /// The access tokens attached to an ended family go with it.
    async fn revoke_access(
        &self,
        _family: &str,
        ended: Option<&RevokedFamily>,
    ) -> Result<(), AuthError> {
        match ended {
            Some(ended) => self.delete_attached(ended, None).await,
            None => Ok(()),
        }
    }
}

impl Authenticator for RedisTokenAuthenticator {
    async fn issue(&self, identity: &Identity, client: &ClientInfo) -> Result<Issued, AuthError> {
        let family = self.families.start(identity, client).await?;
        let access = self.mint(identity, &family.id).await?;
        Ok(Issued {
            credential: access.into(),
            expires_in: self.ttl,
            refresh: Some(IssuedRefresh {
                token: family.refresh_token,
                expires_in: family.refresh_ttl,
            }),
        })
    }

    async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
        self.lookup(credential).await.map(|(_, identity)| identity)
    }

    /// Logout ends the whole login: every access token of the family and its refresh token.
    ///
    /// The steps of [`FamilyLifecycle::end`], with the presented token deleted last: while it
    /// lives, a retry of this logout can still find its family (the token's value names it), and
    /// with it the tombstone of an attempt that stopped half way. So a token refused because it
    /// is gone means every other token of the login is gone too.
    async fn revoke(&self, credential: &str) -> Result<Identity, AuthError> {
        let (key, identity) = self.lookup(credential).await?;
        let family = identity.session_id.as_deref().unwrap_or_default();
        let ended = self.families.revoke_family(family).await?;
        if let Some(ended) = &ended {
            self.delete_attached(ended, Some(&key)).await?;
        }
        // The family may also have gone by itself (expired); the token still goes.
        self.delete_key(key).await?;
        if let Some(ended) = &ended {
            self.families.forget_revocation(family, ended).await?;
        }
        Ok(identity)
    }
}

impl SessionRegistry for RedisTokenAuthenticator {
    async fn sessions(&self, user_id: i64) -> Result<Vec<SessionInfo>, AuthError> {
        self.families.list(user_id).await
    }

    async fn revoke_session(&self, user_id: i64, session_id: &str) -> Result<bool, AuthError> {
        self.lifecycle().revoke_session(user_id, session_id).await
    }

    async fn revoke_all(&self, user_id: i64) -> Result<usize, AuthError> {
        self.lifecycle().revoke_all(user_id).await
    }
}

impl TokenEndpoints for RedisTokenAuthenticator {
    async fn refresh(
        &self,
        refresh_token: &str,
        _client: &ClientInfo,
    ) -> Result<Refreshed, AuthError> {
        // A reused refresh token ends the whole login, access tokens included.
        let rotated = self.lifecycle().exchange(refresh_token).await?;
        let family = rotated.identity.session_id.clone().unwrap_or_default();
        let access = self.mint(&rotated.identity, &family).await?;
        Ok(Refreshed {
            identity: rotated.identity,
            issued: Issued {
                credential: access.into(),
                expires_in: self.ttl,
                refresh: Some(IssuedRefresh {
                    token: rotated.refresh_token,
                    expires_in: rotated.refresh_ttl,
                }),
            },
        })
    }

    async fn introspect(&self, token: &str) -> Result<Option<TokenInfo>, AuthError> {
        if looks_like_refresh_token(token) {
            return self.families.inspect(token).await;
        }
        let Ok(token) = Self::parse(token) else {
            return Ok(None);
        };
        let key = self.key(token);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&key).cmd("TTL").arg(&key);
        let (value, ttl): (Option<String>, i64) = self.conn.pipeline(&pipe).await?;
        Ok(value
            .as_deref()
            .and_then(decode_identity)
            .filter(|_| ttl > 0)
            .map(|identity| TokenInfo {
                kind: TokenKind::Access,
                identity,
                issued_at: None,
                expires_at: SystemClock.now_unix() + ttl.unsigned_abs(),
            }))
    }

    async fn revoke_token(&self, token: &str) -> Result<(), AuthError> {
        if looks_like_refresh_token(token) {
            self.lifecycle().revoke_refresh_token(token).await?;
        } else if let Ok(token) = Self::parse(token) {
            self.delete_key(self.key(token)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_the_stored_value_even_with_colons() {
        let who = Identity::new(42, "a:b:c").in_session("f00d");
        assert_eq!(decode_identity(&encode_identity(&who, "f00d")), Some(who));
        assert_eq!(decode_identity("no-colon"), None);
        assert_eq!(decode_identity("x:fam:name"), None);
    }

    #[test]
    fn a_confirmation_wait_must_end_before_the_response_timeout() {
        let conn = |url| RedisConnection::new(url, RedisTimeouts::default()).unwrap();
        let slow = WriteConfirmation {
            replicas: 1,
            timeout: RedisTimeouts::default().response,
        };
        assert!(matches!(
            conn("redis://127.0.0.1:1").with_confirmation(slow),
            Err(RedisBackendError::ConfirmationTooSlow { .. })
        ));
        let quick = WriteConfirmation {
            timeout: Duration::from_millis(200),
            ..slow
        };
        for url in [
            "redis://127.0.0.1:1",
            "redis+sentinel://127.0.0.1:26379/m",
            "redis+cluster://127.0.0.1:7000",
        ] {
            let confirmed = conn(url).with_confirmation(quick).unwrap();
            assert_eq!(confirmed.confirmation(), quick, "{url}");
        }
        // On a cluster the node timeout (250 ms by default) bounds it too.
        let cluster_slow = WriteConfirmation {
            timeout: Duration::from_millis(300),
            ..slow
        };
        assert!(
            conn("redis+cluster://127.0.0.1:7000")
                .with_confirmation(cluster_slow)
                .is_err()
        );
        assert_eq!(
            conn("redis+sentinel://127.0.0.1:26379/m").topology(),
            "sentinel"
        );
    }

    #[test]
    fn a_bad_url_is_rejected_at_construction() {
        assert!(matches!(
            RedisConnection::new("http://nope", RedisTimeouts::default()),
            Err(RedisBackendError::InvalidTarget(_))
        ));
    }

    #[test]
    fn cluster_and_sentinel_urls_are_prepared_without_connecting() {
        let cluster = RedisConnection::new(
            "redis+cluster://127.0.0.1:1,127.0.0.1:2",
            RedisTimeouts::default(),
        );
        assert_eq!(cluster.map(|c| c.topology()).ok(), Some("cluster"));
        let sentinel = RedisConnection::new(
            "redis+sentinel://127.0.0.1:1/mymaster",
            RedisTimeouts::default(),
        );
        assert_eq!(sentinel.map(|c| c.topology()).ok(), Some("sentinel"));
    }
}
