//! Refresh-token families in Redis: rotation, reuse detection, a grace window, and the per-user
//! registry that "log out everywhere" walks.
//!
//! # The model
//! A login starts a *family* `F`. The family holds exactly one live refresh token; exchanging it
//! (`/refresh`) spends it and mints its successor. Presenting a spent token again means two
//! parties hold copies of it (the client and a thief, and the server cannot tell which is which),
//! so the whole family is revoked: the RFC 6819 §5.2.2.3 / OAuth 2.1 "refresh token rotation".
//!
//! Two browser tabs refreshing at the same moment would look exactly like theft. So for a short
//! *grace window* (`--refresh-grace`) after a token is spent, presenting it again returns *the same
//! successor* instead of raising the alarm. The successor is derived, not stored:
//! `successor = F "." base64url(HMAC-SHA256(key, spent token))`, so Redis only ever holds hashes.
//!
//! # Keys (all under the prefix and a scope such as `redis:` or `jwt:`; every key has a TTL)
//! - `fam:{F}`: hash `uid name created used exp ua refresh prev prev_until`, where `refresh` and
//!   `prev` are SHA-256 hashes of tokens, never tokens;
//! - `fam:{F}:spent`: set of spent token hashes (reuse detection beyond the last one);
//! - `fam:{F}:acc`: sorted set of the access tokens issued from the family, scored by expiry:
//!   their SHA-256 hashes (opaque backend), never the tokens;
//! - `fam:{F}:ended`: the *tombstone* of a family whose revocation has begun and not finished:
//!   hash `uid refresh` (the refresh token that was live then, hashed). While it exists, `acc` and
//!   `spent` stay too, as the list of what must still die; all three live as long as the family
//!   would have, or longer if a listed access token would;
//! - `fam:{F}:live` (only with [`FamilyConfig::live_markers`], the JWT backend's families): the
//!   string `1`, written with the family at login and again by each rotation, living as long as
//!   the family or its newest access token. The JWT denylist checks it in the same `EXISTS` as
//!   the family's deny keys (see `denylist`), so a shard that loses its data refuses its own
//!   families' tokens instead of forgetting their revocations. Ending the family leaves it to
//!   expire: the deny key refuses the family's tokens (see `denylist` for why the revocation's
//!   first step does not delete it);
//! - `user:{U}:fams`: sorted set of the user's families, scored by expiry: the registry.
//!
//! The `fam:{F}` keys share the hash tag `{F}`, so in Redis Cluster they sit in one slot and
//! one Lua script can touch them atomically. The refresh token carries `F` in clear, so the server
//! finds that slot without a lookup.
//!
//! # Flows that span slots, made safe by their order
//! The registry `user:{U}:fams`, a family's keys and each access token's key (`tok:<hash>`, the
//! hash of a random token) sit in different slots, so no script or pipeline spans them. Where a
//! flow touches several, the order of its steps keeps it safe:
//! - **login** writes the registry entry, then the family: a family always has its entry, so
//!   "log out everywhere" and a password change find it;
//! - **ending a family** (logout, revoke one, logout-all, reuse, RFC 7009) deletes the family
//!   first, atomically turning it into a tombstone that lists the access tokens it issued
//!   (`REVOKE_FAMILY`), then deletes those tokens' keys, and only then the tombstone and the
//!   registry entry (`forget_revocation`): once the family is gone no refresh can mint from it
//!   and no new token can attach to it (`ATTACH` refuses), so the list is complete;
//! - **ending it again**: any step can fail, or run after the caller was told it failed (a
//!   script that Redis ran after our timeout). A retry, or any other revocation that reaches the
//!   family (a logout-all, a reused refresh token, RFC 7009), finds the tombstone, gets the same
//!   list from `REVOKE_FAMILY` and finishes the job before it answers success. The registry
//!   keeps the family until then (the session list hides it), so a logout-all finds it too;
//! - **minting** an access token writes its key, then attaches it (see the redis backend's
//!   `mint`): a logout racing it either lists the token or makes the attach fail, and then the
//!   minting request deletes the token itself;
//! - a **rotation** updates the family (one script) and then extends the registry entry; an entry
//!   that outlives its family is pruned when the list is read.

use std::sync::Arc;
use std::time::Duration;

use authlab_core::{
    AuthError, ClientInfo, Clock, Exchange, Identity, NewFamily, RefreshFamilies, RevokedFamily,
    Rotated, SessionInfo, SystemClock, TokenInfo, TokenKind, random,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use redis::Value;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Builder;

use crate::{RedisBackendError, RedisConnection};

/// Length of a family id (a UUID v4 without hyphens).
const FAMILY_LEN: usize = 32;
/// Length of the secret half of a refresh token: 32 bytes as unpadded base64url.
const SECRET_LEN: usize = 43;

/// The exchange, atomically: rotate, answer a retry within the grace window, or report reuse.
/// A spent token of a family whose revocation is unfinished is reported as reused too, so that
/// replaying it finishes the revocation. KEYS: fam, spent, acc (only its TTL is extended), ended,
/// and the live marker if the families keep one (written, not only extended, so a family that
/// predates the markers gains one at its next rotation). ARGV: presented hash, successor hash,
/// now, grace, ttl, and the marker's ttl if there is a marker.
pub(crate) const EXCHANGE: &str = r#"
local fam, spent = KEYS[1], KEYS[2]
local now, grace, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local f = redis.call('HMGET', fam, 'uid', 'name', 'refresh', 'prev', 'prev_until')
if not f[1] then
  if redis.call('EXISTS', KEYS[4]) == 1 and redis.call('SISMEMBER', spent, ARGV[1]) == 1 then
    return {'reused'}
  end
  return {'unknown'}
end
if ARGV[1] == f[3] then
  redis.call('SADD', spent, f[3])
  redis.call('HSET', fam, 'refresh', ARGV[2], 'prev', f[3], 'prev_until', now + grace,
             'used', now, 'exp', now + ttl)
  redis.call('EXPIRE', fam, ttl)
  redis.call('EXPIRE', spent, ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
  if KEYS[5] then redis.call('SET', KEYS[5], '1', 'EX', ARGV[6]) end
  return {'rotated', f[1], f[2]}
end
if ARGV[1] == f[4] and now < tonumber(f[5]) and ARGV[2] == f[3] then
  return {'grace', f[1], f[2]}
end
if redis.call('SISMEMBER', spent, ARGV[1]) == 1 then return {'reused', f[1], f[2]} end
return {'unknown'}
"#;

/// Records an access id in a live family; refuses (0) if the family is gone, so a token minted
/// while the family was being revoked cannot outlive it. KEYS: fam, acc. ARGV: now, expiry, id,
/// family ttl.
pub(crate) const ATTACH: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"#;

/// Ends a family: deletes it and leaves its tombstone (`ended`, keeping `acc` and `spent`), or
/// finds the tombstone an earlier, unfinished attempt left. Either way returns the user id and the
/// access ids still to delete; nothing (`{}`) if the family is neither live nor ending.
/// The tombstone lives as long as the family would have, or as the newest listed token if that is
/// longer. KEYS: fam, spent, acc, ended. ARGV: now.
pub(crate) const REVOKE_FAMILY: &str = r#"
local now = tonumber(ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'uid', 'refresh')
local uid = f[1]
if uid then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local keep = redis.call('PTTL', KEYS[1])
  local newest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  if newest[2] then keep = math.max(keep, (tonumber(newest[2]) - now + 1) * 1000) end
  keep = math.floor(math.max(keep, 1000))
  redis.call('HSET', KEYS[4], 'uid', uid, 'refresh', f[2] or '')
  redis.call('PEXPIRE', KEYS[4], keep)
  redis.call('PEXPIRE', KEYS[3], keep)
  redis.call('PEXPIRE', KEYS[2], keep)
  redis.call('DEL', KEYS[1])
else
  uid = redis.call('HGET', KEYS[4], 'uid')
  if not uid then return {} end
end
local acc = redis.call('ZRANGE', KEYS[3], 0, -1)
table.insert(acc, 1, uid)
return acc
"#;

/// Settings for [`RedisFamilies`].
pub struct FamilyConfig {
    /// The key prefix (`authlab:`), shared with the rest of authlab's keys.
    pub prefix: String,
    /// Which backend's families these are (`redis`, `jwt`), so the two never mix.
    pub scope: &'static str,
    /// How long a refresh token can be exchanged (each exchange starts a new period).
    pub refresh_ttl: Duration,
    /// How long a spent refresh token may be presented again for the same successor.
    pub grace: Duration,
    /// The server secret the successor key is derived from (at least 32 bytes).
    pub secret: SecretSlice<u8>,
    /// Whether each live family also keeps a live marker (`fam:{F}:live`, see the module docs),
    /// and the longest an access token of the family lives: the marker lives as long as the
    /// family or as that token, whichever is longer, so it never expires under a valid token.
    /// `Some` for the JWT backend's families with a denylist, whose check reads it; `None` for
    /// the opaque backend, whose tokens are keys of their own and vanish with their data.
    pub live_markers: Option<Duration>,
}

/// The names of the families' live markers, handed to the JWT denylist so that it checks the
/// key the families write (see the module docs).
#[derive(Debug, Clone)]
pub struct LiveMarkers {
    /// `<prefix><scope>:fam:`.
    family_prefix: String,
    /// How long a marker lives from its last write, seconds.
    ttl: u64,
}

impl LiveMarkers {
    /// The live marker of `family`: `<prefix><scope>:fam:{F}:live`, in the family's slot.
    pub fn key(&self, family: &str) -> String {
        let mut key = String::with_capacity(self.family_prefix.len() + family.len() + 7);
        key.push_str(&self.family_prefix);
        key.push('{');
        key.push_str(family);
        key.push_str("}:live");
        key
    }
}

/// Refresh-token families stored in Redis.
pub struct RedisFamilies {
    conn: Arc<RedisConnection>,
    keys: String,
    refresh_ttl: Duration,
    grace: Duration,
    successor_key: Hmac<Sha256>,
    attach: redis::Script,
    live: Option<LiveMarkers>,
}

/// A refresh token split into its family id and the token as a whole.
struct RefreshToken<'a> {
    family: &'a str,
    whole: &'a str,
}

impl<'a> RefreshToken<'a> {
    /// `F.secret`: 32 hex characters, a dot, 43 base64url characters. Anything else is rejected
    /// before Redis is asked.
    fn parse(token: &'a str) -> Option<Self> {
        let (family, secret) = token.split_once('.')?;
        let family_ok = family.len() == FAMILY_LEN
            && family
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok = secret.len() == SECRET_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (family_ok && secret_ok).then_some(Self {
            family,
            whole: token,
        })
    }
}

/// SHA-256 of a token, hex. Refresh tokens carry 256 random bits, so a fast hash is enough: there
/// is nothing to brute-force (unlike passwords, which get argon2id).
fn token_hash(token: &str) -> String {
    crate::token::hash(token)
}

fn field_str(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_u64(value: &Value) -> Option<u64> {
    field_str(value)?.parse().ok()
}

impl RedisFamilies {
    /// Families under `<prefix><scope>:`.
    pub fn new(conn: Arc<RedisConnection>, config: FamilyConfig) -> Self {
        // Domain separation: the successor key is derived from, but never equal to, the server
        // secret (which may also be the JWT signing key).
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(config.secret.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        derive.update(b"authlab refresh-token successor v1");
        let key = derive.finalize().into_bytes();
        let successor_key = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        let keys = format!("{}{}:", config.prefix, config.scope);
        let live = config.live_markers.map(|access_ttl| LiveMarkers {
            family_prefix: format!("{keys}fam:"),
            ttl: config.refresh_ttl.max(access_ttl).as_secs().max(1),
        });
        Self {
            conn,
            keys,
            refresh_ttl: config.refresh_ttl,
            grace: config.grace,
            successor_key,
            attach: redis::Script::new(ATTACH),
            live,
        }
    }

    /// The names of the live markers, if these families keep them.
    pub fn live_markers(&self) -> Option<&LiveMarkers> {
        self.live.as_ref()
    }

    /// The keys of the `EXCHANGE` script: the family's four, and its live marker if these
    /// families keep one.
    fn exchange_keys(&self, family: &str) -> Vec<String> {
        let mut keys = vec![
            self.family_key(family),
            self.spent_key(family),
            self.access_key(family),
            self.ended_key(family),
        ];
        keys.extend(self.live.as_ref().map(|live| live.key(family)));
        keys
    }

    pub(crate) fn family_key(&self, family: &str) -> String {
        format!("{}fam:{{{family}}}", self.keys)
    }

    pub(crate) fn spent_key(&self, family: &str) -> String {
        format!("{}fam:{{{family}}}:spent", self.keys)
    }

    pub(crate) fn access_key(&self, family: &str) -> String {
        format!("{}fam:{{{family}}}:acc", self.keys)
    }

    /// The tombstone of a family whose revocation has begun and not finished.
    pub(crate) fn ended_key(&self, family: &str) -> String {
        format!("{}fam:{{{family}}}:ended", self.keys)
    }

    /// Drops the registry's expired entries and `gone` (families with nothing left to do).
    async fn prune(&self, user_id: i64, gone: &[String]) -> Result<(), RedisBackendError> {
        let user_key = self.user_key(user_id);
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&user_key)
            .arg("-inf")
            .arg(SystemClock.now_unix())
            .ignore();
        if !gone.is_empty() {
            pipe.cmd("ZREM").arg(&user_key).arg(gone).ignore();
        }
        self.conn.pipeline(&pipe).await
    }

    pub(crate) fn user_key(&self, user_id: i64) -> String {
        format!("{}user:{{{user_id}}}:fams", self.keys)
    }

    /// The successor of `token`: same family, secret = HMAC(successor key, token).
    fn successor(&self, token: &RefreshToken<'_>) -> String {
        let mut mac = self.successor_key.clone();
        mac.update(token.whole.as_bytes());
        let secret = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{}.{secret}", token.family)
    }

    async fn run_script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, RedisBackendError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        self.conn.invoke(&invocation).await
    }

    /// Runs a script that ends credentials, confirmed where it will survive a failover before
    /// anybody is told it happened (see [`crate::WriteConfirmation`]). Sent as `EVAL` with its
    /// source, so that `WAIT` can follow it in the same pipeline on the same connection (a
    /// script cannot call `WAIT`, and `EVALSHA` would need a round trip to load it first); these
    /// writes are rare (logouts, rotations), so the few hundred bytes of source cost little.
    async fn run_confirmed(
        &self,
        source: &'static str,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, RedisBackendError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(source).arg(keys.len()).arg(keys).arg(args);
        // Every key of a script shares one slot: the first names it.
        let slot_key = keys.first().map(String::as_str).unwrap_or_default();
        self.conn.query_confirmed(slot_key, &eval).await
    }
}

impl RefreshFamilies for RedisFamilies {
    async fn start(
        &self,
        identity: &Identity,
        client: &ClientInfo,
    ) -> Result<NewFamily, AuthError> {
        let family = Builder::from_random_bytes(random::bytes())
            .into_uuid()
            .simple()
            .to_string();
        let secret: [u8; 32] = random::bytes();
        let token = format!("{family}.{}", URL_SAFE_NO_PAD.encode(secret));
        let now = SystemClock.now_unix();
        let ttl = self.refresh_ttl.as_secs().max(1);
        let user_key = self.user_key(identity.user_id);
        // Two pipelines, one per hash slot (the user's registry and the family are in different
        // slots), in this order: the registry entry first, so a family never exists that "log
        // out everywhere" cannot find. A logout-all between the two finds an id without a family
        // (and skips it): this login then simply happened after the logout-all.
        let mut registry = redis::pipe();
        // The registry: score = expiry, so entries are pruned by score as they are read.
        registry
            .cmd("ZADD")
            .arg(&user_key)
            .arg(now + ttl)
            .arg(&family)
            .ignore()
            .cmd("EXPIRE")
            .arg(&user_key)
            .arg(ttl)
            .arg("GT")
            .ignore()
            .cmd("EXPIRE")
            .arg(&user_key)
            .arg(ttl)
            .arg("NX")
            .ignore();
        let () = self.conn.pipeline(&registry).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(self.family_key(&family))
            .arg("uid")
            .arg(identity.user_id)
            .arg("name")
            .arg(&*identity.username)
            .arg("created")
            .arg(now)
            .arg("used")
            .arg(now)
            .arg("exp")
            .arg(now + ttl)
            .arg("ua")
            .arg(client.user_agent.as_deref().unwrap_or(""))
            .arg("refresh")
            .arg(token_hash(&token))
            .ignore()
            .cmd("EXPIRE")
            .arg(self.family_key(&family))
            .arg(ttl)
            .ignore();
        if let Some(live) = &self.live {
            // Written before any token of the family exists, in the family's slot: a token is
            // never checked before its marker.
            pipe.cmd("SET")
                .arg(live.key(&family))
                .arg(1)
                .arg("EX")
                .arg(live.ttl)
                .ignore();
        }
        let () = self.conn.pipeline(&pipe).await?;
        Ok(NewFamily {
            id: family,
            refresh_token: SecretString::from(token),
            refresh_ttl: self.refresh_ttl,
        })
    }

    async fn exchange(&self, refresh_token: &str) -> Result<Exchange, AuthError> {
        let token = RefreshToken::parse(refresh_token).ok_or(AuthError::Invalid)?;
        let successor = self.successor(&token);
        let now = SystemClock.now_unix();
        let ttl = self.refresh_ttl.as_secs().max(1);
        let mut args = vec![
            token_hash(token.whole),
            token_hash(&successor),
            now.to_string(),
            self.grace.as_secs().to_string(),
            ttl.to_string(),
        ];
        args.extend(self.live.as_ref().map(|live| live.ttl.to_string()));
        let reply = self
            .run_confirmed(EXCHANGE, &self.exchange_keys(token.family), &args)
            .await?;
        let Value::Array(parts) = reply else {
            return Err(AuthError::Invalid);
        };
        let outcome = parts.first().and_then(field_str).unwrap_or_default();
        let user_id: Option<i64> = parts
            .get(1)
            .and_then(field_str)
            .and_then(|s| s.parse().ok());
        let username = parts.get(2).and_then(field_str);
        match (outcome.as_str(), user_id, username) {
            ("rotated" | "grace", Some(user_id), Some(username)) => {
                if outcome == "rotated" {
                    let _: i64 = self
                        .conn
                        .query(
                            redis::cmd("ZADD")
                                .arg(self.user_key(user_id))
                                .arg("XX")
                                .arg(now + ttl)
                                .arg(token.family),
                        )
                        .await?;
                    let _: i64 = self
                        .conn
                        .query(redis::cmd("EXPIRE").arg(self.user_key(user_id)).arg(ttl))
                        .await?;
                }
                Ok(Exchange::Rotated(Rotated {
                    identity: Identity::new(user_id, username).in_session(token.family),
                    refresh_token: SecretString::from(successor),
                    refresh_ttl: self.refresh_ttl,
                }))
            }
            // Theft evidence. The caller ends the family: it knows what else hangs on it.
            ("reused", _, _) => Ok(Exchange::Reused {
                family: token.family.to_owned(),
            }),
            _ => Err(AuthError::Invalid),
        }
    }

    /// A read only, newest first: what a revocation reads before it ends anything must not be a
    /// write that could be held up (or land late) ahead of it. Expired entries are skipped here
    /// and pruned by `list` and by every finished revocation.
    async fn family_ids(&self, user_id: i64) -> Result<Vec<String>, AuthError> {
        let now = SystemClock.now_unix();
        Ok(self
            .conn
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.user_key(user_id))
                    .arg("+inf")
                    .arg(format!("({now}"))
                    .arg("BYSCORE")
                    .arg("REV"),
            )
            .await?)
    }

    async fn attach(&self, family: &str, access_id: &str, ttl: Duration) -> Result<(), AuthError> {
        let now = SystemClock.now_unix();
        let reply = self
            .run_script(
                &self.attach,
                &[self.family_key(family), self.access_key(family)],
                &[
                    now.to_string(),
                    (now + ttl.as_secs().max(1)).to_string(),
                    access_id.to_owned(),
                    self.refresh_ttl.as_secs().max(1).to_string(),
                ],
            )
            .await?;
        match reply {
            Value::Int(1) => Ok(()),
            // Revoked (or expired) between the exchange and now: the new token must not live.
            _ => Err(AuthError::Invalid),
        }
    }

    async fn revoke_family(&self, family: &str) -> Result<Option<RevokedFamily>, AuthError> {
        let reply = self
            .run_confirmed(
                REVOKE_FAMILY,
                &[
                    self.family_key(family),
                    self.spent_key(family),
                    self.access_key(family),
                    self.ended_key(family),
                ],
                &[SystemClock.now_unix().to_string()],
            )
            .await?;
        let Value::Array(parts) = reply else {
            return Ok(None);
        };
        let mut parts = parts.iter().filter_map(field_str);
        let Some(user_id) = parts.next().and_then(|s| s.parse::<i64>().ok()) else {
            return Ok(None);
        };
        let attached = parts.collect();
        Ok(Some(RevokedFamily { user_id, attached }))
    }

    async fn forget_revocation(
        &self,
        family: &str,
        ended: &RevokedFamily,
    ) -> Result<(), AuthError> {
        // The tombstone (one multi-key `DEL`, one slot) and the registry entry (another slot),
        // sent at once: both only forget. Not confirmed: losing either to a failover only brings
        // back a tombstone whose tokens are already gone, which the next revocation drops again.
        let mut tombstone = redis::cmd("DEL");
        tombstone
            .arg(self.ended_key(family))
            .arg(self.access_key(family))
            .arg(self.spent_key(family));
        let gone = [family.to_owned()];
        tokio::try_join!(
            self.conn.query::<i64>(&tombstone),
            self.prune(ended.user_id, &gone),
        )?;
        Ok(())
    }

    async fn unfinished_revocation(
        &self,
        refresh_token: &str,
    ) -> Result<Option<String>, AuthError> {
        let Some(token) = RefreshToken::parse(refresh_token) else {
            return Ok(None);
        };
        let ended: Option<String> = self
            .conn
            .query(
                redis::cmd("HGET")
                    .arg(self.ended_key(token.family))
                    .arg("refresh"),
            )
            .await?;
        let presented = token_hash(token.whole);
        Ok(ended
            .filter(|was_live| bool::from(presented.as_bytes().ct_eq(was_live.as_bytes())))
            .map(|_| token.family.to_owned()))
    }

    async fn list(&self, user_id: i64) -> Result<Vec<SessionInfo>, AuthError> {
        let ids = self.family_ids(user_id).await?;
        if ids.is_empty() {
            self.prune(user_id, &[]).await?;
            return Ok(Vec::new());
        }
        // One `HMGET` per family, sent at once: each family is in its own Cluster slot, so they
        // cannot share a pipeline.
        let reads = ids.iter().map(|id| {
            let mut read = redis::cmd("HMGET");
            read.arg(self.family_key(id))
                .arg("created")
                .arg("used")
                .arg("exp")
                .arg("ua");
            async move { self.conn.query::<Vec<Value>>(&read).await }
        });
        let rows = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mut live = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, row) in ids.into_iter().zip(rows) {
            match row.as_slice() {
                [created, used, exp, ua] if field_u64(created).is_some() => {
                    live.push(SessionInfo {
                        id,
                        created_at: field_u64(created).unwrap_or(0),
                        last_used_at: field_u64(used).unwrap_or(0),
                        expires_at: field_u64(exp).unwrap_or(0),
                        user_agent: field_str(ua).filter(|s| !s.is_empty()),
                    })
                }
                // The family's keys expired, or it was revoked: not listed.
                _ => missing.push(id),
            }
        }
        // A revoked family whose revocation is unfinished keeps its registry entry, so that a
        // retry or a logout-all still finds it; the others go. One `EXISTS` per family, sent at
        // once (each family is in its own slot).
        let checks = missing.iter().map(|id| {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(self.ended_key(id));
            async move { self.conn.query::<bool>(&exists).await }
        });
        let unfinished = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let gone: Vec<String> = missing
            .into_iter()
            .zip(unfinished)
            .filter_map(|(id, unfinished)| (!unfinished).then_some(id))
            .collect();
        self.prune(user_id, &gone).await?;
        live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(live)
    }

    async fn inspect(&self, refresh_token: &str) -> Result<Option<TokenInfo>, AuthError> {
        let Some(token) = RefreshToken::parse(refresh_token) else {
            return Ok(None);
        };
        let row: Vec<Option<String>> = self
            .conn
            .query(
                redis::cmd("HMGET")
                    .arg(self.family_key(token.family))
                    .arg("refresh")
                    .arg("uid")
                    .arg("name")
                    .arg("used")
                    .arg("exp"),
            )
            .await?;
        let [Some(current), Some(uid), Some(name), Some(used), Some(exp)] = row.as_slice() else {
            return Ok(None);
        };
        let presented = token_hash(token.whole);
        if !bool::from(presented.as_bytes().ct_eq(current.as_bytes())) {
            return Ok(None);
        }
        let (Ok(user_id), Ok(expires_at)) = (uid.parse(), exp.parse()) else {
            return Ok(None);
        };
        Ok(Some(TokenInfo {
            kind: TokenKind::Refresh,
            identity: Identity::new(user_id, name.as_str()).in_session(token.family),
            issued_at: used.parse().ok(),
            expires_at,
        }))
    }
}

/// Whether `token` has the shape of a refresh token (family id, dot, secret).
pub fn looks_like_refresh_token(token: &str) -> bool {
    RefreshToken::parse(token).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_parse_strictly() {
        let family = uuid::Uuid::new_v4().simple().to_string();
        let good = format!("{family}.{}", "A".repeat(43));
        assert!(looks_like_refresh_token(&good));
        for bad in [
            String::new(),
            family.clone(),
            format!("{family}."),
            format!("{}.{}", family.to_uppercase(), "A".repeat(43)),
            format!("{family}.{}", "A".repeat(42)),
            format!("{family}.{}=", "A".repeat(42)),
            format!("{family}x.{}", "A".repeat(43)),
        ] {
            assert!(!looks_like_refresh_token(&bad), "{bad}");
        }
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
