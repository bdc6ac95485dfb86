//! Opaque tokens in Redis: the credential is a random UUID, the state is a Redis key with a TTL.
//!
//! - **State** lives in Redis, shared by every instance: `<prefix>tok:<uuid>` -> `"<user id>:<name>"`.
//! - **Verify** is one `GET`: a network round trip on every authenticated request.
//! - **Revocation** is instant and exact: `DEL` the key (logout), or let its `EX` run out.
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
//! - [`RedisFamilies`]: refresh-token rotation with reuse detection, and the per-user registry
//!   behind "log out everywhere". The JWT backend keeps its families here too.
//! - [`RedisDenylist`]: the revoked-JWT set that the JWT backend can consult, kept here so that the
//!   JWT crate never needs to know where the set lives.
//! - [`AttemptCounters`]: the login-throttling counters every instance shares (one atomic Lua
//!   script over one key per call).
//!
//! Why not a connection pool? A pool lends one connection per request, so throughput is capped at
//! pool size divided by the round-trip time, and deadpool-redis also sends `UNWATCH` + `PING` at
//! every checkout. A multiplexed connection pipelines every in-flight command over one socket.
//! (`docs/backends.md` has the measured difference.)
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use authlab_core::{
    AuthError, Authenticator, ClientInfo, Clock, Denylist, FamilyAccess, FamilyLifecycle, Identity,
    Issued, IssuedRefresh, RefreshFamilies, RevokedFamily, SessionInfo, SessionRegistry,
    SystemClock, TokenEndpoints, TokenInfo, TokenKind,
};
use uuid::Uuid;

mod connection;
mod families;
mod throttle;

pub use connection::{RedisBackendError, RedisConnection, RedisTimeouts};
pub use families::{FamilyConfig, RedisFamilies, looks_like_refresh_token};
pub use throttle::{AttemptCounters, Verdict};

/// Settings for [`RedisTokenAuthenticator`].
#[derive(Debug, Clone)]
pub struct RedisTokenConfig {
    /// Put in front of every key, so several runs (or apps) can share one Redis. Default `authlab:`.
    pub prefix: String,
    /// How long an access token lives; it becomes the key's `EX`, so Redis itself forgets it.
    pub ttl: Duration,
}

/// Opaque random tokens whose meaning is stored in Redis.
pub struct RedisTokenAuthenticator {
    conn: Arc<RedisConnection>,
    families: RedisFamilies,
    token_prefix: String,
    ttl: Duration,
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
            families,
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

    /// Mints an access token for a family: `SET NX EX`, then attach it to the family.
    async fn mint(&self, identity: &Identity, family: &str) -> Result<String, AuthError> {
        let value = encode_identity(identity, family);
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
                let token_text = token.hyphenated().to_string();
                if let Err(refused) = self.families.attach(family, &token_text, self.ttl).await {
                    // The family died while we minted: so does the token.
                    self.delete(&token).await?;
                    return Err(refused);
                }
                return Ok(token_text);
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

    /// Deletes one access token's key.
    async fn delete(&self, token: &Uuid) -> Result<(), AuthError> {
        let _: i64 = self
            .conn
            .query(redis::cmd("DEL").arg(self.key(token)))
            .await?;
        Ok(())
    }

    async fn lookup(&self, credential: &str) -> Result<(Uuid, Identity), AuthError> {
        let token = Self::parse(credential)?;
        let value: Option<String> = self
            .conn
            .query(redis::cmd("GET").arg(self.key(&token)))
            .await?;
        // An expired token is simply gone: Redis cannot tell "expired" from "never existed".
        let identity = value
            .as_deref()
            .and_then(decode_identity)
            .ok_or(AuthError::Invalid)?;
        Ok((token, identity))
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

impl FamilyAccess for RedisTokenAuthenticator {
    /// The access tokens attached to an ended family go with it.
    async fn revoke_access(
        &self,
        _family: &str,
        ended: Option<&RevokedFamily>,
    ) -> Result<(), AuthError> {
        let Some(ended) = ended.filter(|e| !e.attached.is_empty()) else {
            return Ok(());
        };
        // One DEL per key, pipelined: the tokens live in different Cluster slots, so a single
        // multi-key DEL would be refused there.
        let mut pipe = redis::pipe();
        for token in ended
            .attached
            .iter()
            .filter_map(|t| Uuid::try_parse(t).ok())
        {
            pipe.cmd("DEL").arg(self.key(&token)).ignore();
        }
        let () = self.conn.pipeline(&pipe).await?;
        Ok(())
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
    async fn revoke(&self, credential: &str) -> Result<(), AuthError> {
        let (token, identity) = self.lookup(credential).await?;
        let family = identity.session_id.as_deref().unwrap_or_default();
        if !self.lifecycle().end(family).await? {
            // The family had already gone (expired); the token itself still goes.
            self.delete(&token).await?;
        }
        Ok(())
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
    ) -> Result<Issued, AuthError> {
        // A reused refresh token ends the whole login, access tokens included.
        let rotated = self.lifecycle().exchange(refresh_token).await?;
        let family = rotated.identity.session_id.clone().unwrap_or_default();
        let access = self.mint(&rotated.identity, &family).await?;
        Ok(Issued {
            credential: access.into(),
            expires_in: self.ttl,
            refresh: Some(IssuedRefresh {
                token: rotated.refresh_token,
                expires_in: rotated.refresh_ttl,
            }),
        })
    }

    async fn introspect(&self, token: &str) -> Result<Option<TokenInfo>, AuthError> {
        if looks_like_refresh_token(token) {
            return self.families.inspect(token).await;
        }
        let Ok(uuid) = Self::parse(token) else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(self.key(&uuid))
            .cmd("TTL")
            .arg(self.key(&uuid));
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
        } else if let Ok(uuid) = Self::parse(token) {
            self.delete(&uuid).await?;
        }
        Ok(())
    }
}

/// Revoked JWTs as Redis keys that expire when the tokens would have:
/// `<prefix>deny:{<family>}` for a whole family, `<prefix>deny:{<family>}:<jti>` for one token.
/// The shared hash tag puts both in one Cluster slot, so one `EXISTS` checks both.
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

    fn family_key(&self, family: &str) -> String {
        let mut key = String::with_capacity(self.deny_prefix.len() + family.len() + 2);
        key.push_str(&self.deny_prefix);
        key.push('{');
        key.push_str(family);
        key.push('}');
        key
    }

    fn token_key(&self, family: &str, jti: &str) -> String {
        let mut key = self.family_key(family);
        key.push(':');
        key.push_str(jti);
        key
    }
}

impl Denylist for RedisDenylist {
    async fn deny(&self, family: &str, jti: Option<&str>, ttl: Duration) -> Result<(), AuthError> {
        let key = match jti {
            Some(jti) => self.token_key(family, jti),
            None => self.family_key(family),
        };
        // The entry only has to outlive the token; one second more covers rounding down.
        let seconds = ttl.as_secs().saturating_add(1);
        let _: String = self
            .conn
            .query(redis::cmd("SET").arg(key).arg(1).arg("EX").arg(seconds))
            .await?;
        Ok(())
    }

    async fn is_denied(&self, family: &str, jti: &str) -> Result<bool, AuthError> {
        let found: i64 = self
            .conn
            .query(
                redis::cmd("EXISTS")
                    .arg(self.token_key(family, jti))
                    .arg(self.family_key(family)),
            )
            .await?;
        Ok(found > 0)
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
        let who = Identity::new(42, "a:b:c").in_session("f00d");
        assert_eq!(decode_identity(&encode_identity(&who, "f00d")), Some(who));
        assert_eq!(decode_identity("no-colon"), None);
        assert_eq!(decode_identity("x:fam:name"), None);
    }

    #[test]
    fn a_bad_url_is_rejected_at_construction() {
        assert!(matches!(
            RedisConnection::new("http://nope", RedisTimeouts::default()),
            Err(RedisBackendError::InvalidUrl(_))
        ));
    }
}
