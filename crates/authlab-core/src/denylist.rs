//! Revoked JWTs: the one store a stateless backend needs once it wants revocation.

use std::future::Future;
use std::time::Duration;

use crate::AuthError;

/// Revoked JWTs, remembered only as long as the tokens they name would have lived.
///
/// A stateless credential cannot be recalled; the only way to reject one before it expires is to
/// look it up somewhere on every request. This trait names that lookup, so the JWT backend can
/// offer it without knowing that the set lives in Redis. Entries are per token (`jti`) or per
/// token family (every access token issued from one login), and one check covers both.
///
/// # The epoch: a store that forgets must not un-revoke
/// A denylist that loses its entries (a Redis restarted without persistence, a `FLUSHALL`) would
/// silently accept every token it had refused. So a store that can forget keeps an *epoch*: the
/// second (Unix time) from which it vouches for its memory. When it finds its memory gone, it
/// moves the epoch to *now*, and [`Denylist::is_denied`] refuses every token issued before it or
/// within that second (`iat` counts whole seconds, so a token of the epoch's own second may be
/// older than the loss): nothing the store forgot can come back, at the price of everyone logging
/// in again. The issuer asks for [`Denylist::epoch`] before signing, which returns only once the
/// clock has left the epoch's second, so a token issued now is dated after the epoch and is not
/// refused as older than the store's memory.
/// A store that cannot forget (the in-memory one in tests) keeps the default: no epoch.
pub trait Denylist: Send + Sync + 'static {
    /// Remembers a token (`jti`), or with `None` a whole family, as revoked for `ttl`.
    fn deny(
        &self,
        family: &str,
        jti: Option<&str>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Answers whether the token `jti` of `family` must be refused as revoked: the token or its
    /// family is on the list, or it was issued (`issued_at`, Unix seconds) at or before the
    /// store's epoch, so the store cannot know whether it was revoked. One check, on every request.
    fn is_denied(
        &self,
        family: &str,
        jti: &str,
        issued_at: u64,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;

    /// The store's epoch (Unix seconds), created as now if it is missing; `None` for a store that
    /// cannot lose its memory. It returns only once the clock has left the epoch's second (a wait
    /// of at most a second, right after the epoch was created), so that a token signed next is
    /// dated after it. [`AuthError::Unavailable`] if the store cannot say, or if this machine's
    /// clock is so far behind the epoch that waiting would not help.
    fn epoch(&self) -> impl Future<Output = Result<Option<u64>, AuthError>> + Send {
        async { Ok(None) }
    }
}
