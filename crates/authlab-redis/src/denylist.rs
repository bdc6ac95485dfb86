//! The JWT denylist in Redis, and the two markers that keep a logout from un-happening when
//! Redis, or one shard of a Redis Cluster, loses its data.
//!
//! # Keys
//! - `<prefix>deny:{F}`: the whole family `F` is revoked; `<prefix>deny:{F}:<jti>`: one token.
//!   Both expire when the tokens they name would have. The shared hash tag puts them in one
//!   Cluster slot, so one `EXISTS` checks both.
//! - `<prefix>jwt:fam:{F}:live`: the family's *live marker*, written by the family store (see
//!   `families`) with stored refresh tokens, at login and at each rotation. Same hash tag, same
//!   slot, same `EXISTS`.
//! - `<prefix>epoch`: Unix seconds from which this Redis vouches for its denylist. No TTL.
//!
//! # The epoch
//! A Redis that restarts without persistence, or is flushed, forgets every denylist entry, and
//! a logged-out token whose `exp` has not passed would be accepted again. The epoch marker goes
//! with the same data: when it is missing, authlab recreates it as *now* (`SET NX`, then read
//! back, so concurrent instances agree on one value) and refuses every token issued before it or
//! in its second (`iat` counts whole seconds). What the denylist forgot can then never come back;
//! everybody logs in again instead. A login in the epoch's own second waits for the next one
//! before its token is signed (see `authlab_core::Denylist::epoch`), so a fresh token is never
//! refused; this happens only in the second after the marker was (re)created.
//!
//! # The live marker: one shard's loss on a Cluster
//! On a Redis Cluster the epoch is one key on one shard, while the deny keys are spread over
//! all of them by their family's hash tag. A shard that loses its data (a master restarted
//! empty that kept its slots, a `FLUSHALL` on one node) forgets its deny keys without touching
//! the epoch's shard, and the logged-out tokens whose keys lived there would be accepted again.
//! An epoch per shard would have to follow slots as they move; a marker per *family* goes with
//! the family's slot by construction. So a token is accepted only if its family's live marker
//! exists, in the same `EXISTS` as its deny keys:
//! - a shard that loses its data loses its families' markers with their deny keys: their tokens
//!   are refused (fail closed: their users log in again, and their refresh tokens are gone with
//!   their families anyway), while the families of the other shards keep working;
//! - ending a family does not delete its marker (the family's deny key refuses its tokens), and
//!   the check does not read the family's tombstone either, although both would fit in the same
//!   `EXISTS`: either would refuse the family's tokens from the revocation's first step, and the
//!   logout a client retries after a `503` must first verify its token, so the retry would be
//!   refused (`401`) instead of finishing the revocation and answering `204` (see
//!   `authlab_core::families`, "Ending a family is idempotent"). A revocation interrupted after
//!   its first step is refused from the retry's `204` on, as before;
//! - the marker lives as long as the family or its newest access token, whichever is longer, so
//!   it never expires under a valid token. A family that predates the markers gains one at its
//!   next rotation; until then its access tokens are refused (clients refresh, or log in again).
//!
//! With stateless refresh tokens (`--jwt-refresh stateless`) there is no family store to write
//! the marker, so it is not checked, and a Cluster shard's loss is covered by the epoch alone:
//! run every master with a replica, or with persistence.
//!
//! # What a check costs Redis
//! Uncached, per request: one `EXISTS` naming five keys on one slot (the token's and the
//! family's entries, and the live marker three times, see `LIVE_WEIGHT`; two keys without
//! markers), plus, once a second per worker thread, a `GET` of the epoch (and again after a
//! reconnect). Cached: nothing while the cache holds the four answers and is trusted; a miss
//! reads each missing answer (`GET`, `PTTL` and the cache's dataset mark) on the tracking
//! connection. Login adds one `SET` to the family's pipeline (no round trip); a rotation or a
//! revocation adds one key to a script it runs anyway.
//!
//! # The hot path stays one `EXISTS`
//! The epoch key is not in the family's slot, so it cannot join the `EXISTS` in a Cluster; and
//! reading it on every request would add a command per request for a value that changes only
//! after a disaster. Instead each thread keeps the epoch it last read, with the id of the
//! connection it read it on and when:
//! - Redis drops its connections when it restarts, so an `EXISTS` answered on the connection that
//!   read the epoch was answered by the same Redis process, with no restart in between. An
//!   `EXISTS` answered on another connection (a reconnect) is judged only after the epoch has been
//!   read again on it, *after* the `EXISTS`: any loss before the `EXISTS` shows in that read.
//! - A view older than [`EPOCH_REFRESH`] is never used: the epoch is then read again right after
//!   the `EXISTS` (a second command: the marker and the entries are in different Cluster slots,
//!   so they may not share a pipeline). This bounds what no connection notices (a `FLUSHALL`, a
//!   `DEL` of the marker, a proxy that hides a restart) to one second.
//!
//! On a Redis Cluster the connection id names the cluster connection, which outlives a node's
//! failover or restart, and the epoch lives on one shard while the entries are spread over all
//! of them: that is what the live marker covers. A failover promotes a replica with the data it
//! had (a logout lost to asynchronous replication is the write confirmation's business, not the
//! markers').
//! - Nothing is judged without a fresh epoch: if it cannot be read, the request answers 503.
//!
//! # Cached (`--jwt-denylist cached`)
//! With a [`TrackedCache`] the four answers a check needs (the token's entry, its family's
//! entry, the live marker, the epoch) come from process memory, "not listed" and "no marker"
//! included: Redis tracks keys that were read while missing too, and pushes an invalidation when
//! one is written. A missing marker is kept as what it is, a refusal, never as "fine"; a marker
//! deleted or flushed is an invalidation like a deny key written. A restart or a lost connection
//! empties the cache (no connection-id bookkeeping needed), a `FLUSHALL` or a deleted epoch is an
//! invalidation, and while the cache cannot vouch for itself (no recent heartbeat) the answers
//! are read from Redis, which fails closed (503) when it cannot answer.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authlab_core::{AuthError, Clock, Denylist, SystemClock};
use thread_local::ThreadLocal;

use crate::{ConnectionId, LiveMarkers, RedisBackendError, RedisConnection, TrackedCache};

/// The longest a thread judges tokens by an epoch it read earlier on the same connection.
pub const EPOCH_REFRESH: Duration = Duration::from_secs(1);

/// The longest an issuer waits for its clock to leave the epoch's second: the one second after
/// the epoch was created, plus a little clock difference between instances.
const MAX_EPOCH_WAIT: Duration = Duration::from_millis(2000);

/// Revoked JWTs as Redis keys that expire when the tokens would have, with the epoch marker
/// (see the module docs).
pub struct RedisDenylist {
    conn: Arc<RedisConnection>,
    deny_prefix: String,
    epoch_key: String,
    /// Each thread's last reading of the epoch.
    views: ThreadLocal<Cell<Option<EpochView>>>,
    /// Answers kept in process, kept current by Redis (`--jwt-denylist cached`).
    cache: Option<TrackedCache>,
    /// The families' live markers, checked with the deny keys (see the module docs).
    live: Option<LiveMarkers>,
}

/// How many times the uncached `EXISTS` names the live marker. `EXISTS` counts a key once per
/// mention, so with the marker named three times and the two deny keys once each, the count
/// tells them apart: a live, unlisted token counts exactly 3; a listed one 4 or 5; a missing
/// marker at most 2.
const LIVE_WEIGHT: i64 = 3;

#[cfg(test)]
impl RedisDenylist {
    /// The epoch marker's key, for the slot-rule test.
    pub(crate) fn epoch_key(&self) -> &str {
        &self.epoch_key
    }
}

/// One reading of the epoch marker.
#[derive(Debug, Clone, Copy)]
struct EpochView {
    /// The epoch, Unix seconds.
    epoch: u64,
    /// When the command that read it was sent.
    read_at: Instant,
    /// The connection that answered it.
    connection: ConnectionId,
}

impl RedisDenylist {
    /// The denylist, over a (possibly shared) connection, under `<prefix>deny:`, with its epoch
    /// at `<prefix>epoch`.
    pub fn new(conn: Arc<RedisConnection>, prefix: &str) -> Self {
        Self {
            conn,
            deny_prefix: format!("{prefix}deny:"),
            epoch_key: format!("{prefix}epoch"),
            views: ThreadLocal::new(),
            cache: None,
            live: None,
        }
    }

    /// Also refuses a token whose family's live marker is missing (see the module docs). Only
    /// for families that write the marker (`FamilyConfig::live_markers`, stored refresh tokens):
    /// with stateless refresh tokens nothing writes it, and every token would be refused.
    pub fn with_live_markers(mut self, markers: LiveMarkers) -> Self {
        self.live = Some(markers);
        self
    }

    /// Keeps the denylist's answers in `cache` (see the module docs).
    pub fn with_cache(mut self, cache: TrackedCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The cache's counters, if the cache is on.
    pub fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.cache.as_ref().map(TrackedCache::stats)
    }

    /// The check, answered from the cache: token entry, family entry and epoch, read together
    /// (one round trip on a miss: the tracking connection pipelines them).
    async fn is_denied_cached(
        &self,
        cache: &TrackedCache,
        family: &str,
        jti: &str,
        issued_at: u64,
    ) -> Result<bool, RedisBackendError> {
        let (token_key, family_key) = (self.token_key(family, jti), self.family_key(family));
        let live_key = self.live.as_ref().map(|live| live.key(family));
        let live = async {
            match &live_key {
                Some(key) => cache.get(key, true).await.map(|value| value.is_some()),
                None => Ok(true),
            }
        };
        let (token, family, epoch, live) = tokio::try_join!(
            cache.get(&token_key, true),
            cache.get(&family_key, true),
            cache.get(&self.epoch_key, true),
            live,
        )?;
        let epoch = match epoch {
            Some(epoch) => epoch.parse::<u64>().map_err(|_| {
                RedisBackendError::Command(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "the denylist's epoch is not a number",
                )))
            })?,
            None => self.recreate().await?.epoch,
        };
        Ok(!live || token.is_some() || family.is_some() || issued_at <= epoch)
    }

    /// How long [`RedisDenylist::family_key`] is: the start of every token key of the family.
    fn family_key_len(&self, family: &str) -> usize {
        self.deny_prefix.len() + family.len() + 2
    }

    fn push_family_key(&self, key: &mut String, family: &str) {
        key.push_str(&self.deny_prefix);
        key.push('{');
        key.push_str(family);
        key.push('}');
    }

    pub(crate) fn family_key(&self, family: &str) -> String {
        let mut key = String::with_capacity(self.family_key_len(family));
        self.push_family_key(&mut key, family);
        key
    }

    pub(crate) fn token_key(&self, family: &str, jti: &str) -> String {
        let mut key = String::with_capacity(self.family_key_len(family) + 1 + jti.len());
        self.push_family_key(&mut key, family);
        key.push(':');
        key.push_str(jti);
        key
    }

    /// This thread's last reading, if it is recent enough to judge by.
    fn fresh_view(&self) -> Option<EpochView> {
        self.views
            .get_or_default()
            .get()
            .filter(|view| view.read_at.elapsed() < EPOCH_REFRESH)
    }

    fn remember(&self, view: EpochView) {
        self.views.get_or_default().set(Some(view));
    }

    /// The epoch as read by a command sent at `read_at` on `connection`; a missing marker is
    /// recreated first.
    async fn settle(
        &self,
        read: Option<u64>,
        read_at: Instant,
        connection: ConnectionId,
    ) -> Result<u64, RedisBackendError> {
        let view = match read {
            Some(epoch) => EpochView {
                epoch,
                read_at,
                connection,
            },
            None => self.recreate().await?,
        };
        self.remember(view);
        Ok(view.epoch)
    }

    /// Reads the epoch (one `GET`), recreating it if it is missing.
    async fn read_epoch(&self) -> Result<u64, RedisBackendError> {
        let read_at = Instant::now();
        let (epoch, connection): (Option<u64>, _) = self
            .conn
            .query_traced(redis::cmd("GET").arg(&self.epoch_key))
            .await?;
        self.settle(epoch, read_at, connection).await
    }

    /// The marker is missing: Redis is new, or lost its data. Every instance that notices races
    /// to write *now* with `SET NX` (only the first write lands, so none moves it again), and
    /// all of them read back the one value that won.
    async fn recreate(&self) -> Result<EpochView, RedisBackendError> {
        let now = SystemClock.now_unix();
        let read_at = Instant::now();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.epoch_key)
            .arg(now)
            .arg("NX")
            .cmd("GET")
            .arg(&self.epoch_key);
        let ((created, epoch), connection): ((Option<String>, Option<u64>), _) =
            self.conn.pipeline_traced(&pipe).await?;
        // `SET NX` then `GET` on one connection: the key exists at the `GET` unless something
        // deleted it in between; judging nothing is the safe answer then.
        let epoch = epoch.ok_or(RedisBackendError::EpochVanished)?;
        if created.is_some() {
            tracing::warn!(
                epoch,
                "Redis had no epoch marker (a first start, or Redis lost its data): every JWT \
                 issued before it is refused, and users log in again"
            );
        }
        Ok(EpochView {
            epoch,
            read_at,
            connection,
        })
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
        // Confirmed where it survives a failover: an entry lost with a dying master would let a
        // logged-out token through again.
        let _: String = self
            .conn
            .query_confirmed(
                &key,
                redis::cmd("SET").arg(&key).arg(1).arg("EX").arg(seconds),
            )
            .await?;
        // Our own cache forgets "not listed" now, without waiting for Redis's push.
        if let Some(cache) = &self.cache {
            cache.forget(&key);
        }
        Ok(())
    }

    async fn is_denied(&self, family: &str, jti: &str, issued_at: u64) -> Result<bool, AuthError> {
        // Every path that talks to Redis is boxed, so that this future (and the verify and
        // handler futures that hold it inline) stays small; only a cached answer is served
        // without one. Why it matters: `TrackedCache::peek`.
        if let Some(cache) = &self.cache {
            if let Some(denied) = self.is_denied_from_memory(cache, family, jti, issued_at) {
                return Ok(denied);
            }
            return Ok(Box::pin(self.is_denied_cached(cache, family, jti, issued_at)).await?);
        }
        Box::pin(self.is_denied_uncached(family, jti, issued_at)).await
    }

    async fn epoch(&self) -> Result<Option<u64>, AuthError> {
        Box::pin(self.current_epoch()).await
    }
}

impl RedisDenylist {
    /// The cached check when the cache holds all three answers (token entry, family entry,
    /// epoch) and is trusted: no future, no Redis. `None` sends the caller to Redis.
    fn is_denied_from_memory(
        &self,
        cache: &TrackedCache,
        family: &str,
        jti: &str,
        issued_at: u64,
    ) -> Option<bool> {
        // The family's key is the start of the token's: one string serves both.
        let token_key = self.token_key(family, jti);
        let family_key = token_key.get(..self.family_key_len(family))?;
        let (token, family_entry, epoch, live) = match &self.live {
            Some(markers) => {
                let live_key = markers.key(family);
                let [token, family_entry, epoch, live] =
                    cache.peek_all([&token_key, family_key, &self.epoch_key, &live_key])?;
                (token, family_entry, epoch, live.is_some())
            }
            None => {
                let [token, family_entry, epoch] =
                    cache.peek_all([&token_key, family_key, &self.epoch_key])?;
                (token, family_entry, epoch, true)
            }
        };
        let epoch = epoch?.parse::<u64>().ok()?;
        cache.record_hits(if self.live.is_some() { 4 } else { 3 });
        Some(!live || token.is_some() || family_entry.is_some() || issued_at <= epoch)
    }

    /// The uncached check: one `EXISTS` (and, once a second per thread, the epoch).
    async fn is_denied_uncached(
        &self,
        family: &str,
        jti: &str,
        issued_at: u64,
    ) -> Result<bool, AuthError> {
        let mut exists = redis::cmd("EXISTS");
        exists
            .arg(self.token_key(family, jti))
            .arg(self.family_key(family));
        // The live marker, named `LIVE_WEIGHT` times in the same command (same slot).
        if let Some(live) = &self.live {
            let key = live.key(family);
            for _ in 0..LIVE_WEIGHT {
                exists.arg(&key);
            }
        }
        let judge = |found: i64| match self.live {
            // Listed, or no marker: refused.
            Some(_) => found != LIVE_WEIGHT,
            None => found > 0,
        };
        let (listed, epoch) = match self.fresh_view() {
            // The usual case: one `EXISTS`, judged by the epoch this thread read on the same
            // connection less than a second ago.
            Some(view) => {
                let (found, connection): (i64, _) = self.conn.query_traced(&exists).await?;
                let epoch = if connection == view.connection {
                    view.epoch
                } else {
                    // A new connection since the epoch was read (Redis may have restarted):
                    // read it again, after the `EXISTS`, before trusting the answer.
                    self.read_epoch().await?
                };
                (judge(found), epoch)
            }
            // Once a second per thread: the epoch is read again, after the `EXISTS`. Not in its
            // pipeline: the epoch and the entries sit in different Cluster slots.
            None => {
                let (found, _): (i64, _) = self.conn.query_traced(&exists).await?;
                (judge(found), self.read_epoch().await?)
            }
        };
        // Issued before the epoch, or in its second (`iat` counts whole seconds): this Redis
        // cannot know whether it was revoked.
        Ok(listed || issued_at <= epoch)
    }

    async fn current_epoch(&self) -> Result<Option<u64>, AuthError> {
        let epoch = match self.fresh_view() {
            Some(view) => view.epoch,
            None => self.read_epoch().await?,
        };
        // A token of the epoch's own second would be refused (see `is_denied`): wait for the next
        // one. That happens only in the second after the marker was created; a clock further
        // behind the epoch than that is a clock problem, answered 503 rather than waited out.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let next_second = Duration::from_secs(epoch.saturating_add(1));
        if let Some(wait) = next_second.checked_sub(now) {
            if wait > MAX_EPOCH_WAIT {
                return Err(RedisBackendError::EpochAhead {
                    epoch,
                    now: now.as_secs(),
                }
                .into());
            }
            tokio::time::sleep(wait).await;
        }
        Ok(Some(epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisTimeouts;

    #[test]
    fn a_family_key_is_the_start_of_each_of_its_token_keys() {
        let conn = RedisConnection::new("redis://127.0.0.1:1", RedisTimeouts::default()).unwrap();
        let denylist = RedisDenylist::new(Arc::new(conn), "p:");
        let family = denylist.family_key("f00d");
        let token = denylist.token_key("f00d", "j-1");
        assert_eq!(family, "p:deny:{f00d}");
        assert_eq!(token, "p:deny:{f00d}:j-1");
        assert_eq!(denylist.family_key_len("f00d"), family.len());
        assert_eq!(token.get(..family.len()), Some(family.as_str()));
    }
}
