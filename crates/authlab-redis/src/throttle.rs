//! Attempt counters for login throttling, shared by every instance that uses the same Redis.
//!
//! A counter is one Redis hash per subject (an account name's hash, a client address), with two
//! fields: `failed` (guesses that turned out wrong) and `pending` (guesses being checked right
//! now). It lives for a fixed window from its first counted attempt: its `PEXPIRE` is set once,
//! so the window never slides, and when it runs out Redis forgets the counter.
//!
//! Every operation is one Lua script over exactly one key, so it is atomic and, with the key's
//! own `{...}` hash tag, always runs on one Redis Cluster slot:
//! - **reserve** (before a password is checked): refused while `failed` has reached the limit
//!   (*blocked*, until the window ends), or while `failed + pending` has (*busy*: that many
//!   guesses are being checked at this moment); otherwise `pending += 1`. Reserving before the
//!   check is what makes the limit exact: a thousand concurrent wrong guesses cannot all pass a
//!   check that only reads the count, because each one holds a slot until it is settled.
//! - **settle**: `pending -= 1`, and `failed += 1` if the guess was wrong. A right guess leaves
//!   `failed` as it was (the window is fixed: a success does not wipe earlier failures).
//! - **hit** (registrations): refused at the limit, otherwise `failed += 1` at once.
//!
//! The server decides what a subject is and hashes account names before they get here (no
//! personal data in key names); this module only builds keys and runs the script.

use std::sync::Arc;
use std::time::Duration;

use crate::{RedisBackendError, RedisConnection};

/// The counter operations. KEYS[1]: the counter. ARGV: operation, limit, window (ms).
/// Returns `{verdict, pttl}`: verdict 1 allowed, 0 blocked (pttl = what is left of the window),
/// 2 busy (the limit is taken up by guesses still being checked).
pub(crate) const COUNTER: &str = r#"
local key, op = KEYS[1], ARGV[1]
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local failed = tonumber(redis.call('HGET', key, 'failed') or '0')
local pending = tonumber(redis.call('HGET', key, 'pending') or '0')
if op == 'reserve' or op == 'hit' then
  if failed >= limit then return {0, redis.call('PTTL', key)} end
  if op == 'reserve' then
    if failed + pending >= limit then return {2, redis.call('PTTL', key)} end
    redis.call('HINCRBY', key, 'pending', 1)
  else
    redis.call('HINCRBY', key, 'failed', 1)
  end
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
  return {1, redis.call('PTTL', key)}
end
if pending > 0 then
  redis.call('HINCRBY', key, 'pending', -1)
  pending = pending - 1
end
if op == 'fail' then
  redis.call('HINCRBY', key, 'failed', 1)
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
elseif failed == 0 and pending == 0 then
  -- Nothing wrong happened: the window starts with the first failure, not with this success.
  redis.call('DEL', key)
end
return {1, redis.call('PTTL', key)}
"#;

/// What a counter said about one more attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted (reserved or hit): go ahead.
    Allowed,
    /// The limit of failures is reached: refused until the window ends, in `retry_after`.
    Blocked {
        /// What is left of the window.
        retry_after: Duration,
    },
    /// Failures and guesses still being checked together fill the limit: refused for now.
    Busy,
}

/// Attempt counters in Redis, under `<prefix>throttle:`.
pub struct AttemptCounters {
    conn: Arc<RedisConnection>,
    script: redis::Script,
    keys: String,
}

impl AttemptCounters {
    /// The counters, over a (possibly shared) connection.
    pub fn new(conn: Arc<RedisConnection>, prefix: &str) -> Self {
        Self {
            conn,
            script: redis::Script::new(COUNTER),
            keys: format!("{prefix}throttle:"),
        }
    }

    /// The key of one subject: `<prefix>throttle:<kind>:{<id>}`. The braces make `id` the hash
    /// tag, so each counter picks its own Cluster slot and the script touches only that one.
    /// `id` must not contain braces (the server passes hex hashes and IP addresses).
    pub fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{{{id}}}", self.keys)
    }

    /// Reserves a guess against `key` before it is checked; settle it with [`Self::settle`].
    pub async fn reserve(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Verdict, RedisBackendError> {
        self.run(key, "reserve", limit, window).await
    }

    /// Settles a reserved guess: `failed` says whether it was wrong.
    pub async fn settle(
        &self,
        key: &str,
        failed: bool,
        window: Duration,
    ) -> Result<(), RedisBackendError> {
        let op = if failed { "fail" } else { "ok" };
        self.run(key, op, 0, window).await.map(|_| ())
    }

    /// Counts an attempt at once (no check to wait for), refusing it at the limit.
    pub async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Verdict, RedisBackendError> {
        self.run(key, "hit", limit, window).await
    }

    async fn run(
        &self,
        key: &str,
        op: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Verdict, RedisBackendError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(key)
            .arg(op)
            .arg(limit)
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1));
        let (verdict, pttl): (i64, i64) = self.conn.invoke(&invocation).await?;
        Ok(match verdict {
            1 => Verdict::Allowed,
            2 => Verdict::Busy,
            _ => Verdict::Blocked {
                // PTTL is -1/-2 only for a key without expiry or gone: then the window is over.
                retry_after: Duration::from_millis(pttl.max(0).unsigned_abs()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisTimeouts;

    fn counters() -> AttemptCounters {
        let url = std::env::var("AUTHLAB_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let conn = match RedisConnection::new(&url, RedisTimeouts::default()) {
            Ok(conn) => Arc::new(conn),
            Err(err) => panic!("Redis URL: {err}"),
        };
        let prefix = format!("authlab-test:{}:", uuid::Uuid::new_v4().simple());
        AttemptCounters::new(conn, &prefix)
    }

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn keys_carry_their_subject_as_the_hash_tag() {
        let conn = match RedisConnection::new("redis://127.0.0.1:6379", RedisTimeouts::default()) {
            Ok(conn) => Arc::new(conn),
            Err(err) => panic!("{err}"),
        };
        let counters = AttemptCounters::new(conn, "app:");
        assert_eq!(counters.key("ip", "10.0.0.1"), "app:throttle:ip:{10.0.0.1}");
    }

    #[tokio::test]
    async fn failures_block_at_the_limit_and_successes_do_not_count() {
        let counters = counters();
        let key = counters.key("name", "abc");
        for _ in 0..2 {
            assert_eq!(
                counters.reserve(&key, 3, WINDOW).await.ok(),
                Some(Verdict::Allowed)
            );
            assert!(counters.settle(&key, true, WINDOW).await.is_ok());
        }
        // A right guess is refunded: still two failures.
        assert_eq!(
            counters.reserve(&key, 3, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
        assert!(counters.settle(&key, false, WINDOW).await.is_ok());
        assert_eq!(
            counters.reserve(&key, 3, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
        assert!(counters.settle(&key, true, WINDOW).await.is_ok());
        match counters.reserve(&key, 3, WINDOW).await {
            Ok(Verdict::Blocked { retry_after }) => {
                assert!(
                    retry_after <= WINDOW && retry_after > Duration::ZERO,
                    "{retry_after:?}"
                );
            }
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn guesses_in_flight_hold_their_place_until_settled() {
        let counters = counters();
        let key = counters.key("name", "inflight");
        assert_eq!(
            counters.reserve(&key, 2, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
        assert_eq!(
            counters.reserve(&key, 2, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
        assert_eq!(
            counters.reserve(&key, 2, WINDOW).await.ok(),
            Some(Verdict::Busy)
        );
        assert!(counters.settle(&key, false, WINDOW).await.is_ok());
        assert_eq!(
            counters.reserve(&key, 2, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
    }

    #[tokio::test]
    async fn hits_count_at_once() {
        let counters = counters();
        let key = counters.key("register", "10.0.0.1");
        assert_eq!(
            counters.hit(&key, 2, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
        assert_eq!(
            counters.hit(&key, 2, WINDOW).await.ok(),
            Some(Verdict::Allowed)
        );
        assert!(matches!(
            counters.hit(&key, 2, WINDOW).await,
            Ok(Verdict::Blocked { .. })
        ));
    }
}
