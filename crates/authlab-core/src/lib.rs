//! The one question every authlab backend answers: *given this credential, who is it?*
//!
//! authlab compares three ways of answering it (server-side sessions, opaque tokens in Redis and
//! signed JWTs). So that the differences we measure come from the backends alone, everything they
//! share lives here, in a crate that knows nothing of HTTP, Redis, SQL or any one backend:
//!
//! - [`Authenticator`]: issue a credential at login, verify one on every request (the hot path),
//!   revoke one at logout;
//! - [`Identity`]: what a verified credential tells the application;
//! - [`AuthError`]: why a credential was not accepted, kept apart from "the backend is down";
//! - [`Denylist`]: the small store a stateless backend needs once it wants revocation;
//! - [`Clock`]: time as a dependency, so expiry is tested without sleeping.
//!
//! # Layout
//! Dependencies point one way: the server crate depends on the backends, the backends on this crate.
//! A backend never imports another backend, and none of them sees a request or a status code: the
//! server decides how a credential travels (cookie or `Authorization` header) and maps
//! [`AuthError`] to HTTP in exactly one place.
#![deny(missing_docs)]

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

/// Who a credential belongs to: the answer `verify` gives on every authenticated request.
///
/// The user name is an `Arc<str>` because the session backend hands the same identity out on every
/// request: cloning it is a reference-count increment, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's id in the user store (stable across renames, unlike the name).
    pub user_id: i64,
    /// The user's login name, carried so that `/me` needs no second lookup.
    pub username: Arc<str>,
}

impl Identity {
    /// Builds an identity from an id and a name.
    pub fn new(user_id: i64, username: impl Into<Arc<str>>) -> Self {
        Self {
            user_id,
            username: username.into(),
        }
    }
}

/// A credential freshly issued at login, for the transport to hand to the client.
///
/// The credential is a [`SecretString`] so that it cannot end up in a log by way of `Debug`.
pub struct Issued {
    /// The value the client presents from now on (a session id, a UUID, a JWT).
    pub credential: SecretString,
    /// How long the credential stays valid if nothing else happens to it.
    pub expires_in: Duration,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("credential", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a credential was not accepted.
///
/// The variants stay distinct because clients act on them differently: `Expired` means "refresh or
/// log in again", `Invalid` means "this was never ours" (a forgery, a typo, a token for another
/// server), `Revoked` means "it was ours and somebody ended it", and `Unavailable` means "try again
/// later": that one is the server's fault, never the client's, and maps to 503, not 401.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no credential at all.
    #[error("no credential was presented")]
    Missing,
    /// The credential is malformed, forged, unknown, or was issued by somebody else.
    #[error("the credential is not valid")]
    Invalid,
    /// The credential was genuine but its lifetime is over.
    #[error("the credential has expired")]
    Expired,
    /// The credential was genuine but has been revoked (logged out).
    #[error("the credential has been revoked")]
    Revoked,
    /// The store the backend depends on could not answer; the credential was not judged at all.
    #[error("the authentication backend is unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
}

impl AuthError {
    /// Wraps a store failure (a Redis error, a timeout) as [`AuthError::Unavailable`].
    pub fn unavailable(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(source))
    }
}

/// One way of turning a login into a credential and a credential back into an [`Identity`].
///
/// The server is generic over this trait, so one set of handlers serves every backend and the
/// compiler dispatches `verify` statically on the hot path. The futures are `Send` so a backend can
/// be driven from any runtime.
///
/// A backend decides what its credential looks like and where its state lives; it never decides how
/// the credential travels (cookie or header): that is the server's job.
///
/// # Example
/// The smallest honest implementation: credentials are user ids written in decimal, accepted forever
/// and never revocable. (It is a lesson in what *not* to deploy: anyone can claim any id.)
///
/// ```
/// use std::time::Duration;
/// use authlab_core::{AuthError, Authenticator, Identity, Issued};
///
/// struct TrustMe;
///
/// impl Authenticator for TrustMe {
///     async fn issue(&self, identity: &Identity) -> Result<Issued, AuthError> {
///         Ok(Issued {
///             credential: identity.user_id.to_string().into(),
///             expires_in: Duration::MAX,
///         })
///     }
///     async fn verify(&self, credential: &str) -> Result<Identity, AuthError> {
///         let user_id = credential.parse().map_err(|_| AuthError::Invalid)?;
///         Ok(Identity::new(user_id, "somebody"))
///     }
///     async fn revoke(&self, _credential: &str) -> Result<(), AuthError> {
///         Err(AuthError::Invalid) // nothing to revoke: the credential is the claim itself
///     }
/// }
///
/// # tokio_test_block_on(async {
/// let who = TrustMe.verify("42").await.unwrap();
/// assert_eq!(who.user_id, 42);
/// assert!(matches!(TrustMe.verify("not a number").await, Err(AuthError::Invalid)));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // a tiny executor, so the example needs no runtime crate
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Creates a new credential for a user who has just proved who they are (at login).
    ///
    /// Every call mints a fresh credential: a backend never adopts a value the client chose.
    fn issue(&self, identity: &Identity) -> impl Future<Output = Result<Issued, AuthError>> + Send;

    /// Turns a presented credential into the identity it stands for. This runs on every
    /// authenticated request, so implementations avoid every allocation and round trip they can.
    fn verify(&self, credential: &str) -> impl Future<Output = Result<Identity, AuthError>> + Send;

    /// Ends a credential (logout): from the moment this returns `Ok`, `verify` rejects it.
    ///
    /// A credential that is not currently valid cannot be revoked and gets the same error `verify`
    /// would give, so logout answers exactly like an authenticated request.
    fn revoke(&self, credential: &str) -> impl Future<Output = Result<(), AuthError>> + Send;
}

/// A set of revoked credential ids (JWT `jti`s), each remembered only as long as the credential
/// would have lived.
///
/// A stateless credential cannot be recalled; the only way to reject one before it expires is to
/// look it up somewhere on every request. This trait names that lookup, so the JWT backend can
/// offer it without knowing that the set lives in Redis.
pub trait Denylist: Send + Sync + 'static {
    /// Remembers `id` as revoked for `ttl`; after that the credential has expired anyway.
    fn deny(&self, id: &str, ttl: Duration) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Answers whether `id` has been revoked.
    fn is_denied(&self, id: &str) -> impl Future<Output = Result<bool, AuthError>> + Send;
}

/// The current time in whole seconds since the Unix epoch, as a dependency.
///
/// JWT claims (`iat`, `exp`) are Unix seconds, so that is the unit. Injecting the clock lets a test
/// move time forward and check expiry to the second without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now_unix(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `now_unix`.
    pub fn new(now_unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now_unix)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_one_time() {
        let clock = ManualClock::new(1_000);
        let other = clock.clone();
        clock.advance(Duration::from_secs(15));
        assert_eq!(other.now_unix(), 1_015);
    }

    #[test]
    fn issued_debug_never_shows_the_credential() {
        let issued = Issued {
            credential: "super-secret-token".to_string().into(),
            expires_in: Duration::from_secs(1),
        };
        let shown = format!("{issued:?}");
        assert!(!shown.contains("super-secret-token"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn unavailable_keeps_its_source_for_the_log() {
        let err = AuthError::unavailable(std::io::Error::other("connection refused"));
        let source = StdError::source(&err).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("connection refused"));
        assert_eq!(err.to_string(), "the authentication backend is unavailable");
    }
}
