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
pub trait Denylist: Send + Sync + 'static {
    /// Remembers a token (`jti`), or with `None` a whole family, as revoked for `ttl`.
    fn deny(
        &self,
        family: &str,
        jti: Option<&str>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Answers whether the token `jti` of `family`, or the family itself, has been revoked.
    fn is_denied(
        &self,
        family: &str,
        jti: &str,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send;
}
